//! The acceptor: accepts an externally funded channel, adds its reserve from
//! its own wallet, and releases its witnesses only after it has verified the
//! initiator's commitment signature.

use std::collections::HashSet;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::channel::{Channel, Reject, Step};
use super::config::{AcceptorConfig, NodeConfig};
use super::initiator::{check_party, check_peer_inputs, final_channel_id, local_params, MIN_FEE_RATE};
use super::record::{ChannelRecord, ChannelTerms, PartyParams, Role, SCHEMA_VERSION};
use super::state::CloseFlags;
use super::{Action, ChainQuery};
use crate::chain::LiveCell;
use crate::crypto::keys::ChannelKeys;
use crate::crypto::musig;
use crate::primitives::Hash256;
use crate::tx::fee::{capacity_of, fee_for_size, occupied_capacity_of_lock, outputs_capacity, tx_fee};
use crate::tx::funding::{add_acceptor_part, is_plain_capacity_cell, Contribution};
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
    if message.funding_fee_rate < MIN_FEE_RATE || message.commitment_fee_rate < MIN_FEE_RATE {
        return Err(Reject(format!("fee rates must be at least {MIN_FEE_RATE} shannons/KB")));
    }
    if message.commitment_delay_epoch == 0 {
        return Err(Reject("commitment_delay_epoch must be more than zero".into()));
    }
    let funding_amount = u64::try_from(message.funding_amount)
        .ok()
        .filter(|amount| *amount > 0)
        .ok_or_else(|| Reject("funding_amount must be a non-zero CKB capacity".into()))?;
    let params = PartyParams {
        funding_amount,
        reserved_ckb_amount: message.reserved_ckb_amount,
        shutdown_script: message.shutdown_script.clone(),
        max_tlc_value_in_flight: message.max_tlc_value_in_flight,
        max_tlc_number_in_flight: message.max_tlc_number_in_flight,
        funding_pubkey: message.funding_pubkey,
        tlc_basepoint: message.tlc_basepoint,
        first_per_commitment_point: message.first_per_commitment_point,
        second_per_commitment_point: message.second_per_commitment_point,
        next_commitment_nonce: message.next_commitment_nonce,
        next_revocation_nonce: message.next_revocation_nonce,
    };
    check_party(&params)?;
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
    let target = amount + occupied_capacity_of_lock(&acceptor.wallet_lock) + SELECTION_MARGIN;
    let mut picked = Vec::new();
    let mut total = 0u64;
    for cell in cells
        .iter()
        .filter(|c| is_plain_capacity_cell(c) && !reserved.contains(&c.out_point))
    {
        total += capacity_of(&cell.output);
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
    );
    let record = ChannelRecord {
        schema_version: SCHEMA_VERSION,
        channel_id: final_channel_id(&local.tlc_basepoint, &remote.tlc_basepoint),
        temporary_channel_id: message.channel_id,
        role: Role::Acceptor,
        peer,
        created_at_ms: now_ms,
        channel_seed: Hash256(channel_seed),
        terms: ChannelTerms {
            chain_hash: message.chain_hash,
            funding_fee_rate: message.funding_fee_rate,
            commitment_fee_rate: message.commitment_fee_rate,
            commitment_delay_epoch: message.commitment_delay_epoch,
            channel_flags: message.channel_flags,
        },
        local,
        remote: Some(remote),
        own_cells: candidates,
        funding_tx: None,
        peer_inputs_checked: false,
        peer_tx_complete_nonce: None,
        peer_commitment_signature: None,
        peer_witnesses: None,
        funding_confirmed: false,
        peer_channel_ready: false,
        external_funding: None,
        closed: None,
    };
    Ok(Channel::new(record, &config.node_secret))
}

impl Channel {
    /// A retransmitted `OpenChannel` for a channel we already accepted.
    pub(crate) fn acceptor_matches_open(&self, config: &NodeConfig, message: &OpenChannel) -> bool {
        match check_open_channel(config, message) {
            Ok(params) => self.record.remote.as_ref() == Some(&params),
            Err(_) => false,
        }
    }

    /// The initiator's part: check its shape now and its inputs on chain next.
    pub(crate) fn acceptor_on_tx_update(&mut self, step: &mut Step, tx: packed::Transaction) -> Result<(), Reject> {
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
        if self
            .pending_peer_part
            .as_ref()
            .is_some_and(|p| p.as_slice() == tx.as_slice())
        {
            return Ok(());
        }
        if let Err(reason) = self.check_initiator_part(&tx) {
            self.acceptor_abort(step, format!("the initiator's funding tx was refused: {reason}"));
            return Ok(());
        }
        let out_points = tx.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
        self.pending_peer_part = Some(tx);
        step.actions.push(Action::QueryChain {
            channel_id: self.id(),
            query: ChainQuery::ResolveInputs { out_points },
        });
        Ok(())
    }

