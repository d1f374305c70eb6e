//! BOLT 8's transport: `Noise_XK_secp256k1_ChaChaPoly_SHA256`, as Lightning
//! nodes speak it, with the handshake acts and message framing of
//! <https://github.com/lightning/bolts/blob/master/08-transport.md>.
//!
//! The initiator (the browser) knows the responder's static key in advance
//! (the counterparty's node id); the responder learns the initiator's static
//! key in act three. After the handshake every message is encrypted and
//! authenticated, each direction with its own key, rotated every 1,000 uses.
//! Nothing here does I/O or draws randomness: the ephemeral keys come in.
//!
//! ```
//! use fiber_funding::crypto::keys::NodeSecret;
//! use fiber_funding::peer::noise::{InitiatorHandshake, ResponderHandshake};
//!
//! let browser = NodeSecret::from_bytes([1; 32]).unwrap();
//! let counterparty = NodeSecret::from_bytes([2; 32]).unwrap();
//! let (initiator, act_one) = InitiatorHandshake::new(&browser, &counterparty.node_id(), [3; 32]).unwrap();
//! let mut responder = ResponderHandshake::new(&counterparty, [4; 32]).unwrap();
//! let act_two = responder.read_act_one(&act_one).unwrap();
//! let (act_three, mut browser_side) = initiator.read_act_two(&act_two).unwrap();
//! let mut counterparty_side = responder.read_act_three(&act_three).unwrap();
//! assert_eq!(counterparty_side.remote_static(), browser.node_id());
//!
//! let packet = browser_side.encrypt(b"hello").unwrap();
//! assert_eq!(counterparty_side.decrypt(&packet).unwrap(), b"hello");
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use secp::{Point, Scalar};
use sha2::{Digest, Sha256};

use crate::crypto::keys::NodeSecret;
use crate::primitives::Pubkey;

const PROTOCOL_NAME: &[u8] = b"Noise_XK_secp256k1_ChaChaPoly_SHA256";
const PROLOGUE: &[u8] = b"lightning";
/// The only handshake version BOLT 8 defines.
const VERSION: u8 = 0;
const TAG_LEN: usize = 16;
const PUBKEY_LEN: usize = 33;

pub const ACT_ONE_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN;
pub const ACT_TWO_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN;
pub const ACT_THREE_LEN: usize = 1 + PUBKEY_LEN + TAG_LEN + TAG_LEN;
/// The longest message a packet may carry (its length is a 2-byte field).
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// Bytes a packet adds around its message: encrypted length, two MACs.
pub const PACKET_OVERHEAD: usize = 2 + TAG_LEN + TAG_LEN;
/// The longest WebSocket message a peer may send: one packet (acts are shorter).
pub const MAX_PACKET_LEN: usize = MAX_MESSAGE_LEN + PACKET_OVERHEAD;
/// A key is replaced after this many encryptions or decryptions.
const KEY_ROTATION_INTERVAL: u64 = 1000;

/// Why a handshake act or a packet was refused. Any of these ends the
/// connection: BOLT 8 gives a peer no second chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    #[error("act {act} is {got} bytes, expected {expected}")]
    ActLength { act: u8, expected: usize, got: usize },
    #[error("act {act} has version {version}, only version 0 exists")]
    BadVersion { act: u8, version: u8 },
    #[error("act {act} carries a key that is not a valid secp256k1 point")]
    BadPubkey { act: u8 },
    #[error("act {act} does not authenticate (wrong key, or tampered with)")]
    BadTag { act: u8 },
    #[error("a packet of {got} bytes is not one whole encrypted message")]
    PacketLength { got: usize },
    #[error("a message of {len} bytes is longer than the {MAX_MESSAGE_LEN} a packet can carry")]
    MessageTooLong { len: usize },
    #[error("a packet does not authenticate (tampered with, replayed or out of order)")]
    BadPacketTag,
    #[error("act three arrived before act one")]
    OutOfOrder,
    #[error("a local key is not a valid secp256k1 secret")]
    InvalidLocalKey,
}

/// The running hash and chaining key both sides update in lockstep.
#[derive(Clone)]
struct SymmetricState {
    chaining_key: [u8; 32],
    hash: [u8; 32],
}

