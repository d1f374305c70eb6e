//! A node's channels, and the routing of every input to the right one.
//!
//! Each step runs on a copy of the channel; if it fails nothing changes. If
//! it changed the channel's record, the step's first action is
//! [`Action::Persist`] of the new record, so nothing leaves before the state
//! that produced it is durable.

use std::collections::HashSet;

use crate::collections::{VecMap, VecSet};
use crate::crypto::keys::funding_keys_all_match;

use ckb_types::packed;

#[cfg(feature = "acceptor")]
use super::acceptor::{accept_channel, check_open_channel, select_candidates};
#[cfg(feature = "acceptor")]
use super::channel::Acceptor;
use super::channel::{Channel, ChannelView, Initiator, Reject, Step};
use super::config::{NodeConfig, OpenChannelParams};
use super::error::{FlowError, Shortfall};
use super::initiator::open_channel;
use super::limits;
use super::record::{ChannelRecord, RecordDecodeError, Role};
use super::{Action, ChainEvent, Event};
use crate::chain::LiveCell;
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::tx::fee::capacity_of;
use crate::tx::funding::{is_plain_capacity_cell, reserved_ckb_amount, FundingError};
use crate::tx::script::ScriptTemplate;
use crate::wire::{FiberMessage, OpenChannel, TxAbort};

mod opening;
mod persistence;

pub use opening::{OpenFailure, OpenId};
use opening::{OpenInFlight, WaitingOpen};
use persistence::Rollback;
pub use persistence::UpdateId;

/// Fresh randomness for channel seeds. Passed in so the core stays
/// deterministic under test.
pub trait EntropySource {
    fn random_32(&mut self) -> [u8; 32];
}

/// An `OpenChannel` the acceptor is looking up its cells for.
struct PendingOpen {
    peer: NodeId,
    // Read only by the acceptor role, which a browser build leaves out.
    #[cfg_attr(not(feature = "acceptor"), allow(dead_code))]
    message: OpenChannel,
}

pub struct Node {
    config: NodeConfig,
    entropy: Box<dyn EntropySource>,
    channels: VecMap<ChannelId, Channel>,
    pending_opens: VecMap<ChannelId, PendingOpen>,
    /// Since when each peer we have channels with has been away (not kept:
    /// after a restart every peer counts as away from then).
    peers_away_since: VecMap<NodeId, u64>,
    connected: VecSet<NodeId>,
    /// Channels we sent `ReestablishChannel` for on the current connection
    /// to their peer: a peer's own `ReestablishChannel` is answered with ours
    /// only once, so a side with nothing in flight still hears what the
    /// other side has in flight.
    reestablish_sent: VecMap<ChannelId, NodeId>,
    /// When the node was built: the moment peers count as away from.
    started_at_ms: Option<u64>,
    /// Open requests not yet a channel (see `opening`).
    waiting_opens: Vec<WaitingOpen>,
    /// Channels (by temporary id) whose open request waits for the unsigned tx.
    opens_in_flight: VecMap<ChannelId, OpenInFlight>,
    /// Record writes not yet confirmed: how to take each back, and what
    /// waits for it (see `persistence`).
    next_update: u64,
    rollbacks: VecMap<UpdateId, Rollback>,
    held: VecMap<UpdateId, Vec<Action>>,
    /// Whether the closed flows' tombstones are in (see
    /// [`Node::restore_tombstones`]); until then an unknown channel id may
    /// be one of theirs.
    tombstones_restored: bool,
    /// Channels whose stored records could not be read (damaged, or written
    /// by a newer module): this node has them, so a peer message about one
    /// is not answered as about a channel it does not know.
    unreadable: VecSet<ChannelId>,
    /// Records refused at boot as another node key's, kept as read: they
    /// are still that key's flows, and a database made again holds them too.
    other_keys_records: Vec<ChannelRecord>,
    /// The last answer to a peer's `ReestablishChannel` for each channel,
    /// kept for the connection while the record stays as it was: a peer
    /// asking again and again is answered without our signing again.
    answers_kept: VecMap<ChannelId, KeptAnswer>,
    /// How many times a peer's `ReestablishChannel` had its answer built
    /// from the record (signatures and all): see [`Node::retransmits_built`].
    retransmits_built: u64,
}

struct KeptAnswer {
    peer: NodeId,
    /// The record the answer was built from, encoded.
    record: Vec<u8>,
    messages: Vec<FiberMessage>,
}

/// The key check of `channel`'s record when it is this node key's, `None`
/// when another's. A record from before schema 5 has none: its funding key
/// is compared, unless `points_ours` (a boot's one check of every such key
/// at once) already vouched for it.
fn key_check_if_ours(channel: &Channel, points_ours: bool) -> Option<Hash256> {
    let record = &channel.record;
    let key_check = channel.keys.key_check(&record.local.funding_pubkey);
    let ours = match record.key_check {
        Some(stored) => stored == key_check,
        None => points_ours || channel.keys.funding_pubkey() == record.local.funding_pubkey,
    };
    ours.then_some(key_check)
}

/// What [`Node::import_records`] took: the writes to make, the channels
/// they store, and each record left out with why.
#[derive(Debug, Default)]
pub struct Imported {
    pub writes: Vec<Action>,
    pub ids: Vec<ChannelId>,
    pub skipped: Vec<(ChannelId, String)>,
}

impl Node {
    pub fn new(config: NodeConfig, entropy: Box<dyn EntropySource>) -> Self {
        Self {
            config,
            entropy,
            channels: VecMap::new(),
            pending_opens: VecMap::new(),
            peers_away_since: VecMap::new(),
            connected: VecSet::new(),
            reestablish_sent: VecMap::new(),
            started_at_ms: None,
            waiting_opens: Vec::new(),
            opens_in_flight: VecMap::new(),
            next_update: 0,
            rollbacks: VecMap::new(),
            held: VecMap::new(),
            tombstones_restored: false,
            unreadable: VecSet::new(),
            other_keys_records: Vec::new(),
            answers_kept: VecMap::new(),
            retransmits_built: 0,
        }
    }

    /// How many answers to a peer's `ReestablishChannel` were built from
    /// a record, our partial signatures made again each time: the work a
    /// peer asking again and again makes this node do.
    pub fn retransmits_built(&self) -> u64 {
        self.retransmits_built
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_secret.node_id()
    }

