//! An in-process link between two drivers: every message is encoded and
//! decoded again, as on a socket. For tests and the in-page test harness.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::driver::{Input, InputSender, PeerLink};
use crate::primitives::NodeId;
use crate::wire::FiberMessage;

pub struct LoopbackLink {
    own_id: NodeId,
    peer_id: NodeId,
    own_inbox: InputSender,
    peer_inbox: RefCell<InputSender>,
    up: Rc<Cell<bool>>,
}

impl LoopbackLink {
    /// Two ends: `a` delivers into `b`'s inbox and vice versa. Both start
    /// down; call [`LoopbackLink::connect`].
    pub fn pair(a: (NodeId, InputSender), b: (NodeId, InputSender)) -> (Rc<Self>, Rc<Self>) {
        let up = Rc::new(Cell::new(false));
        let a_end = Rc::new(Self {
            own_id: a.0,
            peer_id: b.0,
            own_inbox: a.1.clone(),
            peer_inbox: RefCell::new(b.1.clone()),
            up: up.clone(),
        });
        let b_end = Rc::new(Self {
            own_id: b.0,
            peer_id: a.0,
            own_inbox: b.1,
            peer_inbox: RefCell::new(a.1),
            up,
        });
        (a_end, b_end)
    }

    /// A new end for the peer of `survivor`, which restarted with a new inbox
    /// (a page reload): the survivor now delivers there.
    pub fn replace_peer(survivor: &Self, inbox: InputSender) -> Rc<Self> {
        *survivor.peer_inbox.borrow_mut() = inbox.clone();
        Rc::new(Self {
            own_id: survivor.peer_id,
            peer_id: survivor.own_id,
            own_inbox: inbox,
            peer_inbox: RefCell::new(survivor.own_inbox.clone()),
            up: survivor.up.clone(),
        })
    }

    /// Brings the link up and tells both drivers.
    pub fn connect(&self) {
        self.up.set(true);
        let _ = self.own_inbox.unbounded_send(Input::PeerConnected(self.peer_id));
        let _ = self
            .peer_inbox
            .borrow()
            .unbounded_send(Input::PeerConnected(self.own_id));
    }

    /// Takes the link down and tells both drivers; messages sent meanwhile are lost.
    pub fn disconnect(&self) {
        self.up.set(false);
        let reason = "loopback link cut".to_string();
        let _ = self.own_inbox.unbounded_send(Input::PeerDisconnected {
            peer: self.peer_id,
            reason: reason.clone(),
        });
        let _ = self.peer_inbox.borrow().unbounded_send(Input::PeerDisconnected {
            peer: self.own_id,
            reason,
        });
    }
}

impl PeerLink for LoopbackLink {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        if !self.up.get() || *peer != self.peer_id {
            return;
        }
        let message = FiberMessage::decode(&message.encode()).expect("what we encode decodes");
        let _ = self
            .peer_inbox
            .borrow()
            .unbounded_send(Input::PeerMessage(self.own_id, message));
    }

    fn close(&self) {
        self.up.set(false);
    }
}
