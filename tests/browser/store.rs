//! `IdbStore` on Chromium's real IndexedDB: round trips, the upgrade from
//! schema 1, records stored as schema 3 bytes and JSON entries of earlier
//! modules rewritten as bytes, unreadable records kept and reported, hostile
//! record bytes refused on wasm32, and the faults a browser throws at storage
//! (a lost connection, an aborted transaction, a full disk).

use ckb_types::prelude::Entity;
use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::flow::record::{ChannelRecord, FieldPath, RecordFormatError, MAX_FIELD_BYTES, RECORD_MAGIC};
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::flow::NodeConfig;
use fiber_funding::primitives::Hash256;
use fiber_funding::primitives::{decode_hex, ChannelId};
use fiber_funding::store::{Store, StoreError};
use fiber_funding::tx::script::ScriptTemplate;
use fiber_funding::wasm::idb_store::{store_error_from_dom, IdbStore, IDB_SCHEMA_VERSION, LOAD_CHUNK};
use js_sys::{Object, Promise, Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{DomException, Event, IdbDatabase, IdbFactory, IdbRequest, IdbTransaction, IdbTransactionMode};

// ---- fixtures ---------------------------------------------------------------------------

const V1_FIXTURE: &str = include_str!("../fixtures/idb-v1.json");

#[derive(Deserialize)]
struct V1Fixture {
    idb_version: u32,
    channels: Vec<V1Entry>,
    meta: Vec<V1Entry>,
}

#[derive(Deserialize)]
struct V1Entry {
    key: String,
    value: String,
}

fn v1_fixture() -> V1Fixture {
    serde_json::from_str(V1_FIXTURE).expect("the schema 1 fixture parses")
}

/// The fixture's readable records, by what they are.
struct Samples {
    ready: ChannelRecord,
    aborted: ChannelRecord,
    pending: ChannelRecord,
}

fn samples() -> Samples {
    let records: Vec<ChannelRecord> = v1_fixture()
        .channels
        .iter()
        .filter_map(|entry| ChannelRecord::decode(&entry.key, entry.value.as_bytes()).ok())
        .collect();
    let find = |what: fn(&ChannelRecord) -> bool| records.iter().find(|r| what(r)).cloned().unwrap();
    Samples {
        ready: find(|r| r.closed.is_none() && r.funding_confirmed && r.peer_channel_ready),
        aborted: find(|r| r.closed.is_some()),
        pending: find(|r| r.closed.is_none() && !r.peer_channel_ready),
    }
}

/// Schema 2 records as the previous module stored them (JSON), frozen.
const LEGACY_RECORDS: &str = include_str!("../fixtures/records-legacy.json");

#[derive(Deserialize)]
struct LegacyRecords {
    v2: Vec<LegacyRecord>,
}

#[derive(Deserialize)]
struct LegacyRecord {
    about: String,
    key: String,
    value: String,
}

fn legacy_v2() -> Vec<LegacyRecord> {
    serde_json::from_str::<LegacyRecords>(LEGACY_RECORDS).unwrap().v2
}

/// The node configuration a restore upgrades records with.
fn node_config() -> NodeConfig {
    NodeConfig {
        node_secret: NodeSecret::from_bytes([0x11; 32]).unwrap(),
        chain_hash: Hash256([0xcc; 32]),
        funding_lock: ScriptTemplate::type_hash([0xf1; 32]),
        commitment_lock: ScriptTemplate::type_hash([0xc1; 32]),
        external_funding_timeout_ms: 300_000,
        funding_confirmations: 3,
        settle_confirmations: fiber_funding::flow::config::DEFAULT_SETTLE_CONFIRMATIONS,
        acceptor: None,
    }
}

/// The damaged entry of the fixture.
const UNREADABLE_V1_KEY: &str = "0x7777777777777777777777777777777777777777777777777777777777777777";

fn by_key(mut records: Vec<ChannelRecord>) -> Vec<ChannelRecord> {
    records.sort_by_key(ChannelRecord::key);
    records
}

/// A database name no other test (or earlier run) uses.
fn fresh_db_name(test: &str) -> String {
    format!("{test}-{}", js_sys::Math::random().to_bits())
}

// ---- raw IndexedDB, to build and inspect databases behind the store's back --------------

fn factory() -> IdbFactory {
    web_sys::window().unwrap().indexed_db().unwrap().unwrap()
}

async fn request_settled(request: &IdbRequest) -> Result<JsValue, JsValue> {
    let promise = Promise::new(&mut |resolve, reject| {
        let succeeded = request.clone();
        let on_success = Closure::once_into_js(move |_: Event| {
            let _ = resolve.call1(&JsValue::NULL, &succeeded.result().unwrap());
        });
        let failed = request.clone();
        let on_error = Closure::once_into_js(move |_: Event| {
            let _ = reject.call1(&JsValue::NULL, &failed.error().unwrap().into());
        });
        request.set_onsuccess(Some(on_success.unchecked_ref()));
        request.set_onerror(Some(on_error.unchecked_ref()));
    });
    JsFuture::from(promise).await
}

async fn transaction_settled(tx: &IdbTransaction) -> Result<(), JsValue> {
    let promise = Promise::new(&mut |resolve, reject| {
        let on_complete = Closure::once_into_js(move |_: Event| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let on_abort = Closure::once_into_js(move |_: Event| {
            let _ = reject.call0(&JsValue::NULL);
        });
        tx.set_oncomplete(Some(on_complete.unchecked_ref()));
        tx.set_onabort(Some(on_abort.unchecked_ref()));
    });
    JsFuture::from(promise).await.map(drop)
}

/// Builds exactly the schema 1 layout from the fixture, as that version did.
async fn create_v1_database(name: &str, fixture: &V1Fixture) {
    assert_eq!(fixture.idb_version, 1);
    let request = factory().open_with_u32(name, fixture.idb_version).unwrap();
    let channels: Vec<(String, String)> = fixture
        .channels
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let meta: Vec<(String, Vec<u8>)> = fixture
        .meta
        .iter()
        .map(|e| (e.key.clone(), decode_hex(&e.value).unwrap()))
        .collect();
    let upgrading = request.clone();
    let on_upgrade = Closure::once_into_js(move |_: Event| {
        let db: IdbDatabase = upgrading.result().unwrap().unchecked_into();
        let channel_store = db.create_object_store("channels").unwrap();
        let meta_store = db.create_object_store("meta").unwrap();
        for (key, json) in &channels {
            channel_store
                .put_with_key(&JsValue::from_str(json), &JsValue::from_str(key))
                .unwrap();
        }
        for (key, bytes) in &meta {
            meta_store
                .put_with_key(&Uint8Array::from(&bytes[..]), &JsValue::from_str(key))
                .unwrap();
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
    let db: IdbDatabase = request_settled(&request).await.unwrap().unchecked_into();
    db.close();
}

/// A second connection to an existing database, at whatever version it has.
async fn open_raw(name: &str) -> IdbDatabase {
    let request = factory().open(name).unwrap();
    request_settled(&request).await.unwrap().unchecked_into()
}

/// The entry under `key` in object store `store`, as IndexedDB holds it.
async fn raw_entry(name: &str, store: &str, key: &str) -> JsValue {
    let db = open_raw(name).await;
    let object_store = db
        .transaction_with_str_and_mode(store, IdbTransactionMode::Readonly)
        .unwrap()
        .object_store(store)
        .unwrap();
    let value = request_settled(&object_store.get(&JsValue::from_str(key)).unwrap())
        .await
        .unwrap();
    db.close();
    value
}

async fn raw_channel_entry(name: &str, key: &str) -> JsValue {
    raw_entry(name, "channels", key).await
}

async fn raw_put_channel_entries(name: &str, entries: &[Object]) {
    let db = open_raw(name).await;
    let tx = db
        .transaction_with_str_and_mode("channels", IdbTransactionMode::Readwrite)
        .unwrap();
    let store = tx.object_store("channels").unwrap();
    for entry in entries {
        store.put(entry).unwrap();
    }
    transaction_settled(&tx).await.unwrap();
    db.close();
}

fn object(fields: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &JsValue::from_str(name), value).unwrap();
    }
    object
}

fn field(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(name)).unwrap()
}

// Fault injection: the next `put` on any object store misbehaves, once.
#[wasm_bindgen(inline_js = r#"
export function abort_transaction_at_next_put() {
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (...args) {
    IDBObjectStore.prototype.put = put;
    const request = put.apply(this, args);
    this.transaction.abort();
    return request;
  };
}
export function add_instead_of_next_put() {
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (...args) {
    IDBObjectStore.prototype.put = put;
    return this.add(...args);
  };
}
let transaction = null;
let seen = [];
export function start_recording_transactions() {
  transaction = IDBDatabase.prototype.transaction;
  seen = [];
  IDBDatabase.prototype.transaction = function (...args) {
    const tx = transaction.apply(this, args);
    seen.push(`${tx.mode} ${tx.durability}`);
    return tx;
  };
}
export function stop_recording_transactions() {
  IDBDatabase.prototype.transaction = transaction;
  return seen;
}
let persist = null;
export function persist_never_answers() {
  persist = navigator.storage.persist;
  navigator.storage.persist = () => new Promise(() => {});
}
export function persist_answers_again() {
  navigator.storage.persist = persist;
}
"#)]
extern "C" {
    fn abort_transaction_at_next_put();
    fn add_instead_of_next_put();
    /// Notes every transaction opened from now on as "mode durability".
    fn start_recording_transactions();
    fn stop_recording_transactions() -> Vec<String>;
    /// `navigator.storage.persist()` never settles, as while Firefox asks the user.
    fn persist_never_answers();
    fn persist_answers_again();
}

// ---- round trips ------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn records_round_trip_through_strict_writes() {
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    let store = IdbStore::open(&fresh_db_name("round-trip")).await.unwrap();
    assert_eq!(store.get(&ready.channel_id).await.unwrap(), None);

    start_recording_transactions();
    for record in [&ready, &aborted, &pending] {
        store.put(record, None).await.unwrap();
    }
    store.put_meta("node_secret_key", &[7; 32]).await.unwrap();
    let writes: Vec<String> = stop_recording_transactions()
        .into_iter()
        .filter(|tx| tx.starts_with("readwrite"))
        .collect();
    assert_eq!(
        writes,
        vec!["readwrite strict"; 4],
        "every write flushed to disk before it completes"
    );
    for record in [&ready, &aborted, &pending] {
        assert_eq!(store.get(&record.channel_id).await.unwrap().as_ref(), Some(record));
    }
    let loaded = store.load_all().await.unwrap();
    assert!(loaded.unreadable.is_empty(), "{:?}", loaded.unreadable);
    assert_eq!(
        by_key(loaded.records),
        by_key(vec![ready.clone(), aborted, pending.clone()])
    );

    // A put overwrites the channel's record.
    let mut confirmed = pending.clone();
    confirmed.funding_confirmed = true;
    store.put(&confirmed, None).await.unwrap();
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(confirmed));
    assert_eq!(store.load_all().await.unwrap().records.len(), 3);
    store.close();
}

