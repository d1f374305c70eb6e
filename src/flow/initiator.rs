//! The initiator: opens the channel, builds the funding tx from the user's
//! cells, hands it out unsigned, and releases the user's witnesses only after
//! it has verified the peer's commitment signature.

use std::collections::HashSet;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Channel, Initiator, PendingCheck, Reject, Step};
use super::config::{NodeConfig, OpenChannelParams, *};
use super::error::FlowError;
use super::limits::{self, LimitError};
use super::record::{
    announced_party, ChannelRecord, ChannelTerms, ExternalFundingPersistState, PartyParams, Role, SCHEMA_VERSION,
};
use super::Action;
use crate::chain::{LiveCell, ResolvedCell};
use crate::crypto::keys::{parse_pubkey, ChannelKeys};
use crate::crypto::{blake2b_256, musig};
use crate::primitives::{ChannelId, Hash256};
use crate::tx::commitment::commitment_fee;
use crate::tx::fee::{add, capacity_of, fee_for_size, occupied_capacity, outputs_capacity, sum, Overflow};
use crate::tx::funding::{
    build_initiator_part, min_reserved_ckb_amount, reserved_ckb_amount, with_funding_lock, Contribution,
    MAX_ACCEPTOR_INPUTS, MAX_INITIATOR_INPUTS,
};
use crate::tx::parts::{tx_hash, TxParts};
use crate::tx::validate::{check_signed_tx, witnesses_of, SignedTxError};
use crate::tx::{default_lock, witness_room};
use crate::wire::{AcceptChannel, FiberMessage, CHANNEL_FLAG_EXTERNAL_FUNDING};

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
) -> Result<PartyParams, Overflow> {
    Ok(PartyParams {
        funding_amount,
        reserved_ckb_amount: reserved_ckb_amount(&shutdown_script)?,
        shutdown_script,
        max_tlc_value_in_flight,
        max_tlc_number_in_flight,
        funding_pubkey: keys.funding_pubkey(),
        tlc_basepoint: keys.tlc_basepoint(),
        first_per_commitment_point: keys.per_commitment_point(0),
        second_per_commitment_point: keys.per_commitment_point(1),
        next_commitment_nonce: musig::public_nonce(keys, musig::NonceSlot::OwnCommitment(0), &[]),
        next_revocation_nonce: musig::public_nonce(keys, musig::NonceSlot::Revocation(0), &[]),
    })
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FlowError {
    FlowError::InvalidParams {
        field,
        reason: reason.into(),
    }
}

impl From<LimitError> for FlowError {
    fn from(error: LimitError) -> Self {
        invalid(error.field, error.reason)
    }
}

/// What [`check_open_params`] read from an open's parameters, defaults applied.
pub(crate) struct CheckedOpen {
    funding_amount: u64,
    funding_fee_rate: u64,
    commitment_fee_rate: u64,
    commitment_delay_epoch: u64,
    max_tlc_number_in_flight: u64,
    witness_lock_len: usize,
}

/// Checks an open's parameters before anything waits on them: an open the
/// user got wrong fails at once, not after the peer connects.
pub(crate) fn check_open_params(config: &NodeConfig, params: &OpenChannelParams) -> Result<CheckedOpen, FlowError> {
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
    limits::check_capacity("funding_amount", funding_amount)?;
    let funding_fee_rate = params.funding_fee_rate.unwrap_or(DEFAULT_FEE_RATE);
    limits::check_fee_rate("funding_fee_rate", funding_fee_rate)?;
    let commitment_fee_rate = params.commitment_fee_rate.unwrap_or(DEFAULT_FEE_RATE);
    limits::check_fee_rate("commitment_fee_rate", commitment_fee_rate)?;
    let commitment_delay_epoch = params.commitment_delay_epoch.unwrap_or(DEFAULT_COMMITMENT_DELAY_EPOCH);
    limits::check_commitment_delay(commitment_delay_epoch)?;
    limits::check_shutdown_script(&params.shutdown_script)?;
    limits::check_wallet_cell_deps(params.funding_lock_script_cell_deps.len())?;
    // CKB's default lock may go without (the counterparty names its dep
    // group for its own inputs); any other lock's code must be named, or
    // no node accepts the tx, which shows only after the user's signature
    // left and the flow can no longer be abandoned.
    if params.funding_lock_script_cell_deps.is_empty()
        && !crate::tx::default_lock::is_default_lock(&params.funding_lock_script)
    {
        return Err(invalid(
            "funding_lock_script_cell_deps",
            "required for a lock other than CKB's default one: without the lock's code no node \
             would accept the funding tx",
        ));
    }
    let network = crate::tx::networks::network_name(&config.chain_hash);
    for (field, lock) in [
        ("fundingLock.cell_deps", &config.funding_lock),
        ("commitmentLock.cell_deps", &config.commitment_lock),
    ] {
        limits::check_lock_cell_deps(field, lock.cell_deps.len())?;
        if let (Some(network), true) = (network, lock.cell_deps.is_empty()) {
            return Err(invalid(
                field,
                format!(
                    "required on {network}: without the lock's code cell and ckb-auth no commitment \
                     could be broadcast, so the channel could never be closed without the peer \
                     (the node looks Fiber's published code up once it is open, and again before an \
                     open or a close while it has not found it; it did not find it)"
                ),
            ));
        }
    }
    let max_tlc_number_in_flight = params
        .max_tlc_number_in_flight
        .unwrap_or(DEFAULT_MAX_TLC_NUMBER_IN_FLIGHT);
    limits::check_tlc_number(max_tlc_number_in_flight)?;
    let witness_lock_len = match params.funding_witness_lock_len {
        Some(len) => {
            limits::check_witness_lock_len(len)?;
            usize::try_from(len).map_err(|_| invalid("funding_witness_lock_len", "too large"))?
        }
        None => witness_room::default_lock_len(&params.funding_lock_script),
    };
    Ok(CheckedOpen {
        funding_amount,
        funding_fee_rate,
        commitment_fee_rate,
        commitment_delay_epoch,
        max_tlc_number_in_flight,
        witness_lock_len,
    })
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
    let CheckedOpen {
        funding_amount,
        funding_fee_rate,
        commitment_fee_rate,
        commitment_delay_epoch,
        max_tlc_number_in_flight,
        witness_lock_len,
    } = check_open_params(config, params)?;

    let keys = ChannelKeys::derive(&config.node_secret, &channel_seed);
    let local = local_params(
        &keys,
        funding_amount,
        params.shutdown_script.clone(),
        params.max_tlc_value_in_flight.unwrap_or(u128::from(funding_amount)),
        max_tlc_number_in_flight,
    )
    .map_err(|e| invalid("shutdown_script", e.to_string()))?;
    let contribution = local
        .contribution()
        .map_err(|e| invalid("funding_amount", e.to_string()))?;
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
            amount: contribution,
            fee_rate: funding_fee_rate,
            max_inputs: MAX_INITIATOR_INPUTS,
            witness_lock_len,
        },
    )?;
    let inputs: HashSet<packed::OutPoint> = part.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
    // In input order: the i-th own cell is the one input i spends.
    let own_cells = part
        .raw()
        .inputs()
        .into_iter()
        .filter_map(|input| {
            wallet_cells
                .iter()
                .find(|c| c.out_point == input.previous_output() && inputs.contains(&c.out_point))
                .cloned()
        })
        .collect();

    let temporary_channel_id = temporary_channel_id(&local.tlc_basepoint);
    let timeout_ms = config.external_funding_timeout_ms;
    let record = ChannelRecord {
        schema_version: SCHEMA_VERSION,
        channel_id: temporary_channel_id,
        temporary_channel_id,
        role: Role::Initiator,
        peer: params.pubkey,
        created_at_ms: now_ms,
        channel_seed: Hash256(channel_seed),
        key_check: Some(keys.key_check(&local.funding_pubkey)),
        terms: ChannelTerms {
            chain_hash: config.chain_hash,
            funding_fee_rate,
            commitment_fee_rate,
            commitment_delay_epoch,
            channel_flags: CHANNEL_FLAG_EXTERNAL_FUNDING,
            funding_lock: config.funding_lock.clone(),
            commitment_lock: config.commitment_lock.clone(),
            timeout_ms,
        },
        local,
        remote: None,
        own_cells,
        deadline_ms: now_ms.saturating_add(timeout_ms),
        funding_tx: Some(part),
        peer_inputs_checked: false,
        funding_inputs: Vec::new(),
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
            signed_funding_witnesses: None,
        }),
        peer_next_commitment_nonce: None,
        close: None,
        closed: None,
        commitment_signed_held: false,
        restored_from_backup: false,
    };
    Ok(Channel::new(record, config))
}

