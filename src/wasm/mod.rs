//! The browser module: IndexedDB storage, a WebSocket to the counterparty,
//! CKB JSON-RPC over `fetch`, and the JS API a wallet imports.

pub mod fetch_rpc;
pub mod forward;
pub mod idb_store;
pub mod node;
pub mod platform;
pub mod published_code;
pub mod tab_lock;
pub mod websocket;

/// Benchmark only (`scripts/bench`): one MuSig2 partial signature as a submit
/// makes it, so the benchmark can print the floor under `submitSignedFundingTx`.
#[doc(hidden)]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = benchPartialSignature)]
pub fn bench_partial_signature(seed: u8) -> bool {
    crate::crypto::musig::partial_signature_for_benchmark(seed).is_ok()
}

/// The reserve a channel keeps from the opener's wallet on top of its amount
/// when opened with `shutdownScript` (0x-hex shannons): upstream's
/// `reserved_ckb_amount`, the capacity of the cell the opener's share is
/// returned in at close plus 1 CKB towards the closing fee — 99 CKB for a
/// default-lock wallet. A wallet shows it where the amount is chosen.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = channelReserve)]
pub fn channel_reserve(
    #[wasm_bindgen(unchecked_param_type = "Script")] shutdown_script: wasm_bindgen::JsValue,
) -> Result<String, wasm_bindgen::JsValue> {
    let value = node::from_js(shutdown_script, "shutdownScript").map_err(node::js_error)?;
    let script = crate::tx::json::parse_script(&value, "shutdownScript")
        .map_err(|e| node::js_error(crate::api::ApiError::invalid("shutdownScript", e)))?;
    let reserve = crate::tx::funding::reserved_ckb_amount(&script)
        .map_err(|e| node::js_error(crate::api::ApiError::invalid("shutdownScript", e)))?;
    Ok(format!("{reserve:#x}"))
}

/// Diagnostics: the facts of a stored record, from the bytes IndexedDB holds
/// for it (the entry's `record`: binary, schemas 3 to 5, or the JSON text of schemas
/// 1 and 2). Throws `INVALID_PARAMS` naming the problem for bytes that are
/// not a record.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = inspectStoredRecord, unchecked_return_type = "StoredRecordFacts")]
pub fn inspect_stored_record(bytes: &[u8]) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    let record = crate::flow::ChannelRecord::read(bytes)
        .map_err(|error| node::js_error(crate::api::ApiError::invalid("record", error.to_string())))?;
    Ok(node::to_js(&crate::api::shapes::StoredRecordFacts::from(&record)))
}
