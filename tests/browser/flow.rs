//! The whole flow inside one page: the browser node on real IndexedDB, the
//! acceptor core running in-page behind a loopback link, over a simulated
//! chain. The initiator is dropped entirely between open and submit, as a
//! JoyID redirect does, and a new `FundingNode` on the same database resumes.

use std::cell::RefCell;
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::primitives::{encode_hex, Hash256, NodeId};
use fiber_funding::runtime::driver::DriverParts;
use fiber_funding::runtime::loopback::LoopbackLink;
use fiber_funding::runtime::{inbox, start, DriverHandle, DriverSettings, PeerLink};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::json::{parse_transaction, script_to_json, transaction_to_json};
use fiber_funding::wasm::node::{Adapters, FundingNode};
use fiber_funding::wasm::platform::{timeout, BrowserEntropy, BrowserPlatform};
use k256::ecdsa::SigningKey;
use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

/// The module's JSON values (what its readers take and writers give) and
/// serde_json's (what these tests build), as each other.
fn ours(value: &Value) -> fiber_funding::json::Value {
    fiber_funding::json::parse(&value.to_string()).unwrap()
}

fn theirs(value: &fiber_funding::json::Value) -> Value {
    serde_json::to_value(value).unwrap()
}
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

#[path = "../common/chain_double.rs"]
mod chain_double;
#[path = "../common/two_nodes.rs"]
mod two_nodes;
use two_nodes::{fund_wallets, node_config, CHAIN_HASH, CKB, COMMITMENT_LOCK_CODE_HASH, FUNDING_LOCK_CODE_HASH};

const INITIATOR_SECRET: [u8; 32] = [0x11; 32];

fn to_js(value: &Value) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap()
}

/// A thrown `FundingError`'s `code` and `message`.
fn code_and_message(error: &JsValue) -> (Option<String>, String) {
    let field = |name: &str| js_sys::Reflect::get(error, &name.into()).unwrap().as_string();
    (field("code"), field("message").unwrap())
}

fn from_js(value: JsValue) -> Value {
    serde_wasm_bindgen::from_value(value).unwrap()
}

async fn sleep(ms: u64) {
    let _ = JsFuture::from(timeout(ms)).await;
}

fn db_name(test: &str) -> String {
    format!("fiber-funding-test-{test}-{}", js_sys::Date::now())
}

/// A chain, a user wallet, and an acceptor running in the page.
struct Page {
    chain: Rc<RefCell<SimulatedChain>>,
    user_key: SigningKey,
    user_lock: packed::Script,
    acceptor_id: NodeId,
    /// The acceptor's end of the link; each new initiator is wired to it.
    acceptor_link: Rc<LoopbackLink>,
    acceptor: DriverHandle,
}

impl Page {
    async fn new() -> Page {
        let chain = Rc::new(RefCell::new(SimulatedChain::new()));
        let wallets = fund_wallets(&mut chain.borrow_mut(), 1_500);
        let config = node_config(0x22, Some(wallets.acceptor));
        let acceptor_id = config.node_secret.node_id();
        let initiator_id = NodeSecret::from_bytes(INITIATOR_SECRET).unwrap().node_id();
        let (sender, receiver) = inbox();
        let (acceptor_link, _) = LoopbackLink::pair((acceptor_id, sender.clone()), (initiator_id, inbox().0));
        let parts = DriverParts {
            config,
            entropy: Box::new(BrowserEntropy),
            store: MemoryStore::new(),
            link: acceptor_link.clone(),
            chain: Rc::new(SimulatedChainClient::new(chain.clone())),
            platform: Rc::new(BrowserPlatform),
            settings: DriverSettings {
                poll_interval_ms: 50,
                ..DriverSettings::default()
            },
            on_event: Box::new(|_| {}),
        };
        let (acceptor, _) = start(parts, sender, receiver).await.unwrap();
        // Blocks keep coming while the page lives.
        let miner = chain.clone();
        wasm_bindgen_futures::spawn_local(async move {
            for _ in 0..600 {
                sleep(100).await;
                miner.borrow_mut().mine_block();
            }
        });
        Page {
            chain,
            user_key: wallets.user_key,
            user_lock: wallets.user_lock,
            acceptor_id,
            acceptor_link,
            acceptor,
        }
    }

    fn options(&self, db: &str) -> JsValue {
        to_js(&json!({
            "ckbRpcUrl": "simulated:",
            "peerUrl": "loopback:",
            "dbName": db,
            "nodeSecretKey": encode_hex(&INITIATOR_SECRET),
            "peerPubkey": self.acceptor_id.to_string(),
            "chainHash": encode_hex(&CHAIN_HASH),
            "fundingLock": { "code_hash": encode_hex(&FUNDING_LOCK_CODE_HASH), "hash_type": "type" },
            "commitmentLock": { "code_hash": encode_hex(&COMMITMENT_LOCK_CODE_HASH), "hash_type": "type" },
            "fundingConfirmations": 1,
            "pollIntervalMs": 50,
        }))
    }

