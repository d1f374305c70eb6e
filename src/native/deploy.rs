//! Deploys Fiber's contracts (funding-lock, commitment-lock, ckb-auth) on a
//! chain that has no published deployment (a CKB dev node, the simulated
//! chain): one tx, one cell each, under a lock no one can spend, so a
//! channel's money there is locked by Fiber's real scripts. The result is a
//! contracts file, `{ "fundingLock": …, "commitmentLock": … }` with each
//! lock's code hash (`data2`: the binary's hash, run on ckb-vm 2) and its
//! cell deps [its code, ckb-auth]: the shape the wallet's options take and
//! `fiber-counterparty --contracts` reads.

use ckb_types::core::{Capacity, ScriptHashType};
use ckb_types::packed;
use ckb_types::prelude::*;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};

use crate::api::options::parse_contracts;
use crate::chain::client::ChainClient;
use crate::crypto::blake2b_256;
use crate::native::contracts::Contract;
use crate::native::wallet_cells::{plain_cells, wait_committed};
use crate::primitives::{encode_hex, Hash256};
use crate::tx::default_lock::{self, placeholder_witness};
use crate::tx::fee::{capacity_of, fee_for_size, occupied_capacity_of_lock};
use crate::tx::parts::TxParts;
use crate::tx::script::ScriptTemplate;

/// The order of the contracts' cells in the deploy tx.
const CELLS: [Contract; 3] = [Contract::FundingLock, Contract::CommitmentLock, Contract::Auth];

/// The lock of the contract cells: code hash zero, by data hash; no cell's
/// data hashes to zero, so no one can spend (and so remove) them.
pub fn unspendable_lock() -> packed::Script {
    packed::Script::new_builder()
        .code_hash([0u8; 32].pack())
        .hash_type(ScriptHashType::Data)
        .args(b"fiber-contracts".to_vec().pack())
        .build()
}

/// The contracts file for the cells of deploy tx `tx_hash`.
pub fn contracts_json(tx_hash: Hash256) -> Value {
    let dep = |index: usize| {
        json!({
            "out_point": { "tx_hash": tx_hash.to_string(), "index": format!("{index:#x}") },
            "dep_type": "code",
        })
    };
    let auth = CELLS
        .iter()
        .position(|c| *c == Contract::Auth)
        .expect("auth is deployed");
    let lock = |contract: Contract| {
        let index = CELLS.iter().position(|c| *c == contract).expect("a deployed contract");
        json!({
            "code_hash": encode_hex(&blake2b_256(&contract.binary())),
            "hash_type": "data2",
            "cell_deps": [dep(index), dep(auth)],
        })
    };
    json!({
        "fundingLock": lock(Contract::FundingLock),
        "commitmentLock": lock(Contract::CommitmentLock),
    })
}

/// Whether the deployment a contracts file names is on this chain: each
/// cell dep live and holding the binary its code hash names.
pub async fn still_deployed(chain: &dyn ChainClient, contracts: &Value) -> Result<bool, String> {
    let (funding, commitment) = parse_contracts(&contracts.into()).map_err(|e| e.to_string())?;
    for template in [&funding, &commitment] {
        if !deps_hold_code(chain, template).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn deps_hold_code(chain: &dyn ChainClient, template: &ScriptTemplate) -> Result<bool, String> {
    let out_points: Vec<packed::OutPoint> = template.cell_deps.iter().map(|d| d.out_point()).collect();
    if out_points.is_empty() {
        return Ok(false);
    }
    let live = chain.cells_live(out_points.clone()).await.map_err(|e| e.to_string())?;
    if live.iter().any(|live| !live) {
        return Ok(false);
    }
    let cells = chain.resolve_out_points(out_points).await.map_err(|e| e.to_string())?;
    Ok(cells
        .iter()
        .flatten()
        .any(|cell| blake2b_256(&cell.data) == template.code_hash.0))
}

/// Deploys the three contracts from the wallet of `key` and waits until the
/// tx is committed. Returns its hash.
pub async fn deploy(
    chain: &dyn ChainClient,
    key: &SigningKey,
    cell_dep: &packed::CellDep,
    fee_rate: u64,
) -> Result<Hash256, String> {
    let lock = default_lock::lock_script_for_key(key.verifying_key());
    let holder = unspendable_lock();
    let mut parts = TxParts {
        cell_deps: vec![cell_dep.clone()],
        ..TxParts::default()
    };
    let mut needed: u64 = 0;
    for contract in CELLS {
        let binary = contract.binary();
        let output = packed::CellOutput::new_builder()
            .lock(holder.clone())
            .build_exact_capacity(Capacity::bytes(binary.len()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        needed = needed
            .checked_add(capacity_of(&output))
            .ok_or("the contracts' capacity overflows")?;
        parts.outputs.push(output);
        parts.outputs_data.push(binary);
    }
    // Change back to the wallet; its capacity is set once the fee is known.
    parts
        .outputs
        .push(packed::CellOutput::new_builder().lock(lock.clone()).build());
    parts.outputs_data.push(Vec::new());
    let min_change = occupied_capacity_of_lock(&lock).map_err(|e| e.to_string())?;

    let mut cells = plain_cells(chain, &lock).await?;
    // Largest first: the fewest inputs.
    cells.sort_by_key(|cell| std::cmp::Reverse(capacity_of(&cell.output)));
    let mut gathered: u64 = 0;
    for cell in cells {
        parts.inputs.push(
            packed::CellInput::new_builder()
                .previous_output(cell.out_point.clone())
                .build(),
        );
        parts.witnesses.push(if parts.witnesses.is_empty() {
            placeholder_witness().as_slice().to_vec()
        } else {
            Vec::new()
        });
        gathered = gathered.saturating_add(capacity_of(&cell.output));
        let fee = fee_for_size(parts.build().as_slice().len(), fee_rate).map_err(|e| e.to_string())?;
        let spent = needed.checked_add(fee).ok_or("the fee overflows")?;
        if let Some(change) = gathered.checked_sub(spent).filter(|change| *change >= min_change) {
            let last = parts.outputs.len() - 1;
            parts.outputs[last] = parts.outputs[last].clone().as_builder().capacity(change).build();
            let group: Vec<usize> = (0..parts.inputs.len()).collect();
            let tx = default_lock::sign_group(&parts.build(), &group, key).map_err(|e| e.to_string())?;
            let hash = chain.send_transaction(tx).await.map_err(|e| e.to_string())?;
            wait_committed(chain, hash, "deploy").await?;
            return Ok(hash);
        }
    }
    Err(format!(
        "the wallet holds {gathered} shannons in plain cells, too little for the contracts' {needed}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_file_reads_back_as_the_wallets_options_do() {
        let value = contracts_json(Hash256([0xab; 32]));
        let (funding, commitment) = parse_contracts(&value.into()).unwrap();
        assert_eq!(funding.code_hash.0, blake2b_256(&Contract::FundingLock.binary()));
        assert_eq!(commitment.code_hash.0, blake2b_256(&Contract::CommitmentLock.binary()));
        // Each lock's own code, then ckb-auth.
        let indices =
            |t: &ScriptTemplate| -> Vec<u32> { t.cell_deps.iter().map(|d| d.out_point().index().unpack()).collect() };
        assert_eq!(indices(&funding), [0, 2]);
        assert_eq!(indices(&commitment), [1, 2]);
    }
}
