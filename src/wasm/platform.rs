//! Time, tasks and randomness in a browser (window or worker).

use futures::future::LocalBoxFuture;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::flow::EntropySource;
use crate::runtime::Platform;

/// `setTimeout` accepts at most this delay (2^31 - 1 ms, about 24.8 days).
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

pub struct BrowserPlatform;

impl Platform for BrowserPlatform {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        let promise = timeout(ms.min(MAX_TIMEOUT_MS));
        Box::pin(async move {
            let _ = JsFuture::from(promise).await;
        })
    }
}

/// A promise resolved after `ms`, through the global `setTimeout`.
pub fn timeout(ms: u64) -> js_sys::Promise {
    js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(set_timeout) = set_timeout {
            let _ = set_timeout.call2(&global, &resolve, &JsValue::from_f64(ms as f64));
        }
    })
}

/// `crypto.getRandomValues` through `getrandom`.
pub struct BrowserEntropy;

impl EntropySource for BrowserEntropy {
    fn random_32(&mut self) -> [u8; 32] {
        random_32()
    }
}

pub fn random_32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the browser provides crypto.getRandomValues");
    bytes
}