    /// A browser node wired to the in-page acceptor.
    fn adapters(&self) -> Adapters {
        let acceptor_link = self.acceptor_link.clone();
        Adapters {
            link: Box::new(move |sender, _secret, _expected| {
                let link = LoopbackLink::replace_peer(&acceptor_link, sender);
                link.connect();
                link as Rc<dyn PeerLink>
            }),
            chain: Rc::new(SimulatedChainClient::new(self.chain.clone())),
            genesis_hash: Box::pin(async { Ok(Hash256(CHAIN_HASH)) }),
        }
    }

    async fn open_node(&self, db: &str) -> FundingNode {
        FundingNode::open_with(self.options(db), self.adapters()).await.unwrap()
    }

    fn open_params(&self) -> Value {
        json!({
            "pubkey": self.acceptor_id.to_string(),
            "funding_amount": format!("{:#x}", 1_000 * CKB),
            "shutdown_script": script_to_json(&self.user_lock),
            "funding_lock_script": script_to_json(&self.user_lock),
            "funding_lock_script_cell_deps": [{
                "out_point": {
                    "tx_hash": fiber_funding::primitives::encode_hex(
                        self.chain.borrow().default_lock_cell_dep().out_point().tx_hash().as_slice()
                    ),
                    "index": "0x0",
                },
                "dep_type": "dep_group",
            }],
        })
    }
}

/// camelCase keys, as JoyID hands a signed tx back.
fn joyid_shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let camel: String = key
                        .split('_')
                        .enumerate()
                        .map(|(i, part)| {
                            if i == 0 {
                                part.to_owned()
                            } else {
                                part[..1].to_uppercase() + &part[1..]
                            }
                        })
                        .collect();
                    let value = if value == "dep_group" {
                        Value::from("depGroup")
                    } else {
                        joyid_shape(value)
                    };
                    (camel, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(joyid_shape).collect()),
        other => other.clone(),
    }
}

#[wasm_bindgen_test]
async fn open_drop_every_rust_object_reopen_and_submit_ends_in_channel_ready() {
    let page = Page::new().await;
    let db = db_name("flow");
    let node = page.open_node(&db).await;
    let opened = from_js(
        node.open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let unsigned = parse_transaction(&ours(&opened["unsigned_funding_tx"])).unwrap();

    // The redirect: the node and everything it owns are gone.
    node.close().await.unwrap();
    drop(node);

    let node = page.open_node(&db).await;
    sleep(50).await;
    // Subscribing after open still hears about the connection made during it.
    let seen = events_of(&node);
    assert!(
        seen.borrow().iter().any(|e| e["type"] == "peer_connected"),
        "{:?}",
        seen.borrow()
    );
    let pending = from_js(node.pending_fundings().await.unwrap());
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["channel_id"], channel_id.as_str());
    assert_eq!(pending[0]["signed_submitted"], false);
    assert_eq!(
        pending[0]["unsigned_funding_tx"],
        theirs(&transaction_to_json(&unsigned))
    );
    assert!(pending[0]["deadline_ms"].as_f64().unwrap() > js_sys::Date::now());

    // Nothing signed has left: abandoning is the way out, not a cancel tx.
    let refused = node
        .cancel_funding_tx(to_js(&json!({ "channel_id": channel_id })))
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&refused).0.as_deref(), Some("NOT_CANCELLABLE"));

    let signed = default_lock::sign_group(&unsigned, &[0], &page.user_key).unwrap();
    let submit =
        json!({ "channel_id": channel_id, "signed_funding_tx": joyid_shape(&theirs(&transaction_to_json(&signed))) });
    let submitted = from_js(node.submit_signed_funding_tx(to_js(&submit)).await.unwrap());
    let funding_tx_hash = submitted["funding_tx_hash"].as_str().unwrap().to_owned();

    let mut state = String::new();
    for _ in 0..200 {
        let channel = from_js(node.get_channel(channel_id.clone().into()).await.unwrap());
        state = channel["state"].as_str().unwrap().to_owned();
        if state == "ChannelReady" {
            assert_eq!(channel["funding_tx_hash"], funding_tx_hash.as_str());
            break;
        }
        sleep(50).await;
    }
    assert_eq!(state, "ChannelReady");
    assert!(seen
        .borrow()
        .iter()
        .any(|e| e["type"] == "state_changed" && e["state"] == "ChannelReady"));
    assert_eq!(from_js(node.pending_fundings().await.unwrap()), json!([]));
    let hash = Hash256::from_hex(&funding_tx_hash).unwrap();
    assert_eq!(page.chain.borrow().submissions(&hash.0), 1);
    node.close().await.unwrap();

    // The recovery state is gone from IndexedDB itself.
    let store = fiber_funding::wasm::idb_store::IdbStore::open(&db).await.unwrap();
    let id = Hash256::from_hex(&channel_id).unwrap();
    let record = fiber_funding::store::Store::get(&store, &id).await.unwrap().unwrap();
    assert!(record.external_funding.is_none());
    store.close();
}

