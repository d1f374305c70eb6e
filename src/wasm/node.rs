//! `FundingNode`, the class a web wallet imports.
//!
//! ```js
//! const node = await FundingNode.open({ ckbRpcUrl, peerUrl, peerPubkey });
//! for (const flow of await node.pendingFundings()) { /* restored after a redirect */ }
//! const { channel_id, unsigned_funding_tx } = await node.openChannelWithExternalFunding(params);
//! // ... the wallet signs, maybe through a full-page redirect ...
//! const { funding_tx_hash } = await node.submitSignedFundingTx({ channel_id, signed_funding_tx });
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use crate::json::Value;
use wasm_bindgen::prelude::*;

use super::fetch_rpc::FetchTransport;
use super::forward;
use super::idb_store::IdbStore;
use super::platform::{random_32, BrowserEntropy, BrowserPlatform};
use super::published_code::PublishedCodeLookup;
use super::tab_lock::{TabBroadcast, TabLock, TabLockError};
use super::websocket::WebSocketLink;
use crate::api::backup::{parse_backup, Backup, ImportBackupResult, ImportOptions};
use crate::api::json::{
    cancel_tx_built, cancel_tx_sent, driver_event, opened, parse_cancel_params, parse_channel_id, parse_open_params,
    parse_shutdown_params, parse_submit_cancel_params, parse_submit_params, submitted,
};
use crate::api::options::{contracts_for_chain, NodeOptions};
use crate::api::shapes::{Channel, PendingFunding, UnreadableRecord};
use crate::api::{ApiError, ErrorCode};
use crate::chain::client::{ChainClient, ChainError, ChainErrorKind};
use crate::chain::rpc::RpcChainClient;
use crate::crypto::keys::{BackupKey, NodeSecret};
use crate::flow::config::{
    DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS, DEFAULT_FUNDING_CONFIRMATIONS, DEFAULT_SETTLE_CONFIRMATIONS,
};
use crate::flow::NodeConfig;
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::runtime::driver::DriverParts;
use crate::runtime::{inbox, start, DriverError, DriverEvent, DriverHandle, DriverSettings, InputSender, PeerLink};
use futures::future::{AbortHandle, LocalBoxFuture};
use futures::FutureExt;

const DEFAULT_DB_NAME: &str = "fiber-funding";
const NODE_SECRET_KEY: &str = "node_secret";
/// Where the chain hash learned from the CKB node at the first boot is kept.
const CHAIN_HASH_KEY: &str = "chain_hash";

// The input shapes, parsed and checked by hand (api::options, api::json);
// what the API returns and emits is declared from its Rust types
// (api::shapes, tsify). tests/e2e/vite-consumer.test.mjs type-checks both (tsc).
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `FundingNode.open`. Unknown keys are an error. */
export interface FundingNodeOptions {
  /** CKB JSON-RPC endpoint with the indexer enabled, e.g. "http://127.0.0.1:8114". */
  ckbRpcUrl: string;
  /** The counterparty's WebSocket, e.g. "ws://127.0.0.1:8230". */
  peerUrl: string;
  /** IndexedDB database name; default "fiber-funding". */
  dbName?: string;
  /** Whole seconds, 1 to 86400; default 300, as Fiber's `external_funding_timeout_seconds`. */
  externalFundingTimeoutSeconds?: number;
  /** 0x-hex secp256k1 secret key of this node; generated and stored on first open when absent. */
  nodeSecretKey?: string;
  /** Wait for another tab to close this database instead of failing with OPEN_IN_ANOTHER_TAB. */
  waitForLock?: boolean;
  /** The counterparty's node id: the BOLT 8 handshake only completes with the node holding this key. */
  peerPubkey: string;
  /** Genesis hash; read from the CKB node when absent. It picks the default contracts. */
  chainHash?: string;
  /** Funding-lock contract; default Fiber's own deployment, on testnet and mainnet only (required elsewhere).
   * `cell_deps` (its code cell and ckb-auth) are needed to broadcast a commitment or closing tx. */
  fundingLock?: { code_hash: string; hash_type: "type" | "data" | "data1" | "data2"; cell_deps?: CellDep[] };
  /** Commitment-lock contract, as `fundingLock`; `cell_deps` are needed to claim a share after a unilateral close. */
  commitmentLock?: { code_hash: string; hash_type: "type" | "data" | "data1" | "data2"; cell_deps?: CellDep[] };
  /** Confirmations before ChannelReady, 1 to 100; default 3. */
  fundingConfirmations?: number;
  /** Confirmations before a tx that ends a channel settles it and its keys are wiped, 1 to 10000
   * (never fewer than fundingConfirmations); default 24. */
  settleConfirmations?: number;
  /** How often the funding tx's status is polled, 10 to 600000 ms; default 2000. */
  pollIntervalMs?: number;
}

