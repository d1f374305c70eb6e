//! One channel: its record, the keys derived for it, and everything derived
//! from the record's facts — its state, the messages it has sent, whether its
//! signatures have been released.

use ckb_types::packed;
use ckb_types::prelude::*;
use serde::Serialize;

use super::config::NodeConfig;
use super::limits::{self, bounded_text};
use super::record::{party_message, AbortWatch, ChannelRecord, Closure, ExternalFundingPersistState, Role};
use super::state::*;
use super::{Action, ChainQuery, Event};
use crate::crypto::keys::ChannelKeys;
use crate::crypto::musig::{self, NonceSlot, SigningSession};
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::tx::commitment::{self, Commitment, CommitmentParty};
use crate::tx::fee::{add, capacity_of};
use crate::tx::outflow::{check_relay_fee, check_what_leaves, ExpectedFundingOutput, OurSide, Outflow};
use crate::tx::parts::tx_hash;
use crate::tx::settlement::{Settlement, Slot};
use crate::tx::validate::merge_witnesses;
use crate::wire::*;

/// A refused peer message: nothing changes, the reason is reported.
#[derive(Debug)]
pub(crate) struct Reject(pub String);

impl<E: std::fmt::Display> From<E> for Reject {
    fn from(error: E) -> Self {
        Reject(error.to_string())
    }
}

/// The effects of one step on one channel, collected while it runs.
pub(crate) struct Step<'a> {
    pub config: &'a NodeConfig,
    pub now_ms: u64,
    pub actions: Vec<Action>,
    /// The channel's peer is connected: what is sent now can reach it.
    pub peer_connected: bool,
}

impl Step<'_> {
    pub fn send(&mut self, peer: NodeId, message: FiberMessage) {
        self.actions.push(Action::Send { peer, message });
    }
}

#[derive(Clone)]
pub(crate) struct Channel {
    pub record: ChannelRecord,
    pub keys: ChannelKeys,
    /// The peer's part of the funding tx, waiting for its inputs to be resolved
    /// on chain. Not stored: the peer sends it again after a restart.
    pub pending_check: Option<PendingCheck>,
    /// The node refused the funding tx (a failed send, or "rejected") in
    /// this session: the user may hand in other witnesses for it. Cleared
    /// only by such a correction, not when the node later takes the tx
    /// (not kept: after a reload the next poll finds it refused again).
    pub funding_refused: bool,
    /// The user's cancel tx sent in this session, so the node's refusal of
    /// it is told as such (not kept: nothing depends on it after a reload).
    pub cancel_tx_sent: Option<Hash256>,
    /// The confirmation count of the funding tx last reported to the app
    /// (not kept: after a restart the count is reported again).
    pub confirmations_reported: Option<u64>,
    /// The cell a claim is being built from, while the chain is asked for it.
    pub pending_claim_lookup: Option<packed::OutPoint>,
    /// The commitment cell was found spent after our claim of it was
    /// refused: the other side claimed first, so the next claim looks for
    /// the cell its claim re-created.
    pub commitment_cell_spent: bool,
    /// The tip at which an input of a funding tx that can no longer be
    /// abandoned was first seen spent while the tx itself was not on chain
    /// (not kept: after a restart the count starts again).
    pub unfunded_conflict_at: Option<u64>,
    /// Our claim the node refused last, until the commitment cell's fate is
    /// read: if it is what spent the cell (another node took it), the
    /// claim is watched again.
    pub refused_claim: Option<packed::Transaction>,
    /// The reported spender of an aborted flow's input, buried under the
    /// settle depth, while its inputs' cells are read to check the wallet
    /// signed it (CKB's default lock).
    pub spender_to_verify: Option<PendingCheck>,
    /// The fee rate of our next claim, doubled at each refusal (a node's
    /// minimum fee rate can rise above the channel's after the commitment
    /// confirmed). Not stored: a reload starts again at the channel's rate.
    pub claim_fee_rate: Option<u64>,
    /// A step was taken back after its write failed: a peer message it took
    /// is lost to us, and a connection that stays up never brings it again.
    /// The next tick asks the peer to bring us up to date.
    pub ask_peer_again: bool,
}

/// A funding tx from the peer whose inputs are being resolved on chain: the
/// answer must name exactly these out points, one cell each.
#[derive(Clone)]
pub(crate) struct PendingCheck {
    pub tx: packed::Transaction,
    pub out_points: Vec<packed::OutPoint>,
    /// The answer came, but the write after it failed: ask at the next tick.
    pub ask_again: bool,
}

impl PendingCheck {
    /// Every input of `tx`, then `extra` (the acceptor's own candidate cells).
    pub fn new(tx: packed::Transaction, extra: impl IntoIterator<Item = packed::OutPoint>) -> Self {
        let mut out_points: Vec<packed::OutPoint> =
            tx.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
        out_points.extend(extra);
        Self {
            tx,
            out_points,
            ask_again: false,
        }
    }

    /// Whether `out_points` and `cells` answer this check.
    pub fn answered_by(&self, out_points: &[packed::OutPoint], cells: usize) -> bool {
        out_points.len() == self.out_points.len()
            && cells == self.out_points.len()
            && out_points
                .iter()
                .zip(&self.out_points)
                .all(|(a, b)| a.as_slice() == b.as_slice())
    }
}

/// What a channel had sent before a step (see [`Channel::progress`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    commitment_signed_sent: bool,
    released: bool,
}

/// The initiator's behaviour over a channel's facts (`flow/initiator.rs`):
/// one type per role, as rustls gives each state its own. Shared behaviour
/// is `Channel`'s, reached through `Deref`. Entry points a peer or a user
/// could aim at the wrong role check it themselves.
pub(crate) struct Initiator<'a>(pub(crate) &'a mut Channel);

