//! The initiator: opens the channel, builds the funding tx from the user's
//! cells, hands it out unsigned, and releases the user's witnesses only after
//! it has verified the peer's commitment signature.

use std::collections::HashSet;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Channel, Reject, Step};
use super::config::{NodeConfig, OpenChannelParams, *};
use super::error::FlowError;
use super::record::{ChannelRecord, ChannelTerms, ExternalFundingPersistState, PartyParams, Role, SCHEMA_VERSION};
use super::Action;
use crate::chain::LiveCell;
use crate::crypto::keys::{parse_pubkey, ChannelKeys};
use crate::crypto::{blake2b_256, musig};
use crate::primitives::{ChannelId, Hash256};
use crate::tx::fee::{capacity_of, fee_for_size, occupied_capacity_of_lock, outputs_capacity};
use crate::tx::funding::{build_initiator_part, reserved_ckb_amount, with_funding_lock, Contribution};
use crate::tx::parts::{tx_hash, TxParts};
use crate::tx::validate::{check_signed_tx, witnesses_of};
use crate::wire::{AcceptChannel, CHANNEL_FLAG_EXTERNAL_FUNDING};

/// CKB nodes do not relay transactions paying less than this (shannons/KB).
pub const MIN_FEE_RATE: u64 = 1_000;

/// A channel's id once both sides are known: blake2b-256 of both tlc
/// basepoints, sorted.
pub(crate) fn final_channel_id(a: &crate::primitives::Pubkey, b: &crate::primitives::Pubkey) -> ChannelId {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut data = Vec::with_capacity(66);
    data.extend_from_slice(&low.0);
    data.extend_from_slice(&high.0);
    Hash256(blake2b_256(&data))
}

/// The id used until the peer accepts: derived from our fresh basepoint.
pub(crate) fn temporary_channel_id(tlc_basepoint: &crate::primitives::Pubkey) -> ChannelId {
    Hash256(blake2b_256(&tlc_basepoint.0))
}