export interface Script { code_hash: string; hash_type: string; args: string }
export interface CellDep { out_point: { tx_hash: string; index: string }; dep_type: "code" | "dep_group" }
/** A CKB transaction in Fiber's JSON-RPC shape. */
export interface Transaction {
  version: string; cell_deps: CellDep[]; header_deps: string[];
  inputs: { since: string; previous_output: { tx_hash: string; index: string } }[];
  outputs: { capacity: string; lock: Script; type: Script | null }[];
  outputs_data: string[]; witnesses: string[];
}
/** Fiber's `open_channel_with_external_funding` params (snake_case, 0x-hex numbers). */
export interface OpenChannelWithExternalFundingParams {
  pubkey: string; funding_amount: string; public?: boolean; funding_udt_type_script?: Script | null;
  shutdown_script: Script; funding_lock_script: Script; funding_lock_script_cell_deps?: CellDep[];
  commitment_delay_epoch?: string; commitment_fee_rate?: string; funding_fee_rate?: string;
  /** This module's own: bytes the wallet's signature takes in WitnessArgs.lock (default 1,000 for JoyID's lock, else 65). */
  funding_witness_lock_len?: string;
  tlc_expiry_delta?: string; tlc_min_value?: string; tlc_fee_proportional_millionths?: string;
  max_tlc_value_in_flight?: string; max_tlc_number_in_flight?: string;
}
/** Options of `importBackup`. Unknown keys are an error. */
export interface ImportBackupOptions {
  /** Read a version 1 backup, made before backups were authenticated (else BACKUP_UNAUTHENTICATED):
   * only for a file the user kept themselves. */
  allowUnauthenticated?: boolean;
}
export interface SubmitSignedFundingTxParams {
  channel_id: string;
  /** Fiber's snake_case shape or JoyID's camelCase shape. */
  signed_funding_tx: Transaction | Record<string, unknown>;
}
export interface CancelFundingTxParams {
  channel_id: string;
  /** Shannons per 1000 bytes, 0x-hex, 1,000 to 1,000,000; default the funding fee rate. */
  fee_rate?: string;
}
export interface SubmitSignedCancelTxParams {
  channel_id: string;
  /** Fiber's snake_case shape or JoyID's camelCase shape. */
  signed_cancel_tx: Transaction | Record<string, unknown>;
}
/** Fiber's `shutdown_channel` params. */
export interface ShutdownChannelParams {
  channel_id: string;
  /** Where our balance goes; default the shutdown script the channel was opened with. */
  close_script?: Script;
  /** Shannons per 1000 bytes, 0x-hex; default the channel's commitment fee rate. We pay the closing fee. */
  fee_rate?: string;
  /** Close unilaterally: broadcast our commitment; `close_script` and `fee_rate` are ignored. */
  force?: boolean;
}
/** Thrown errors carry a stable `code`; see docs/api.md. */
export interface FundingError extends Error { code: string }
"#;

/// A JS `Error` with a stable `code`.
/// A channel id as the page passed it: anything but a string is
/// `INVALID_PARAMS`, not the binding's uncoded `TypeError`.
fn channel_id_param(value: &JsValue) -> Result<ChannelId, JsValue> {
    let text = value.as_string().map_or(Value::Null, Value::from);
    parse_channel_id(&text, "channel_id").map_err(js_error)
}

pub(crate) fn js_error(error: impl Into<ApiError>) -> JsValue {
    let error: ApiError = error.into();
    let js = js_sys::Error::new(&error.message);
    let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code.as_str().into());
    js.into()
}

pub(crate) fn to_js(value: &impl Serialize) -> JsValue {
    // As JSON text, parsed by the engine: `JSON.parse` builds the objects far
    // faster than one JS call per field would, and the wasm carries no second
    // (JsValue) serializer next to the JSON one.
    crate::json::to_string(value)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .unwrap_or(JsValue::NULL)
}

/// The longest JSON text a page's argument may have, measured before it is
/// copied into the module's memory. The largest a call needs is a signed
/// funding tx (at most 60,000 bytes, about 130,000 characters as JSON);
/// the rest is room for a wallet's spacing and extra fields.
pub(crate) const MAX_ARGUMENT_CHARS: u32 = 4 << 20;

