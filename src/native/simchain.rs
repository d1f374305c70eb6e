//! A [`SimulatedChain`] behind the CKB JSON-RPC methods (and shapes) a CKB
//! 0.210 node with its indexer answers, for machines without a CKB node:
//! `fiber-simchain` serves it over HTTP, with CORS so a page can call it.
//!
//! Blocks exist only here: each has a real header (so hashes and
//! `get_header` behave), mined on `generate_block`, `generate_epochs` or on a
//! timer. Genesis is laid out like `ckb init --chain dev`: transaction 0 holds
//! CKB's real secp256k1_blake160_sighash_all code (with the genesis type id
//! that gives the default lock's code hash) and secp256k1_data, transaction 1
//! output 0 is the default lock's dep group, and CKB's published dev accounts
//! are funded, split into many cells so one wallet can fund many channels at
//! once.
//!
//! Every transaction it accepts has had its scripts run in ckb-vm
//! ([`crate::native::script_vm`]), within CKB's default cycle limit, as a CKB
//! node runs them: the default lock, Fiber's contracts once deployed, any
//! other lock or type script. A refusal comes back in CKB's words (-302,
//! `TransactionFailedToVerify: Verification failed Script(…)`).
//!
//! ```
//! use fiber_funding::native::simchain::{SimChainNode, SimChainSettings};
//!
//! let mut node = SimChainNode::new(&SimChainSettings::default()).unwrap();
//! let answer = node.handle_body(r#"{"id":1,"jsonrpc":"2.0","method":"get_tip_block_number","params":[]}"#);
//! assert!(answer.contains(r#""result":"0x0""#));
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ckb_jsonrpc_types::{
    BlockNumber, BlockView as JsonBlockView, CellOutput as JsonCellOutput, HeaderView as JsonHeaderView, JsonBytes,
    OutPoint as JsonOutPoint, Script as JsonScript, Transaction as JsonTransaction,
    TransactionView as JsonTransactionView, Uint32, Uint64,
};
use ckb_types::core::{self, BlockBuilder, EpochNumberWithFraction, HeaderBuilder};
use ckb_types::packed;
use ckb_types::prelude::*;
use ckb_types::H256;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::chain::simulated::{CellFilter, ChainRejection, Cursor, SimulatedChain, DEFAULT_MIN_FEE_RATE};
use crate::chain::simulated_client::simulated_cell;
use crate::chain::TxStatus;
use crate::native::script_vm;
use crate::primitives::{decode_hex, encode_hex};
use crate::tx::default_lock::{self, DefaultLockError, SIGHASH_ALL_TYPE_HASH};
use crate::tx::fee::SHANNONS_PER_CKB;

/// One of CKB's published dev-chain accounts (`ckb init --chain dev`).
#[derive(Debug, Clone, Copy)]
pub struct DevAccount {
    /// Default-lock args: blake160 of the compressed public key.
    pub lock_args: &'static str,
    /// The well-known secret key. Dev chains only.
    pub secret_key: &'static str,
    /// What the dev chain spec issues to it, in CKB.
    pub capacity_ckb: u64,
}

/// CKB's dev accounts, funded at genesis as the dev chain spec funds them.
pub const DEV_ACCOUNTS: [DevAccount; 2] = [
    DevAccount {
        lock_args: "0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7",
        secret_key: "0xd00c06bfd800d27397002dca6fb0993d5ba6399b4238b2f29ee9deb97593d2bc",
        capacity_ckb: 20_000_000_000,
    },
    DevAccount {
        lock_args: "0x470dcdc5e44064909650113a274b3b36aecb6dc7",
        secret_key: "0x63d86723e08f0f813a36ce6aa123bb2289d90680ae1e99d4de8cdb334553f24d",
        capacity_ckb: 5_198_735_037,
    },
];

/// How genesis is laid out.
#[derive(Debug, Clone)]
pub struct SimChainSettings {
    /// Cells of [`Self::cell_capacity_ckb`] each dev account gets before its
    /// remainder cell (which comes last, so wallets spend the small ones first).
    pub cells_per_account: usize,
    pub cell_capacity_ckb: u64,
    /// CKB's minimum fee rate, shannons per 1,000 bytes.
    pub min_fee_rate: u64,
}

impl Default for SimChainSettings {
    fn default() -> Self {
        Self {
            cells_per_account: 50,
            cell_capacity_ckb: 10_000,
            min_fee_rate: DEFAULT_MIN_FEE_RATE,
        }
    }
}

