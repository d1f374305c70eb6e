//! The initiator's side of the peer connection on native: a [`PeerLink`] to
//! one counterparty over WebSocket, the same frames and handshake the
//! browser speaks, reconnecting with backoff until closed. For native
//! initiators (tests, the demo, a CLI wallet).
//!
//! ```no_run
//! use fiber_funding::native::ws_client::WsClientLink;
//! # fn demo(secret: fiber_funding::crypto::keys::NodeSecret, counterparty: fiber_funding::primitives::NodeId) {
//! let (sender, receiver) = fiber_funding::runtime::inbox();
//! // Inside a tokio LocalSet:
//! let link = WsClientLink::connect("ws://127.0.0.1:8230", secret, Some(counterparty), sender.clone());
//! # }
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::platform::random_32;
use super::ws_connection::{drive, websocket_config, ConnectionTimings, Session};
use crate::api::ErrorCode;
use crate::crypto::keys::NodeSecret;
use crate::peer::{AuthError, Frame, PeerHandshake};
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender, PeerLink};
use crate::wire::FiberMessage;

/// How the client reconnects, and its connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Pause after the first failure; doubles on each further one.
    pub first_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timings: ConnectionTimings,
}

impl Default for ClientSettings {
    /// As the browser: 0.5 s doubling up to 15 s.
    fn default() -> Self {
        Self {
            first_backoff_ms: 500,
            max_backoff_ms: 15_000,
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
    /// The authenticated peer and where its frames go.
    current: Option<(NodeId, mpsc::UnboundedSender<Vec<u8>>)>,
    closed: bool,
}

impl WsClientLink {
    /// Starts connecting to `url` with [`ClientSettings::default`]; call from
    /// inside a tokio `LocalSet`. With `expected_peer`, a node that proves
    /// another key is refused (`PeerUnavailable` with `PEER_MISMATCH`) and
    /// not retried.
    pub fn connect(url: &str, secret: NodeSecret, expected_peer: Option<NodeId>, inbox: InputSender) -> Rc<Self> {
        Self::connect_with(url, secret, expected_peer, inbox, ClientSettings::default())
    }

    pub fn connect_with(
        url: &str,
        secret: NodeSecret,
        expected_peer: Option<NodeId>,
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
            expected_peer,
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
    expected_peer: Option<NodeId>,
    settings: ClientSettings,
}

struct ClientSession {
    state: Rc<RefCell<ClientState>>,
}

impl Session for ClientSession {
    fn authenticated(&self, peer: NodeId) -> Option<mpsc::UnboundedReceiver<Vec<u8>>> {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return None;
        }
        let (outbox, receiver) = mpsc::unbounded_channel();
        state.current = Some((peer, outbox));
        let _ = state.inbox.unbounded_send(Input::PeerConnected(peer));
        Some(receiver)
    }

    fn message(&self, peer: NodeId, message: FiberMessage) {
        let _ = self
            .state
            .borrow()
            .inbox
            .unbounded_send(Input::PeerMessage(peer, message));
    }
}

async fn reconnect_loop(target: Target, state: Rc<RefCell<ClientState>>, mut shutdown: watch::Receiver<bool>) {
    let url = &target.url;
    let session = ClientSession { state: state.clone() };
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::select! {
            attempt = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(websocket_config()), true) => attempt,
            _ = shutdown.changed() => return,
        };
        let unavailable = match attempt {
            Ok((ws, _)) => {
                let handshake = PeerHandshake::new(target.secret.clone(), target.expected_peer, random_32());
                let ended = drive(ws, handshake, &session, target.settings.timings, shutdown.clone()).await;
                let mut state = state.borrow_mut();
                state.current = None;
                match (ended.peer, ended.auth_error) {
                    (Some(peer), _) => {
                        failures = 0;
                        let reason = format!("connection to {url} closed ({})", ended.reason);
                        let _ = state.inbox.unbounded_send(Input::PeerDisconnected { peer, reason });
                        None
                    }
                    (None, Some(error)) => {
                        let code = match error {
                            AuthError::WrongPeer { .. } | AuthError::BadProof(_) => ErrorCode::PeerMismatch,
                            _ => ErrorCode::PeerUnreachable,
                        };
                        // Another node at this address will not become the right one by retrying.
                        if code == ErrorCode::PeerMismatch {
                            state.closed = true;
                        }
                        Some((format!("the peer at {url} failed the handshake: {error}"), code))
                    }
                    (None, None) => Some((
                        format!("cannot reach the counterparty at {url} ({})", ended.reason),
                        ErrorCode::PeerUnreachable,
                    )),
                }
            }
            Err(error) => Some((
                format!("cannot reach the counterparty at {url} ({error})"),
                ErrorCode::PeerUnreachable,
            )),
        };
        {
            let state = state.borrow();
            if let Some((reason, code)) = unavailable {
                if !state.closed || code == ErrorCode::PeerMismatch {
                    log::debug!("{reason}");
                    let _ = state.inbox.unbounded_send(Input::PeerUnavailable { reason, code });
                }
            }
            if state.closed {
                return;
            }
        }
        failures += 1;
        let delay = (target.settings.first_backoff_ms << (failures - 1).min(5)).min(target.settings.max_backoff_ms);
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
                let _ = outbox.send(Frame::Message(message.clone()).encode());
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