/// The acceptor's behaviour (`flow/acceptor.rs`; the `acceptor` feature).
#[cfg(feature = "acceptor")]
pub(crate) struct Acceptor<'a>(pub(crate) &'a mut Channel);

impl std::ops::Deref for Initiator<'_> {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        self.0
    }
}

impl std::ops::DerefMut for Initiator<'_> {
    fn deref_mut(&mut self) -> &mut Channel {
        self.0
    }
}

#[cfg(feature = "acceptor")]
impl std::ops::Deref for Acceptor<'_> {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        self.0
    }
}

#[cfg(feature = "acceptor")]
impl std::ops::DerefMut for Acceptor<'_> {
    fn deref_mut(&mut self) -> &mut Channel {
        self.0
    }
}

/// A read-only summary of a channel, for the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    pub channel_id: ChannelId,
    pub temporary_channel_id: ChannelId,
    pub role: Role,
    pub peer: NodeId,
    pub state: ChannelState,
    pub created_at_ms: u64,
    /// When the flow is aborted if the funding signatures have not gone out yet.
    pub deadline_ms: Option<u64>,
    pub funding_tx_hash: Option<Hash256>,
    pub local_funding_amount: u64,
    pub remote_funding_amount: Option<u64>,
    pub signed_submitted: bool,
    pub close_reason: Option<String>,
    /// What this side gets back when the channel closes (before fees): its
    /// funding amount and reserve. Set once the funding tx is confirmed.
    pub local_balance: Option<u64>,
    /// How a funded channel's close stands, while it closes.
    pub close: Option<super::closing::CloseView>,
    /// Whether the link to the peer is up now. A flow waits while it is not:
    /// what it has to send goes out when the peer is back.
    pub peer_connected: bool,
    /// Imported from a backup before its close was agreed: it closes only
    /// unilaterally (protocol.md, "The closing nonce").
    pub restored_from_backup: bool,
}

impl Channel {
    /// A channel from its record; a record of an earlier schema is upgraded
    /// first (a caller that must store the upgrade calls
    /// [`ChannelRecord::upgrade`] itself first, which says whether it did).
    pub fn new(mut record: ChannelRecord, config: &NodeConfig) -> Self {
        record.upgrade(config);
        let keys = ChannelKeys::derive(&config.node_secret, &record.channel_seed.0);
        Self {
            record,
            keys,
            pending_check: None,
            funding_refused: false,
            cancel_tx_sent: None,
            confirmations_reported: None,
            pending_claim_lookup: None,
            commitment_cell_spent: false,
            unfunded_conflict_at: None,
            refused_claim: None,
            spender_to_verify: None,
            claim_fee_rate: None,
            ask_peer_again: false,
        }
    }

    pub fn id(&self) -> ChannelId {
        self.record.channel_id
    }

    pub fn is_initiator(&self) -> bool {
        self.record.role == Role::Initiator
    }

    pub fn is_closed(&self) -> bool {
        self.record.closed.is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.record.funding_confirmed && self.record.peer_channel_ready
    }

    // ---- facts derived from the record -------------------------------------------------

    /// Both sides agreed on the unsigned funding tx.
    pub fn tx_final(&self) -> bool {
        self.record.peer_inputs_checked && self.record.peer_tx_complete_nonce.is_some()
    }

    pub fn signed_submitted(&self) -> bool {
        self.record
            .external_funding
            .as_ref()
            .is_some_and(ExternalFundingPersistState::signed_submitted)
    }

    /// We have sent our `CommitmentSigned` (it is due once the facts below are
    /// stored). The initiator signs only once the user has signed the funding
    /// tx, as upstream; the side signing the funding tx second signs its
    /// commitment only after verifying the first side's (see `may_abort`).
    pub fn our_commitment_signed_sent(&self) -> bool {
        if !self.tx_final() || (self.is_initiator() && !self.signed_submitted()) {
            return false;
        }
        self.we_sign_first() || self.record.peer_commitment_signature.is_some()
    }

    /// The side contributing less sends its funding signatures first (on a
    /// tie, the smaller funding key), as upstream.
    pub fn we_sign_first(&self) -> bool {
        let Some(remote) = &self.record.remote else {
            return false;
        };
        // Both contributions are bounded on receipt, so neither overflows.
        let ours = (
            self.record.local.contribution().unwrap_or(u64::MAX),
            self.record.local.funding_pubkey,
        );
        let theirs = (remote.contribution().unwrap_or(u64::MAX), remote.funding_pubkey);
        ours < theirs
    }

    fn our_witnesses_available(&self) -> bool {
        !self.is_initiator() || self.signed_submitted()
    }

    /// Our funding witnesses have left (or are due to leave) this node.
    pub fn released(&self) -> bool {
        !self.is_closed()
            && self.tx_final()
            && self.record.peer_commitment_signature.is_some()
            && self.our_witnesses_available()
            && (self.we_sign_first() || self.record.peer_witnesses.is_some())
    }

    /// Whether this side may still give up (time out, abandon).
    ///
    /// The first signer releases its witnesses as soon as it holds the second
    /// signer's commitment signature. So the second signer must never abort
    /// once it has sent that signature, and the first never once it released:
    /// then an honest peer can never receive `TxAbort` after releasing. A
    /// signature held while the peer was away provably never left.
    pub fn may_abort(&self) -> bool {
        !self.is_closed()
            && !self.is_ready()
            && !self.record.funding_confirmed
            && !self.released()
            && (self.we_sign_first() || !self.our_commitment_signed_sent() || self.record.commitment_signed_held)
    }