#[wasm_bindgen_test]
async fn the_first_open_asks_for_persistent_storage_and_later_opens_do_not() {
    let name = fresh_db_name("persist");
    let first = IdbStore::open(&name).await.unwrap();
    assert!(first.persistence_granted().is_some(), "a window can ask");
    assert_eq!(first.connection().unwrap().version(), f64::from(IDB_SCHEMA_VERSION));
    first.close();
    let again = IdbStore::open(&name).await.unwrap();
    assert_eq!(again.persistence_granted(), None);
    again.close();
}

/// Firefox answers `persist()` only once the user has chosen in a prompt:
/// awaited, the first open (and the tab's lock on the database) waited for
/// the user, and for ever if the prompt was dismissed. The answer is waited
/// for a moment, then the open goes on without it.
#[wasm_bindgen_test]
async fn a_persist_prompt_nobody_answers_does_not_hold_the_first_open() {
    persist_never_answers();
    let opened = IdbStore::open(&fresh_db_name("persist-prompt")).await;
    persist_answers_again();
    let store = opened.unwrap();
    assert_eq!(store.persistence_granted(), None, "no answer came");
    store.close();
}

#[wasm_bindgen_test]
async fn put_with_replaces_moves_the_record_in_one_transaction() {
    let Samples { pending, .. } = samples();
    let store = IdbStore::open(&fresh_db_name("replaces")).await.unwrap();
    // Before the peer accepts, the record is filed under the temporary id.
    let mut opening = pending.clone();
    opening.channel_id = pending.temporary_channel_id;
    store.put(&opening, None).await.unwrap();
    assert!(store.get(&opening.channel_id).await.unwrap().is_some());

    store.put(&pending, Some(&opening.channel_id)).await.unwrap();
    assert_eq!(store.get(&opening.channel_id).await.unwrap(), None);
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(pending.clone()));
    assert_eq!(store.load_all().await.unwrap().records, vec![pending.clone()]);

    // Replacing a record by itself keeps it.
    store.put(&pending, Some(&pending.channel_id)).await.unwrap();
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(pending));
    store.close();
}

