//! CKB transactions of the funding flow, built and checked with `ckb-types`.

pub mod commitment;
pub mod default_lock;
pub mod fee;
pub mod funding;
pub mod json;
pub mod parts;
pub mod script;
pub mod validate;
