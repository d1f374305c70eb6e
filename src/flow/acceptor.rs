//! The acceptor: accepts an externally funded channel, adds its reserve from
//! its own wallet, and releases its witnesses only after it has verified the
//! initiator's commitment signature.

use std::collections::HashSet;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Acceptor, Channel, PendingCheck, Reject, Step};
use super::config::{AcceptorConfig, NodeConfig};
use super::initiator::{check_party, check_peer_cell, final_channel_id, local_params};
use super::limits;
use super::record::{announced_party, party_message, ChannelRecord, ChannelTerms, PartyParams, Role, SCHEMA_VERSION};
use super::state::CloseFlags;
use super::{Action, ChainQuery};
use crate::chain::{LiveCell, ResolvedCell};
use crate::crypto::keys::ChannelKeys;
use crate::primitives::Hash256;
use crate::tx::default_lock::SIGNATURE_LEN;
use crate::tx::fee::{
    add, capacity_of, occupied_capacity, occupied_capacity_of_lock, outputs_capacity, sum, tx_fee, Overflow,
};
use crate::tx::funding::{
    add_acceptor_part, is_plain_capacity_cell, Contribution, MAX_ACCEPTOR_INPUTS, MAX_INITIATOR_INPUTS,
};
use crate::wire::{AcceptChannel, FiberMessage};
use crate::wire::{OpenChannel, CHANNEL_FLAG_PUBLIC};

/// Margin over the exact need when picking candidate cells at accept time,
/// before the initiator's part (and so the exact fee) is known.
const SELECTION_MARGIN: u64 = crate::tx::fee::SHANNONS_PER_CKB;

/// The initiator's announced parameters, or why the channel is refused.
pub(crate) fn check_open_channel(config: &NodeConfig, message: &OpenChannel) -> Result<PartyParams, Reject> {
    if message.chain_hash != config.chain_hash {
        return Err(Reject(format!(
            "chain hash {} is not this node's chain",
            message.chain_hash
        )));
    }
    if message.funding_udt_type_script.is_some() {
        return Err(Reject("UDT channels are not supported".into()));
    }
    if message.channel_flags & CHANNEL_FLAG_PUBLIC != 0 {
        return Err(Reject("public channels are not supported".into()));
    }
    limits::check_fee_rate("funding_fee_rate", message.funding_fee_rate)?;
    limits::check_fee_rate("commitment_fee_rate", message.commitment_fee_rate)?;
    limits::check_commitment_delay(message.commitment_delay_epoch)?;
    let funding_amount = u64::try_from(message.funding_amount)
        .ok()
        .filter(|amount| *amount > 0)
        .ok_or_else(|| Reject("funding_amount must be a non-zero CKB capacity".into()))?;
    let params = announced_party!(message, funding_amount);
    check_party(
        &params,
        crate::tx::commitment::commitment_fee(&config.commitment_lock, message.commitment_fee_rate)?,
    )?;
    Ok(params)
}

/// Cells to fund `amount` from, taken in order until they also cover a change
/// cell and a margin for the fee; the exact pick happens once the initiator's
/// part is known.
pub(crate) fn select_candidates(
    acceptor: &AcceptorConfig,
    cells: &[LiveCell],
    reserved: &HashSet<packed::OutPoint>,
    amount: u64,
) -> Result<Vec<LiveCell>, Reject> {
    let target = sum(
        [
            amount,
            occupied_capacity_of_lock(&acceptor.wallet_lock)?,
            SELECTION_MARGIN,
        ],
        "the reserve to fund",
    )?;
    let mut picked = Vec::new();
    let mut total = 0u64;
    let plain = cells
        .iter()
        .filter(|c| is_plain_capacity_cell(c) && !reserved.contains(&c.out_point));
    for cell in plain.take(MAX_ACCEPTOR_INPUTS) {
        total = add(total, capacity_of(&cell.output), "the candidate cells")?;
        picked.push(cell.clone());
        if total >= target {
            return Ok(picked);
        }
    }
    if total > amount {
        // Perhaps enough without a change cell; the exact build will tell.
        return Ok(picked);
    }
    Err(Reject(format!(
        "the counterparty cannot fund its reserve right now: it needs {amount} shannons and has {total} free"
    )))
}