#[wasm_bindgen_test]
async fn meta_round_trips_bytes() {
    let store = IdbStore::open(&fresh_db_name("meta")).await.unwrap();
    assert_eq!(store.get_meta("node_secret_key").await.unwrap(), None);
    store.put_meta("node_secret_key", &[7; 32]).await.unwrap();
    assert_eq!(store.get_meta("node_secret_key").await.unwrap(), Some(vec![7; 32]));
    store.put_meta("node_secret_key", &[8; 32]).await.unwrap();
    assert_eq!(store.get_meta("node_secret_key").await.unwrap(), Some(vec![8; 32]));
    store.close();
}

#[wasm_bindgen_test]
async fn records_are_stored_as_schema_3_bytes() {
    let Samples { pending, .. } = samples();
    let name = fresh_db_name("bytes");
    let store = IdbStore::open(&name).await.unwrap();
    store.put(&pending, None).await.unwrap();

    let entry = raw_channel_entry(&name, &pending.key()).await;
    let stored = field(&entry, "record")
        .dyn_into::<Uint8Array>()
        .expect("the record is a Uint8Array")
        .to_vec();
    assert_eq!(stored[..4], RECORD_MAGIC);
    assert_eq!(stored, pending.encode());
    // The entry's other fields are as before.
    assert_eq!(field(&entry, "channel_id").as_string(), Some(pending.key()));
    assert_eq!(
        field(&entry, "temporary_channel_id").as_string(),
        Some(pending.temporary_channel_id.to_string())
    );
    // IndexedDB schema 3 has no `pending` field (nor index).
    assert!(field(&entry, "pending").is_undefined());
    store.close();
}

/// An entry an earlier module wrote holds the record's JSON as a string: it
/// is read, and once the restore upgrades the record (as `Node::restore`
/// does at boot, storing what `upgrade` says changed) the entry holds bytes.
#[wasm_bindgen_test]
async fn a_json_entry_is_read_and_stored_again_as_bytes() {
    let name = fresh_db_name("json-to-bytes");
    let store = IdbStore::open(&name).await.unwrap();
    let legacy = legacy_v2();
    let entries: Vec<Object> = legacy
        .iter()
        .map(|record| {
            object(&[
                ("channel_id", JsValue::from_str(&record.key)),
                ("temporary_channel_id", JsValue::NULL),
                ("pending", JsValue::from(1)),
                ("record", JsValue::from_str(&record.value)),
            ])
        })
        .collect();
    raw_put_channel_entries(&name, &entries).await;

    let loaded = store.load_live().await.unwrap();
    assert!(loaded.unreadable.is_empty(), "{:?}", loaded.unreadable);
    assert_eq!(loaded.records.len(), legacy.len());
    for mut record in loaded.records {
        let about = &legacy.iter().find(|l| l.key == record.key()).unwrap().about;
        assert_eq!(record.schema_version, 2, "{about}");
        assert!(record.upgrade(&node_config()), "{about}: a JSON record is stored again");
        store.put(&record, None).await.unwrap();
        let entry = raw_channel_entry(&name, &record.key()).await;
        let stored = field(&entry, "record");
        assert!(stored.is_instance_of::<Uint8Array>(), "{about}: {stored:?}");
        assert_eq!(Uint8Array::new(&stored).to_vec(), record.encode());
        assert_eq!(store.get(&record.channel_id).await.unwrap(), Some(record.clone()));
        let mut again = record.clone();
        assert!(!again.upgrade(&node_config()), "{about}: nothing left to upgrade");
    }
    assert!(store.load_all().await.unwrap().unreadable.is_empty());
    store.close();
}

