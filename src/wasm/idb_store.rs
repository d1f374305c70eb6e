//! IndexedDB storage for recovery records: the browser's [`Store`].
//!
//! Schema (IndexedDB version [`IDB_SCHEMA_VERSION`]):
//! * `channels`, key path `channel_id`: `{ channel_id, temporary_channel_id,
//!   record }`, where `record` is the record's bytes (record schema 6,
//!   `docs/storage.md`) as a `Uint8Array`, or, written by an earlier module,
//!   its JSON as a string (record schemas 1 and 2; still read, and rewritten
//!   as bytes when the channel is restored and its record upgraded). No index.
//! * `tombstones`, the same entries for the records of closed flows with
//!   nothing left to watch ([`ChannelRecord::is_tombstone`]). A record moves
//!   here in the write that makes it one, and never back.
//! * `meta`, out-of-line string keys, `Uint8Array` values (the node's secret key).
//!
//! A boot reads `channels` in runs of [`LOAD_CHUNK`] entries, each asked for
//! before the one before it is decoded (`docs/storage.md`), and `tombstones`
//! the same way once the live flows are restored
//! ([`Store::load_live`], [`Store::load_tombstones`]): however many flows a
//! wallet has closed, a boot reads none of them.
//!
//! Version 1 filed the bare record JSON under out-of-line keys. Opening a
//! version 1 database rewrites every entry inside the upgrade transaction; an
//! entry that is not a readable record is carried over as it is, flagged, and
//! reported by [`Store::load_all`] like any other unreadable record. Opening
//! a version 2 database moves the entries of tombstones to `tombstones`
//! there (each finished entry, found through version 2's `pending` index, is
//! decoded once to tell; one that cannot be read stays in `channels`), then
//! drops the index: nothing reads it since tombstones are filed apart. Its
//! field stays on the entries version 2 wrote until each is written again.
//!
//! Every write is one `readwrite` transaction with `durability: "strict"`, so
//! it is on disk before the runtime acts on it. A connection the browser lost
//! (WebKit drops those of backgrounded tabs) is reopened and the operation
//! retried once.
//!
//! This talks to `web_sys` directly rather than through the `idb` crate: its
//! transaction future resolves early, with an unrelated error, when a request
//! error bubbles up, which loses the `DOMException` that says what happened.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, Event, EventTarget, IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbObjectStoreParameters,
    IdbRequest, IdbTransaction, IdbTransactionDurability, IdbTransactionMode, IdbTransactionOptions,
    IdbVersionChangeEvent,
};

use crate::flow::record::{ChannelRecord, RecordDecodeError};
use crate::primitives::ChannelId;
use crate::store::{LoadedRecords, Store, StoreError};

/// The IndexedDB version of the current schema.
pub const IDB_SCHEMA_VERSION: u32 = 3;

const CHANNELS: &str = "channels";
const TOMBSTONES: &str = "tombstones";
const META: &str = "meta";
/// Version 2's index of unfinished flows, read once by the upgrade to 3.
const PENDING_INDEX: &str = "pending";

/// Recovery records in IndexedDB, one database per wallet.
///
/// ```ignore
/// let store = IdbStore::open("fiber-funding").await?;
/// let LoadedRecords { records, unreadable } = store.load_live().await?;
/// ```
pub struct IdbStore {
    name: String,
    /// `None` once [`IdbStore::close`] was called.
    connection: RefCell<Option<Connection>>,
    persistence_granted: Option<bool>,
    /// The `meta` entries this store read or wrote (the node key), written
    /// back by [`Store::recreate`].
    meta_seen: RefCell<Vec<(String, Vec<u8>)>>,
    /// The entries of each object store this store could not read, as they
    /// were: also written back by [`Store::recreate`], since a record a newer
    /// module wrote may hold a funded channel's keys.
    unreadable_seen: RefCell<Vec<(&'static str, Vec<JsValue>)>>,
    /// Closed because the database was found deleted; every operation says
    /// so until [`Store::recreate`].
    deleted: Cell<bool>,
}

impl fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.name)
            .field("open", &self.connection.borrow().is_some())
            .field("persistence_granted", &self.persistence_granted)
            .finish()
    }
}