/// Reads a JS argument as JSON: what `JSON.stringify` keeps of it (so
/// `undefined` members count as absent, and a `BigInt` or a cycle is refused).
pub(crate) fn from_js(value: JsValue, what: &str) -> Result<Value, ApiError> {
    if value.is_undefined() {
        return Ok(Value::Null);
    }
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .filter(|text| text.is_string())
        .ok_or_else(|| ApiError::invalid(what, "not JSON data (a BigInt, a cycle or a function?)"))?;
    if text.length() > MAX_ARGUMENT_CHARS {
        return Err(ApiError::invalid(
            what,
            format!(
                "{} characters of JSON, more than the {MAX_ARGUMENT_CHARS} any call needs",
                text.length()
            ),
        ));
    }
    crate::json::parse(&String::from(text)).map_err(|e| ApiError::invalid(what, e))
}

use serde::Serialize;

/// Makes the peer link from the node's input queue, its key and the peer it
/// must reach (`peerPubkey`).
pub type LinkFactory = Box<dyn FnOnce(InputSender, NodeSecret, NodeId) -> Rc<dyn PeerLink>>;

/// What connects a node to the world: its peer link (made once the node key
/// and input queue exist), its chain client, and where to learn the genesis
/// hash when the options do not give it.
pub struct Adapters {
    pub link: LinkFactory,
    pub chain: Rc<dyn ChainClient>,
    pub genesis_hash: LocalBoxFuture<'static, Result<Hash256, ApiError>>,
}

/// An open node: owns its database (a Web Lock) until closed.
#[wasm_bindgen]
pub struct FundingNode {
    handle: DriverHandle,
    store: Rc<IdbStore>,
    lock: RefCell<Option<TabLock>>,
    broadcast: Rc<TabBroadcast>,
    /// Submits forwarded by tabs that follow this one (`submitToOwner`).
    requests: Rc<TabBroadcast>,
    listeners: Rc<RefCell<Listeners>>,
    node_id: NodeId,
    persistence_granted: Option<bool>,
    /// Found at boot, and added to when the closed flows' records are read.
    unreadable: Rc<RefCell<Vec<UnreadableRecord>>>,
    /// Fiber's code cells, looked up after the boot; opens and closes wait
    /// for the lookup (a new one if the last failed).
    published_code: PublishedCodeLookup,
    /// The check of a learned chain hash against the CKB node, stopped at close.
    chain_check: Option<AbortHandle>,
    /// The node key when the database keeps it (made by this module, or
    /// stored by an import): it is then lost with the database, so a backup
    /// carries it; `None` while the page gives it.
    kept_secret: RefCell<Option<NodeSecret>>,
    /// Authenticates this node's backups (`exportBackup`, `importBackup`).
    backup_key: BackupKey,
}

