//! The browser module: IndexedDB storage, a WebSocket to the counterparty,
//! CKB JSON-RPC over `fetch`, and the JS API a wallet imports.

pub mod fetch_rpc;
pub mod idb_store;
pub mod node;
pub mod platform;
pub mod tab_lock;
pub mod websocket;

/// Benchmark only (`scripts/bench`): one MuSig2 partial signature as a submit
/// makes it, so the benchmark can print the floor under `submitSignedFundingTx`.
#[doc(hidden)]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = benchPartialSignature)]
pub fn bench_partial_signature(seed: u8) -> bool {
    crate::crypto::musig::partial_signature_for_benchmark(seed).is_ok()
}
