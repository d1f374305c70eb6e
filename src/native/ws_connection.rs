//! One WebSocket carrying the peer protocol of [`crate::peer`], the same for
//! the server and the client: the BOLT 8 handshake, then one encrypted
//! packet per binary message both ways, with pings to notice a peer that
//! went away without closing.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::peer::noise::{NoiseError, MAX_PACKET_LEN};
use crate::peer::{PeerSession, SessionError, SessionStep, CLOSE_NOT_THIS_NODE};
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender};
use crate::wire::FiberMessage;

/// Largest WebSocket message accepted: one BOLT 8 packet.
pub(crate) const MAX_MESSAGE_BYTES: usize = MAX_PACKET_LEN;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimings {
    /// How long the BOLT 8 handshake may take after connecting.
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
pub(crate) trait ConnectionEvents {
    /// The peer proved it holds `peer`'s key: keep `outbox` as the way to
    /// send to it, or return false to hang up. When `outbox` is dropped (a
    /// newer connection of the same peer, the link closing), the connection
    /// ends.
    fn authenticated(&self, peer: NodeId, outbox: mpsc::UnboundedSender<FiberMessage>) -> bool;
}

/// How a connection ended.
pub(crate) struct Ended {
    /// The authenticated peer, if it got that far.
    pub peer: Option<NodeId>,
    pub reason: String,
    /// The handshake failed (on either side) before anyone was authenticated.
    pub handshake_failed: bool,
    /// The other end is not the node we called: it refused our act one, or
    /// its act two did not prove the expected key.
    pub wrong_node: bool,
}

/// Runs one connection until it closes, fails, or `shutdown` turns true.
/// `first` is what this side sends first (the initiator's act one). The
/// driver behind `inbox` hears `PeerConnected` and then each message; the
/// link says `PeerDisconnected` itself, as only it knows whether the
/// connection still speaks for the peer.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    mut session: PeerSession,
    first: Option<Vec<u8>>,
    events: &impl ConnectionEvents,
    inbox: &InputSender,
    timings: ConnectionTimings,
    mut shutdown: watch::Receiver<bool>,
) -> Ended {
    let send_timeout = Duration::from_millis(timings.send_timeout_ms);
    let ping_every = Duration::from_millis(timings.ping_interval_ms.max(1));
    let mut peer: Option<NodeId> = None;
    let mut handshake_failed = false;
    let mut wrong_node = false;
    let mut close_frame = None;
    let mut outbox: Option<mpsc::UnboundedReceiver<FiberMessage>> = None;
    let auth_deadline = sleep(Duration::from_millis(timings.handshake_timeout_ms));
    tokio::pin!(auth_deadline);
    let mut pings = interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();

    let first_sent = match first {
        Some(bytes) => send(&mut ws, Message::Binary(bytes.into()), send_timeout)
            .await
            .map_err(|error| format!("cannot send act one: {error}")),
        None => Ok(()),
    };
    let reason = if *shutdown.borrow() {
        "the link is closed".to_owned()
    } else if let Err(reason) = first_sent {
        reason
    } else {
        loop {
            tokio::select! {
                incoming = ws.next() => {
                    last_heard = Instant::now();
                    let bytes = match incoming {
                        None => break "the connection closed".to_owned(),
                        Some(Err(error)) => break format!("connection error: {error}"),
                        Some(Ok(Message::Close(frame))) => {
                            if peer.is_none() && frame.as_ref().is_some_and(|f| u16::from(f.code) == CLOSE_NOT_THIS_NODE) {
                                wrong_node = true;
                                handshake_failed = true;
                            }
                            break match frame {
                                Some(frame) if !frame.reason.is_empty() => {
                                    format!("closed by the peer (code {}, {})", frame.code, frame.reason)
                                }
                                Some(frame) => format!("closed by the peer (code {})", frame.code),
                                None => "closed by the peer".to_owned(),
                            };
                        }
                        Some(Ok(Message::Text(_))) => {
                            break "sent a text message; the peer protocol is binary packets only".to_owned()
                        }
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        // Pings are answered by tungstenite itself.
                        Some(Ok(_)) => continue,
                    };
                    let reply = match session.on_packet(&bytes) {
                        Ok(SessionStep::Reply(reply)) => Some(reply),
                        Ok(SessionStep::Authenticated { peer: node, reply }) => {
                            let (sender, receiver) = mpsc::unbounded_channel();
                            if !events.authenticated(node, sender) {
                                break "the link is closed".to_owned();
                            }
                            let _ = inbox.unbounded_send(Input::PeerConnected(node));
                            peer = Some(node);
                            outbox = Some(receiver);
                            reply
                        }
                        Ok(SessionStep::Message(message)) => {
                            if let Some(node) = peer {
                                let _ = inbox.unbounded_send(Input::PeerMessage(node, message));
                            }
                            None
                        }
                        Err(SessionError::Unreadable(reason)) => {
                            // An authenticated message this side cannot read changes nothing.
                            log::warn!("ignored an unreadable message from {peer:?}: {reason}");
                            None
                        }
                        Err(error) => {
                            if peer.is_none() {
                                handshake_failed = true;
                                wrong_node = error.is_wrong_key();
                                if error == SessionError::Noise(NoiseError::BadTag { act: 1 }) {
                                    close_frame = Some(CloseFrame {
                                        code: CloseCode::from(CLOSE_NOT_THIS_NODE),
                                        reason: "act one was not addressed to this node".into(),
                                    });
                                }
                                break format!("failed the handshake: {error}");
                            }
                            break format!("broke the session: {error}");
                        }
                    };
                    if let Some(reply) = reply {
                        if let Err(error) = send(&mut ws, Message::Binary(reply.into()), send_timeout).await {
                            break format!("cannot send a handshake act: {error}");
                        }
                    }
                }
                message = next_outgoing(&mut outbox), if outbox.is_some() => match message {
                    Some(message) => {
                        let packet = match session.seal(&message) {
                            Ok(packet) => packet,
                            Err(error) => {
                                log::error!("cannot send {}: {error}", message.name());
                                continue;
                            }
                        };
                        if let Err(error) = send(&mut ws, Message::Binary(packet.into()), send_timeout).await {
                            break format!("cannot send: {error}");
                        }
                    }
                    None => break "replaced by a newer connection of the same node, or the link closed".to_owned(),
                },
                () = &mut auth_deadline, if peer.is_none() => {
                    break format!("did not complete the handshake within {} ms", timings.handshake_timeout_ms);
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
    let _ = timeout(Duration::from_secs(1), ws.close(close_frame)).await;
    Ended {
        peer,
        reason,
        handshake_failed,
        wrong_node,
    }
}

async fn next_outgoing(outbox: &mut Option<mpsc::UnboundedReceiver<FiberMessage>>) -> Option<FiberMessage> {
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
