//! The signature exchange both roles run once the funding tx is agreed:
//! commitment signatures, funding signatures, confirmation, `ChannelReady` —
//! and the ways out before the signatures are released (abort, timeout,
//! abandon). (The peer handshake, BOLT 8, is `crate::peer`.)

use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Channel, Initiator, PendingCheck, Reject, Step};
use super::error::FlowError;
use super::limits;
use super::record::AbortWatch;
use super::state::CloseFlags;
use super::{Action, ChainQuery, Event};
use crate::chain::{CheckedTx, ResolvedCell, TxReport, TxStatus};
use crate::crypto::musig;
use crate::primitives::{Hash256, PubNonceBytes};
use crate::tx::default_lock;
use crate::tx::parts::tx_hash;
use crate::tx::validate::{check_witnesses, merge_witnesses};

impl Channel {
    /// Pins the peer's `TxComplete` nonce. A different nonce for the same slot
    /// is refused: signing with it could leak our key (see `crypto::musig`).
    pub(crate) fn record_peer_tx_complete(&mut self, nonce: PubNonceBytes) -> Result<(), Reject> {
        if self.record.remote.is_none() {
            return Err(Reject("TxComplete before the channel was accepted".into()));
        }
        match self.record.peer_tx_complete_nonce {
            Some(known) if known == nonce => Ok(()),
            Some(_) => Err(Reject("TxComplete with a different nonce than before".into())),
            None => {
                musig::check_nonce(&nonce, "TxComplete nonce")?;
                self.record.peer_tx_complete_nonce = Some(nonce);
                Ok(())
            }
        }
    }

    pub(crate) fn on_commitment_signed(
        &mut self,
        step: &mut Step,
        signature: [u8; 32],
        next_nonce: PubNonceBytes,
    ) -> Result<(), Reject> {
        if !self.tx_final() {
            return Err(Reject("CommitmentSigned before the funding tx was agreed".into()));
        }
        if self.record.peer_commitment_signature.is_some() {
            // A retransmission; the first valid signature stands.
            return Ok(());
        }
        self.verify_peer_commitment_signature(&signature)?;
        // Pinned with the signature: the closing signature uses it, and a
        // nonce that could change later would let two sessions share ours.
        musig::check_nonce(&next_nonce, "next_commitment_nonce")?;
        let before = self.progress();
        self.record.peer_commitment_signature = Some(signature.to_vec());
        self.record.peer_next_commitment_nonce = Some(next_nonce);
        if self.is_initiator() {
            Initiator(self).hand_out(step)?;
        }
        self.after_signature_progress(step, before)
    }

    pub(crate) fn on_tx_signatures(&mut self, step: &mut Step, witnesses: Vec<Vec<u8>>) -> Result<(), Reject> {
        if !self.tx_final() {
            return Err(Reject("TxSignatures before the funding tx was agreed".into()));
        }
        if let Some(known) = &self.record.peer_witnesses {
            return if *known == witnesses {
                Ok(())
            } else {
                Err(Reject("TxSignatures differ from the ones received before".into()))
            };
        }
        let unsigned = self.funding_tx()?;
        check_witnesses(unsigned, &witnesses, self.peer_input_range())?;
        self.verify_peer_default_lock_witnesses(&witnesses)?;
        let before = self.progress();
        self.record.peer_witnesses = Some(witnesses);
        self.after_signature_progress(step, before)
    }

