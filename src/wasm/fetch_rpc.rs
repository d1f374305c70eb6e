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
use js_sys::Uint8Array;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, ReadableStreamDefaultReader, Request, RequestInit, RequestMode, Response, Window,
    WorkerGlobalScope,
};

use crate::chain::rpc::{RpcTransport, TransportError, MAX_ANSWER_BYTES};

/// POSTs JSON-RPC requests to one CKB node URL with `fetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTransport {
    url: String,
    answer_limit: usize,
}

impl FetchTransport {
    /// `url` is the node's JSON-RPC endpoint, e.g. `http://127.0.0.1:8114/`.
    /// Answers are read up to [`MAX_ANSWER_BYTES`].
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            answer_limit: MAX_ANSWER_BYTES,
        }
    }

    /// Reads answers up to `bytes`; a longer one is [`TransportError::TooLarge`].
    pub fn with_answer_limit(mut self, bytes: usize) -> Self {
        self.answer_limit = bytes;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn answer_limit(&self) -> usize {
        self.answer_limit
    }
}

impl RpcTransport for FetchTransport {
    fn post(&self, body: String, timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let url = self.url.clone();
        let limit = self.answer_limit;
        async move { post_json(&url, &body, timeout_ms, limit).await }.boxed_local()
    }
}

async fn post_json(url: &str, body: &str, timeout_ms: u64, limit: usize) -> Result<String, TransportError> {
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
    let text = read_body(&response, limit).await.map_err(|error| match error {
        BodyError::TooLarge => TransportError::TooLarge { limit },
        BodyError::Failed(error) => failed(error),
    });
    if !response.ok() {
        return Err(TransportError::Http {
            status: response.status(),
            body: text.unwrap_or_default(),
        });
    }
    text
}

enum BodyError {
    TooLarge,
    Failed(JsValue),
}

impl From<JsValue> for BodyError {
    fn from(error: JsValue) -> Self {
        Self::Failed(error)
    }
}

/// The answer's body, read as it arrives and never past `limit` bytes: a
/// node streaming without end is cut off, not buffered until the tab dies.
async fn read_body(response: &Response, limit: usize) -> Result<String, BodyError> {
    let declared = response.headers().get("content-length").ok().flatten();
    if declared
        .and_then(|len| len.trim().parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let Some(stream) = response.body() else {
        return Ok(String::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut body = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))?.is_truthy() {
            break;
        }
        let bytes: Uint8Array = js_sys::Reflect::get(&chunk, &JsValue::from_str("value"))?.dyn_into()?;
        let start = body.len();
        let end = start.saturating_add(bytes.length() as usize);
        if end > limit {
            let _ = reader.cancel();
            return Err(BodyError::TooLarge);
        }
        body.resize(end, 0);
        bytes.copy_to(&mut body[start..]);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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
