//! Open a Fiber channel with external funding from a browser, and survive the
//! page reload that a wallet's signing redirect causes.
//!
//! The crate is a sans-IO core ([`flow`]) with thin adapters around it:
//! storage ([`store`]), chain ([`chain`]) and, in the browser, the JS API.
//! See `docs/protocol.md` for the message order and `docs/storage.md` for the
//! record schema.

pub mod api;
pub mod chain;
pub mod collections;
pub mod crypto;
pub mod flow;
pub mod json;
pub mod peer;
pub mod primitives;
pub mod runtime;
pub mod store;
pub mod tx;
pub mod wire;

/// The counterparty, the simulated chain's server and the deploy tool.
#[cfg(all(not(target_arch = "wasm32"), feature = "acceptor", feature = "simulator"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