impl IdbStore {
    /// Opens the database `db_name`, creating it or upgrading an older schema.
    ///
    /// When this creates the database it also asks the browser not to evict
    /// this site's storage under pressure (`navigator.storage.persist()`); see
    /// [`IdbStore::persistence_granted`]. Works in a window and in a worker.
    pub async fn open(db_name: &str) -> Result<IdbStore, StoreError> {
        let doing = format!("opening IndexedDB database {db_name}");
        let opened = open_database(db_name, IfMissing::Create)
            .await
            .map_err(|fault| fault.into_store_error(&doing))?;
        let persistence_granted = if opened.created {
            request_persistence().await
        } else {
            None
        };
        Ok(IdbStore {
            name: db_name.to_owned(),
            connection: RefCell::new(Some(Connection::new(opened.db))),
            persistence_granted,
            meta_seen: RefCell::new(Vec::new()),
            unreadable_seen: RefCell::new(Vec::new()),
            deleted: Cell::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The browser's answer to `navigator.storage.persist()`, asked when this
    /// store created its database. `None` when the database already existed,
    /// the question cannot be asked here (in a worker, say), or no answer
    /// came within a second (a prompt the user has not answered). Without it the
    /// browser may evict the records under storage pressure.
    pub fn persistence_granted(&self) -> Option<bool> {
        self.persistence_granted
    }

    /// A value from `meta`, such as the node's secret key.
    pub async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let doing = format!("reading meta entry {key}");
        let value = self.with_reconnect(&doing, |db| read_meta(db, key)).await?;
        if value.is_undefined() {
            return Ok(None);
        }
        let bytes = if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
            bytes.to_vec()
        } else if value.is_instance_of::<js_sys::ArrayBuffer>() {
            Uint8Array::new(&value).to_vec()
        } else {
            return Err(StoreError::Unavailable(format!(
                "{doing}: the stored value is not bytes"
            )));
        };
        self.note_meta(key, &bytes);
        Ok(Some(bytes))
    }

    /// Writes a value to `meta` in one strict-durability transaction.
    pub async fn put_meta(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let value = Uint8Array::from(bytes);
        let doing = format!("writing meta entry {key}");
        self.with_reconnect(&doing, |db| write_meta(db, key, &value)).await?;
        self.note_meta(key, bytes);
        Ok(())
    }

    fn note_meta(&self, key: &str, bytes: &[u8]) {
        let mut seen = self.meta_seen.borrow_mut();
        seen.retain(|(seen_key, _)| seen_key != key);
        seen.push((key.to_owned(), bytes.to_vec()));
    }

    /// The live connection, `None` after [`IdbStore::close`]. Closing it behind
    /// the store's back is how tests play the browser dropping the connection.
    pub fn connection(&self) -> Option<IdbDatabase> {
        self.connection
            .borrow()
            .as_ref()
            .map(|connection| connection.db.clone())
    }

    /// Closes the database once its running transactions finish. Later
    /// operations fail with [`StoreError::Unavailable`].
    pub fn close(&self) {
        self.connection.borrow_mut().take();
    }

    /// Runs `operation` on the live connection; if the browser lost that
    /// connection, reopens the database and runs it once more. Every operation
    /// here is idempotent, so a retry after a write that did land is harmless.
    async fn with_reconnect<T, F, Fut>(&self, doing: &str, operation: F) -> Result<T, StoreError>
    where
        F: Fn(IdbDatabase) -> Fut,
        Fut: Future<Output = Result<T, IdbFault>>,
    {
        let db = self.connection().ok_or_else(|| {
            if self.deleted.get() {
                StoreError::Deleted(format!("{doing}: the store closed when it found the database deleted"))
            } else {
                StoreError::Unavailable(format!("{doing}: the store was closed"))
            }
        })?;
        match operation(db).await {
            Err(fault) if fault.is_connection_lost() => {
                web_sys::console::warn_1(&format!("IndexedDB {}: {fault}; reopening the database", self.name).into());
                let db = self.reconnect(doing).await?;
                operation(db).await.map_err(|fault| fault.into_store_error(doing))
            }
            result => result.map_err(|fault| fault.into_store_error(doing)),
        }
    }

    /// Reads every entry of `store`, remembering the unreadable ones as they
    /// are for [`Store::recreate`].
    async fn load_store(&self, doing: &str, store: &'static str) -> Result<LoadedRecords, StoreError> {
        let (loaded, unreadable) = self.with_reconnect(doing, |db| load_entries(db, store)).await?;
        let mut seen = self.unreadable_seen.borrow_mut();
        seen.retain(|(seen_in, _)| *seen_in != store);
        if !unreadable.is_empty() {
            seen.push((store, unreadable));
        }
        Ok(loaded)
    }

    /// Reopens the database, never creating it: one deleted behind the
    /// store closes the store, and every operation fails with
    /// [`StoreError::Deleted`] until the runtime, which holds the records,
    /// has it made again ([`Store::recreate`]).
    async fn reconnect(&self, doing: &str) -> Result<IdbDatabase, StoreError> {
        let opened = match open_database(&self.name, IfMissing::Refuse).await {
            Ok(opened) => opened,
            Err(fault) => {
                if fault.name == DATABASE_DELETED {
                    self.close();
                    self.deleted.set(true);
                }
                return Err(fault.into_store_error(doing));
            }
        };
        let mut slot = self.connection.borrow_mut();
        if slot.is_none() {
            // Closed while reopening: stay closed.
            drop(Connection::new(opened.db));
            return Err(StoreError::Unavailable(format!("{doing}: the store was closed")));
        }
        let db = opened.db.clone();
        *slot = Some(Connection::new(opened.db));
        Ok(db)
    }
}

impl Store for IdbStore {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        // Everything is computed before the transaction opens: it must not
        // wait on anything but its own requests, or it commits early.
        let entry = channel_entry(record);
        let key = record.key();
        let replaced = replaces.map(ChannelId::to_string).filter(|old| *old != key);
        let doing = format!("writing the record of channel {key}");
        let tombstone = record.is_tombstone();
        self.with_reconnect(&doing, |db| {
            write_channel(db, &entry, &key, tombstone, replaced.as_deref())
        })
        .await
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let key = channel_id.to_string();
        let doing = format!("reading the record of channel {key}");
        let entry = self.with_reconnect(&doing, |db| read_channel(db, &key)).await?;
        if entry.is_undefined() {
            return Ok(None);
        }
        record_from_entry(&entry, &EntryFields::new())
            .map(Some)
            .map_err(|error| StoreError::Unavailable(error.to_string()))
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        let mut loaded = self.load_live().await?;
        let tombstones = self.load_tombstones().await?;
        loaded.records.extend(tombstones.records);
        loaded.unreadable.extend(tombstones.unreadable);
        Ok(loaded)
    }