#[wasm_bindgen]
impl FundingNode {
    /// Opens the node on its database, restores every pending flow (timers
    /// re-armed, expired flows aborted) and connects to the counterparty.
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "FundingNodeOptions")] options: JsValue,
    ) -> Result<FundingNode, JsValue> {
        Self::open_inner(options).await.map_err(js_error)
    }

    async fn open_inner(options: JsValue) -> Result<FundingNode, ApiError> {
        let options = NodeOptions::from_json(&from_js(options, "options")?)?;
        options.check_urls()?;
        let peer_url = options.peer_url.clone();
        let chain = Rc::new(RpcChainClient::new(FetchTransport::new(&options.ckb_rpc_url)));
        let adapters = Adapters {
            link: Box::new(move |sender, secret, expected_peer| {
                WebSocketLink::connect(&peer_url, secret, expected_peer, sender) as Rc<dyn PeerLink>
            }),
            genesis_hash: {
                let chain = chain.clone();
                Box::pin(async move { chain.genesis_hash().await.map_err(ApiError::from) })
            },
            chain,
        };
        Self::open_on(options, adapters).await
    }

    /// This node's id (its public key), 0x-hex.
    #[wasm_bindgen(getter, js_name = nodeId)]
    pub fn node_id(&self) -> String {
        self.node_id.to_string()
    }

    /// Whether the browser granted persistent storage (`navigator.storage.persist()`).
    #[wasm_bindgen(getter, js_name = persistenceGranted)]
    pub fn persistence_granted(&self) -> Option<bool> {
        self.persistence_granted
    }

    /// Stored records that could not be read: `[{ channel_id, reason }]`. They
    /// are kept in the database; every other channel was restored. Closed
    /// flows' records are read just after `open` resolves: one of them found
    /// unreadable joins the list then, with an `unreadable_records` event.
    #[wasm_bindgen(getter, js_name = unreadableRecords, unchecked_return_type = "UnreadableRecord[]")]
    pub fn unreadable_records(&self) -> JsValue {
        to_js(&*self.unreadable.borrow())
    }

    /// Flows restored from storage (or running) that have not ended.
    #[wasm_bindgen(js_name = pendingFundings, unchecked_return_type = "PendingFunding[]")]
    pub async fn pending_fundings(&self) -> Result<JsValue, JsValue> {
        let pending = self.handle.pending_fundings().await.map_err(js_error)?;
        let list: Vec<PendingFunding> = pending.iter().map(PendingFunding::from).collect();
        Ok(js_sys::JSON::parse(&PendingFunding::list_json(&list)).unwrap_or(JsValue::NULL))
    }

    /// Fiber's `open_channel_with_external_funding`. Resolves once the
    /// unsigned funding tx is final and durably stored, and the
    /// counterparty's signature of our commitment is verified (when it
    /// signs the funding tx first).
    #[wasm_bindgen(js_name = openChannelWithExternalFunding, unchecked_return_type = "OpenChannelResult")]
    pub async fn open_channel_with_external_funding(
        &self,
        #[wasm_bindgen(unchecked_param_type = "OpenChannelWithExternalFundingParams")] params: JsValue,
    ) -> Result<JsValue, JsValue> {
        let params = from_js(params, "params")
            .and_then(|v| parse_open_params(&v))
            .map_err(js_error)?;
        self.published_code.placed().await;
        let (channel_id, unsigned) = self.handle.open_channel(params).await.map_err(js_error)?;
        Ok(to_js(&opened(&channel_id, &unsigned)))
    }

    /// Fiber's `submit_signed_funding_tx`; `signed_funding_tx` may be Fiber's
    /// snake_case or JoyID's camelCase transaction.
    #[wasm_bindgen(js_name = submitSignedFundingTx, unchecked_return_type = "SubmitSignedFundingTxResult")]
    pub async fn submit_signed_funding_tx(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SubmitSignedFundingTxParams")] params: JsValue,
    ) -> Result<JsValue, JsValue> {
        submit_signed(&self.handle, params).await.map_err(js_error)
    }

    /// The channel, or null for one this node never held; one whose stored
    /// record could not be read is `RECORD_UNREADABLE`.
    #[wasm_bindgen(js_name = getChannel, unchecked_return_type = "Channel | null")]
    pub async fn get_channel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] channel_id: JsValue,
    ) -> Result<JsValue, JsValue> {
        let id = channel_id_param(&channel_id)?;
        let view = self.handle.channel(id).await.map_err(js_error)?;
        Ok(view.map_or(JsValue::NULL, |view| to_js(&Channel::from(&view))))
    }

    #[wasm_bindgen(js_name = listChannels, unchecked_return_type = "Channel[]")]
    pub async fn list_channels(&self) -> Result<JsValue, JsValue> {
        let views = self.handle.channels().await.map_err(js_error)?;
        Ok(to_js(&views.iter().map(Channel::from).collect::<Vec<_>>()))
    }

    /// Fiber's `shutdown_channel`: closes a funded channel. Cooperatively by
    /// default (resolves once our `Shutdown` is stored and sent; we pay the
    /// fee); with `force: true`, unilaterally (resolves once our commitment
    /// is stored as broadcast; our share is claimed after the delay).
    #[wasm_bindgen(js_name = shutdownChannel)]
    pub async fn shutdown_channel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ShutdownChannelParams")] params: JsValue,
    ) -> Result<(), JsValue> {
        let params = from_js(params, "params")
            .and_then(|v| parse_shutdown_params(&v))
            .map_err(js_error)?;
        self.published_code.placed().await;
        let result = if params.force {
            self.handle.force_close_channel(params.channel_id).await
        } else {
            self.handle
                .shutdown_channel(params.channel_id, params.close_script, params.fee_rate)
                .await
        };
        result.map_err(js_error)
    }

    /// `shutdownChannel({ channel_id, force: true })`, by name.
    #[wasm_bindgen(js_name = forceCloseChannel)]
    pub async fn force_close_channel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] channel_id: JsValue,
    ) -> Result<(), JsValue> {
        let id = channel_id_param(&channel_id)?;
        self.published_code.placed().await;
        self.handle.force_close_channel(id).await.map_err(js_error)
    }

    /// Every channel's record, for the wallet to keep where a cleared or
    /// evicted site storage cannot take it (see docs/api.md, "Backup").
    #[wasm_bindgen(js_name = exportBackup, unchecked_return_type = "Backup")]
    pub async fn export_backup(&self) -> Result<JsValue, JsValue> {
        let records = self.handle.backup().await.map_err(js_error)?;
        let secret = self.kept_secret.borrow().as_ref().map(NodeSecret::to_bytes);
        let now = js_sys::Date::now() as u64;
        Ok(to_js(&Backup::new(&self.backup_key, secret, now, &records)))
    }

    /// Takes the channels of a backup of this node key that the node does
    /// not hold, each stored before the node acts on it.
    #[wasm_bindgen(js_name = importBackup, unchecked_return_type = "ImportBackupResult")]
    pub async fn import_backup(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Backup")] backup: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ImportBackupOptions")] options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let options = from_js(options.unwrap_or(JsValue::UNDEFINED), "options")
            .and_then(|value| ImportOptions::parse(&value))
            .map_err(js_error)?;
        let backup = from_js(backup, "backup")
            .and_then(|value| parse_backup(&value, &self.backup_key, options))
            .map_err(js_error)?;
        let outcome = self.handle.import(backup.records).await.map_err(js_error)?;
        // One written over an entry the boot could not read is read now.
        let imported: Vec<String> = outcome.imported.iter().map(ToString::to_string).collect();
        self.unreadable
            .borrow_mut()
            .retain(|record| !imported.contains(&record.channel_id));
        // A key the module made lived in the lost database: it becomes this
        // one's, so the next boots need no nodeSecretKey; never over the
        // key of records already here.
        let node_key_stored = match backup.node_secret {
            Some(secret) if !outcome.other_keys_records => {
                let stored = self.store.put_meta(NODE_SECRET_KEY, &secret.to_bytes()).await.is_ok();
                if stored {
                    // The database keeps it now: the next backup must carry it.
                    *self.kept_secret.borrow_mut() = Some(secret);
                }
                stored
            }
            _ => false,
        };
        Ok(to_js(&ImportBackupResult::new(
            outcome,
            backup.unreadable,
            node_key_stored,
        )))
    }

    /// Gives up on a channel whose funding signatures have not been released.
    #[wasm_bindgen(js_name = abandonChannel)]
    pub async fn abandon_channel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] channel_id: JsValue,
    ) -> Result<(), JsValue> {
        let id = channel_id_param(&channel_id)?;
        self.handle.abandon_channel(id).await.map_err(js_error)
    }

    /// The way out of a flow that can no longer be abandoned (the
    /// counterparty keeps its signatures back, or the funding tx never
    /// confirms while its inputs stay live): a tx spending the user's inputs
    /// of the funding tx back to the wallet, for the wallet to sign. It
    /// changes nothing until `submitSignedCancelTx`.
    #[wasm_bindgen(js_name = cancelFundingTx, unchecked_return_type = "CancelFundingTxResult")]
    pub async fn cancel_funding_tx(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CancelFundingTxParams")] params: JsValue,
    ) -> Result<JsValue, JsValue> {
        let (channel_id, fee_rate) = from_js(params, "params")
            .and_then(|v| parse_cancel_params(&v))
            .map_err(js_error)?;
        let unsigned = self
            .handle
            .cancel_funding_tx(channel_id, fee_rate)
            .await
            .map_err(js_error)?;
        Ok(to_js(&cancel_tx_built(&channel_id, &unsigned)))
    }

    /// The wallet's signed cancel tx: checked (the user's inputs only,
    /// nothing paid but a bounded fee) and sent. The flow ends as aborted
    /// once it is buried under `fundingConfirmations` blocks.
    #[wasm_bindgen(js_name = submitSignedCancelTx, unchecked_return_type = "SubmitSignedCancelTxResult")]
    pub async fn submit_signed_cancel_tx(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SubmitSignedCancelTxParams")] params: JsValue,
    ) -> Result<JsValue, JsValue> {
        let (channel_id, tx) = from_js(params, "params")
            .and_then(|v| parse_submit_cancel_params(&v))
            .map_err(js_error)?;
        let hash = self
            .handle
            .submit_signed_cancel_tx(channel_id, tx)
            .await
            .map_err(js_error)?;
        Ok(to_js(&cancel_tx_sent(&channel_id, &hash)))
    }

    /// Calls `callback(event)` on every transition and connection change. The
    /// first listener also receives what happened since `open` (restored
    /// states, the connection).
    /// Returns a function that unsubscribes (calling it again does nothing).
    #[wasm_bindgen(js_name = onEvent, unchecked_return_type = "() => void")]
    pub fn on_event(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: FundingEvent) => void")] callback: JsValue,
    ) -> Result<JsValue, JsValue> {
        // Not a function: refused before it takes the first listener's backlog.
        let callback: js_sys::Function = callback
            .dyn_into()
            .map_err(|_| js_error(ApiError::invalid("callback", "expected a function")))?;
        let backlog = self.listeners.borrow_mut().subscribe(callback.clone());
        // Events from before the first subscription (the restore, the
        // connection) are not lost: the first listener gets them now.
        for event in backlog {
            let _ = callback.call1(&JsValue::NULL, &event);
        }
        let listeners = Rc::downgrade(&self.listeners);
        let unsubscribe = Closure::<dyn FnMut()>::new(move || {
            if let Some(listeners) = listeners.upgrade() {
                listeners.borrow_mut().callbacks.retain(|f| f != &callback);
            }
        });
        Ok(unsubscribe.into_js_value())
    }

    /// Stops the node, closes the database and releases it to other tabs.
    pub async fn close(&self) -> Result<(), JsValue> {
        self.requests.close();
        self.stop_chain_lookups();
        let lock = self.lock.borrow_mut().take();
        let result = shut_down(self.handle.clone(), self.store.clone(), self.broadcast.clone(), lock).await;
        match result {
            Ok(()) => Ok(()),
            Err(DriverError::NodeClosed(_)) => Ok(()),
            Err(error) => Err(js_error(error)),
        }
    }

    /// Follows, read-only, the node another tab owns on `dbName`: calls
    /// `callback(event)` for each of its events. Returns a function that stops.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn follow(
        #[wasm_bindgen(js_name = dbName)] db_name: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "(event: FundingEvent) => void")] callback: js_sys::Function,
    ) -> Result<JsValue, JsValue> {
        let name = format!(
            "fiber-funding:{}",
            db_name.unwrap_or_else(|| DEFAULT_DB_NAME.to_owned())
        );
        let broadcast = TabBroadcast::new(&name)
            .map_err(|e| js_error(ApiError::new(ErrorCode::StorageUnavailable, e.to_string())))?;
        broadcast.subscribe(move |json| {
            if let Ok(value) = js_sys::JSON::parse(&json) {
                let _ = callback.call1(&JsValue::NULL, &value);
            }
        });
        Ok(Closure::once_into_js(move || broadcast.close()))
    }

    /// `submitSignedFundingTx` from a tab that follows: hands `params` to
    /// the tab that owns `dbName` (the one a JoyID redirect's return found
    /// holding the database), which runs the same submit, and resolves
    /// with its outcome or throws its error. `NO_OWNER_TAB` when no owner
    /// answers within `timeoutMs` (default 5,000; at most 60,000).
    #[wasm_bindgen(js_name = submitToOwner, unchecked_return_type = "SubmitSignedFundingTxResult")]
    pub async fn submit_to_owner(
        #[wasm_bindgen(js_name = dbName)] db_name: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "SubmitSignedFundingTxParams")] params: JsValue,
        #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<u32>,
    ) -> Result<JsValue, JsValue> {
        let db_name = db_name.unwrap_or_else(|| DEFAULT_DB_NAME.to_owned());
        forward::forward(&db_name, params, timeout_ms.unwrap_or(forward::DEFAULT_TIMEOUT_MS))
            .await
            .map_err(js_error)
    }
}