/// Genesis has a fixed timestamp, so the same settings give the same chain hash.
const GENESIS_TIMESTAMP_MS: u64 = 1_700_000_000_000;
/// Any non-zero target; nothing checks proof of work here.
const COMPACT_TARGET: u32 = 0x2001_0000;
/// Largest request body read.
const MAX_REQUEST_BYTES: u64 = 16 << 20;
/// Most blocks one `generate_epochs` call mines: 100 epochs.
pub const MAX_GENERATED_BLOCKS: u64 = 100 * crate::chain::simulated::EPOCH_LENGTH;

/// The simulated chain and its blocks, answering JSON-RPC request bodies.
pub struct SimChainNode {
    chain: SimulatedChain,
    blocks: Vec<core::BlockView>,
    block_numbers: HashMap<[u8; 32], u64>,
    /// Block number and index in it of every committed transaction.
    tx_places: HashMap<[u8; 32], (u64, u32)>,
    /// Accepted transactions in arrival order, until mined.
    pool: Vec<[u8; 32]>,
    rejections: HashMap<[u8; 32], (String, String)>,
    min_fee_rate: u64,
}

/// A JSON-RPC error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<String>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, format!("Invalid params: {}", message.into()))
    }
}

type RpcResult = Result<Value, RpcError>;

impl SimChainNode {
    /// A chain at block 0 with CKB's real system cells and the dev accounts
    /// funded, running every script in ckb-vm.
    pub fn new(settings: &SimChainSettings) -> Result<Self, String> {
        let mut chain = script_vm::verifying_chain();
        chain.set_min_fee_rate(settings.min_fee_rate);
        let dep_group = chain.default_lock_cell_dep().out_point();
        let dep_group_tx: [u8; 32] = dep_group.tx_hash().unpack();
        let group_tx = chain
            .transaction(&dep_group_tx)
            .ok_or("the dep group is not on chain")?;
        let members = group_tx
            .raw()
            .outputs_data()
            .get(0)
            .and_then(|data| packed::OutPointVec::from_slice(&data.raw_data()).ok())
            .ok_or("the dep group holds no out points")?;
        let code_tx: [u8; 32] = members.get(0).ok_or("the dep group is empty")?.tx_hash().unpack();
        // Genesis transactions in the order the chain committed them.
        let mut genesis = vec![code_tx, dep_group_tx];
        let per_cell = settings.cell_capacity_ckb * SHANNONS_PER_CKB;
        for account in DEV_ACCOUNTS {
            let args = decode_hex(account.lock_args).map_err(|e| e.to_string())?;
            let args: [u8; 20] = args.try_into().map_err(|_| "dev lock args are not 20 bytes")?;
            let lock = default_lock::lock_script(args);
            let total = account.capacity_ckb * SHANNONS_PER_CKB;
            let split = per_cell
                .checked_mul(settings.cells_per_account as u64)
                .filter(|split| *split < total)
                .ok_or_else(|| {
                    format!(
                        "{} cells of {} CKB exceed account {}'s {} CKB",
                        settings.cells_per_account, settings.cell_capacity_ckb, account.lock_args, account.capacity_ckb
                    )
                })?;
            let capacities = std::iter::repeat_n(per_cell, settings.cells_per_account).chain([total - split]);
            for capacity in capacities {
                let output = packed::CellOutput::new_builder()
                    .capacity(capacity)
                    .lock(lock.clone())
                    .build();
                genesis.push(chain.genesis_cell(output, Vec::new()).tx_hash().unpack());
            }
        }
        let mut node = Self {
            chain,
            blocks: Vec::new(),
            block_numbers: HashMap::new(),
            tx_places: HashMap::new(),
            pool: Vec::new(),
            rejections: HashMap::new(),
            min_fee_rate: settings.min_fee_rate,
        };
        node.seal_block(genesis, GENESIS_TIMESTAMP_MS);
        Ok(node)
    }

    /// The genesis block's hash: the chain hash channels name.
    pub fn genesis_hash(&self) -> [u8; 32] {
        self.blocks[0].hash().unpack()
    }

    pub fn chain(&self) -> &SimulatedChain {
        &self.chain
    }

    pub fn tip_block_number(&self) -> u64 {
        self.chain.tip_block_number()
    }

    /// Mines one block with every pool transaction; returns its hash.
    pub fn mine_block(&mut self, timestamp_ms: u64) -> [u8; 32] {
        let number = self.chain.mine_block();
        let candidates = std::mem::take(&mut self.pool);
        let committed = candidates
            .into_iter()
            .filter(|hash| self.chain.transaction_status(hash) == TxStatus::Committed { block_number: number })
            .collect();
        let timestamp_ms = timestamp_ms.max(self.blocks.last().map_or(0, |b| b.timestamp() + 1));
        self.seal_block(committed, timestamp_ms)
    }

