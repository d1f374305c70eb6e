//! The way out of a funded channel, persisted and resumable like the
//! funding flow (every fact stored before the message or broadcast that
//! depends on it):
//!
//! * **Cooperative close**: `Shutdown` both ways fixes the closing tx (each
//!   side's balance to its close script, the fee paid by the side that asked
//!   to close), then `ClosingSigned` both ways; either side completes it and
//!   the side that asked broadcasts it. `ShuttingDown` → `Closed(COOPERATIVE)`.
//! * **Unilateral close**: our commitment 0, completed with the peer's held
//!   signature, is broadcast; once it is committed, the delay runs; then our
//!   claim of our share, signed by the node alone, goes to our shutdown
//!   script. `ShuttingDown(WAITING_COMMITMENT_CONFIRMATION)` →
//!   `Closed(UNCOOPERATIVE_LOCAL | WAITING_ONCHAIN_SETTLEMENT)` →
//!   `Closed(UNCOOPERATIVE_LOCAL)`.
//! * **The peer closed unilaterally**: its commitment seen committed, we
//!   claim our share after the delay, from its commitment cell or, if it
//!   claimed first, from the cell its claim re-created. `Closed(UNCOOPERATIVE_REMOTE | …)`.

use ckb_types::core::EpochNumberWithFraction;
use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Channel, Reject, Step};
use super::error::FlowError;
use super::limits;
use super::record::{CloseProgress, CommitmentOnChain, ShutdownTerms};
use super::state::{CloseFlags, ShuttingDownFlags};
use super::{Action, ChainQuery, ChannelState, Event};
use crate::chain::{CheckedTx, ResolvedCell, TxReport, TxStatus};
use crate::crypto::musig::{self, NonceSlot, SigningSession};
use crate::primitives::Hash256;
use crate::tx::closing::{Closing, ClosingParty};
use crate::tx::commitment::{self, SLOT_LEN};
use crate::tx::fee::{capacity_of, occupied_capacity_of_lock};
use crate::tx::parts::{signed_part, tx_hash};
use crate::wire::{ClosingSigned, FiberMessage, Shutdown};

/// This module never signs a commitment 1 (no TLCs), so the nonce both sides
/// announced for it in `CommitmentSigned` signs the closing tx instead, as
/// upstream does; once the closing tx is fixed it never signs anything else.
const CLOSING_NONCE: NonceSlot = NonceSlot::OwnCommitment(1);

/// Why a channel restored from a backup signs no closing tx.
const RESTORED_FROM_BACKUP: &str = "the channel was restored from a backup, whose device may have signed a \
     closing tx with the closing nonce already: it closes only unilaterally";

/// Whose commitment a tx hash we watch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Our complete closing tx, to broadcast again after a restart.
    Closing,
    /// Our commitment after a force close, until it is seen on chain.
    OwnCommitment,
    /// A commitment seen on chain (ours or the peer's): its reports carry
    /// the tip the claim waits for.
    Commitment,
    /// Our claim, until it confirms.
    Claim,
}

/// How a funded channel's close stands (for the app).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloseView {
    /// The cooperative closing tx, once both `Shutdown`s fixed it.
    pub closing_tx_hash: Option<Hash256>,
    /// When we broadcast our commitment.
    pub force_closed_at_ms: Option<u64>,
    /// The commitment seen committed, and from which epoch our share can be claimed.
    pub commitment: Option<CommitmentView>,
    /// Our claim of our share, once sent.
    pub claim_tx_hash: Option<Hash256>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitmentView {
    pub tx_hash: Hash256,
    pub holder_is_local: bool,
    pub block_number: u64,
    pub claimable_at_epoch: u64,
}

impl Channel {
    pub(crate) fn close_view(&self) -> Option<CloseView> {
        if !self.funded() {
            return None;
        }
        let close = self.record.close.as_ref()?;
        // The one on chain, else the one we would broadcast (the peer's may
        // name other cell deps, so another hash).
        let closing_tx_hash = close.closing_on_chain.or_else(|| {
            self.has_peer_closing_signature()
                .then(|| self.complete_closing_tx().ok())
                .flatten()
                .map(|tx| Hash256(tx_hash(&tx)))
        });
        Some(CloseView {
            closing_tx_hash,
            force_closed_at_ms: close.force_closed_at_ms,
            commitment: close.commitment_on_chain.as_ref().map(|on_chain| CommitmentView {
                tx_hash: on_chain.tx_hash,
                holder_is_local: on_chain.holder_is_local,
                block_number: on_chain.block_number,
                claimable_at_epoch: self.claimable_at_epoch(on_chain.epoch),
            }),
            claim_tx_hash: close.claim_tx.as_ref().map(|tx| Hash256(tx_hash(tx))),
        })
    }

    // ---- facts ---------------------------------------------------------------------------

    fn close_progress_mut(&mut self) -> &mut CloseProgress {
        self.record.close.get_or_insert_with(CloseProgress::default)
    }

    /// The funding tx is confirmed: the channel holds money and can be closed.
    pub fn funded(&self) -> bool {
        self.record.funding_confirmed && !self.is_closed()
    }

    /// Open, or closing cooperatively without the peer's signature yet: only
    /// the peer can move it on (a complete closing tx is broadcast anyway).
    pub(crate) fn stuck_without_peer(&self) -> bool {
        self.record.close.as_ref().is_none_or(|close| {
            close.force_closed_at_ms.is_none()
                && close.commitment_on_chain.is_none()
                && close.peer_closing_signature.is_none()
        })
    }

    fn has_peer_closing_signature(&self) -> bool {
        self.record
            .close
            .as_ref()
            .is_some_and(|c| c.peer_closing_signature.is_some())
    }

