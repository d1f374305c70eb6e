//! Who is on the other end: each side signs the other's fresh challenge.

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};

use super::frame::{Frame, PROTOCOL_VERSION};
use crate::crypto::hash_parts;
use crate::crypto::keys::NodeSecret;
use crate::primitives::NodeId;
use crate::wire::FiberMessage;

const PROOF_TAG: &[u8] = b"fiber-funding/peer-auth/v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the peer is {actual}, not the expected {expected}")]
    WrongPeer { expected: NodeId, actual: NodeId },
    #[error("the peer {0} could not prove it holds its node key")]
    BadProof(NodeId),
    #[error("the peer speaks protocol version {0}, this module speaks {PROTOCOL_VERSION}")]
    Version(u8),
    #[error("the peer sent {0} out of order")]
    OutOfOrder(&'static str),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// What to do after a frame.
// Short-lived and moved once; boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Send this frame to the peer.
    Reply(Vec<u8>),
    /// The peer proved its identity: messages may flow.
    Authenticated(NodeId),
    /// A message from the authenticated peer.
    Message(FiberMessage),
    Nothing,
}

/// One connection's handshake, then its message stream.
pub struct PeerHandshake {
    secret: NodeSecret,
    expected_peer: Option<NodeId>,
    our_challenge: [u8; 32],
    peer: Option<NodeId>,
    authenticated: bool,
}

fn proof_digest(challenge: &[u8; 32], prover: &NodeId, verifier: &NodeId) -> [u8; 32] {
    hash_parts(&[PROOF_TAG, challenge, &prover.0, &verifier.0])
}

impl PeerHandshake {
    /// `challenge` must be fresh randomness for this connection.
    pub fn new(secret: NodeSecret, expected_peer: Option<NodeId>, challenge: [u8; 32]) -> Self {
        Self {
            secret,
            expected_peer,
            our_challenge: challenge,
            peer: None,
            authenticated: false,
        }
    }

