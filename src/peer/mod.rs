//! The peer connection's own small protocol, shared by the browser's
//! WebSocket and the native counterparty: one frame per WebSocket message,
//! and a handshake in which each side proves it holds the secret key of the
//! node id it claims, by signing a fresh challenge from the other side.
//!
//! ```text
//! frame   = type (1 byte) ‖ body
//! Hello   = 0x01 ‖ version (1) ‖ node id (33) ‖ challenge (32)
//! Proof   = 0x02 ‖ ECDSA signature (64) over blake2b(tag ‖ their challenge ‖ our id ‖ their id)
//! Message = 0x03 ‖ a molecule-encoded FiberMessage
//! ```
//! No `Message` is accepted before the peer's proof has been verified.

mod frame;
mod handshake;

pub use frame::{Frame, FrameError, PROTOCOL_VERSION};
pub use handshake::{AuthError, HandshakeStep, PeerHandshake};