    async fn load_live(&self) -> Result<LoadedRecords, StoreError> {
        self.load_store("loading the records", CHANNELS).await
    }

    async fn load_tombstones(&self) -> Result<LoadedRecords, StoreError> {
        self.load_store("loading the closed flows' records", TOMBSTONES).await
    }

    /// Creates the deleted database again and writes `records` and the
    /// `meta` entries this store saw into it, in one strict transaction;
    /// the store is open again once that is durable.
    async fn recreate(&self, records: &[&ChannelRecord]) -> Result<(), StoreError> {
        let doing = "creating the deleted database again";
        if !self.deleted.get() {
            // Only a database found deleted: a store closed on purpose stays closed.
            return Err(StoreError::Unavailable(format!(
                "{doing}: the store was not found deleted"
            )));
        }
        // Unreadable first: a record the node holds under the same key wins.
        let entries: Vec<(Object, bool)> = self
            .unreadable_seen
            .borrow()
            .iter()
            .flat_map(|(store, raw)| {
                raw.iter()
                    .map(|entry| (entry.clone().unchecked_into(), *store == TOMBSTONES))
            })
            .chain(
                records
                    .iter()
                    .map(|record| (channel_entry(record), record.is_tombstone())),
            )
            .collect();
        let meta: Vec<(String, Uint8Array)> = self
            .meta_seen
            .borrow()
            .iter()
            .map(|(key, bytes)| (key.clone(), Uint8Array::from(bytes.as_slice())))
            .collect();
        let opened = open_database(&self.name, IfMissing::Create)
            .await
            .map_err(|fault| fault.into_store_error(doing))?;
        if let Err(fault) = write_everything(opened.db.clone(), &entries, &meta).await {
            opened.db.close();
            return Err(fault.into_store_error(doing));
        }
        *self.connection.borrow_mut() = Some(Connection::new(opened.db));
        self.deleted.set(false);
        Ok(())
    }
}

/// The [`StoreError`] for a `DOMException` the browser raised while `doing`
/// something. Quota and transaction failures leave the stored records as they
/// were, and say so.
pub fn store_error_from_dom(doing: &str, exception: &DomException) -> StoreError {
    IdbFault::from_js(exception).into_store_error(doing)
}

// ---- the stored entries ----------------------------------------------------------------

fn channel_entry(record: &ChannelRecord) -> Object {
    let bytes = Uint8Array::from(&record.encode()[..]);
    let temporary_channel_id = JsValue::from_str(&record.temporary_channel_id.to_string());
    entry_object(&record.key(), &temporary_channel_id, &bytes)
}

fn entry_object(channel_id: &str, temporary_channel_id: &JsValue, record: &JsValue) -> Object {
    let entry = Object::new();
    set_field(&entry, "channel_id", &JsValue::from_str(channel_id));
    set_field(&entry, "temporary_channel_id", temporary_channel_id);
    set_field(&entry, "record", record);
    entry
}

fn set_field(object: &Object, name: &str, value: &JsValue) {
    Reflect::set(object, &JsValue::from_str(name), value).expect("a plain object takes any property");
}