    /// Our first frame.
    pub fn hello(&self) -> Vec<u8> {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node_id: self.secret.node_id(),
            challenge: self.our_challenge,
        }
        .encode()
    }

    pub fn peer(&self) -> Option<NodeId> {
        self.peer.filter(|_| self.authenticated)
    }

    pub fn on_frame(&mut self, bytes: &[u8]) -> Result<HandshakeStep, AuthError> {
        let frame = Frame::decode(bytes).map_err(|e| AuthError::Malformed(e.to_string()))?;
        match frame {
            Frame::Hello {
                version,
                node_id,
                challenge,
            } => {
                if self.peer.is_some() {
                    return Err(AuthError::OutOfOrder("a second Hello"));
                }
                if version != PROTOCOL_VERSION {
                    return Err(AuthError::Version(version));
                }
                if let Some(expected) = self.expected_peer {
                    if expected != node_id {
                        return Err(AuthError::WrongPeer {
                            expected,
                            actual: node_id,
                        });
                    }
                }
                self.peer = Some(node_id);
                let key = SigningKey::from_bytes(&self.secret.to_bytes().into())
                    .map_err(|e| AuthError::Malformed(e.to_string()))?;
                let digest = proof_digest(&challenge, &self.secret.node_id(), &node_id);
                let signature: Signature = key
                    .sign_prehash(&digest)
                    .map_err(|e| AuthError::Malformed(e.to_string()))?;
                Ok(HandshakeStep::Reply(
                    Frame::Proof {
                        signature: signature.to_bytes().into(),
                    }
                    .encode(),
                ))
            }
            Frame::Proof { signature } => {
                let peer = self.peer.ok_or(AuthError::OutOfOrder("a Proof before its Hello"))?;
                if self.authenticated {
                    return Err(AuthError::OutOfOrder("a second Proof"));
                }
                let key = VerifyingKey::from_sec1_bytes(&peer.0).map_err(|_| AuthError::BadProof(peer))?;
                let signature = Signature::from_slice(&signature).map_err(|_| AuthError::BadProof(peer))?;
                let digest = proof_digest(&self.our_challenge, &peer, &self.secret.node_id());
                key.verify_prehash(&digest, &signature)
                    .map_err(|_| AuthError::BadProof(peer))?;
                self.authenticated = true;
                Ok(HandshakeStep::Authenticated(peer))
            }
            Frame::Message(message) if self.authenticated => Ok(HandshakeStep::Message(message)),
            Frame::Message(_) => Err(AuthError::OutOfOrder("a message before authenticating")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::Hash256;
    use crate::wire::ChannelReady;

    fn secret(byte: u8) -> NodeSecret {
        NodeSecret::from_bytes([byte; 32]).unwrap()
    }

    /// Runs both handshakes against each other; returns who each side saw.
    fn connect(a: &mut PeerHandshake, b: &mut PeerHandshake) -> Result<(NodeId, NodeId), AuthError> {
        let reply_a = a.on_frame(&b.hello())?;
        let reply_b = b.on_frame(&a.hello())?;
        let (HandshakeStep::Reply(proof_a), HandshakeStep::Reply(proof_b)) = (reply_a, reply_b) else {
            panic!("hello answers with a proof")
        };
        let seen_by_b = b.on_frame(&proof_a)?;
        let seen_by_a = a.on_frame(&proof_b)?;
        match (seen_by_a, seen_by_b) {
            (HandshakeStep::Authenticated(x), HandshakeStep::Authenticated(y)) => Ok((x, y)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn both_sides_learn_who_the_other_is_and_then_exchange_messages() {
        let mut a = PeerHandshake::new(secret(1), Some(secret(2).node_id()), [11; 32]);
        let mut b = PeerHandshake::new(secret(2), None, [22; 32]);
        let (a_saw, b_saw) = connect(&mut a, &mut b).unwrap();
        assert_eq!((a_saw, b_saw), (secret(2).node_id(), secret(1).node_id()));
        let message = FiberMessage::ChannelReady(ChannelReady {
            channel_id: Hash256([5; 32]),
        });
        let step = b.on_frame(&Frame::Message(message.clone()).encode()).unwrap();
        assert_eq!(step, HandshakeStep::Message(message));
    }

    #[test]
    fn a_node_that_is_not_the_expected_peer_is_refused() {
        let mut a = PeerHandshake::new(secret(1), Some(secret(3).node_id()), [11; 32]);
        let mut b = PeerHandshake::new(secret(2), None, [22; 32]);
        assert_eq!(
            connect(&mut a, &mut b),
            Err(AuthError::WrongPeer {
                expected: secret(3).node_id(),
                actual: secret(2).node_id()
            })
        );
    }

    #[test]
    fn a_node_claiming_someone_elses_id_fails_the_proof() {
        let mut a = PeerHandshake::new(secret(1), None, [11; 32]);
        let impostor = PeerHandshake::new(secret(2), None, [22; 32]);
        // Claims node 3's id in its Hello, but can only sign with node 2's key.
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            node_id: secret(3).node_id(),
            challenge: [22; 32],
        };
        a.on_frame(&hello.encode()).unwrap();
        let mut impostor_view = PeerHandshake::new(secret(2), None, [22; 32]);
        let HandshakeStep::Reply(proof) = impostor_view.on_frame(&a.hello()).unwrap() else {
            panic!()
        };
        let _ = impostor;
        assert_eq!(a.on_frame(&proof), Err(AuthError::BadProof(secret(3).node_id())));
    }

    #[test]
    fn a_proof_replayed_into_another_session_fails() {
        let mut a1 = PeerHandshake::new(secret(1), None, [11; 32]);
        let mut b = PeerHandshake::new(secret(2), None, [22; 32]);
        a1.on_frame(&b.hello()).unwrap();
        let HandshakeStep::Reply(proof_for_a1) = b.on_frame(&a1.hello()).unwrap() else {
            panic!()
        };
        // A second session with a fresh challenge does not accept the old proof.
        let mut a2 = PeerHandshake::new(secret(1), None, [12; 32]);
        a2.on_frame(&b.hello()).unwrap();
        assert_eq!(
            a2.on_frame(&proof_for_a1),
            Err(AuthError::BadProof(secret(2).node_id()))
        );
    }

    #[test]
    fn messages_before_authentication_are_refused() {
        let mut a = PeerHandshake::new(secret(1), None, [11; 32]);
        let message = FiberMessage::ChannelReady(ChannelReady {
            channel_id: Hash256([5; 32]),
        });
        assert!(matches!(
            a.on_frame(&Frame::Message(message).encode()),
            Err(AuthError::OutOfOrder(_))
        ));
    }
}
