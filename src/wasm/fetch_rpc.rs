//! [`RpcTransport`] over the browser's `fetch`, in a page or in a worker.
//!
//! ```ignore
//! let chain = RpcChainClient::new(FetchTransport::new("https://testnet.ckb.dev/"));
//! ```
//!
//! A CKB node answers cross-origin requests (its RPC server allows any
//! origin); a proxy in front of it must too, or every call fails as
//! unreachable, since the browser hides CORS failures from the page.

use std::cell::Cell;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestInit, RequestMode, Response, Window, WorkerGlobalScope};

use crate::chain::rpc::{RpcTransport, TransportError};

/// POSTs JSON-RPC requests to one CKB node URL with `fetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTransport {
    url: String,
}

impl FetchTransport {
    /// `url` is the node's JSON-RPC endpoint, e.g. `http://127.0.0.1:8114/`.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl RpcTransport for FetchTransport {
    fn post(&self, body: String, timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let url = self.url.clone();
        async move { post_json(&url, &body, timeout_ms).await }.boxed_local()
    }
}

async fn post_json(url: &str, body: &str, timeout_ms: u64) -> Result<String, TransportError> {
    let unreachable = |error: JsValue| TransportError::Unreachable(format!("{url}: {}", describe(&error)));
    let scope = GlobalScope::current()?;
    let controller = AbortController::new().map_err(unreachable)?;
    let headers = Headers::new().map_err(unreachable)?;
    headers.set("content-type", "application/json").map_err(unreachable)?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_mode(RequestMode::Cors);
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(body));
    init.set_signal(Some(&controller.signal()));
    let request = Request::new_with_str_and_init(url, &init).map_err(unreachable)?;

    // Covers the whole exchange: the abort also stops reading the body.
    let deadline = Deadline::arm(scope.clone(), controller, timeout_ms).map_err(unreachable)?;
    let failed = |error: JsValue| {
        if deadline.has_fired() {
            TransportError::Timeout
        } else {
            let hint = "the node is down, the address is wrong, or CORS blocked the request";
            TransportError::Unreachable(format!("{url}: {} ({hint})", describe(&error)))
        }
    };

    let response: Response = JsFuture::from(scope.fetch(&request))
        .await
        .map_err(failed)?
        .unchecked_into();
    let text = match response.text() {
        Ok(reading) => JsFuture::from(reading)
            .await
            .map(|text| text.as_string().unwrap_or_default()),
        Err(error) => Err(error),
    };
    if !response.ok() {
        return Err(TransportError::Http {
            status: response.status(),
            body: text.unwrap_or_default(),
        });
    }
    text.map_err(failed)
}

/// The page's `window` or a worker's `self`: both have `fetch` and `setTimeout`.
#[derive(Clone)]
enum GlobalScope {
    Window(Window),
    Worker(WorkerGlobalScope),
}

impl GlobalScope {
    fn current() -> Result<Self, TransportError> {
        let global = js_sys::global();
        if let Some(window) = global.dyn_ref::<Window>() {
            return Ok(Self::Window(window.clone()));
        }
        if let Some(worker) = global.dyn_ref::<WorkerGlobalScope>() {
            return Ok(Self::Worker(worker.clone()));
        }
        Err(TransportError::Unreachable(
            "fetch needs a window or a worker, and this global scope is neither".into(),
        ))
    }

    fn fetch(&self, request: &Request) -> js_sys::Promise {
        match self {
            Self::Window(window) => window.fetch_with_request(request),
            Self::Worker(worker) => worker.fetch_with_request(request),
        }
    }

    fn set_timeout(&self, callback: &js_sys::Function, ms: i32) -> Result<i32, JsValue> {
        match self {
            Self::Window(window) => window.set_timeout_with_callback_and_timeout_and_arguments_0(callback, ms),
            Self::Worker(worker) => worker.set_timeout_with_callback_and_timeout_and_arguments_0(callback, ms),
        }
    }

    fn clear_timeout(&self, handle: i32) {
        match self {
            Self::Window(window) => window.clear_timeout_with_handle(handle),
            Self::Worker(worker) => worker.clear_timeout_with_handle(handle),
        }
    }
}

/// A timer that aborts the request when it fires.
///
/// Dropping it clears the timer (so the callback never runs after its closure is
/// freed) and aborts a request still in flight, e.g. when the caller gave up.
struct Deadline {
    scope: GlobalScope,
    handle: i32,
    controller: AbortController,
    fired: Rc<Cell<bool>>,
    _on_timeout: Closure<dyn FnMut()>,
}

impl Deadline {
    fn arm(scope: GlobalScope, controller: AbortController, timeout_ms: u64) -> Result<Self, JsValue> {
        let fired = Rc::new(Cell::new(false));
        let on_timeout = {
            let fired = Rc::clone(&fired);
            let controller = controller.clone();
            Closure::<dyn FnMut()>::new(move || {
                fired.set(true);
                controller.abort();
            })
        };
        // setTimeout takes a signed 32-bit delay.
        let delay = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let handle = scope.set_timeout(on_timeout.as_ref().unchecked_ref(), delay)?;
        Ok(Self {
            scope,
            handle,
            controller,
            fired,
            _on_timeout: on_timeout,
        })
    }

    fn has_fired(&self) -> bool {
        self.fired.get()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.scope.clear_timeout(self.handle);
        self.controller.abort();
    }
}

/// A thrown JS value as text, e.g. `TypeError: Failed to fetch`.
fn describe(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(error.name()), String::from(error.message()));
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}