/// Checks what a peer announced (in `OpenChannel` or `AcceptChannel`), on
/// a channel whose commitments pay `commitment_fee`.
pub(crate) fn check_party(params: &PartyParams, commitment_fee: u64) -> Result<(), Reject> {
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
    limits::check_capacity("funding_amount", params.funding_amount)?;
    limits::check_capacity("reserved_ckb_amount", params.reserved_ckb_amount)?;
    limits::check_shutdown_script(&params.shutdown_script)?;
    limits::check_tlc_number(params.max_tlc_number_in_flight)?;
    // The commitment fee comes out of the share settled second: when we
    // claim first, the cell re-created for the peer holds its amount less
    // that fee, and CKB refuses our claim if that is below the cell's
    // occupied capacity (no more than the padded shutdown cell's).
    let needed = add(
        min_reserved_ckb_amount(&params.shutdown_script)?,
        commitment_fee,
        "the least reserve",
    )?;
    if params.reserved_ckb_amount < needed {
        return Err(Reject(format!(
            "reserved_ckb_amount {} cannot pay for the cell left to it after our claim ({needed} shannons: \
             the shutdown cell with args padded to 57 bytes, and the commitment fee of {commitment_fee})",
            params.reserved_ckb_amount
        )));
    }
    params.contribution()?;
    Ok(())
}

