//! [`ChainClient`] over CKB's JSON-RPC: the requests a node expects and the
//! checks on what it answers, without doing any I/O itself.
//!
//! Bytes move through an [`RpcTransport`]: `fetch` in the browser
//! (`crate::wasm::fetch_rpc::FetchTransport`), canned answers in tests. The
//! request and answer shapes are CKB 0.210's. Answers are walked as JSON
//! values and entities read with `tx::json`, not through `ckb-jsonrpc-types`,
//! whose serde code was the largest part of the wasm; `tests/chain_rpc.rs`
//! checks every request against that crate's types, as a node reads them.
//!
//! ```no_run
//! # async fn cells(wallet_lock: ckb_types::packed::Script) -> Result<(), fiber_funding::chain::client::ChainError> {
//! use fiber_funding::chain::client::ChainClient;
//! use fiber_funding::chain::rpc::RpcChainClient;
//! use fiber_funding::native::http_rpc::HttpTransport;
//!
//! let client = RpcChainClient::new(HttpTransport::new("http://127.0.0.1:8114")).with_timeout_ms(5_000);
//! let cells = client.live_cells(wallet_lock).await?;
//! # Ok(())
//! # }
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::json::{json, Value};
use ckb_types::packed;
use ckb_types::prelude::*;
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};

use super::client::{ChainClient, ChainError, ChainErrorKind, ChainResult};
use super::{ChainTip, LiveCell, ResolvedCell, TxReport, TxStatus};
use crate::primitives::{encode_hex, Hash256};
use crate::tx::json::{
    parse_bytes, parse_cell_output, parse_hash, parse_number, parse_out_point, parse_transaction, script_to_json,
    transaction_to_json, TxJsonError,
};

/// Cells asked for per `get_cells` page unless set otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// How long one RPC call may take unless set otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The longest answer a browser client reads. The largest one it needs is a
/// tx as large as a block holds, in hex (`get_transaction` at verbosity 0,
/// about 1.2 MB); the cell pages ask only for plain cells. A node sending
/// more is cut off, not buffered.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// How much of an unexpected answer an error message quotes.
const QUOTED_ANSWER_CHARS: usize = 200;

/// Why a request got no answer body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection (refused, DNS, offline, blocked by CORS).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No complete answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// An answer with a non-2xx HTTP status.
    #[error("HTTP {status}")]
    Http { status: u16, body: String },
    /// An answer longer than the transport reads.
    #[error("answer longer than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Carries one JSON-RPC request body to the node and brings back the answer body.