    /// Restores channels from their records (after a reload or a restart):
    /// deadlines kept (see [`Node::next_deadline`]), flows past their deadline aborted at once. A record
    /// made under another node key is refused by name; the rest still load.
    pub fn restore(&mut self, records: Vec<ChannelRecord>, now_ms: u64) -> (Vec<Action>, Vec<RecordDecodeError>) {
        self.started_at_ms.get_or_insert(now_ms);
        let mut errors = Vec::new();
        let mut actions = Vec::new();
        let mut restored = Vec::with_capacity(records.len());
        // Each channel's keys derived once, for the check and for the channel.
        let channels: Vec<(Channel, bool)> = records
            .into_iter()
            .map(|mut record| {
                // Both run: `|`, not `||`.
                let upgraded = record.upgrade(&self.config) | record.take_node_cell_deps(&self.config);
                (Channel::new(record, &self.config), upgraded)
            })
            .collect();
        // A record holding keys (open, or closed and watched: it may be a
        // channel again) since schema 5 says by its key check whether it is
        // this node's; an earlier one has its key read as a curve point, all
        // such keys in one sum, and gets its key check once it passes.
        let points_needed: Vec<_> = channels
            .iter()
            .filter(|(c, _)| !c.record.is_tombstone() && c.record.key_check.is_none())
            .map(|(c, _)| (&c.keys, &c.record.local.funding_pubkey))
            .collect();
        let all_points_ours = funding_keys_all_match(&points_needed);
        for (mut channel, mut upgraded) in channels {
            if !channel.record.is_tombstone() {
                let Some(key_check) = key_check_if_ours(&channel, all_points_ours) else {
                    errors.push(RecordDecodeError {
                        channel_id: channel.id().to_string(),
                        reason: "it was made with another node key (a different nodeSecretKey?)".into(),
                    });
                    self.other_keys_records.push(channel.record);
                    continue;
                };
                if channel.record.key_check.is_none() {
                    channel.record.key_check = Some(key_check);
                    upgraded = true;
                }
            }
            let id = channel.id();
            if upgraded {
                // Upgraded from an earlier schema: stored before anything else.
                actions.push(self.persist_action(channel.record.clone(), None, Rollback::Keep));
            }
            restored.push((id, channel));
        }
        // One sort for the lot: a boot restores every flow at once.
        self.channels.extend(restored);
        actions.extend(self.tick(now_ms));
        (self.hold_after_persist(actions), errors)
    }

    /// Takes channels from a backup (`exportBackup` of this node key):
    /// each record the node does not hold is checked to be this node key's
    /// and stored, each write on its own (a failed one takes back its own
    /// channel only); nothing acts on a channel before its write (its
    /// deadlines and polls come with the next tick). Returns the writes, the
    /// ids taken, and why each other record was not.
    pub fn import_records(&mut self, records: Vec<ChannelRecord>) -> Imported {
        let mut imported = Imported::default();
        for mut record in records {
            let id = record.channel_id;
            let refuse = |reason: &str| (id, reason.to_owned());
            if self.find(&id).is_some() || self.find(&record.temporary_channel_id).is_some() {
                imported.skipped.push(refuse("this node holds the channel already"));
                continue;
            }
            // Written over, another key's record of it would be gone.
            if self.other_keys_records.iter().any(|other| other.channel_id == id) {
                imported
                    .skipped
                    .push(refuse("the database holds another node key's record of it"));
                continue;
            }
            if record.seed_wiped() {
                imported
                    .skipped
                    .push(refuse("its keys were wiped when it ended: nothing to recover"));
                continue;
            }
            let _ = record.upgrade(&self.config) | record.take_node_cell_deps(&self.config);
            let mut channel = Channel::new(record, &self.config);
            let Some(key_check) = key_check_if_ours(&channel, false) else {
                imported.skipped.push(refuse("it was made with another node key"));
                continue;
            };
            channel.record.key_check = Some(key_check);
            // The closing nonce is bound to no closing tx: unless the backup
            // fixed one, the device it came from may have signed another.
            if !channel.closing_fixed() {
                channel.record.restored_from_backup = true;
            }
            let write = self.persist_action(channel.record.clone(), None, Rollback::Remove(id));
            imported.writes.push(write);
            imported.ids.push(id);
            self.channels.insert(id, channel);
        }
        imported
    }

    /// Fiber's published code cells, found after the boot: a boot waiting
    /// for the lookup would keep every restored flow from the page for as
    /// long as the CKB node takes to answer, or not at all. The node's locks
    /// take the deps they name none of, and every live channel's record
    /// takes them as a boot does ([`ChannelRecord::take_node_cell_deps`]),
    /// stored again before anything that follows.
    pub fn published_cell_deps_found(
        &mut self,
        funding_lock: &ScriptTemplate,
        commitment_lock: &ScriptTemplate,
    ) -> Vec<Action> {
        for (ours, found) in [
            (&mut self.config.funding_lock, funding_lock),
            (&mut self.config.commitment_lock, commitment_lock),
        ] {
            if ours.same_code(found) && ours.cell_deps.is_empty() {
                ours.cell_deps = found.cell_deps.clone();
            }
        }
        let mut taken = Vec::new();
        for channel in self.channels.values_mut() {
            if channel.record.take_node_cell_deps(&self.config) {
                taken.push(channel.record.clone());
            }
        }
        let actions = taken
            .into_iter()
            .map(|record| self.persist_action(record, None, Rollback::Keep))
            .collect();
        self.hold_after_persist(actions)
    }

    /// Restores the closed flows' tombstones, which a boot reads after the    /// Restores the closed flows' tombstones, which a boot reads after the
    /// live records so that they never slow it ([`Node::restore`] for the
    /// rest). A channel the node already holds (one that closed since the
    /// boot) keeps its state in memory; its stored copy is not read over it.
    pub fn restore_tombstones(
        &mut self,
        records: Vec<ChannelRecord>,
        now_ms: u64,
    ) -> (Vec<Action>, Vec<RecordDecodeError>) {
        self.tombstones_restored = true;
        let unknown = records
            .into_iter()
            .filter(|record| !self.channels.contains_key(&record.channel_id))
            .collect();
        self.restore(unknown, now_ms)
    }

    /// Whether what names `channel_id` must wait for the tombstones: the node
    /// does not know the id, and it may be a closed flow's. Answered before
    /// they are in, a call would say "unknown channel" and a peer would be
    /// told to forget a channel the node remembers closing.
    pub fn awaits_tombstones(&self, channel_id: &ChannelId) -> bool {
        !self.tombstones_restored && self.find(channel_id).is_none()
    }

    /// Why a call names a channel this node does not hold: its stored record
    /// could not be read at boot, or there is none.
    fn not_found(&self, channel_id: &ChannelId) -> FlowError {
        if self.unreadable.contains(channel_id) {
            FlowError::RecordUnreadable(*channel_id)
        } else {
            FlowError::UnknownChannel(*channel_id)
        }
    }

    /// Notes the stored records a boot could not read (see `unreadable`).
    pub fn note_unreadable(&mut self, errors: &[RecordDecodeError]) {
        for error in errors {
            if let Ok(id) = Hash256::from_hex(&error.channel_id) {
                self.unreadable.insert(id);
            }
        }
    }

