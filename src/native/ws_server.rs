//! The counterparty's side of the peer connection: a [`PeerLink`] that
//! accepts WebSocket connections from many browsers at once.
//!
//! Each connection runs its own BOLT 8 handshake as the responder (any node
//! may connect; act three proves its key). Once a peer is authenticated the driver
//! hears `PeerConnected`, then every message as `PeerMessage`, then
//! `PeerDisconnected`. A node that connects again replaces its previous
//! connection, which is closed without a `PeerDisconnected` for the new one.
//!
//! ```no_run
//! use fiber_funding::native::ws_server::WsServer;
//! # async fn demo(secret: fiber_funding::crypto::keys::NodeSecret) -> std::io::Result<()> {
//! let (sender, receiver) = fiber_funding::runtime::inbox();
//! // Inside a tokio LocalSet:
//! let server = WsServer::bind("127.0.0.1:8230", secret, sender.clone(), Default::default()).await?;
//! println!("listening=ws://{}", server.local_addr());
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::platform::random_32;
use super::ws_connection::{drive, websocket_config, ConnectionEvents, ConnectionTimings};
use crate::crypto::keys::NodeSecret;
use crate::peer::PeerSession;
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender, PeerLink};
use crate::wire::FiberMessage;

/// A WebSocket server for every peer of this node.
pub struct WsServer {
    state: Rc<RefCell<ServerState>>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

struct ServerState {
    secret: NodeSecret,
    inbox: InputSender,
    timings: ConnectionTimings,
    /// Each authenticated peer's current connection.
    peers: HashMap<NodeId, Connection>,
    next_connection_id: u64,
    closed: bool,
}

struct Connection {
    id: u64,
    outbox: mpsc::UnboundedSender<FiberMessage>,
}

impl WsServer {
    /// Listens on `addr` (port 0 picks a free one) and starts accepting. Call
    /// from inside a tokio `LocalSet`. Fails at once when the address cannot
    /// be bound (in use, not local, no permission).
    pub async fn bind(
        addr: &str,
        secret: NodeSecret,
        inbox: InputSender,
        timings: ConnectionTimings,
    ) -> std::io::Result<Rc<WsServer>> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, shutdown_seen) = watch::channel(false);
        let state = Rc::new(RefCell::new(ServerState {
            secret,
            inbox,
            timings,
            peers: HashMap::new(),
            next_connection_id: 0,
            closed: false,
        }));
        tokio::task::spawn_local(accept_loop(listener, state.clone(), shutdown_seen));
        Ok(Rc::new(WsServer {
            state,
            local_addr,
            shutdown,
        }))
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peers with an authenticated connection now.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.state.borrow().peers.keys().copied().collect()
    }
}

async fn accept_loop(listener: TcpListener, state: Rc<RefCell<ServerState>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(serve(stream, remote, state.clone(), shutdown.clone()));
            }
            // Out of file descriptors and the like: pause rather than spin.
            Err(error) => {
                log::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

struct ServerSession {
    state: Rc<RefCell<ServerState>>,
    connection_id: u64,
    remote: SocketAddr,
}

impl ConnectionEvents for ServerSession {
    fn authenticated(&self, peer: NodeId, outbox: mpsc::UnboundedSender<FiberMessage>) -> bool {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return false;
        }
        let previous = state.peers.insert(
            peer,
            Connection {
                id: self.connection_id,
                outbox,
            },
        );
        if previous.is_some() {
            log::info!(
                "peer {peer} reconnected from {}; its previous connection is closed",
                self.remote
            );
        } else {
            log::info!("peer {peer} connected from {}", self.remote);
        }
        true
    }
}

async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    state: Rc<RefCell<ServerState>>,
    shutdown: watch::Receiver<bool>,
) {
    let (secret, inbox, timings, connection_id) = {
        let mut state = state.borrow_mut();
        state.next_connection_id += 1;
        (
            state.secret.clone(),
            state.inbox.clone(),
            state.timings,
            state.next_connection_id,
        )
    };
    let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config()));
    let ws = match tokio::time::timeout(std::time::Duration::from_millis(timings.handshake_timeout_ms), upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            log::debug!("{remote}: not a WebSocket connection: {error}");
            return;
        }
        Err(_) => {
            log::debug!(
                "{remote}: no WebSocket upgrade within {} ms",
                timings.handshake_timeout_ms
            );
            return;
        }
    };
    let session = ServerSession {
        state: state.clone(),
        connection_id,
        remote,
    };
    let handshake = match PeerSession::responder(&secret, random_32()) {
        Ok(handshake) => handshake,
        Err(error) => {
            log::error!("cannot start a handshake: {error}");
            return;
        }
    };
    let ended = drive(ws, handshake, None, &session, &inbox, timings, shutdown).await;

    let Some(peer) = ended.peer else {
        if ended.handshake_failed {
            log::warn!("{remote} dropped: {}", ended.reason);
        } else {
            log::debug!("{remote} left before authenticating: {}", ended.reason);
        }
        return;
    };
    let mut state = state.borrow_mut();
    // Only the peer's current connection speaks for it.
    if state.peers.get(&peer).is_some_and(|c| c.id == connection_id) {
        state.peers.remove(&peer);
        log::info!("peer {peer} disconnected: {}", ended.reason);
        let reason = format!("connection from {remote} closed: {}", ended.reason);
        let _ = state.inbox.unbounded_send(Input::PeerDisconnected { peer, reason });
    }
}

impl PeerLink for WsServer {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        match self.state.borrow().peers.get(peer) {
            Some(connection) => {
                let _ = connection.outbox.send(message.clone());
            }
            None => log::debug!("not connected to {peer}; {} dropped", message.name()),
        }
    }

    /// Stops accepting, closes every connection.
    fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closed = true;
        state.peers.clear();
        let _ = self.shutdown.send(true);
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.close();
    }
}