    /// Checks the peer's signatures where its inputs are locked by the
    /// default lock (known from the hash-checked cells), as the chain will:
    /// a junk signature would leave the tx unbroadcastable after our own
    /// witnesses went out. An initiator takes no acceptor input under
    /// another lock (its check of the resolved inputs); an acceptor leaves
    /// the user's other locks (JoyID's) to the chain.
    fn verify_peer_default_lock_witnesses(&self, witnesses: &[Vec<u8>]) -> Result<(), Reject> {
        let unsigned = self.funding_tx()?;
        let signed = merge_witnesses(unsigned, witnesses, self.peer_input_range());
        let mut groups: Vec<(packed::Script, Vec<usize>)> = Vec::new();
        for index in self.peer_input_range() {
            let Some(cell) = self.record.funding_inputs.get(index) else {
                // Unknown lock: refused, as a signature we cannot check would be.
                return Err(Reject(format!(
                    "TxSignatures do not sign the peer's inputs: input {index} was never resolved"
                )));
            };
            let lock = cell.output.lock();
            if !default_lock::is_default_lock(&lock) {
                continue;
            }
            match groups.iter_mut().find(|(l, _)| l.as_slice() == lock.as_slice()) {
                Some((_, members)) => members.push(index),
                None => groups.push((lock, vec![index])),
            }
        }
        for (lock, members) in groups {
            default_lock::verify_group(&signed, &members, &lock.args().raw_data())
                .map_err(|e| Reject(format!("TxSignatures do not sign the peer's inputs: {e}")))?;
        }
        Ok(())
    }

    pub(crate) fn on_channel_ready(&mut self) -> Result<(), Reject> {
        if !self.tx_final() {
            return Err(Reject("ChannelReady before the funding tx was agreed".into()));
        }
        self.record.peer_channel_ready = true;
        self.on_ready_progress();
        Ok(())
    }

    pub(crate) fn on_funding_tx_status(
        &mut self,
        step: &mut Step,
        status: TxStatus,
        tip_block_number: u64,
    ) -> Result<(), Reject> {
        if (!self.released() && !self.watching_after_abort() && !self.cannot_abandon_unfunded())
            || self.record.funding_confirmed
        {
            return Ok(());
        }
        if self.watching_after_abort() {
            return self.on_watched_funding_status(step, status, tip_block_number);
        }
        if self.record.close.is_some() {
            return Ok(());
        }
        if matches!(status, TxStatus::Unknown | TxStatus::Rejected) && self.cannot_abandon_unfunded() {
            // Not on chain: if an input is spent elsewhere, it never will be.
            step.actions.push(Action::QueryChain {
                channel_id: self.id(),
                query: ChainQuery::InputsLive {
                    out_points: self.funding_inputs_out_points(),
                    at_tip: tip_block_number,
                },
            });
        }
        match status {
            // Whichever side holds the complete tx sends it when the node
            // does not know it: not only the one whose turn it was (the
            // other may sit on it), and not only once a session (a node
            // may lose a tx it took: a restart without its pool, another
            // node behind the same endpoint). A send already under way is
            // not doubled (the driver's one loop per tx).
            TxStatus::Unknown if self.complete() => {
                self.broadcast(step)?;
            }
            TxStatus::Committed { block_number } => {
                let confirmations = crate::chain::confirmations(tip_block_number, block_number);
                let required = step.config.funding_confirmations;
                // Progress for the app, once per new count (polls repeat them).
                let shown = confirmations.min(required);
                if self.confirmations_reported != Some(shown) {
                    self.confirmations_reported = Some(shown);
                    step.actions.push(super::Action::Emit(Event::FundingConfirmations {
                        channel_id: self.id(),
                        confirmations: shown,
                        required,
                    }));
                }
                if confirmations >= required {
                    self.record.funding_confirmed = true;
                    step.send(self.record.peer, self.channel_ready_message());
                    self.on_ready_progress();
                }
            }
            TxStatus::Rejected => {
                self.funding_refused = true;
                step.actions.push(super::Action::Emit(Event::FundingTxRejected {
                    channel_id: self.id(),
                    reason: "the chain rejected or dropped the funding tx".into(),
                }));
                // A node answers "rejected" long after the refusal's cause
                // passed (a full pool, a raised minimum fee rate): sent again
                // at each poll that says so, as a close tx is.
                if self.complete() {
                    self.broadcast(step)?;
                }
            }
            TxStatus::Unknown | TxStatus::Pending => {}
        }
        Ok(())
    }