pub trait RpcTransport {
    /// POSTs `body` (JSON) and resolves to the response body, giving up after `timeout_ms`.
    fn post(&self, body: String, timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>>;
}

/// A [`ChainClient`] that talks JSON-RPC to a CKB node with its indexer enabled.
///
/// Clones share the transport and the request id counter.
pub struct RpcChainClient<T: RpcTransport> {
    transport: Rc<T>,
    next_request_id: Rc<Cell<u64>>,
    page_size: u32,
    timeout_ms: u64,
}

impl<T: RpcTransport> Clone for RpcChainClient<T> {
    fn clone(&self) -> Self {
        Self {
            transport: Rc::clone(&self.transport),
            next_request_id: Rc::clone(&self.next_request_id),
            page_size: self.page_size,
            timeout_ms: self.timeout_ms,
        }
    }
}

impl<T: RpcTransport> RpcChainClient<T> {
    /// A client with [`DEFAULT_PAGE_SIZE`] and [`DEFAULT_TIMEOUT_MS`].
    pub fn new(transport: T) -> Self {
        Self {
            transport: Rc::new(transport),
            next_request_id: Rc::new(Cell::new(1)),
            page_size: DEFAULT_PAGE_SIZE,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Cells per `get_cells` page; at least 1, since the indexer rejects a limit of 0.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// How long each RPC call may take.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends one call and returns its `result`.
    async fn call(&self, method: &'static str, params: Value) -> Result<Value, ChainError> {
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let body = json!({ "id": id, "jsonrpc": "2.0", "method": method, "params": params }).to_string();
        let body = self
            .transport
            .post(body, self.timeout_ms)
            .await
            .map_err(|error| transport_failure(method, error, self.timeout_ms))?;
        decode_answer(method, id, &body)
    }

    /// The genesis block's hash: the chain a channel's `chain_hash` names.
    pub async fn genesis_hash(&self) -> Result<Hash256, ChainError> {
        const METHOD: &str = "get_block_hash";
        let hash = self.call(METHOD, json!(["0x0"])).await?;
        Ok(Hash256(read(METHOD, parse_hash(&hash, "result"))?))
    }

    /// Mines one block on a dev chain (CKB's `IntegrationTest` module); returns its hash.
    pub async fn generate_block(&self) -> Result<Hash256, ChainError> {
        const METHOD: &str = "generate_block";
        let hash = self.call(METHOD, json!([])).await?;
        Ok(Hash256(read(METHOD, parse_hash(&hash, "result"))?))
    }

    /// The outputs at `indexes` of transaction `tx_hash` with their data
    /// (`None` for an index it does not have), or `None` when the node has
    /// no content for it; the hash is recomputed from what came back. Only
    /// those are kept: the rest of a large tx stayed in memory until every
    /// lookup was done, and in the browser that memory is never given back.
    async fn transaction_cells(
        &self,
        tx_hash: [u8; 32],
        indexes: &[u32],
    ) -> Result<Option<Vec<Option<ResolvedCell>>>, ChainError> {
        let Some(tx) = self.transaction(tx_hash).await? else {
            return Ok(None);
        };
        let raw = tx.raw();
        let (outputs, outputs_data) = (raw.outputs(), raw.outputs_data());
        let cell = |index: u32| {
            let index = usize::try_from(index).ok()?;
            // Copied out: a molecule view shares the whole tx's buffer.
            let output = outputs.get(index)?.as_slice().to_vec();
            Some(ResolvedCell {
                output: packed::CellOutput::new_unchecked(output.into()),
                data: outputs_data.get(index)?.raw_data().to_vec(),
            })
        };
        Ok(Some(indexes.iter().map(|index| cell(*index)).collect()))
    }

    /// A transaction by hash, its hash recomputed; `None` when unknown.
    async fn transaction(&self, tx_hash: [u8; 32]) -> Result<Option<packed::Transaction>, ChainError> {
        const METHOD: &str = "get_transaction";
        // Verbosity 2: the transaction as JSON.
        let answer = self.call(METHOD, json!([encode_hex(&tx_hash), "0x2"])).await?;
        let content = answer
            .get("transaction")
            .ok_or_else(|| unexpected(METHOD, "no transaction field"))?;
        if content.is_null() {
            return Ok(None);
        }
        let tx = read(METHOD, parse_transaction(content))?;
        // The hash commits to the outputs, so checking it stops a faulty node
        // from misreporting the capacity or lock of a cell we spend.
        let actual: [u8; 32] = tx.calc_tx_hash().unpack();
        if actual != tx_hash {
            return Err(bad_response(
                METHOD,
                format!(
                    "asked for transaction {} but got one whose hash is {}",
                    Hash256(tx_hash),
                    Hash256(actual)
                ),
            ));
        }
        Ok(Some(tx))
    }

    /// The number and epoch of the block a committed transaction is in.
    async fn committed_block(&self, tx_hash: Hash256, status: &Value) -> Result<(u64, u64), ChainError> {
        const METHOD: &str = "get_header";
        let block_hash = match status.get("block_hash") {
            None | Some(Value::Null) => {
                return Err(bad_response(
                    "get_transaction",
                    format!("transaction {tx_hash} is committed but its status names no block"),
                ));
            }
            Some(hash) => Hash256(read("get_transaction", parse_hash(hash, "tx_status.block_hash"))?),
        };
        let named_number = match status.get("block_number") {
            None | Some(Value::Null) => None,
            Some(number) => Some(read("get_transaction", parse_number(number, "tx_status.block_number"))?),
        };
        let header = self.call(METHOD, json!([block_hash.to_string()])).await?;
        if header.is_null() {
            return Err(bad_response(
                METHOD,
                format!("the node does not know block {block_hash} that committed {tx_hash}"),
            ));
        }
        let (number, epoch) = number_and_epoch(METHOD, &header)?;
        if named_number.is_some_and(|named| named != number) {
            return Err(bad_response(
                METHOD,
                format!("block {block_hash} is number {number}, not the one the tx status named"),
            ));
        }
        Ok((number, epoch))
    }

    /// The tip block's number and epoch.
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        const METHOD: &str = "get_tip_header";
        let header = self.call(METHOD, json!([])).await?;
        let (block_number, epoch) = number_and_epoch(METHOD, &header)?;
        Ok(ChainTip { block_number, epoch })
    }
}

impl<T: RpcTransport + 'static> ChainClient for RpcChainClient<T> {
    fn live_cells(&self, lock: packed::Script) -> ChainResult<Vec<LiveCell>> {
        const METHOD: &str = "get_cells";
        let client = self.clone();
        let search_key = plain_cells_search_key(&lock);
        let limit = client.page_size;
        async move {
            let (mut cells, mut listed) = (Vec::new(), 0usize);
            let mut after: Option<String> = None;
            loop {
                let params = json!([search_key.clone(), "asc", format!("{limit:#x}"), after.clone()]);
                let page = client.call(METHOD, params).await?;
                let objects = page_objects(METHOD, &page)?;
                // The indexer fills a page unless it ran out of cells; what a
                // node sends past the page asked for is not read.
                let full = objects.len() >= limit as usize;
                for (index, object) in objects.iter().take(limit as usize).enumerate() {
                    let path = format!("objects[{index}]");
                    let cell = read(METHOD, indexed_cell(object, &path))?;
                    if cell.output.lock().as_slice() != lock.as_slice() {
                        return Err(bad_response(
                            METHOD,
                            format!("{path} is a cell under another lock than the one asked for"),
                        ));
                    }
                    // Asked for plain cells only: one with a type or data
                    // could fund nothing, and its data is not kept.
                    if crate::tx::funding::is_plain_capacity_cell(&cell) {
                        cells.push(cell);
                    }
                    listed = listed.saturating_add(1);
                }
                // However many pages a node sends (or however its cursors
                // cycle), what is read stays bounded.
                if !full || listed >= MAX_LIVE_CELLS {
                    cells.truncate(MAX_LIVE_CELLS);
                    return Ok(cells);
                }
                let cursor = page
                    .get("last_cursor")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let empty = read(METHOD, parse_bytes(&Value::from(cursor.as_str()), "last_cursor"))?.is_empty();
                if empty || after.as_deref() == Some(cursor.as_str()) {
                    return Err(bad_response(
                        METHOD,
                        format!("a full page did not move the cursor (still {cursor:?})"),
                    ));
                }
                after = Some(cursor);
            }
        }
        .boxed_local()
    }