/// `submitSignedFundingTx`, for this tab's page or one that follows it.
pub(crate) async fn submit_signed(handle: &DriverHandle, params: JsValue) -> Result<JsValue, ApiError> {
    let (channel_id, tx) = parse_submit_params(&from_js(params, "params")?)?;
    let outcome = handle.submit_signed_funding_tx(channel_id, tx).await?;
    Ok(to_js(&submitted(&channel_id, &outcome)))
}

impl FundingNode {
    /// Ends what the node still asks its CKB node apart from the driver:
    /// a lookup left running after close kept calling it.
    fn stop_chain_lookups(&self) {
        self.published_code.stop();
        if let Some(check) = &self.chain_check {
            check.abort();
        }
    }

    /// Opens with other adapters than the WebSocket and `fetch` ones — a Rust
    /// host tunnelling the peer connection its own way, or the in-page test
    /// harness. `options` are the same as [`FundingNode::open`]'s.
    pub async fn open_with(options: JsValue, adapters: Adapters) -> Result<FundingNode, ApiError> {
        let options = NodeOptions::from_json(&from_js(options, "options")?)?;
        Self::open_on(options, adapters).await
    }

    async fn open_on(options: NodeOptions, adapters: Adapters) -> Result<FundingNode, ApiError> {
        let db_name = options.db_name.clone().unwrap_or_else(|| DEFAULT_DB_NAME.to_owned());
        let lock = TabLock::acquire(&format!("fiber-funding:{db_name}"), options.wait_for_lock)
            .await
            .map_err(|error| match error {
                TabLockError::HeldElsewhere => ApiError::new(
                    ErrorCode::OpenInAnotherTab,
                    format!(
                    "the database {db_name:?} is open in another tab; close it there or open with waitForLock: true"
                ),
                ),
                other => ApiError::new(ErrorCode::StorageUnavailable, other.to_string()),
            })?;
        let store = Rc::new(IdbStore::open(&db_name).await?);
        let secret = node_secret(&store, options.node_secret.clone()).await?;
        // A given chainHash is trusted as the wallet's network (boot needs no
        // RPC round trip); otherwise the one this database learned from the
        // CKB node at its first boot, checked against the node once open.
        let (chain_hash, check_after) = match options.chain_hash {
            Some(given) => (given, None),
            None => match learned_chain_hash(&store).await {
                Some(learned) => (learned, Some(adapters.genesis_hash)),
                None => {
                    let served = adapters.genesis_hash.await?;
                    // Only a cache: a boot that cannot keep it asks the node again.
                    let _ = store.put_meta(CHAIN_HASH_KEY, &served.0).await;
                    (served, None)
                }
            },
        };
        let (funding_lock, commitment_lock) = contracts_for_chain(
            &chain_hash,
            options.funding_lock.clone(),
            options.commitment_lock.clone(),
        )?;
        let config = NodeConfig {
            node_secret: secret.clone(),
            chain_hash,
            funding_lock: funding_lock.clone(),
            commitment_lock: commitment_lock.clone(),
            external_funding_timeout_ms: options
                .external_funding_timeout_ms
                .unwrap_or(DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS),
            funding_confirmations: options.funding_confirmations.unwrap_or(DEFAULT_FUNDING_CONFIRMATIONS),
            settle_confirmations: options.settle_confirmations.unwrap_or(DEFAULT_SETTLE_CONFIRMATIONS),
            acceptor: None,
        };
        let settings = DriverSettings {
            poll_interval_ms: options
                .poll_interval_ms
                .unwrap_or(DriverSettings::default().poll_interval_ms),
            ..DriverSettings::default()
        };
        let broadcast = Rc::new(
            TabBroadcast::new(&format!("fiber-funding:{db_name}"))
                .map_err(|e| ApiError::new(ErrorCode::StorageUnavailable, e.to_string()))?,
        );
        let requests = Rc::new(
            TabBroadcast::new(&forward::channel_name(&db_name))
                .map_err(|e| ApiError::new(ErrorCode::StorageUnavailable, e.to_string()))?,
        );
        let listeners = Rc::new(RefCell::new(Listeners::default()));
        let unreadable = Rc::new(RefCell::new(Vec::new()));
        let (sender, receiver) = inbox();
        let link = (adapters.link)(sender.clone(), secret.clone(), options.peer_pubkey);
        // On testnet and mainnet, where Fiber's code cells are now: looked up
        // once the flows are restored, and awaited by what needs them.
        let published_code = PublishedCodeLookup::new(
            adapters.chain.clone(),
            chain_hash,
            funding_lock,
            commitment_lock,
            sender.clone(),
        );
        let parts = DriverParts {
            config,
            entropy: Box::new(BrowserEntropy),
            store: store.clone(),
            link,
            chain: adapters.chain,
            platform: Rc::new(BrowserPlatform),
            settings,
            on_event: Box::new(event_sink(listeners.clone(), broadcast.clone(), unreadable.clone())),
        };
        let (handle, at_boot) = start(parts, sender, receiver).await?;
        published_code.start();
        let chain_check = check_after.map(|genesis_hash| {
            let mut tell = event_sink(listeners.clone(), broadcast.clone(), unreadable.clone());
            let (check, stop) = futures::future::abortable(async move {
                // A node that does not answer is reported by the polls.
                if let Ok(served) = genesis_hash.await {
                    if let Some(error) = another_chain(served, chain_hash) {
                        web_sys::console::warn_1(&error.to_string().into());
                        tell(DriverEvent::ChainError(error));
                    }
                }
            });
            wasm_bindgen_futures::spawn_local(check.map(|_| ()));
            stop
        });
        forward::serve(&requests, handle.clone());
        // Those found at boot first, whenever the later ones come.
        unreadable
            .borrow_mut()
            .splice(0..0, at_boot.iter().map(UnreadableRecord::from));
        Ok(FundingNode {
            handle,
            persistence_granted: store.persistence_granted(),
            store,
            lock: RefCell::new(Some(lock)),
            broadcast,
            requests,
            listeners,
            node_id: secret.node_id(),
            unreadable,
            published_code,
            chain_check,
            backup_key: secret.backup_key(),
            kept_secret: RefCell::new(options.node_secret.is_none().then_some(secret)),
        })
    }
}

