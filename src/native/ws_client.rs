//! The initiator's side of the peer connection on native: a [`PeerLink`] to
//! one counterparty over WebSocket, the same BOLT 8 transport the browser
//! speaks, reconnecting with backoff until closed. For native
//! initiators (tests, the demo, a CLI wallet).
//!
//! ```no_run
//! use fiber_funding::native::ws_client::WsClientLink;
//! # fn demo(secret: fiber_funding::crypto::keys::NodeSecret, counterparty: fiber_funding::primitives::NodeId) {
//! let (sender, receiver) = fiber_funding::runtime::inbox();
//! // Inside a tokio LocalSet:
//! let link = WsClientLink::connect("ws://127.0.0.1:8230", secret, counterparty, sender.clone());
//! # }
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::platform::random_32;
use super::ws_connection::{drive, websocket_config, ConnectionEvents, ConnectionTimings};
use crate::crypto::keys::NodeSecret;
use crate::peer::{PeerSession, WRONG_NODE_RETRY_MS};
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender, PeerLink, PeerTrouble};
use crate::wire::FiberMessage;

/// How the client reconnects, and its connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Pause after the first failure; doubles on each further one.
    pub first_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Pause after the node at the URL proved to be another one. Not
    /// forever: a bad act two is also what a forger on the path sends.
    pub wrong_node_retry_ms: u64,
    pub timings: ConnectionTimings,
}

impl Default for ClientSettings {
    /// As the browser: 0.5 s doubling up to 15 s.
    fn default() -> Self {
        Self {
            first_backoff_ms: 500,
            max_backoff_ms: 15_000,
            wrong_node_retry_ms: WRONG_NODE_RETRY_MS,
            timings: ConnectionTimings::default(),
        }
    }
}

pub struct WsClientLink {
    state: Rc<RefCell<ClientState>>,
    shutdown: watch::Sender<bool>,
}

struct ClientState {
    inbox: InputSender,
    /// The authenticated peer and where its messages go.
    current: Option<(NodeId, mpsc::UnboundedSender<FiberMessage>)>,
    closed: bool,
}

impl WsClientLink {
    /// Starts connecting to `url`, where node `peer` must answer, with
    /// [`ClientSettings::default`]; call from inside a tokio `LocalSet`. A
    /// node at `url` that does not hold `peer`'s key fails the handshake
    /// (`PeerUnavailable` with `PEER_MISMATCH`) and is not retried.
    pub fn connect(url: &str, secret: NodeSecret, peer: NodeId, inbox: InputSender) -> Rc<Self> {
        Self::connect_with(url, secret, peer, inbox, ClientSettings::default())
    }

    pub fn connect_with(
        url: &str,
        secret: NodeSecret,
        peer: NodeId,
        inbox: InputSender,
        settings: ClientSettings,
    ) -> Rc<Self> {
        let (shutdown, shutdown_seen) = watch::channel(false);
        let state = Rc::new(RefCell::new(ClientState {
            inbox,
            current: None,
            closed: false,
        }));
        let target = Target {
            url: url.to_owned(),
            secret,
            peer,
            settings,
        };
        tokio::task::spawn_local(reconnect_loop(target, state.clone(), shutdown_seen));
        Rc::new(Self { state, shutdown })
    }

    /// The counterparty, while connected and authenticated.
    pub fn peer(&self) -> Option<NodeId> {
        self.state.borrow().current.as_ref().map(|(peer, _)| *peer)
    }
}

struct Target {
    url: String,
    secret: NodeSecret,
    peer: NodeId,
    settings: ClientSettings,
}

struct ClientSession {
    state: Rc<RefCell<ClientState>>,
}

impl ConnectionEvents for ClientSession {
    fn authenticated(&self, peer: NodeId, outbox: mpsc::UnboundedSender<FiberMessage>) -> bool {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return false;
        }
        state.current = Some((peer, outbox));
        true
    }
}

async fn reconnect_loop(target: Target, state: Rc<RefCell<ClientState>>, mut shutdown: watch::Receiver<bool>) {
    let url = &target.url;
    let session = ClientSession { state: state.clone() };
    let inbox = state.borrow().inbox.clone();
    let mut failures: u32 = 0;
    loop {
        let mut wrong_node = false;
        let attempt = tokio::select! {
            attempt = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(websocket_config()), true) => attempt,
            _ = shutdown.changed() => return,
        };
        let unavailable = match attempt {
            Ok((ws, _)) => {
                let ended = match PeerSession::initiator(&target.secret, &target.peer, random_32()) {
                    Ok((session_keys, act_one)) => {
                        drive(
                            ws,
                            session_keys,
                            Some(act_one),
                            &session,
                            &inbox,
                            target.settings.timings,
                            shutdown.clone(),
                        )
                        .await
                    }
                    Err(error) => {
                        // Only a key that is not a curve point gets here: retrying cannot help.
                        state.borrow_mut().closed = true;
                        let reason = format!("cannot call {}: {error}", target.peer);
                        let _ = state.borrow().inbox.unbounded_send(Input::PeerUnavailable {
                            reason,
                            trouble: PeerTrouble::Mismatch,
                        });
                        return;
                    }
                };
                let mut state = state.borrow_mut();
                state.current = None;
                match ended.peer {
                    Some(peer) => {
                        failures = 0;
                        let reason = format!("connection to {url} closed ({})", ended.reason);
                        let _ = state.inbox.unbounded_send(Input::PeerDisconnected { peer, reason });
                        None
                    }
                    None if ended.wrong_node => {
                        // Another node answered, or someone forged its
                        // answer: try again, but only after a long pause.
                        wrong_node = true;
                        Some((
                            format!(
                                "the node at {url} is not {} (it failed the handshake: {})",
                                target.peer, ended.reason
                            ),
                            PeerTrouble::Mismatch,
                        ))
                    }
                    None if ended.handshake_failed => Some((
                        format!("the peer at {url} failed the handshake: {}", ended.reason),
                        PeerTrouble::Unreachable,
                    )),
                    None => Some((
                        format!("cannot reach the counterparty at {url} ({})", ended.reason),
                        PeerTrouble::Unreachable,
                    )),
                }
            }
            Err(error) => Some((
                format!("cannot reach the counterparty at {url} ({error})"),
                PeerTrouble::Unreachable,
            )),
        };
        {
            let state = state.borrow();
            if let Some((reason, trouble)) = unavailable {
                if !state.closed || trouble == PeerTrouble::Mismatch {
                    log::debug!("{reason}");
                    let _ = state.inbox.unbounded_send(Input::PeerUnavailable { reason, trouble });
                }
            }
            if state.closed {
                return;
            }
        }
        failures += 1;
        let delay = if wrong_node {
            target.settings.wrong_node_retry_ms
        } else {
            (target.settings.first_backoff_ms << (failures - 1).min(5)).min(target.settings.max_backoff_ms)
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl PeerLink for WsClientLink {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        if let Some((current, outbox)) = &self.state.borrow().current {
            if current == peer {
                let _ = outbox.send(message.clone());
            }
        }
    }

    fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        state.current = None;
        let _ = self.shutdown.send(true);
    }
}

impl Drop for WsClientLink {
    fn drop(&mut self) {
        self.close();
    }
}
