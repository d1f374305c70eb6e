//! The counterparty over a WebSocket: the BOLT 8 transport of
//! [`crate::peer`] (this side is the initiator and knows the counterparty's
//! node id), reconnection with backoff, and the driver told of every change
//! through its input queue.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::platform::{random_32, timeout};
use crate::crypto::keys::NodeSecret;
use crate::peer::noise::MAX_PACKET_LEN;
use crate::peer::{PeerSession, SessionError, SessionStep, CLOSE_NOT_THIS_NODE, WRONG_NODE_RETRY_MS};
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender, PeerLink, PeerTrouble};
use crate::wire::FiberMessage;

/// The wait before the first call again after a failure, doubled after
/// each failure in a row up to [`MAX_BACKOFF_MS`] (the first wait is twice
/// this: one failure already counted).
pub const FIRST_BACKOFF_MS: u64 = 500;
pub const MAX_BACKOFF_MS: u64 = 15_000;
/// How long a call may take from opening the socket to an authenticated
/// session (TCP, the WebSocket upgrade and BOLT 8's three acts). A node or
/// proxy that stalls on the way is left for a new call: otherwise the link
/// waits on it for ever and never calls again.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;

pub struct WebSocketLink {
    state: Rc<RefCell<LinkState>>,
}

struct LinkState {
    url: String,
    secret: NodeSecret,
    /// The node that must answer at `url`: BOLT 8's initiator knows it in advance.
    expected_peer: NodeId,
    inbox: InputSender,
    socket: Option<WebSocket>,
    session: Option<PeerSession>,
    /// Set once the session is authenticated.
    peer: Option<NodeId>,
    closed: bool,
    /// This attempt met another node (or a forger): reported already, and
    /// the next call waits [`WRONG_NODE_RETRY_MS`].
    wrong_node: bool,
    failures: u32,
    /// Counts calls, so a handshake timer knows whether its call is the current one.
    attempt: u64,
    /// Why this call was given up before its socket closed (the close
    /// event's code then says less).
    gave_up: Option<String>,
    // Kept alive as long as the socket they are attached to.
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl WebSocketLink {
    /// Starts connecting to `url`, where node `expected_peer` must answer, at
    /// once; keeps reconnecting until closed.
    pub fn connect(url: &str, secret: NodeSecret, expected_peer: NodeId, inbox: InputSender) -> Rc<Self> {
        let state = Rc::new(RefCell::new(LinkState {
            url: url.to_owned(),
            secret,
            expected_peer,
            inbox,
            socket: None,
            session: None,
            peer: None,
            closed: false,
            wrong_node: false,
            failures: 0,
            attempt: 0,
            gave_up: None,
            handlers: Vec::new(),
        }));
        open_socket(&state);
        Rc::new(Self { state })
    }
}

fn open_socket(state: &Rc<RefCell<LinkState>>) {
    let mut link = state.borrow_mut();
    if link.closed {
        return;
    }
    let socket = match WebSocket::new(&link.url) {
        Ok(socket) => socket,
        Err(error) => {
            let reason = format!("cannot open a WebSocket to {}: {}", link.url, describe(&error));
            let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
                reason,
                trouble: PeerTrouble::Unreachable,
            });
            link.closed = true;
            return;
        }
    };
    socket.set_binary_type(BinaryType::Arraybuffer);
    link.session = None;
    link.wrong_node = false;
    link.gave_up = None;
    link.attempt += 1;
    let weak = Rc::downgrade(state);
    give_up_unless_authenticated(weak.clone(), link.attempt);

    let on_open = handler(&weak, |state, _| {
        let mut link = state.borrow_mut();
        match PeerSession::initiator(&link.secret, &link.expected_peer, random_32()) {
            Ok((session, act_one)) => {
                link.session = Some(session);
                if let Some(socket) = &link.socket {
                    let _ = socket.send_with_u8_array(&act_one);
                }
            }
            Err(error) => {
                // Only a peerPubkey that is no curve point gets here; retrying cannot help.
                let reason = format!("cannot call {}: {error}", link.expected_peer);
                let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
                    reason,
                    trouble: PeerTrouble::Mismatch,
                });
                link.closed = true;
                if let Some(socket) = &link.socket {
                    let _ = socket.close();
                }
            }
        }
    });
    let on_message = handler(&weak, |state, event| {
        let Ok(event) = event.dyn_into::<MessageEvent>() else {
            return;
        };
        match read_frame(&event.data()) {
            Ok(bytes) => on_frame(state, &bytes),
            Err(reason) => {
                let url = state.borrow().url.clone();
                fail_session(state, format!("the counterparty at {url} sent {reason}"));
            }
        }
    });
    let on_close = handler(&weak, |state, event| {
        let close = event.dyn_into::<CloseEvent>().ok();
        let refused_act_one = close.as_ref().is_some_and(|e| e.code() == CLOSE_NOT_THIS_NODE);
        let reason = close
            .map(|e| {
                format!(
                    "code {}{}",
                    e.code(),
                    if e.reason().is_empty() {
                        String::new()
                    } else {
                        format!(", {}", e.reason())
                    }
                )
            })
            .unwrap_or_default();
        on_closed(state, reason, refused_act_one);
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    link.handlers = vec![on_open, on_message, on_close];
    link.socket = Some(socket);
}

/// Ends call `attempt` if it has no authenticated session within
/// [`HANDSHAKE_TIMEOUT_MS`], and calls again after the backoff. The socket
/// is let go at once: an open one's close waits for the other side's close
/// frame (up to a minute in Chromium), which a stalled node never sends.
fn give_up_unless_authenticated(weak: Weak<RefCell<LinkState>>, attempt: u64) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(timeout(HANDSHAKE_TIMEOUT_MS)).await;
        let Some(state) = weak.upgrade() else { return };
        let socket = {
            let mut link = state.borrow_mut();
            if link.closed || link.attempt != attempt || link.peer.is_some() {
                return;
            }
            link.gave_up = Some(format!("no handshake within {HANDSHAKE_TIMEOUT_MS} ms"));
            link.socket.take()
        };
        if let Some(socket) = socket {
            detach_and_close(&socket);
        }
        on_closed(&state, String::new(), false);
    });
}