    /// Our funding signatures may exist outside this node although the flow
    /// never released them: the initiator handed the unsigned tx to a wallet,
    /// whose signed copy (in a redirect URL, say) could still be broadcast.
    pub fn signatures_may_be_out(&self) -> bool {
        self.released() || self.handed_out()
    }

    /// The initiator handed the final unsigned tx to the wallet.
    pub fn handed_out(&self) -> bool {
        self.record
            .external_funding
            .as_ref()
            .is_some_and(|ext| ext.unsigned_funding_tx.is_some())
    }

    /// A flow that can no longer give up (our witnesses left, or we owe the
    /// peer its signatures' answer) whose funding tx is not confirmed: if
    /// that tx can never confirm, only the chain can tell, so it is watched.
    pub fn cannot_abandon_unfunded(&self) -> bool {
        !self.is_closed()
            && self.record.close.is_none()
            && self.tx_final()
            && !self.record.funding_confirmed
            && !self.may_abort()
    }

    /// The out points of every input of the funding tx, ours and the peer's.
    pub fn funding_inputs_out_points(&self) -> Vec<packed::OutPoint> {
        self.record
            .funding_tx
            .as_ref()
            .map(|tx| tx.raw().inputs().into_iter().map(|i| i.previous_output()).collect())
            .unwrap_or_default()
    }

    /// An aborted flow kept watching whether its funding tx confirms.
    pub fn watching_after_abort(&self) -> bool {
        self.record.closed.as_ref().is_some_and(|c| c.watch.is_some())
    }

    /// A snapshot of what has been sent, to tell what a step made newly due.
    pub fn progress(&self) -> Progress {
        Progress {
            commitment_signed_sent: self.our_commitment_signed_sent(),
            released: self.released(),
        }
    }

    pub fn complete(&self) -> bool {
        self.released() && self.record.peer_witnesses.is_some()
    }

    /// The side that sends its signatures second completes the tx and
    /// broadcasts it at once. The other sends it too once it holds it whole
    /// and a poll finds the node does not know it.
    pub fn is_broadcaster(&self) -> bool {
        !self.we_sign_first()
    }

    pub fn state(&self) -> ChannelState {
        let r = &self.record;
        if let Some(closure) = &r.closed {
            return ChannelState::Closed(closure.flags);
        }
        if let Some(closing) = self.closing_state() {
            return closing;
        }
        if self.is_ready() {
            return ChannelState::ChannelReady;
        }
        if self.complete() || r.funding_confirmed {
            let mut flags = AwaitingChannelReadyFlags::default();
            if r.funding_confirmed {
                flags = flags | AwaitingChannelReadyFlags::OUR_CHANNEL_READY;
            }
            if r.peer_channel_ready {
                flags = flags | AwaitingChannelReadyFlags::THEIR_CHANNEL_READY;
            }
            return ChannelState::AwaitingChannelReady(flags);
        }
        if self.tx_final() {
            let ours = self.our_commitment_signed_sent();
            let theirs = r.peer_commitment_signature.is_some();
            let awaiting_user = self.is_initiator() && !self.signed_submitted();
            if ours && theirs {
                let mut flags = AwaitingTxSignaturesFlags::default();
                if self.released() {
                    flags = flags | AwaitingTxSignaturesFlags::OUR_TX_SIGNATURES_SENT;
                }
                if r.peer_witnesses.is_some() {
                    flags = flags | AwaitingTxSignaturesFlags::THEIR_TX_SIGNATURES_SENT;
                }
                return ChannelState::AwaitingTxSignatures(flags);
            }
            if awaiting_user && !theirs && self.handed_out() {
                return ChannelState::NegotiatingFunding(NegotiatingFundingFlags::AWAITING_EXTERNAL_FUNDING);
            }
            let mut flags = SigningCommitmentFlags::default();
            if ours {
                flags = flags | SigningCommitmentFlags::OUR_COMMITMENT_SIGNED_SENT;
            }
            if theirs {
                flags = flags | SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT;
            }
            return ChannelState::SigningCommitment(flags);
        }
        if r.remote.is_some() {
            let mut flags = CollaboratingFundingTxFlags::AWAITING_REMOTE_TX_COLLABORATION_MSG;
            let our_complete = !self.is_initiator() && r.peer_inputs_checked;
            if our_complete {
                flags = flags | CollaboratingFundingTxFlags::OUR_TX_COMPLETE_SENT;
            }
            if r.peer_tx_complete_nonce.is_some() {
                flags = flags | CollaboratingFundingTxFlags::THEIR_TX_COMPLETE_SENT;
            }
            return ChannelState::CollaboratingFundingTx(flags);
        }
        ChannelState::NegotiatingFunding(if self.is_initiator() {
            NegotiatingFundingFlags::OUR_INIT_SENT
        } else {
            NegotiatingFundingFlags::THEIR_INIT_SENT
        })
    }