impl SymmetricState {
    /// h = SHA256(name); ck = h; h = SHA256(h ‖ prologue); h = SHA256(h ‖ rs).
    fn new(responder_static: &Pubkey) -> Self {
        let name_hash: [u8; 32] = Sha256::digest(PROTOCOL_NAME).into();
        let mut state = Self {
            chaining_key: name_hash,
            hash: name_hash,
        };
        state.mix_hash(PROLOGUE);
        state.mix_hash(&responder_static.0);
        state
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.hash = Sha256::new()
            .chain_update(self.hash)
            .chain_update(data)
            .finalize()
            .into();
    }

    /// ck, k = HKDF(ck, shared secret); returns k.
    fn mix_key(&mut self, shared_secret: &[u8; 32]) -> [u8; 32] {
        let (chaining_key, key) = hkdf_two(&self.chaining_key, shared_secret);
        self.chaining_key = chaining_key;
        key
    }

    /// The two transport keys: (initiator's sending key, responder's sending key).
    fn split(&self) -> ([u8; 32], [u8; 32]) {
        hkdf_two(&self.chaining_key, &[])
    }
}

/// HKDF-SHA256 with salt `salt`, empty info, 64 bytes out, split in halves.
fn hkdf_two(salt: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut out = [0u8; 64];
    Hkdf::<Sha256>::new(Some(salt), input)
        .expand(&[], &mut out)
        .expect("64 bytes is a valid HKDF-SHA256 length");
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    first.copy_from_slice(&out[..32]);
    second.copy_from_slice(&out[32..]);
    (first, second)
}

/// The 96-bit nonce: four zero bytes, then the counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(bytes)
}

fn encrypt_with_ad(key: &[u8; 32], counter: u64, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            &nonce(counter),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message under 256 GiB")
}

fn decrypt_with_ad(key: &[u8; 32], counter: u64, ad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            &nonce(counter),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .ok()
}

/// ECDH as BOLT 8 defines it: SHA256 of the compressed shared point.
fn ecdh(secret: &Scalar, point: &Point) -> [u8; 32] {
    // A non-zero scalar times a curve point is never infinity (prime order).
    let shared: Point = *secret * *point;
    Sha256::digest(shared.serialize()).into()
}

/// A secret as a scalar; random bytes fail this about as often as one guesses a key.
fn secret_scalar(bytes: [u8; 32]) -> Result<Scalar, NoiseError> {
    Scalar::try_from(bytes).map_err(|_| NoiseError::InvalidLocalKey)
}

/// Splits an act into (version, key, rest) after checking its length and version.
fn read_act(act: u8, bytes: &[u8], expected: usize) -> Result<(Point, &[u8]), NoiseError> {
    if bytes.len() != expected {
        return Err(NoiseError::ActLength {
            act,
            expected,
            got: bytes.len(),
        });
    }
    if bytes[0] != VERSION {
        return Err(NoiseError::BadVersion { act, version: bytes[0] });
    }
    let key = Point::from_slice(&bytes[1..1 + PUBKEY_LEN]).map_err(|_| NoiseError::BadPubkey { act })?;
    Ok((key, &bytes[1 + PUBKEY_LEN..]))
}

/// The initiator between sending act one and reading act two.
// Fuzzing only (fuzz/fuzz_targets/peer_frames.rs): one handshake, cloned per input.
// Never in a real build: a cloned transport would reuse its nonces.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct InitiatorHandshake {
    state: SymmetricState,
    local_static: Scalar,
    ephemeral: Scalar,
    responder: Pubkey,
}

impl InitiatorHandshake {
    /// Starts a handshake with the node whose static key is `responder`;
    /// `ephemeral` must be fresh randomness. Returns act one to send.
    pub fn new(
        local: &NodeSecret,
        responder: &Pubkey,
        ephemeral: [u8; 32],
    ) -> Result<(Self, [u8; ACT_ONE_LEN]), NoiseError> {
        let remote_static = Point::from_slice(&responder.0).map_err(|_| NoiseError::BadPubkey { act: 1 })?;
        let ephemeral = secret_scalar(ephemeral)?;
        let local_static = secret_scalar(local.to_bytes())?;
        let mut state = SymmetricState::new(responder);
        let ephemeral_pub = ephemeral.base_point_mul().serialize();
        state.mix_hash(&ephemeral_pub);
        let temp_key = state.mix_key(&ecdh(&ephemeral, &remote_static));
        let tag = encrypt_with_ad(&temp_key, 0, &state.hash, &[]);
        state.mix_hash(&tag);

        let mut act = [0u8; ACT_ONE_LEN];
        act[0] = VERSION;
        act[1..1 + PUBKEY_LEN].copy_from_slice(&ephemeral_pub);
        act[1 + PUBKEY_LEN..].copy_from_slice(&tag);
        Ok((
            Self {
                state,
                local_static,
                ephemeral,
                responder: *responder,
            },
            act,
        ))
    }

