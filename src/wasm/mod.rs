//! The browser module: IndexedDB storage, a WebSocket to the counterparty,
//! CKB JSON-RPC over `fetch`, and the JS API a wallet imports.