/// Our announced parameters for a new channel.
pub(crate) fn local_params(
    keys: &ChannelKeys,
    funding_amount: u64,
    shutdown_script: packed::Script,
    max_tlc_value_in_flight: u128,
    max_tlc_number_in_flight: u64,
) -> PartyParams {
    PartyParams {
        funding_amount,
        reserved_ckb_amount: reserved_ckb_amount(&shutdown_script),
        shutdown_script,
        max_tlc_value_in_flight,
        max_tlc_number_in_flight,
        funding_pubkey: keys.funding_pubkey(),
        tlc_basepoint: keys.tlc_basepoint(),
        first_per_commitment_point: keys.per_commitment_point(0),
        second_per_commitment_point: keys.per_commitment_point(1),
        next_commitment_nonce: musig::public_nonce(keys, musig::NonceSlot::OwnCommitment(0), &[]),
        next_revocation_nonce: musig::public_nonce(keys, musig::NonceSlot::Revocation(0), &[]),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FlowError {
    FlowError::InvalidParams {
        field,
        reason: reason.into(),
    }
}

/// Checks `open_channel_with_external_funding` parameters and builds the
/// channel with the user's part of the funding tx.
pub(crate) fn open_channel(
    config: &NodeConfig,
    params: &OpenChannelParams,
    wallet_cells: &[LiveCell],
    reserved: &HashSet<packed::OutPoint>,
    channel_seed: [u8; 32],
    now_ms: u64,
) -> Result<Channel, FlowError> {
    if params.funding_udt_type_script.is_some() {
        return Err(FlowError::UdtChannelsUnsupported);
    }
    if params.public {
        return Err(FlowError::PublicChannelsUnsupported);
    }
    if parse_pubkey(&params.pubkey).is_none() {
        return Err(invalid("pubkey", "not a valid secp256k1 public key"));
    }
    if params.pubkey == config.node_secret.node_id() {
        return Err(invalid("pubkey", "that is this node's own key"));
    }
    let funding_amount = u64::try_from(params.funding_amount)
        .map_err(|_| invalid("funding_amount", "more than a CKB capacity can hold"))?;
    if funding_amount == 0 {
        return Err(invalid("funding_amount", "must be more than zero"));
    }
    let funding_fee_rate = params.funding_fee_rate.unwrap_or(DEFAULT_FEE_RATE);
    if funding_fee_rate < MIN_FEE_RATE {
        return Err(invalid(
            "funding_fee_rate",
            format!("{funding_fee_rate} is below CKB's minimum of {MIN_FEE_RATE} shannons/KB"),
        ));
    }
    let commitment_fee_rate = params.commitment_fee_rate.unwrap_or(DEFAULT_FEE_RATE);
    if commitment_fee_rate < MIN_FEE_RATE {
        return Err(invalid(
            "commitment_fee_rate",
            format!("{commitment_fee_rate} is below CKB's minimum of {MIN_FEE_RATE} shannons/KB"),
        ));
    }
    let commitment_delay_epoch = params.commitment_delay_epoch.unwrap_or(DEFAULT_COMMITMENT_DELAY_EPOCH);
    if commitment_delay_epoch == 0 {
        return Err(invalid("commitment_delay_epoch", "must be more than zero"));
    }

    let keys = ChannelKeys::derive(&config.node_secret, &channel_seed);
    let local = local_params(
        &keys,
        funding_amount,
        params.shutdown_script.clone(),
        params.max_tlc_value_in_flight.unwrap_or(u128::from(funding_amount)),
        params
            .max_tlc_number_in_flight
            .unwrap_or(DEFAULT_MAX_TLC_NUMBER_IN_FLIGHT),
    );
    // The funding lock needs the peer's key; its args have a fixed size, so a
    // zero placeholder gives the same size and fee.
    let placeholder_lock = config.funding_lock.script(&[0; 20]);
    let part = build_initiator_part(
        placeholder_lock,
        &Contribution {
            cells: wallet_cells,
            excluded: reserved,
            owner_lock: &params.funding_lock_script,
            cell_deps: &params.funding_lock_script_cell_deps,
            amount: local.contribution(),
            fee_rate: funding_fee_rate,
        },
    )?;
    let inputs: HashSet<packed::OutPoint> = part.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
    let own_cells = wallet_cells
        .iter()
        .filter(|c| inputs.contains(&c.out_point))
        .cloned()
        .collect();

    let temporary_channel_id = temporary_channel_id(&local.tlc_basepoint);
    let record = ChannelRecord {
        schema_version: SCHEMA_VERSION,
        channel_id: temporary_channel_id,
        temporary_channel_id,
        role: Role::Initiator,
        peer: params.pubkey,
        created_at_ms: now_ms,
        channel_seed: Hash256(channel_seed),
        terms: ChannelTerms {
            chain_hash: config.chain_hash,
            funding_fee_rate,
            commitment_fee_rate,
            commitment_delay_epoch,
            channel_flags: CHANNEL_FLAG_EXTERNAL_FUNDING,
        },
        local,
        remote: None,
        own_cells,
        funding_tx: Some(part),
        peer_inputs_checked: false,
        peer_tx_complete_nonce: None,
        peer_commitment_signature: None,
        peer_witnesses: None,
        funding_confirmed: false,
        peer_channel_ready: false,
        external_funding: Some(ExternalFundingPersistState {
            funding_lock_script: params.funding_lock_script.clone(),
            funding_lock_script_cell_deps: params.funding_lock_script_cell_deps.clone(),
            unsigned_funding_tx: None,
            started_at_ms: now_ms,
            signed_submitted: false,
            peer_commitment_signed_received: false,
            signed_funding_witnesses: None,
        }),
        closed: None,
    };
    Ok(Channel::new(record, &config.node_secret))
}

/// Checks what a peer announced (in `OpenChannel` or `AcceptChannel`).
pub(crate) fn check_party(params: &PartyParams) -> Result<(), Reject> {
    for (key, what) in [
        (&params.funding_pubkey, "funding_pubkey"),
        (&params.tlc_basepoint, "tlc_basepoint"),
        (&params.first_per_commitment_point, "first_per_commitment_point"),
        (&params.second_per_commitment_point, "second_per_commitment_point"),
    ] {
        if parse_pubkey(key).is_none() {
            return Err(Reject(format!("{what} is not a valid public key")));
        }
    }
    musig::check_nonce(&params.next_commitment_nonce, "next_commitment_nonce")?;
    musig::check_nonce(&params.next_revocation_nonce, "next_revocation_nonce")?;
    let needed = occupied_capacity_of_lock(&params.shutdown_script);
    if params.reserved_ckb_amount < needed {
        return Err(Reject(format!(
            "reserved_ckb_amount {} cannot pay for the shutdown cell ({needed} shannons)",
            params.reserved_ckb_amount
        )));
    }
    params
        .funding_amount
        .checked_add(params.reserved_ckb_amount)
        .ok_or_else(|| Reject("funding amount overflows".into()))?;
    Ok(())
}

impl Channel {
    pub(crate) fn initiator_on_accept_channel(
        &mut self,
        step: &mut Step,
        message: AcceptChannel,
    ) -> Result<(), Reject> {
        let funding_amount = u64::try_from(message.funding_amount)
            .map_err(|_| Reject("funding_amount exceeds a CKB capacity".into()))?;
        let remote = PartyParams {
            funding_amount,
            reserved_ckb_amount: message.reserved_ckb_amount,
            shutdown_script: message.shutdown_script,
            max_tlc_value_in_flight: message.max_tlc_value_in_flight,
            max_tlc_number_in_flight: message.max_tlc_number_in_flight,
            funding_pubkey: message.funding_pubkey,
            tlc_basepoint: message.tlc_basepoint,
            first_per_commitment_point: message.first_per_commitment_point,
            second_per_commitment_point: message.second_per_commitment_point,
            next_commitment_nonce: message.next_commitment_nonce,
            next_revocation_nonce: message.next_revocation_nonce,
        };
        if let Some(known) = &self.record.remote {
            // A retransmission after a reconnect: fine if identical.
            return if *known == remote {
                Ok(())
            } else {
                Err(Reject("AcceptChannel differs from the one already accepted".into()))
            };
        }
        check_party(&remote)?;
        let ctx = musig::funding_key_agg(&self.record.local.funding_pubkey, &remote.funding_pubkey)?;
        let funding_lock = step.config.funding_lock.script(&musig::funding_lock_args(&ctx));
        let part = self.funding_tx()?;
        self.record.funding_tx = Some(with_funding_lock(part, funding_lock));
        self.record.channel_id = final_channel_id(&self.record.local.tlc_basepoint, &remote.tlc_basepoint);
        self.record.remote = Some(remote);
        let update = self.messages_to_retransmit(step.config)?;
        for message in update {
            step.send(self.record.peer, message);
        }
        Ok(())
    }

    /// The acceptor's part arrived: check its shape now, its inputs on chain next.
    pub(crate) fn initiator_on_tx_update(&mut self, step: &mut Step, tx: packed::Transaction) -> Result<(), Reject> {
        let own = self.funding_tx()?.clone();
        if self.record.peer_inputs_checked {
            return if tx.as_slice() == own.as_slice() {
                Ok(())
            } else {
                Err(Reject(
                    "TxUpdate after the funding tx was agreed; it changes nothing".into(),
                ))
            };
        }
        if self
            .pending_peer_part
            .as_ref()
            .is_some_and(|p| p.as_slice() == tx.as_slice())
        {
            return Ok(());
        }
        let remote = self.remote()?;
        if let Err(reason) = check_acceptor_part(&own, &tx, remote.contribution()) {
            self.abort_for_bad_peer_tx(step, &reason);
            return Ok(());
        }
        let out_points = tx
            .raw()
            .inputs()
            .into_iter()
            .skip(own.raw().inputs().len())
            .map(|input| input.previous_output())
            .collect();
        self.pending_peer_part = Some(tx);
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: super::ChainQuery::ResolveInputs { out_points },
        });
        Ok(())
    }

    /// The acceptor's inputs as the chain knows them: none may be the user's,
    /// and they must pay for everything the acceptor added.
    pub(crate) fn initiator_on_resolved_inputs(
        &mut self,
        step: &mut Step,
        outputs: Vec<Option<packed::CellOutput>>,
    ) -> Result<(), Reject> {
        let Some(peer_part) = self.pending_peer_part.take() else {
            return Ok(());
        };
        let own = self.funding_tx()?.clone();
        let ext = self
            .record
            .external_funding
            .as_ref()
            .ok_or_else(|| Reject("no external funding state".into()))?;
        let remote = self.remote()?;
        let fee_rate = self.record.terms.funding_fee_rate;
        let added_outputs = outputs_capacity(&peer_part, own.raw().outputs().len());
        let fee_share =
            fee_for_size(peer_part.as_slice().len(), fee_rate) - fee_for_size(own.as_slice().len(), fee_rate);
        let needed = added_outputs + remote.contribution() + fee_share;
        if let Err(reason) = check_peer_inputs(&outputs, &ext.funding_lock_script, needed) {
            self.abort_for_bad_peer_tx(step, &reason);
            return Ok(());
        }
        self.record.funding_tx = Some(peer_part);
        self.record.peer_inputs_checked = true;
        self.initiator_finalize(step)
    }

    pub(crate) fn initiator_on_tx_complete(
        &mut self,
        step: &mut Step,
        nonce: crate::primitives::PubNonceBytes,
    ) -> Result<(), Reject> {
        self.record_peer_tx_complete(nonce)?;
        self.initiator_finalize(step)
    }

    /// Once both the acceptor's part is checked and its `TxComplete` is in, the
    /// tx is final: reply `TxComplete`, hand the unsigned tx out, start the clock.
    fn initiator_finalize(&mut self, step: &mut Step) -> Result<(), Reject> {
        if !self.tx_final()
            || self
                .record
                .external_funding
                .as_ref()
                .is_some_and(|e| e.unsigned_funding_tx.is_some())
        {
            return Ok(());
        }
        let unsigned = self.funding_tx()?.clone();
        let message = self.tx_complete_message(step.config)?;
        let ext = self
            .record
            .external_funding
            .as_mut()
            .ok_or_else(|| Reject("no external funding state".into()))?;
        ext.unsigned_funding_tx = Some(unsigned.clone());
        ext.started_at_ms = step.now_ms;
        step.send(self.record.peer, message);
        step.actions.push(Action::HandOutUnsignedTx {
            channel_id: self.id(),
            temporary_channel_id: self.record.temporary_channel_id,
            unsigned_funding_tx: unsigned,
        });
        Ok(())
    }

    /// The user's signed funding tx. Returns the funding tx hash.
    pub(crate) fn initiator_submit(
        &mut self,
        step: &mut Step,
        signed: &packed::Transaction,
    ) -> Result<Hash256, FlowError> {
        let channel_id = self.id();
        if let Some(closure) = &self.record.closed {
            return Err(FlowError::ChannelClosed {
                channel_id,
                state: self.state(),
                reason: closure.reason.clone(),
            });
        }
        if !self.is_initiator() {
            return Err(FlowError::NotTheInitiator { channel_id });
        }
        let Some(ext) = self.record.external_funding.as_ref() else {
            // Ready: the recovery state is gone, the funding tx is on chain.
            let funding_tx = self
                .record
                .funding_tx
                .as_ref()
                .ok_or(FlowError::NotTheInitiator { channel_id })?;
            let funding_tx_hash = Hash256(tx_hash(funding_tx));
            return if signed.raw().as_slice() == funding_tx.raw().as_slice() {
                Ok(funding_tx_hash)
            } else {
                Err(FlowError::DifferentTxAlreadySubmitted {
                    channel_id,
                    funding_tx_hash,
                })
            };
        };
        let unsigned = ext.unsigned_funding_tx.clone().ok_or(FlowError::FundingTxNotReady {
            channel_id,
            state: self.state(),
        })?;
        if let Some(deadline_ms) = self.deadline_ms(step.config) {
            if step.now_ms >= deadline_ms {
                return Err(FlowError::Expired {
                    channel_id,
                    deadline_ms,
                });
            }
        }
        let funding_tx_hash = Hash256(tx_hash(&unsigned));
        check_signed_tx(&unsigned, signed, self.own_input_range())?;
        let witnesses = witnesses_of(signed);
        if let Some(previous) = &ext.signed_funding_witnesses {
            return if *previous == witnesses {
                Ok(funding_tx_hash)
            } else {
                Err(FlowError::DifferentTxAlreadySubmitted {
                    channel_id,
                    funding_tx_hash,
                })
            };
        }
        let before = self.progress();
        let ext = self.record.external_funding.as_mut().expect("checked above");
        ext.signed_submitted = true;
        ext.signed_funding_witnesses = Some(witnesses);
        self.after_signature_progress(step, before)
            .map_err(|Reject(reason)| FlowError::Internal(reason))?;
        Ok(funding_tx_hash)
    }

    fn abort_for_bad_peer_tx(&mut self, step: &mut Step, reason: &str) {
        self.close(
            super::state::CloseFlags::FUNDING_ABORTED,
            format!("the peer's part of the funding tx was refused: {reason}"),
            step.now_ms,
        );
        step.send(self.record.peer, self.tx_abort_message());
    }
}