/// Closes `socket` with none of its events reaching the link any more.
fn detach_and_close(socket: &WebSocket) {
    socket.set_onopen(None);
    socket.set_onmessage(None);
    socket.set_onclose(None);
    let _ = socket.close();
}

/// A socket event handler that does nothing once the link is gone.
fn handler(
    weak: &Weak<RefCell<LinkState>>,
    act: impl Fn(&Rc<RefCell<LinkState>>, JsValue) + 'static,
) -> Closure<dyn FnMut(JsValue)> {
    let weak = weak.clone();
    Closure::wrap(Box::new(move |event: JsValue| {
        if let Some(state) = weak.upgrade() {
            act(&state, event);
        }
    }) as Box<dyn FnMut(JsValue)>)
}

fn on_frame(state: &Rc<RefCell<LinkState>>, bytes: &[u8]) {
    let mut link = state.borrow_mut();
    let Some(session) = link.session.as_mut() else {
        return;
    };
    match session.on_packet(bytes) {
        Ok(SessionStep::Reply(reply)) => {
            if let Some(socket) = &link.socket {
                let _ = socket.send_with_u8_array(&reply);
            }
        }
        Ok(SessionStep::Authenticated { peer, reply }) => {
            if let (Some(socket), Some(reply)) = (&link.socket, reply) {
                let _ = socket.send_with_u8_array(&reply);
            }
            link.peer = Some(peer);
            link.failures = 0;
            let _ = link.inbox.unbounded_send(Input::PeerConnected(peer));
        }
        Ok(SessionStep::Message(message)) => {
            if let Some(peer) = link.peer {
                let _ = link.inbox.unbounded_send(Input::PeerMessage(peer, message));
            }
        }
        Err(SessionError::Unreadable(reason)) => {
            // An authenticated message this module cannot read changes nothing.
            web_sys::console::warn_1(&format!("ignored an unreadable message from the counterparty: {reason}").into());
        }
        Err(error) => {
            let wrong_node = link.peer.is_none() && error.is_wrong_key();
            let trouble = if wrong_node {
                PeerTrouble::Mismatch
            } else {
                PeerTrouble::Unreachable
            };
            let reason = if wrong_node {
                format!("the node at {} is not {}: {error}", link.url, link.expected_peer)
            } else {
                format!("the session with the counterparty at {} failed: {error}", link.url)
            };
            if link.peer.is_none() {
                let _ = link.inbox.unbounded_send(Input::PeerUnavailable { reason, trouble });
            }
            if wrong_node {
                link.wrong_node = true;
            }
            if let Some(socket) = &link.socket {
                let _ = socket.close();
            }
        }
    }
}