    /// Both `Shutdown`s are in: the closing tx is fixed.
    pub(crate) fn closing_fixed(&self) -> bool {
        self.record
            .close
            .as_ref()
            .is_some_and(|c| c.local_shutdown.is_some() && c.remote_shutdown.is_some())
    }

    /// The state of a channel on its way out, if it is.
    pub fn closing_state(&self) -> Option<ChannelState> {
        let close = self.record.close.as_ref()?;
        if let Some(on_chain) = &close.commitment_on_chain {
            let side = if on_chain.holder_is_local {
                CloseFlags::UNCOOPERATIVE_LOCAL
            } else {
                CloseFlags::UNCOOPERATIVE_REMOTE
            };
            return Some(ChannelState::Closed(side | CloseFlags::WAITING_ONCHAIN_SETTLEMENT));
        }
        if close.force_closed_at_ms.is_some() {
            return Some(ChannelState::ShuttingDown(
                ShuttingDownFlags::WAITING_COMMITMENT_CONFIRMATION,
            ));
        }
        let mut flags = ShuttingDownFlags::default();
        if close.local_shutdown.is_some() {
            flags = flags | ShuttingDownFlags::OUR_SHUTDOWN_SENT;
        }
        if close.remote_shutdown.is_some() {
            flags = flags | ShuttingDownFlags::THEIR_SHUTDOWN_SENT;
        }
        if close.peer_closing_signature.is_some() {
            flags = flags | ShuttingDownFlags::DROPPING_PENDING;
        }
        Some(ChannelState::ShuttingDown(flags))
    }

    fn closing(&self) -> Result<Closing, Reject> {
        let close = self.record.close.as_ref().ok_or_else(|| Reject("not closing".into()))?;
        let (Some(local), Some(remote_terms)) = (&close.local_shutdown, &close.remote_shutdown) else {
            return Err(Reject("the closing tx is not fixed yet".into()));
        };
        let remote = self.remote()?;
        let funding_tx = self.funding_tx()?;
        Ok(Closing {
            funding_out_point: packed::OutPoint::new_builder()
                .tx_hash(tx_hash(funding_tx).pack())
                .index(0u32)
                .build(),
            local: ClosingParty {
                funding_pubkey: self.record.local.funding_pubkey,
                amount: self.record.local.contribution()?,
                close_script: local.close_script.clone(),
                fee_rate: local.fee_rate,
            },
            remote: ClosingParty {
                funding_pubkey: remote.funding_pubkey,
                amount: remote.contribution()?,
                close_script: remote_terms.close_script.clone(),
                fee_rate: remote_terms.fee_rate,
            },
        })
    }

    /// The fixed closing tx and the MuSig2 session that signs it (we hold,
    /// the peer's closing nonce signs), handed to `use_session`: built once
    /// for signing, verifying and completing alike.
    fn with_closing_session<T>(
        &self,
        use_session: impl FnOnce(&SigningSession, &packed::Transaction) -> Result<T, Reject>,
    ) -> Result<T, Reject> {
        let remote = self.remote()?;
        let ctx = musig::funding_key_agg(&self.record.local.funding_pubkey, &remote.funding_pubkey)?;
        let tx = self.closing()?.build_tx()?;
        let signer_nonce = self
            .record
            .peer_next_commitment_nonce
            .ok_or_else(|| Reject("the peer's closing nonce is unknown".into()))?;
        let session = SigningSession {
            ctx: &ctx,
            message: commitment::signing_message(&tx),
            holder_nonce: musig::public_nonce(&self.keys, CLOSING_NONCE, &[]),
            signer_nonce,
        };
        use_session(&session, &tx)
    }

    /// Our partial signature over the fixed closing tx.
    fn our_closing_signature(&self) -> Result<[u8; 32], Reject> {
        if self.record.restored_from_backup {
            return Err(Reject(RESTORED_FROM_BACKUP.into()));
        }
        self.with_closing_session(|session, _| Ok(session.sign_as_holder(&self.keys, 1)?))
    }