    fn check_initiator_part(&self, tx: &packed::Transaction) -> Result<(), String> {
        let remote = self.record.remote.as_ref().ok_or("no initiator parameters")?;
        let raw = tx.raw();
        let funding = raw.outputs().get(0).ok_or("no funding output")?;
        let ctx = musig::funding_key_agg(&self.record.local.funding_pubkey, &remote.funding_pubkey)
            .map_err(|e| e.to_string())?;
        // The lock is checked against the contract and args this node expects.
        let expected_args = musig::funding_lock_args(&ctx);
        if funding.lock().args().raw_data().as_ref() != expected_args || funding.type_().is_some() {
            return Err("output 0 is not the channel's 2-of-2 funding output".into());
        }
        if capacity_of(&funding) != remote.contribution() {
            return Err(format!(
                "the funding output holds {} shannons instead of the announced {}",
                capacity_of(&funding),
                remote.contribution()
            ));
        }
        if raw.outputs_data().len() != raw.outputs().len() || !raw.outputs_data().get(0).is_some_and(|d| d.is_empty()) {
            return Err("outputs_data do not match the outputs".into());
        }
        if raw.inputs().is_empty() || tx.witnesses().len() != raw.inputs().len() {
            return Err("no inputs, or the witness count does not match the inputs".into());
        }
        if raw.inputs().into_iter().any(|i| {
            let since: u64 = i.since().unpack();
            since != 0
        }) {
            return Err("an input is not final (since != 0)".into());
        }
        Ok(())
    }

    /// The initiator's inputs as the chain knows them; then add our part.
    pub(crate) fn acceptor_on_resolved_inputs(
        &mut self,
        step: &mut Step,
        outputs: Vec<Option<packed::CellOutput>>,
        reserved_by_others: &HashSet<packed::OutPoint>,
    ) -> Result<(), Reject> {
        let Some(initiator_part) = self.pending_peer_part.take() else {
            return Ok(());
        };
        let acceptor = step
            .config
            .acceptor
            .as_ref()
            .ok_or_else(|| Reject("not an acceptor".into()))?;
        let fee_rate = self.record.terms.funding_fee_rate;
        let outputs_total = outputs_capacity(&initiator_part, 0);
        let needed = outputs_total + tx_fee(&initiator_part, fee_rate);
        if let Err(reason) = check_peer_inputs(&outputs, &acceptor.wallet_lock, needed) {
            self.acceptor_abort(step, format!("the initiator's funding tx was refused: {reason}"));
            return Ok(());
        }
        let full = match add_acceptor_part(
            &initiator_part,
            &Contribution {
                cells: &self.record.own_cells,
                excluded: reserved_by_others,
                owner_lock: &acceptor.wallet_lock,
                cell_deps: &acceptor.wallet_cell_deps,
                amount: self.record.local.contribution(),
                fee_rate,
            },
        ) {
            Ok(tx) => tx,
            Err(error) => {
                self.acceptor_abort(step, format!("the counterparty cannot fund its part: {error}"));
                return Ok(());
            }
        };
        let used: HashSet<packed::OutPoint> = full.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
        self.record.own_cells.retain(|cell| used.contains(&cell.out_point));
        debug_assert!(fee_for_size(full.as_slice().len(), fee_rate) >= tx_fee(&initiator_part, fee_rate));
        self.record.funding_tx = Some(full);
        self.record.peer_inputs_checked = true;
        for message in [self.tx_update_message_now(), self.tx_complete_message(step.config)?] {
            step.send(self.record.peer, message);
        }
        Ok(())
    }

    fn tx_update_message_now(&self) -> crate::wire::FiberMessage {
        crate::wire::FiberMessage::TxUpdate(crate::wire::TxUpdate {
            channel_id: self.id(),
            tx: self.record.funding_tx.clone().expect("set just before"),
        })
    }

    pub(crate) fn acceptor_on_tx_complete(
        &mut self,
        step: &mut Step,
        nonce: crate::primitives::PubNonceBytes,
    ) -> Result<(), Reject> {
        if !self.record.peer_inputs_checked {
            return Err(Reject("TxComplete before our part of the funding tx was sent".into()));
        }
        let before = self.progress();
        self.record_peer_tx_complete(nonce)?;
        self.after_signature_progress(step, before)
    }

    fn acceptor_abort(&mut self, step: &mut Step, reason: String) {
        self.close(CloseFlags::FUNDING_ABORTED, reason, step.now_ms);
        step.send(self.record.peer, self.tx_abort_message());
    }
}
