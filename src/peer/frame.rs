//! Frames on the peer connection.

use crate::primitives::{NodeId, Pubkey};
use crate::wire::{FiberMessage, WireError};

pub const PROTOCOL_VERSION: u8 = 1;

const HELLO: u8 = 1;
const PROOF: u8 = 2;
const MESSAGE: u8 = 3;

// Short-lived and moved once; boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        version: u8,
        node_id: NodeId,
        challenge: [u8; 32],
    },
    Proof {
        signature: [u8; 64],
    },
    Message(FiberMessage),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("{what} frame of {got} bytes, expected {expected}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("bad message: {0}")]
    Message(#[from] WireError),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Hello {
                version,
                node_id,
                challenge,
            } => {
                let mut out = vec![HELLO, *version];
                out.extend_from_slice(&node_id.0);
                out.extend_from_slice(challenge);
                out
            }
            Frame::Proof { signature } => {
                let mut out = vec![PROOF];
                out.extend_from_slice(signature);
                out
            }
            Frame::Message(message) => {
                let mut out = vec![MESSAGE];
                out.extend_from_slice(&message.encode());
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, body) = bytes.split_first().ok_or(FrameError::Empty)?;
        let exact = |what, expected: usize| {
            if body.len() == expected {
                Ok(())
            } else {
                Err(FrameError::WrongLength {
                    what,
                    expected,
                    got: body.len(),
                })
            }
        };
        match kind {
            HELLO => {
                exact("Hello", 1 + 33 + 32)?;
                Ok(Frame::Hello {
                    version: body[0],
                    node_id: Pubkey::from_slice(&body[1..34]).expect("33 bytes"),
                    challenge: body[34..].try_into().expect("32 bytes"),
                })
            }
            PROOF => {
                exact("Proof", 64)?;
                Ok(Frame::Proof {
                    signature: body.try_into().expect("64 bytes"),
                })
            }
            MESSAGE => Ok(Frame::Message(FiberMessage::decode(body)?)),
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ChannelReady;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let frames = [
            Frame::Hello {
                version: 1,
                node_id: Pubkey([2; 33]),
                challenge: [7; 32],
            },
            Frame::Proof { signature: [9; 64] },
            Frame::Message(FiberMessage::ChannelReady(ChannelReady {
                channel_id: crate::primitives::Hash256([1; 32]),
            })),
        ];
        for frame in frames {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[9]), Err(FrameError::UnknownType(9)));
        assert!(matches!(Frame::decode(&[2, 1, 2]), Err(FrameError::WrongLength { .. })));
        assert!(matches!(Frame::decode(&[3, 1, 2]), Err(FrameError::Message(_))));
    }
}
