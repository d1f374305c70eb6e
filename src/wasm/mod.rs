//! The browser module: IndexedDB storage, a WebSocket to the counterparty,
//! CKB JSON-RPC over `fetch`, and the JS API a wallet imports.

pub mod fetch_rpc;
pub mod idb_store;
pub mod node;
pub mod platform;
pub mod tab_lock;
pub mod websocket;