/// On wasm32 `usize` is 32 bits: lengths and counts from stored bytes must
/// not overflow it. Every u32 of a rich record set huge, and every
/// truncation, gives a typed error or a record, never a panic.
#[wasm_bindgen_test]
fn hostile_record_bytes_are_refused_on_wasm32() {
    let rich = legacy_v2()
        .into_iter()
        .find(|r| r.about.contains("every optional part"))
        .unwrap();
    let record = ChannelRecord::decode(&rich.key, rich.value.as_bytes()).unwrap();
    let bytes = record.encode();
    for offset in 0..bytes.len() - 4 {
        for huge in [u32::MAX, u32::MAX - 3, MAX_FIELD_BYTES as u32] {
            let mut hostile = bytes.clone();
            hostile[offset..offset + 4].copy_from_slice(&huge.to_le_bytes());
            let _ = ChannelRecord::read(&hostile);
        }
    }
    for len in 4..bytes.len() {
        assert!(matches!(
            ChannelRecord::read(&bytes[..len]),
            Err(RecordFormatError::Truncated { .. })
        ));
    }
    let tx = record.funding_tx.as_ref().unwrap().as_slice();
    let len_at = bytes.windows(tx.len()).position(|w| w == tx).unwrap() - 4;
    let mut hostile = bytes.clone();
    hostile[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        ChannelRecord::read(&hostile),
        Err(RecordFormatError::TooLong {
            field: FieldPath::of(&["funding_tx"]),
            len: u32::MAX,
            max: MAX_FIELD_BYTES
        })
    );
}

// ---- schema upgrade ----------------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_schema_1_database_upgrades_keeping_every_entry() {
    let fixture = v1_fixture();
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    let name = fresh_db_name("upgrade-v1");
    create_v1_database(&name, &fixture).await;

    let store = IdbStore::open(&name).await.unwrap();
    assert_eq!(store.connection().unwrap().version(), f64::from(IDB_SCHEMA_VERSION));
    assert_eq!(store.persistence_granted(), None, "the database existed");

    let loaded = store.load_all().await.unwrap();
    assert_eq!(
        by_key(loaded.records),
        by_key(vec![ready.clone(), aborted.clone(), pending.clone()])
    );
    assert_eq!(loaded.unreadable.len(), 1, "{:?}", loaded.unreadable);
    assert_eq!(loaded.unreadable[0].channel_id, UNREADABLE_V1_KEY);
    // The closed flow's record went straight to the tombstones.
    assert_eq!(store.load_tombstones().await.unwrap().records, vec![aborted]);
    assert!(
        loaded.unreadable[0].reason.contains("not JSON"),
        "{}",
        loaded.unreadable[0]
    );

    // The damaged entry is carried over as it was, not dropped.
    let damaged = fixture.channels.iter().find(|e| e.key == UNREADABLE_V1_KEY).unwrap();
    let entry = raw_channel_entry(&name, UNREADABLE_V1_KEY).await;
    assert_eq!(
        field(&entry, "record").as_string().as_deref(),
        Some(damaged.value.as_str())
    );
    assert!(field(&entry, "unreadable").as_string().is_some());

    // The live flows are read at boot, and the damaged entry with them
    // (nothing says it is closed).
    let live = store.load_live().await.unwrap();
    assert_eq!(by_key(live.records), by_key(vec![ready.clone(), pending.clone()]));
    assert_eq!(live.unreadable.len(), 1);
    assert_eq!(live.unreadable[0].channel_id, UNREADABLE_V1_KEY);
    assert_eq!(channel_index_count(&store), 0);

    let secret = decode_hex(&fixture.meta[0].value).unwrap();
    assert_eq!(store.get_meta(&fixture.meta[0].key).await.unwrap(), Some(secret));

    // The entries still hold the JSON the earlier module wrote.
    let entry = raw_channel_entry(&name, &ready.key()).await;
    assert!(field(&entry, "record").as_string().is_some());

    // The upgraded store takes writes like a fresh one (a restored record,
    // upgraded, in schema 3's bytes), and a reopen changes nothing.
    let mut confirmed = pending.clone();
    assert!(confirmed.upgrade(&node_config()));
    confirmed.funding_confirmed = true;
    store.put(&confirmed, None).await.unwrap();
    let entry = raw_channel_entry(&name, &pending.key()).await;
    assert!(field(&entry, "record").is_instance_of::<Uint8Array>());
    store.close();
    let reopened = IdbStore::open(&name).await.unwrap();
    assert_eq!(reopened.get(&pending.channel_id).await.unwrap(), Some(confirmed));
    assert_eq!(reopened.get(&ready.channel_id).await.unwrap(), Some(ready));
    assert_eq!(reopened.load_all().await.unwrap().unreadable.len(), 1);
    reopened.close();
}

// ---- unreadable records -----------------------------------------------------------------

#[wasm_bindgen_test]
async fn an_unreadable_record_is_reported_by_name_and_left_in_place() {
    let Samples { ready, pending, .. } = samples();
    let name = fresh_db_name("garbage");
    let store = IdbStore::open(&name).await.unwrap();
    store.put(&ready, None).await.unwrap();
    store.put(&pending, None).await.unwrap();

    let garbage_key = "0x6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a";
    let garbage = object(&[
        ("channel_id", JsValue::from_str(garbage_key)),
        ("temporary_channel_id", JsValue::from_str(garbage_key)),
        ("pending", JsValue::from(1)),
        (
            "record",
            JsValue::from_str("{\"schema_version\": 1, \"channel_id\": tru"),
        ),
    ]);
    raw_put_channel_entries(&name, &[garbage]).await;

    let loaded = store.load_all().await.unwrap();
    assert_eq!(by_key(loaded.records), by_key(vec![ready.clone(), pending.clone()]));
    assert_eq!(loaded.unreadable.len(), 1);
    assert_eq!(loaded.unreadable[0].channel_id, garbage_key);
    assert!(loaded.unreadable[0].to_string().contains(garbage_key));

    let live = store.load_live().await.unwrap();
    assert_eq!(by_key(live.records), by_key(vec![ready, pending]));
    assert_eq!(live.unreadable[0].channel_id, garbage_key);

    let garbage_id = ChannelId::from_hex(garbage_key).unwrap();
    match store.get(&garbage_id).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains(garbage_key), "{message}"),
        other => panic!("expected the unreadable record to be refused by name, got {other:?}"),
    }
    let entry = raw_channel_entry(&name, garbage_key).await;
    assert!(
        field(&entry, "record").as_string().unwrap().contains("tru"),
        "still there"
    );
    store.close();
}