/// A node dropped without `close()` (`free()`, `using`, the garbage
/// collector) still stops its driver before it lets go of the database: a
/// driver left running would write beside the next open's, over its records.
impl Drop for FundingNode {
    fn drop(&mut self) {
        self.requests.close();
        self.stop_chain_lookups();
        if let Some(lock) = self.lock.get_mut().take() {
            let closing = shut_down(
                self.handle.clone(),
                self.store.clone(),
                self.broadcast.clone(),
                Some(lock),
            );
            wasm_bindgen_futures::spawn_local(async move {
                let _ = closing.await;
            });
        }
    }
}

/// Ends the driver, then closes the database and releases it to other tabs
/// (`lock`, `None` once released): what the last round wrote has landed
/// before another open can read it.
async fn shut_down(
    handle: DriverHandle,
    store: Rc<IdbStore>,
    broadcast: Rc<TabBroadcast>,
    lock: Option<TabLock>,
) -> Result<(), DriverError> {
    let result = handle.close().await;
    store.close();
    broadcast.close();
    if let Some(lock) = lock {
        lock.release().await;
    }
    result
}

/// The chain hash the first boot without `chainHash` learned from the CKB
/// node (`None` when there is none, or it is damaged: the node is asked then).
async fn learned_chain_hash(store: &IdbStore) -> Option<Hash256> {
    let bytes = store.get_meta(CHAIN_HASH_KEY).await.ok()??;
    Some(Hash256(bytes.try_into().ok()?))
}

