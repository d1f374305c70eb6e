//! Browser tests: real Chromium, real IndexedDB, through wasm-bindgen-test
//! and chromedriver. Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown --test browser`.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn indexeddb_is_available_in_the_test_browser() {
    let window = web_sys::window().expect("a window");
    assert!(window.indexed_db().unwrap().is_some());
}

#[path = "browser/fetch_rpc.rs"]
mod fetch_rpc;

#[path = "browser/flow.rs"]
mod flow;
#[path = "browser/store.rs"]
mod store;
#[path = "browser/tab_lock.rs"]
mod tab_lock;
#[path = "browser/websocket.rs"]
mod websocket;

#[path = "vectors/bolt8.rs"]
mod bolt8;

#[wasm_bindgen_test]
fn every_bolt8_test_vector_passes_in_the_browser() {
    let passed = bolt8::all();
    web_sys::console::log_1(&format!("BOLT 8 vectors passed in the browser: {}", passed.len()).into());
    assert_eq!(passed.len(), 16);
}