/// The acceptor may only add: its inputs after ours, more capacity in the
/// funding output (exactly its announced contribution), its change after our
/// outputs, its witnesses after ours. Everything of ours stays byte for byte.
pub(crate) fn check_acceptor_part(
    own: &packed::Transaction,
    theirs: &packed::Transaction,
    contribution: u64,
) -> Result<(), String> {
    let ours = TxParts::from_tx(own);
    let them = TxParts::from_tx(theirs);
    if them.version != ours.version || them.header_deps != ours.header_deps {
        return Err("version or header_deps changed".into());
    }
    if !them.cell_deps.starts_with(&ours.cell_deps) {
        return Err("our cell deps were changed".into());
    }
    if them.inputs.len() <= ours.inputs.len() || !them.inputs.starts_with(&ours.inputs) {
        return Err("our inputs were changed, or no input was added".into());
    }
    if them.inputs.iter().any(|i| {
        let since: u64 = i.since().unpack();
        since != 0
    }) {
        return Err("an added input is not final (since != 0)".into());
    }
    if them.outputs.len() < ours.outputs.len() || them.outputs[1..ours.outputs.len()] != ours.outputs[1..] {
        return Err("our outputs were changed".into());
    }
    if them.outputs_data.len() != them.outputs.len() || !them.outputs_data.starts_with(&ours.outputs_data) {
        return Err("outputs_data were changed".into());
    }
    if them.outputs_data[ours.outputs_data.len()..]
        .iter()
        .any(|d| !d.is_empty())
    {
        return Err("an added output carries data".into());
    }
    let (funding_ours, funding_theirs) = (&ours.outputs[0], &them.outputs[0]);
    if funding_ours.lock() != funding_theirs.lock() || funding_theirs.type_().is_some() {
        return Err("the funding output's lock or type was changed".into());
    }
    let expected = capacity_of(funding_ours) + contribution;
    if capacity_of(funding_theirs) != expected {
        return Err(format!(
            "the funding output holds {} shannons instead of {expected}",
            capacity_of(funding_theirs)
        ));
    }
    if them.witnesses.len() != them.inputs.len() || !them.witnesses.starts_with(&ours.witnesses) {
        return Err("our witnesses were changed, or the witness count does not match the inputs".into());
    }
    Ok(())
}

/// Every peer input exists, none is locked by `forbidden_lock` (ours: we would
/// be asked to sign it), and together they hold at least `needed`.
pub(crate) fn check_peer_inputs(
    outputs: &[Option<packed::CellOutput>],
    forbidden_lock: &packed::Script,
    needed: u64,
) -> Result<(), String> {
    let mut total = 0u64;
    for (index, output) in outputs.iter().enumerate() {
        let output = output
            .as_ref()
            .ok_or_else(|| format!("peer input {index} does not exist on chain"))?;
        if output.lock().as_slice() == forbidden_lock.as_slice() {
            return Err(format!("peer input {index} is one of our own cells"));
        }
        total = total.saturating_add(capacity_of(output));
    }
    if total < needed {
        return Err(format!(
            "the peer's inputs hold {total} shannons but its part needs {needed}"
        ));
    }
    Ok(())
}
