//! The counterparty over a WebSocket: frames and the identity handshake of
//! [`crate::peer`], reconnection with backoff, and the driver told of every
//! change through its input queue.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::platform::{random_32, timeout};
use crate::api::ErrorCode;
use crate::crypto::keys::NodeSecret;
use crate::peer::{AuthError, Frame, HandshakeStep, PeerHandshake};
use crate::primitives::NodeId;
use crate::runtime::{Input, InputSender, PeerLink};
use crate::wire::FiberMessage;

const FIRST_BACKOFF_MS: u64 = 500;
const MAX_BACKOFF_MS: u64 = 15_000;

pub struct WebSocketLink {
    state: Rc<RefCell<LinkState>>,
}

struct LinkState {
    url: String,
    secret: NodeSecret,
    expected_peer: Option<NodeId>,
    inbox: InputSender,
    socket: Option<WebSocket>,
    handshake: Option<PeerHandshake>,
    peer: Option<NodeId>,
    closed: bool,
    failures: u32,
    // Kept alive as long as the socket they are attached to.
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl WebSocketLink {
    /// Starts connecting to `url` at once; keeps reconnecting until closed.
    pub fn connect(url: &str, secret: NodeSecret, expected_peer: Option<NodeId>, inbox: InputSender) -> Rc<Self> {
        let state = Rc::new(RefCell::new(LinkState {
            url: url.to_owned(),
            secret,
            expected_peer,
            inbox,
            socket: None,
            handshake: None,
            peer: None,
            closed: false,
            failures: 0,
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
                code: ErrorCode::PeerUnreachable,
            });
            link.closed = true;
            return;
        }
    };
    socket.set_binary_type(BinaryType::Arraybuffer);
    link.handshake = Some(PeerHandshake::new(link.secret.clone(), link.expected_peer, random_32()));
    let weak = Rc::downgrade(state);

    let on_open = handler(&weak, |state, _| {
        let link = state.borrow();
        if let (Some(socket), Some(handshake)) = (&link.socket, &link.handshake) {
            let _ = socket.send_with_u8_array(&handshake.hello());
        }
    });
    let on_message = handler(&weak, |state, event| {
        let Ok(event) = event.dyn_into::<MessageEvent>() else {
            return;
        };
        let bytes = js_sys::Uint8Array::new(&event.data()).to_vec();
        on_frame(state, &bytes);
    });
    let on_close = handler(&weak, |state, event| {
        let reason = event
            .dyn_into::<CloseEvent>()
            .ok()
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
        on_closed(state, reason);
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    link.handlers = vec![on_open, on_message, on_close];
    link.socket = Some(socket);
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
    let Some(handshake) = link.handshake.as_mut() else {
        return;
    };
    match handshake.on_frame(bytes) {
        Ok(HandshakeStep::Reply(frame)) => {
            if let Some(socket) = &link.socket {
                let _ = socket.send_with_u8_array(&frame);
            }
        }
        Ok(HandshakeStep::Authenticated(peer)) => {
            link.peer = Some(peer);
            link.failures = 0;
            let _ = link.inbox.unbounded_send(Input::PeerConnected(peer));
        }
        Ok(HandshakeStep::Message(message)) => {
            if let Some(peer) = link.peer {
                let _ = link.inbox.unbounded_send(Input::PeerMessage(peer, message));
            }
        }
        Ok(HandshakeStep::Nothing) => {}
        Err(error) => {
            let code = match error {
                AuthError::WrongPeer { .. } | AuthError::BadProof(_) => ErrorCode::PeerMismatch,
                _ => ErrorCode::PeerUnreachable,
            };
            let reason = format!("the peer at {} failed the handshake: {error}", link.url);
            let _ = link.inbox.unbounded_send(Input::PeerUnavailable { reason, code });
            // Another node at this address will not become the right one by retrying.
            if code == ErrorCode::PeerMismatch {
                link.closed = true;
            }
            if let Some(socket) = &link.socket {
                let _ = socket.close();
            }
        }
    }
}

fn on_closed(state: &Rc<RefCell<LinkState>>, reason: String) {
    let delay = {
        let mut link = state.borrow_mut();
        link.socket = None;
        link.handshake = None;
        match link.peer.take() {
            Some(peer) => {
                let reason = format!("connection to {} closed ({reason})", link.url);
                let _ = link.inbox.unbounded_send(Input::PeerDisconnected { peer, reason });
            }
            None if !link.closed => {
                let reason = format!("cannot reach the counterparty at {} ({reason})", link.url);
                let _ = link.inbox.unbounded_send(Input::PeerUnavailable {
                    reason,
                    code: ErrorCode::PeerUnreachable,
                });
            }
            None => {}
        }
        if link.closed {
            return;
        }
        link.failures += 1;
        (FIRST_BACKOFF_MS << link.failures.min(5)).min(MAX_BACKOFF_MS)
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
        let link = self.state.borrow();
        if link.peer != Some(*peer) {
            return;
        }
        if let Some(socket) = &link.socket {
            let _ = socket.send_with_u8_array(&Frame::Message(message.clone()).encode());
        }
    }

    fn close(&self) {
        let mut link = self.state.borrow_mut();
        link.closed = true;
        if let Some(socket) = link.socket.take() {
            socket.set_onopen(None);
            socket.set_onmessage(None);
            socket.set_onclose(None);
            let _ = socket.close();
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