    /// Mines blocks until the tip's epoch has moved by `epochs` (a number of
    /// epochs and a fraction of one), as CKB's `generate_epochs` does, and
    /// returns the new tip's epoch. More than [`MAX_GENERATED_BLOCKS`] blocks
    /// at once is refused: each one is kept in memory.
    pub fn generate_epochs(&mut self, epochs: EpochNumberWithFraction, timestamp_ms: u64) -> Result<u64, String> {
        let blocks = SimulatedChain::blocks_for_epochs(epochs)
            .filter(|blocks| *blocks <= MAX_GENERATED_BLOCKS)
            .ok_or_else(|| {
                format!(
                    "{} epochs is more than fiber-simchain mines at once ({MAX_GENERATED_BLOCKS} blocks)",
                    epoch_text(epochs)
                )
            })?;
        for _ in 0..blocks {
            self.mine_block(timestamp_ms);
        }
        Ok(SimulatedChain::epoch_of(self.tip_block_number()).full_value())
    }

    /// Builds the header and block for the chain's tip block.
    fn seal_block(&mut self, tx_hashes: Vec<[u8; 32]>, timestamp_ms: u64) -> [u8; 32] {
        let number = self.chain.tip_block_number();
        debug_assert_eq!(number, self.blocks.len() as u64);
        let parent: [u8; 32] = self.blocks.last().map_or([0; 32], |b| b.hash().unpack());
        let epoch = SimulatedChain::epoch_of(number);
        let header = HeaderBuilder::default()
            .number(number)
            .parent_hash(parent)
            .timestamp(timestamp_ms)
            .epoch(epoch.full_value())
            .compact_target(COMPACT_TARGET)
            .build();
        let transactions: Vec<core::TransactionView> = tx_hashes
            .iter()
            .map(|hash| self.chain.transaction(hash).expect("committed").into_view())
            .collect();
        let block = BlockBuilder::default()
            .header(header)
            .transactions(transactions)
            .build();
        for (index, hash) in tx_hashes.iter().enumerate() {
            self.tx_places.insert(*hash, (number, index as u32));
        }
        let hash: [u8; 32] = block.hash().unpack();
        self.block_numbers.insert(hash, number);
        self.blocks.push(block);
        hash
    }