/// The CKB node serves another chain than the one the database's channels
/// are on: every answer it gives is about other cells and txs.
fn another_chain(served: Hash256, ours: Hash256) -> Option<ChainError> {
    (served != ours).then(|| {
        ChainError::new(
            "get_block_hash",
            ChainErrorKind::BadResponse,
            format!(
                "the CKB node serves the chain with genesis {served}, but this wallet's database is on \
                 {ours} (learned from the CKB node at an earlier boot): point ckbRpcUrl at a node of that \
                 chain, or give this chain its own dbName"
            ),
        )
    })
}

/// Reads the node key: given, stored, or generated and stored (never logged).
async fn node_secret(store: &IdbStore, given: Option<NodeSecret>) -> Result<NodeSecret, ApiError> {
    if let Some(secret) = given {
        return Ok(secret);
    }
    if let Some(bytes) = store.get_meta(NODE_SECRET_KEY).await? {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ApiError::new(ErrorCode::RecordUnreadable, "the stored node key is damaged"))?;
        return NodeSecret::from_bytes(bytes)
            .ok_or_else(|| ApiError::new(ErrorCode::RecordUnreadable, "the stored node key is damaged"));
    }
    let secret = loop {
        if let Some(secret) = NodeSecret::from_bytes(random_32()) {
            break secret;
        }
    };
    store.put_meta(NODE_SECRET_KEY, &secret.to_bytes()).await?;
    Ok(secret)
}