/// A WebSocket message's bytes, its size checked before they are copied
/// into wasm memory (which never shrinks): at most one BOLT 8 packet, and
/// binary (a text message is no packet).
pub fn read_frame(data: &JsValue) -> Result<Vec<u8>, String> {
    let buffer = data
        .dyn_ref::<js_sys::ArrayBuffer>()
        .ok_or_else(|| "a message that is not binary".to_owned())?;
    let len = usize::try_from(buffer.byte_length()).unwrap_or(usize::MAX);
    if len > MAX_PACKET_LEN {
        return Err(format!(
            "a message of {len} bytes, more than the {MAX_PACKET_LEN} of a packet"
        ));
    }
    Ok(js_sys::Uint8Array::new(buffer).to_vec())
}

/// Ends this connection as a failed session: reported unless the peer was
/// authenticated (then closing reports it), called again after the usual delay.
fn fail_session(state: &Rc<RefCell<LinkState>>, reason: String) {
    let link = state.borrow();
    if link.peer.is_none() {
        let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
            reason,
            trouble: PeerTrouble::Unreachable,
        });
    } else {
        web_sys::console::warn_1(&reason.into());
    }
    if let Some(socket) = &link.socket {
        let _ = socket.close();
    }
}

/// `refused_act_one`: the node at the URL said our act one was not for it.
fn on_closed(state: &Rc<RefCell<LinkState>>, reason: String, refused_act_one: bool) {
    let delay = {
        let mut link = state.borrow_mut();
        link.socket = None;
        link.session = None;
        match link.peer.take() {
            Some(peer) => {
                let reason = format!("connection to {} closed ({reason})", link.url);
                let _ = link.inbox.unbounded_send(Input::PeerDisconnected { peer, reason });
            }
            None if refused_act_one && !link.closed => {
                let reason = format!(
                    "the node at {} is not {} (it refused the handshake: {reason})",
                    link.url, link.expected_peer
                );
                let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
                    reason,
                    trouble: PeerTrouble::Mismatch,
                });
                link.wrong_node = true;
            }
            // Reported when act two failed.
            None if link.wrong_node => {}
            None if !link.closed => {
                let reason = link.gave_up.take().unwrap_or(reason);
                let reason = format!("cannot reach the counterparty at {} ({reason})", link.url);
                let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
                    reason,
                    trouble: PeerTrouble::Unreachable,
                });
            }
            None => {}
        }
        if link.closed {
            return;
        }
        link.failures += 1;
        // Another node, or a forger on the path: call again, much later.
        if link.wrong_node {
            WRONG_NODE_RETRY_MS
        } else {
            (FIRST_BACKOFF_MS << link.failures.min(5)).min(MAX_BACKOFF_MS)
        }
    };
    let weak = Rc::downgrade(state);
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(timeout(delay)).await;
        if let Some(state) = weak.upgrade() {
            open_socket(&state);
        }
    });
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{error:?}"))
}

impl PeerLink for WebSocketLink {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        let mut link = self.state.borrow_mut();
        if link.peer != Some(*peer) {
            return;
        }
        // Sealed here, in send order: each packet takes the next nonce.
        let packet = match link.session.as_mut().map(|session| session.seal(message)) {
            Some(Ok(packet)) => packet,
            Some(Err(error)) => {
                web_sys::console::error_1(&format!("cannot send {}: {error}", message.name()).into());
                return;
            }
            None => return,
        };
        if let Some(socket) = &link.socket {
            let _ = socket.send_with_u8_array(&packet);
        }
    }

    fn close(&self) {
        let mut link = self.state.borrow_mut();
        link.closed = true;
        if let Some(socket) = link.socket.take() {
            detach_and_close(&socket);
        }
        link.handlers.clear();
        link.peer = None;
    }
}

impl Drop for WebSocketLink {
    fn drop(&mut self) {
        self.close();
    }
}
