//! What the browser's WebSocket adapter takes from the counterparty before
//! any of it reaches the session.

use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::peer::noise::MAX_PACKET_LEN;
use fiber_funding::runtime::{inbox, Input, PeerLink, PeerTrouble};
use fiber_funding::wasm::platform::timeout;
use fiber_funding::wasm::websocket::{read_frame, WebSocketLink, FIRST_BACKOFF_MS};
use futures::StreamExt;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
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

/// Nothing listens at the counterparty's URL: the driver hears it is
/// unreachable, the link calls again after its backoff (not at once, not
/// never), and once closed it calls no more.
#[wasm_bindgen_test]
async fn an_unreachable_counterparty_is_reported_and_called_again_after_the_backoff_until_closed() {
    let (sender, mut inputs) = inbox();
    let secret = NodeSecret::from_bytes([7; 32]).unwrap();
    let peer = NodeSecret::from_bytes([8; 32]).unwrap().node_id();
    let started = js_sys::Date::now();
    // Nothing listens on port 1023 here (a privileged port, and not one of
    // the ports browsers refuse to dial, so the refusal is the network's).
    let link = WebSocketLink::connect("ws://127.0.0.1:1023", secret, peer, sender);
    let mut reported_at = Vec::new();
    for _ in 0..2 {
        match inputs.next().await {
            Some(Input::PeerUnavailable { reason, trouble }) => {
                assert_eq!(trouble, PeerTrouble::Unreachable, "{reason}");
                assert!(
                    reason.contains("cannot reach the counterparty at ws://127.0.0.1:1023"),
                    "{reason}"
                );
            }
            Some(_) => panic!("expected the counterparty unreachable, got another input"),
            None => panic!("the inbox ended"),
        }
        reported_at.push(js_sys::Date::now() - started);
    }
    let between = reported_at[1] - reported_at[0];
    assert!(
        between >= (2 * FIRST_BACKOFF_MS) as f64 - 50.0,
        "called again after {between} ms, before the backoff"
    );

    link.close();
    let _ = JsFuture::from(timeout(5 * FIRST_BACKOFF_MS)).await;
    assert!(inputs.try_recv().is_err(), "a closed link called again");
}
