//! One connection's session: the BOLT 8 handshake, then Fiber messages in
//! encrypted packets. Sans-IO: bytes in, bytes and events out.

use super::noise::{InitiatorHandshake, NoiseError, ResponderHandshake, Transport, MAX_MESSAGE_LEN};
use crate::crypto::keys::NodeSecret;
use crate::primitives::NodeId;
use crate::wire::{FiberMessage, WireError};

/// Why a connection's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The handshake or a packet failed: the connection must end.
    #[error("{0}")]
    Noise(#[from] NoiseError),
    /// Bytes arrived where none are due (after a failure, or act two on a responder).
    #[error("the peer sent {0} out of order")]
    OutOfOrder(&'static str),
    /// An authenticated packet that is not a message we read. The session
    /// goes on: the peer is who it claims, it only speaks of something else.
    #[error("unreadable message: {0}")]
    Unreadable(WireError),
    #[error("a {len}-byte message does not fit in one packet (at most {MAX_MESSAGE_LEN})")]
    MessageTooLong { len: usize },
    #[error("no message can be sent before the handshake completes")]
    NotReady,
}

impl SessionError {
    /// Whether the connection must end. Only an unreadable message from an
    /// authenticated peer leaves it open.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Unreadable(_))
    }

    /// Whether this failure means the peer does not hold the key we expected
    /// (as opposed to a broken or hostile connection).
    pub fn is_wrong_key(&self) -> bool {
        matches!(self, Self::Noise(NoiseError::BadTag { act: 2 }))
    }
}

/// What to do after a packet.
// Short-lived and moved once; boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStep {
    /// Send these bytes to the peer.
    Reply(Vec<u8>),
    /// The peer proved it holds the key of `NodeId`; when a reply is due
    /// too (act three, on the initiator), it comes with it.
    Authenticated { peer: NodeId, reply: Option<Vec<u8>> },
    /// A message from the authenticated peer.
    Message(FiberMessage),
}

#[cfg_attr(fuzzing, derive(Clone))]
enum State {
    InitiatorAwaitingActTwo(InitiatorHandshake),
    ResponderAwaitingActOne(ResponderHandshake),
    ResponderAwaitingActThree(ResponderHandshake),
    Open(Transport),
    Failed,
}

/// A peer connection's cryptographic session.
///
/// ```
/// use fiber_funding::crypto::keys::NodeSecret;
/// use fiber_funding::peer::{PeerSession, SessionStep};
/// use fiber_funding::primitives::Hash256;
/// use fiber_funding::wire::{ChannelReady, FiberMessage};
///
/// let browser = NodeSecret::from_bytes([1; 32]).unwrap();
/// let hub = NodeSecret::from_bytes([2; 32]).unwrap();
/// let (mut a, act_one) = PeerSession::initiator(&browser, &hub.node_id(), [3; 32]).unwrap();
/// let mut b = PeerSession::responder(&hub, [4; 32]).unwrap();
/// let SessionStep::Reply(act_two) = b.on_packet(&act_one).unwrap() else { panic!() };
/// let SessionStep::Authenticated { reply: Some(act_three), .. } = a.on_packet(&act_two).unwrap() else { panic!() };
/// assert_eq!(b.on_packet(&act_three).unwrap(), SessionStep::Authenticated { peer: browser.node_id(), reply: None });
///
/// let ready = FiberMessage::ChannelReady(ChannelReady { channel_id: Hash256([7; 32]) });
/// let packet = a.seal(&ready).unwrap();
/// assert_eq!(b.on_packet(&packet).unwrap(), SessionStep::Message(ready));
/// ```
#[cfg_attr(fuzzing, derive(Clone))]
pub struct PeerSession {
    state: State,
    peer: Option<NodeId>,
}

impl PeerSession {
    /// The connecting side: knows whom it calls. Returns act one to send.
    /// `ephemeral` must be fresh randomness for this connection.
    pub fn initiator(local: &NodeSecret, peer: &NodeId, ephemeral: [u8; 32]) -> Result<(Self, Vec<u8>), SessionError> {
        let (handshake, act_one) = InitiatorHandshake::new(local, peer, ephemeral)?;
        let session = Self {
            state: State::InitiatorAwaitingActTwo(handshake),
            peer: None,
        };
        Ok((session, act_one.to_vec()))
    }

    /// The accepting side: learns who called in act three.
    pub fn responder(local: &NodeSecret, ephemeral: [u8; 32]) -> Result<Self, SessionError> {
        Ok(Self {
            state: State::ResponderAwaitingActOne(ResponderHandshake::new(local, ephemeral)?),
            peer: None,
        })
    }

    /// The authenticated peer, once the handshake has completed.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// One packet from the peer (one WebSocket message). After a fatal error
    /// the session refuses everything.
    pub fn on_packet(&mut self, bytes: &[u8]) -> Result<SessionStep, SessionError> {
        let result = self.step(bytes);
        if result.as_ref().is_err_and(SessionError::is_fatal) {
            self.state = State::Failed;
            self.peer = None;
        }
        result
    }

    fn step(&mut self, bytes: &[u8]) -> Result<SessionStep, SessionError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::InitiatorAwaitingActTwo(handshake) => {
                let (act_three, transport) = handshake.read_act_two(bytes)?;
                let peer = transport.remote_static();
                self.open(transport);
                Ok(SessionStep::Authenticated {
                    peer,
                    reply: Some(act_three.to_vec()),
                })
            }
            State::ResponderAwaitingActOne(mut handshake) => {
                let act_two = handshake.read_act_one(bytes)?;
                self.state = State::ResponderAwaitingActThree(handshake);
                Ok(SessionStep::Reply(act_two.to_vec()))
            }
            State::ResponderAwaitingActThree(handshake) => {
                let transport = handshake.read_act_three(bytes)?;
                let peer = transport.remote_static();
                self.open(transport);
                Ok(SessionStep::Authenticated { peer, reply: None })
            }
            State::Open(mut transport) => {
                let plaintext = transport.decrypt(bytes);
                self.state = State::Open(transport);
                let message = FiberMessage::decode(&plaintext?).map_err(SessionError::Unreadable)?;
                Ok(SessionStep::Message(message))
            }
            State::Failed => Err(SessionError::OutOfOrder("bytes after the session failed")),
        }
    }

    fn open(&mut self, transport: Transport) {
        self.peer = Some(transport.remote_static());
        self.state = State::Open(transport);
    }

    /// Encrypts a message into one packet for the peer.
    pub fn seal(&mut self, message: &FiberMessage) -> Result<Vec<u8>, SessionError> {
        let State::Open(transport) = &mut self.state else {
            return Err(SessionError::NotReady);
        };
        let bytes = message.encode();
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(SessionError::MessageTooLong { len: bytes.len() });
        }
        Ok(transport.encrypt(&bytes)?)
    }
}