    /// Answers one HTTP request body: a JSON-RPC call or a batch of them.
    pub fn handle_body(&mut self, body: &str) -> String {
        let answer = match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(calls)) if !calls.is_empty() => {
                Value::Array(calls.into_iter().map(|call| self.handle_call(call)).collect())
            }
            Ok(call @ Value::Object(_)) => self.handle_call(call),
            Ok(_) => error_answer(Value::Null, RpcError::new(-32600, "Invalid request")),
            Err(_) => error_answer(Value::Null, RpcError::new(-32700, "Parse error")),
        };
        answer.to_string()
    }

    fn handle_call(&mut self, call: Value) -> Value {
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = call.get("method").and_then(Value::as_str) else {
            return error_answer(id, RpcError::new(-32600, "Invalid request"));
        };
        let params = match call.get("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(params)) => params.clone(),
            Some(_) => return error_answer(id, RpcError::invalid_params("params must be an array")),
        };
        log::debug!("{method}");
        match self.dispatch(method, &params) {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(error) => error_answer(id, error),
        }
    }

    fn dispatch(&mut self, method: &str, params: &[Value]) -> RpcResult {
        match method {
            "get_tip_block_number" => Ok(json!(BlockNumber::from(self.tip_block_number()))),
            "get_tip_header" => Ok(json!(JsonHeaderView::from(
                self.blocks.last().expect("genesis").header()
            ))),
            "get_block_hash" => {
                let number: BlockNumber = param(params, 0, "block_number")?;
                Ok(self
                    .block(number.value())
                    .map_or(Value::Null, |b| json!(H256(b.hash().unpack()))))
            }
            "get_block_by_number" => {
                let number: BlockNumber = param(params, 0, "block_number")?;
                let verbosity = optional_param::<Uint32>(params, 1, "verbosity")?.map_or(2, |v| v.value());
                Ok(self
                    .block(number.value())
                    .map_or(Ok(Value::Null), |b| block_json(b, verbosity))?)
            }
            "get_block" => {
                let hash: H256 = param(params, 0, "block_hash")?;
                let verbosity = optional_param::<Uint32>(params, 1, "verbosity")?.map_or(2, |v| v.value());
                Ok(self
                    .block_by_hash(&hash.0)
                    .map_or(Ok(Value::Null), |b| block_json(b, verbosity))?)
            }
            "get_header" => {
                let hash: H256 = param(params, 0, "block_hash")?;
                Ok(self
                    .block_by_hash(&hash.0)
                    .map_or(Value::Null, |b| json!(JsonHeaderView::from(b.header()))))
            }
            "get_header_by_number" => {
                let number: BlockNumber = param(params, 0, "block_number")?;
                Ok(self
                    .block(number.value())
                    .map_or(Value::Null, |b| json!(JsonHeaderView::from(b.header()))))
            }
            "get_indexer_tip" => {
                let tip = self.blocks.last().expect("genesis");
                Ok(json!({ "block_hash": H256(tip.hash().unpack()), "block_number": BlockNumber::from(tip.number()) }))
            }
            "get_transaction" => self.get_transaction(params),
            "send_transaction" => self.send_transaction(params),
            "generate_block" => {
                let hash = self.mine_block(crate::native::platform::now_ms());
                log::info!("mined block {} {}", self.tip_block_number(), encode_hex(&hash));
                Ok(json!(H256(hash)))
            }
            "generate_epochs" => {
                let epochs: ckb_jsonrpc_types::EpochNumberWithFraction = param(params, 0, "num_epochs")?;
                // CKB reads a bare number ("0x2") as whole epochs.
                let epochs = EpochNumberWithFraction::from_full_value(epochs.value());
                let tip_epoch = self
                    .generate_epochs(epochs, crate::native::platform::now_ms())
                    .map_err(RpcError::invalid_params)?;
                log::info!(
                    "generated {} epochs: tip {} in epoch {}",
                    epoch_text(epochs),
                    self.tip_block_number(),
                    epoch_text(EpochNumberWithFraction::from_full_value(tip_epoch))
                );
                Ok(json!(ckb_jsonrpc_types::EpochNumberWithFraction::from(tip_epoch)))
            }
            "get_cells" => self.get_cells(params),
            "get_live_cell" => self.get_live_cell(params),
            "get_transactions" => self.get_transactions(params),
            _ => Err(RpcError::new(-32601, format!("Method not found: {method}"))),
        }
    }

    fn block(&self, number: u64) -> Option<&core::BlockView> {
        self.blocks.get(usize::try_from(number).ok()?)
    }

    fn block_by_hash(&self, hash: &[u8; 32]) -> Option<&core::BlockView> {
        self.block(*self.block_numbers.get(hash)?)
    }

    fn get_transaction(&self, params: &[Value]) -> RpcResult {
        let hash: H256 = param(params, 0, "tx_hash")?;
        let verbosity = optional_param::<Uint32>(params, 1, "verbosity")?.map_or(2, |v| v.value());
        let only_committed = optional_param::<bool>(params, 2, "only_committed")?.unwrap_or(false);
        let mut status = self.chain.transaction_status(&hash.0);
        if only_committed && !matches!(status, TxStatus::Committed { .. }) {
            status = TxStatus::Unknown;
        }
        let tx = match status {
            TxStatus::Committed { .. } | TxStatus::Pending => self.chain.transaction(&hash.0),
            _ => None,
        };
        let transaction = match (tx, verbosity) {
            (None, _) | (Some(_), 1) => Value::Null,
            (Some(tx), 0) => json!(encode_hex(tx.as_slice())),
            (Some(tx), 2) => json!(JsonTransactionView::from(tx.into_view())),
            (Some(_), other) => return Err(RpcError::invalid_params(format!("verbosity {other} is not 0, 1 or 2"))),
        };
        let tx_status = match status {
            TxStatus::Committed { block_number } => {
                let (_, tx_index) = self.tx_places.get(&hash.0).copied().unwrap_or((block_number, 0));
                let block_hash = self.block(block_number).map(|b| H256(b.hash().unpack()));
                json!({
                    "status": "committed",
                    "block_number": BlockNumber::from(block_number),
                    "block_hash": block_hash,
                    "tx_index": Uint32::from(tx_index),
                    "reason": null,
                })
            }
            other => {
                let (name, reason) = match other {
                    TxStatus::Pending => ("pending", Value::Null),
                    TxStatus::Rejected => {
                        let reason = self
                            .rejections
                            .get(&hash.0)
                            .map(|(kind, description)| json!({ "type": kind, "description": description }).to_string());
                        ("rejected", json!(reason))
                    }
                    _ => ("unknown", Value::Null),
                };
                json!({ "status": name, "block_number": null, "block_hash": null, "tx_index": null, "reason": reason })
            }
        };
        let cycles = match status {
            TxStatus::Committed { .. } | TxStatus::Pending => self.chain.cycles(&hash.0).map(Uint64::from),
            _ => None,
        };
        Ok(json!({
            "transaction": transaction,
            "cycles": cycles,
            "time_added_to_pool": null,
            "tx_status": tx_status,
            "fee": null,
            "min_replace_fee": null,
        }))
    }

    fn send_transaction(&mut self, params: &[Value]) -> RpcResult {
        let tx: JsonTransaction = param(params, 0, "tx")?;
        let tx = packed::Transaction::from(tx);
        match self.chain.send_transaction(tx.clone()) {
            Ok(hash) => {
                log::info!("accepted transaction {}", encode_hex(&hash));
                self.rejections.remove(&hash);
                self.pool.push(hash);
                Ok(json!(H256(hash)))
            }
            Err(rejection) => {
                let error = ckb_error(&tx, self.min_fee_rate, &rejection);
                log::info!("rejected transaction: {} ({})", error.message, rejection);
                if !matches!(rejection, ChainRejection::Duplicated { .. }) {
                    let hash: [u8; 32] = tx.calc_tx_hash().unpack();
                    let kind = if error.code == -301 { "Resolve" } else { "Verification" };
                    self.rejections.insert(hash, (kind.to_owned(), error.message.clone()));
                }
                Err(error)
            }
        }
    }

    /// The indexer search key this chain answers: one lock, exact, no filter.
    fn exact_lock_search(params: &[Value]) -> Result<(packed::Script, &Value), RpcError> {
        let search_key = params
            .first()
            .ok_or_else(|| RpcError::invalid_params("missing search_key"))?;
        let script: JsonScript = field(search_key, "script")?;
        let script_type: String = field(search_key, "script_type")?;
        let mode: Option<String> = optional_field(search_key, "script_search_mode")?;
        if script_type != "lock" {
            return Err(RpcError::invalid_params(format!(
                "script_type {script_type} is not supported by fiber-simchain; search by lock"
            )));
        }
        if mode.as_deref() != Some("exact") {
            return Err(RpcError::invalid_params(
                "fiber-simchain only answers script_search_mode \"exact\"",
            ));
        }
        Ok((packed::Script::from(script), search_key))
    }

    /// The search key's `filter`, of which fiber-simchain answers the two
    /// length ranges (the type script's, the data's).
    fn cell_filter(search_key: &Value) -> Result<CellFilter, RpcError> {
        let Some(filter) = search_key.get("filter").filter(|f| !f.is_null()) else {
            return Ok(CellFilter::default());
        };
        let known = ["script_len_range", "output_data_len_range"];
        if let Some(other) = filter
            .as_object()
            .and_then(|f| f.keys().find(|k| !known.contains(&k.as_str())))
        {
            return Err(RpcError::invalid_params(format!(
                "filter.{other} is not supported by fiber-simchain"
            )));
        }
        let range = |name: &str| -> Result<Option<std::ops::Range<u64>>, RpcError> {
            let range: Option<[Uint64; 2]> = optional_field(filter, name)?;
            Ok(range.map(|[start, end]| start.value()..end.value()))
        };
        Ok(CellFilter {
            type_script_len: range("script_len_range")?,
            output_data_len: range("output_data_len_range")?,
        })
    }

    fn get_cells(&self, params: &[Value]) -> RpcResult {
        let (lock, search_key) = Self::exact_lock_search(params)?;
        let filter = Self::cell_filter(search_key)?;
        let with_data: Option<bool> = optional_field(search_key, "with_data")?;
        let order: String = param(params, 1, "order")?;
        if order != "asc" {
            return Err(RpcError::invalid_params("fiber-simchain only answers order \"asc\""));
        }
        let limit: Uint32 = param(params, 2, "limit")?;
        if limit.value() == 0 {
            return Err(RpcError::invalid_params("limit should be greater than 0"));
        }
        let after = match optional_param::<JsonBytes>(params, 3, "after")? {
            None => None,
            Some(bytes) => Some(
                Cursor::from_bytes(bytes.as_bytes())
                    .ok_or_else(|| RpcError::invalid_params("after is not a cursor this node handed out"))?,
            ),
        };
        let (cells, next) = self.chain.get_cells(&lock, &filter, limit.value() as usize, after);
        let mut last_cursor = next.map(Cursor::to_bytes);
        let mut objects = Vec::with_capacity(cells.len());
        for cell in &cells {
            let tx_hash: [u8; 32] = cell.out_point.tx_hash().unpack();
            let output_index: u32 = cell.out_point.index().unpack();
            let (block_number, tx_index) = self.tx_places.get(&tx_hash).copied().unwrap_or((cell.block_number, 0));
            if next.is_none() {
                last_cursor = Some(cursor_bytes(block_number, tx_index, output_index));
            }
            let data = if with_data == Some(false) {
                Value::Null
            } else {
                json!(JsonBytes::from_vec(cell.output_data.clone()))
            };
            objects.push(json!({
                "output": JsonCellOutput::from(cell.output.clone()),
                "output_data": data,
                "out_point": JsonOutPoint::from(cell.out_point.clone()),
                "block_number": BlockNumber::from(block_number),
                "tx_index": Uint32::from(tx_index),
            }));
        }
        let last_cursor = last_cursor.map_or_else(|| "0x".to_owned(), |bytes| encode_hex(&bytes));
        Ok(json!({ "objects": objects, "last_cursor": last_cursor }))
    }

    /// The indexer's `get_transactions`, ungrouped, for an exact lock: each
    /// committed tx with an input or output of that lock, in chain order (or
    /// reversed), `limit` at a time; the cursor is the position reached.
    fn get_transactions(&self, params: &[Value]) -> RpcResult {
        let (lock, search_key) = Self::exact_lock_search(params)?;
        if search_key.get("filter").is_some_and(|f| !f.is_null()) {
            return Err(RpcError::invalid_params(
                "filter is not supported by fiber-simchain's get_transactions",
            ));
        }
        if search_key
            .get("group_by_transaction")
            .is_some_and(|g| g == &json!(true))
        {
            return Err(RpcError::invalid_params(
                "group_by_transaction is not supported by fiber-simchain",
            ));
        }
        let order: String = param(params, 1, "order")?;
        let limit: Uint32 = param(params, 2, "limit")?;
        let skip = match optional_param::<JsonBytes>(params, 3, "after")? {
            None => 0,
            Some(after) if after.is_empty() => 0,
            Some(after) => <[u8; 4]>::try_from(after.as_bytes())
                .map(|bytes| u32::from_be_bytes(bytes) as usize)
                .map_err(|_| RpcError::invalid_params("after is not a cursor this node handed out"))?,
        };
        let mut objects = Vec::new();
        for block in &self.blocks {
            for (tx_index, tx) in block.transactions().iter().enumerate() {
                let raw = tx.data().raw();
                let mut entry = |io_type: &str, io_index: usize| {
                    objects.push(json!({
                        "tx_hash": H256(tx.hash().unpack()),
                        "block_number": BlockNumber::from(block.number()),
                        "tx_index": Uint32::from(tx_index as u32),
                        "io_index": Uint32::from(io_index as u32),
                        "io_type": io_type,
                    }));
                };
                for (io_index, input) in raw.inputs().into_iter().enumerate() {
                    let spent = simulated_cell(&self.chain, &input.previous_output());
                    if spent.is_some_and(|cell| cell.output.lock().as_slice() == lock.as_slice()) {
                        entry("input", io_index);
                    }
                }
                for (io_index, output) in raw.outputs().into_iter().enumerate() {
                    if output.lock().as_slice() == lock.as_slice() {
                        entry("output", io_index);
                    }
                }
            }
        }
        if limit.value() == 0 {
            return Err(RpcError::invalid_params("limit should be greater than 0"));
        }
        if order == "desc" {
            objects.reverse();
        } else if order != "asc" {
            return Err(RpcError::invalid_params("order must be \"asc\" or \"desc\""));
        }
        let page: Vec<Value> = objects.into_iter().skip(skip).take(limit.value() as usize).collect();
        let reached = u32::try_from(skip + page.len()).unwrap_or(u32::MAX);
        Ok(json!({ "objects": page, "last_cursor": encode_hex(&reached.to_be_bytes()) }))
    }

    fn get_live_cell(&self, params: &[Value]) -> RpcResult {
        let out_point: JsonOutPoint = param(params, 0, "out_point")?;
        let with_data: bool = param(params, 1, "with_data")?;
        let out_point = packed::OutPoint::from(out_point);
        let Some(cell) = simulated_cell(&self.chain, &out_point) else {
            return Ok(json!({ "cell": null, "status": "unknown" }));
        };
        let output = cell.output;
        if !self.chain.is_live(&out_point) {
            return Ok(json!({ "cell": null, "status": "dead" }));
        }
        let tx_hash: [u8; 32] = out_point.tx_hash().unpack();
        let index: u32 = out_point.index().unpack();
        let data = self
            .chain
            .transaction(&tx_hash)
            .and_then(|tx| tx.raw().outputs_data().get(index as usize))
            .map(|d| d.raw_data().to_vec())
            .unwrap_or_default();
        let data = with_data.then(|| {
            json!({
                "content": JsonBytes::from_vec(data.clone()),
                "hash": H256(ckb_hash::blake2b_256(&data)),
            })
        });
        Ok(json!({ "cell": { "output": JsonCellOutput::from(output), "data": data }, "status": "live" }))
    }
}

