//! CKB JSON-RPC over HTTP for native programs, and the one look-up the
//! counterparty needs beyond [`RpcChainClient`]: the default lock's dep group
//! from the genesis block.
//!
//! Requests run on `ureq` (blocking, no TLS) on tokio's blocking pool, so the
//! event loop never waits on a socket; outside a tokio runtime they run on a
//! thread of their own.
//!
//! ```no_run
//! use fiber_funding::chain::rpc::RpcChainClient;
//! use fiber_funding::native::http_rpc::HttpTransport;
//!
//! # async fn demo() -> Result<(), fiber_funding::chain::client::ChainError> {
//! let client = RpcChainClient::new(HttpTransport::new("http://127.0.0.1:8114"));
//! let chain_hash = client.genesis_hash().await?;
//! # Ok(()) }
//! ```

use std::io::ErrorKind;
use std::time::Duration;

use ckb_types::core::DepType;
use ckb_types::packed;
use ckb_types::prelude::*;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::chain::client::{ChainError, ChainErrorKind};
use crate::chain::rpc::{transport_failure, RpcTransport, TransportError};
use crate::primitives::Hash256;

/// Largest answer read natively: more than the browser's
/// [`crate::chain::rpc::MAX_ANSWER_BYTES`], since the counterparty reads
/// CKB's genesis block, the system scripts' code in hex (a few MB).
pub const MAX_NATIVE_ANSWER_BYTES: u64 = 64 << 20;

/// [`RpcTransport`] over HTTP/1.1 (plain `http://`), keeping connections alive.
#[derive(Clone)]
pub struct HttpTransport {
    url: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpTransport({})", self.url)
    }
}

impl HttpTransport {
    pub fn new(url: impl Into<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            // Non-2xx answers come back as answers: the body says why.
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self { url: url.into(), agent }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn post_blocking(&self, body: String, timeout_ms: u64) -> Result<String, TransportError> {
        if self.url.starts_with("https://") {
            // Built without TLS on purpose (no OpenSSL, no rustls): say so plainly.
            return Err(TransportError::Unreachable(format!(
                "{} uses https, which this build does not speak; use http:// (a local node or a TLS-terminating proxy)",
                self.url
            )));
        }
        let timeout = Duration::from_millis(timeout_ms.max(1));
        let answer = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .send(body.as_str());
        let mut answer = answer.map_err(|error| self.describe(error))?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(MAX_NATIVE_ANSWER_BYTES)
            .read_to_string()
            .map_err(|error| self.describe(error))?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(TransportError::Http { status, body: text })
        }
    }

    fn describe(&self, error: ureq::Error) -> TransportError {
        let url = &self.url;
        match error {
            ureq::Error::Timeout(_) => TransportError::Timeout,
            ureq::Error::BodyExceedsLimit(limit) => TransportError::TooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                TransportError::Timeout
            }
            ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
                TransportError::Unreachable(format!("{url} refused the connection (is the node running?)"))
            }
            ureq::Error::HostNotFound => TransportError::Unreachable(format!("cannot resolve the host of {url}")),
            ureq::Error::ConnectionFailed => TransportError::Unreachable(format!("cannot connect to {url}")),
            ureq::Error::BadUri(reason) => TransportError::Unreachable(format!("{url} is not a usable URL: {reason}")),
            other => TransportError::Unreachable(format!("{url}: {other}")),
        }
    }
}

impl RpcTransport for HttpTransport {
    fn post(&self, body: String, timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let transport = self.clone();
        let work = move || transport.post_blocking(body, timeout_ms);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn_blocking(work);
                async move {
                    task.await
                        .unwrap_or_else(|e| Err(TransportError::Unreachable(format!("the request task failed: {e}"))))
                }
                .boxed_local()
            }
            Err(_) => {
                let (reply, answer) = oneshot::channel();
                std::thread::spawn(move || {
                    let _ = reply.send(work());
                });
                async move {
                    answer
                        .await
                        .unwrap_or_else(|_| Err(TransportError::Unreachable("the request thread died".into())))
                }
                .boxed_local()
            }
        }
    }
}

/// Calls `method` once and returns its `result` as JSON. For the few calls
/// [`crate::chain::rpc::RpcChainClient`] does not make.
pub async fn call_json<T: RpcTransport>(
    transport: &T,
    method: &'static str,
    params: Value,
    timeout_ms: u64,
) -> Result<Value, ChainError> {
    let body = json!({ "id": 1, "jsonrpc": "2.0", "method": method, "params": params }).to_string();
    let answer = transport
        .post(body, timeout_ms)
        .await
        .map_err(|error| transport_failure(method, error, timeout_ms))?;
    let mut answer: Value = serde_json::from_str(&answer)
        .map_err(|e| ChainError::new(method, ChainErrorKind::BadResponse, format!("answer is not JSON: {e}")))?;
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        return Err(ChainError::new(method, ChainErrorKind::Rejected, error.to_string()));
    }
    Ok(answer.get_mut("result").map(Value::take).unwrap_or(Value::Null))
}

/// The secp256k1-blake160-sighash-all dep group, as every CKB chain (mainnet,
/// testnet, `ckb init --chain dev`, `fiber-simchain`) places it: output 0 of
/// the genesis block's second transaction.
pub async fn genesis_default_lock_dep_group<T: RpcTransport>(
    transport: &T,
    timeout_ms: u64,
) -> Result<packed::CellDep, ChainError> {
    const METHOD: &str = "get_block_by_number";
    let block = call_json(transport, METHOD, json!(["0x0"]), timeout_ms).await?;
    let bad = |reason: &str| ChainError::new(METHOD, ChainErrorKind::BadResponse, format!("genesis block: {reason}"));
    let tx_hash = block
        .pointer("/transactions/1/hash")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no second transaction with a hash"))?;
    let tx_hash = Hash256::from_hex(tx_hash).map_err(|e| bad(&format!("transaction 1 hash: {e}")))?;
    let outputs = block.pointer("/transactions/1/outputs").and_then(Value::as_array);
    if outputs.is_none_or(|outputs| outputs.is_empty()) {
        return Err(bad("transaction 1 has no outputs"));
    }
    Ok(packed::CellDep::new_builder()
        .out_point(
            packed::OutPoint::new_builder()
                .tx_hash(tx_hash.0.pack())
                .index(0u32)
                .build(),
        )
        .dep_type(DepType::DepGroup)
        .build())
}