    /// The closing tx with both signatures, ready to broadcast.
    pub fn complete_closing_tx(&self) -> Result<packed::Transaction, Reject> {
        let peer: [u8; 32] = self
            .record
            .close
            .as_ref()
            .and_then(|c| c.peer_closing_signature.as_deref())
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| Reject("no closing signature from the peer".into()))?;
        self.with_closing_session(|session, tx| {
            let ours = session.sign_as_holder(&self.keys, 1)?;
            let signature = session.aggregate(&ours, &peer)?;
            Ok(commitment::complete_funding_spend(
                tx,
                &self.record.terms.funding_lock.cell_deps,
                &musig::xonly_key(session.ctx),
                &signature,
            ))
        })
    }

    fn shutdown_message(&self) -> Option<FiberMessage> {
        let local = self.record.close.as_ref()?.local_shutdown.as_ref()?;
        Some(FiberMessage::Shutdown(Shutdown {
            channel_id: self.id(),
            fee_rate: local.fee_rate,
            close_script: local.close_script.clone(),
        }))
    }

    fn closing_signed_message(&self) -> Result<FiberMessage, Reject> {
        Ok(FiberMessage::ClosingSigned(ClosingSigned {
            channel_id: self.id(),
            partial_signature: self.our_closing_signature()?,
        }))
    }

    /// What a reconnecting peer may lack of the close.
    pub fn close_messages_to_retransmit(&self) -> Result<Vec<FiberMessage>, Reject> {
        let mut messages = Vec::new();
        if self
            .record
            .close
            .as_ref()
            .is_some_and(|c| c.force_closed_at_ms.is_some() || c.commitment_on_chain.is_some())
        {
            return Ok(messages);
        }
        messages.extend(self.shutdown_message());
        if self.closing_fixed() {
            messages.push(self.closing_signed_message()?);
        }
        Ok(messages)
    }

    /// Whether we asked to close (and so pay the fee and broadcast).
    fn we_asked_to_close(&self) -> bool {
        self.record
            .close
            .as_ref()
            .and_then(|c| c.local_shutdown.as_ref())
            .is_some_and(|s| s.fee_rate > 0)
    }

    // ---- commands ------------------------------------------------------------------------

    /// `shutdownChannel`: asks the peer to close cooperatively; we pay the fee.
    pub(crate) fn shutdown(
        &mut self,
        step: &mut Step,
        close_script: Option<packed::Script>,
        fee_rate: Option<u64>,
    ) -> Result<(), FlowError> {
        let channel_id = self.id();
        if !self.funded()
            || self
                .record
                .close
                .as_ref()
                .is_some_and(|c| c.force_closed_at_ms.is_some() || c.commitment_on_chain.is_some())
        {
            return Err(FlowError::NotClosable {
                channel_id,
                state: self.state(),
            });
        }
        if self.record.restored_from_backup {
            return Err(FlowError::RestoredChannelClosesUnilaterally { channel_id });
        }
        let close_script = close_script.unwrap_or_else(|| self.record.local.shutdown_script.clone());
        limits::check_shutdown_script(&close_script).map_err(|e| FlowError::InvalidParams {
            field: "close_script",
            reason: e.reason,
        })?;
        let fee_rate = fee_rate.unwrap_or(self.record.terms.commitment_fee_rate);
        limits::check_fee_rate("fee_rate", fee_rate)?;
        let terms = ShutdownTerms { close_script, fee_rate };
        if let Some(existing) = self.record.close.as_ref().and_then(|c| c.local_shutdown.as_ref()) {
            return if *existing == terms {
                Ok(())
            } else {
                Err(FlowError::InvalidParams {
                    field: "close_script",
                    reason: "a shutdown with other terms was already sent; it cannot change".into(),
                })
            };
        }
        self.check_our_payout(&terms.close_script, fee_rate)?;
        self.close_progress_mut().local_shutdown = Some(terms);
        if let Some(message) = self.shutdown_message() {
            step.send(self.record.peer, message);
        }
        self.sign_closing_when_fixed(step)
            .map_err(|Reject(r)| FlowError::Internal(r))
    }

    /// Our balance, less the fee at `fee_rate`, must pay for a cell of `close_script`.
    fn check_our_payout(&self, close_script: &packed::Script, fee_rate: u64) -> Result<(), FlowError> {
        let invalid = |reason: String| FlowError::InvalidParams {
            field: "close_script",
            reason,
        };
        let needed = occupied_capacity_of_lock(close_script).map_err(|e| invalid(e.to_string()))?;
        let amount = self.record.local.contribution().map_err(|e| invalid(e.to_string()))?;
        // The fee is at most this rate on a small tx; the exact one is checked when the tx is fixed.
        let fee = fee_rate.saturating_mul(2);
        if amount.saturating_sub(fee) < needed {
            return Err(invalid(format!(
                "our {amount} shannons cannot pay for a cell of this script ({needed} shannons) and the fee"
            )));
        }
        Ok(())
    }

    /// `forceCloseChannel`: broadcast our commitment, then claim after the delay.
    pub(crate) fn force_close(&mut self, step: &mut Step) -> Result<(), FlowError> {
        let channel_id = self.id();
        if !self.funded()
            || self
                .record
                .close
                .as_ref()
                .is_some_and(|c| c.commitment_on_chain.is_some())
        {
            return Err(FlowError::NotClosable {
                channel_id,
                state: self.state(),
            });
        }
        if self
            .record
            .close
            .as_ref()
            .is_some_and(|c| c.force_closed_at_ms.is_some())
        {
            return Ok(());
        }
        let commitment = self
            .signed_own_commitment()
            .map_err(|Reject(reason)| FlowError::Internal(reason))?;
        self.close_progress_mut().force_closed_at_ms = Some(step.now_ms);
        self.broadcast_tx(step, commitment);
        Ok(())
    }

    // ---- messages ------------------------------------------------------------------------

    pub(crate) fn on_shutdown(&mut self, step: &mut Step, message: Shutdown) -> Result<(), Reject> {
        if !self.funded() {
            return Err(Reject("Shutdown for a channel that is not funded".into()));
        }
        if self.record.restored_from_backup {
            return Err(Reject(format!("Shutdown: {RESTORED_FROM_BACKUP}")));
        }
        limits::check_shutdown_script(&message.close_script)?;
        if message.fee_rate != 0 {
            limits::check_fee_rate("fee_rate", message.fee_rate)?;
        } else if self.record.close.as_ref().is_none_or(|c| c.local_shutdown.is_none()) {
            // 0 leaves the fee to the side that asked; asking with it, both
            // sides would sign a closing tx that pays no fee.
            return Err(Reject("a Shutdown asking to close must name a fee rate, not 0".into()));
        }
        let terms = ShutdownTerms {
            close_script: message.close_script,
            fee_rate: message.fee_rate,
        };
        if let Some(known) = self.record.close.as_ref().and_then(|c| c.remote_shutdown.as_ref()) {
            // The closing tx, and what our closing nonce signs, is fixed by
            // the first one: a different one is never signed.
            return if *known == terms {
                Ok(())
            } else {
                Err(Reject("a Shutdown with other terms than the first".into()))
            };
        }
        if self
            .record
            .close
            .as_ref()
            .is_some_and(|c| c.force_closed_at_ms.is_some())
        {
            return Err(Reject("Shutdown after we closed unilaterally".into()));
        }
        self.close_progress_mut().remote_shutdown = Some(terms);
        // We did not ask: answer, leaving the fee to the side that asked.
        if self.record.close.as_ref().is_some_and(|c| c.local_shutdown.is_none()) {
            let ours = ShutdownTerms {
                close_script: self.record.local.shutdown_script.clone(),
                fee_rate: 0,
            };
            self.close_progress_mut().local_shutdown = Some(ours);
            if let Some(message) = self.shutdown_message() {
                step.send(self.record.peer, message);
            }
        }
        self.sign_closing_when_fixed(step)
    }

    /// Once the closing tx is fixed: check what it pays us, then sign it.
    fn sign_closing_when_fixed(&mut self, step: &mut Step) -> Result<(), Reject> {
        if !self.closing_fixed() {
            return Ok(());
        }
        let closing = self.closing()?;
        let tx = match closing.build_tx() {
            Ok(tx) => tx,
            Err(error) => {
                // A peer close script its balance cannot pay for: nothing is signed.
                return Err(Reject(format!("the closing tx cannot be built: {error}")));
            }
        };
        // What leaves us: our whole balance, less our own fee, to our close script.
        let payout = closing.payout(&closing.local)?;
        let paid_to_us = tx
            .raw()
            .outputs()
            .into_iter()
            .any(|o| o.lock().as_slice() == closing.local.close_script.as_slice() && capacity_of(&o) == payout);
        if !paid_to_us || tx.raw().outputs().len() != 2 {
            return Err(Reject("the closing tx does not pay us our balance".into()));
        }
        step.send(self.record.peer, self.closing_signed_message()?);
        Ok(())
    }

    pub(crate) fn on_closing_signed(&mut self, step: &mut Step, signature: [u8; 32]) -> Result<(), Reject> {
        if !self.closing_fixed() {
            return Err(Reject("ClosingSigned before both Shutdowns".into()));
        }
        if let Some(known) = self
            .record
            .close
            .as_ref()
            .and_then(|c| c.peer_closing_signature.as_deref())
        {
            return if known == signature {
                Ok(())
            } else {
                Err(Reject("ClosingSigned differs from the first".into()))
            };
        }
        let signer = self.remote()?.funding_pubkey;
        self.with_closing_session(|session, _| Ok(session.verify(&signature, &signer, false)?))?;
        self.close_progress_mut().peer_closing_signature = Some(signature.to_vec());
        let tx = self.complete_closing_tx()?;
        if self.we_asked_to_close() {
            self.broadcast_tx(step, tx);
        }
        Ok(())
    }

    // ---- chain ---------------------------------------------------------------------------

    /// The funding cell of a funded channel whose close is not seen on
    /// chain yet, and its lock: whichever tx spends it (the closing tx or
    /// either commitment, with the cell deps its broadcaster chose) is found
    /// by the chain and handed to [`Channel::on_funding_spent`].
    pub(crate) fn funding_cell_to_watch(&self) -> Option<(packed::OutPoint, packed::Script)> {
        if !self.funded() {
            return None;
        }
        let close = self.record.close.as_ref();
        if close.is_some_and(|c| c.commitment_on_chain.is_some() || c.closing_on_chain.is_some()) {
            return None;
        }
        let funding_tx = self.funding_tx().ok()?;
        let lock = funding_tx.raw().outputs().get(0)?.lock();
        let out_point = packed::OutPoint::new_builder()
            .tx_hash(tx_hash(funding_tx).pack())
            .index(0u32)
            .build();
        Some((out_point, lock))
    }

    /// The txs of a funded channel to watch, and what each is: ours, whose
    /// exact hash we know (to broadcast again after a restart, or to count
    /// the claim's confirmations), and a commitment seen on chain (the tip
    /// that comes with its report times the claim).
    pub(crate) fn close_txs_to_watch(&self) -> Vec<(Hash256, Watched)> {
        if !self.funded() {
            return Vec::new();
        }
        let mut watched = Vec::new();
        let close = self.record.close.as_ref();
        if let Some(claim) = close.and_then(|c| c.claim_tx.as_ref()) {
            watched.push((Hash256(tx_hash(claim)), Watched::Claim));
            return watched;
        }
        if let Some(on_chain) = close.and_then(|c| c.commitment_on_chain.as_ref()) {
            watched.push((on_chain.tx_hash, Watched::Commitment));
            return watched;
        }
        if self.has_peer_closing_signature() {
            if let Ok(tx) = self.complete_closing_tx() {
                watched.push((Hash256(tx_hash(&tx)), Watched::Closing));
            }
        }
        if close.is_some_and(|c| c.force_closed_at_ms.is_some()) {
            if let Ok(tx) = self.signed_own_commitment() {
                watched.push((Hash256(tx_hash(&tx)), Watched::OwnCommitment));
            }
        }
        watched
    }

    /// The tx that spent the funding cell, committed: which of the three it
    /// is, told by what was signed (the raw tx without cell deps, which is
    /// also the MuSig2 message); acted on once it has the confirmations.
    pub(crate) fn on_funding_spent(
        &mut self,
        step: &mut Step,
        tx: &packed::Transaction,
        report: TxReport,
    ) -> Result<(), Reject> {
        if self.funding_cell_to_watch().is_none() {
            return Ok(());
        }
        let TxStatus::Committed { block_number } = report.status else {
            return Ok(());
        };
        if !report.buried(step.config.funding_confirmations) {
            return Ok(());
        }
        let seen = signed_part(tx);
        let hash = Hash256(tx_hash(tx));
        let is = |candidate: Result<packed::Transaction, Reject>| candidate.is_ok_and(|c| signed_part(&c) == seen);
        if self.closing_fixed() && is(self.closing().and_then(|c| Ok(c.build_tx()?))) {
            // Watched (the funding cell still) until it settles: then the keys go.
            if !report.buried(step.config.settle_depth()) {
                return Ok(());
            }
            self.close_progress_mut().closing_on_chain = Some(hash);
            self.record
                .settle_as_tombstone(CloseFlags::COOPERATIVE, "closed cooperatively".into(), step.now_ms);
            return Ok(());
        }
        for holder_is_local in [true, false] {
            if is(self.commitment_tx(holder_is_local)) {
                let epoch = report
                    .block_epoch
                    .ok_or_else(|| Reject("a committed tx without its block's epoch".into()))?;
                return self.commitment_seen(step, holder_is_local, hash, block_number, epoch, report);
            }
        }
        Err(Reject(format!(
            "the funding cell was spent by {hash}, which is none of this channel's closing or commitment txs"
        )))
    }

    /// A commitment is committed with its confirmations: the delay runs from its block.
    fn commitment_seen(
        &mut self,
        step: &mut Step,
        holder_is_local: bool,
        tx_hash: Hash256,
        block_number: u64,
        epoch: u64,
        report: TxReport,
    ) -> Result<(), Reject> {
        self.close_progress_mut().commitment_on_chain = Some(CommitmentOnChain {
            holder_is_local,
            tx_hash,
            block_number,
            epoch,
        });
        step.actions.push(Action::Emit(Event::CommitmentOnChain {
            channel_id: self.id(),
            tx_hash,
            holder_is_local,
            claimable_at_epoch: self.claimable_at_epoch(epoch),
        }));
        self.claim_when_due(step, report)
    }

    /// A report on one of [`Channel::close_txs_to_watch`].
    pub(crate) fn on_close_tx_status(
        &mut self,
        step: &mut Step,
        watched: Watched,
        tx_hash: Hash256,
        report: TxReport,
    ) -> Result<(), Reject> {
        let confirmations = step.config.funding_confirmations;
        // A tx that ends the channel ends it (and wipes its keys) only once
        // settled; a commitment is acted on at the funding's depth.
        let settled = report.buried(step.config.settle_depth());
        match watched {
            Watched::Closing => {
                if settled {
                    self.record.settle_as_tombstone(
                        CloseFlags::COOPERATIVE,
                        "closed cooperatively".into(),
                        step.now_ms,
                    );
                } else if not_in_the_nodes_hands(&report) && self.has_peer_closing_signature() {
                    let tx = self.complete_closing_tx()?;
                    self.broadcast_tx(step, tx);
                }
                Ok(())
            }
            Watched::OwnCommitment => match report.status {
                TxStatus::Committed { block_number } if report.buried(confirmations) => {
                    let epoch = report
                        .block_epoch
                        .ok_or_else(|| Reject("a committed tx without its block's epoch".into()))?;
                    self.commitment_seen(step, true, tx_hash, block_number, epoch, report)
                }
                _ if not_in_the_nodes_hands(&report) => {
                    let tx = self.signed_own_commitment()?;
                    self.broadcast_tx(step, tx);
                    Ok(())
                }
                _ => Ok(()),
            },
            Watched::Commitment => match report.status {
                TxStatus::Committed { block_number } => {
                    // Each committed report says where it stands: one wrong
                    // epoch, stored for good, put the claim off for ever.
                    if let Some(epoch) = report.block_epoch {
                        let on_chain = self.record.close.as_mut().and_then(|c| c.commitment_on_chain.as_mut());
                        if let Some(on_chain) = on_chain.filter(|c| (c.block_number, c.epoch) != (block_number, epoch))
                        {
                            on_chain.block_number = block_number;
                            on_chain.epoch = epoch;
                        }
                    }
                    self.claim_when_due(step, report)
                }
                TxStatus::Unknown | TxStatus::Rejected if self.pending_claim_lookup.is_none() => {
                    // Gone from the chain (a reorganisation deeper than the
                    // confirmations, maybe with the other commitment in its
                    // place, or a node that had lied): watch the funding cell
                    // again, which finds whichever tx spends it now.
                    if let Some(close) = self.record.close.as_mut() {
                        close.commitment_on_chain = None;
                    }
                    self.commitment_cell_spent = false;
                    self.refused_claim = None;
                    Ok(())
                }
                _ => Ok(()),
            },
            Watched::Claim => {
                if settled {
                    let side = match self.record.close.as_ref().and_then(|c| c.commitment_on_chain.as_ref()) {
                        Some(on_chain) if !on_chain.holder_is_local => CloseFlags::UNCOOPERATIVE_REMOTE,
                        _ => CloseFlags::UNCOOPERATIVE_LOCAL,
                    };
                    self.record.settle_as_tombstone(
                        side,
                        "closed unilaterally; our share was claimed".into(),
                        step.now_ms,
                    );
                } else if report.status == TxStatus::Unknown {
                    // Sent again at each poll the node does not know it: it
                    // may have lost a claim it took (the driver runs one
                    // send loop per tx).
                    if let Some(tx) = self.record.close.as_ref().and_then(|c| c.claim_tx.clone()) {
                        self.broadcast_tx(step, tx);
                    }
                } else if report.status == TxStatus::Rejected {
                    self.on_claim_refused(step)?;
                }
                Ok(())
            }
        }
    }

    /// The epoch from which the commitment cell can be claimed: the
    /// committing block's epoch plus the delay.
    pub(crate) fn claimable_at_epoch(&self, commit_epoch: u64) -> u64 {
        add_epochs(commit_epoch, self.record.terms.commitment_delay_epoch)
    }

    /// Once the delay has passed, and no claim is out: read the commitment
    /// cell through the hash-checked path, to claim our share of it.
    fn claim_when_due(&mut self, step: &mut Step, report: TxReport) -> Result<(), Reject> {
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        if self.record.close.as_ref().is_some_and(|c| c.claim_tx.is_some()) || self.pending_claim_lookup.is_some() {
            return Ok(());
        }
        let due = EpochNumberWithFraction::from_full_value(self.claimable_at_epoch(on_chain.epoch));
        if EpochNumberWithFraction::from_full_value(report.tip.epoch) < due {
            return Ok(());
        }
        if self.commitment_cell_spent {
            return self.look_up_recreated_cell(step, on_chain.holder_is_local);
        }
        let Some(out_point) = self.commitment_cell() else {
            return Ok(());
        };
        self.look_up_claimable_cell(step, out_point);
        Ok(())
    }

    /// The commitment-lock cell of the commitment tx on chain (its one output).
    pub(crate) fn commitment_cell(&self) -> Option<packed::OutPoint> {
        let on_chain = self.record.close.as_ref()?.commitment_on_chain.as_ref()?;
        Some(
            packed::OutPoint::new_builder()
                .tx_hash(on_chain.tx_hash.0.pack())
                .index(0u32)
                .build(),
        )
    }

    /// The commitment-lock output as the commitment tx on chain made it.
    fn commitment_cell_output(&self, holder_is_local: bool) -> Result<packed::CellOutput, Reject> {
        self.commitment_tx(holder_is_local)?
            .raw()
            .outputs()
            .get(0)
            .ok_or_else(|| Reject("a commitment without its output".into()))
    }

    fn look_up_claimable_cell(&mut self, step: &mut Step, out_point: packed::OutPoint) {
        self.pending_claim_lookup = Some(out_point.clone());
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::ResolveInputs {
                out_points: vec![out_point],
            },
        });
    }

    /// The answer to a claim lookup: the commitment cell, or the cell the
    /// other side's claim re-created, as its transaction holds it.
    /// Any answer ends the lookup, even one refused: a refusal undoes the
    /// step, and a lookup left waiting would never be asked again, so it is
    /// reported here and the next poll asks afresh.
    pub(crate) fn on_claimable_cell(
        &mut self,
        step: &mut Step,
        out_points: &[packed::OutPoint],
        cells: Vec<Option<ResolvedCell>>,
    ) -> Result<(), Reject> {
        let Some(asked) = self.pending_claim_lookup.take() else {
            return Err(Reject("no claim lookup is waiting for this answer".into()));
        };
        if let Err(Reject(reason)) = self.claim_from_answer(step, asked, out_points, cells) {
            step.actions.push(Action::Emit(Event::FundingTxRejected {
                channel_id: self.id(),
                reason,
            }));
        }
        Ok(())
    }

    fn claim_from_answer(
        &mut self,
        step: &mut Step,
        asked: packed::OutPoint,
        out_points: &[packed::OutPoint],
        cells: Vec<Option<ResolvedCell>>,
    ) -> Result<(), Reject> {
        let [cell] =
            <[Option<ResolvedCell>; 1]>::try_from(cells).map_err(|_| Reject("one cell was asked for".into()))?;
        if out_points.len() != 1 || out_points[0].as_slice() != asked.as_slice() {
            return Err(Reject("the chain's answer is not about the cell asked for".into()));
        }
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        let cell = cell.ok_or_else(|| Reject("the commitment cell's transaction is unknown".into()))?;
        if cell.output.type_().is_some() || !cell.data.is_empty() {
            return Err(Reject("the commitment cell carries a type or data".into()));
        }
        let original = self.commitment_cell_output(on_chain.holder_is_local)?;
        let script = if cell.output.lock().as_slice() == original.lock().as_slice() {
            None
        } else if cell.output.lock().as_slice() == self.recreated_commitment_lock(on_chain.holder_is_local)?.as_slice()
        {
            let floor = self.recreated_cell_floor(on_chain.holder_is_local)?;
            if capacity_of(&cell.output) < floor {
                return Err(Reject(format!(
                    "the cell found under our re-created lock holds {} shannons, less than the {floor} our share left",
                    capacity_of(&cell.output)
                )));
            }
            Some(self.settlement_script_after_other_claim(on_chain.holder_is_local)?)
        } else {
            return Err(Reject("the cell found is not this channel's commitment cell".into()));
        };
        let claim = self.claim_commitment_share(
            on_chain.holder_is_local,
            asked,
            cell.output,
            script,
            self.claim_fee_rate(),
        )?;
        self.close_progress_mut().claim_tx = Some(claim.clone());
        self.broadcast_tx(step, claim);
        Ok(())
    }

    /// Our claim was refused. A node refuses it when the cell it spends is
    /// gone (the other side claimed first and re-created a cell for our
    /// share), but also when it is a block behind (immature) or its pool is
    /// full: the commitment cell's liveness says which. A refused claim of
    /// the re-created cell is looked up afresh. Whatever the node said, the
    /// next claim pays twice the fee rate: its reason is not to be trusted,
    /// and the most a lying node can make us pay is `MAX_FEE_RATE` on one
    /// small tx (under 0.01 CKB).
    pub(crate) fn on_claim_refused(&mut self, step: &mut Step) -> Result<(), Reject> {
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        let refused = self.close_progress_mut().claim_tx.take();
        if refused.is_some() {
            self.claim_fee_rate = Some(self.claim_fee_rate().saturating_mul(2).min(limits::MAX_FEE_RATE));
        }
        if self.commitment_cell_spent {
            return self.look_up_recreated_cell(step, on_chain.holder_is_local);
        }
        self.refused_claim = refused;
        if let Some(cell) = self.commitment_cell() {
            step.actions.push(Action::QueryChain {
                channel_id: self.id(),
                query: ChainQuery::InputsLive {
                    out_points: vec![cell],
                    at_tip: 0,
                },
            });
        }
        Ok(())
    }

    /// The fee rate our next claim pays: the channel's commitment fee rate,
    /// stepped up by refusals.
    fn claim_fee_rate(&self) -> u64 {
        self.claim_fee_rate.unwrap_or(self.record.terms.commitment_fee_rate)
    }

    /// Whether the commitment cell our refused claim spent is live: then the
    /// next poll claims it again. Not live (spent, or unknown to a node
    /// behind), the tx that spent it is read through the hash-checked path.
    pub(crate) fn on_commitment_cell_live(&mut self, step: &mut Step, live: bool) -> Result<(), Reject> {
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        if live || self.commitment_cell_spent {
            return Ok(());
        }
        let Some(out_point) = self.commitment_cell() else {
            return Ok(());
        };
        let lock = self.commitment_cell_output(on_chain.holder_is_local)?.lock();
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::SpenderOf { out_point, lock },
        });
        Ok(())
    }

    /// The tx that spent the commitment cell after our claim was refused:
    /// that claim itself (another node took it) is watched again until it
    /// confirms; another tx is the other side's claim, and the cell it
    /// re-created for our share is looked for. None found (a node behind,
    /// or decoy spends hiding it): the re-created cell is looked for too,
    /// and the next poll claims again and asks again. One not committed:
    /// the next poll does.
    pub(crate) fn on_commitment_cell_spender(
        &mut self,
        step: &mut Step,
        spender: Option<(CheckedTx, TxReport)>,
    ) -> Result<(), Reject> {
        let Some((CheckedTx(spender), report)) = spender else {
            // None found: a node behind, or a spend buried under decoys the
            // other side made under the commitment lock and spent after its
            // claim, past what the search reads. The re-created cell is looked
            // for all the same (it exists only once the other side claimed;
            // the next poll still tries the original cell too).
            return match self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) {
                Some(on_chain) if !self.commitment_cell_spent => {
                    self.look_up_recreated_cell(step, on_chain.holder_is_local)
                }
                _ => Ok(()),
            };
        };
        // A node can make up a tx that spends the cell (its hash is the
        // node's to compute): one not committed is no spender yet.
        if !report.buried(1) {
            return Ok(());
        }
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        if self.commitment_cell_spent || self.record.close.as_ref().is_some_and(|c| c.claim_tx.is_some()) {
            // A claim is out again, or the answer came before: a late answer.
            return Ok(());
        }
        match self.refused_claim.take() {
            // Our claim, as we sent it or as a relay changed its cell deps
            // (not signed): the copy on chain is the one watched.
            Some(claim) if signed_part(&claim) == signed_part(&spender) => {
                self.close_progress_mut().claim_tx = Some(spender);
                Ok(())
            }
            _ => {
                self.commitment_cell_spent = true;
                self.look_up_recreated_cell(step, on_chain.holder_is_local)
            }
        }
    }

    /// Asks the indexer for the cell the other side's claim re-created
    /// (found only once that claim is committed; asked again on each poll).
    fn look_up_recreated_cell(&mut self, step: &mut Step, holder_is_local: bool) -> Result<(), Reject> {
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::LiveCells {
                lock: self.recreated_commitment_lock(holder_is_local)?,
            },
        });
        Ok(())
    }

    /// A close tx was refused: sent again when a poll finds it unknown or rejected.
    pub(crate) fn on_close_broadcast_failed(&mut self, step: &mut Step, reason: String) {
        step.actions.push(Action::Emit(Event::CloseTxRejected {
            channel_id: self.id(),
            reason,
        }));
    }

    /// The indexer's answer for the re-created cell (only a hint): read the
    /// first that holds at least what our share left through the
    /// hash-checked path before claiming it. Anyone can make a cell under
    /// the re-created lock; a smaller one is a decoy (and none: ask again
    /// at the next poll).
    pub(crate) fn on_recreated_cells(
        &mut self,
        step: &mut Step,
        cells: &[crate::chain::LiveCell],
    ) -> Result<(), Reject> {
        if self.pending_claim_lookup.is_some() || self.record.close.as_ref().is_some_and(|c| c.claim_tx.is_some()) {
            return Ok(());
        }
        let Some(on_chain) = self.record.close.as_ref().and_then(|c| c.commitment_on_chain.clone()) else {
            return Ok(());
        };
        let floor = self.recreated_cell_floor(on_chain.holder_is_local)?;
        if let Some(cell) = cells.iter().find(|cell| capacity_of(&cell.output) >= floor) {
            self.look_up_claimable_cell(step, cell.out_point.clone());
        }
        Ok(())
    }

    /// The least the cell the other side's claim re-creates holds: the
    /// commitment cell less the other side's full amount, which is all the
    /// commitment lock lets its claim take.
    fn recreated_cell_floor(&self, holder_is_local: bool) -> Result<u64, Reject> {
        let original = self.commitment_cell_output(holder_is_local)?;
        Ok(capacity_of(&original).saturating_sub(self.remote()?.contribution()?))
    }

    /// The settlement script of a commitment once the other side claimed its share.
    fn settlement_script_after_other_claim(&self, holder_is_local: bool) -> Result<Vec<u8>, Reject> {
        let mut script = self.commitment_settlement_script(holder_is_local)?;
        let other = if holder_is_local {
            1 + SLOT_LEN..1 + 2 * SLOT_LEN
        } else {
            1..1 + SLOT_LEN
        };
        script[other].fill(0);
        Ok(script)
    }

    /// The lock of the cell left after the other side claims its share of
    /// the commitment `holder_is_local` says whose.
    fn recreated_commitment_lock(&self, holder_is_local: bool) -> Result<packed::Script, Reject> {
        let lock = self.commitment_cell_output(holder_is_local)?.lock();
        let script = self.settlement_script_after_other_claim(holder_is_local)?;
        let args = lock.args().raw_data();
        let mut new_args = args
            .get(..36)
            .ok_or_else(|| Reject("short commitment args".into()))?
            .to_vec();
        new_args.extend_from_slice(&crate::crypto::blake160(&script));
        new_args.push(1);
        Ok(lock.as_builder().args(new_args.pack()).build())
    }
}

