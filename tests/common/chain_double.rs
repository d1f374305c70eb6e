//! A chain client that reads the simulated chain, except for the reads a
//! test replaces: one double for the suites that play a CKB node failing,
//! lagging or lying in one way.

use ckb_types::packed;
use fiber_funding::chain::client::{ChainClient, ChainResult};
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::chain::{LiveCell, ResolvedCell, TxReport};
use fiber_funding::primitives::Hash256;

/// A read a test replaces; it gets the simulated chain's client too.
pub type Read<A, T> = Box<dyn Fn(&SimulatedChainClient, A) -> ChainResult<T>>;

/// The simulated chain's client, with the reads set here replaced.
pub struct ChainWith {
    pub inner: SimulatedChainClient,
    pub resolve_out_points: Option<Read<Vec<packed::OutPoint>, Vec<Option<ResolvedCell>>>>,
    pub cells_with_type: Option<Read<(packed::Script, u32), Vec<LiveCell>>>,
    pub cells_live: Option<Read<Vec<packed::OutPoint>, Vec<bool>>>,
    pub transaction_status: Option<Read<Hash256, TxReport>>,
    pub send_transaction: Option<Read<packed::Transaction, Hash256>>,
}

impl ChainWith {
    /// Every read the chain's own.
    pub fn new(inner: SimulatedChainClient) -> Self {
        ChainWith {
            inner,
            resolve_out_points: None,
            cells_with_type: None,
            cells_live: None,
            transaction_status: None,
            send_transaction: None,
        }
    }
}

impl ChainClient for ChainWith {
    fn live_cells(&self, lock: packed::Script) -> ChainResult<Vec<LiveCell>> {
        self.inner.live_cells(lock)
    }
    fn resolve_out_points(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<Option<ResolvedCell>>> {
        match &self.resolve_out_points {
            Some(read) => read(&self.inner, out_points),
            None => self.inner.resolve_out_points(out_points),
        }
    }
    fn cells_with_type(&self, type_script: packed::Script, limit: u32) -> ChainResult<Vec<LiveCell>> {
        match &self.cells_with_type {
            Some(read) => read(&self.inner, (type_script, limit)),
            None => self.inner.cells_with_type(type_script, limit),
        }
    }
    fn cells_live(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<bool>> {
        match &self.cells_live {
            Some(read) => read(&self.inner, out_points),
            None => self.inner.cells_live(out_points),
        }
    }
    fn transaction_status(&self, tx_hash: Hash256) -> ChainResult<TxReport> {
        match &self.transaction_status {
            Some(read) => read(&self.inner, tx_hash),
            None => self.inner.transaction_status(tx_hash),
        }
    }
    fn send_transaction(&self, tx: packed::Transaction) -> ChainResult<Hash256> {
        match &self.send_transaction {
            Some(read) => read(&self.inner, tx),
            None => self.inner.send_transaction(tx),
        }
    }
    fn spender(
        &self,
        out_point: packed::OutPoint,
        lock: packed::Script,
    ) -> ChainResult<Option<(packed::Transaction, TxReport)>> {
        self.inner.spender(out_point, lock)
    }
}