    /// When the flow aborts unless the funding signatures went out first: the
    /// stored deadline, while the side may still give up.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.may_abort().then_some(self.record.deadline_ms)
    }

    /// Restored after the write of `failed` (this channel's next state)
    /// failed: a chain answer that step took is gone with it, and no answer
    /// comes unasked. The check is asked again at the next tick; a claim
    /// lookup, at the next poll that finds the claim due.
    pub(crate) fn restored_after_failed_write(&mut self, failed: &Channel) {
        if failed.pending_check.is_none() {
            if let Some(check) = &mut self.pending_check {
                check.ask_again = true;
            }
        }
        if failed.pending_claim_lookup.is_none() {
            self.pending_claim_lookup = None;
        }
        // Which input the step took is not known here; asking a peer that
        // has nothing for us costs it one resend of what we already hold.
        self.ask_peer_again = self.needs_reestablish();
    }

    /// Whether a failed read of `query` is to be asked again: only one
    /// asked once whose answer this channel still waits for (the inputs of
    /// the check under way, the cell a claim looks up). The reads a status
    /// poll asks afresh while it still needs them (inputs' liveness, an
    /// input's spender, the re-created commitment cell) wait for that poll:
    /// retried too, each failing poll would start one more endless loop.
    pub(crate) fn retries_failed_query(&self, query: &ChainQuery) -> bool {
        match query {
            ChainQuery::ResolveInputs { out_points } => {
                let asked = |ours: &[packed::OutPoint]| {
                    ours.len() == out_points.len()
                        && ours.iter().zip(out_points).all(|(a, b)| a.as_slice() == b.as_slice())
                };
                self.pending_check
                    .as_ref()
                    .is_some_and(|check| asked(&check.out_points))
                    || self
                        .pending_claim_lookup
                        .as_ref()
                        .is_some_and(|cell| asked(std::slice::from_ref(cell)))
            }
            ChainQuery::LiveCells { .. } | ChainQuery::InputsLive { .. } | ChainQuery::SpenderOf { .. } => false,
        }
    }

    /// The chain question of a check whose answer could not be stored.
    pub(crate) fn ask_check_again(&mut self) -> Option<Action> {
        let channel_id = self.id();
        let check = self.pending_check.as_mut().filter(|check| check.ask_again)?;
        check.ask_again = false;
        Some(Action::QueryChain {
            channel_id,
            query: ChainQuery::ResolveInputs {
                out_points: check.out_points.clone(),
            },
        })
    }

    /// A `TxUpdate` while an earlier one is being checked on chain: the same
    /// one again changes nothing, a different one is refused, so the chain's
    /// answer is always checked against the very tx it was asked about.
    /// `None` when no check is pending.
    pub fn update_during_check(&self, tx: &packed::Transaction) -> Option<Result<(), Reject>> {
        let pending = self.pending_check.as_ref()?;
        Some(if pending.tx.as_slice() == tx.as_slice() {
            Ok(())
        } else {
            Err(Reject(
                "a different TxUpdate arrived while the previous one is being checked on chain".into(),
            ))
        })
    }

    /// The tx a chain answer is about, when it answers the pending check
    /// exactly: the same out points, one cell each. The check is then over.
    pub fn take_answered_check(
        &mut self,
        out_points: &[packed::OutPoint],
        cells: usize,
    ) -> Result<packed::Transaction, Reject> {
        let Some(pending) = &self.pending_check else {
            return Err(Reject(
                "no check of the peer's inputs is waiting for this answer".into(),
            ));
        };
        if !pending.answered_by(out_points, cells) {
            return Err(Reject(
                "the chain's answer is not about the inputs being checked".into(),
            ));
        }
        let tx = pending.tx.clone();
        self.pending_check = None;
        Ok(tx)
    }

    /// Restarts the clock when the funding tx becomes final. Both sides do it
    /// at that same moment, so a slow collaboration never eats into the time
    /// the user has to sign.
    pub fn restart_deadline(&mut self, now_ms: u64) {
        self.record.deadline_ms = now_ms.saturating_add(self.record.terms.timeout_ms);
    }

    pub fn view(&self, peer_connected: bool) -> ChannelView {
        let r = &self.record;
        ChannelView {
            channel_id: r.channel_id,
            temporary_channel_id: r.temporary_channel_id,
            role: r.role,
            peer: r.peer,
            state: self.state(),
            created_at_ms: r.created_at_ms,
            deadline_ms: self.deadline_ms(),
            funding_tx_hash: self.tx_final().then(|| self.funding_tx_hash()).flatten(),
            local_funding_amount: r.local.funding_amount,
            remote_funding_amount: r.remote.as_ref().map(|p| p.funding_amount),
            signed_submitted: self.signed_submitted(),
            close_reason: r.closed.as_ref().map(|c| c.reason.clone()),
            local_balance: self.funded().then(|| r.local.contribution().ok()).flatten(),
            close: self.close_view(),
            peer_connected,
            restored_from_backup: r.restored_from_backup,
        }
    }

    /// What the peer announced; every step after the accept needs it.
    pub fn remote(&self) -> Result<&super::record::PartyParams, Reject> {
        self.record
            .remote
            .as_ref()
            .ok_or_else(|| Reject("the channel was not accepted yet".into()))
    }

    /// The unsigned funding tx as far as it is built.
    pub fn funding_tx(&self) -> Result<&packed::Transaction, Reject> {
        self.record
            .funding_tx
            .as_ref()
            .ok_or_else(|| Reject("no funding tx yet".into()))
    }

    pub fn funding_tx_hash(&self) -> Option<Hash256> {
        self.record.funding_tx.as_ref().map(|tx| Hash256(tx_hash(tx)))
    }

    /// How many inputs the initiator put in (its inputs come first).
    pub fn initiator_input_count(&self) -> usize {
        let own = self.record.own_cells.len();
        match (self.is_initiator(), &self.record.funding_tx) {
            (true, _) => own,
            (false, Some(tx)) => tx.raw().inputs().len().saturating_sub(own),
            (false, None) => 0,
        }
    }

    pub fn own_input_range(&self) -> std::ops::Range<usize> {
        let total = self.record.funding_tx.as_ref().map_or(0, |tx| tx.raw().inputs().len());
        let split = self.initiator_input_count();
        if self.is_initiator() {
            0..split
        } else {
            split..total
        }
    }

    pub fn peer_input_range(&self) -> std::ops::Range<usize> {
        let total = self.record.funding_tx.as_ref().map_or(0, |tx| tx.raw().inputs().len());
        let split = self.initiator_input_count();
        if self.is_initiator() {
            split..total
        } else {
            0..split
        }
    }

    // ---- commitments -------------------------------------------------------------------

    pub(crate) fn commitment_tx(&self, holder_is_local: bool) -> Result<packed::Transaction, Reject> {
        self.commitment_terms(holder_is_local)?.build_tx().map_err(Reject::from)
    }

    /// What fixes commitment 0 of `holder_is_local ? us : the peer`.
    fn commitment_terms(&self, holder_is_local: bool) -> Result<Commitment<'_>, Reject> {
        let r = &self.record;
        let remote = r
            .remote
            .as_ref()
            .ok_or_else(|| Reject("no peer parameters yet".into()))?;
        let funding_tx = r
            .funding_tx
            .as_ref()
            .ok_or_else(|| Reject("no funding tx yet".into()))?;
        let funding_output = funding_tx
            .raw()
            .outputs()
            .get(0)
            .ok_or_else(|| Reject("funding tx has no outputs".into()))?;
        let local = CommitmentParty {
            funding_pubkey: r.local.funding_pubkey,
            settlement_pubkey: r.local.tlc_basepoint,
            amount: r.local.contribution()?,
        };
        let peer = CommitmentParty {
            funding_pubkey: remote.funding_pubkey,
            settlement_pubkey: remote.tlc_basepoint,
            amount: remote.contribution()?,
        };
        let (holder, counterparty) = if holder_is_local { (local, peer) } else { (peer, local) };
        Ok(Commitment {
            funding_out_point: packed::OutPoint::new_builder()
                .tx_hash(tx_hash(funding_tx).pack())
                .index(0u32)
                .build(),
            funding_capacity: capacity_of(&funding_output),
            lock: &r.terms.commitment_lock,
            delay_epoch: r.terms.commitment_delay_epoch,
            number: 0,
            fee_rate: r.terms.commitment_fee_rate,
            holder,
            counterparty,
        })
    }

    /// Our claim, after the delay, of our share of the commitment-lock cell
    /// `cell` (at `out_point`) that commitment 0 of `holder_is_local ? us :
    /// the peer` created — or that a settlement of the other share re-created
    /// (then `script` is the settlement script with that share zeroed).
    /// Signed with our settlement key alone; pays our share, less its fee,
    /// to our shutdown script.
    pub fn claim_commitment_share(
        &self,
        holder_is_local: bool,
        out_point: packed::OutPoint,
        cell: packed::CellOutput,
        script: Option<Vec<u8>>,
        fee_rate: u64,
    ) -> Result<packed::Transaction, Reject> {
        let terms = self.commitment_terms(holder_is_local)?;
        let script = script.unwrap_or_else(|| terms.settlement_script());
        Settlement {
            cell_out_point: out_point,
            cell,
            script: &script,
            slot: if holder_is_local {
                Slot::Holder
            } else {
                Slot::Counterparty
            },
            to: self.record.local.shutdown_script.clone(),
            fee_rate,
            cell_deps: &self.record.terms.commitment_lock.cell_deps,
        }
        .sign(&self.keys.settlement_key())
        .map_err(Reject::from)
    }

    /// The settlement script commitment 0 of `holder_is_local ? us : the peer` commits to.
    pub fn commitment_settlement_script(&self, holder_is_local: bool) -> Result<Vec<u8>, Reject> {
        Ok(self.commitment_terms(holder_is_local)?.settlement_script())
    }

    /// blake2b of the commitment tx the peer holds (the one we sign).
    fn peer_commitment_message(&self) -> Result<[u8; 32], Reject> {
        Ok(commitment::signing_message(&self.commitment_tx(false)?))
    }

    fn funding_key_agg(&self) -> Result<musig2::KeyAggContext, Reject> {
        let remote = self.remote()?;
        Ok(musig::funding_key_agg(
            &self.record.local.funding_pubkey,
            &remote.funding_pubkey,
        )?)
    }

    /// The binding of our nonce for signing the peer's commitment 0.
    fn peer_commitment_binding(&self) -> Result<Vec<u8>, Reject> {
        let remote = self.remote()?;
        let message = self.peer_commitment_message()?;
        Ok(musig::peer_commitment_binding(&message, &remote.next_commitment_nonce))
    }

    /// Our `TxComplete` nonce: the one we sign the peer's commitment 0 with.
    pub fn our_tx_complete_nonce(&self) -> Result<crate::primitives::PubNonceBytes, Reject> {
        let binding = self.peer_commitment_binding()?;
        Ok(musig::public_nonce(&self.keys, NonceSlot::PeerCommitment(0), &binding))
    }

    /// Our partial signature over the peer's commitment 0: its tx built once,
    /// our `TxComplete` nonce derived once (a submit's cost is this signature
    /// and one write).
    fn our_commitment_signature(&self) -> Result<[u8; 32], Reject> {
        let remote = self.remote()?;
        let ctx = self.funding_key_agg()?;
        let message = self.peer_commitment_message()?;
        let binding = musig::peer_commitment_binding(&message, &remote.next_commitment_nonce);
        Ok(musig::sign_as_counterparty(
            &ctx,
            &self.keys,
            message,
            &remote.next_commitment_nonce,
            NonceSlot::PeerCommitment(0),
            &binding,
        )?)
    }

    /// Checks the peer's partial signature over our commitment 0.
    pub fn verify_peer_commitment_signature(&self, signature: &[u8; 32]) -> Result<(), Reject> {
        let remote = self.remote()?;
        let peer_nonce = self
            .record
            .peer_tx_complete_nonce
            .ok_or_else(|| Reject("CommitmentSigned before the peer's TxComplete".into()))?;
        let ctx = self.funding_key_agg()?;
        let session = SigningSession {
            ctx: &ctx,
            message: commitment::signing_message(&self.commitment_tx(true)?),
            holder_nonce: self.record.local.next_commitment_nonce,
            signer_nonce: peer_nonce,
        };
        session.verify(signature, &remote.funding_pubkey, false)?;
        Ok(())
    }

    /// Our commitment 0 fully signed by both, ready to broadcast (the funding
    /// lock's cell deps and its 112-byte witness in place): what we close
    /// with, and proof that the peer's signature lets us get our funds back.
    pub fn signed_own_commitment(&self) -> Result<packed::Transaction, Reject> {
        let peer_signature: [u8; 32] = self
            .record
            .peer_commitment_signature
            .as_deref()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| Reject("no peer commitment signature".into()))?;
        let peer_nonce = self
            .record
            .peer_tx_complete_nonce
            .ok_or_else(|| Reject("no peer nonce".into()))?;
        let ctx = self.funding_key_agg()?;
        let tx = self.commitment_tx(true)?;
        let session = SigningSession {
            ctx: &ctx,
            message: commitment::signing_message(&tx),
            holder_nonce: self.record.local.next_commitment_nonce,
            signer_nonce: peer_nonce,
        };
        let own = session.sign_as_holder(&self.keys, 0)?;
        let signature = session.aggregate(&own, &peer_signature)?;
        Ok(commitment::complete_funding_spend(
            &tx,
            &self.record.terms.funding_lock.cell_deps,
            &musig::xonly_key(&ctx),
            &signature,
        ))
    }

    // ---- funding witnesses -------------------------------------------------------------

    /// Our witnesses for the funding tx: the user's (initiator) or our wallet's
    /// signatures (acceptor, signed on demand: the signature is deterministic).
    pub fn our_witnesses(&self, config: &NodeConfig) -> Result<Vec<Vec<u8>>, Reject> {
        if let Some(ext) = &self.record.external_funding {
            return ext
                .signed_funding_witnesses
                .clone()
                .ok_or_else(|| Reject("the user has not signed yet".into()));
        }
        match self.record.role {
            Role::Initiator => Err(Reject("the initiator's record has no external funding state".into())),
            #[cfg(feature = "acceptor")]
            Role::Acceptor => self.wallet_witnesses(config),
            // The browser build signs nothing with a wallet key of its own.
            #[cfg(not(feature = "acceptor"))]
            Role::Acceptor => {
                let _ = config;
                Err(Reject("this build has no acceptor role".into()))
            }
        }
    }

    /// The funding tx with every witness, once both sides have signed.
    pub fn complete_funding_tx(&self, config: &NodeConfig) -> Result<packed::Transaction, Reject> {
        let unsigned = self.funding_tx()?;
        let peer = self
            .record
            .peer_witnesses
            .as_ref()
            .ok_or_else(|| Reject("no peer witnesses".into()))?;
        let ours = merge_witnesses(unsigned, &self.our_witnesses(config)?, self.own_input_range());
        Ok(merge_witnesses(&ours, peer, self.peer_input_range()))
    }

    // ---- messages ----------------------------------------------------------------------

    pub fn open_channel_message(&self) -> FiberMessage {
        let r = &self.record;
        FiberMessage::OpenChannel(party_message!(OpenChannel, &r.local, {
            chain_hash: r.terms.chain_hash,
            channel_id: r.temporary_channel_id,
            funding_udt_type_script: None,
            funding_fee_rate: r.terms.funding_fee_rate,
            commitment_fee_rate: r.terms.commitment_fee_rate,
            commitment_delay_epoch: r.terms.commitment_delay_epoch,
            channel_flags: r.terms.channel_flags,
        }))
    }

    fn tx_update_message(&self) -> Option<FiberMessage> {
        let tx = self.record.funding_tx.clone()?;
        Some(FiberMessage::TxUpdate(TxUpdate {
            channel_id: self.id(),
            tx,
        }))
    }

    pub fn tx_complete_message(&self) -> Result<FiberMessage, Reject> {
        Ok(FiberMessage::TxComplete(TxComplete {
            channel_id: self.id(),
            next_commitment_nonce: self.our_tx_complete_nonce()?,
        }))
    }

    pub fn commitment_signed_message(&self) -> Result<FiberMessage, Reject> {
        Ok(FiberMessage::CommitmentSigned(CommitmentSigned {
            channel_id: self.id(),
            funding_tx_partial_signature: self.our_commitment_signature()?,
            next_commitment_nonce: musig::public_nonce(&self.keys, NonceSlot::OwnCommitment(1), &[]),
        }))
    }

    pub fn tx_signatures_message(&self, config: &NodeConfig) -> Result<FiberMessage, Reject> {
        Ok(FiberMessage::TxSignatures(TxSignatures {
            channel_id: self.id(),
            witnesses: self.our_witnesses(config)?,
        }))
    }

    pub fn channel_ready_message(&self) -> FiberMessage {
        FiberMessage::ChannelReady(ChannelReady { channel_id: self.id() })
    }

    pub fn tx_abort_message(&self) -> FiberMessage {
        let reason = self
            .record
            .closed
            .as_ref()
            .map_or("unknown channel", |c| c.reason.as_str());
        FiberMessage::TxAbort(TxAbort {
            channel_id: self.id(),
            message: bounded_text(reason),
        })
    }

    pub fn reestablish_message(&self) -> FiberMessage {
        FiberMessage::ReestablishChannel(ReestablishChannel {
            channel_id: self.id(),
            local_commitment_number: u64::from(self.record.peer_commitment_signature.is_some()),
            remote_commitment_number: u64::from(
                self.our_commitment_signed_sent() && !self.record.commitment_signed_held,
            ),
        })
    }

    /// Whether a (re)connection must bring the peer up to date on this
    /// channel: its funding is not ready on both sides yet, or a cooperative
    /// close is being negotiated. A ready channel with nothing in flight is
    /// left alone; a peer that still misses our `ChannelReady` asks for it
    /// with its own `ReestablishChannel`.
    pub fn needs_reestablish(&self) -> bool {
        !self.is_closed() && (!self.is_ready() || self.close_messages_to_retransmit().is_ok_and(|m| !m.is_empty()))
    }

    /// Every message of the current phase we have sent, rebuilt from the
    /// record: what a reconnecting peer may have missed. Receivers ignore the
    /// ones they already have. Messages of a phase the peer has visibly
    /// finished are not resent: once the acceptor holds the initiator's
    /// `TxComplete` (the tx is final for it), the initiator had its
    /// `AcceptChannel`, `TxUpdate` and `TxComplete`; once the initiator holds
    /// the acceptor's commitment signature, the acceptor had its `TxComplete`.
    pub fn messages_to_retransmit(&self, config: &NodeConfig) -> Result<Vec<FiberMessage>, Reject> {
        let r = &self.record;
        if let Some(closure) = &r.closed {
            // A funded channel that closed has nothing to abort.
            let aborted =
                closure.flags.contains(CloseFlags::FUNDING_ABORTED) || closure.flags.contains(CloseFlags::ABANDONED);
            return Ok(if aborted {
                vec![self.tx_abort_message()]
            } else {
                Vec::new()
            });
        }
        if r.funding_confirmed {
            // The funding is done: only what came after it may be missing.
            let mut messages = vec![self.channel_ready_message()];
            messages.extend(self.close_messages_to_retransmit()?);
            return Ok(messages);
        }
        let mut messages = Vec::new();
        match r.role {
            Role::Initiator => {
                if r.remote.is_none() {
                    messages.push(self.open_channel_message());
                } else if !r.peer_inputs_checked {
                    messages.extend(self.tx_update_message());
                }
                if self.tx_final() && r.peer_commitment_signature.is_none() {
                    messages.push(self.tx_complete_message()?);
                }
            }
            #[cfg(feature = "acceptor")]
            Role::Acceptor if !self.tx_final() => {
                messages.push(self.accept_channel_message());
                if r.peer_inputs_checked {
                    messages.extend(self.tx_update_message());
                    messages.push(self.tx_complete_message()?);
                }
            }
            #[cfg(feature = "acceptor")]
            Role::Acceptor => {}
            #[cfg(not(feature = "acceptor"))]
            Role::Acceptor => return Err(Reject("this build has no acceptor role".into())),
        }
        if self.our_commitment_signed_sent() {
            messages.push(self.commitment_signed_message()?);
        }
        if self.released() {
            messages.push(self.tx_signatures_message(config)?);
        }
        if r.funding_confirmed {
            messages.push(self.channel_ready_message());
        }
        Ok(messages)
    }

    /// `AcceptChannel`, `TxUpdate` and `TxComplete`: the funding
    /// collaboration, which each role runs in its own type.
    pub(crate) fn on_collaboration_message(&mut self, step: &mut Step, message: FiberMessage) -> Result<(), Reject> {
        // An ended channel's tombstone still holds the terms: taking one of
        // these started the collaboration's chain reads and writes again.
        if self.is_closed() {
            return Err(Reject(format!("{} for a channel that has ended", message.name())));
        }
        match self.record.role {
            Role::Initiator => Initiator(self).on_message(step, message),
            #[cfg(feature = "acceptor")]
            Role::Acceptor => Acceptor(self).on_message(step, message),
            #[cfg(not(feature = "acceptor"))]
            Role::Acceptor => Err(Reject(format!("{} is not expected by the Acceptor", message.name()))),
        }
    }

    // ---- transitions shared by both roles ----------------------------------------------

    /// Closes a channel whose funding signatures were never released. Its
    /// cells are free for the next open at once (closed channels reserve
    /// none). If a signed funding tx may exist outside (the initiator handed
    /// the unsigned one out), the seed, keys, txs and the peer's commitment
    /// signature stay, watched, until that tx can no longer confirm;
    /// otherwise only a tombstone is left.
    pub fn close(&mut self, flags: CloseFlags, reason: String, now_ms: u64) {
        self.pending_check = None;
        if !self.signatures_may_be_out() {
            self.record.close_as_tombstone(flags, reason, now_ms);
            return;
        }
        self.record.closed = Some(Closure {
            flags,
            reason,
            closed_at_ms: now_ms,
            watch: Some(AbortWatch::default()),
        });
    }

    /// After a fact changed: send whatever it made due — our commitment
    /// signature, then our funding witnesses — and broadcast when we complete
    /// the tx. Comparing with `before` makes it idempotent.
    pub fn after_signature_progress(&mut self, step: &mut Step, before: Progress) -> Result<(), Reject> {
        let now = self.progress();
        if now.commitment_signed_sent && !before.commitment_signed_sent {
            if step.peer_connected {
                step.send(self.record.peer, self.commitment_signed_message()?);
            } else {
                // Held, and stored as held: it goes out with the reestablish
                // once the peer is back (`Node::retransmit`), and until then
                // the flow may still give up.
                self.record.commitment_signed_held = true;
            }
        }
        if now.released && !before.released {
            // Last look before our witnesses leave: whatever built the tx,
            // it must take from us exactly what we agreed to.
            let checked = self
                .check_what_leaves(step.config)
                .map(drop)
                .and_then(|()| self.check_final_tx(&self.our_witnesses(step.config).map_err(|Reject(r)| r)?));
            if let Err(reason) = checked {
                self.abort_before_release(step, &reason);
                return Ok(());
            }
            step.send(self.record.peer, self.tx_signatures_message(step.config)?);
            if self.complete() && self.is_broadcaster() {
                self.broadcast(step)?;
            }
        }
        Ok(())
    }

    /// The final tx failed the check of what leaves us: refuse to sign it.
    /// Even a side that promised not to abort any more does: a tx that takes
    /// more than agreed is worse than a disagreement with the peer.
    fn abort_before_release(&mut self, step: &mut Step, reason: &str) {
        self.close(
            CloseFlags::FUNDING_ABORTED,
            format!("refused to sign the funding tx: {reason}"),
            step.now_ms,
        );
        step.send(self.record.peer, self.tx_abort_message());
    }

    /// Our locks: the wallet lock our cells carry (change returns to it) and
    /// our shutdown script.
    pub fn our_locks(&self, config: &NodeConfig) -> Result<Vec<packed::Script>, Reject> {
        let wallet_lock = match (&self.record.external_funding, &config.acceptor) {
            (Some(ext), _) => ext.funding_lock_script.clone(),
            (None, Some(acceptor)) if !self.is_initiator() => acceptor.wallet_lock.clone(),
            _ => return Err(Reject("no wallet lock for this side".into())),
        };
        Ok(vec![wallet_lock, self.record.local.shutdown_script.clone()])
    }

    /// The funding output as it must be: the channel's 2-of-2 lock under the
    /// funding-lock contract, holding both sides' contributions.
    pub fn expected_funding_output(&self) -> Result<ExpectedFundingOutput, Reject> {
        let remote = self.remote()?;
        let ctx = self.funding_key_agg()?;
        Ok(ExpectedFundingOutput {
            lock: self.record.terms.funding_lock.script(&musig::funding_lock_args(&ctx)),
            capacity: add(
                self.record.local.contribution()?,
                remote.contribution()?,
                "the funding output's capacity",
            )?,
        })
    }

    /// What the final funding tx takes from us, computed from the tx and the
    /// hash-checked input cells alone (`tx::outflow`).
    pub fn check_what_leaves(&self, config: &NodeConfig) -> Result<Outflow, String> {
        let tx = self.funding_tx().map_err(|Reject(r)| r)?;
        let locks = self.our_locks(config).map_err(|Reject(r)| r)?;
        let cell_deps = match (&self.record.external_funding, &config.acceptor) {
            (Some(ext), _) => ext.funding_lock_script_cell_deps.clone(),
            (None, Some(acceptor)) => acceptor.wallet_cell_deps.clone(),
            (None, None) => Vec::new(),
        };
        let ours = OurSide {
            inputs: self.own_input_range(),
            locks: &locks,
            contribution: self.record.local.contribution().map_err(|e| e.to_string())?,
            cell_deps: &cell_deps,
            pays_for_funding_output: self.is_initiator(),
            fee_rate: self.record.terms.funding_fee_rate,
        };
        let funding = self.expected_funding_output().map_err(|Reject(r)| r)?;
        check_what_leaves(tx, &self.record.funding_inputs, &ours, &funding).map_err(|e| e.to_string())
    }

    /// Whether the funding tx completed with `our_witnesses` (and the peer's,
    /// once in; its placeholders until then) could confirm: small enough to
    /// send in one message, and paying a node's minimum relay fee for the
    /// size its real witnesses give it, not only for the placeholders' size.
    pub fn check_final_tx(&self, our_witnesses: &[Vec<u8>]) -> Result<(), String> {
        let unsigned = self.funding_tx().map_err(|Reject(r)| r)?;
        let mut tx = merge_witnesses(unsigned, our_witnesses, self.own_input_range());
        if let Some(peer) = &self.record.peer_witnesses {
            tx = merge_witnesses(&tx, peer, self.peer_input_range());
        }
        limits::check_funding_tx_size(&tx).map_err(|e| e.to_string())?;
        check_relay_fee(&tx, &self.record.funding_inputs, limits::MIN_FEE_RATE).map_err(|e| e.to_string())
    }

    pub fn broadcast(&mut self, step: &mut Step) -> Result<(), Reject> {
        let tx = self.complete_funding_tx(step.config)?;
        self.broadcast_tx(step, tx);
        Ok(())
    }

    /// Sends one of this channel's txs to the chain.
    pub(crate) fn broadcast_tx(&mut self, step: &mut Step, tx: packed::Transaction) {
        step.actions.push(Action::Broadcast {
            channel_id: self.id(),
            tx,
        });
    }

    /// Our `ChannelReady` went out once confirmed; ready when the peer's came too.
    pub fn on_ready_progress(&mut self) {
        if self.is_ready() {
            // Terminal: the external-funding recovery state is no longer needed.
            self.record.external_funding = None;
        }
    }

    pub fn state_event(&self) -> Event {
        Event::StateChanged {
            channel_id: self.id(),
            temporary_channel_id: self.record.temporary_channel_id,
            state: self.state(),
            close_reason: self.record.closed.as_ref().map(|c| c.reason.clone()),
        }
    }
}