/// `number index/length`, as a person reads an epoch.
fn epoch_text(epoch: EpochNumberWithFraction) -> String {
    format!("{} {}/{}", epoch.number(), epoch.index(), epoch.length())
}

fn cursor_bytes(block_number: u64, tx_index: u32, output_index: u32) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&block_number.to_be_bytes());
    bytes[8..12].copy_from_slice(&tx_index.to_be_bytes());
    bytes[12..].copy_from_slice(&output_index.to_be_bytes());
    bytes
}

fn block_json(block: &core::BlockView, verbosity: u32) -> RpcResult {
    match verbosity {
        0 => Ok(json!(encode_hex(block.data().as_slice()))),
        2 => Ok(json!(JsonBlockView::from(block.clone()))),
        other => Err(RpcError::invalid_params(format!("verbosity {other} is not 0 or 2"))),
    }
}

fn error_answer(id: Value, error: RpcError) -> Value {
    let mut object = json!({ "code": error.code, "message": error.message });
    if let Some(data) = error.data {
        object["data"] = json!(data);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": object })
}

fn param<T: DeserializeOwned>(params: &[Value], index: usize, name: &str) -> Result<T, RpcError> {
    optional_param(params, index, name)?.ok_or_else(|| RpcError::invalid_params(format!("missing {name}")))
}

fn optional_param<T: DeserializeOwned>(params: &[Value], index: usize, name: &str) -> Result<Option<T>, RpcError> {
    match params.get(index) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| RpcError::invalid_params(format!("{name}: {e}"))),
    }
}

