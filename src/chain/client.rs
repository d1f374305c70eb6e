//! How a runtime reads and writes the chain: a CKB JSON-RPC node in real use,
//! the simulated chain (`simulated_client`) in tests and the in-page harness.

use ckb_types::packed;
use futures::future::LocalBoxFuture;

use super::{LiveCell, ResolvedCell, TxReport};
use crate::primitives::Hash256;

/// A chain call that failed; names the RPC method so a user can tell what broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CKB RPC {method} failed: {reason}")]
pub struct ChainError {
    pub method: &'static str,
    pub kind: ChainErrorKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainErrorKind {
    /// The node could not be reached (network error, refused, CORS).
    Unreachable,
    /// No answer within the timeout.
    Timeout,
    /// The node answered with an error (e.g. it rejected a transaction).
    Rejected,
    /// `send_transaction` answered that the tx is already in its pool
    /// (CKB's -1107, `PoolRejectedDuplicatedTransaction`): sent, not refused.
    AlreadyInPool,
    /// The answer did not have the expected shape.
    BadResponse,
}

impl ChainError {
    pub fn new(method: &'static str, kind: ChainErrorKind, reason: impl Into<String>) -> Self {
        Self {
            method,
            kind,
            reason: reason.into(),
        }
    }

    /// Whether trying again later could help.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ChainErrorKind::Unreachable | ChainErrorKind::Timeout)
    }
}

pub type ChainResult<T> = LocalBoxFuture<'static, Result<T, ChainError>>;

/// The chain operations the funding flow needs.
pub trait ChainClient {
    /// Every live plain cell (no type script, no data) locked by `lock`: all
    /// a funding or a claim spends. All pages of the indexer's `get_cells`,
    /// up to a bound (the RPC client's `MAX_LIVE_CELLS`).
    fn live_cells(&self, lock: packed::Script) -> ChainResult<Vec<LiveCell>>;
    /// The cells these out points name, one answer per out point in order,
    /// `None` where there is none; read through a path that checks the
    /// creating transaction's hash, so the node cannot misreport them.
    fn resolve_out_points(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<Option<ResolvedCell>>>;
    /// Live cells whose type script is exactly `type_script`, at most
    /// `limit`, read without their data: how a contract's code cell,
    /// published under a type id, is found.
    fn cells_with_type(&self, type_script: packed::Script, limit: u32) -> ChainResult<Vec<LiveCell>>;
    /// Whether each out point is a live cell now (`false`: spent or unknown).
    fn cells_live(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<bool>>;
    /// A transaction's status (with its block's epoch when committed) and the tip.
    fn transaction_status(&self, tx_hash: Hash256) -> ChainResult<TxReport>;
    fn send_transaction(&self, tx: packed::Transaction) -> ChainResult<Hash256>;
    /// The transaction that spent `out_point` (a cell locked by `lock`),
    /// read through the hash-checked path, with its report; `None` while
    /// the cell is live. The hash check only ties the tx to a hash the node
    /// chose: the caller trusts it as a spender once the report says it is
    /// committed and buried. A tx that spends a channel's funding cell is
    /// found this way rather than by a hash we predict: its cell deps are
    /// the broadcaster's choice, and they are part of its hash.
    fn spender(
        &self,
        out_point: packed::OutPoint,
        lock: packed::Script,
    ) -> ChainResult<Option<(packed::Transaction, TxReport)>>;
}