    fn cells_with_type(&self, type_script: packed::Script, limit: u32) -> ChainResult<Vec<LiveCell>> {
        const METHOD: &str = "get_cells";
        let client = self.clone();
        // A code cell's data is the contract itself: not asked for.
        let search_key = json!({
            "script": script_to_json(&type_script),
            "script_type": "type",
            "script_search_mode": "exact",
            "with_data": false,
        });
        async move {
            let params = json!([search_key, "asc", format!("{limit:#x}"), Value::Null]);
            let page = client.call(METHOD, params).await?;
            page_objects(METHOD, &page)?
                .iter()
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .enumerate()
                .map(|(index, object)| read(METHOD, indexed_cell(object, &format!("objects[{index}]"))))
                .collect()
        }
        .boxed_local()
    }

    fn resolve_out_points(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<Option<ResolvedCell>>> {
        let client = self.clone();
        async move {
            // Each tx once, with the indexes asked of it.
            let mut asked: Vec<([u8; 32], Vec<u32>)> = Vec::new();
            for out_point in &out_points {
                let tx_hash: [u8; 32] = out_point.tx_hash().unpack();
                let index: u32 = out_point.index().unpack();
                match asked.iter_mut().find(|(hash, _)| *hash == tx_hash) {
                    Some((_, indexes)) if !indexes.contains(&index) => indexes.push(index),
                    Some(_) => {}
                    None => asked.push((tx_hash, vec![index])),
                }
            }
            let lookups = asked
                .iter()
                .map(|(hash, indexes)| client.transaction_cells(*hash, indexes));
            let cells: Vec<_> = futures::stream::iter(lookups)
                .buffered(MAX_LOOKUPS_IN_FLIGHT)
                .try_collect()
                .await?;
            let found: HashMap<([u8; 32], u32), Option<ResolvedCell>> = asked
                .iter()
                .zip(cells)
                .flat_map(|((hash, indexes), cells)| {
                    let cells = cells.unwrap_or_else(|| vec![None; indexes.len()]);
                    indexes.iter().map(move |index| (*hash, *index)).zip(cells)
                })
                .collect();
            Ok(out_points
                .iter()
                .map(|out_point| {
                    let key = (out_point.tx_hash().unpack(), out_point.index().unpack());
                    found.get(&key).cloned().flatten()
                })
                .collect())
        }
        .boxed_local()
    }

    fn cells_live(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<bool>> {
        const METHOD: &str = "get_live_cell";
        let client = self.clone();
        async move {
            let mut live = Vec::with_capacity(out_points.len());
            for out_point in out_points {
                let answer = client.call(METHOD, json!([out_point_json(&out_point), false])).await?;
                live.push(match answer.get("status").and_then(Value::as_str) {
                    Some("live") => true,
                    Some("dead" | "unknown") => false,
                    other => return Err(bad_response(METHOD, format!("unknown cell status {other:?}"))),
                });
            }
            Ok(live)
        }
        .boxed_local()
    }

    fn transaction_status(&self, tx_hash: Hash256) -> ChainResult<TxReport> {
        let client = self.clone();
        async move {
            // Verbosity 1: the status without the transaction.
            const METHOD: &str = "get_transaction";
            let answer = client.call(METHOD, json!([tx_hash.to_string(), "0x1"])).await?;
            let tx_status = answer
                .get("tx_status")
                .ok_or_else(|| unexpected(METHOD, "no tx_status field"))?;
            let (status, block_epoch) = match tx_status.get("status").and_then(Value::as_str) {
                Some("pending" | "proposed") => (TxStatus::Pending, None),
                Some("committed") => {
                    let (block_number, epoch) = client.committed_block(tx_hash, tx_status).await?;
                    (TxStatus::Committed { block_number }, Some(epoch))
                }
                Some("unknown") => (TxStatus::Unknown, None),
                Some("rejected") => (TxStatus::Rejected, None),
                other => return Err(unexpected(METHOD, format!("unknown tx status {other:?}"))),
            };
            // Read after the status, so the tip is never below the committing block.
            let tip = client.tip().await?;
            Ok(TxReport {
                status,
                block_epoch,
                tip,
            })
        }
        .boxed_local()
    }

    fn spender(
        &self,
        out_point: packed::OutPoint,
        lock: packed::Script,
    ) -> ChainResult<Option<(packed::Transaction, TxReport)>> {
        const METHOD: &str = "get_transactions";
        let client = self.clone();
        async move {
            let [live] = <[bool; 1]>::try_from(client.cells_live(vec![out_point.clone()]).await?)
                .map_err(|_| bad_response("get_live_cell", "one answer per out point"))?;
            if live {
                return Ok(None);
            }
            // The indexer lists the txs touching the lock, newest first. Only
            // a spend of a cell under the lock is an `input` entry, and a
            // funding lock's cells need both sides' keys to spend; anyone can
            // make `output` entries under it, though, to bury the spend. So
            // pages are read past outputs, up to a bound, and each `input`
            // candidate (a bounded number) is read through the hash-checked
            // path and must really spend the cell.
            let mut after = Value::Null;
            let (mut listed, mut candidates_read) = (0usize, 0usize);
            // A tx is listed once per cell of the lock it spends: read once.
            let mut read_already: Vec<[u8; 32]> = Vec::new();
            while listed < MAX_SPENDER_ENTRIES {
                let params = json!([
                    lock_search_key(&lock),
                    "desc",
                    format!("{SPENDER_PAGE:#x}"),
                    after.clone()
                ]);
                let page = client.call(METHOD, params).await?;
                // Bounded by what was asked for, however long the page a node sends.
                let objects = page_objects(METHOD, &page)?;
                let full = objects.len() >= SPENDER_PAGE as usize;
                for (index, object) in objects.iter().take(SPENDER_PAGE as usize).enumerate() {
                    listed = listed.saturating_add(1);
                    if object.get("io_type").and_then(Value::as_str) != Some("input") {
                        continue;
                    }
                    let tx_hash = object.get("tx_hash").unwrap_or(&Value::Null);
                    let hash = read(METHOD, parse_hash(tx_hash, &format!("objects[{index}].tx_hash")))?;
                    if read_already.contains(&hash) {
                        continue;
                    }
                    if candidates_read >= SPENDER_CANDIDATES {
                        return Ok(None);
                    }
                    candidates_read = candidates_read.saturating_add(1);
                    read_already.push(hash);
                    let Some(tx) = client.transaction(hash).await? else {
                        continue;
                    };
                    let spends = tx
                        .raw()
                        .inputs()
                        .into_iter()
                        .any(|input| input.previous_output().as_slice() == out_point.as_slice());
                    if spends {
                        let report = client.transaction_status(Hash256(hash)).await?;
                        return Ok(Some((tx, report)));
                    }
                }
                let cursor = page.get("last_cursor").cloned().unwrap_or(Value::Null);
                let empty = cursor.as_str().is_none_or(|c| c.is_empty() || c == "0x");
                if !full || empty || cursor == after {
                    break;
                }
                after = cursor;
            }
            Ok(None)
        }
        .boxed_local()
    }

    fn send_transaction(&self, tx: packed::Transaction) -> ChainResult<Hash256> {
        const METHOD: &str = "send_transaction";
        let client = self.clone();
        async move {
            let expected: [u8; 32] = tx.calc_tx_hash().unpack();
            // Passthrough said outright: a node defaulting to the well-known-scripts
            // validator would refuse the funding output's lock.
            let params = json!([transaction_to_json(&tx), "passthrough"]);
            let answer = match client.call(METHOD, params).await {
                // A send that timed out may have reached the node: sent again,
                // it is in the pool already, which is what was asked.
                Err(error) if error.kind == ChainErrorKind::AlreadyInPool => return Ok(Hash256(expected)),
                other => other?,
            };
            let hash = read(METHOD, parse_hash(&answer, "result"))?;
            if hash != expected {
                return Err(bad_response(
                    METHOD,
                    format!(
                        "the node accepted {} but the transaction's hash is {}",
                        Hash256(hash),
                        Hash256(expected)
                    ),
                ));
            }
            Ok(Hash256(expected))
        }
        .boxed_local()
    }
}

/// The indexer's search key for exactly one lock. The default prefix mode
/// would also match cells whose lock args merely start with ours, i.e. other
/// people's cells.
fn lock_search_key(lock: &packed::Script) -> Value {
    json!({ "script": script_to_json(lock), "script_type": "lock", "script_search_mode": "exact" })
}

/// [`lock_search_key`] narrowed to plain cells (no type script, no data):
/// all a funding or a claim spends, and a wallet's NFTs and tokens (data of
/// any size) never fill the answer.
fn plain_cells_search_key(lock: &packed::Script) -> Value {
    let nothing = || json!(["0x0", "0x1"]);
    let filter = json!({ "script_len_range": nothing(), "output_data_len_range": nothing() });
    json!({ "script": script_to_json(lock), "script_type": "lock", "script_search_mode": "exact", "filter": filter })
}

fn out_point_json(out_point: &packed::OutPoint) -> Value {
    json!({ "tx_hash": encode_hex(out_point.tx_hash().as_slice()), "index": format!("{:#x}", Unpack::<u32>::unpack(&out_point.index())) })
}

/// An indexer page's `objects`.
fn page_objects<'a>(method: &'static str, page: &'a Value) -> Result<&'a Vec<Value>, ChainError> {
    page.get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| unexpected(method, "no objects array"))
}

/// One `get_cells` object. `output_data` is `null` only when a query asks
/// for no data (`with_data: false`), which this client never does; read as empty.
fn indexed_cell(object: &Value, path: &str) -> Result<LiveCell, TxJsonError> {
    let field = |name: &str| object.get(name).unwrap_or(&Value::Null);
    let output_data = match field("output_data") {
        Value::Null => Vec::new(),
        data => parse_bytes(data, &format!("{path}.output_data"))?,
    };
    Ok(LiveCell {
        out_point: parse_out_point(field("out_point"), &format!("{path}.out_point"))?,
        output: parse_cell_output(field("output"), &format!("{path}.output"))?,
        output_data,
        block_number: parse_number(field("block_number"), &format!("{path}.block_number"))?,
    })
}

/// A header's number and epoch (an `EpochNumberWithFraction` value).
fn number_and_epoch(method: &'static str, header: &Value) -> Result<(u64, u64), ChainError> {
    let field = |name: &str| header.get(name).unwrap_or(&Value::Null);
    let number = read(method, parse_number(field("number"), "number"))?;
    let epoch = read(method, parse_number(field("epoch"), "epoch"))?;
    Ok((number, epoch))
}

/// The most `get_transaction` lookups one [`ChainClient::resolve_out_points`]
/// has in flight together: the peer picks its inputs, each maybe in a large
/// tx, and all at once held every answer in memory together and timed out
/// as a batch on a slow link or a rate-limited node.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 4;

/// The most cells [`ChainClient::live_cells`] reads for one lock: a
/// wallet needs far fewer to fund a channel, and a node that pages on and on
/// (cursors cycling, or a lock someone filled with cells) stops there.
pub const MAX_LIVE_CELLS: usize = 10_000;

/// How many `input` candidates (distinct txs) `spender` reads: a funding
/// lock's only spend is the tx that closes the channel, and a wallet's
/// input is wanted among its few latest spends. A commitment lock's cells
/// can be spent by the other side alone, so there a decoy spend can hide
/// the one asked for: the core does not rely on the answer there.
const SPENDER_CANDIDATES: usize = 16;
/// The page size of `spender`'s search.
const SPENDER_PAGE: u32 = 16;
/// How many of a lock's entries `spender` looks through: making one costs
/// whoever buries the spend 61 CKB, locked under the funding lock for good.
pub const MAX_SPENDER_ENTRIES: usize = 1_024;

/// A field of an answer that is not what CKB sends.
fn read<T>(method: &'static str, result: Result<T, TxJsonError>) -> Result<T, ChainError> {
    result.map_err(|e| unexpected(method, e.to_string()))
}

fn unexpected(method: &'static str, what: impl std::fmt::Display) -> ChainError {
    bad_response(method, format!("unexpected result: {what}"))
}

/// CKB's error code for a tx already in the pool.
const POOL_REJECTED_DUPLICATED_TRANSACTION: i64 = -1107;

/// A JSON-RPC error object as CKB fills it.
struct NodeError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl NodeError {
    fn read(value: &Value) -> Option<Self> {
        Some(Self {
            code: value.get("code")?.as_i64()?,
            message: value.get("message")?.as_str()?.to_owned(),
            data: value.get("data").cloned(),
        })
    }
}

impl NodeError {
    fn describe(&self) -> String {
        let mut text = format!("{} (code {})", self.message, self.code);
        // CKB repeats the message in `data`, sometimes with more detail.
        if let Some(Value::String(data)) = &self.data {
            if !self.message.contains(data.as_str()) {
                text.push_str(": ");
                text.push_str(data);
            }
        }
        text
    }
}

/// Reads a JSON-RPC answer to request `id`: its `result`.
fn decode_answer(method: &'static str, id: u64, body: &str) -> Result<Value, ChainError> {
    let answer: Value = crate::json::parse(body)
        .map_err(|e| bad_response(method, format!("answer is not JSON ({e}): {}", quote(body))))?;
    let Value::Object(mut answer) = answer else {
        return Err(bad_response(
            method,
            format!("answer is not a JSON-RPC object: {}", quote(body)),
        ));
    };
    let answer_id = answer.get("id").cloned().unwrap_or(Value::Null);
    let error = answer.remove("error").filter(|error| !error.is_null());
    // A node that could not read the request answers with id null.
    let id_matches = answer_id == json!(id) || (answer_id.is_null() && error.is_some());
    if !id_matches {
        return Err(bad_response(
            method,
            format!("answer id {answer_id} does not match request id {id}"),
        ));
    }
    if let Some(error) = error {
        let error =
            NodeError::read(&error).ok_or_else(|| bad_response(method, format!("malformed error object: {error}")))?;
        let kind = if error.code == POOL_REJECTED_DUPLICATED_TRANSACTION {
            ChainErrorKind::AlreadyInPool
        } else {
            ChainErrorKind::Rejected
        };
        return Err(ChainError::new(method, kind, error.describe()));
    }
    answer
        .remove("result")
        .ok_or_else(|| bad_response(method, "answer has neither result nor error"))
}

/// A request that got no answer body, as the chain error a caller sees.
pub(crate) fn transport_failure(method: &'static str, error: TransportError, timeout_ms: u64) -> ChainError {
    match error {
        TransportError::Unreachable(reason) => ChainError::new(method, ChainErrorKind::Unreachable, reason),
        TransportError::Timeout => ChainError::new(
            method,
            ChainErrorKind::Timeout,
            format!("no answer within {timeout_ms} ms"),
        ),
        TransportError::TooLarge { limit } => bad_response(method, format!("answer longer than {limit} bytes")),
        TransportError::Http { status, body } => {
            let kind = match status {
                // CKB's own 30 s request limit.
                408 => ChainErrorKind::Timeout,
                // Overloaded or down behind a proxy: worth retrying.
                429 | 500..=599 => ChainErrorKind::Unreachable,
                // Wrong URL or not a CKB node: retrying will not help.
                _ => ChainErrorKind::BadResponse,
            };
            let reason = if body.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", quote(&body))
            };
            ChainError::new(method, kind, reason)
        }
    }
}

fn bad_response(method: &'static str, reason: impl Into<String>) -> ChainError {
    ChainError::new(method, ChainErrorKind::BadResponse, reason)
}

/// The start of an answer, enough to recognise an HTML page or a proxy's message.
fn quote(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(QUOTED_ANSWER_CHARS) {
        Some((end, _)) => format!("{:?}…", &body[..end]),
        None => format!("{body:?}"),
    }
}
