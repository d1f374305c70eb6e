//! Open a Fiber channel with external funding from a browser, and survive the
//! page reload that a wallet's signing redirect causes.

pub mod chain;
pub mod crypto;
pub mod primitives;
pub mod tx;
pub mod wire;