fn field<T: DeserializeOwned>(object: &Value, name: &str) -> Result<T, RpcError> {
    optional_field(object, name)?.ok_or_else(|| RpcError::invalid_params(format!("missing search_key.{name}")))
}

fn optional_field<T: DeserializeOwned>(object: &Value, name: &str) -> Result<Option<T>, RpcError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| RpcError::invalid_params(format!("search_key.{name}: {e}"))),
    }
}

/// How CKB would word the rejection: its error code, its message shape, and
/// the simulation's own detail in `data`.
fn ckb_error(tx: &packed::Transaction, min_fee_rate: u64, rejection: &ChainRejection) -> RpcError {
    let input_point = |index: usize| {
        tx.raw()
            .inputs()
            .get(index)
            .map(|input| encode_hex(input.previous_output().as_slice()))
            .unwrap_or_default()
    };
    let dep_point = |index: usize| {
        tx.raw()
            .cell_deps()
            .get(index)
            .map(|dep| encode_hex(dep.out_point().as_slice()))
            .unwrap_or_default()
    };
    let verify = |what: String| (-302, format!("TransactionFailedToVerify: Verification failed {what}"));
    let (code, message) = match rejection {
        ChainRejection::Duplicated { tx_hash } => (
            -1107,
            format!(
                "PoolRejectedDuplicatedTransaction: Transaction(Byte32({})) already exists in transaction_pool",
                encode_hex(tx_hash)
            ),
        ),
        ChainRejection::UnknownInput { index } => (
            -301,
            format!("TransactionFailedToResolve: Resolve failed Unknown(OutPoint({}))", input_point(*index)),
        ),
        ChainRejection::DeadInput { index } => (
            -301,
            format!("TransactionFailedToResolve: Resolve failed Dead(OutPoint({}))", input_point(*index)),
        ),
        ChainRejection::UnknownCellDep { index } => (
            -301,
            format!("TransactionFailedToResolve: Resolve failed Unknown(OutPoint({}))", dep_point(*index)),
        ),
        ChainRejection::InvalidDepGroup { index } => (
            -301,
            format!("TransactionFailedToResolve: Resolve failed InvalidDepGroup(OutPoint({}))", dep_point(*index)),
        ),
        ChainRejection::Conflict { pool_tx_hash, .. } => (
            -1111,
            format!(
                "PoolRejectedRBF: RBF rejected: the transaction spends a cell already spent by pool transaction {}",
                encode_hex(pool_tx_hash)
            ),
        ),
        ChainRejection::LowFeeRate { fee, min_fee } => (
            -1102,
            format!(
                "PoolRejectedTransactionByMinFeeRate: The min fee rate is {} shannons/KW, requiring a transaction fee of at least {min_fee} shannons, but the fee provided is only {fee}",
                min_fee_rate
            ),
        ),
        ChainRejection::Immature { index } => verify(format!("Transaction(Immature(Inputs[{index}]))")),
        ChainRejection::InvalidSince { index, .. } => verify(format!("Transaction(InvalidSince(Inputs[{index}]))")),
        ChainRejection::NoInputs => verify("Transaction(Empty(Inputs))".into()),
        ChainRejection::OutputsDataMismatch { .. } => verify("Transaction(OutputsDataLengthMismatch)".into()),
        ChainRejection::DuplicateInput { .. } => verify("Transaction(DuplicateInputs)".into()),
        ChainRejection::OutputBelowOccupiedCapacity {
            index,
            capacity,
            occupied,
        } => verify(format!(
            "Transaction(InsufficientCellCapacity(Outputs[{index}]): expected occupied capacity (0x{occupied:x}) <= capacity (0x{capacity:x}))"
        )),
        ChainRejection::OutputsExceedInputs { inputs, outputs } => verify(format!(
            "Transaction(OutputsSumOverflow(inputs capacity 0x{inputs:x} < outputs capacity 0x{outputs:x}))"
        )),
        ChainRejection::MissingDefaultLockCellDep => verify(format!(
            "Script(TransactionScriptError {{ source: Inputs[0].Lock, cause: ScriptNotFound: code_hash: {} }})",
            encode_hex(&SIGHASH_ALL_TYPE_HASH)
        )),
        ChainRejection::LockScript { input_index, error } => {
            // The secp256k1-blake160-sighash-all script's own exit codes.
            let exit_code = match error {
                DefaultLockError::PubkeyHashMismatch { .. } => -31,
                DefaultLockError::SignatureDoesNotRecover { .. } => -14,
                DefaultLockError::BadSignatureLength { .. } | DefaultLockError::MissingLock { .. } => -22,
                _ => -2,
            };
            verify(format!(
                "Script(TransactionScriptError {{ source: Inputs[{input_index}].Lock, cause: ValidationFailure: see error code {exit_code} on page https://nervosnetwork.github.io/ckb-script-error-codes/by-type-hash/{}.html#{exit_code} }})",
                &encode_hex(&SIGHASH_ALL_TYPE_HASH)[2..]
            ))
        }
        // ckb-vm's verifier already words it as CKB does: `Script(…)`.
        ChainRejection::Script { reason } => verify(reason.clone()),
    };
    RpcError {
        code,
        message,
        data: Some(format!("fiber-simchain: {rejection}")),
    }
}

