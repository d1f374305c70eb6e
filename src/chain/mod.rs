//! What the funding flow needs to know about the chain, and a simulated chain
//! that checks transactions the way a CKB node would.

use ckb_types::packed;
use ckb_types::prelude::*;

pub mod client;
// Tools, not what a wallet runs: the simulated chain and its client.
#[cfg(feature = "simulator")]
pub mod simulated;
#[cfg(feature = "simulator")]
pub mod simulated_client;

/// A live cell as CKB's indexer `get_cells` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCell {
    pub out_point: packed::OutPoint,
    pub output: packed::CellOutput,
    pub output_data: Vec<u8>,
    pub block_number: u64,
}

/// A cell as its creating transaction holds it, read through the
/// hash-checked path (`get_transaction`, the hash recomputed): a chain node
/// cannot misreport its capacity, lock, type or data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCell {
    pub output: packed::CellOutput,
    pub data: Vec<u8>,
}

/// The chain's tip: its block number and epoch (an `EpochNumberWithFraction`
/// value), which relative-epoch `since` values are measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainTip {
    pub block_number: u64,
    pub epoch: u64,
}

/// A transaction's status with what the delays of a close are counted by:
/// the epoch of the block that committed it, and the tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    pub status: TxStatus,
    /// The committing block's epoch, when committed.
    pub block_epoch: Option<u64>,
    pub tip: ChainTip,
}

impl TxReport {
    /// Committed with at least `confirmations` blocks on it (its own
    /// included), as far as this report goes.
    pub fn buried(&self, confirmations: u64) -> bool {
        match self.status {
            TxStatus::Committed { block_number } => {
                self::confirmations(self.tip.block_number, block_number) >= confirmations
            }
            _ => false,
        }
    }
}

/// Where a transaction stands, as `get_transaction` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// The node does not know the transaction (never sent, or dropped).
    Unknown,
    /// In the pool, not yet in a block (CKB's `pending` and `proposed`).
    Pending,
    /// In the block at `block_number`.
    Committed { block_number: u64 },
    /// The node refused or evicted it.
    Rejected,
}
pub mod rpc;

/// A transaction read through the hash-checked path; compared by its bytes
/// (molecule's `Transaction` has no `PartialEq`).
#[derive(Debug, Clone)]
pub struct CheckedTx(pub packed::Transaction);

impl PartialEq for CheckedTx {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice() == other.0.as_slice()
    }
}

impl Eq for CheckedTx {}

/// How many blocks confirm a tx committed in `block_number` at `tip`, its
/// own block counted (0 when the tip is behind it, as a lagging node may say).
pub fn confirmations(tip: u64, block_number: u64) -> u64 {
    tip.saturating_add(1).saturating_sub(block_number)
}
