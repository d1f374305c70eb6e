//! CKB transactions of the funding flow, built and checked with `ckb-types`.

pub mod default_lock;
