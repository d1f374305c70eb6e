//! One WebSocket carrying the peer protocol of [`crate::peer`], the same for
//! the server and the client: the identity handshake, then one
//! [`crate::peer::Frame`] per binary message both ways, with pings to notice
//! a peer that went away without closing.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::peer::{AuthError, HandshakeStep, PeerHandshake};
use crate::primitives::NodeId;
use crate::wire::FiberMessage;

/// Largest WebSocket message accepted; a funding message is a few KB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimings {
    /// How long a peer has to prove its node key after connecting.
    pub handshake_timeout_ms: u64,
    /// How often a ping goes out; a peer silent for three of these is gone.
    pub ping_interval_ms: u64,
    /// How long one frame may take to leave (a peer that stopped reading).
    pub send_timeout_ms: u64,
}

impl Default for ConnectionTimings {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: 10_000,
            ping_interval_ms: 20_000,
            send_timeout_ms: 10_000,
        }
    }
}

pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// What a link does with one connection's events.
pub(crate) trait Session {
    /// The peer proved it holds `peer`'s key. Returns where the frames to
    /// send it will come from, or `None` to hang up. When that sender is
    /// dropped (a newer connection of the same peer, the link closing), the
    /// connection ends.
    fn authenticated(&self, peer: NodeId) -> Option<mpsc::UnboundedReceiver<Vec<u8>>>;
    fn message(&self, peer: NodeId, message: FiberMessage);
}

/// How a connection ended.
pub(crate) struct Ended {
    /// The authenticated peer, if it got that far.
    pub peer: Option<NodeId>,
    pub reason: String,
    /// Set when the peer failed the handshake.
    pub auth_error: Option<AuthError>,
}

/// Runs one connection until it closes, fails, or `shutdown` turns true.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    mut handshake: PeerHandshake,
    session: &impl Session,
    timings: ConnectionTimings,
    mut shutdown: watch::Receiver<bool>,
) -> Ended {
    let send_timeout = Duration::from_millis(timings.send_timeout_ms);
    let ping_every = Duration::from_millis(timings.ping_interval_ms.max(1));
    let mut peer: Option<NodeId> = None;
    let mut auth_error = None;
    let mut outbox: Option<mpsc::UnboundedReceiver<Vec<u8>>> = None;
    let auth_deadline = sleep(Duration::from_millis(timings.handshake_timeout_ms));
    tokio::pin!(auth_deadline);
    let mut pings = interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();

    let reason = if *shutdown.borrow() {
        "the link is closed".to_owned()
    } else if let Err(error) = send(&mut ws, Message::Binary(handshake.hello().into()), send_timeout).await {
        format!("cannot send Hello: {error}")
    } else {
        loop {
            tokio::select! {
                incoming = ws.next() => {
                    last_heard = Instant::now();
                    let bytes = match incoming {
                        None => break "the connection closed".to_owned(),
                        Some(Err(error)) => break format!("connection error: {error}"),
                        Some(Ok(Message::Close(frame))) => {
                            break match frame {
                                Some(frame) if !frame.reason.is_empty() => {
                                    format!("closed by the peer (code {}, {})", frame.code, frame.reason)
                                }
                                Some(frame) => format!("closed by the peer (code {})", frame.code),
                                None => "closed by the peer".to_owned(),
                            };
                        }
                        Some(Ok(Message::Text(_))) => {
                            break "sent a text message; the peer protocol is binary frames only".to_owned()
                        }
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        // Pings are answered by tungstenite itself.
                        Some(Ok(_)) => continue,
                    };
                    match handshake.on_frame(&bytes) {
                        Ok(HandshakeStep::Reply(frame)) => {
                            if let Err(error) = send(&mut ws, Message::Binary(frame.into()), send_timeout).await {
                                break format!("cannot send Proof: {error}");
                            }
                        }
                        Ok(HandshakeStep::Authenticated(node)) => match session.authenticated(node) {
                            Some(receiver) => {
                                peer = Some(node);
                                outbox = Some(receiver);
                            }
                            None => break "the link is closed".to_owned(),
                        },
                        Ok(HandshakeStep::Message(message)) => {
                            if let Some(node) = peer {
                                session.message(node, message);
                            }
                        }
                        Ok(HandshakeStep::Nothing) => {}
                        Err(AuthError::Malformed(reason)) if peer.is_some() => {
                            // A message this side cannot read changes nothing; the peer stays.
                            log::warn!("ignored an unreadable frame from {}: {reason}", peer.expect("checked"));
                        }
                        Err(error) => {
                            let reason = format!("failed the handshake: {error}");
                            auth_error = Some(error);
                            break reason;
                        }
                    }
                }
                frame = next_outgoing(&mut outbox), if outbox.is_some() => match frame {
                    Some(frame) => {
                        if let Err(error) = send(&mut ws, Message::Binary(frame.into()), send_timeout).await {
                            break format!("cannot send: {error}");
                        }
                    }
                    None => break "replaced by a newer connection of the same node, or the link closed".to_owned(),
                },
                () = &mut auth_deadline, if peer.is_none() => {
                    break format!("did not authenticate within {} ms", timings.handshake_timeout_ms);
                }
                _ = pings.tick() => {
                    if last_heard.elapsed() > ping_every * 3 {
                        break format!("silent for {} ms", last_heard.elapsed().as_millis());
                    }
                    if let Err(error) = send(&mut ws, Message::Ping(Vec::new().into()), send_timeout).await {
                        break format!("cannot send a ping: {error}");
                    }
                }
                _ = shutdown.changed() => break "the link is closed".to_owned(),
            }
        }
    };
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    Ended {
        peer,
        reason,
        auth_error,
    }
}

async fn next_outgoing(outbox: &mut Option<mpsc::UnboundedReceiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match outbox {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: Message,
    limit: Duration,
) -> Result<(), String> {
    match timeout(limit, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("not sent within {} ms", limit.as_millis())),
    }
}
