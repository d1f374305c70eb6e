//! `RpcChainClient<FetchTransport>` in real Chromium: what a wallet sees when
//! the node is down, when the URL is not a CKB node, and when it is too slow.

use fiber_funding::chain::client::{ChainClient, ChainErrorKind};
use fiber_funding::chain::rpc::RpcChainClient;
use fiber_funding::primitives::Hash256;
use fiber_funding::wasm::fetch_rpc::FetchTransport;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

fn any_tx() -> Hash256 {
    Hash256([0x11; 32])
}

/// The origin of the test page; its server answers a POST with the HTML page.
fn test_server_origin() -> String {
    let location = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("location")).unwrap();
    js_sys::Reflect::get(&location, &JsValue::from_str("origin"))
        .unwrap()
        .as_string()
        .expect("location.origin")
}

#[wasm_bindgen_test]
async fn a_closed_port_is_unreachable_naming_the_method_and_url() {
    let client = RpcChainClient::new(FetchTransport::new("http://127.0.0.1:9/"));

    let error = client.transaction_status(any_tx()).await.unwrap_err();

    assert_eq!(error.kind, ChainErrorKind::Unreachable, "{error}");
    assert_eq!(error.method, "get_transaction");
    let message = error.to_string();
    assert!(message.contains("get_transaction"), "{message}");
    assert!(message.contains("http://127.0.0.1:9/"), "{message}");
}

#[wasm_bindgen_test]
async fn a_server_that_is_not_a_node_is_a_bad_response_naming_the_method() {
    let client = RpcChainClient::new(FetchTransport::new(&test_server_origin()));

    let error = client.live_cells(Default::default()).await.unwrap_err();

    let http_failure = error.reason.starts_with("HTTP ");
    assert!(error.kind == ChainErrorKind::BadResponse || http_failure, "{error}");
    assert_eq!(error.method, "get_cells");
    assert!(error.to_string().contains("get_cells"), "{error}");
}

#[wasm_bindgen_test]
async fn a_node_slower_than_the_timeout_is_a_timeout() {
    // Even a local answer takes longer than 1 ms through Chromium's network service.
    let client = RpcChainClient::new(FetchTransport::new(&test_server_origin())).with_timeout_ms(1);

    let error = client.send_transaction(Default::default()).await.unwrap_err();

    assert_eq!(error.kind, ChainErrorKind::Timeout, "{error}");
    assert_eq!(error.method, "send_transaction");
    assert!(error.to_string().contains("1 ms"), "{error}");
}

#[wasm_bindgen_test]
async fn a_timeout_too_long_for_set_timeout_is_clamped_not_fired_at_once() {
    // setTimeout takes an i32; a wrapped delay would be negative and fire at once.
    let client = RpcChainClient::new(FetchTransport::new(&test_server_origin())).with_timeout_ms(u64::MAX);

    let error = client.transaction_status(any_tx()).await.unwrap_err();

    assert_ne!(error.kind, ChainErrorKind::Timeout, "{error}");
    assert_eq!(error.method, "get_transaction");
}

/// A JSON-RPC answer to the first request of a new client, led by spaces
/// to `len` bytes, as a `data:` URL (no content-length, so read as it
/// streams in; a URL's trailing spaces would be cut).
fn padded_answer_url(len: usize) -> String {
    let answer = format!(r#"{{"id":1,"jsonrpc":"2.0","result":"0x{}"}}"#, "11".repeat(32));
    format!("data:application/json,{}{answer}", " ".repeat(len - answer.len()))
}

#[wasm_bindgen_test]
async fn an_answer_within_the_limit_is_read() {
    let transport = FetchTransport::new(&padded_answer_url(100_000)).with_answer_limit(100_000);

    let hash = RpcChainClient::new(transport).genesis_hash().await.unwrap();

    assert_eq!(hash, Hash256([0x11; 32]));
}

/// A hostile node streaming an endless answer would fill the tab's memory:
/// the body is read as it arrives and cut off at the limit. (The limit is
/// lowered here: Chromium takes no `data:` URL of 2 MB or more, and the
/// default is `MAX_ANSWER_BYTES`.)
#[wasm_bindgen_test]
async fn an_answer_streaming_past_the_limit_is_cut_off_naming_the_limit() {
    let transport = FetchTransport::new(&padded_answer_url(100_001)).with_answer_limit(100_000);

    let error = RpcChainClient::new(transport).genesis_hash().await.unwrap_err();

    assert_eq!(error.kind, ChainErrorKind::BadResponse, "{error}");
    assert_eq!(error.method, "get_block_hash");
    assert!(error.to_string().contains("longer than 100000 bytes"), "{error}");
}

/// The test server's page (with a declared length) is longer than the limit:
/// refused the same way.
#[wasm_bindgen_test]
async fn a_page_longer_than_the_limit_is_refused() {
    let transport = FetchTransport::new(&test_server_origin()).with_answer_limit(16);

    let error = RpcChainClient::new(transport).genesis_hash().await.unwrap_err();

    assert_eq!(error.kind, ChainErrorKind::BadResponse, "{error}");
    assert!(error.to_string().contains("longer than 16 bytes"), "{error}");
}

#[wasm_bindgen_test]
fn the_default_limit_is_max_answer_bytes() {
    assert_eq!(
        FetchTransport::new("http://127.0.0.1:8114/").answer_limit(),
        fiber_funding::chain::rpc::MAX_ANSWER_BYTES
    );
}