    /// Reads act two; returns act three to send and the transport.
    pub fn read_act_two(mut self, act: &[u8]) -> Result<([u8; ACT_THREE_LEN], Transport), NoiseError> {
        let (remote_ephemeral, tag) = read_act(2, act, ACT_TWO_LEN)?;
        self.state.mix_hash(&remote_ephemeral.serialize());
        let temp_key2 = self.state.mix_key(&ecdh(&self.ephemeral, &remote_ephemeral));
        decrypt_with_ad(&temp_key2, 0, &self.state.hash, tag).ok_or(NoiseError::BadTag { act: 2 })?;
        self.state.mix_hash(tag);

        let local_static_pub = self.local_static.base_point_mul().serialize();
        let encrypted_static = encrypt_with_ad(&temp_key2, 1, &self.state.hash, &local_static_pub);
        self.state.mix_hash(&encrypted_static);
        let temp_key3 = self.state.mix_key(&ecdh(&self.local_static, &remote_ephemeral));
        let final_tag = encrypt_with_ad(&temp_key3, 0, &self.state.hash, &[]);

        let mut out = [0u8; ACT_THREE_LEN];
        out[0] = VERSION;
        out[1..1 + PUBKEY_LEN + TAG_LEN].copy_from_slice(&encrypted_static);
        out[1 + PUBKEY_LEN + TAG_LEN..].copy_from_slice(&final_tag);
        let (send_key, receive_key) = self.state.split();
        Ok((
            out,
            Transport::new(&self.state.chaining_key, send_key, receive_key, self.responder),
        ))
    }
}

/// The responder from before act one until act three is read.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct ResponderHandshake {
    state: SymmetricState,
    local_static: Scalar,
    ephemeral: Scalar,
    /// Set by act one: the key act three's static key is encrypted under.
    temp_key2: Option<[u8; 32]>,
}

impl ResponderHandshake {
    /// Waits for a handshake addressed to `local`'s static key; `ephemeral`
    /// must be fresh randomness.
    pub fn new(local: &NodeSecret, ephemeral: [u8; 32]) -> Result<Self, NoiseError> {
        let local_static = secret_scalar(local.to_bytes())?;
        Ok(Self {
            state: SymmetricState::new(&local.node_id()),
            local_static,
            ephemeral: secret_scalar(ephemeral)?,
            temp_key2: None,
        })
    }

