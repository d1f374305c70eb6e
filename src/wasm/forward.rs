//! A submit forwarded from a tab that follows to the tab that owns the
//! database. The JoyID redirect brings the signed tx back to the tab that
//! asked for it, but a tab waiting for the database (`waitForLock`) takes
//! it as soon as this one unloads; back from the signer, this tab only
//! follows, and the flow would wait for the other tab to close, maybe past
//! its deadline. The signed tx goes to the owner over a `BroadcastChannel`
//! instead: the owner runs the same submit as `submitSignedFundingTx` (the
//! same checks, persisted before anything leaves) and posts the outcome
//! back under the request's id.

use std::rc::{Rc, Weak};

use futures::channel::oneshot;
use futures::future::{self, Either};
use js_sys::{Object, Reflect, JSON};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::node::{from_js, submit_signed};
use super::platform::{random_32, timeout};
use super::tab_lock::TabBroadcast;
use crate::api::json::parse_submit_params;
use crate::api::{ApiError, ErrorCode};
use crate::primitives::encode_hex;
use crate::runtime::DriverHandle;

/// How long a forwarded submit waits for the owner's answer by default.
pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
/// The longest wait a page may ask for.
pub const MAX_TIMEOUT_MS: u32 = 60_000;

/// The channel the owner of `db_name` takes forwarded submits on (apart
/// from its events, which followers hand to the page as they come).
pub fn channel_name(db_name: &str) -> String {
    format!("fiber-funding-requests:{db_name}")
}

/// The owner's side: answers each forwarded submit through `handle`, for
/// as long as `requests` is open (closed with the node).
pub fn serve(requests: &Rc<TabBroadcast>, handle: DriverHandle) {
    let replies: Weak<TabBroadcast> = Rc::downgrade(requests);
    requests.subscribe(move |text| {
        let Some((id, params)) = read_request(&text) else {
            return;
        };
        let handle = handle.clone();
        let replies = replies.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let outcome = submit_signed(&handle, params).await;
            if let Some(replies) = replies.upgrade() {
                let _ = replies.post(&reply_text(&id, outcome));
            }
        });
    });
}

/// The follower's side: hands `params` (those of `submitSignedFundingTx`) to
/// the owner of `db_name` and waits up to `timeout_ms` for its outcome.
pub async fn forward(db_name: &str, params: JsValue, timeout_ms: u32) -> Result<JsValue, ApiError> {
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ApiError::invalid(
            "timeoutMs",
            format!("{timeout_ms} is outside 1 to {MAX_TIMEOUT_MS}"),
        ));
    }
    // A malformed call gets its own error here, at once.
    parse_submit_params(&from_js(params.clone(), "params")?)?;
    let id = encode_hex(&random_32()[..16]);
    let requests = TabBroadcast::new(&channel_name(db_name))
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    let (answer, answered) = oneshot::channel();
    let mut answer = Some(answer);
    let wanted = id.clone();
    requests.subscribe(move |text| {
        if let Some(outcome) = read_reply(&text, &wanted) {
            if let Some(answer) = answer.take() {
                let _ = answer.send(outcome);
            }
        }
    });
    let request = object(&[("submit_request", JsValue::from_str(&id)), ("params", params)]);
    let text = JSON::stringify(&request)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| ApiError::invalid("params", "not JSON data"))?;
    requests
        .post(&text)
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    let waited = JsFuture::from(timeout(u64::from(timeout_ms)));
    let outcome = match future::select(answered, waited).await {
        Either::Left((Ok(outcome), _)) => outcome,
        _ => Err(ApiError::new(
            ErrorCode::NoOwnerTab,
            format!(
                "no tab owning the database {db_name:?} answered within {timeout_ms} ms; \
                 open the node in this tab (waitForLock) and submit there"
            ),
        )),
    };
    requests.close();
    outcome
}

/// `{ submit_request: id, params }`, or nothing for any other message.
fn read_request(text: &str) -> Option<(String, JsValue)> {
    let message = parse_object(text)?;
    let id = Reflect::get(&message, &"submit_request".into()).ok()?.as_string()?;
    if id.len() > 64 {
        return None;
    }
    let params = Reflect::get(&message, &"params".into()).ok()?;
    Some((id, params))
}

/// The outcome in `{ submit_reply: id, result }` or `{ submit_reply: id,
/// error: { code, message } }` when it answers `wanted`.
fn read_reply(text: &str, wanted: &str) -> Option<Result<JsValue, ApiError>> {
    let message = parse_object(text)?;
    if Reflect::get(&message, &"submit_reply".into()).ok()?.as_string()? != wanted {
        return None;
    }
    let error = Reflect::get(&message, &"error".into()).ok()?;
    if error.is_undefined() {
        return Some(Ok(Reflect::get(&message, &"result".into()).ok()?));
    }
    let text = |key: &str| {
        Reflect::get(&error, &key.into())
            .ok()
            .and_then(|value| value.as_string())
            .unwrap_or_default()
    };
    let (code, message) = (text("code"), text("message"));
    Some(Err(match ErrorCode::from_code(&code) {
        Some(code) => ApiError::new(code, message),
        None => ApiError::new(
            ErrorCode::Internal,
            format!("the owner tab answered with an unknown code {code:?}: {message}"),
        ),
    }))
}

fn reply_text(id: &str, outcome: Result<JsValue, ApiError>) -> String {
    let reply = match outcome {
        Ok(result) => object(&[("submit_reply", JsValue::from_str(id)), ("result", result)]),
        Err(error) => {
            let error = object(&[
                ("code", JsValue::from_str(error.code.as_str())),
                ("message", JsValue::from_str(&error.message)),
            ]);
            object(&[("submit_reply", JsValue::from_str(id)), ("error", error)])
        }
    };
    JSON::stringify(&reply)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_default()
}

/// An object, or nothing (the channel bounds each message's length).
fn parse_object(text: &str) -> Option<JsValue> {
    JSON::parse(text).ok().filter(|value| value.is_object())
}

fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        let _ = Reflect::set(&object, &(*key).into(), value);
    }
    object.into()
}