/// `count` entries of `record` under ids that sort by `n`, as `load_all`
/// should return them.
fn numbered_entries(record: &ChannelRecord, count: u32) -> (Vec<Object>, Vec<ChannelRecord>) {
    let mut expected = Vec::new();
    let mut entries = Vec::new();
    for n in 0..count {
        let mut record = record.clone();
        record.channel_id = numbered_id(n, 0);
        entries.push(object(&[
            ("channel_id", JsValue::from_str(&record.key())),
            (
                "temporary_channel_id",
                JsValue::from_str(&numbered_id(n, 0xff).to_string()),
            ),
            ("record", Uint8Array::from(&record.encode()[..]).into()),
        ]));
        expected.push(record);
    }
    (entries, expected)
}

fn numbered_id(n: u32, last: u8) -> Hash256 {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = last;
    Hash256(bytes)
}

/// A boot reads the channels in runs of `LOAD_CHUNK`: every entry arrives once
/// and in key order, runs' edges included, and an unreadable entry at an
/// edge is reported as ever.
#[wasm_bindgen_test]
async fn load_all_reads_every_entry_across_its_runs() {
    let Samples { pending, .. } = samples();
    let name = fresh_db_name("many");
    let store = IdbStore::open(&name).await.unwrap();
    let (mut entries, expected) = numbered_entries(&pending, 2 * LOAD_CHUNK + 3);
    // Sorts right after the last entry of the first run.
    let garbage_key = numbered_id(LOAD_CHUNK - 1, 1).to_string();
    entries.push(object(&[
        ("channel_id", JsValue::from_str(&garbage_key)),
        ("temporary_channel_id", JsValue::NULL),
        (
            "record",
            JsValue::from_str("{\"schema_version\": 1, \"channel_id\": tru"),
        ),
    ]));
    raw_put_channel_entries(&name, &entries).await;

    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.records.len(), expected.len());
    assert!(loaded.records == expected, "every record once, in key order");
    assert_eq!(loaded.unreadable.len(), 1);
    assert_eq!(loaded.unreadable[0].channel_id, garbage_key);
    store.close();
}

/// A run is asked for after each full one, so entries that fill their runs
/// exactly end with an empty run: nothing lost, nothing read twice.
#[wasm_bindgen_test]
async fn load_all_reads_runs_filled_exactly() {
    let Samples { pending, .. } = samples();
    let name = fresh_db_name("exact-runs");
    let store = IdbStore::open(&name).await.unwrap();
    let (entries, expected) = numbered_entries(&pending, 2 * LOAD_CHUNK);
    raw_put_channel_entries(&name, &entries).await;
    let loaded = store.load_all().await.unwrap();
    assert!(loaded.records == expected, "every record once, in key order");
    assert!(loaded.unreadable.is_empty());
    store.close();
}

// ---- faults -----------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_lost_connection_is_reopened_and_the_operation_retried() {
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    let store = IdbStore::open(&fresh_db_name("lost-connection")).await.unwrap();
    store.put(&ready, None).await.unwrap();

    let lost = store.connection().unwrap();
    lost.close();
    store.put(&pending, None).await.unwrap();
    let reopened = store.connection().unwrap();
    assert!(!Object::is(&lost, &reopened), "a new connection");

    // Reads recover the same way.
    store.connection().unwrap().close();
    let loaded = store.load_all().await.unwrap();
    assert_eq!(by_key(loaded.records), by_key(vec![ready.clone(), pending.clone()]));
    store.connection().unwrap().close();
    assert_eq!(store.get(&ready.channel_id).await.unwrap(), Some(ready));
    store.connection().unwrap().close();
    store.put_meta("node_secret_key", &[1; 32]).await.unwrap();
    store.connection().unwrap().close();
    assert_eq!(store.get_meta("node_secret_key").await.unwrap(), Some(vec![1; 32]));
    store.connection().unwrap().close();
    assert!(store.load_live().await.unwrap().records.contains(&pending));

    // A store closed on purpose stays closed.
    store.close();
    assert!(store.connection().is_none());
    assert!(matches!(
        store.put(&aborted, None).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// The database deleted while the page runs (site data cleared, another
/// tab's reset): the node secret and every record are gone. Reopening would
/// create an empty database and let the node go on committing funds whose
/// keys no reload can find; the store fails closed instead, until the
/// runtime, which holds the records, has it made again (the next test).
#[wasm_bindgen_test]
async fn a_database_deleted_behind_the_store_is_not_created_again() {
    let Samples { ready, pending, .. } = samples();
    let name = fresh_db_name("deleted");
    let store = IdbStore::open(&name).await.unwrap();
    store.put_meta("node_secret_key", &[1; 32]).await.unwrap();
    store.put(&ready, None).await.unwrap();

    // The store's own versionchange handler gives way to the delete.
    request_settled(&factory().delete_database(&name).unwrap())
        .await
        .unwrap();
    let refused = store.put(&pending, None).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Deleted(_)), "{refused:?}");
    assert!(store.connection().is_none(), "the store stays closed");
    assert!(matches!(
        store.get_meta("node_secret_key").await,
        Err(StoreError::Deleted(_))
    ));
    // No empty database was left behind: the next boot starts afresh.
    let databases: js_sys::Function = Reflect::get(&factory(), &"databases".into()).unwrap().unchecked_into();
    let listed = JsFuture::from(databases.call0(&factory()).unwrap().unchecked_into::<Promise>())
        .await
        .unwrap();
    let names: Vec<String> = js_sys::Array::from(&listed)
        .iter()
        .filter_map(|db| Reflect::get(&db, &"name".into()).ok()?.as_string())
        .collect();
    assert!(!names.contains(&name), "{names:?}");
}