/// Every event `node` gives its listeners from now on (the backlog first).
fn events_of(node: &FundingNode) -> Rc<RefCell<Vec<Value>>> {
    let seen = Rc::new(RefCell::new(Vec::<Value>::new()));
    let sink = seen.clone();
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        sink.borrow_mut().push(from_js(event));
    });
    let _unsubscribe = node.on_event(listener.as_ref().clone()).unwrap();
    listener.forget();
    seen
}

/// Sets its flag when dropped: a future holding it was dropped (for a
/// chain call, its fetch aborted).
struct SetOnDrop(Rc<std::cell::Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Whether `future` ends within `ms`, and its output if it does.
async fn within<T>(ms: u64, future: impl std::future::Future<Output = T>) -> Option<T> {
    use futures::future::{select, Either};
    match select(Box::pin(future), Box::pin(sleep(ms))).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// On testnet the node looks up where Fiber's code cells are. The boot
/// waited for that lookup, so a CKB node slow to answer kept a page back
/// from the signer from listing its flows and submitting the signed tx,
/// for every RPC timeout of the lookup, or for good. Now the node opens at
/// once; an open waits for the lookup, and one after a lookup that found
/// nothing looks again.
#[wasm_bindgen_test]
async fn a_boot_on_testnet_does_not_wait_for_the_lookup_of_fibers_code() {
    use fiber_funding::api::deployment::known_deployments;
    use futures::FutureExt;
    let page = Page::new().await;
    let db = db_name("published-code");
    let mut options = from_js(page.options(&db));
    let options_map = options.as_object_mut().unwrap();
    options_map.insert("chainHash".into(), json!(known_deployments()[0].chain_hash.to_string()));
    // Fiber's testnet locks by default, whose deps the node looks up.
    options_map.remove("fundingLock");
    options_map.remove("commitmentLock");
    // The code cell lookup hangs until the test lets it answer (no cells).
    let (answer, answered) = futures::channel::oneshot::channel::<()>();
    let answered = answered.shared();
    let lookups = Rc::new(std::cell::Cell::new(0));
    let mut chain = chain_double::ChainWith::new(SimulatedChainClient::new(page.chain.clone()));
    chain.cells_with_type = Some({
        let lookups = lookups.clone();
        Box::new(move |_, _| {
            lookups.set(lookups.get() + 1);
            let answered = answered.clone();
            Box::pin(async move {
                let _ = answered.await;
                Ok(Vec::new())
            })
        })
    });
    let mut adapters = page.adapters();
    adapters.chain = Rc::new(chain);

    let node = within(2_000, FundingNode::open_with(to_js(&options), adapters))
        .await
        .expect("the boot waited for the lookup of Fiber's code")
        .unwrap();
    assert_eq!(from_js(node.pending_fundings().await.unwrap()), json!([]));
    assert_eq!(lookups.get(), 1, "the lookup runs after the boot");

    // An open waits for the lookup under way rather than be refused for the
    // deps it has not found yet.
    let params = to_js(&page.open_params());
    let open = node.open_channel_with_external_funding(params.clone());
    let mut open = Box::pin(open);
    assert!(
        within(300, &mut open).await.is_none(),
        "the open did not wait for the lookup"
    );
    answer.send(()).unwrap();
    let (code, message) = code_and_message(&open.await.unwrap_err());
    assert_eq!(code.as_deref(), Some("INVALID_PARAMS"));
    assert!(
        message.contains("required on testnet") && message.contains("did not find it"),
        "{message}"
    );
    // The lookup found nothing: the next open looks again, both locks.
    let lookups_before = lookups.get();
    let _ = node.open_channel_with_external_funding(params).await.unwrap_err();
    assert_eq!(
        lookups.get(),
        lookups_before + 2,
        "an open after a failed lookup looks again"
    );
    node.close().await.unwrap();
}

/// A node closed while its lookup of Fiber's code waited on the CKB node
/// went on with the lookup: the call under way ran to its timeout and the
/// next ones were made, for a node no one uses any more (a page that
/// closes and reopens its node, with another `ckbRpcUrl` say, kept calling
/// the old one). Closing the node now stops it.
#[wasm_bindgen_test]
async fn closing_the_node_stops_its_lookup_of_fibers_code() {
    use fiber_funding::api::deployment::known_deployments;
    use futures::FutureExt;
    let page = Page::new().await;
    let db = db_name("published-code-close");
    let mut options = from_js(page.options(&db));
    let options_map = options.as_object_mut().unwrap();
    options_map.insert("chainHash".into(), json!(known_deployments()[0].chain_hash.to_string()));
    options_map.remove("fundingLock");
    options_map.remove("commitmentLock");
    let (answer, answered) = futures::channel::oneshot::channel::<()>();
    let answered = answered.shared();
    let lookups = Rc::new(std::cell::Cell::new(0));
    // Set when the call under way is dropped, as a fetch is aborted.
    let dropped = Rc::new(std::cell::Cell::new(false));
    let mut chain = chain_double::ChainWith::new(SimulatedChainClient::new(page.chain.clone()));
    chain.cells_with_type = Some({
        let (lookups, dropped) = (lookups.clone(), dropped.clone());
        Box::new(move |_, _| {
            lookups.set(lookups.get() + 1);
            let (answered, on_drop) = (answered.clone(), SetOnDrop(dropped.clone()));
            Box::pin(async move {
                let _on_drop = on_drop;
                let _ = answered.await;
                Ok(Vec::new())
            })
        })
    });
    let mut adapters = page.adapters();
    adapters.chain = Rc::new(chain);
    let node = FundingNode::open_with(to_js(&options), adapters).await.unwrap();
    sleep(50).await;
    assert_eq!(lookups.get(), 1, "the lookup runs after the boot");

    node.close().await.unwrap();
    sleep(50).await;
    assert!(dropped.get(), "the call under way still runs after close");
    answer.send(()).unwrap();
    sleep(200).await;
    assert_eq!(lookups.get(), 1, "the lookup went on after close");
}

/// Without `chainHash`, every boot asked the CKB node for its genesis hash
/// and failed with `CHAIN_UNREACHABLE` while it did not answer: a page back
/// from the signer then could neither list its flows nor submit the signed
/// tx until the node came back, maybe past the deadline. Now the hash the
/// first boot learned is kept with the database; a later boot uses it at
/// once and checks it against the node afterwards, saying so when the node
/// serves another chain.
#[wasm_bindgen_test]
async fn a_boot_without_chain_hash_uses_the_one_its_database_learned_and_checks_it_after() {
    let page = Page::new().await;
    let db = db_name("learned-chain");
    let mut options = from_js(page.options(&db));
    options.as_object_mut().unwrap().remove("chainHash");
    let options = to_js(&options);

    let node = FundingNode::open_with(options.clone(), page.adapters()).await.unwrap();
    let opened = from_js(
        node.open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    node.close().await.unwrap();
    drop(node);

    // The CKB node does not answer at all.
    let mut adapters = page.adapters();
    let check_dropped = Rc::new(std::cell::Cell::new(false));
    adapters.genesis_hash = Box::pin({
        let on_drop = SetOnDrop(check_dropped.clone());
        async move {
            let _on_drop = on_drop;
            futures::future::pending().await
        }
    });
    let node = within(2_000, FundingNode::open_with(options.clone(), adapters))
        .await
        .expect("the boot waited for the CKB node's genesis hash")
        .unwrap();
    let pending = from_js(node.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["channel_id"], opened["channel_id"], "{pending}");
    node.close().await.unwrap();
    sleep(50).await;
    // It outlived the node before: a call that ran to its timeout.
    assert!(check_dropped.get(), "the chain hash check still runs after close");
    drop(node);

    // The CKB node serves another chain: the page hears it.
    let other = Hash256([0x99; 32]);
    let mut adapters = page.adapters();
    adapters.genesis_hash = Box::pin(async move { Ok(other) });
    let node = FundingNode::open_with(options, adapters).await.unwrap();
    let seen = events_of(&node);
    sleep(100).await;
    let wrong_chain = seen
        .borrow()
        .iter()
        .find(|e| e["type"] == "chain_error")
        .map(|e| e["reason"].as_str().unwrap().to_owned());
    let reason = wrong_chain.unwrap_or_else(|| panic!("no chain_error: {:?}", seen.borrow()));
    assert!(
        reason.contains(&other.to_string()) && reason.contains(&Hash256(CHAIN_HASH).to_string()),
        "{reason}"
    );
    node.close().await.unwrap();
}

/// Site data cleared (or the storage evicted) takes a funded channel's
/// keys with it: they derive from the node key and the channel's seed,
/// which only the database holds. `exportBackup` gives the wallet every
/// record and, when the module made the node key, that key too;
/// `importBackup` on a node opened with that key brings the channels back
/// into empty storage, stored, and refuses a backup of another node key,
/// changing nothing.
#[wasm_bindgen_test]
async fn a_backup_brings_the_channels_back_after_the_storage_was_lost() {
    let page = Page::new().await;
    let options = |db: &str, key: Option<&str>| {
        let mut options = from_js(page.options(db));
        let map = options.as_object_mut().unwrap();
        match key {
            Some(key) => map.insert("nodeSecretKey".into(), json!(key)),
            None => map.remove("nodeSecretKey"),
        };
        to_js(&options)
    };
    let first = db_name("backup-first");
    let node = FundingNode::open_with(options(&first, None), page.adapters())
        .await
        .unwrap();
    let opened = from_js(
        node.open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let channel = from_js(node.get_channel(channel_id.clone().into()).await.unwrap());
    assert_eq!(channel["restored_from_backup"], false);
    let backup = from_js(node.export_backup().await.unwrap());
    assert_eq!(backup["format"], "fiber-funding-backup");
    assert_eq!(backup["node_id"], node.node_id().as_str());
    assert_eq!(backup["channels"][0]["channel_id"], channel_id.as_str());
    let key = backup["node_secret_key"]
        .as_str()
        .expect("the module made the node key: the backup has it")
        .to_owned();
    node.close().await.unwrap();
    drop(node);

    // Storage gone: a new database makes a new node key, whose node refuses
    // it. This one has a flow of its own (the in-page acceptor funds its
    // reserve from a second cell).
    let acceptor_lock = default_lock::lock_script_for_key(SigningKey::from_slice(&[0x52; 32]).unwrap().verifying_key());
    let reserve_cell = packed::CellOutput::new_builder()
        .capacity(2_000 * CKB)
        .lock(acceptor_lock)
        .build();
    page.chain.borrow_mut().genesis_cell(reserve_cell, Vec::new());
    let stranger_db = db_name("backup-stranger");
    let stranger = FundingNode::open_with(options(&stranger_db, None), page.adapters())
        .await
        .unwrap();
    let stranger_id = stranger.node_id();
    stranger
        .open_channel_with_external_funding(to_js(&page.open_params()))
        .await
        .unwrap();
    let own_flows = from_js(stranger.pending_fundings().await.unwrap());
    let (code, message) = code_and_message(&stranger.import_backup(to_js(&backup), None).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("BACKUP_OF_ANOTHER_NODE"), "{message}");
    assert_eq!(from_js(stranger.pending_fundings().await.unwrap()), own_flows);
    let mut bad = backup.clone();
    bad["version"] = json!(3);
    let (code, message) = code_and_message(&stranger.import_backup(to_js(&bad), None).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("INVALID_PARAMS"));
    assert!(message.contains("backup.version"), "{message}");
    stranger.close().await.unwrap();
    drop(stranger);
    // Opened there with the backup's key, the import takes the channel but
    // keeps the database's own key, whose flow is still there.
    let node = FundingNode::open_with(options(&stranger_db, Some(&key)), page.adapters())
        .await
        .unwrap();
    let result = from_js(node.import_backup(to_js(&backup), None).await.unwrap());
    assert_eq!(result["imported"], json!([channel_id]));
    assert_eq!(result["node_key_stored"], false);
    // The page gives this node's key and keeps it: a backup leaves it out.
    assert_eq!(
        from_js(node.export_backup().await.unwrap())["node_secret_key"],
        Value::Null
    );
    node.close().await.unwrap();
    drop(node);
    let node = FundingNode::open_with(options(&stranger_db, None), page.adapters())
        .await
        .unwrap();
    assert_eq!(node.node_id(), stranger_id, "the database's own key was replaced");
    node.close().await.unwrap();
    drop(node);

    // Opened with the backup's key, the node takes the channel back, and
    // the key with it.
    let restored_db = db_name("backup-restored");
    let node = FundingNode::open_with(options(&restored_db, Some(&key)), page.adapters())
        .await
        .unwrap();
    // A record changed after the backup was made (one hex digit of its
    // bytes) no longer matches its code: left out, nothing stored.
    let mut altered = backup.clone();
    let record = altered["channels"][0]["record"].as_str().unwrap();
    let flipped = if record.ends_with('0') { '1' } else { '0' };
    altered["channels"][0]["record"] = json!(format!("{}{flipped}", &record[..record.len() - 1]));
    let result = from_js(node.import_backup(to_js(&altered), None).await.unwrap());
    assert_eq!(result["imported"], json!([]));
    assert!(
        result["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("authentication code does not match"),
        "{result}"
    );
    // A version 1 backup (no codes) only when the page allows it.
    let mut version_1 = backup.clone();
    version_1["version"] = json!(1);
    let (code, message) = code_and_message(&node.import_backup(to_js(&version_1), None).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("BACKUP_UNAUTHENTICATED"), "{message}");
    let (code, message) = code_and_message(
        &node
            .import_backup(to_js(&backup), Some(to_js(&json!({ "allowUnauthentic": true }))))
            .await
            .unwrap_err(),
    );
    assert_eq!(code.as_deref(), Some("INVALID_PARAMS"), "{message}");
    let result = from_js(node.import_backup(to_js(&backup), None).await.unwrap());
    assert_eq!(
        result,
        json!({ "imported": [channel_id], "skipped": [], "node_key_stored": true })
    );
    let again = from_js(node.import_backup(to_js(&backup), None).await.unwrap());
    assert_eq!(again["imported"], json!([]));
    assert_eq!(again["skipped"][0]["reason"], "this node holds the channel already");
    // Allowed, the version 1 backup is read (its channel is here already).
    let allowed = from_js(
        node.import_backup(to_js(&version_1), Some(to_js(&json!({ "allowUnauthenticated": true }))))
            .await
            .unwrap(),
    );
    assert_eq!(allowed["skipped"][0]["reason"], "this node holds the channel already");
    // The database keeps the key now: a backup taken at once carries it.
    assert_eq!(
        from_js(node.export_backup().await.unwrap())["node_secret_key"],
        key.as_str()
    );
    node.close().await.unwrap();
    drop(node);

    // Stored, with the node key: the next boot, with no nodeSecretKey as
    // before the loss, lists it with the tx to sign.
    let node = FundingNode::open_with(options(&restored_db, None), page.adapters())
        .await
        .unwrap();
    assert_eq!(node.node_id(), backup["node_id"].as_str().unwrap());
    let pending = from_js(node.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["channel_id"], channel_id.as_str(), "{pending}");
    assert_eq!(pending[0]["unsigned_funding_tx"], opened["unsigned_funding_tx"]);
    // Its close was not agreed when the backup was taken: it will close
    // only with force (protocol.md, "The closing nonce").
    let channel = from_js(node.get_channel(channel_id.clone().into()).await.unwrap());
    assert_eq!(channel["restored_from_backup"], true, "{channel}");
    node.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_second_open_on_the_same_database_is_refused_until_the_first_closes() {
    let page = Page::new().await;
    let db = db_name("two-opens");
    let first = page.open_node(&db).await;
    let error = FundingNode::open_with(page.options(&db), page.adapters())
        .await
        .err()
        .expect("refused");
    assert_eq!(error.code.as_str(), "OPEN_IN_ANOTHER_TAB", "{error}");
    first.close().await.unwrap();
    let second = page.open_node(&db).await;

    // With waitForLock, a third open waits for the second to close.
    let mut options = from_js(page.options(&db));
    options["waitForLock"] = Value::from(true);
    let waiting = FundingNode::open_with(to_js(&options), page.adapters());
    let closing = async {
        sleep(200).await;
        second.close().await.unwrap();
    };
    let (third, ()) = futures::join!(waiting, closing);
    third.unwrap().close().await.unwrap();
}

/// Back from the signer, the page found the database taken by another tab
/// (one that waited for it while this one was away) and only follows. The
/// signed tx goes to that tab, which runs the same submit: its checks
/// answer the follower by code, and a good tx is taken at once instead of
/// waiting for the other tab to close, maybe past the deadline.
#[wasm_bindgen_test]
async fn a_follower_back_from_the_signer_hands_the_signed_tx_to_the_owner() {
    let page = Page::new().await;
    let db = db_name("forward");
    let none = FundingNode::submit_to_owner(Some(db.clone()), to_js(&json!({})), Some(50))
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&none).0.as_deref(),
        Some("INVALID_PARAMS"),
        "checked here first"
    );

    let owner = page.open_node(&db).await;
    let opened = from_js(
        owner
            .open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let unsigned = parse_transaction(&ours(&opened["unsigned_funding_tx"])).unwrap();

    // The owner's own checks answer: an unsigned tx is refused by code, and nothing is stored.
    let unsigned_submit =
        json!({ "channel_id": channel_id, "signed_funding_tx": theirs(&transaction_to_json(&unsigned)) });
    let refused = FundingNode::submit_to_owner(Some(db.clone()), to_js(&unsigned_submit), None)
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&refused).0.as_deref(),
        Some("SIGNED_TX_INVALID"),
        "{}",
        code_and_message(&refused).1
    );
    let pending = from_js(owner.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["signed_submitted"], false);

    let signed = default_lock::sign_group(&unsigned, &[0], &page.user_key).unwrap();
    let submit =
        json!({ "channel_id": channel_id, "signed_funding_tx": joyid_shape(&theirs(&transaction_to_json(&signed))) });
    let submitted = from_js(
        FundingNode::submit_to_owner(Some(db.clone()), to_js(&submit), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        submitted["funding_tx_hash"].as_str().unwrap(),
        encode_hex(&signed.calc_tx_hash().raw_data()),
    );
    let pending = from_js(owner.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["signed_submitted"], true, "{pending:?}");

    // No owner any more: a typed error once the wait is over, not a hang.
    owner.close().await.unwrap();
    let gone = FundingNode::submit_to_owner(Some(db.clone()), to_js(&submit), Some(200))
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&gone).0.as_deref(), Some("NO_OWNER_TAB"));
}

/// A page that drops its node without `close()` (`free()`, `using`, or the
/// garbage collector) must not leave the node running behind the next open:
/// two drivers on one database overwrite each other's records, and the old
/// one's deadline aborts a flow the new one finished.
#[wasm_bindgen_test]
async fn a_node_dropped_without_close_stops_before_the_next_open_takes_its_database() {
    let page = Page::new().await;
    let db = db_name("dropped");
    let mut options = from_js(page.options(&db));
    options["externalFundingTimeoutSeconds"] = Value::from(3);
    options["waitForLock"] = Value::from(true);
    let dropped = FundingNode::open_with(to_js(&options), page.adapters()).await.unwrap();
    let opened = from_js(
        dropped
            .open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let unsigned = parse_transaction(&ours(&opened["unsigned_funding_tx"])).unwrap();
    // Started now: the flow's deadline is 3 s from the open.
    let deadline_passed = JsFuture::from(timeout(4_000));
    drop(dropped);

    let node = FundingNode::open_with(to_js(&options), page.adapters()).await.unwrap();
    let signed = default_lock::sign_group(&unsigned, &[0], &page.user_key).unwrap();
    let submit = json!({ "channel_id": channel_id, "signed_funding_tx": theirs(&transaction_to_json(&signed)) });
    node.submit_signed_funding_tx(to_js(&submit)).await.unwrap();
    let state = |channel: JsValue| from_js(channel)["state"].as_str().unwrap().to_owned();
    let id = Hash256::from_hex(&channel_id).unwrap();
    let mut states = (String::new(), "");
    for _ in 0..100 {
        let at_acceptor = page.acceptor.channel(id).await.unwrap().unwrap();
        states = (
            state(node.get_channel(channel_id.clone().into()).await.unwrap()),
            at_acceptor.state.name(),
        );
        if states == ("ChannelReady".into(), "ChannelReady") {
            break;
        }
        sleep(50).await;
    }
    assert_eq!(states, ("ChannelReady".into(), "ChannelReady"));
    node.close().await.unwrap();

    // The first node's deadline passes: nothing of it may act any more, so
    // the funded channel stays ready in storage and at the next boot.
    let _ = deadline_passed.await;
    let store = fiber_funding::wasm::idb_store::IdbStore::open(&db).await.unwrap();
    let record = fiber_funding::store::Store::get(&store, &id).await.unwrap().unwrap();
    store.close();
    assert!(record.closed.is_none(), "{:?}", record.closed);
    let node = FundingNode::open_with(to_js(&options), page.adapters()).await.unwrap();
    assert_eq!(
        state(node.get_channel(channel_id.clone().into()).await.unwrap()),
        "ChannelReady"
    );
    node.close().await.unwrap();
}

/// Options arrive as a JS object: a typo or an out-of-range value must be
/// `INVALID_PARAMS` naming the key, from `FundingNode.open` itself.
#[wasm_bindgen_test]
async fn open_refuses_unknown_and_out_of_range_options_by_name() {
    let cases = [
        ("externalFundingTimeoutSecond", json!(5)),
        ("externalFundingTimeoutSeconds", json!(-5)),
        ("externalFundingTimeoutSeconds", json!(0)),
        ("externalFundingTimeoutSeconds", json!(1e300)),
        ("fundingConfirmations", json!(0)),
        ("pollIntervalMs", json!(1)),
        ("peerPubkey", json!("0x02")),
    ];
    for (key, value) in cases {
        let mut options = json!({
            "ckbRpcUrl": "http://127.0.0.1:9/",
            "peerUrl": "ws://127.0.0.1:9/",
            "peerPubkey": NodeSecret::from_bytes([0x22; 32]).unwrap().node_id().to_string(),
            "dbName": db_name("options"),
            "chainHash": encode_hex(&CHAIN_HASH),
        });
        options[key] = value.clone();
        let error = match FundingNode::open(to_js(&options)).await {
            Ok(_) => panic!("{key} = {value} was taken"),
            Err(error) => error,
        };
        let (code, message) = code_and_message(&error);
        assert_eq!(code.as_deref(), Some("INVALID_PARAMS"), "{key} = {value}: {message}");
        assert!(message.contains(key), "{key} = {value}: {message}");
    }
}

/// Arguments are read as JSON: a value `JSON.stringify` cannot write (here a
/// `BigInt`, which a page may well pass for an amount) is `INVALID_PARAMS`
/// naming the argument, not a panic or a silently dropped field.
#[wasm_bindgen_test]
async fn open_refuses_options_that_are_not_json_data() {
    let options = to_js(&json!({
        "ckbRpcUrl": "http://127.0.0.1:9/",
        "peerUrl": "ws://127.0.0.1:9/",
        "peerPubkey": NodeSecret::from_bytes([0x22; 32]).unwrap().node_id().to_string(),
        "dbName": db_name("options-bigint"),
        "chainHash": encode_hex(&CHAIN_HASH),
    }));
    js_sys::Reflect::set(
        &options,
        &"pollIntervalMs".into(),
        &js_sys::BigInt::from(5000u32).into(),
    )
    .unwrap();
    let error = match FundingNode::open(options).await {
        Ok(_) => panic!("options holding a BigInt were taken"),
        Err(error) => error,
    };
    let (code, message) = code_and_message(&error);
    assert_eq!(code.as_deref(), Some("INVALID_PARAMS"), "{message}");
    assert!(message.contains("options") && message.contains("BigInt"), "{message}");
}

#[wasm_bindgen_test]
fn channel_reserve_is_what_the_open_keeps_on_top_of_the_amount() {
    let lock = default_lock::lock_script_for_key(SigningKey::from_slice(&[0x51; 32]).unwrap().verifying_key());
    let script = to_js(&theirs(&script_to_json(&lock)));
    let reserve = fiber_funding::wasm::channel_reserve(script).unwrap();
    // A default-lock wallet: the 57-byte-args shutdown cell (98 CKB) plus 1 CKB for the fee.
    assert_eq!(reserve, format!("{:#x}", 99 * CKB));
    let expected = fiber_funding::tx::funding::reserved_ckb_amount(&lock).unwrap();
    assert_eq!(reserve, format!("{expected:#x}"));

    let error = fiber_funding::wasm::channel_reserve(JsValue::from_str("not a script")).unwrap_err();
    let code = js_sys::Reflect::get(&error, &JsValue::from_str("code")).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("INVALID_PARAMS"));
}

#[wasm_bindgen(inline_js = r#"
export function put_raw_entry(db, store, channel_id) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(db);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(store, "readwrite");
      tx.objectStore(store).put({ channel_id, temporary_channel_id: null, record: new Uint8Array([1, 2, 3]) });
      tx.oncomplete = () => { open.result.close(); resolve(); };
      tx.onabort = () => reject(tx.error);
    };
  });
}
"#)]
extern "C" {
    /// Files an entry that is no record under `channel_id` in `store`.
    fn put_raw_entry(db: &str, store: &str, channel_id: &str) -> js_sys::Promise;
}