    pub(crate) fn on_broadcast_failed(&mut self, step: &mut Step, reason: String) {
        self.funding_refused = true;
        step.actions.push(super::Action::Emit(Event::FundingTxRejected {
            channel_id: self.id(),
            reason,
        }));
    }

    /// The peer gave up. Honoured only while our signatures are still ours.
    pub(crate) fn on_tx_abort(&mut self, step: &mut Step, message: &[u8]) -> Result<(), Reject> {
        limits::check_message_text("TxAbort message", message)?;
        if self.is_closed() {
            return Ok(());
        }
        if self.released() || self.is_ready() || self.record.funding_confirmed {
            // An honest peer never does this (see `may_abort`): keep the channel,
            // its keys and the peer's commitment signature.
            return Err(Reject(
                "TxAbort after our funding signatures were released; the channel continues".into(),
            ));
        }
        let reason = limits::printable(message);
        self.close(
            CloseFlags::FUNDING_ABORTED,
            format!("the peer aborted the funding: {reason}"),
            step.now_ms,
        );
        Ok(())
    }

    /// The external-funding deadline passed: abort and tell the peer.
    pub(crate) fn on_deadline(&mut self, step: &mut Step) {
        let Some(deadline) = self.deadline_ms() else {
            return;
        };
        if step.now_ms < deadline {
            return;
        }
        let seconds = self.record.terms.timeout_ms / 1000;
        let reason = if self.is_initiator() {
            format!("external funding timed out: the signed funding tx did not arrive within {seconds} s")
        } else {
            format!("external funding timed out: the initiator did not complete the funding within {seconds} s")
        };
        self.close(CloseFlags::FUNDING_ABORTED, reason, step.now_ms);
        step.send(self.record.peer, self.tx_abort_message());
    }

    /// The peer stayed silent while the open waited for it (before anything
    /// was handed out): abort and tell the peer, should it come back.
    pub(crate) fn abort_silent_open(&mut self, step: &mut Step, reason: String) {
        if self.is_closed() {
            return;
        }
        self.close(CloseFlags::FUNDING_ABORTED, reason, step.now_ms);
        step.send(self.record.peer, self.tx_abort_message());
    }

    /// The user (or the node operator) gives up on the channel.
    pub(crate) fn abandon(&mut self, step: &mut Step) -> Result<(), FlowError> {
        if self.is_closed() {
            return Ok(());
        }
        if !self.may_abort() {
            return Err(FlowError::TooLateToAbandon {
                channel_id: self.id(),
                state: self.state(),
            });
        }
        self.close(CloseFlags::ABANDONED, "abandoned by the user".into(), step.now_ms);
        step.send(self.record.peer, self.tx_abort_message());
        Ok(())
    }
}

impl Channel {
    /// The funding tx of an aborted flow, which a leaked signed copy could
    /// still bring on chain.
    fn on_watched_funding_status(&mut self, step: &mut Step, status: TxStatus, tip: u64) -> Result<(), Reject> {
        match status {
            TxStatus::Committed { block_number } => {
                let confirmations = crate::chain::confirmations(tip, block_number);
                if confirmations < step.config.funding_confirmations {
                    return Ok(());
                }
                // Funded after all: the channel is not lost, it goes on as
                // funded, with the keys and the peer's commitment signature
                // that were kept for this.
                self.record.closed = None;
                self.record.funding_confirmed = true;
                step.send(self.record.peer, self.channel_ready_message());
                step.actions.push(Action::Emit(Event::FundingConfirmedAfterAbort {
                    channel_id: self.id(),
                    funding_tx_hash: self.funding_tx_hash().unwrap_or(Hash256([0; 32])),
                }));
                self.on_ready_progress();
            }
            TxStatus::Unknown | TxStatus::Rejected => {
                let out_points = self.record.own_cells.iter().map(|c| c.out_point.clone()).collect();
                step.actions.push(Action::QueryChain {
                    channel_id: self.id(),
                    query: ChainQuery::InputsLive {
                        out_points,
                        at_tip: tip,
                    },
                });
            }
            TxStatus::Pending => {}
        }
        Ok(())
    }