/// `fiber-simchain`'s HTTP side: JSON-RPC over POST, CORS for pages,
/// optional mining on a timer. Single-threaded: one request at a time.
pub struct SimChainServer {
    server: tiny_http::Server,
    local_addr: SocketAddr,
    node: SimChainNode,
    block_interval: Option<Duration>,
}

impl SimChainServer {
    /// Listens on `addr` (port 0 picks a free one).
    pub fn bind(addr: &str, node: SimChainNode, block_interval: Option<Duration>) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY on {addr}: {e}"))?;
        let server =
            tiny_http::Server::from_listener(listener, None).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{addr} is not an IP address"))?;
        Ok(Self {
            server,
            local_addr,
            node,
            block_interval,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn node(&self) -> &SimChainNode {
        &self.node
    }

    /// Serves until the process ends.
    pub fn run(mut self) {
        let mut next_block = self.block_interval.map(|interval| Instant::now() + interval);
        loop {
            let wait = next_block.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            match self.server.recv_timeout(wait) {
                Ok(Some(request)) => self.answer(request),
                Ok(None) => {}
                Err(error) => log::warn!("receiving a request failed: {error}"),
            }
            if let (Some(at), Some(interval)) = (next_block, self.block_interval) {
                if Instant::now() >= at {
                    let hash = self.node.mine_block(crate::native::platform::now_ms());
                    log::debug!("mined block {} {}", self.node.tip_block_number(), encode_hex(&hash));
                    next_block = Some(at + interval);
                }
            }
        }
    }

    fn answer(&mut self, mut request: tiny_http::Request) {
        let mut headers = vec![header("Access-Control-Allow-Origin", "*")];
        let response = match request.method() {
            tiny_http::Method::Options => {
                headers.push(header("Access-Control-Allow-Methods", "POST, OPTIONS"));
                headers.push(header("Access-Control-Allow-Headers", "content-type"));
                headers.push(header("Access-Control-Max-Age", "86400"));
                tiny_http::Response::empty(204).boxed()
            }
            tiny_http::Method::Post => {
                let mut body = String::new();
                let read = request.as_reader().take(MAX_REQUEST_BYTES).read_to_string(&mut body);
                headers.push(header("Content-Type", "application/json"));
                match read {
                    Ok(_) => tiny_http::Response::from_string(self.node.handle_body(&body)).with_status_code(200),
                    Err(error) => tiny_http::Response::from_string(
                        error_answer(Value::Null, RpcError::new(-32700, format!("Parse error: {error}"))).to_string(),
                    )
                    .with_status_code(200),
                }
                .boxed()
            }
            _ => {
                headers.push(header("Content-Type", "text/plain"));
                tiny_http::Response::from_string("fiber-simchain: POST CKB JSON-RPC requests here\n")
                    .with_status_code(405)
                    .boxed()
            }
        };
        let response = headers
            .into_iter()
            .fold(response, |response, h| response.with_header(h));
        if let Err(error) = request.respond(response) {
            log::debug!("answering a request failed: {error}");
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}