/// A new acceptor channel, ready to send `AcceptChannel`.
pub(crate) fn accept_channel(
    config: &NodeConfig,
    peer: crate::primitives::NodeId,
    message: &OpenChannel,
    remote: PartyParams,
    candidates: Vec<LiveCell>,
    channel_seed: [u8; 32],
    now_ms: u64,
) -> Result<Channel, Reject> {
    let acceptor = config
        .acceptor
        .as_ref()
        .ok_or_else(|| Reject("this node does not accept channels".into()))?;
    let keys = ChannelKeys::derive(&config.node_secret, &channel_seed);
    let local = local_params(
        &keys,
        acceptor.funding_amount,
        acceptor.wallet_lock.clone(),
        remote.max_tlc_value_in_flight,
        remote.max_tlc_number_in_flight,
    )?;
    // The acceptor waits longer than the initiator, so the initiator's own
    // abort normally reaches it first.
    let timeout_ms = config.external_funding_timeout_ms.saturating_add(acceptor.grace_ms);
    let record = ChannelRecord {
        schema_version: SCHEMA_VERSION,
        channel_id: final_channel_id(&local.tlc_basepoint, &remote.tlc_basepoint),
        temporary_channel_id: message.channel_id,
        role: Role::Acceptor,
        peer,
        created_at_ms: now_ms,
        channel_seed: Hash256(channel_seed),
        key_check: Some(keys.key_check(&local.funding_pubkey)),
        terms: ChannelTerms {
            chain_hash: message.chain_hash,
            funding_fee_rate: message.funding_fee_rate,
            commitment_fee_rate: message.commitment_fee_rate,
            commitment_delay_epoch: message.commitment_delay_epoch,
            channel_flags: message.channel_flags,
            funding_lock: config.funding_lock.clone(),
            commitment_lock: config.commitment_lock.clone(),
            timeout_ms,
        },
        local,
        remote: Some(remote),
        own_cells: candidates,
        deadline_ms: now_ms.saturating_add(timeout_ms),
        funding_tx: None,
        peer_inputs_checked: false,
        funding_inputs: Vec::new(),
        peer_tx_complete_nonce: None,
        peer_commitment_signature: None,
        peer_witnesses: None,
        funding_confirmed: false,
        peer_channel_ready: false,
        external_funding: None,
        peer_next_commitment_nonce: None,
        close: None,
        closed: None,
        commitment_signed_held: false,
        restored_from_backup: false,
    };
    Ok(Channel::new(record, config))
}

impl Channel {
    /// Our wallet's signatures of our inputs, made on demand (they are deterministic).
    pub(crate) fn wallet_witnesses(&self, config: &NodeConfig) -> Result<Vec<Vec<u8>>, Reject> {
        let acceptor = config
            .acceptor
            .as_ref()
            .ok_or_else(|| Reject("not an acceptor".into()))?;
        let unsigned = self.funding_tx()?;
        let key = k256::ecdsa::SigningKey::from_bytes(&acceptor.wallet_key.into())
            .map_err(|_| Reject("invalid acceptor wallet key".into()))?;
        let group: Vec<usize> = self.own_input_range().collect();
        let signed = crate::tx::default_lock::sign_group(unsigned, &group, &key)?;
        Ok(crate::tx::validate::witnesses_of(&signed))
    }

    pub fn accept_channel_message(&self) -> FiberMessage {
        let r = &self.record;
        FiberMessage::AcceptChannel(party_message!(AcceptChannel, &r.local, {
            channel_id: r.temporary_channel_id,
        }))
    }

    /// A retransmitted `OpenChannel` for a channel we already accepted.
    pub(crate) fn answers_open_channel(&self, config: &NodeConfig, message: &OpenChannel) -> bool {
        match check_open_channel(config, message) {
            Ok(params) => self.record.remote.as_ref() == Some(&params),
            Err(_) => false,
        }
    }
}

