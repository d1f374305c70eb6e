//! The steps both roles take once the funding tx is agreed: commitment
//! signatures, funding signatures, confirmation, `ChannelReady` — and the ways
//! out before the signatures are released (abort, timeout, abandon).

use super::channel::{Channel, Reject, Step};
use super::error::FlowError;
use super::state::CloseFlags;
use super::Event;
use crate::chain::TxStatus;
use crate::crypto::musig;
use crate::primitives::PubNonceBytes;
use crate::tx::validate::check_witnesses;

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

    pub(crate) fn on_commitment_signed(&mut self, step: &mut Step, signature: [u8; 32]) -> Result<(), Reject> {
        if !self.tx_final() {
            return Err(Reject("CommitmentSigned before the funding tx was agreed".into()));
        }
        if self.record.peer_commitment_signature.is_some() {
            // A retransmission; the first valid signature stands.
            return Ok(());
        }
        self.verify_peer_commitment_signature(step.config, &signature)?;
        let before = self.progress();
        self.record.peer_commitment_signature = Some(signature.to_vec());
        if let Some(ext) = &mut self.record.external_funding {
            ext.peer_commitment_signed_received = true;
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
        let before = self.progress();
        self.record.peer_witnesses = Some(witnesses);
        self.after_signature_progress(step, before)
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
        if !self.released() || self.record.funding_confirmed {
            return Ok(());
        }
        match status {
            TxStatus::Unknown if self.is_broadcaster() && self.complete() && !self.broadcast_sent => {
                // After a restart we cannot know whether the broadcast before it
                // reached the node; the node not knowing the tx settles it.
                self.broadcast(step)?;
            }
            TxStatus::Committed { block_number } => {
                let confirmations = (tip_block_number + 1).saturating_sub(block_number);
                if confirmations >= step.config.funding_confirmations {
                    self.record.funding_confirmed = true;
                    step.send(self.record.peer, self.channel_ready_message());
                    self.on_ready_progress();
                }
            }
            TxStatus::Rejected => {
                self.broadcast_sent = false;
                step.actions.push(super::Action::Emit(Event::FundingTxRejected {
                    channel_id: self.id(),
                    reason: "the chain rejected or dropped the funding tx".into(),
                }));
            }
            TxStatus::Unknown | TxStatus::Pending => {}
        }
        Ok(())
    }

    pub(crate) fn on_broadcast_failed(&mut self, step: &mut Step, reason: String) {
        self.broadcast_sent = false;
        step.actions.push(super::Action::Emit(Event::FundingTxRejected {
            channel_id: self.id(),
            reason,
        }));
    }

    /// The peer gave up. Honoured only while our signatures are still ours.
    pub(crate) fn on_tx_abort(&mut self, step: &mut Step, message: &[u8]) -> Result<(), Reject> {
        if self.is_closed() {
            return Ok(());
        }
        if self.released() || self.is_ready() {
            // An honest peer never does this (see `may_abort`): keep the channel,
            // its keys and the peer's commitment signature.
            return Err(Reject(
                "TxAbort after our funding signatures were released; the channel continues".into(),
            ));
        }
        let reason = String::from_utf8_lossy(message);
        self.close(
            CloseFlags::FUNDING_ABORTED,
            format!("the peer aborted the funding: {reason}"),
            step.now_ms,
        );
        Ok(())
    }

    /// The external-funding deadline passed: abort and tell the peer.
    pub(crate) fn on_deadline(&mut self, step: &mut Step) {
        let Some(deadline) = self.deadline_ms(step.config) else {
            return;
        };
        if step.now_ms < deadline {
            return;
        }
        let seconds = step.config.external_funding_timeout_ms / 1000;
        let reason = if self.is_initiator() {
            format!("external funding timed out: the signed funding tx did not arrive within {seconds} s")
        } else {
            format!("external funding timed out: the initiator did not complete the funding within {seconds} s")
        };
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