/// Events before the first `onEvent` listener are kept (up to a bound) for it.
const MAX_BACKLOG: usize = 1_000;

#[derive(Default)]
struct Listeners {
    callbacks: Vec<js_sys::Function>,
    backlog: Option<Vec<JsValue>>,
    subscribed_once: bool,
}

impl Listeners {
    /// Adds a listener; returns what happened before anyone listened.
    fn subscribe(&mut self, callback: js_sys::Function) -> Vec<JsValue> {
        self.callbacks.push(callback);
        self.subscribed_once = true;
        self.backlog.take().unwrap_or_default()
    }

    fn deliver(&mut self, event: JsValue) -> Vec<js_sys::Function> {
        if !self.subscribed_once {
            let backlog = self.backlog.get_or_insert_with(Vec::new);
            if backlog.len() < MAX_BACKLOG {
                backlog.push(event);
            }
            return Vec::new();
        }
        self.callbacks.clone()
    }
}

/// Every driver event goes to the page's listeners and to other tabs.
fn event_sink(
    listeners: Rc<RefCell<Listeners>>,
    broadcast: Rc<TabBroadcast>,
    unreadable: Rc<RefCell<Vec<UnreadableRecord>>>,
) -> impl FnMut(DriverEvent) {
    move |event| {
        if let DriverEvent::UnreadableRecords(records) = &event {
            unreadable
                .borrow_mut()
                .extend(records.iter().map(UnreadableRecord::from));
        }
        let value = to_js(&driver_event(&event));
        // A tab that can no longer post still tells its own listeners.
        if let Some(text) = js_sys::JSON::stringify(&value).ok().and_then(|text| text.as_string()) {
            let _ = broadcast.post(&text);
        }
        // Copied out first: a listener may unsubscribe while being called.
        let callbacks = listeners.borrow_mut().deliver(value.clone());
        for callback in callbacks {
            let _ = callback.call1(&JsValue::NULL, &value);
        }
    }
}
