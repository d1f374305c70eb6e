//! Opens the application asked for, from the request to the unsigned tx:
//! waiting for the peer, looking up the wallet's cells, building the channel,
//! and the answer — the unsigned tx or why not. The runtime only carries the
//! answer to whoever asked ([`Action::HandOutUnsignedTx`], [`Action::OpenFailed`]).

use super::Node;
use crate::chain::client::ChainError;
use crate::chain::LiveCell;
use crate::flow::config::OpenChannelParams;
use crate::flow::error::FlowError;
use crate::flow::initiator::check_open_params;
use crate::flow::Action;
use crate::primitives::{ChannelId, NodeId};
use crate::store::StoreError;

/// Names one open request; the caller picks it (a counter) and hears back
/// under it. Requests live in memory only: after a reload nobody is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenId(pub u64);

/// Why an open request ended without an unsigned tx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenFailure {
    /// The peer did not connect before the request gave up.
    #[error("the counterparty {peer} did not connect within {waited_s} s; check peerUrl and that it is running")]
    PeerUnreachable { peer: NodeId, waited_s: u64 },
    /// The peer was connected but sent nothing for the channel for as long
    /// as the request waits for a connection; the channel was aborted
    /// (nothing had been signed or handed out).
    #[error(
        "the counterparty {peer} did not answer the open for {waited_s} s; the channel was aborted, nothing was signed"
    )]
    PeerSilent { peer: NodeId, waited_s: u64 },
    /// The connection reached another node than the one asked for.
    #[error("{0}")]
    PeerMismatch(String),
    /// The wallet's cells could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The open was refused before anything was sent (funds, parameters).
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The channel closed before its unsigned tx was final.
    #[error("the channel was not opened: {0}")]
    Refused(String),
    /// The new channel could not be stored, so nothing was sent to the peer.
    #[error("the channel could not be saved, so nothing was sent: {0}")]
    Storage(StoreError),
    /// A later step of a channel already opened with the peer could not be
    /// stored; the channel stays as stored, and goes on.
    #[error(
        "channel {channel_id} was opened with the counterparty, but its next step could not be saved: {error}; \
         it stays as stored and goes on (pendingFundings() lists it once its funding tx is final; abandonChannel ends it)"
    )]
    NotSaved { channel_id: ChannelId, error: StoreError },
}