/// `a + b` for two `EpochNumberWithFraction` values (a block's epoch, as
/// the chain reports it, and a relative delay), as CKB compares since
/// values: exact when the fraction fits, else rounded up to the next whole
/// epoch. Never earlier than the true sum, and never a panic, whatever a
/// faulty node reports: a fraction CKB would not write counts as the next
/// whole epoch, and a sum past the 24-bit epoch number is the last one.
pub(crate) fn add_epochs(a: u64, b: u64) -> u64 {
    let parts = |value: u64| {
        let epoch = EpochNumberWithFraction::from_full_value(value);
        if epoch.length() == 0 || epoch.index() >= epoch.length() {
            (epoch.number().saturating_add(1), 0, 1)
        } else {
            (epoch.number(), epoch.index(), epoch.length())
        }
    };
    let ((a_number, a_index, a_length), (b_number, b_index, b_length)) = (parts(a), parts(b));
    let mut number = a_number.saturating_add(b_number);
    // Each length is below 2^16, so these stay far from u64's limits.
    let (mut index, mut length) = (
        a_index
            .saturating_mul(b_length)
            .saturating_add(b_index.saturating_mul(a_length)),
        a_length.saturating_mul(b_length),
    );
    if index >= length {
        number = number.saturating_add(1);
        index = index.saturating_sub(length);
    }
    if length >= EpochNumberWithFraction::LENGTH_MAXIMUM_VALUE {
        if index > 0 {
            number = number.saturating_add(1);
        }
        (index, length) = (0, 1);
    }
    if number >= EpochNumberWithFraction::NUMBER_MAXIMUM_VALUE {
        return EpochNumberWithFraction::new(EpochNumberWithFraction::NUMBER_MAXIMUM_VALUE.saturating_sub(1), 0, 1)
            .full_value();
    }
    EpochNumberWithFraction::new(number, index, length).full_value()
}