/// The runtime has the deleted database made again with the records the
/// node holds (the page's memory may hold the only copy of a funded
/// channel's keys): the node key this store read or wrote comes back with
/// them, tombstones where they belong, and the store is open again.
#[wasm_bindgen_test]
async fn a_deleted_database_is_made_again_with_the_records_and_the_node_key() {
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    let name = fresh_db_name("recreated");
    let store = IdbStore::open(&name).await.unwrap();
    store.put_meta("node_secret_key", &[7; 32]).await.unwrap();
    store.put(&ready, None).await.unwrap();
    request_settled(&factory().delete_database(&name).unwrap())
        .await
        .unwrap();
    assert!(matches!(store.put(&pending, None).await, Err(StoreError::Deleted(_))));

    store.recreate(&[&ready, &aborted, &pending]).await.unwrap();
    assert!(store.connection().is_some(), "open again");
    let records = [&ready, &aborted, &pending];
    let store = holds_after_recreate(store, &records).await;
    let mut confirmed = pending.clone();
    confirmed.funding_confirmed = true;
    store.put(&confirmed, None).await.unwrap();
    store.close();
    // A reload finds it all.
    holds_after_recreate(IdbStore::open(&name).await.unwrap(), &records)
        .await
        .close();
}

/// A record this module cannot read (a newer module wrote it, say) may hold
/// a funded channel's keys as surely as a readable one: a database made
/// again after a deletion gets its entry back, byte for byte, in the store
/// it was read from.
#[wasm_bindgen_test]
async fn a_deleted_database_is_made_again_with_the_records_it_could_not_read() {
    let Samples { ready, .. } = samples();
    let name = fresh_db_name("recreated-unreadable");
    let store = IdbStore::open(&name).await.unwrap();
    store.put(&ready, None).await.unwrap();
    let garbage_key = "0x6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
    let garbage = object(&[
        ("channel_id", JsValue::from_str(garbage_key)),
        ("temporary_channel_id", JsValue::from_str(garbage_key)),
        ("record", Uint8Array::from(&[0xfe_u8, 0x01, 0x02][..]).into()),
    ]);
    raw_put_channel_entries(&name, &[garbage]).await;
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.unreadable.len(), 1, "{:?}", loaded.unreadable);

    request_settled(&factory().delete_database(&name).unwrap())
        .await
        .unwrap();
    assert!(matches!(store.put(&ready, None).await, Err(StoreError::Deleted(_))));
    store.recreate(&[&ready]).await.unwrap();

    let entry = raw_channel_entry(&name, garbage_key).await;
    let bytes = Uint8Array::new(&field(&entry, "record")).to_vec();
    assert_eq!(bytes, [0xfe, 0x01, 0x02], "the unreadable entry is back as it was");
    let reloaded = store.load_all().await.unwrap();
    assert_eq!(reloaded.records.len(), 1);
    assert_eq!(reloaded.unreadable.len(), 1);
    assert_eq!(reloaded.unreadable[0].channel_id, garbage_key);
    store.close();
}

/// `store` holds the node key and exactly `records`, tombstones apart.
async fn holds_after_recreate(store: IdbStore, records: &[&ChannelRecord]) -> IdbStore {
    assert_eq!(store.get_meta("node_secret_key").await.unwrap(), Some(vec![7; 32]));
    let mut loaded: Vec<ChannelId> = store
        .load_all()
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| r.channel_id)
        .collect();
    loaded.sort();
    let mut expected: Vec<ChannelId> = records.iter().map(|r| r.channel_id).collect();
    expected.sort();
    assert_eq!(loaded, expected);
    let live = store.load_live().await.unwrap().records.len();
    let tombstones = store.load_tombstones().await.unwrap().records.len();
    let filed_apart = records.iter().filter(|r| r.is_tombstone()).count();
    assert_eq!((live, tombstones), (records.len() - filed_apart, filed_apart));
    store
}

#[wasm_bindgen_test]
async fn an_aborted_write_fails_and_leaves_the_previous_record() {
    let Samples { pending, .. } = samples();
    let store = IdbStore::open(&fresh_db_name("aborted")).await.unwrap();
    store.put(&pending, None).await.unwrap();
    let mut confirmed = pending.clone();
    confirmed.funding_confirmed = true;

    abort_transaction_at_next_put();
    match store.put(&confirmed, None).await {
        Err(StoreError::Aborted(message)) => assert!(message.contains("previous record is intact"), "{message}"),
        other => panic!("expected Aborted, got {other:?}"),
    }
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(pending.clone()));

    // A request that fails aborts the whole transaction, with its cause named.
    add_instead_of_next_put();
    match store.put(&confirmed, None).await {
        Err(StoreError::Aborted(message)) => assert!(message.contains("ConstraintError"), "{message}"),
        other => panic!("expected Aborted, got {other:?}"),
    }
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(pending.clone()));

    // The next write goes through.
    store.put(&confirmed, None).await.unwrap();
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(confirmed));
    store.close();
}

#[wasm_bindgen_test]
async fn an_aborted_move_keeps_the_record_under_its_old_id() {
    let Samples { pending, .. } = samples();
    let store = IdbStore::open(&fresh_db_name("aborted-move")).await.unwrap();
    let mut opening = pending.clone();
    opening.channel_id = pending.temporary_channel_id;
    store.put(&opening, None).await.unwrap();

    abort_transaction_at_next_put();
    assert!(matches!(
        store.put(&pending, Some(&opening.channel_id)).await,
        Err(StoreError::Aborted(_))
    ));
    assert_eq!(store.get(&opening.channel_id).await.unwrap(), Some(opening));
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), None);
    store.close();
}

