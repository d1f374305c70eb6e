//! What the browser's WebSocket adapter takes from the counterparty before
//! any of it reaches the session.

use fiber_funding::peer::noise::MAX_PACKET_LEN;
use fiber_funding::wasm::websocket::read_frame;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
}

/// Whoever answers the URL, even before the handshake, could send a
/// message of any size: copied into wasm memory first, 64 MiB would grow
/// it for good (wasm memory never shrinks), and a larger one abort the
/// module. Its length is read from the ArrayBuffer and refused first.
#[wasm_bindgen_test]
fn a_message_longer_than_a_packet_is_refused_before_it_is_copied() {
    let before = wasm_memory_bytes();
    let huge = js_sys::ArrayBuffer::new(64 * 1024 * 1024);
    let refused = read_frame(&huge.into()).unwrap_err();
    assert!(
        refused.contains(&format!("more than the {MAX_PACKET_LEN}")),
        "{refused}"
    );
    let grown = wasm_memory_bytes() - before;
    assert!(grown < 1024.0 * 1024.0, "wasm memory grew by {grown} bytes");

    let packet = js_sys::ArrayBuffer::new(MAX_PACKET_LEN as u32);
    assert_eq!(read_frame(&packet.into()).unwrap().len(), MAX_PACKET_LEN);
    let text = read_frame(&JsValue::from_str("not a packet")).unwrap_err();
    assert!(text.contains("not binary"), "{text}");
}
