//! The user's way out of a flow that can no longer be abandoned: a tx that
//! spends the user's funding inputs back to the wallet (`src/tx/cancel.rs`),
//! so the funding tx can never confirm.
//!
//! Nothing is stored for it: the state it changes is on chain. Each poll
//! already asks whether the funding tx's inputs are live, and once one is
//! spent and buried the flow ends as `FUNDING_ABORTED` with its cells free
//! (`on_inputs_live`). Should the funding tx confirm first, the channel goes
//! on as funded and the cancel tx is refused by the node.

use ckb_types::packed;

use super::channel::{Initiator, Step};
use super::error::FlowError;
use super::limits;
use crate::chain::ResolvedCell;
use crate::primitives::Hash256;
use crate::tx::cancel::{build_cancel_tx, check_cancel_tx, OwnFunding};
use crate::tx::parts::tx_hash;

/// Our part of the funding tx, owned.
struct OwnPart {
    inputs: Vec<packed::OutPoint>,
    cells: Vec<ResolvedCell>,
    owner_lock: packed::Script,
    cell_deps: Vec<packed::CellDep>,
    placeholder_witness: Vec<u8>,
}

impl OwnPart {
    fn view(&self) -> OwnFunding<'_> {
        OwnFunding {
            inputs: &self.inputs,
            cells: &self.cells,
            owner_lock: &self.owner_lock,
            cell_deps: &self.cell_deps,
            placeholder_witness: &self.placeholder_witness,
        }
    }
}

impl Initiator<'_> {
    /// The unsigned cancel tx at `fee_rate` (default: the funding fee rate).
    pub(crate) fn cancel_tx(&self, fee_rate: Option<u64>) -> Result<packed::Transaction, FlowError> {
        let fee_rate = fee_rate.unwrap_or(self.record.terms.funding_fee_rate);
        limits::check_fee_rate("fee_rate", fee_rate)?;
        let own = self.own_part()?;
        Ok(build_cancel_tx(&own.view(), fee_rate)?)
    }

    /// The wallet's signed cancel tx, checked from the tx itself, then sent.
    pub(crate) fn submit_cancel(
        &mut self,
        step: &mut Step,
        signed: &packed::Transaction,
    ) -> Result<Hash256, FlowError> {
        let own = self.own_part()?;
        check_cancel_tx(&own.view(), signed, limits::MIN_FEE_RATE, limits::MAX_FEE_RATE)?;
        let hash = Hash256(tx_hash(signed));
        self.cancel_tx_sent = Some(hash);
        self.broadcast_tx(step, signed.clone());
        Ok(hash)
    }

    /// Our inputs, while a cancel tx can still matter: the funding tx is not
    /// confirmed, and the user's signature of it may be out and can no
    /// longer be taken back by abandoning (the flow is committed, or was
    /// aborted after the hand-out and is watched).
    fn own_part(&self) -> Result<OwnPart, FlowError> {
        let channel_id = self.id();
        let state = self.state();
        let not_cancellable = |reason: &'static str| FlowError::NotCancellable {
            channel_id,
            state,
            reason,
        };
        if self.record.funding_confirmed {
            return Err(not_cancellable(
                "its funding tx is confirmed: close the channel instead",
            ));
        }
        if let Some(closure) = &self.record.closed {
            if closure.watch.is_none() {
                return Err(FlowError::ChannelClosed {
                    channel_id,
                    state,
                    reason: closure.reason.clone(),
                });
            }
        } else if self.may_abort() {
            return Err(not_cancellable("it can still be abandoned, which ends it without a tx"));
        }
        let ext = self
            .record
            .external_funding
            .as_ref()
            .ok_or(not_cancellable("it holds no funding tx of the user's"))?;
        let unsigned = ext
            .unsigned_funding_tx
            .as_ref()
            .ok_or(not_cancellable("its funding tx was never handed out"))?;
        let range = self.own_input_range();
        let cells = self
            .record
            .funding_inputs
            .get(range.clone())
            .filter(|cells| !cells.is_empty())
            .ok_or(not_cancellable("its inputs were never checked on chain"))?
            .to_vec();
        let inputs: Vec<packed::OutPoint> = unsigned
            .raw()
            .inputs()
            .into_iter()
            .skip(range.start)
            .take(range.len())
            .map(|input| input.previous_output())
            .collect();
        // The deps the funding tx ran our inputs' lock with: the wallet's,
        // and the default lock's dep group of this chain (all a peer may add).
        let cell_deps = unsigned.raw().cell_deps().into_iter().collect();
        let placeholder_witness = unsigned
            .witnesses()
            .get(range.start)
            .map(|w| w.raw_data().to_vec())
            .unwrap_or_default();
        Ok(OwnPart {
            inputs,
            cells,
            owner_lock: ext.funding_lock_script.clone(),
            cell_deps,
            placeholder_witness,
        })
    }
}