#[wasm_bindgen_test]
fn dom_exceptions_map_to_store_errors() {
    let exception = |name: &str, message: &str| DomException::new_with_message_and_name(message, name).unwrap();

    let quota = store_error_from_dom(
        "writing the record of channel 0x01",
        &exception("QuotaExceededError", "The quota has been exceeded."),
    );
    match &quota {
        StoreError::QuotaExceeded(message) => {
            assert!(message.contains("full"), "{message}");
            assert!(message.contains("previous record is intact"), "{message}");
            assert!(message.contains("0x01"), "{message}");
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert!(quota.to_string().starts_with("storage is full"));

    let aborted = store_error_from_dom("writing", &exception("AbortError", "The transaction was aborted."));
    assert!(
        matches!(&aborted, StoreError::Aborted(m) if m.contains("AbortError")),
        "{aborted:?}"
    );
    let constraint = store_error_from_dom("writing", &exception("ConstraintError", "Key already exists."));
    assert!(matches!(&constraint, StoreError::Aborted(m) if m.contains("Key already exists")));

    let closing = store_error_from_dom(
        "reading",
        &exception("InvalidStateError", "The database connection is closing."),
    );
    assert!(
        matches!(&closing, StoreError::Unavailable(m) if m.contains("InvalidStateError: The database connection is closing.")),
        "{closing:?}"
    );
    let version = store_error_from_dom("opening", &exception("VersionError", "The requested version is less."));
    assert!(matches!(&version, StoreError::Unavailable(m) if m.contains("VersionError")));
}

#[wasm_bindgen_test]
async fn an_open_store_gives_way_to_a_newer_version_opened_elsewhere() {
    let Samples { pending, .. } = samples();
    let name = fresh_db_name("gives-way");
    let store = IdbStore::open(&name).await.unwrap();
    store.put(&pending, None).await.unwrap();

    // Another tab, updated, upgrades the database: it is not blocked by us.
    let request = factory().open_with_u32(&name, IDB_SCHEMA_VERSION + 1).unwrap();
    let newer: IdbDatabase = request_settled(&request).await.unwrap().unchecked_into();
    match store.put(&pending, None).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("VersionError"), "{message}"),
        other => panic!("expected VersionError, got {other:?}"),
    }
    newer.close();
    store.close();
}

#[wasm_bindgen_test]
async fn a_database_from_a_newer_module_is_refused_not_downgraded() {
    let name = fresh_db_name("newer");
    let request = factory().open_with_u32(&name, IDB_SCHEMA_VERSION + 1).unwrap();
    let db: IdbDatabase = request_settled(&request).await.unwrap().unchecked_into();
    db.close();
    match IdbStore::open(&name).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("VersionError"), "{message}"),
        other => panic!("expected VersionError, got {other:?}"),
    }
    // It is still there, untouched.
    let db = open_raw(&name).await;
    assert_eq!(db.version(), f64::from(IDB_SCHEMA_VERSION + 1));
    db.close();
}

// ---- closed flows' tombstones, filed apart -----------------------------------------------

/// `record` closed by the user with nothing to watch, its keys wiped.
fn tombstone_of(record: &ChannelRecord) -> ChannelRecord {
    let mut tombstone = record.clone();
    tombstone.close_as_tombstone(CloseFlags::ABANDONED, "abandoned by the user".into(), 9);
    tombstone
}

/// A tombstone is filed in `tombstones`, out of `channels`, by the write that
/// makes it one; a boot's read of the live records never sees it.
#[wasm_bindgen_test]
async fn a_tombstone_is_filed_apart_and_the_live_load_never_reads_it() {
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    assert!(aborted.is_tombstone());
    let name = fresh_db_name("tombstones");
    let store = std::rc::Rc::new(IdbStore::open(&name).await.unwrap());
    for record in [&ready, &aborted, &pending] {
        store.put(record, None).await.unwrap();
    }
    assert!(raw_entry(&name, "channels", &aborted.key()).await.is_undefined());
    assert!(!raw_entry(&name, "tombstones", &aborted.key()).await.is_undefined());
    assert_eq!(
        by_key(store.load_live().await.unwrap().records),
        by_key(vec![ready.clone(), pending.clone()])
    );
    assert_eq!(store.load_tombstones().await.unwrap().records, vec![aborted.clone()]);
    assert_eq!(store.get(&aborted.channel_id).await.unwrap(), Some(aborted.clone()));

    // A live flow that closes moves, in the write that closes it.
    let closed = tombstone_of(&pending);
    store.put(&closed, None).await.unwrap();
    assert!(raw_entry(&name, "channels", &pending.key()).await.is_undefined());
    assert_eq!(store.get(&pending.channel_id).await.unwrap(), Some(closed.clone()));
    assert_eq!(store.load_live().await.unwrap().records, vec![ready.clone()]);
    assert_eq!(
        by_key(store.load_tombstones().await.unwrap().records),
        by_key(vec![aborted.clone(), closed.clone()])
    );
    assert_eq!(
        by_key(store.load_all().await.unwrap().records),
        by_key(vec![ready, aborted, closed])
    );

    // An unreadable tombstone is reported by the tombstones' load, not the boot's.
    let garbage = object(&[
        ("channel_id", JsValue::from_str(UNREADABLE_V1_KEY)),
        ("temporary_channel_id", JsValue::NULL),
        ("record", Uint8Array::from(&b"not a record"[..]).into()),
    ]);
    let db = open_raw(&name).await;
    let tx = db
        .transaction_with_str_and_mode("tombstones", IdbTransactionMode::Readwrite)
        .unwrap();
    tx.object_store("tombstones").unwrap().put(&garbage).unwrap();
    transaction_settled(&tx).await.unwrap();
    db.close();
    assert!(store.load_live().await.unwrap().unreadable.is_empty());
    let tombstones = store.load_tombstones().await.unwrap();
    assert_eq!(tombstones.records.len(), 2);
    assert_eq!(tombstones.unreadable.len(), 1);
    assert_eq!(tombstones.unreadable[0].channel_id, UNREADABLE_V1_KEY);
    store.close();
}