/// A peer cell that may be an input of the funding tx: it exists, it is
/// plain capacity (no type, no data: nothing is burned), and it is not ours
/// (our wallet signs every input of its lock, so a peer listing one of our
/// cells as its own would have us sign it away).
pub(crate) fn check_peer_cell(
    index: usize,
    cell: Option<&ResolvedCell>,
    our_locks: &[packed::Script],
) -> Result<u64, String> {
    let cell = cell.ok_or_else(|| format!("input {index} does not exist on chain"))?;
    if our_locks
        .iter()
        .any(|lock| lock.as_slice() == cell.output.lock().as_slice())
    {
        return Err(format!("input {index} is one of our own cells"));
    }
    if cell.output.type_().is_some() || !cell.data.is_empty() {
        return Err(format!("input {index} spends a cell with a type script or data"));
    }
    Ok(capacity_of(&cell.output))
}

impl Initiator<'_> {
    /// The initiator's side of the funding collaboration.
    pub(crate) fn on_message(&mut self, step: &mut Step, message: FiberMessage) -> Result<(), Reject> {
        match message {
            FiberMessage::AcceptChannel(m) => self.on_accept_channel(step, m),
            FiberMessage::TxUpdate(m) => self.on_tx_update(step, m.tx),
            FiberMessage::TxComplete(m) => self.on_tx_complete(step, m.next_commitment_nonce),
            other => Err(Reject(format!("{} is not expected by the Initiator", other.name()))),
        }
    }

    pub(crate) fn on_accept_channel(&mut self, step: &mut Step, message: AcceptChannel) -> Result<(), Reject> {
        let funding_amount = u64::try_from(message.funding_amount)
            .map_err(|_| Reject("funding_amount exceeds a CKB capacity".into()))?;
        let remote = announced_party!(&message, funding_amount);
        if let Some(known) = &self.record.remote {
            // A retransmission after a reconnect: fine if identical.
            return if *known == remote {
                Ok(())
            } else {
                Err(Reject("AcceptChannel differs from the one already accepted".into()))
            };
        }
        check_party(
            &remote,
            commitment_fee(
                &self.record.terms.commitment_lock,
                self.record.terms.commitment_fee_rate,
            )?,
        )?;
        let ctx = musig::funding_key_agg(&self.record.local.funding_pubkey, &remote.funding_pubkey)?;
        let funding_lock = self.record.terms.funding_lock.script(&musig::funding_lock_args(&ctx));
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

    /// The acceptor's part arrived: check its shape now, every input on chain next.
    pub(crate) fn on_tx_update(&mut self, step: &mut Step, tx: packed::Transaction) -> Result<(), Reject> {
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
        if let Some(answer) = self.update_during_check(&tx) {
            return answer;
        }
        let expected_funding = self.expected_funding_output()?;
        let addable_deps: Vec<packed::CellDep> = crate::tx::networks::default_lock_dep_group(&step.config.chain_hash)
            .into_iter()
            .collect();
        if let Err(reason) = check_acceptor_part(&own, &tx, &expected_funding, &addable_deps) {
            self.abort_for_bad_peer_tx(step, &reason);
            return Ok(());
        }
        let pending = PendingCheck::new(tx, []);
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: super::ChainQuery::ResolveInputs {
                out_points: pending.out_points.clone(),
            },
        });
        self.pending_check = Some(pending);
        Ok(())
    }

    /// Every input of the acceptor's tx as the chain knows it: ours must be
    /// exactly the cells we built with, the acceptor's must be plain cells of
    /// its own paying for everything it added.
    pub(crate) fn on_resolved_inputs(
        &mut self,
        step: &mut Step,
        out_points: &[packed::OutPoint],
        cells: Vec<Option<ResolvedCell>>,
    ) -> Result<(), Reject> {
        let tx = self.take_answered_check(out_points, cells.len())?;
        match self.check_resolved_inputs(step.config, &tx, &cells) {
            Ok(checked) => {
                self.record.funding_inputs = checked;
                self.record.funding_tx = Some(tx);
                self.record.peer_inputs_checked = true;
                self.finalize(step)
            }
            Err(reason) => {
                self.abort_for_bad_peer_tx(step, &reason);
                Ok(())
            }
        }
    }

    fn check_resolved_inputs(
        &self,
        config: &NodeConfig,
        tx: &packed::Transaction,
        cells: &[Option<ResolvedCell>],
    ) -> Result<Vec<ResolvedCell>, String> {
        let own = self.funding_tx().map_err(|Reject(r)| r)?;
        let our_inputs = self.record.own_cells.len();
        for (index, (own_cell, checked)) in self.record.own_cells.iter().zip(cells).enumerate() {
            let checked = checked
                .as_ref()
                .ok_or_else(|| format!("the CKB node misreported our input {index}: its transaction was not found"))?;
            // The indexer's answer, which the tx was built from, must be what
            // the cell's own transaction says.
            if checked.output.as_slice() != own_cell.output.as_slice() || checked.data != own_cell.output_data {
                return Err(format!(
                    "the CKB node misreported our input {index} ({}): the indexer said {} shannons{}, its transaction holds {} shannons{}",
                    own_cell.out_point,
                    capacity_of(&own_cell.output),
                    plainness(own_cell.output.type_().is_some(), &own_cell.output_data),
                    capacity_of(&checked.output),
                    plainness(checked.output.type_().is_some(), &checked.data)
                ));
            }
            if checked.output.type_().is_some() || !checked.data.is_empty() {
                return Err(format!("our input {index} is not a plain CKB cell"));
            }
        }
        let our_locks = self.our_locks(config).map_err(|Reject(r)| r)?;
        let mut peer_total = 0u64;
        for (index, cell) in cells.iter().enumerate().skip(our_inputs) {
            let capacity = check_peer_cell(index, cell.as_ref(), &our_locks)?;
            // Its signature must be checkable before the user's witnesses
            // leave, and the default lock's is the only one this module checks.
            if cell
                .as_ref()
                .is_some_and(|c| !default_lock::is_default_lock(&c.output.lock()))
            {
                return Err(format!(
                    "input {index} is not under CKB's default lock, so its signature cannot be checked before the user's leaves"
                ));
            }
            peer_total = add(peer_total, capacity, "the peer's inputs").map_err(|e| e.to_string())?;
        }
        // The acceptor pays for everything it added: its outputs, its
        // contribution, and the fee of the bytes it added.
        let remote = self.remote().map_err(|Reject(r)| r)?;
        let fee_rate = self.record.terms.funding_fee_rate;
        let needed = (|| -> Result<u64, Overflow> {
            let added_outputs = outputs_capacity(tx, own.raw().outputs().len())?;
            let fee_share = fee_for_size(tx.as_slice().len(), fee_rate)?
                .saturating_sub(fee_for_size(own.as_slice().len(), fee_rate)?);
            sum(
                [added_outputs, remote.contribution()?, fee_share],
                "what the peer added",
            )
        })()
        .map_err(|e| e.to_string())?;
        if peer_total < needed {
            return Err(format!(
                "the peer's inputs hold {peer_total} shannons but its part needs {needed}"
            ));
        }
        cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                cell.clone()
                    .ok_or_else(|| format!("input {index} does not exist on chain"))
            })
            .collect()
    }

    pub(crate) fn on_tx_complete(
        &mut self,
        step: &mut Step,
        nonce: crate::primitives::PubNonceBytes,
    ) -> Result<(), Reject> {
        self.record_peer_tx_complete(nonce)?;
        self.finalize(step)
    }

    /// Once both the acceptor's part is checked and its `TxComplete` is in, the
    /// tx is final: check what it takes from the user, reply `TxComplete`,
    /// and hand the unsigned tx out when that is safe ([`Initiator::hand_out`]).
    fn finalize(&mut self, step: &mut Step) -> Result<(), Reject> {
        // Once handed out, or once ready (the recovery state is gone), done.
        if self.record.external_funding.is_none() || !self.tx_final() || self.handed_out() {
            return Ok(());
        }
        // The hardware-wallet rule: before the wallet sees the tx, compute
        // from the tx itself what leaves the user's wallet.
        if let Err(reason) = self.check_what_leaves(step.config) {
            self.abort_for_bad_peer_tx(step, &reason);
            return Ok(());
        }
        step.send(self.record.peer, self.tx_complete_message()?);
        self.hand_out(step)
    }

    /// Hands the final unsigned tx to the wallet and starts the clock, once
    /// a signed copy can no longer lock the user's money without a way out:
    /// when the peer signs the funding tx first (it adds less), once its
    /// signature on our commitment is verified. A signed copy may leak (a
    /// redirect URL carries it) and the peer complete and broadcast it; with
    /// that signature the user can close alone. A peer that adds more signs
    /// after us and signs our commitment only after we sign its, which the
    /// initiator does once the user has signed (as upstream): then the
    /// hand-out cannot wait.
    pub(crate) fn hand_out(&mut self, step: &mut Step) -> Result<(), Reject> {
        if self.is_closed() || !self.tx_final() || self.handed_out() {
            return Ok(());
        }
        if !self.we_sign_first() && self.record.peer_commitment_signature.is_none() {
            return Ok(());
        }
        let unsigned = self.funding_tx()?.clone();
        let Some(ext) = self.record.external_funding.as_mut() else {
            return Ok(());
        };
        ext.unsigned_funding_tx = Some(unsigned.clone());
        ext.started_at_ms = step.now_ms;
        self.restart_deadline(step.now_ms);
        step.actions.push(Action::HandOutUnsignedTx {
            open: None,
            channel_id: self.id(),
            temporary_channel_id: self.record.temporary_channel_id,
            unsigned_funding_tx: unsigned,
        });
        Ok(())
    }

    /// The user's signed funding tx. Returns the funding tx hash.
    pub(crate) fn submit(&mut self, step: &mut Step, signed: &packed::Transaction) -> Result<Hash256, FlowError> {
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
        if let Some(deadline_ms) = self.deadline_ms() {
            if step.now_ms >= deadline_ms {
                return Err(FlowError::Expired {
                    channel_id,
                    deadline_ms,
                });
            }
        }
        let funding_tx_hash = Hash256(tx_hash(&unsigned));
        let own_inputs = self.own_input_range();
        check_signed_tx(&unsigned, signed, own_inputs.clone())?;
        // Witnesses do not change the tx hash, so a bad signature would only
        // surface when the chain refuses the tx. Where the lock is the
        // default lock, check it now as the chain would.
        if default_lock::is_default_lock(&ext.funding_lock_script) {
            let group: Vec<usize> = own_inputs.collect();
            default_lock::verify_group(signed, &group, &ext.funding_lock_script.args().raw_data())
                .map_err(|e| SignedTxError::BadSignature(e.to_string()))?;
        }
        let witnesses = witnesses_of(signed);
        // Valid is not enough: the tx it completes must be able to confirm.
        // Refused here, the flow is as it was and the user can still abandon.
        self.check_final_tx(&witnesses)
            .map_err(|reason| SignedTxError::CannotConfirm { reason })?;
        if let Some(previous) = &ext.signed_funding_witnesses {
            if *previous == witnesses {
                return Ok(funding_tx_hash);
            }
            // Until our witnesses leave, a wallet may correct what it sent.
            // After, only once the node refused the tx we hold whole: a
            // signature only the chain checks (JoyID's) was wrong, or
            // nothing would ever fund the channel. The raw tx is the same,
            // so whichever witnesses the chain takes fund the same channel.
            if self.released() && !(self.funding_refused && self.complete()) {
                return Err(FlowError::DifferentTxAlreadySubmitted {
                    channel_id,
                    funding_tx_hash,
                });
            }
        }
        let (before, released) = (self.progress(), self.released());
        let ext = self
            .record
            .external_funding
            .as_mut()
            .ok_or_else(|| FlowError::Internal("the external funding state vanished".into()))?;
        ext.signed_funding_witnesses = Some(witnesses);
        if released {
            // Sent at once; the peer keeps the witnesses it had (it refuses
            // others), which changes nothing: the tx hash is the same.
            self.funding_refused = false;
            self.broadcast(step)
                .map_err(|Reject(reason)| FlowError::Internal(reason))?;
            return Ok(funding_tx_hash);
        }
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

fn plainness(has_type: bool, data: &[u8]) -> String {
    match (has_type, data.is_empty()) {
        (false, true) => String::new(),
        (true, true) => " with a type script".into(),
        (false, false) => format!(" with {} bytes of data", data.len()),
        (true, false) => format!(" with a type script and {} bytes of data", data.len()),
    }
}

/// The acceptor may only add: its inputs after ours, exactly its announced
/// contribution more in the funding output (whose lock must be exactly the
/// channel's), plain change cells after our outputs, its witnesses after
/// ours, and of cell deps only `addable_deps` (its default lock's dep group,
/// where this module knows it). Everything of ours stays byte for byte.
///
/// Whatever could make the tx fail on chain while every input stays live is
/// refused here: a dep on a cell not yet (or no longer) on chain, a dep
/// named twice, a type script on its change. With our witnesses out, such a
/// tx would hold the user's cells with no deadline, and a dep the acceptor
/// publishes later would let it confirm the tx when it chose.
pub(crate) fn check_acceptor_part(
    own: &packed::Transaction,
    theirs: &packed::Transaction,
    expected_funding: &crate::tx::outflow::ExpectedFundingOutput,
    addable_deps: &[packed::CellDep],
) -> Result<(), String> {
    limits::check_funding_tx_size(theirs).map_err(|e| e.to_string())?;
    let ours = TxParts::from_tx(own);
    let them = TxParts::from_tx(theirs);
    if them.version != ours.version || them.header_deps != ours.header_deps {
        return Err("version or header_deps changed".into());
    }
    if !them.cell_deps.starts_with(&ours.cell_deps) {
        return Err("our cell deps were changed".into());
    }
    for (index, dep) in them.cell_deps.iter().enumerate().skip(ours.cell_deps.len()) {
        if !addable_deps.contains(dep) {
            return Err(format!(
                "cell dep {index} was added and is not the default lock's dep group of this chain"
            ));
        }
        if them.cell_deps.get(..index).unwrap_or_default().contains(dep) {
            return Err(format!("cell dep {index} is named twice"));
        }
    }
    if them.inputs.len() <= ours.inputs.len() || !them.inputs.starts_with(&ours.inputs) {
        return Err("our inputs were changed, or no input was added".into());
    }
    let added_inputs = them.inputs.len().saturating_sub(ours.inputs.len());
    if added_inputs > MAX_ACCEPTOR_INPUTS {
        return Err(format!(
            "the peer added {added_inputs} inputs, more than {MAX_ACCEPTOR_INPUTS}"
        ));
    }
    if them.inputs.iter().any(|i| {
        let since: u64 = i.since().unpack();
        since != 0
    }) {
        return Err("an added input is not final (since != 0)".into());
    }
    let our_outputs = ours.outputs.get(1..).unwrap_or_default();
    if them.outputs.len() < ours.outputs.len() || them.outputs.get(1..ours.outputs.len()) != Some(our_outputs) {
        return Err("our outputs were changed".into());
    }
    if them.outputs_data.len() != them.outputs.len() || !them.outputs_data.starts_with(&ours.outputs_data) {
        return Err("outputs_data were changed".into());
    }
    if them
        .outputs_data
        .get(ours.outputs_data.len()..)
        .unwrap_or_default()
        .iter()
        .any(|d| !d.is_empty())
    {
        return Err("an added output carries data".into());
    }
    for (index, output) in them.outputs.iter().enumerate().skip(ours.outputs.len()) {
        if output.type_().is_some() {
            return Err("an added output carries a type script".into());
        }
        limits::check_hash_type("an added output's lock", &output.lock()).map_err(|e| e.to_string())?;
        let occupied = occupied_capacity(output, 0).map_err(|e| e.to_string())?;
        if capacity_of(output) < occupied {
            return Err(format!(
                "added output {index} holds {} shannons but occupies {occupied}",
                capacity_of(output)
            ));
        }
    }
    let funding_theirs = them.outputs.first().ok_or("no funding output")?;
    if funding_theirs.lock().as_slice() != expected_funding.lock.as_slice() || funding_theirs.type_().is_some() {
        return Err("the funding output's lock or type was changed".into());
    }
    if capacity_of(funding_theirs) != expected_funding.capacity {
        return Err(format!(
            "the funding output holds {} shannons instead of {}",
            capacity_of(funding_theirs),
            expected_funding.capacity
        ));
    }
    if them.witnesses.len() != them.inputs.len() || !them.witnesses.starts_with(&ours.witnesses) {
        return Err("our witnesses were changed, or the witness count does not match the inputs".into());
    }
    Ok(())
}
