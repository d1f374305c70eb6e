//! A [`ChainClient`] over an in-process [`SimulatedChain`]: the tests' and the
//! in-page harness's chain (feature `simulator`).

use std::cell::RefCell;
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use futures::FutureExt;

use super::client::{ChainClient, ChainError, ChainErrorKind, ChainResult};
use super::simulated::{CellFilter, ChainRejection, SimulatedChain};
use super::{LiveCell, ResolvedCell, TxReport};
use crate::primitives::Hash256;

/// [`ChainClient`] over an in-process [`SimulatedChain`]; answers at once.
#[derive(Clone, Default)]
pub struct SimulatedChainClient {
    pub chain: Rc<RefCell<SimulatedChain>>,
}

impl SimulatedChainClient {
    pub fn new(chain: Rc<RefCell<SimulatedChain>>) -> Self {
        Self { chain }
    }
}

/// The cell an out point names on a simulated chain (live or spent).
pub fn simulated_cell(chain: &SimulatedChain, out_point: &packed::OutPoint) -> Option<ResolvedCell> {
    let hash: [u8; 32] = out_point.tx_hash().unpack();
    let index: u32 = out_point.index().unpack();
    let raw = chain.transaction(&hash)?.raw();
    let index = usize::try_from(index).ok()?;
    Some(ResolvedCell {
        output: raw.outputs().get(index)?,
        data: raw.outputs_data().get(index)?.raw_data().to_vec(),
    })
}

impl ChainClient for SimulatedChainClient {
    fn live_cells(&self, lock: packed::Script) -> ChainResult<Vec<LiveCell>> {
        let chain = self.chain.borrow();
        let mut cells = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = chain.get_cells(&lock, &CellFilter::plain(), 100, cursor);
            cells.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        futures::future::ready(Ok(cells)).boxed_local()
    }

    fn cells_with_type(&self, type_script: packed::Script, limit: u32) -> ChainResult<Vec<LiveCell>> {
        let cells = self
            .chain
            .borrow()
            .cells_with_type(&type_script, usize::try_from(limit).unwrap_or(usize::MAX));
        futures::future::ready(Ok(cells)).boxed_local()
    }

    fn resolve_out_points(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<Option<ResolvedCell>>> {
        let chain = self.chain.borrow();
        let cells = out_points.iter().map(|op| simulated_cell(&chain, op)).collect();
        futures::future::ready(Ok(cells)).boxed_local()
    }

    fn cells_live(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<bool>> {
        let chain = self.chain.borrow();
        let live = out_points.iter().map(|op| chain.is_live(op)).collect();
        futures::future::ready(Ok(live)).boxed_local()
    }

    fn transaction_status(&self, tx_hash: Hash256) -> ChainResult<TxReport> {
        let report = self.chain.borrow().report(&tx_hash.0);
        futures::future::ready(Ok(report)).boxed_local()
    }

    fn spender(
        &self,
        out_point: packed::OutPoint,
        _lock: packed::Script,
    ) -> ChainResult<Option<(packed::Transaction, TxReport)>> {
        let chain = self.chain.borrow();
        let found = chain
            .spender_of(&out_point)
            .and_then(|hash| Some((chain.transaction(&hash)?, chain.report(&hash))));
        futures::future::ready(Ok(found)).boxed_local()
    }

    fn send_transaction(&self, tx: packed::Transaction) -> ChainResult<Hash256> {
        let tx_hash = Hash256(tx.calc_tx_hash().unpack());
        // As a CKB node's -1107: the tx is already in, which is what was asked.
        let result = match self.chain.borrow_mut().send_transaction(tx) {
            Ok(_) | Err(ChainRejection::Duplicated { .. }) => Ok(tx_hash),
            Err(rejection) => Err(ChainError::new(
                "send_transaction",
                ChainErrorKind::Rejected,
                rejection.to_string(),
            )),
        };
        futures::future::ready(result).boxed_local()
    }
}
