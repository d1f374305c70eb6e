//! Makes sure the counterparty's wallet has enough separate cells to fund
//! several channels at once: a cell a pending flow uses is reserved until its
//! funding tx commits, so a wallet of one big cell (like a dev chain's
//! genesis account) could fund only one channel at a time.

use std::time::Duration;

use ckb_types::packed;
use k256::ecdsa::SigningKey;

use crate::chain::client::ChainClient;
use crate::chain::{LiveCell, TxStatus};
use crate::primitives::Hash256;
use crate::tx::default_lock::{self, placeholder_witness};
use crate::tx::fee::{capacity_of, fee_for_size, occupied_capacity_of_lock};
use crate::tx::funding::is_plain_capacity_cell;
use crate::tx::parts::TxParts;
use ckb_types::prelude::*;

/// How long to wait for a wallet tool's tx to commit (the chain needs blocks).
const COMMIT_WAIT: Duration = Duration::from_secs(120);

/// Splits the wallet's largest cell so that at least `wanted` plain cells of
/// `cell_capacity` exist. Returns the split tx once committed, or `None` when
/// the wallet already had enough.
pub async fn ensure_free_cells(
    chain: &dyn ChainClient,
    key: &SigningKey,
    cell_dep: &packed::CellDep,
    wanted: usize,
    cell_capacity: u64,
    fee_rate: u64,
) -> Result<Option<Hash256>, String> {
    let lock = default_lock::lock_script_for_key(key.verifying_key());
    let cells = plain_cells(chain, &lock).await?;
    if cells.len() >= wanted {
        return Ok(None);
    }
    let largest = cells
        .iter()
        .max_by_key(|cell| capacity_of(&cell.output))
        .ok_or("the wallet has no cells")?;
    let new_cells = wanted - cells.len();
    let output = || {
        packed::CellOutput::new_builder()
            .capacity(cell_capacity)
            .lock(lock.clone())
            .build()
    };
    let mut parts = TxParts {
        cell_deps: vec![cell_dep.clone()],
        inputs: vec![packed::CellInput::new_builder()
            .previous_output(largest.out_point.clone())
            .build()],
        outputs: (0..=new_cells).map(|_| output()).collect(),
        outputs_data: vec![Vec::new(); new_cells + 1],
        witnesses: vec![placeholder_witness().as_slice().to_vec()],
        ..TxParts::default()
    };
    // The last output is the change; its capacity does not change the size.
    let fee = fee_for_size(parts.build().as_slice().len(), fee_rate).map_err(|e| e.to_string())?;
    let min_change = occupied_capacity_of_lock(&lock).map_err(|e| e.to_string())?;
    let largest_capacity = capacity_of(&largest.output);
    let spent = cell_capacity
        .checked_mul(new_cells as u64)
        .and_then(|cells| cells.checked_add(fee));
    let change = spent
        .and_then(|spent| largest_capacity.checked_sub(spent))
        .filter(|change| *change >= min_change)
        .ok_or_else(|| {
            format!("the largest cell holds {largest_capacity} shannons, too little for {new_cells} more cells")
        })?;
    parts.outputs[new_cells] = packed::CellOutput::new_builder().capacity(change).lock(lock).build();
    let tx = default_lock::sign_group(&parts.build(), &[0], key).map_err(|e| e.to_string())?;
    let hash = chain.send_transaction(tx).await.map_err(|e| e.to_string())?;
    wait_committed(chain, hash, "split").await?;
    Ok(Some(hash))
}

/// The wallet's cells with no type and no data: capacity to spend freely.
pub async fn plain_cells(chain: &dyn ChainClient, lock: &packed::Script) -> Result<Vec<LiveCell>, String> {
    Ok(chain
        .live_cells(lock.clone())
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(is_plain_capacity_cell)
        .collect())
}

/// Waits until `hash` (a wallet tool's `what` tx) is committed; the chain must produce blocks.
pub async fn wait_committed(chain: &dyn ChainClient, hash: Hash256, what: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + COMMIT_WAIT;
    loop {
        if let TxStatus::Committed { .. } = chain.transaction_status(hash).await.map_err(|e| e.to_string())?.status {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the {what} tx {hash} did not commit within {} s; is the chain producing blocks?",
                COMMIT_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
