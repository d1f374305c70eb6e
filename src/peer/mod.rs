//! The peer connection: BOLT 8's authenticated, encrypted transport
//! (`Noise_XK_secp256k1_ChaChaPoly_SHA256`, as Lightning nodes speak it),
//! shared by the browser's WebSocket and the native counterparty.
//!
//! One WebSocket binary message carries one handshake act or one BOLT 8
//! packet; a packet's plaintext is one molecule-encoded `FiberMessage`.
//!
//! ```text
//! initiator (browser, knows the counterparty's node id)    responder (counterparty)
//!   act one   (50 bytes)  ─────────────────────────────────▶
//!             ◀─────────────────────────────────  act two   (50 bytes)
//!   act three (66 bytes, carries our node id)  ────────────▶
//!   packets: enc(len, 2 bytes) ‖ MAC ‖ enc(FiberMessage) ‖ MAC, both ways
//! ```
//! The node id is the static key: a peer that completes the handshake holds
//! that key's secret, and every later byte is bound to this session, so a
//! man in the middle can neither read, alter, inject nor replay a message.
//! See `docs/protocol.md`.

pub mod noise;
mod session;

pub use session::{PeerSession, SessionError, SessionStep};

/// The WebSocket close code a responder sends when act one was not addressed
/// to its key: the caller dialled the wrong node. BOLT 8 only says to
/// disconnect; the code lets the caller report `PEER_MISMATCH` rather than
/// "unreachable".
pub const CLOSE_NOT_THIS_NODE: u16 = 4001;

/// How long a client waits before calling again after the node at the URL
/// proved to be another one (act two under a bad tag, or the close code
/// above). A minute, not forever: both are also what anyone on the path can
/// send, and a link given up for good would hold a funded channel's
/// handshake or close until the page reloads.
pub const WRONG_NODE_RETRY_MS: u64 = 60_000;