/// A channel whose stored record the boot could not read (the browser
/// lost its file, say) comes back from a backup: the import writes over
/// the entry, and `unreadableRecords` stops naming it. It named it until
/// the next boot, beside the channel the node then held.
#[wasm_bindgen_test]
async fn a_backup_brings_back_a_channel_whose_stored_record_became_unreadable() {
    let page = Page::new().await;
    let db = db_name("backup-over-unreadable");
    let node = page.open_node(&db).await;
    let opened = from_js(
        node.open_channel_with_external_funding(to_js(&page.open_params()))
            .await
            .unwrap(),
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let backup = from_js(node.export_backup().await.unwrap());
    node.close().await.unwrap();
    drop(node);
    JsFuture::from(put_raw_entry(&db, "channels", &channel_id))
        .await
        .unwrap();

    let node = page.open_node(&db).await;
    let unreadable = from_js(node.unreadable_records());
    assert_eq!(unreadable[0]["channel_id"], channel_id.as_str(), "{unreadable}");
    let (code, _) = code_and_message(&node.get_channel(channel_id.clone().into()).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("RECORD_UNREADABLE"));
    let result = from_js(node.import_backup(to_js(&backup), None).await.unwrap());
    assert_eq!(result["imported"], json!([channel_id]), "{result}");
    assert_eq!(
        from_js(node.unreadable_records()),
        json!([]),
        "the imported channel is still named unreadable"
    );
    let pending = from_js(node.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["channel_id"], channel_id.as_str(), "{pending}");
    node.close().await.unwrap();
    drop(node);

    let node = page.open_node(&db).await;
    assert_eq!(from_js(node.unreadable_records()), json!([]));
    let pending = from_js(node.pending_fundings().await.unwrap());
    assert_eq!(pending[0]["channel_id"], channel_id.as_str(), "{pending}");
    node.close().await.unwrap();
}

/// A closed flow's record is read after `open` resolves: one found
/// unreadable then joins `unreadableRecords` and comes as an
/// `unreadable_records` event; one found at boot is listed from the start.
#[wasm_bindgen_test]
async fn an_unreadable_record_found_after_open_joins_the_list_with_an_event() {
    let page = Page::new().await;
    let db = db_name("unreadable-later");
    fiber_funding::wasm::idb_store::IdbStore::open(&db)
        .await
        .unwrap()
        .close();
    let live = Hash256([0x0a; 32]).to_string();
    let tombstone = Hash256([0x0b; 32]).to_string();
    JsFuture::from(put_raw_entry(&db, "channels", &live)).await.unwrap();
    JsFuture::from(put_raw_entry(&db, "tombstones", &tombstone))
        .await
        .unwrap();

    let node = page.open_node(&db).await;
    let events = Rc::new(RefCell::new(Vec::new()));
    let heard = events.clone();
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |event| {
        heard.borrow_mut().push(from_js(event));
    });
    node.on_event(listener.as_ref().clone()).unwrap();
    let named = |list: Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|record| record["channel_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // listChannels waits for the tombstones: once it answers, they are in.
    let at_open = named(from_js(node.unreadable_records()));
    node.list_channels().await.unwrap();
    assert!(
        at_open == [live.clone()] || at_open == [live.clone(), tombstone.clone()],
        "{at_open:?}"
    );
    assert_eq!(named(from_js(node.unreadable_records())), [live, tombstone.clone()]);
    let later: Vec<Value> = events
        .borrow()
        .iter()
        .filter(|event| event["type"] == "unreadable_records")
        .cloned()
        .collect();
    assert_eq!(later.len(), 1, "{:?}", events.borrow());
    assert_eq!(named(later[0]["records"].clone()), [tombstone]);
    node.close().await.unwrap();
}

/// A page argument is bounded before it is copied into the module: a
/// script whose args are megabytes long (a link's URL parameter, say) is
/// refused by its size, not copied in whole and parsed first.
#[wasm_bindgen_test]
fn an_argument_larger_than_any_call_needs_is_refused_by_its_size() {
    let huge = format!("0x{}", "ab".repeat(3 << 20));
    let script = json!({ "code_hash": encode_hex(&[0; 32]), "hash_type": "type", "args": huge });
    let error = fiber_funding::wasm::channel_reserve(to_js(&script)).unwrap_err();
    let (code, message) = code_and_message(&error);
    assert_eq!(code.as_deref(), Some("INVALID_PARAMS"), "{message}");
    assert!(
        message.contains("shutdownScript") && message.contains("more than the 4194304"),
        "{message}"
    );
}
