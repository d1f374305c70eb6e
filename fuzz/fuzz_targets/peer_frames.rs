//! The peer link as a browser's `PeerSession` sees it: BOLT 8 handshake acts
//! and packets from a hostile counterparty (or a man in the middle), and the
//! `FiberMessage` decoding of every packet that authenticates.
//!
//! The handshake runs once, with fixed keys, and each input starts from a
//! clone of its result (`Clone` exists only under `cfg(fuzzing)`), so every
//! input reaches the packet path without paying for three EC multiplications.
//! The fuzzer plays the counterparty: it seals plaintexts of its choice with
//! the real transport keys (so the decoder sees arbitrary message bytes),
//! forges the length header, tampers with sealed packets, or sends raw bytes.
//!
//! Checked on every input:
//! * nothing panics;
//! * a sealed plaintext comes out as `FiberMessage::decode` of it, and what
//!   decodes re-encodes to the same bytes and is accepted by Fiber's own
//!   molecule verifier (what we refuse, other than messages outside the
//!   funding subset, Fiber refuses too);
//! * a packet with any byte changed, or whose length header does not match
//!   its body, is refused, fatally; after a fatal error the session refuses
//!   everything and names no peer;
//! * a handshake that completes authenticates exactly the key we dialled.

#![no_main]

use std::sync::OnceLock;

use ckb_types::prelude::Reader;
use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::peer::noise::{ResponderHandshake, Transport};
use fiber_funding::peer::{PeerSession, SessionError, SessionStep};
use fiber_funding::primitives::NodeId;
use fiber_funding::wire::{FiberMessage, WireError};
use fiber_types::gen::fiber as mol;
use libfuzzer_sys::fuzz_target;

/// How the input begins.
#[derive(Debug)]
enum Start {
    /// The handshake completed: packets from the counterparty follow.
    Open,
    /// Act two from a stranger (or a tampered one), to the browser.
    ActTwo(Vec<u8>),
}

#[derive(Debug)]
enum Frame {
    /// A plaintext sealed with the counterparty's real sending key.
    Sealed(Vec<u8>),
    /// A sealed packet with one byte changed.
    Tampered { plaintext: Vec<u8>, at: u16, xor: u8 },
    /// A header sealed for a message of `claimed` bytes, then the sealed body
    /// of another length (each under the nonce it would have).
    Mislength { claimed: u16, body: Vec<u8> },
    /// Bytes as they come, sealed by nobody.
    Raw(Vec<u8>),
}

/// The input's layout, simple enough to write seeds by hand (fuzz/seed_corpus.rs):
/// a start byte (odd: 50 bytes of act two follow), then frames, each a kind
/// byte (`0` sealed, `1` tampered, `2` mislength, `3` raw, modulo 4), for
/// `1` a `u16` position and a byte to xor, for `2` a `u16` claimed length,
/// then a `u16` payload length (little-endian) and the payload (cut short
/// at the end of the input).
struct Input {
    start: Start,
    frames: Vec<Frame>,
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn take(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }
}

impl Input {
    fn read(data: &[u8]) -> Option<Self> {
        let mut bytes = Bytes(data);
        let start = match bytes.u8()? % 2 {
            0 => Start::Open,
            _ => Start::ActTwo(bytes.take(50)),
        };
        let mut frames = Vec::new();
        while let Some(kind) = bytes.u8() {
            let frame = match kind % 4 {
                0 => {
                    let len = bytes.u16().unwrap_or(0);
                    Frame::Sealed(bytes.take(len.into()))
                }
                1 => {
                    let at = bytes.u16().unwrap_or(0);
                    let xor = bytes.u8().unwrap_or(0);
                    let len = bytes.u16().unwrap_or(0);
                    Frame::Tampered {
                        plaintext: bytes.take(len.into()),
                        at,
                        xor,
                    }
                }
                2 => {
                    let claimed = bytes.u16().unwrap_or(0);
                    let len = bytes.u16().unwrap_or(0);
                    Frame::Mislength {
                        claimed,
                        body: bytes.take(len.into()),
                    }
                }
                _ => {
                    let len = bytes.u16().unwrap_or(0);
                    Frame::Raw(bytes.take(len.into()))
                }
            };
            frames.push(frame);
        }
        Some(Self { start, frames })
    }
}

