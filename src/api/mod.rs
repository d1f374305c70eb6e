//! The API a wallet sees, independent of JavaScript: stable error codes and
//! Fiber's JSON-RPC shapes for parameters, results, channels and events. The
//! browser bindings (`crate::wasm`) only move these across the JS boundary.

pub mod backup;
pub mod deployment;
pub mod error;
pub mod json;
pub mod options;
pub mod shapes;

pub use error::{ApiError, ErrorCode};
