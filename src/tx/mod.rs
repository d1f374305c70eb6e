//! CKB transactions of the funding flow, built and checked with `ckb-types`.
//!
//! Capacities, fees and sizes use checked arithmetic only (see [`fee`]);
//! `clippy::arithmetic_side_effects` is denied here so none slips in.
#![deny(clippy::arithmetic_side_effects)]

pub mod cancel;
pub mod closing;
pub mod commitment;
pub mod default_lock;
pub mod fee;
pub mod funding;
pub mod json;
pub mod networks;
pub mod outflow;
pub mod parts;
pub mod script;
pub mod settlement;
pub mod validate;
pub mod witness_room;