/// The browser's session after act one, the counterparty's handshake, and the
/// open pair after the full handshake.
struct Keys {
    hub: NodeId,
    awaiting_act_two: PeerSession,
    browser: PeerSession,
    counterparty: Transport,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let browser_secret = NodeSecret::from_bytes([0x11; 32]).unwrap();
        let hub_secret = NodeSecret::from_bytes([0x22; 32]).unwrap();
        let hub = hub_secret.node_id();
        let (awaiting_act_two, act_one) = PeerSession::initiator(&browser_secret, &hub, [0x33; 32]).unwrap();
        let mut responder = ResponderHandshake::new(&hub_secret, [0x44; 32]).unwrap();
        let act_two = responder.read_act_one(&act_one).unwrap();
        let mut browser = awaiting_act_two.clone();
        let Ok(SessionStep::Authenticated {
            reply: Some(act_three), ..
        }) = browser.on_packet(&act_two)
        else {
            panic!("the fixed handshake completes");
        };
        let counterparty = responder.read_act_three(&act_three).unwrap();
        Keys {
            hub,
            awaiting_act_two,
            browser,
            counterparty,
        }
    })
}

/// What `FiberMessage::decode` must agree with: canonical, and Fiber's verifier.
fn check_decode(bytes: &[u8]) -> Result<FiberMessage, WireError> {
    let ours = FiberMessage::decode(bytes);
    let fiber_accepts = mol::FiberMessageReader::verify(bytes, false).is_ok();
    match &ours {
        Ok(message) => {
            assert_eq!(message.encode(), bytes, "accepted bytes must be canonical");
            assert!(fiber_accepts, "we accept {} but Fiber rejects", message.name());
        }
        Err(WireError::UnsupportedMessage { .. }) => {}
        Err(error) => {
            assert!(!fiber_accepts, "we reject ({error}) but Fiber accepts");
            assert!(!error.to_string().is_empty());
        }
    }
    ours
}

fn assert_failed(session: &mut PeerSession) {
    assert_eq!(session.peer(), None, "a failed session names no peer");
    assert!(matches!(session.on_packet(&[0; 50]), Err(SessionError::OutOfOrder(_))));
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::read(data) else { return };
    let keys = keys();
    let mut counterparty = keys.counterparty.clone();
    let mut session = match &input.start {
        Start::Open => keys.browser.clone(),
        Start::ActTwo(act) => {
            let mut session = keys.awaiting_act_two.clone();
            match session.on_packet(act) {
                Ok(SessionStep::Authenticated { peer, reply }) => {
                    // Only the holder of the dialled key can complete act two.
                    assert_eq!(peer, keys.hub);
                    assert!(reply.is_some());
                }
                Ok(step) => panic!("act two answered with {step:?}"),
                Err(error) => {
                    assert!(error.is_fatal());
                    assert_failed(&mut session);
                    return;
                }
            }
            session
        }
    };
    let mut open = true;
    for frame in input.frames.iter().take(64) {
        if !open {
            assert_failed(&mut session);
            return;
        }
        match frame {
            Frame::Sealed(plaintext) => {
                let Ok(packet) = counterparty.encrypt(plaintext) else {
                    // Longer than a packet can carry: nothing to send.
                    continue;
                };
                let expected = check_decode(plaintext);
                match (session.on_packet(&packet), expected) {
                    (Ok(SessionStep::Message(got)), Ok(want)) => assert_eq!(got, want),
                    (Err(SessionError::Unreadable(got)), Err(want)) => assert_eq!(got, want),
                    (got, want) => panic!("session gave {got:?} where decoding gives {want:?}"),
                }
                assert_eq!(session.peer(), Some(keys.hub));
            }
            Frame::Tampered { plaintext, at, xor } => {
                let Ok(mut packet) = counterparty.encrypt(plaintext) else {
                    continue;
                };
                let at = usize::from(*at) % packet.len();
                packet[at] ^= xor | 1;
                let result = session.on_packet(&packet);
                assert!(
                    matches!(result, Err(SessionError::Noise(_))),
                    "a packet changed at byte {at} gave {result:?}"
                );
                open = false;
            }
            Frame::Mislength { claimed, body } => {
                if usize::from(*claimed) == body.len() {
                    continue;
                }
                let mut header_side = counterparty.clone();
                let Ok(header) = header_side.encrypt(&vec![0; usize::from(*claimed)]) else {
                    continue;
                };
                let Ok(sealed_body) = counterparty.encrypt(body) else {
                    continue;
                };
                let mut packet = header[..18].to_vec();
                packet.extend_from_slice(&sealed_body[18..]);
                let result = session.on_packet(&packet);
                assert!(
                    matches!(result, Err(SessionError::Noise(_))),
                    "a {}-byte body under a {claimed}-byte header gave {result:?}",
                    body.len()
                );
                open = false;
            }
            Frame::Raw(bytes) => match session.on_packet(bytes) {
                // Only bytes sealed under the session's keys could get here;
                // whatever they are, they went through the decoder.
                Ok(SessionStep::Message(_)) => {}
                Ok(step) => panic!("an open session answered {step:?}"),
                Err(error) => open = !error.is_fatal(),
            },
        }
    }
    if !open {
        assert_failed(&mut session);
    }
});