fn field(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// A key as text, for keys that should have been strings but may not be.
fn key_text(key: &JsValue) -> String {
    key.as_string()
        .or_else(|| js_sys::JSON::stringify(key).ok().map(String::from))
        .unwrap_or_else(|| format!("{key:?}"))
}

/// A schema 1 entry rewritten in today's shape, and whether it is a
/// tombstone's. One that cannot be read keeps its value as it was, stays
/// with the live entries (nothing says it is closed), and says why it is
/// unreadable.
fn entry_from_v1(key: &JsValue, value: &JsValue) -> (Object, bool) {
    let channel_id = key_text(key);
    let decoded = match value.as_string() {
        Some(json) => ChannelRecord::decode(&channel_id, json.as_bytes()),
        None => Err(RecordDecodeError {
            channel_id: channel_id.clone(),
            reason: "the stored value is not record JSON".into(),
        }),
    };
    match decoded {
        Ok(record) => {
            let temporary_channel_id = JsValue::from_str(&record.temporary_channel_id.to_string());
            let entry = entry_object(&channel_id, &temporary_channel_id, value);
            (entry, record.is_tombstone())
        }
        Err(error) => {
            let entry = entry_object(&channel_id, &JsValue::NULL, value);
            set_field(&entry, "unreadable", &JsValue::from_str(&error.reason));
            (entry, false)
        }
    }
}

/// The names of the entry fields read from every entry, as JS strings made
/// once per read rather than once per entry (a boot reads a thousand).
struct EntryFields {
    channel_id: JsValue,
    record: JsValue,
}

impl EntryFields {
    fn new() -> Self {
        Self {
            channel_id: JsValue::from_str("channel_id"),
            record: JsValue::from_str("record"),
        }
    }

    fn get(entry: &JsValue, name: &JsValue) -> JsValue {
        Reflect::get(entry, name).unwrap_or(JsValue::UNDEFINED)
    }
}

/// The largest record taken from storage; anything larger is reported
/// unreadable before it is copied in. A record is a few KB: its largest
/// part, the funding tx, is at most 60,000 bytes (a v1/v2 JSON record
/// holds it as hex, twice that).
pub const MAX_STORED_RECORD_BYTES: u32 = 4 << 20;

/// The length of a stored `record` field, read without copying it: bytes
/// for binary, UTF-16 units for JSON text (at least its UTF-8 length / 3).
fn stored_size(stored: &JsValue) -> u32 {
    if let Some(bytes) = stored.dyn_ref::<Uint8Array>() {
        bytes.length()
    } else if let Some(buffer) = stored.dyn_ref::<js_sys::ArrayBuffer>() {
        buffer.byte_length()
    } else if let Some(text) = stored.dyn_ref::<js_sys::JsString>() {
        text.length()
    } else {
        0
    }
}

fn record_from_entry(entry: &JsValue, fields: &EntryFields) -> Result<ChannelRecord, RecordDecodeError> {
    let channel_id = key_text(&EntryFields::get(entry, &fields.channel_id));
    let fail = |reason: String| RecordDecodeError {
        channel_id: channel_id.clone(),
        reason,
    };
    let stored = EntryFields::get(entry, &fields.record);
    let size = stored_size(&stored);
    if size > MAX_STORED_RECORD_BYTES {
        return Err(fail(format!(
            "the stored entry holds {size} bytes, more than any record ({MAX_STORED_RECORD_BYTES})"
        )));
    }
    let bytes = if let Some(bytes) = stored.dyn_ref::<Uint8Array>() {
        bytes.to_vec()
    } else if stored.is_instance_of::<js_sys::ArrayBuffer>() {
        Uint8Array::new(&stored).to_vec()
    } else if let Some(json) = stored.as_string() {
        // Written by a module of record schema 1 or 2.
        json.into_bytes()
    } else {
        let reason = match field(entry, "unreadable").as_string() {
            Some(reason) => format!("unreadable since the upgrade from schema 1: {reason}"),
            None => "the stored entry holds neither record bytes nor record JSON".into(),
        };
        return Err(fail(reason));
    };
    let record = ChannelRecord::decode(&channel_id, &bytes)?;
    if record.key() != channel_id {
        return Err(fail(format!("the entry holds the record of channel {}", record.key())));
    }
    Ok(record)
}

// ---- operations, one transaction each ------------------------------------------------

/// A `readwrite` transaction over `stores` that commits only once the OS
/// has flushed it.
fn strict_write(db: &IdbDatabase, stores: &[&str]) -> Result<IdbTransaction, IdbFault> {
    let options = IdbTransactionOptions::new();
    options.set_durability(IdbTransactionDurability::Strict);
    let stores: Vec<js_sys::JsString> = stores.iter().map(|store| (*store).into()).collect();
    db.transaction_with_str_sequence_and_mode_and_options(&stores, IdbTransactionMode::Readwrite, &options)
        .map_err(|error| IdbFault::from_js(&error))
}

fn read_only(db: &IdbDatabase, store: &str) -> Result<IdbObjectStore, IdbFault> {
    db.transaction_with_str_and_mode(store, IdbTransactionMode::Readonly)
        .and_then(|tx| tx.object_store(store))
        .map_err(|error| IdbFault::from_js(&error))
}

/// Issues a transaction's requests; if one cannot even be issued, aborts the
/// transaction so that none of the others commits alone.
fn issue_all(tx: &IdbTransaction, issue: impl FnOnce() -> Result<(), JsValue>) -> Result<(), IdbFault> {
    issue().map_err(|error| {
        let _ = tx.abort();
        IdbFault::from_js(&error)
    })
}

/// Files the entry of channel `key` in `channels`, or, a `tombstone`'s, in
/// `tombstones` and out of `channels`; deletes the entry under `replaced`
/// from `channels`. One transaction: all of it lands, or none.
async fn write_channel(
    db: IdbDatabase,
    entry: &Object,
    key: &str,
    tombstone: bool,
    replaced: Option<&str>,
) -> Result<(), IdbFault> {
    let tx = strict_write(
        &db,
        if tombstone {
            &[CHANNELS, TOMBSTONES]
        } else {
            &[CHANNELS]
        },
    )?;
    issue_all(&tx, || {
        let channels = tx.object_store(CHANNELS)?;
        if tombstone {
            tx.object_store(TOMBSTONES)?.put(entry)?;
            channels.delete(&JsValue::from_str(key))?;
        } else {
            channels.put(entry)?;
        }
        if let Some(old) = replaced {
            channels.delete(&JsValue::from_str(old))?;
        }
        Ok(())
    })?;
    committed(&tx).await
}

/// Files every entry (each `(entry, is a tombstone)`) and every `meta`
/// value in one transaction.
async fn write_everything(
    db: IdbDatabase,
    entries: &[(Object, bool)],
    meta: &[(String, Uint8Array)],
) -> Result<(), IdbFault> {
    let tx = strict_write(&db, &[CHANNELS, TOMBSTONES, META])?;
    issue_all(&tx, || {
        let (channels, tombstones) = (tx.object_store(CHANNELS)?, tx.object_store(TOMBSTONES)?);
        for (entry, tombstone) in entries {
            if *tombstone {
                tombstones.put(entry)?;
            } else {
                channels.put(entry)?;
            }
        }
        let meta_store = tx.object_store(META)?;
        for (key, value) in meta {
            meta_store.put_with_key(value, &JsValue::from_str(key))?;
        }
        Ok(())
    })?;
    committed(&tx).await
}

async fn write_meta(db: IdbDatabase, key: &str, value: &Uint8Array) -> Result<(), IdbFault> {
    let tx = strict_write(&db, &[META])?;
    issue_all(&tx, || {
        tx.object_store(META)?
            .put_with_key(value, &JsValue::from_str(key))
            .map(drop)
    })?;
    committed(&tx).await
}

/// The entry filed under `key`, live or a tombstone; `undefined` if none.
async fn read_channel(db: IdbDatabase, key: &str) -> Result<JsValue, IdbFault> {
    let fault = |error: JsValue| IdbFault::from_js(&error);
    let stores = Array::of2(&JsValue::from_str(CHANNELS), &JsValue::from_str(TOMBSTONES));
    let tx = db
        .transaction_with_str_sequence_and_mode(&stores, IdbTransactionMode::Readonly)
        .map_err(fault)?;
    let key = JsValue::from_str(key);
    let live = tx
        .object_store(CHANNELS)
        .and_then(|store| store.get(&key))
        .map_err(fault)?;
    let tombstone = tx
        .object_store(TOMBSTONES)
        .and_then(|store| store.get(&key))
        .map_err(fault)?;
    let entry = request_result(&live).await?;
    if !entry.is_undefined() {
        return Ok(entry);
    }
    request_result(&tombstone).await
}

/// Entries per request when a boot reads every channel.
pub const LOAD_CHUNK: u32 = 128;

/// Every entry of `store` (`channels` or `tombstones`), decoded (with the
/// entries that could not be, as they are), in one
/// transaction and in runs of [`LOAD_CHUNK`] entries in key order: each run
/// is asked for as soon as the one before it arrives, before that one is
/// decoded, so the browser reads the next run from disk while the page
/// decodes (a single `getAll` of a thousand 2.5 KB records left the page
/// idle for the whole read, then busy). A run shorter than [`LOAD_CHUNK`] is
/// the last.
async fn load_entries(db: IdbDatabase, store: &str) -> Result<(LoadedRecords, Vec<JsValue>), IdbFault> {
    let fault = |error: JsValue| IdbFault::from_js(&error);
    let object_store = read_only(&db, store)?;
    let fields = EntryFields::new();
    let mut request = object_store
        .get_all_with_key_and_limit(&JsValue::UNDEFINED, LOAD_CHUNK)
        .map_err(fault)?;
    let (mut loaded, mut unreadable) = (LoadedRecords::default(), Vec::new());
    // The last key of the runs read so far.
    let mut read_up_to: Option<JsValue> = None;
    loop {
        let entries: Array = match request_result(&request).await {
            Ok(entries) => entries.unchecked_into(),
            Err(fault) if fault.is_connection_lost() => return Err(fault),
            Err(fault) => {
                // One value the browser cannot read fails its whole run: the
                // rest is read entry by entry, so it costs only itself.
                web_sys::console::warn_1(&format!("IndexedDB {store}: {fault}; reading entry by entry").into());
                load_entry_by_entry(&db, store, read_up_to.as_ref(), &fields, &mut loaded, &mut unreadable).await?;
                return Ok((loaded, unreadable));
            }
        };
        let full = entries.length() == LOAD_CHUNK;
        if full {
            // The run after the last key read (the key path is `channel_id`).
            let last = EntryFields::get(&entries.get(LOAD_CHUNK - 1), &fields.channel_id);
            let after = IdbKeyRange::lower_bound_with_open(&last, true).map_err(fault)?;
            request = object_store
                .get_all_with_key_and_limit(&after, LOAD_CHUNK)
                .map_err(fault)?;
            read_up_to = Some(last);
        }
        for entry in entries.iter() {
            take_entry(entry, &fields, &mut loaded, &mut unreadable);
        }
        if !full {
            return Ok((loaded, unreadable));
        }
    }
}

/// Decodes one stored entry into `loaded`, or keeps it as it is in
/// `unreadable` with the reason in `loaded`.
fn take_entry(entry: JsValue, fields: &EntryFields, loaded: &mut LoadedRecords, unreadable: &mut Vec<JsValue>) {
    match record_from_entry(&entry, fields) {
        Ok(record) => loaded.records.push(record),
        Err(error) => {
            loaded.unreadable.push(error);
            unreadable.push(entry);
        }
    }
}

/// The entries of `store` after key `after` (all without one), each read
/// on its own: the browser could not read one of them, and one such value
/// fails a whole `getAll` (Chromium keeps a value over 64 KB in a file of
/// its own; with that file gone, reading it is a `NotReadableError`). Keys
/// can always be read. An entry that cannot be read is reported under its
/// key and left in place; having no bytes of it, a [`Store::recreate`]
/// cannot write it back.
async fn load_entry_by_entry(
    db: &IdbDatabase,
    store: &str,
    after: Option<&JsValue>,
    fields: &EntryFields,
    loaded: &mut LoadedRecords,
    unreadable: &mut Vec<JsValue>,
) -> Result<(), IdbFault> {
    let fault = |error: JsValue| IdbFault::from_js(&error);
    let object_store = read_only(db, store)?;
    let range = match after {
        Some(key) => IdbKeyRange::lower_bound_with_open(key, true).map_err(fault)?.into(),
        None => JsValue::UNDEFINED,
    };
    let keys: Array = request_result(&object_store.get_all_keys_with_key(&range).map_err(fault)?)
        .await?
        .unchecked_into();
    // Every read is asked for at once; a failed one does not end the transaction.
    let reads = keys
        .iter()
        .map(|key| Ok((object_store.get(&key).map_err(fault)?, key)))
        .collect::<Result<Vec<_>, IdbFault>>()?;
    for (request, key) in reads {
        match read_result(&request).await {
            Ok(entry) if entry.is_undefined() => {}
            Ok(entry) => take_entry(entry, fields, loaded, unreadable),
            Err(fault) if fault.is_connection_lost() => return Err(fault),
            Err(fault) => loaded.unreadable.push(RecordDecodeError {
                channel_id: key_text(&key),
                reason: format!("the browser cannot read the stored entry ({fault})"),
            }),
        }
    }
    Ok(())
}

async fn read_meta(db: IdbDatabase, key: &str) -> Result<JsValue, IdbFault> {
    let request = read_only(&db, META)?
        .get(&JsValue::from_str(key))
        .map_err(|error| IdbFault::from_js(&error))?;
    request_result(&request).await
}

// ---- opening and upgrading --------------------------------------------------------------

/// An open database, closed when dropped. It gives way when a newer version
/// is opened elsewhere (another tab, after an update) instead of blocking it;
/// the next operation here then reopens.
struct Connection {
    db: IdbDatabase,
    _on_version_change: Closure<dyn FnMut(Event)>,
}

impl Connection {
    fn new(db: IdbDatabase) -> Self {
        let to_close = db.clone();
        let on_version_change = Closure::<dyn FnMut(Event)>::new(move |_: Event| to_close.close());
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Connection {
            db,
            _on_version_change: on_version_change,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

struct Opened {
    db: IdbDatabase,
    /// The database did not exist before.
    created: bool,
}

/// The IndexedDB factory of this global scope, a window or a worker alike.
fn idb_factory() -> Result<IdbFactory, IdbFault> {
    let factory =
        Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB")).map_err(|error| IdbFault::from_js(&error))?;
    if factory.is_undefined() || factory.is_null() {
        return Err(IdbFault::new("NotSupportedError", "IndexedDB is not available here"));
    }
    Ok(factory.unchecked_into())
}

/// Whether opening may create the database: a boot may; a reconnect may not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfMissing {
    Create,
    Refuse,
}

/// The name of the fault a reconnect meets when the database is gone.
const DATABASE_DELETED: &str = "DatabaseDeleted";

async fn open_database(name: &str, if_missing: IfMissing) -> Result<Opened, IdbFault> {
    let request = idb_factory()?
        .open_with_u32(name, IDB_SCHEMA_VERSION)
        .map_err(|error| IdbFault::from_js(&error))?;
    let created = Rc::new(Cell::new(false));
    // Why the upgrade aborted, which the open request's own error does not say.
    let upgrade_fault = Rc::new(RefCell::new(None::<IdbFault>));
    // Listeners the upgrade sets on its requests; they live until the open settles.
    let upgrade_listeners = Rc::new(RefCell::new(Vec::new()));

    let mut listeners = EventListeners::new(&request);
    {
        let (request, created, upgrade_fault) = (request.clone(), created.clone(), upgrade_fault.clone());
        let upgrade_listeners = upgrade_listeners.clone();
        listeners.on("upgradeneeded", move |event| {
            let old_version = event.unchecked_ref::<IdbVersionChangeEvent>().old_version() as u32;
            created.set(old_version == 0);
            let Some(tx) = request.transaction() else {
                return;
            };
            if old_version == 0 && if_missing == IfMissing::Refuse {
                // Created again here, it would be empty: no node secret, no
                // record, and a node writing on into it would commit funds
                // whose keys no reload could find. Only `Store::recreate`,
                // given every record, makes it again.
                let deleted = IdbFault::new(
                    DATABASE_DELETED,
                    "the database was deleted while this page ran (site data cleared, or evicted); \
                     nothing is written until it is made again with the node key and every record",
                );
                abort_upgrade(&tx, &upgrade_fault, deleted);
                return;
            }
            let upgraded = request
                .result()
                .map_err(|error| IdbFault::from_js(&error))
                .and_then(|db| {
                    let upgrade = Upgrade {
                        db: db.unchecked_into(),
                        tx: tx.clone(),
                        fault: upgrade_fault.clone(),
                    };
                    upgrade.run(old_version, &mut upgrade_listeners.borrow_mut())
                });
            if let Err(fault) = upgraded {
                abort_upgrade(&tx, &upgrade_fault, fault);
            }
        });
    }
    let name = name.to_owned();
    listeners.on("blocked", move |_| {
        web_sys::console::warn_1(
            &format!("IndexedDB {name}: waiting for other tabs to close their older connection").into(),
        );
    });

    let opened = request_result(&request).await;
    drop(listeners);
    drop(upgrade_listeners);
    match opened {
        Ok(db) => Ok(Opened {
            db: db.unchecked_into(),
            created: created.get(),
        }),
        Err(fault) => Err(upgrade_fault.take().unwrap_or(fault)),
    }
}

fn abort_upgrade(tx: &IdbTransaction, upgrade_fault: &RefCell<Option<IdbFault>>, fault: IdbFault) {
    upgrade_fault.borrow_mut().get_or_insert(fault);
    let _ = tx.abort();
}

/// The schema changes from one version to the next, run inside the
/// `versionchange` transaction (only its own requests may run there).
struct Upgrade {
    db: IdbDatabase,
    tx: IdbTransaction,
    fault: Rc<RefCell<Option<IdbFault>>>,
}

impl Upgrade {
    fn run(self, old_version: u32, listeners: &mut Vec<EventListeners>) -> Result<(), IdbFault> {
        if old_version < 1 {
            // `meta` has not changed since version 1.
            self.db
                .create_object_store(META)
                .map_err(|error| IdbFault::from_js(&error))?;
        }
        if old_version < 3 {
            self.db
                .create_object_store_with_optional_parameters(TOMBSTONES, &keyed_by_channel_id())
                .map_err(|error| IdbFault::from_js(&error))?;
        }
        match old_version {
            0 => create_channels_store(&self.db)
                .map(drop)
                .map_err(|error| IdbFault::from_js(&error)),
            1 => self.migrate_channels_from_v1(listeners),
            2 => self.move_tombstones_from_v2(listeners),
            _ => Ok(()),
        }
    }

    /// Moves the tombstones out of `channels` and drops the `pending` index:
    /// only finished entries (`pending` 0) can be a tombstone, so only those
    /// are read, through the index, and decoded.
    fn move_tombstones_from_v2(self, listeners: &mut Vec<EventListeners>) -> Result<(), IdbFault> {
        let finished = self
            .tx
            .object_store(CHANNELS)
            .and_then(|channels| channels.index(PENDING_INDEX))
            .and_then(|index| index.get_all_with_key(&JsValue::from(0u8)))
            .map_err(|error| IdbFault::from_js(&error))?;
        let mut on_finished = EventListeners::new(&finished);
        let request = finished.clone();
        on_finished.on("success", move |_| {
            let moved = (|| {
                let entries: Array = request.result()?.unchecked_into();
                let channels = self.tx.object_store(CHANNELS)?;
                let tombstones = self.tx.object_store(TOMBSTONES)?;
                let fields = EntryFields::new();
                for entry in entries.iter() {
                    if record_from_entry(&entry, &fields).is_ok_and(|record| record.is_tombstone()) {
                        tombstones.put(&entry)?;
                        channels.delete(&EntryFields::get(&entry, &fields.channel_id))?;
                    }
                }
                channels.delete_index(PENDING_INDEX)?;
                Ok::<_, JsValue>(())
            })();
            if let Err(error) = moved {
                abort_upgrade(&self.tx, &self.fault, IdbFault::from_js(&error));
            }
        });
        listeners.push(on_finished);
        Ok(())
    }

    /// Reads every schema 1 entry, replaces the store (its key path changes)
    /// and writes each entry back in the schema 2 shape.
    fn migrate_channels_from_v1(self, listeners: &mut Vec<EventListeners>) -> Result<(), IdbFault> {
        let issued = (|| {
            let v1 = self.tx.object_store(CHANNELS)?;
            Ok::<_, JsValue>((v1.get_all_keys()?, v1.get_all()?))
        })();
        let (keys, values) = issued.map_err(|error| IdbFault::from_js(&error))?;
        let mut on_values = EventListeners::new(&values);
        let values_request = values.clone();
        on_values.on("success", move |_| {
            // Requests on one store succeed in order: the keys are in too.
            let rewritten = (|| {
                let keys: Array = keys.result()?.unchecked_into();
                let values: Array = values_request.result()?.unchecked_into();
                self.db.delete_object_store(CHANNELS)?;
                let channels = create_channels_store(&self.db)?;
                let tombstones = self.tx.object_store(TOMBSTONES)?;
                for (key, value) in keys.iter().zip(values.iter()) {
                    let (entry, is_tombstone) = entry_from_v1(&key, &value);
                    if is_tombstone {
                        tombstones.put(&entry)?;
                    } else {
                        channels.put(&entry)?;
                    }
                }
                Ok::<_, JsValue>(())
            })();
            if let Err(error) = rewritten {
                abort_upgrade(&self.tx, &self.fault, IdbFault::from_js(&error));
            }
        });
        listeners.push(on_values);
        Ok(())
    }
}

fn keyed_by_channel_id() -> IdbObjectStoreParameters {
    let parameters = IdbObjectStoreParameters::new();
    parameters.set_key_path(&JsValue::from_str("channel_id"));
    parameters
}

fn create_channels_store(db: &IdbDatabase) -> Result<IdbObjectStore, JsValue> {
    db.create_object_store_with_optional_parameters(CHANNELS, &keyed_by_channel_id())
}

/// Asks the browser not to evict this site's storage. Only a window can ask
/// (`persist()` is not exposed to workers); `None` when it cannot.
async fn request_persistence() -> Option<bool> {
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let storage = Reflect::get(&navigator, &JsValue::from_str("storage")).ok()?;
    let persist: js_sys::Function = Reflect::get(&storage, &JsValue::from_str("persist"))
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: js_sys::Promise = persist.call0(&storage).ok()?.dyn_into().ok()?;
    // Firefox answers only once the user chose in a prompt, which may never
    // happen: the open (and the tab's lock) must not wait for it.
    let no_answer = super::platform::timeout(PERSIST_ANSWER_WAIT_MS);
    let first = js_sys::Promise::race(&js_sys::Array::of2(&promise, &no_answer));
    JsFuture::from(first).await.ok()?.as_bool()
}

/// How long the first open waits for `navigator.storage.persist()`.
const PERSIST_ANSWER_WAIT_MS: u64 = 1_000;

// ---- browser failures --------------------------------------------------------------------

/// A failure as the browser reported it: the `DOMException`'s name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdbFault {
    name: String,
    message: String,
}

impl fmt::Display for IdbFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl IdbFault {
    fn new(name: &str, message: &str) -> Self {
        IdbFault {
            name: name.to_owned(),
            message: message.to_owned(),
        }
    }

    fn from_js(value: &JsValue) -> Self {
        let text = |name: &str| field(value, name).as_string();
        match (text("name"), text("message")) {
            (Some(name), Some(message)) => IdbFault { name, message },
            _ => IdbFault {
                name: "Error".into(),
                message: value.as_string().unwrap_or_else(|| format!("{value:?}")),
            },
        }
    }

    /// The browser closed the connection under us: Chromium once it is closed
    /// (`InvalidStateError`), WebKit for a backgrounded tab.
    fn is_connection_lost(&self) -> bool {
        self.name == "InvalidStateError" || self.message.contains("Connection to Indexed Database server lost")
    }

    fn into_store_error(self, doing: &str) -> StoreError {
        match self.name.as_str() {
            "QuotaExceededError" => StoreError::QuotaExceeded(format!(
                "{doing}: the browser's storage for this site is full ({self}); nothing was written and the \
                 previous record is intact"
            )),
            "AbortError"
            | "ConstraintError"
            | "DataError"
            | "DataCloneError"
            | "TransactionInactiveError"
            | "ReadOnlyError" => StoreError::Aborted(format!(
                "{doing}: {self}; nothing was written and the previous record is intact"
            )),
            DATABASE_DELETED => StoreError::Deleted(format!("{doing}: {self}")),
            _ => StoreError::Unavailable(format!("{doing}: {self}")),
        }
    }
}

// ---- IDB events as futures -------------------------------------------------------------

/// Event listeners on one target, removed when this is dropped so that the
/// browser never calls a closure that is gone.
struct EventListeners {
    target: EventTarget,
    listeners: Vec<(&'static str, Listener)>,
}

type Listener = Closure<dyn FnMut(Event)>;

impl EventListeners {
    fn new(target: &EventTarget) -> Self {
        EventListeners {
            target: target.clone(),
            listeners: Vec::new(),
        }
    }

    fn on(&mut self, event: &'static str, listener: impl FnMut(Event) + 'static) {
        let listener = Listener::new(listener);
        self.target
            .add_event_listener_with_callback(event, listener.as_ref().unchecked_ref())
            .expect("an IDB object accepts listeners");
        self.listeners.push((event, listener));
    }
}

impl Drop for EventListeners {
    fn drop(&mut self) {
        for (event, listener) in &self.listeners {
            let _ = self
                .target
                .remove_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
        }
    }
}

type Outcome<T> = Rc<Cell<Option<oneshot::Sender<Result<T, IdbFault>>>>>;

fn settle<T>(outcome: &Outcome<T>, result: Result<T, IdbFault>) {
    if let Some(sender) = outcome.take() {
        let _ = sender.send(result);
    }
}

fn dropped_listener() -> IdbFault {
    IdbFault::new("AbortError", "the request was dropped before it settled")
}

/// A request's result once it succeeds, or its error.
async fn request_result(request: &IdbRequest) -> Result<JsValue, IdbFault> {
    let (sender, receiver) = oneshot::channel();
    let outcome: Outcome<JsValue> = Rc::new(Cell::new(Some(sender)));
    let mut listeners = EventListeners::new(request);
    {
        let (outcome, request) = (outcome.clone(), request.clone());
        listeners.on("success", move |_| {
            settle(&outcome, request.result().map_err(|error| IdbFault::from_js(&error)));
        });
    }
    {
        let (outcome, request) = (outcome.clone(), request.clone());
        listeners.on("error", move |_| {
            let fault = match request.error() {
                Ok(Some(exception)) => IdbFault::from_js(&exception),
                Ok(None) => IdbFault::new("UnknownError", "the request failed without an error"),
                Err(error) => IdbFault::from_js(&error),
            };
            settle(&outcome, Err(fault));
        });
    }
    receiver.await.unwrap_or_else(|_| Err(dropped_listener()))
}

/// A read's result once it succeeds, or its error; unlike
/// [`request_result`], a failed read does not abort its transaction, so
/// the reads asked for after it still answer. For reads only: a write's
/// failure must abort its transaction.
async fn read_result(request: &IdbRequest) -> Result<JsValue, IdbFault> {
    let mut keep_transaction = EventListeners::new(request);
    keep_transaction.on("error", |event: Event| event.prevent_default());
    request_result(request).await
}

/// Waits for a transaction to commit. An abort carries the transaction's error
/// (say `QuotaExceededError`), or none when it was aborted on purpose.
async fn committed(tx: &IdbTransaction) -> Result<(), IdbFault> {
    let (sender, receiver) = oneshot::channel();
    let outcome: Outcome<()> = Rc::new(Cell::new(Some(sender)));
    let mut listeners = EventListeners::new(tx);
    {
        let outcome = outcome.clone();
        listeners.on("complete", move |_| settle(&outcome, Ok(())));
    }
    {
        let (outcome, tx) = (outcome.clone(), tx.clone());
        listeners.on("abort", move |_| {
            let fault = match tx.error() {
                Some(exception) => IdbFault::from_js(&exception),
                None => IdbFault::new("AbortError", "the transaction was aborted"),
            };
            settle(&outcome, Err(fault));
        });
    }
    receiver.await.unwrap_or_else(|_| Err(dropped_listener()))
}