impl Acceptor<'_> {
    /// The acceptor's side of the funding collaboration (its `OpenChannel`
    /// is the node's: no channel exists before it).
    pub(crate) fn on_message(&mut self, step: &mut Step, message: FiberMessage) -> Result<(), Reject> {
        match message {
            FiberMessage::TxUpdate(m) => self.on_tx_update(step, m.tx),
            FiberMessage::TxComplete(m) => self.on_tx_complete(step, m.next_commitment_nonce),
            other => Err(Reject(format!("{} is not expected by the Acceptor", other.name()))),
        }
    }

    /// The initiator's part: check its shape now, and on chain next every
    /// input it spends together with our own candidate cells.
    pub(crate) fn on_tx_update(&mut self, step: &mut Step, tx: packed::Transaction) -> Result<(), Reject> {
        if self.record.peer_inputs_checked {
            let ours = self.funding_tx()?;
            let initiator_inputs = self.initiator_input_count();
            let same_prefix = tx.raw().inputs().len() == initiator_inputs
                && tx
                    .raw()
                    .inputs()
                    .into_iter()
                    .zip(ours.raw().inputs())
                    .all(|(a, b)| a.as_slice() == b.as_slice());
            return if same_prefix {
                Ok(())
            } else {
                Err(Reject("TxUpdate after our part was added; it changes nothing".into()))
            };
        }
        if let Some(answer) = self.update_during_check(&tx) {
            return answer;
        }
        if let Err(reason) = self.check_initiator_part(&tx) {
            self.abort(step, format!("the initiator's funding tx was refused: {reason}"));
            return Ok(());
        }
        let candidates: Vec<packed::OutPoint> = self.record.own_cells.iter().map(|c| c.out_point.clone()).collect();
        let pending = PendingCheck::new(tx, candidates);
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::ResolveInputs {
                out_points: pending.out_points.clone(),
            },
        });
        self.pending_check = Some(pending);
        Ok(())
    }

    fn check_initiator_part(&self, tx: &packed::Transaction) -> Result<(), String> {
        limits::check_funding_tx_size(tx).map_err(|e| e.to_string())?;
        let raw = tx.raw();
        let funding = raw.outputs().get(0).ok_or("no funding output")?;
        // The whole script, not just its args: a lock of the initiator's own
        // that ignores the args would let it spend our reserve alone.
        let expected = self.expected_funding_output().map_err(|Reject(r)| r)?;
        if funding.lock().as_slice() != expected.lock.as_slice() || funding.type_().is_some() {
            return Err("output 0 is not the channel's 2-of-2 funding output".into());
        }
        let remote = self.remote().map_err(|Reject(r)| r)?;
        let announced = remote.contribution().map_err(|e| e.to_string())?;
        if capacity_of(&funding) != announced {
            return Err(format!(
                "the funding output holds {} shannons instead of the announced {announced}",
                capacity_of(&funding),
            ));
        }
        if raw.outputs_data().len() != raw.outputs().len() || !raw.outputs_data().get(0).is_some_and(|d| d.is_empty()) {
            return Err("outputs_data do not match the outputs".into());
        }
        // Plain cells only, as this module's initiator builds them: our
        // signature covers the whole tx, and a type script may grant a right
        // to whoever's lock is among the inputs (sUDT's owner mode mints).
        // And none CKB would refuse, which would leave our cells held.
        for (index, (output, data)) in raw.outputs().into_iter().zip(raw.outputs_data()).enumerate().skip(1) {
            if output.type_().is_some() || !data.is_empty() {
                return Err(format!("output {index} carries a type script or data"));
            }
            limits::check_hash_type("an output's lock", &output.lock()).map_err(|e| e.to_string())?;
            let occupied = occupied_capacity(&output, 0).map_err(|e| e.to_string())?;
            if capacity_of(&output) < occupied {
                return Err(format!(
                    "output {index} holds {} shannons but occupies {occupied}",
                    capacity_of(&output)
                ));
            }
        }
        if raw.inputs().is_empty() || tx.witnesses().len() != raw.inputs().len() {
            return Err("no inputs, or the witness count does not match the inputs".into());
        }
        if raw.inputs().len() > MAX_INITIATOR_INPUTS {
            return Err(format!("more than {MAX_INITIATOR_INPUTS} inputs"));
        }
        if raw.inputs().into_iter().any(|i| {
            let since: u64 = i.since().unpack();
            since != 0
        }) {
            return Err("an input is not final (since != 0)".into());
        }
        Ok(())
    }

    /// The initiator's inputs and our candidates as the chain knows them;
    /// then add our part, from the checked cells only.
    pub(crate) fn on_resolved_inputs(
        &mut self,
        step: &mut Step,
        out_points: &[packed::OutPoint],
        cells: Vec<Option<ResolvedCell>>,
        reserved_by_others: &HashSet<packed::OutPoint>,
    ) -> Result<(), Reject> {
        let initiator_part = self.take_answered_check(out_points, cells.len())?;
        let acceptor = step
            .config
            .acceptor
            .clone()
            .ok_or_else(|| Reject("not an acceptor".into()))?;
        let initiator_inputs = initiator_part.raw().inputs().len();
        let (initiator_cells, candidate_cells) = cells.split_at(initiator_inputs.min(cells.len()));

        let fee_rate = self.record.terms.funding_fee_rate;
        let our_locks = self.our_locks(step.config)?;
        let checked = (|| -> Result<Vec<ResolvedCell>, String> {
            let mut total = 0u64;
            for (index, cell) in initiator_cells.iter().enumerate() {
                let capacity = check_peer_cell(index, cell.as_ref(), &our_locks)?;
                total = add(total, capacity, "the initiator's inputs").map_err(|e| e.to_string())?;
            }
            let needed = (|| -> Result<u64, Overflow> {
                add(
                    outputs_capacity(&initiator_part, 0)?,
                    tx_fee(&initiator_part, fee_rate)?,
                    "the initiator's outputs and fee",
                )
            })()
            .map_err(|e| e.to_string())?;
            if total < needed {
                return Err(format!(
                    "the initiator's inputs hold {total} shannons but its part needs {needed}"
                ));
            }
            initiator_cells
                .iter()
                .map(|c| c.clone().ok_or_else(|| "an input vanished".to_owned()))
                .collect()
        })();
        let initiator_checked = match checked {
            Ok(cells) => cells,
            Err(reason) => {
                self.abort(step, format!("the initiator's funding tx was refused: {reason}"));
                return Ok(());
            }
        };
        // Our own candidates as their transactions say, whatever the indexer
        // said: only plain cells of our wallet lock, with their true capacity.
        let own_candidates: Vec<LiveCell> = self
            .record
            .own_cells
            .iter()
            .zip(candidate_cells)
            .filter_map(|(candidate, checked)| {
                let checked = checked.as_ref()?;
                let plain = checked.output.type_().is_none() && checked.data.is_empty();
                let ours = checked.output.lock().as_slice() == acceptor.wallet_lock.as_slice();
                (plain && ours).then(|| LiveCell {
                    output: checked.output.clone(),
                    output_data: Vec::new(),
                    ..candidate.clone()
                })
            })
            .collect();
        let full = match add_acceptor_part(
            &initiator_part,
            &Contribution {
                cells: &own_candidates,
                excluded: reserved_by_others,
                owner_lock: &acceptor.wallet_lock,
                cell_deps: &acceptor.wallet_cell_deps,
                amount: self.record.local.contribution()?,
                fee_rate,
                max_inputs: MAX_ACCEPTOR_INPUTS,
                // The counterparty's wallet is the default lock.
                witness_lock_len: SIGNATURE_LEN,
            },
        ) {
            Ok(tx) => tx,
            Err(error) => {
                self.abort(step, format!("the counterparty cannot fund its part: {error}"));
                return Ok(());
            }
        };
        let used: Vec<packed::OutPoint> = full
            .raw()
            .inputs()
            .into_iter()
            .skip(initiator_inputs)
            .map(|i| i.previous_output())
            .collect();
        let own_cells: Vec<LiveCell> = used
            .iter()
            .filter_map(|op| own_candidates.iter().find(|c| c.out_point == *op).cloned())
            .collect();
        let mut funding_inputs = initiator_checked;
        funding_inputs.extend(own_cells.iter().map(|cell| ResolvedCell {
            output: cell.output.clone(),
            data: Vec::new(),
        }));
        self.record.own_cells = own_cells;
        self.record.funding_inputs = funding_inputs;
        self.record.funding_tx = Some(full);
        self.record.peer_inputs_checked = true;
        // What we are about to commit to must take from us exactly our reserve and fee.
        if let Err(reason) = self.check_what_leaves(step.config) {
            self.abort(step, format!("refused to add our part: {reason}"));
            return Ok(());
        }
        for message in [self.tx_update_message_now()?, self.tx_complete_message()?] {
            step.send(self.record.peer, message);
        }
        Ok(())
    }

    fn tx_update_message_now(&self) -> Result<crate::wire::FiberMessage, Reject> {
        Ok(crate::wire::FiberMessage::TxUpdate(crate::wire::TxUpdate {
            channel_id: self.id(),
            tx: self.funding_tx()?.clone(),
        }))
    }

    pub(crate) fn on_tx_complete(
        &mut self,
        step: &mut Step,
        nonce: crate::primitives::PubNonceBytes,
    ) -> Result<(), Reject> {
        if !self.record.peer_inputs_checked {
            return Err(Reject("TxComplete before our part of the funding tx was sent".into()));
        }
        let before = self.progress();
        let was_final = self.tx_final();
        self.record_peer_tx_complete(nonce)?;
        if !was_final && self.tx_final() {
            // The initiator's clock restarts at this very moment too.
            self.restart_deadline(step.now_ms);
        }
        self.after_signature_progress(step, before)
    }

    fn abort(&mut self, step: &mut Step, reason: String) {
        self.close(CloseFlags::FUNDING_ABORTED, reason, step.now_ms);
        step.send(self.record.peer, self.tx_abort_message());
    }
}