/// Builds the schema 2 layout (IndexedDB version 2) with `entries`, as the
/// module before tombstones were filed apart did.
async fn create_v2_database(name: &str, entries: Vec<Object>) {
    let request = factory().open_with_u32(name, 2).unwrap();
    let upgrading = request.clone();
    let on_upgrade = Closure::once_into_js(move |_: Event| {
        let db: IdbDatabase = upgrading.result().unwrap().unchecked_into();
        db.create_object_store("meta").unwrap();
        let parameters = web_sys::IdbObjectStoreParameters::new();
        parameters.set_key_path(&JsValue::from_str("channel_id"));
        let channels = db
            .create_object_store_with_optional_parameters("channels", &parameters)
            .unwrap();
        channels.create_index_with_str("pending", "pending").unwrap();
        for entry in &entries {
            channels.put(entry).unwrap();
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
    let db: IdbDatabase = request_settled(&request).await.unwrap().unchecked_into();
    db.close();
}

fn v2_entry(record: &ChannelRecord, pending: bool, stored: JsValue) -> Object {
    object(&[
        ("channel_id", JsValue::from_str(&record.key())),
        (
            "temporary_channel_id",
            JsValue::from_str(&record.temporary_channel_id.to_string()),
        ),
        ("pending", JsValue::from(u8::from(pending))),
        ("record", stored),
    ])
}

/// Opening a version 2 database moves its tombstones (bytes or an earlier
/// module's JSON alike) to `tombstones`; live records, finished or not, and
/// an unreadable entry stay where they were.
#[wasm_bindgen_test]
async fn a_schema_2_database_upgrades_moving_its_tombstones() {
    let Samples {
        ready,
        aborted,
        pending,
    } = samples();
    let mut closed = tombstone_of(&ready);
    closed.channel_id = numbered_id(1, 0xcc);
    let aborted_json = v1_fixture()
        .channels
        .into_iter()
        .find(|entry| entry.key == aborted.key())
        .unwrap()
        .value;
    let bytes = |record: &ChannelRecord| JsValue::from(Uint8Array::from(&record.encode()[..]));
    let name = fresh_db_name("upgrade-v2");
    let mut entries = vec![
        v2_entry(&pending, true, bytes(&pending)),
        v2_entry(&aborted, false, JsValue::from_str(&aborted_json)),
        v2_entry(&closed, false, bytes(&closed)),
    ];
    let unreadable = v2_entry(&ready, false, JsValue::from_str("not a record"));
    Reflect::set(
        &unreadable,
        &JsValue::from_str("channel_id"),
        &JsValue::from_str(UNREADABLE_V1_KEY),
    )
    .unwrap();
    entries.push(unreadable);
    let mut ready_other = ready.clone();
    ready_other.channel_id = numbered_id(2, 0xcc);
    entries.push(v2_entry(&ready_other, false, bytes(&ready_other)));
    create_v2_database(&name, entries).await;

    let store = IdbStore::open(&name).await.unwrap();
    assert_eq!(store.connection().unwrap().version(), f64::from(IDB_SCHEMA_VERSION));
    let live = store.load_live().await.unwrap();
    assert_eq!(by_key(live.records), by_key(vec![pending.clone(), ready_other]));
    assert_eq!(live.unreadable.len(), 1, "{:?}", live.unreadable);
    assert_eq!(live.unreadable[0].channel_id, UNREADABLE_V1_KEY);
    let tombstones = store.load_tombstones().await.unwrap();
    assert_eq!(by_key(tombstones.records), by_key(vec![aborted.clone(), closed]));
    assert!(tombstones.unreadable.is_empty());
    // Moved as they were: the earlier module's JSON is still JSON.
    let moved = raw_entry(&name, "tombstones", &aborted.key()).await;
    assert_eq!(field(&moved, "record").as_string(), Some(aborted_json));
    assert!(raw_entry(&name, "channels", &aborted.key()).await.is_undefined());
    // Version 2's `pending` index is gone: nothing reads it since.
    assert_eq!(channel_index_count(&store), 0);
    store.close();
}

/// How many indexes `channels` has.
fn channel_index_count(store: &IdbStore) -> u32 {
    let channels = store
        .connection()
        .unwrap()
        .transaction_with_str("channels")
        .unwrap()
        .object_store("channels")
        .unwrap();
    let names = field(&channels, "indexNames");
    field(&names, "length").as_f64().unwrap() as u32
}

/// A record field far larger than any record (any script of the origin can
/// write one) is reported unreadable by its size and left in place, without
/// being copied into the module; the other records load.
#[wasm_bindgen_test]
async fn an_entry_larger_than_any_record_is_unreadable_by_its_size() {
    use fiber_funding::wasm::idb_store::MAX_STORED_RECORD_BYTES;
    let Samples { ready, .. } = samples();
    let name = fresh_db_name("oversized");
    let store = IdbStore::open(&name).await.unwrap();
    store.put(&ready, None).await.unwrap();
    let key = "0x6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
    let mut bytes = ready.encode();
    bytes.resize(MAX_STORED_RECORD_BYTES as usize + 1, 0);
    let oversized = object(&[
        ("channel_id", JsValue::from_str(key)),
        ("temporary_channel_id", JsValue::from_str(key)),
        ("record", Uint8Array::from(&bytes[..]).into()),
    ]);
    raw_put_channel_entries(&name, &[oversized]).await;

    let loaded = store.load_all().await.unwrap();
    assert_eq!(by_key(loaded.records), by_key(vec![ready]));
    assert_eq!(loaded.unreadable.len(), 1);
    assert_eq!(loaded.unreadable[0].channel_id, key);
    assert!(
        loaded.unreadable[0].reason.contains("more than any record"),
        "{}",
        loaded.unreadable[0].reason
    );
    store.close();
}