    /// Whether the inputs of a funding tx that can no longer be abandoned are
    /// still live, while the tx is not on chain. One spent elsewhere, and
    /// buried under `funding_confirmations` blocks, means the tx can never
    /// confirm: the flow is aborted (the flow's way out), and the watch of
    /// an aborted flow keeps the keys until that settles as well.
    fn on_unfunded_inputs_live(&mut self, step: &mut Step, live: &[bool], at_tip: u64) -> Result<(), Reject> {
        if !self.cannot_abandon_unfunded() {
            return Ok(());
        }
        if live.iter().all(|l| *l) {
            self.unfunded_conflict_at = None;
            return Ok(());
        }
        match self.unfunded_conflict_at {
            None => self.unfunded_conflict_at = Some(at_tip),
            Some(seen) if at_tip >= seen.saturating_add(step.config.funding_confirmations) => {
                self.close(
                    CloseFlags::FUNDING_ABORTED,
                    "the funding tx can never confirm: one of its inputs was spent by another transaction".into(),
                    step.now_ms,
                );
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Whether our inputs of an aborted funding tx are still live. One spent
    /// (while the tx itself is unknown) means it can never confirm; once that
    /// is buried under `funding_confirmations` blocks the keys are wiped.
    pub(crate) fn on_inputs_live(&mut self, step: &mut Step, live: &[bool], at_tip: u64) -> Result<(), Reject> {
        let confirmations = step.config.funding_confirmations;
        if !self.is_closed() {
            return self.on_unfunded_inputs_live(step, live, at_tip);
        }
        let Some(watch) = self.record.closed.as_mut().and_then(|c| c.watch.as_mut()) else {
            return Ok(());
        };
        if live.iter().all(|l| *l) {
            *watch = AbortWatch::default();
            return Ok(());
        }
        match watch.conflict_seen_at_tip {
            None => watch.conflict_seen_at_tip = Some(at_tip),
            Some(seen) if at_tip >= seen.saturating_add(confirmations) => {
                // The node says the funding tx is unknown and an input dead;
                // before the keys go for good, who spent it: the funding tx
                // itself (a node that missed it) must not cost the 2-of-2 key.
                let dead = live.iter().position(|l| !*l);
                if let Some(cell) = dead.and_then(|index| self.record.own_cells.get(index)) {
                    step.actions.push(Action::QueryChain {
                        channel_id: self.id(),
                        query: ChainQuery::SpenderOf {
                            out_point: cell.out_point.clone(),
                            lock: cell.output.lock(),
                        },
                    });
                }
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Who spent an input of an aborted flow whose conflict is buried:
    /// another tx settles the abort (the keys are wiped); the funding tx
    /// means the channel was funded after all; none found yet, nothing.
    pub(crate) fn on_spender_of(
        &mut self,
        step: &mut Step,
        out_point: &packed::OutPoint,
        spender: Option<(CheckedTx, TxReport)>,
    ) -> Result<(), Reject> {
        if !self.watching_after_abort() {
            // The watch ended while the question was out: nothing to settle.
            return Ok(());
        }
        let lock = self.own_cell_lock(out_point)?;
        let Some((CheckedTx(spender), report)) = spender else {
            return Ok(());
        };
        if Some(Hash256(tx_hash(&spender))) == self.funding_tx_hash() {
            return self.on_watched_funding_status(step, report.status, report.tip.block_number);
        }
        // A node can make up a tx that spends the input (its hash is the
        // node's to compute): only one committed and buried under the
        // settle depth settles it.
        if !report.buried(step.config.settle_depth()) {
            return Ok(());
        }
        if !default_lock::is_default_lock(&lock) {
            // Another lock's signature (JoyID's) is left to the chain.
            self.settle_abort(step);
            return Ok(());
        }
        // The node may have made the whole tx up: under the default lock, it
        // settles only once the wallet's signature of it verifies, which
        // needs the lock of every cell it spends (the signature covers the
        // lock's whole input group).
        let inputs = spender.raw().inputs();
        if inputs.len() > limits::MAX_FUNDING_INPUTS {
            return Err(Reject(format!(
                "the reported spender of our input has {} inputs, more than are read to check it",
                inputs.len()
            )));
        }
        let check = PendingCheck::new(spender, []);
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::ResolveInputs {
                out_points: check.out_points.clone(),
            },
        });
        self.spender_to_verify = Some(check);
        Ok(())
    }

    /// The cells the spender to verify spends: the abort settles once the
    /// wallet's signature of it verifies. Any answer ends the check; the next
    /// poll asks for the spender again.
    pub(crate) fn on_spender_inputs(
        &mut self,
        step: &mut Step,
        out_points: &[packed::OutPoint],
        cells: Vec<Option<ResolvedCell>>,
    ) -> Result<(), Reject> {
        let Some(check) = self.spender_to_verify.take() else {
            return Err(Reject("no spender is being checked".into()));
        };
        if !self.watching_after_abort() {
            return Ok(());
        }
        let verified = if check.answered_by(out_points, cells.len()) {
            self.verify_spender(&check, cells)
        } else {
            Err(Reject("the chain's answer is not about the spender's inputs".into()))
        };
        if let Err(Reject(reason)) = verified {
            step.actions.push(Action::Emit(Event::FundingTxRejected {
                channel_id: self.id(),
                reason: format!("a reported spender of our input settles nothing: {reason}"),
            }));
            return Ok(());
        }
        self.settle_abort(step);
        Ok(())
    }

    /// Whether `spender` carries the wallet's signature for its group of
    /// inputs under our lock, from the cells its inputs spend.
    fn verify_spender(&self, check: &PendingCheck, cells: Vec<Option<ResolvedCell>>) -> Result<(), Reject> {
        let (spender, asked) = (&check.tx, &check.out_points);
        let cells: Vec<ResolvedCell> = cells
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| Reject("a cell the spender spends does not exist".into()))?;
        let ours = self
            .record
            .own_cells
            .iter()
            .find(|own| asked.iter().any(|a| a.as_slice() == own.out_point.as_slice()))
            .ok_or_else(|| Reject("the spender spends no input of ours".into()))?;
        let lock = ours.output.lock();
        let groups = default_lock::input_groups(spender, |out_point| {
            asked
                .iter()
                .position(|a| a.as_slice() == out_point.as_slice())
                .map(|index| cells[index].output.clone())
        })
        .map_err(|e| Reject(e.to_string()))?;
        let group = groups
            .iter()
            .find(|group| group.lock.as_slice() == lock.as_slice())
            .ok_or_else(|| Reject("the spender's inputs hold no cell under our lock".into()))?;
        default_lock::verify_group(spender, &group.input_indices, &lock.args().raw_data())
            .map_err(|e| Reject(format!("the wallet's signature does not verify: {e}")))
    }

    /// The lock of our funding input at `out_point`.
    fn own_cell_lock(&self, out_point: &packed::OutPoint) -> Result<packed::Script, Reject> {
        self.record
            .own_cells
            .iter()
            .find(|c| c.out_point.as_slice() == out_point.as_slice())
            .map(|c| c.output.lock())
            .ok_or_else(|| Reject("a spender answer for no input of ours".into()))
    }

    /// The abort's input was spent by another tx, buried and (under the
    /// default lock) signed by the wallet: the funding tx can never confirm.
    fn settle_abort(&mut self, step: &mut Step) {
        self.record.settle();
        step.actions
            .push(Action::Emit(Event::AbortSettled { channel_id: self.id() }));
    }
}