    /// Whether the tombstones are in: a list of every channel needs them.
    pub fn tombstones_restored(&self) -> bool {
        self.tombstones_restored
    }

    // ---- user commands -----------------------------------------------------------------

    /// Builds the channel of an open request from `wallet_cells` (live cells
    /// of `params.funding_lock_script`, as the indexer returns them) and
    /// sends `OpenChannel`. Returns the temporary channel id; the unsigned tx
    /// comes later as [`Action::HandOutUnsignedTx`].
    fn open_channel(
        &mut self,
        params: &OpenChannelParams,
        wallet_cells: &[LiveCell],
        now_ms: u64,
    ) -> Result<(ChannelId, Vec<Action>), FlowError> {
        let seed = self.entropy.random_32();
        let channel = open_channel(
            &self.config,
            params,
            wallet_cells,
            &self.reserved_out_points(None),
            seed,
            now_ms,
        )
        .map_err(|error| self.explain_shortfall(error, params, wallet_cells))?;
        let id = channel.id();
        let mut step = Step {
            config: &self.config,
            now_ms,
            actions: Vec::new(),
            peer_connected: self.connected.contains(&channel.record.peer),
        };
        step.send(channel.record.peer, channel.open_channel_message());
        let actions = self.commit(None, channel, step.actions);
        Ok((id, actions))
    }

    /// The user's signed funding tx (snake_case or camelCase JSON already
    /// parsed). Submitting the same tx again returns the same hash and does
    /// nothing more.
    pub fn submit_signed_funding_tx(
        &mut self,
        channel_id: &ChannelId,
        signed_tx: &packed::Transaction,
        now_ms: u64,
    ) -> Result<(Hash256, Vec<Action>), FlowError> {
        self.step(channel_id, now_ms, |channel, step| {
            Initiator(channel).submit(step, signed_tx)
        })
    }

    /// `shutdown_channel`: asks the peer to close cooperatively, paying our
    /// balance to `close_script` (default: our shutdown script); we pay the
    /// fee, at `fee_rate` (default: the channel's commitment fee rate).
    pub fn shutdown_channel(
        &mut self,
        channel_id: &ChannelId,
        close_script: Option<packed::Script>,
        fee_rate: Option<u64>,
        now_ms: u64,
    ) -> Result<Vec<Action>, FlowError> {
        self.step(channel_id, now_ms, |channel, step| {
            channel.shutdown(step, close_script, fee_rate)
        })
        .map(|((), actions)| actions)
    }

    /// `force_close_channel`: broadcasts our commitment; after the delay our
    /// share is claimed to our shutdown script, by the node alone.
    pub fn force_close_channel(&mut self, channel_id: &ChannelId, now_ms: u64) -> Result<Vec<Action>, FlowError> {
        self.step(channel_id, now_ms, |channel, step| channel.force_close(step))
            .map(|((), actions)| actions)
    }

    /// Gives up on a channel whose funding signatures have not been released.
    pub fn abandon_channel(&mut self, channel_id: &ChannelId, now_ms: u64) -> Result<Vec<Action>, FlowError> {
        self.step(channel_id, now_ms, |channel, step| channel.abandon(step))
            .map(|((), actions)| actions)
    }

    /// A tx spending the user's inputs of the funding tx back to the wallet
    /// at `fee_rate` (default: the funding fee rate), for the wallet to sign:
    /// the way out of a flow that can no longer be abandoned. Changes nothing.
    pub fn cancel_funding_tx(
        &self,
        channel_id: &ChannelId,
        fee_rate: Option<u64>,
    ) -> Result<packed::Transaction, FlowError> {
        let id = self.find(channel_id).ok_or_else(|| self.not_found(channel_id))?;
        let mut channel = self.channels[&id].clone();
        if !channel.is_initiator() {
            return Err(FlowError::NotTheInitiator { channel_id: id });
        }
        Initiator(&mut channel).cancel_tx(fee_rate)
    }

    /// The wallet's signed cancel tx: checked from the tx itself (our inputs
    /// only, nothing paid but a bounded fee, the default lock's signature
    /// verified), then sent. Returns its hash.
    pub fn submit_signed_cancel_tx(
        &mut self,
        channel_id: &ChannelId,
        signed_tx: &packed::Transaction,
        now_ms: u64,
    ) -> Result<(Hash256, Vec<Action>), FlowError> {
        self.step(channel_id, now_ms, |channel, step| {
            if !channel.is_initiator() {
                return Err(FlowError::NotTheInitiator {
                    channel_id: channel.id(),
                });
            }
            Initiator(channel).submit_cancel(step, signed_tx)
        })
    }

    // ---- clock -------------------------------------------------------------------------