impl OpenFailure {
    /// A write failed (the store's error).
    pub fn storage_error(&self) -> Option<&StoreError> {
        match self {
            Self::Storage(error) | Self::NotSaved { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A request whose channel exists and waits for its unsigned tx.
pub(super) struct OpenInFlight {
    pub(super) id: OpenId,
    /// How long the peer may stay silent: the request's wait for a connection.
    patience_ms: u64,
    /// When the peer last sent a message for the channel, or the chain last
    /// answered for it (or the channel was made).
    heard_at_ms: u64,
    /// The open waits for our own chain lookup, not for the peer: no clock.
    awaits_chain: bool,
}

impl OpenInFlight {
    fn gives_up_at_ms(&self) -> Option<u64> {
        (!self.awaits_chain).then(|| self.heard_at_ms.saturating_add(self.patience_ms))
    }
}

/// A request not yet turned into a channel.
pub(super) struct WaitingOpen {
    id: OpenId,
    params: OpenChannelParams,
    asked_at_ms: u64,
    give_up_at_ms: u64,
    /// The wallet's cells are being looked up (the peer was there).
    fetching: bool,
}

impl Node {
    /// Asks for a channel to `params.pubkey` funded from the wallet's cells.
    /// Once the peer is connected the node looks up those cells
    /// ([`Action::FetchWalletCells`]); the answer is an
    /// [`Action::HandOutUnsignedTx`] or an [`Action::OpenFailed`] under `id`.
    /// A peer that has not connected by `give_up_at_ms` fails the request;
    /// parameters the user got wrong fail it at once.
    pub fn request_open(
        &mut self,
        id: OpenId,
        params: OpenChannelParams,
        give_up_at_ms: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        if let Err(error) = check_open_params(&self.config, &params) {
            return vec![Action::OpenFailed {
                open: id,
                failure: error.into(),
            }];
        }
        self.waiting_opens.push(WaitingOpen {
            id,
            params,
            asked_at_ms: now_ms,
            give_up_at_ms,
            fetching: false,
        });
        self.release_waiting_opens()
    }

    /// The wallet's cells for request `id`, or why they could not be read.
    pub fn wallet_cells(&mut self, id: OpenId, cells: Result<Vec<LiveCell>, ChainError>, now_ms: u64) -> Vec<Action> {
        let Some(at) = self.waiting_opens.iter().position(|w| w.id == id && w.fetching) else {
            return Vec::new();
        };
        let request = self.waiting_opens.remove(at);
        let failed = |failure: OpenFailure| vec![Action::OpenFailed { open: id, failure }];
        let cells = match cells {
            Ok(cells) => cells,
            Err(error) => return failed(error.into()),
        };
        match self.open_channel(&request.params, &cells, now_ms) {
            Ok((temporary_id, actions)) => {
                let patience_ms = request.give_up_at_ms.saturating_sub(request.asked_at_ms);
                let in_flight = OpenInFlight {
                    id,
                    patience_ms,
                    heard_at_ms: now_ms,
                    awaits_chain: false,
                };
                self.opens_in_flight.insert(temporary_id, in_flight);
                actions
            }
            Err(error) => failed(error.into()),
        }
    }

    /// The link reached a node other than the one the waiting opens are for:
    /// they fail now (retrying will not make it the right node).
    pub fn peer_mismatch(&mut self, reason: &str) -> Vec<Action> {
        let (failing, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_opens)
            .into_iter()
            .partition(|w| !w.fetching);
        self.waiting_opens = kept;
        failing
            .into_iter()
            .map(|w| Action::OpenFailed {
                open: w.id,
                failure: OpenFailure::PeerMismatch(reason.to_owned()),
            })
            .collect()
    }

    /// The channel an open request created, while it waits for its unsigned tx.
    pub fn opened_channel(&self, id: OpenId) -> Option<ChannelId> {
        self.opens_in_flight
            .iter()
            .find(|(_, open)| open.id == id)
            .map(|(temporary_id, _)| *temporary_id)
    }

    /// Requests whose peer is connected go on to the wallet's cells; with the
    /// link connected to another node they fail; the rest keep waiting.
    pub(super) fn release_waiting_opens(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let other = self.connected.iter().next().copied();
        let mut kept = Vec::new();
        for mut request in std::mem::take(&mut self.waiting_opens) {
            if request.fetching {
                kept.push(request);
            } else if self.connected.contains(&request.params.pubkey) {
                request.fetching = true;
                actions.push(Action::FetchWalletCells {
                    open: request.id,
                    lock: request.params.funding_lock_script.clone(),
                });
                kept.push(request);
            } else if let Some(other) = other {
                let reason = format!(
                    "the node at peerUrl is {other}, not {} that the channel is opened with",
                    request.params.pubkey
                );
                actions.push(Action::OpenFailed {
                    open: request.id,
                    failure: OpenFailure::PeerMismatch(reason),
                });
            } else {
                kept.push(request);
            }
        }
        self.waiting_opens = kept;
        actions
    }

    /// Requests still waiting for their peer at `now_ms` past their time.
    pub(super) fn expire_waiting_opens(&mut self, now_ms: u64) -> Vec<Action> {
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_opens)
            .into_iter()
            .partition(|w| !w.fetching && w.give_up_at_ms <= now_ms);
        self.waiting_opens = kept;
        expired
            .into_iter()
            .map(|w| Action::OpenFailed {
                open: w.id,
                failure: OpenFailure::PeerUnreachable {
                    peer: w.params.pubkey,
                    waited_s: w.give_up_at_ms.saturating_sub(w.asked_at_ms) / 1000,
                },
            })
            .collect()
    }

    /// The peer sent a message for the channel of temporary id `temporary_id`.
    pub(super) fn heard_about_open(&mut self, temporary_id: &ChannelId, now_ms: u64) {
        if let Some(open) = self.opens_in_flight.get_mut(temporary_id) {
            open.heard_at_ms = now_ms;
        }
    }

    /// The open of `temporary_id` asked the chain something: until the
    /// answer it waits for us, not for the peer.
    pub(super) fn open_awaits_chain(&mut self, temporary_id: &ChannelId) {
        if let Some(open) = self.opens_in_flight.get_mut(temporary_id) {
            open.awaits_chain = true;
        }
    }

    /// The chain answered for the open of `temporary_id`: the peer's turn may
    /// come next, so its clock starts again from now.
    pub(super) fn chain_answered_open(&mut self, temporary_id: &ChannelId, now_ms: u64) {
        if let Some(open) = self.opens_in_flight.get_mut(temporary_id) {
            open.awaits_chain = false;
            open.heard_at_ms = now_ms;
        }
    }

    /// Opens whose peer stayed silent past their patience at `now_ms`: each
    /// channel is aborted (its `TxAbort` sent) and its request fails.
    pub(super) fn expire_silent_opens(&mut self, now_ms: u64) -> Vec<Action> {
        let silent: Vec<(ChannelId, OpenId, u64)> = self
            .opens_in_flight
            .iter()
            .filter(|(_, open)| open.gives_up_at_ms().is_some_and(|at| at <= now_ms))
            .map(|(temporary_id, open)| (*temporary_id, open.id, open.patience_ms / 1000))
            .collect();
        let mut actions = Vec::new();
        for (temporary_id, open, waited_s) in silent {
            // Out of the table first: the close below must not also answer
            // the request as refused.
            self.opens_in_flight.remove(&temporary_id);
            let Some(id) = self.find(&temporary_id) else {
                continue;
            };
            let peer = self.channels[&id].record.peer;
            let reason = format!("the counterparty did not answer the open for {waited_s} s");
            if let Ok(((), more)) = self.step::<(), FlowError>(&id, now_ms, |channel, step| {
                channel.abort_silent_open(step, reason);
                Ok(())
            }) {
                actions.extend(more);
            }
            actions.push(Action::OpenFailed {
                open,
                failure: OpenFailure::PeerSilent { peer, waited_s },
            });
        }
        actions
    }

    /// When the first waiting request gives up, or the first open in flight
    /// stops waiting for its silent peer.
    pub(super) fn next_open_deadline(&self) -> Option<u64> {
        let waiting = self
            .waiting_opens
            .iter()
            .filter(|w| !w.fetching)
            .map(|w| w.give_up_at_ms);
        let in_flight = self.opens_in_flight.values().filter_map(OpenInFlight::gives_up_at_ms);
        waiting.chain(in_flight).min()
    }

    /// Ties a step's actions to the open request that is waiting for them:
    /// the hand-out names its request, and a channel that closed before its
    /// hand-out fails its request.
    pub(super) fn answer_open_requests(&mut self, actions: &mut Vec<Action>, closed: Option<(ChannelId, String)>) {
        for action in actions.iter_mut() {
            if let Action::HandOutUnsignedTx {
                temporary_channel_id,
                open,
                ..
            } = action
            {
                *open = self.opens_in_flight.remove(temporary_channel_id).map(|open| open.id);
            }
        }
        if let Some((temporary_id, reason)) = closed {
            if let Some(open) = self.opens_in_flight.remove(&temporary_id) {
                actions.push(Action::OpenFailed {
                    open: open.id,
                    failure: OpenFailure::Refused(reason),
                });
            }
        }
    }
}