/// A close tx the node does not hold: it never got it (a restart cut the
/// send short), dropped it, or refused it. CKB remembers a refusal and
/// answers "rejected" for days, even once the cause passed (a pool full, a
/// minimum fee rate above ours for a while), so both are sent again at each
/// poll: the user's way out must not wait on the node's memory. The driver
/// runs one send loop per tx, and a tx already held is "sent", not refused.
fn not_in_the_nodes_hands(report: &TxReport) -> bool {
    matches!(report.status, TxStatus::Unknown | TxStatus::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(number: u64, index: u64, length: u64) -> u64 {
        EpochNumberWithFraction::new(number, index, length).full_value()
    }

    #[test]
    fn a_delay_adds_to_a_block_epoch_exactly_or_rounds_up() {
        assert_eq!(add_epochs(epoch(7, 36, 1000), epoch(1, 0, 1)), epoch(8, 36, 1000));
        let sum = EpochNumberWithFraction::from_full_value(add_epochs(epoch(7, 900, 1000), epoch(0, 1, 2)));
        assert_eq!(
            sum.cmp(&EpochNumberWithFraction::new(8, 400, 1000)),
            std::cmp::Ordering::Equal
        );
        // 1000 × 999 does not fit 16 bits: the next whole epoch.
        assert_eq!(add_epochs(epoch(7, 1, 1000), epoch(0, 1, 999)), epoch(8, 0, 1));
    }

    #[test]
    fn an_epoch_a_faulty_node_reports_never_panics_nor_comes_early() {
        let last = EpochNumberWithFraction::NUMBER_MAXIMUM_VALUE - 1;
        // Past the 24-bit epoch number: the last one, not a wrapped early one.
        assert_eq!(add_epochs(epoch(last, 0, 1), epoch(1, 0, 1)), epoch(last, 0, 1));
        // Length 0 reads as CKB normalizes it (index dropped); an index past
        // its length, which CKB never writes, as the next whole epoch.
        let no_length = EpochNumberWithFraction::new_unchecked(5, 3, 0).full_value();
        assert_eq!(add_epochs(no_length, epoch(1, 0, 1)), epoch(6, 0, 1));
        let index_past_length = EpochNumberWithFraction::new_unchecked(5, 900, 10).full_value();
        assert_eq!(add_epochs(index_past_length, epoch(1, 0, 1)), epoch(7, 0, 1));
        for hostile in [u64::MAX, 0, 1 << 63, 0x00ff_ffff_ffff_ffff] {
            let due = EpochNumberWithFraction::from_full_value(add_epochs(hostile, epoch(1, 0, 1)));
            assert!(due.number() >= 1, "{hostile:#x}");
        }
    }
}