    /// Reads act one; returns act two to send.
    pub fn read_act_one(&mut self, act: &[u8]) -> Result<[u8; ACT_TWO_LEN], NoiseError> {
        let (remote_ephemeral, tag) = read_act(1, act, ACT_ONE_LEN)?;
        let mut state = self.state.clone();
        state.mix_hash(&remote_ephemeral.serialize());
        let temp_key1 = state.mix_key(&ecdh(&self.local_static, &remote_ephemeral));
        decrypt_with_ad(&temp_key1, 0, &state.hash, tag).ok_or(NoiseError::BadTag { act: 1 })?;
        state.mix_hash(tag);

        let ephemeral_pub = self.ephemeral.base_point_mul().serialize();
        state.mix_hash(&ephemeral_pub);
        let temp_key2 = state.mix_key(&ecdh(&self.ephemeral, &remote_ephemeral));
        let tag = encrypt_with_ad(&temp_key2, 0, &state.hash, &[]);
        state.mix_hash(&tag);
        self.state = state;
        self.temp_key2 = Some(temp_key2);

        let mut out = [0u8; ACT_TWO_LEN];
        out[0] = VERSION;
        out[1..1 + PUBKEY_LEN].copy_from_slice(&ephemeral_pub);
        out[1 + PUBKEY_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Reads act three; returns the transport, which knows the initiator's static key.
    pub fn read_act_three(mut self, act: &[u8]) -> Result<Transport, NoiseError> {
        let temp_key2 = self.temp_key2.ok_or(NoiseError::OutOfOrder)?;
        if act.len() != ACT_THREE_LEN {
            return Err(NoiseError::ActLength {
                act: 3,
                expected: ACT_THREE_LEN,
                got: act.len(),
            });
        }
        if act[0] != VERSION {
            return Err(NoiseError::BadVersion {
                act: 3,
                version: act[0],
            });
        }
        let encrypted_static = &act[1..1 + PUBKEY_LEN + TAG_LEN];
        let tag = &act[1 + PUBKEY_LEN + TAG_LEN..];
        let static_bytes =
            decrypt_with_ad(&temp_key2, 1, &self.state.hash, encrypted_static).ok_or(NoiseError::BadTag { act: 3 })?;
        let remote_static = Point::from_slice(&static_bytes).map_err(|_| NoiseError::BadPubkey { act: 3 })?;
        self.state.mix_hash(encrypted_static);
        let temp_key3 = self.state.mix_key(&ecdh(&self.ephemeral, &remote_static));
        decrypt_with_ad(&temp_key3, 0, &self.state.hash, tag).ok_or(NoiseError::BadTag { act: 3 })?;
        let (receive_key, send_key) = self.state.split();
        Ok(Transport::new(
            &self.state.chaining_key,
            send_key,
            receive_key,
            Pubkey(remote_static.serialize()),
        ))
    }
}

/// One direction's key, its nonce and its chaining key for rotation.
#[cfg_attr(fuzzing, derive(Clone))]
struct CipherState {
    key: [u8; 32],
    nonce: u64,
    chaining_key: [u8; 32],
}

impl CipherState {
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let out = encrypt_with_ad(&self.key, self.nonce, &[], plaintext);
        self.advance();
        out
    }

    fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let out = decrypt_with_ad(&self.key, self.nonce, &[], ciphertext).ok_or(NoiseError::BadPacketTag)?;
        self.advance();
        Ok(out)
    }

    /// After 1,000 uses: ck', k' = HKDF(ck, k), nonce back to 0.
    fn advance(&mut self) {
        self.nonce += 1;
        if self.nonce == KEY_ROTATION_INTERVAL {
            let (chaining_key, key) = hkdf_two(&self.chaining_key, &self.key);
            self.chaining_key = chaining_key;
            self.key = key;
            self.nonce = 0;
        }
    }
}

/// An authenticated, encrypted session after the handshake.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Transport {
    sender: CipherState,
    receiver: CipherState,
    remote_static: Pubkey,
}

impl Transport {
    fn new(chaining_key: &[u8; 32], send_key: [u8; 32], receive_key: [u8; 32], remote_static: Pubkey) -> Self {
        Self {
            sender: CipherState {
                key: send_key,
                nonce: 0,
                chaining_key: *chaining_key,
            },
            receiver: CipherState {
                key: receive_key,
                nonce: 0,
                chaining_key: *chaining_key,
            },
            remote_static,
        }
    }

    /// The static key the other side proved it holds: its node id.
    pub fn remote_static(&self) -> Pubkey {
        self.remote_static
    }

    /// One packet: the encrypted 2-byte length, then the encrypted message.
    pub fn encrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let len = u16::try_from(message.len()).map_err(|_| NoiseError::MessageTooLong { len: message.len() })?;
        let mut packet = self.sender.encrypt(&len.to_be_bytes());
        packet.extend(self.sender.encrypt(message));
        Ok(packet)
    }

    /// Reads exactly one packet (one WebSocket message carries one).
    pub fn decrypt(&mut self, packet: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let header_len = 2 + TAG_LEN;
        if packet.len() < header_len + TAG_LEN {
            return Err(NoiseError::PacketLength { got: packet.len() });
        }
        let (header, body) = packet.split_at(header_len);
        let len_bytes = self.receiver.decrypt(header)?;
        let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        if body.len() != len + TAG_LEN {
            return Err(NoiseError::PacketLength { got: packet.len() });
        }
        self.receiver.decrypt(body)
    }
}