    /// Aborts every flow whose deadline has passed; an acceptor configured
    /// to do so force-closes the funded channels of a peer away too long;
    /// asks again the chain checks whose answer could not be stored.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut steps = self.expire_waiting_opens(now_ms);
        steps.extend(self.expire_silent_opens(now_ms));
        steps.extend(self.expire_deadlines(now_ms));
        steps.extend(self.force_close_abandoned(now_ms));
        // The questions asked again (their flags cleared now; a step above
        // that fails restores its channel with them set). One about a
        // channel this tick writes waits for that write; the others go
        // first: held behind another channel's write, they would be
        // dropped with it should it fail.
        let mut asks: Vec<Action> = self
            .channels
            .values_mut()
            .filter_map(Channel::ask_check_again)
            .collect();
        asks.extend(self.ask_peers_again());
        let written: Vec<ChannelId> = steps
            .iter()
            .filter_map(|action| match action {
                Action::Persist { record, .. } => Some([record.channel_id, record.temporary_channel_id]),
                _ => None,
            })
            .flatten()
            .collect();
        let (after, mut actions): (Vec<Action>, Vec<Action>) = asks.into_iter().partition(|ask| {
            let about = match ask {
                Action::Send { message, .. } => Some(message.channel_id()),
                Action::QueryChain { channel_id, .. } => Some(*channel_id),
                _ => None,
            };
            about.is_some_and(|id| written.contains(&id))
        });
        actions.extend(steps);
        actions.extend(after);
        self.hold_after_persist(actions)
    }

    /// A `ReestablishChannel` for each channel whose step was taken back
    /// after a failed write, as a reconnection would send it: the peer
    /// resends what we may lack. A peer away needs none; its reconnection
    /// brings everyone up to date.
    fn ask_peers_again(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for channel in self.channels.values_mut().filter(|c| c.ask_peer_again) {
            channel.ask_peer_again = false;
            let peer = channel.record.peer;
            if self.connected.contains(&peer) && channel.needs_reestablish() {
                let message = catch_up_message(channel, peer, &mut self.reestablish_sent);
                actions.push(Action::Send { peer, message });
            }
        }
        actions
    }

    /// Force-closes the funded channels of peers away longer than the
    /// acceptor's `force_close_after_ms`, so its liquidity is never stuck.
    fn force_close_abandoned(&mut self, now_ms: u64) -> Vec<Action> {
        let Some(after_ms) = self.config.acceptor.as_ref().and_then(|a| a.force_close_after_ms) else {
            return Vec::new();
        };
        let started = self.started_at_ms.unwrap_or(now_ms);
        let due: Vec<ChannelId> = self
            .channels
            .values()
            .filter(|c| c.funded() && c.stuck_without_peer() && !self.connected.contains(&c.record.peer))
            .filter(|c| {
                let away_since = self.peers_away_since.get(&c.record.peer).copied().unwrap_or(started);
                now_ms.saturating_sub(away_since) >= after_ms
            })
            .map(|c| c.id())
            .collect();
        let mut actions = Vec::new();
        for id in due {
            if let Ok(more) = self.force_close_channel(&id, now_ms) {
                actions.extend(more);
            }
        }
        actions
    }

    fn expire_deadlines(&mut self, now_ms: u64) -> Vec<Action> {
        let due: Vec<ChannelId> = self
            .channels
            .values()
            .filter(|c| c.deadline_ms().is_some_and(|d| d <= now_ms))
            .map(|c| c.id())
            .collect();
        let mut actions = Vec::new();
        for id in due {
            if let Ok(((), more)) = self.step::<(), FlowError>(&id, now_ms, |channel, step| {
                channel.on_deadline(step);
                Ok(())
            }) {
                actions.extend(more);
            }
        }
        actions
    }

    /// Whether a read of `query` about `channel_id` that failed is asked
    /// again after `chain_retry_ms`: only one no status poll asks afresh,
    /// and only while the core still waits for its answer (a flow that
    /// ended, or a check a newer one replaced, no longer wants it).
    pub fn retries_failed_query(&self, channel_id: &ChannelId, query: &super::ChainQuery) -> bool {
        #[cfg(feature = "acceptor")]
        if self.pending_opens.contains_key(channel_id) {
            // An open's wallet cells, asked once.
            return matches!(query, super::ChainQuery::LiveCells { .. });
        }
        self.channels
            .get(channel_id)
            .is_some_and(|channel| channel.retries_failed_query(query))
    }

    /// When [`Node::tick`] must next be called: the earliest deadline of any
    /// open flow, or an acceptor's next force close. The runtime keeps one
    /// timer at this time and re-reads it after every step (timers are
    /// polled, as quinn-proto's `poll_timeout`).
    pub fn next_deadline(&self) -> Option<u64> {
        let deadlines = self.channels.values().filter_map(|c| c.deadline_ms()).min();
        let force_close = self
            .config
            .acceptor
            .as_ref()
            .and_then(|a| a.force_close_after_ms)
            .and_then(|after| {
                let started = self.started_at_ms?;
                self.channels
                    .values()
                    .filter(|c| c.funded() && c.stuck_without_peer() && !self.connected.contains(&c.record.peer))
                    .map(|c| {
                        self.peers_away_since
                            .get(&c.record.peer)
                            .copied()
                            .unwrap_or(started)
                            .saturating_add(after)
                    })
                    .min()
            });
        deadlines
            .into_iter()
            .chain(force_close)
            .chain(self.next_open_deadline())
            .min()
    }

    // ---- peers -------------------------------------------------------------------------

    /// A connection to `peer` is up (again): pick up every channel with it.
    pub fn peer_connected(&mut self, peer: &NodeId) -> Vec<Action> {
        self.connected.insert(*peer);
        self.peers_away_since.remove(peer);
        self.reestablish_sent.retain(|_, sent_to| sent_to != peer);
        self.answers_kept.retain(|_, kept| kept.peer != *peer);
        let mut actions = Vec::new();
        // Only what is in flight: a channel ready on both sides with no close
        // under way has nothing to resend (no TLCs here), and answering a
        // reestablish for it would only echo messages of phases long done.
        for channel in self
            .channels
            .values()
            .filter(|c| c.record.peer == *peer && c.needs_reestablish())
        {
            let message = catch_up_message(channel, *peer, &mut self.reestablish_sent);
            actions.push(Action::Send { peer: *peer, message });
        }
        actions.extend(self.release_waiting_opens());
        actions
    }

    /// The connection to `peer` went away at `now_ms`.
    pub fn peer_disconnected(&mut self, peer: &NodeId, now_ms: u64) {
        self.connected.remove(peer);
        self.reestablish_sent.retain(|_, sent_to| sent_to != peer);
        self.answers_kept.retain(|_, kept| kept.peer != *peer);
        self.peers_away_since.insert(*peer, now_ms);
    }

    pub fn peer_message(&mut self, peer: &NodeId, message: FiberMessage, now_ms: u64) -> Vec<Action> {
        let actions = self.on_peer_message(peer, message, now_ms);
        self.hold_after_persist(actions)
    }

    fn on_peer_message(&mut self, peer: &NodeId, message: FiberMessage, now_ms: u64) -> Vec<Action> {
        let name = message.name();
        let message_channel = message.channel_id();
        let result = match message {
            FiberMessage::OpenChannel(open) => return self.on_open_channel(peer, open, now_ms),
            FiberMessage::ReestablishChannel(_) => return self.on_reestablish(peer, &message_channel, now_ms),
            other => self.route(peer, other, now_ms),
        };
        result.unwrap_or_else(|Reject(reason)| {
            vec![Action::Emit(Event::PeerMessageRejected {
                channel_id: message_channel,
                peer: *peer,
                message: name,
                reason,
            })]
        })
    }

    fn route(&mut self, peer: &NodeId, message: FiberMessage, now_ms: u64) -> Result<Vec<Action>, Reject> {
        let message_channel = message.channel_id();
        if let FiberMessage::TxAbort(abort) = &message {
            limits::check_message_text("TxAbort message", &abort.message)?;
            // Only the peer that sent the OpenChannel may withdraw it.
            if self
                .pending_opens
                .get(&message_channel)
                .is_some_and(|pending| pending.peer == *peer)
            {
                self.pending_opens.remove(&message_channel);
                return Ok(Vec::new());
            }
        }
        let Some(id) = self.find(&message_channel) else {
            return Ok(match message {
                FiberMessage::TxAbort(_) => Vec::new(),
                _ => self.unknown_channel(peer, message_channel),
            });
        };
        let channel_peer = self.channels[&id].record.peer;
        if channel_peer != *peer {
            return Err(Reject(format!("channel {id} belongs to peer {channel_peer}")));
        }
        let temporary_id = self.channels[&id].record.temporary_channel_id;
        self.heard_about_open(&temporary_id, now_ms);
        let ((), actions) = self.step(&id, now_ms, |channel, step| match message {
            FiberMessage::CommitmentSigned(m) => {
                channel.on_commitment_signed(step, m.funding_tx_partial_signature, m.next_commitment_nonce)
            }
            FiberMessage::TxSignatures(m) => channel.on_tx_signatures(step, m.witnesses),
            FiberMessage::ChannelReady(_) => channel.on_channel_ready(),
            FiberMessage::TxAbort(m) => channel.on_tx_abort(step, &m.message),
            FiberMessage::Shutdown(m) => channel.on_shutdown(step, m),
            FiberMessage::ClosingSigned(m) => channel.on_closing_signed(step, m.partial_signature),
            // The funding collaboration differs by role: each role's own type.
            other => channel.on_collaboration_message(step, other),
        })?;
        Ok(actions)
    }

    fn on_open_channel(&mut self, peer: &NodeId, message: OpenChannel, now_ms: u64) -> Vec<Action> {
        let temporary_id = message.channel_id;
        let known = self
            .channels
            .values()
            .find(|c| c.record.temporary_channel_id == temporary_id && c.record.peer == *peer);
        // Another peer reusing a temporary id of a pending open is refused;
        // the pending open stays its opener's.
        if self
            .pending_opens
            .get(&temporary_id)
            .is_some_and(|pending| pending.peer != *peer)
        {
            return vec![Action::Emit(Event::PeerMessageRejected {
                channel_id: temporary_id,
                peer: *peer,
                message: "OpenChannel",
                reason: "another peer's open uses this temporary channel id".into(),
            })];
        }
        if let Some(channel) = known {
            // A retransmission: answer with what we sent for it.
            #[cfg(feature = "acceptor")]
            let retransmission = channel.is_closed() || channel.answers_open_channel(&self.config, &message);
            // Without the acceptor role no channel here answers an open.
            #[cfg(not(feature = "acceptor"))]
            let retransmission = channel.is_closed();
            if retransmission {
                return self.retransmit(&channel.id(), now_ms);
            }
            return vec![Action::Emit(Event::PeerMessageRejected {
                channel_id: temporary_id,
                peer: *peer,
                message: "OpenChannel",
                reason: "a different OpenChannel reuses a temporary channel id".into(),
            })];
        }
        if self.pending_opens.contains_key(&temporary_id) {
            return Vec::new();
        }
        // An id this node already knows a channel by: as an open's, it would
        // take that channel's chain answers (and its retries) for its own.
        // Refused quietly: an abort under that id would speak of the channel.
        if self.find(&temporary_id).is_some() {
            return vec![Action::Emit(Event::PeerMessageRejected {
                channel_id: temporary_id,
                peer: *peer,
                message: "OpenChannel",
                reason: "the temporary channel id is the id of a channel this node has".into(),
            })];
        }
        let refuse = |reason: String| {
            vec![Action::Send {
                peer: *peer,
                message: FiberMessage::TxAbort(TxAbort {
                    channel_id: temporary_id,
                    message: limits::bounded_text(&reason),
                }),
            }]
        };
        #[cfg(not(feature = "acceptor"))]
        return refuse("this node does not accept channels".into());
        #[cfg(feature = "acceptor")]
        self.start_accepting(peer, message, refuse)
    }

    /// Checks an `OpenChannel` of a new channel and looks up the cells to
    /// answer it with.
    #[cfg(feature = "acceptor")]
    fn start_accepting(
        &mut self,
        peer: &NodeId,
        message: OpenChannel,
        refuse: impl Fn(String) -> Vec<Action>,
    ) -> Vec<Action> {
        let temporary_id = message.channel_id;
        let Some(acceptor) = &self.config.acceptor else {
            return refuse("this node does not accept channels".into());
        };
        if let Err(Reject(reason)) = check_open_channel(&self.config, &message).and_then(|_| self.check_unfunded(peer))
        {
            // The peer hears why; the operator sees the refusal too.
            let mut actions = refuse(reason.clone());
            actions.push(Action::Emit(Event::PeerMessageRejected {
                channel_id: temporary_id,
                peer: *peer,
                message: "OpenChannel",
                reason,
            }));
            return actions;
        }
        let lock = acceptor.wallet_lock.clone();
        self.pending_opens
            .insert(temporary_id, PendingOpen { peer: *peer, message });
        vec![Action::QueryChain {
            channel_id: temporary_id,
            query: super::ChainQuery::LiveCells { lock },
        }]
    }

    /// A new open from `peer` stays within the unfunded channels it may hold.
    #[cfg(feature = "acceptor")]
    fn check_unfunded(&self, peer: &NodeId) -> Result<(), Reject> {
        let channels = self
            .channels
            .values()
            .filter(|c| c.record.peer == *peer && !c.is_closed() && !c.record.funding_confirmed)
            .count();
        let asked = self.pending_opens.values().filter(|p| p.peer == *peer).count();
        let limit = limits::MAX_UNFUNDED_CHANNELS_PER_PEER;
        if channels.saturating_add(asked) >= limit {
            return Err(Reject(format!(
                "this peer already has {limit} unfunded channels with us; fund or close one first"
            )));
        }
        Ok(())
    }

    fn on_reestablish(&mut self, peer: &NodeId, channel_id: &ChannelId, now_ms: u64) -> Vec<Action> {
        match self.find(channel_id) {
            Some(id) if self.channels[&id].record.peer == *peer => {
                let mut actions = Vec::new();
                // The peer has something in flight; we had nothing to ask for
                // on this connection, but may have sent what it is missing.
                let channel = &self.channels[&id];
                if !channel.is_closed() && self.reestablish_sent.insert(id, *peer).is_none() {
                    actions.push(Action::Send {
                        peer: *peer,
                        message: channel.reestablish_message(),
                    });
                }
                actions.extend(self.retransmit(&id, now_ms));
                actions
            }
            _ => self.unknown_channel(peer, *channel_id),
        }
    }

    /// A message for a channel we do not know. Usually the peer should forget
    /// it too; but while we wait for this peer's `AcceptChannel` we only know
    /// that channel by its temporary id, so stay quiet: our `OpenChannel`
    /// retransmission brings the peer's `AcceptChannel` and both ids together.
    fn unknown_channel(&self, peer: &NodeId, channel_id: ChannelId) -> Vec<Action> {
        let awaiting_accept = self
            .channels
            .values()
            .any(|c| c.record.peer == *peer && c.record.remote.is_none() && !c.is_closed());
        // A record we could not read is a channel we have: telling the peer
        // to forget it would abort a flow a later module could resume. And a
        // wallet's node stays quiet: the same node key may be in use on
        // another device (a key derived from the wallet), whose flows the
        // counterparty would abort; one lost for good ends at the peer's
        // own deadline.
        let wallet = self.config.acceptor.is_none();
        if awaiting_accept || wallet || self.unreadable.contains(&channel_id) {
            Vec::new()
        } else {
            vec![unknown_channel_abort(*peer, channel_id)]
        }
    }

    fn retransmit(&mut self, id: &ChannelId, now_ms: u64) -> Vec<Action> {
        let channel = &self.channels[id];
        let peer = channel.record.peer;
        let rejected = |reason| {
            vec![Action::Emit(Event::PeerMessageRejected {
                channel_id: *id,
                peer,
                message: "ReestablishChannel",
                reason,
            })]
        };
        if channel.record.commitment_signed_held && !channel.is_closed() {
            // The first send of a signature held while the peer was away:
            // from the write that records it, the flow is committed (rule 5).
            let sent = self.step(id, now_ms, |channel, step| {
                channel.record.commitment_signed_held = false;
                for message in channel.messages_to_retransmit(step.config)? {
                    step.send(peer, message);
                }
                Ok::<(), Reject>(())
            });
            return match sent {
                Ok(((), actions)) => actions,
                Err(Reject(reason)) => rejected(reason),
            };
        }
        let record = channel.record.encode();
        let send = |messages: &[FiberMessage]| {
            messages
                .iter()
                .map(|message| Action::Send {
                    peer,
                    message: message.clone(),
                })
                .collect()
        };
        if let Some(kept) = self.answers_kept.get(id) {
            if kept.peer == peer && kept.record == record {
                return send(&kept.messages);
            }
        }
        self.retransmits_built = self.retransmits_built.saturating_add(1);
        match channel.messages_to_retransmit(&self.config) {
            Ok(messages) => {
                let actions = send(&messages);
                self.answers_kept.insert(*id, KeptAnswer { peer, record, messages });
                actions
            }
            Err(Reject(reason)) => rejected(reason),
        }
    }

    // ---- chain -------------------------------------------------------------------------

    pub fn chain_event(&mut self, event: ChainEvent, now_ms: u64) -> Vec<Action> {
        if let Some(id) = self.find(event.channel_id()) {
            let temporary_id = self.channels[&id].record.temporary_channel_id;
            self.chain_answered_open(&temporary_id, now_ms);
        }
        let actions = self.on_chain_event(event, now_ms);
        self.hold_after_persist(actions)
    }

    fn on_chain_event(&mut self, event: ChainEvent, now_ms: u64) -> Vec<Action> {
        let (channel_id, result) = match event {
            #[cfg(feature = "acceptor")]
            ChainEvent::LiveCells { channel_id, cells } if self.pending_opens.contains_key(&channel_id) => {
                return self.on_acceptor_cells(&channel_id, &cells, now_ms)
            }
            ChainEvent::LiveCells { channel_id, cells } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    channel.on_recreated_cells(step, &cells)
                });
                (channel_id, result)
            }
            ChainEvent::ResolvedInputs {
                channel_id,
                out_points,
                cells,
            } => {
                let Some(id) = self.find(&channel_id) else {
                    return Vec::new();
                };
                // Cells other flows hold, which the acceptor's part must not take.
                #[cfg(feature = "acceptor")]
                let reserved = self.reserved_out_points(Some(&id));
                let result = self.step(&id, now_ms, |channel, step| {
                    if channel.pending_claim_lookup.is_some() {
                        return channel.on_claimable_cell(step, &out_points, cells);
                    }
                    if channel.spender_to_verify.is_some() {
                        return channel.on_spender_inputs(step, &out_points, cells);
                    }
                    match channel.record.role {
                        Role::Initiator => Initiator(channel).on_resolved_inputs(step, &out_points, cells),
                        #[cfg(feature = "acceptor")]
                        Role::Acceptor => Acceptor(channel).on_resolved_inputs(step, &out_points, cells, &reserved),
                        #[cfg(not(feature = "acceptor"))]
                        Role::Acceptor => Err(Reject("this build has no acceptor role".into())),
                    }
                });
                (channel_id, result)
            }
            ChainEvent::InputsLive {
                channel_id,
                out_points,
                live,
                at_tip,
            } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    // A channel whose commitment is on chain asks about its
                    // commitment cell (after a refused claim).
                    if let Some(cell) = channel.commitment_cell() {
                        return match (out_points.as_slice(), live.as_slice()) {
                            ([asked], [live]) if *asked == cell => channel.on_commitment_cell_live(step, *live),
                            _ => Err(Reject("the chain's answer is not about our commitment cell".into())),
                        };
                    }
                    // An aborted flow asks about its own inputs; a flow that
                    // can no longer give up, about every input.
                    let asked: Vec<_> = if channel.watching_after_abort() {
                        channel.record.own_cells.iter().map(|c| c.out_point.clone()).collect()
                    } else {
                        channel.funding_inputs_out_points()
                    };
                    if asked != out_points || live.len() != asked.len() {
                        return Err(Reject("the chain's answer is not about our inputs".into()));
                    }
                    channel.on_inputs_live(step, &live, at_tip)
                });
                (channel_id, result)
            }
            ChainEvent::SpenderOf {
                channel_id,
                out_point,
                spender,
            } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    // A channel whose commitment is on chain asks who spent
                    // its commitment cell (after a refused claim).
                    if let Some(cell) = channel.commitment_cell() {
                        if out_point != cell {
                            return Err(Reject("a spender answer for no cell of ours".into()));
                        }
                        return channel.on_commitment_cell_spender(step, spender);
                    }
                    channel.on_spender_of(step, &out_point, spender)
                });
                (channel_id, result)
            }
            ChainEvent::TxStatus {
                channel_id,
                tx_hash,
                report,
            } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    if channel.funding_tx_hash() == Some(tx_hash) && !channel.record.funding_confirmed {
                        return channel.on_funding_tx_status(step, report.status, report.tip.block_number);
                    }
                    match channel
                        .close_txs_to_watch()
                        .into_iter()
                        .find(|(hash, _)| *hash == tx_hash)
                    {
                        Some((_, watched)) => channel.on_close_tx_status(step, watched, tx_hash, report),
                        None => Ok(()),
                    }
                });
                (channel_id, result)
            }
            ChainEvent::FundingSpent { channel_id, tx, report } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    channel.on_funding_spent(step, &tx.0, report)
                });
                (channel_id, result)
            }
            ChainEvent::BroadcastFailed {
                channel_id,
                tx_hash,
                reason,
            } => {
                let result = self.step(&channel_id, now_ms, |channel, step| {
                    if channel.cancel_tx_sent == Some(tx_hash) {
                        step.actions.push(Action::Emit(Event::CancelTxRejected {
                            channel_id: channel.id(),
                            reason,
                        }));
                        return Ok(());
                    }
                    // Only a refusal of the claim itself says the cell it spends is gone.
                    let claim = channel.record.close.as_ref().and_then(|c| c.claim_tx.as_ref());
                    if claim.is_some_and(|claim| crate::tx::parts::tx_hash(claim) == tx_hash.0) {
                        return channel.on_claim_refused(step);
                    }
                    if channel.funded() {
                        channel.on_close_broadcast_failed(step, reason);
                        return Ok(());
                    }
                    channel.on_broadcast_failed(step, reason);
                    Ok(())
                });
                (channel_id, result)
            }
        };
        match result {
            Ok(((), actions)) => actions,
            // Only a broken invariant gets here; say so rather than lose it.
            Err(Reject(reason)) => vec![Action::Emit(Event::FundingTxRejected { channel_id, reason })],
        }
    }

    #[cfg(feature = "acceptor")]
    fn on_acceptor_cells(&mut self, temporary_id: &ChannelId, cells: &[LiveCell], now_ms: u64) -> Vec<Action> {
        let Some(pending) = self.pending_opens.remove(temporary_id) else {
            return Vec::new();
        };
        let Some(acceptor) = self.config.acceptor.clone() else {
            return Vec::new();
        };
        let remote = match check_open_channel(&self.config, &pending.message) {
            Ok(remote) => remote,
            Err(_) => return Vec::new(),
        };
        let refuse = |reason: String| {
            vec![Action::Send {
                peer: pending.peer,
                message: FiberMessage::TxAbort(TxAbort {
                    channel_id: *temporary_id,
                    message: limits::bounded_text(&reason),
                }),
            }]
        };
        let amount = match crate::tx::funding::reserved_ckb_amount(&acceptor.wallet_lock)
            .and_then(|reserve| crate::tx::fee::add(acceptor.funding_amount, reserve, "the acceptor's contribution"))
        {
            Ok(amount) => amount,
            Err(error) => return refuse(error.to_string()),
        };
        let candidates = match select_candidates(&acceptor, cells, &self.reserved_out_points(None), amount) {
            Ok(candidates) => candidates,
            Err(Reject(reason)) => return refuse(reason),
        };
        let seed = self.entropy.random_32();
        let channel = match accept_channel(
            &self.config,
            pending.peer,
            &pending.message,
            remote,
            candidates,
            seed,
            now_ms,
        ) {
            Ok(channel) => channel,
            Err(_) => return Vec::new(),
        };
        let message = channel.accept_channel_message();
        self.commit(
            None,
            channel,
            vec![Action::Send {
                peer: pending.peer,
                message,
            }],
        )
    }

    /// Txs whose status the runtime should poll and report with
    /// [`ChainEvent::TxStatus`]: funding txs until confirmed (and those of
    /// aborted flows that may still confirm), then, for a funded channel, the
    /// txs that could close it and our claim.
    /// The funding cells of funded channels whose close is not yet seen on
    /// chain: each poll asks the chain which committed tx spent it, if any.
    pub fn funding_cells_to_watch(&self) -> Vec<(ChannelId, packed::OutPoint, packed::Script)> {
        self.channels
            .values()
            .filter_map(|channel| {
                let (out_point, lock) = channel.funding_cell_to_watch()?;
                Some((channel.id(), out_point, lock))
            })
            .collect()
    }

    pub fn txs_to_watch(&self) -> Vec<(ChannelId, Hash256)> {
        let mut watched = Vec::new();
        for channel in self.channels.values() {
            if (channel.released() || channel.watching_after_abort() || channel.cannot_abandon_unfunded())
                && !channel.record.funding_confirmed
            {
                watched.extend(channel.funding_tx_hash().map(|hash| (channel.id(), hash)));
            }
            watched.extend(
                channel
                    .close_txs_to_watch()
                    .into_iter()
                    .map(|(hash, _)| (channel.id(), hash)),
            );
        }
        watched
    }

    // ---- queries -----------------------------------------------------------------------

    pub fn channel(&self, channel_id: &ChannelId) -> Option<ChannelView> {
        self.find(channel_id).map(|id| self.view_of(&self.channels[&id]))
    }

    /// What a page asking for one channel is answered: its view; `None` for
    /// a channel the node never held, and [`FlowError::RecordUnreadable`]
    /// for one whose stored record it could not read, since "no such
    /// channel" would tell the page to forget a flow its cells may be
    /// committed to.
    pub fn channel_asked(&self, channel_id: &ChannelId) -> Result<Option<ChannelView>, FlowError> {
        match self.channel(channel_id) {
            None if self.unreadable.contains(channel_id) => Err(FlowError::RecordUnreadable(*channel_id)),
            view => Ok(view),
        }
    }

    /// A channel taken from a backup over a record the boot could not
    /// read: it is readable now.
    pub fn imported_over_unreadable(&mut self, channel_id: &ChannelId) {
        self.unreadable.remove(channel_id);
    }

    pub fn channels(&self) -> Vec<ChannelView> {
        self.channels.values().map(|channel| self.view_of(channel)).collect()
    }

    fn view_of(&self, channel: &Channel) -> ChannelView {
        channel.view(self.connected.contains(&channel.record.peer))
    }

    /// Whether the peer of `channel_id` is connected now.
    pub fn peer_is_connected(&self, channel_id: &ChannelId) -> Option<bool> {
        let id = self.find(channel_id)?;
        Some(self.connected.contains(&self.channels[&id].record.peer))
    }

    /// Every channel's record, as memory holds it.
    pub fn records(&self) -> Vec<&ChannelRecord> {
        self.channels.values().map(|channel| &channel.record).collect()
    }

    /// Every record a backup holds: all but those whose keys were wiped,
    /// which nothing could recover with.
    pub fn backup_records(&self) -> Vec<ChannelRecord> {
        self.records()
            .into_iter()
            .filter(|r| !r.seed_wiped())
            .cloned()
            .collect()
    }

    /// Whether the store holds records of another node key (refused at
    /// boot): the database's stored node key is theirs, and must stay.
    pub fn holds_other_keys_records(&self) -> bool {
        !self.other_keys_records.is_empty()
    }

    /// What a deleted database is made again with: every record this node
    /// holds, and those it refused at boot as another node key's.
    pub fn records_to_recreate(&self) -> Vec<&ChannelRecord> {
        let mut records = self.records();
        records.extend(&self.other_keys_records);
        records
    }

    /// The record of a channel, as last produced (for tests and diagnostics).
    pub fn record(&self, channel_id: &ChannelId) -> Option<&ChannelRecord> {
        self.find(channel_id).map(|id| &self.channels[&id].record)
    }

    /// Our own commitment 0, signed with the peer's signature and ready to
    /// broadcast: the transaction we could close with. For tests and audits.
    pub fn signed_own_commitment(&self, channel_id: &ChannelId) -> Option<packed::Transaction> {
        let id = self.find(channel_id)?;
        self.channels[&id].signed_own_commitment().ok()
    }

    /// Our claim, after the delay, of our share of a commitment-lock cell of
    /// this channel (see [`crate::tx::settlement`]): `holder_is_local` says
    /// whose commitment created it; `script` is the cell's settlement script
    /// when a settlement re-created it (`None`: the commitment's own).
    pub fn claim_commitment_share(
        &self,
        channel_id: &ChannelId,
        holder_is_local: bool,
        out_point: packed::OutPoint,
        cell: packed::CellOutput,
        script: Option<Vec<u8>>,
        fee_rate: u64,
    ) -> Result<packed::Transaction, FlowError> {
        let id = self.find(channel_id).ok_or(FlowError::UnknownChannel(*channel_id))?;
        self.channels[&id]
            .claim_commitment_share(holder_is_local, out_point, cell, script, fee_rate)
            .map_err(|Reject(reason)| FlowError::Internal(reason))
    }

    /// The settlement script of commitment 0 of `holder_is_local ? us : the peer`.
    pub fn commitment_settlement_script(&self, channel_id: &ChannelId, holder_is_local: bool) -> Option<Vec<u8>> {
        let id = self.find(channel_id)?;
        self.channels[&id].commitment_settlement_script(holder_is_local).ok()
    }

    // ---- internals ---------------------------------------------------------------------

    fn find(&self, channel_id: &ChannelId) -> Option<ChannelId> {
        if self.channels.contains_key(channel_id) {
            return Some(*channel_id);
        }
        self.channels
            .values()
            .find(|c| c.record.temporary_channel_id == *channel_id)
            .map(|c| c.id())
    }

    /// Turns the funding builder's shortfall into one a person can act on:
    /// what the amount is made of, and which pending fundings hold the
    /// wallet's other cells.
    fn explain_shortfall(&self, error: FlowError, params: &OpenChannelParams, wallet_cells: &[LiveCell]) -> FlowError {
        let FlowError::Funding(FundingError::InsufficientFunds { needed, available }) = error else {
            return error;
        };
        let mut held = 0u64;
        let mut held_by = Vec::new();
        for channel in self.channels.values().filter(|c| !c.is_closed() && !c.is_ready()) {
            let mut holds = false;
            for cell in wallet_cells.iter().filter(|cell| is_plain_capacity_cell(cell)) {
                if channel
                    .record
                    .own_cells
                    .iter()
                    .any(|own| own.out_point == cell.out_point)
                {
                    held = held.saturating_add(capacity_of(&cell.output));
                    holds = true;
                }
            }
            if holds {
                held_by.push(channel.id());
            }
        }
        FlowError::InsufficientFunds(Shortfall {
            needed,
            amount: u64::try_from(params.funding_amount).unwrap_or(u64::MAX),
            reserve: reserved_ckb_amount(&params.shutdown_script).unwrap_or(0),
            available,
            held,
            held_by,
        })
    }

    /// Out points that pending flows (other than `except`) are funding with.
    fn reserved_out_points(&self, except: Option<&ChannelId>) -> HashSet<packed::OutPoint> {
        self.channels
            .values()
            .filter(|c| Some(&c.id()) != except && !c.is_closed() && !c.is_ready())
            .flat_map(|c| c.record.own_cells.iter().map(|cell| cell.out_point.clone()))
            .collect()
    }

    /// Runs `f` on a copy of the channel and keeps the copy only if it succeeds.
    fn step<T, E>(
        &mut self,
        channel_id: &ChannelId,
        now_ms: u64,
        f: impl FnOnce(&mut Channel, &mut Step) -> Result<T, E>,
    ) -> Result<(T, Vec<Action>), E>
    where
        E: From<FlowError>,
    {
        let id = self
            .find(channel_id)
            .ok_or_else(|| E::from(self.not_found(channel_id)))?;
        let before = self.channels[&id].clone();
        let mut next = before.clone();
        let mut step = Step {
            config: &self.config,
            now_ms,
            actions: Vec::new(),
            peer_connected: self.connected.contains(&before.record.peer),
        };
        let value = f(&mut next, &mut step)?;
        // The final id hashes both sides' basepoints, so a peer can give one
        // channel another's id (answering two opens with each other's
        // basepoints); the other channel, keys and all, is never replaced.
        if next.id() != id && self.channels.contains_key(&next.id()) {
            return Err(E::from(FlowError::ChannelIdTaken { channel_id: next.id() }));
        }
        let actions = step.actions;
        let actions = self.commit(Some(&before), next, actions);
        Ok((value, actions))
    }

    /// Installs a channel after a step: persist first if its record changed,
    /// then the step's actions, then the events and timers that follow.
    fn commit(&mut self, before: Option<&Channel>, channel: Channel, step_actions: Vec<Action>) -> Vec<Action> {
        let mut actions = Vec::new();
        let record_changed = before.is_none_or(|b| b.record != channel.record);
        if record_changed {
            // A channel in memory is stored under its id (a failed write
            // reloads it from the store), so a new id replaces the old one.
            let replaces = before.map(Channel::id).filter(|key| *key != channel.id());
            let rollback = match before {
                Some(before) => Rollback::Restore {
                    current: channel.id(),
                    previous: Box::new(before.clone()),
                },
                None => Rollback::Remove(channel.id()),
            };
            actions.push(self.persist_action(channel.record.clone(), replaces, rollback));
        }
        actions.extend(step_actions);
        let state_changed = before.is_none_or(|b| b.state() != channel.state());
        let closed_now = (state_changed && channel.is_closed()).then(|| {
            let reason = channel.record.closed.as_ref().map(|c| c.reason.clone());
            (channel.record.temporary_channel_id, reason.unwrap_or_default())
        });
        if actions.iter().any(|action| matches!(action, Action::QueryChain { .. })) {
            self.open_awaits_chain(&channel.record.temporary_channel_id);
        }
        self.answer_open_requests(&mut actions, closed_now);
        if state_changed {
            actions.push(Action::Emit(channel.state_event()));
        }
        if let Some(before) = before {
            if before.id() != channel.id() {
                self.channels.remove(&before.id());
            }
        }
        self.channels.insert(channel.id(), channel);
        self.hold_after_persist(actions)
    }
}

/// What brings `peer` up to date on `channel`: our `OpenChannel` again while
/// its `AcceptChannel` has not come (it knows the channel by no other id),
/// else our `ReestablishChannel`, noted as sent on this connection.
fn catch_up_message(channel: &Channel, peer: NodeId, reestablish_sent: &mut VecMap<ChannelId, NodeId>) -> FiberMessage {
    if channel.record.remote.is_none() {
        return channel.open_channel_message();
    }
    reestablish_sent.insert(channel.id(), peer);
    channel.reestablish_message()
}

fn unknown_channel_abort(peer: NodeId, channel_id: ChannelId) -> Action {
    Action::Send {
        peer,
        message: FiberMessage::TxAbort(TxAbort {
            channel_id,
            message: b"unknown channel".to_vec(),
        }),
    }
}
