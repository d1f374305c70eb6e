//! A durable [`Store`] in one redb file, for the native counterparty.
//!
//! Every `put` (and every `put_all`, a group commit) is one redb write
//! transaction committed with
//! [`Durability::Immediate`] (fsync before the commit returns), so a record the
//! driver was told is stored survives `kill -9` and power loss, and a write cut
//! short leaves the previous record in place. Records are the bytes of
//! [`ChannelRecord::encode`] filed under [`ChannelRecord::key`]; a small `meta`
//! table holds node-level values such as the node key.
//!
//! As in the browser's IndexedDB store, closed flows' tombstones
//! ([`ChannelRecord::is_tombstone`]) are filed in a table of their own, so a
//! boot ([`Store::load_live`]) never reads them, however many there are. A
//! file from before that layout has its tombstones moved when it is opened.
//!
//! ```no_run
//! use fiber_funding::native::redb_store::RedbStore;
//! use fiber_funding::store::Store;
//!
//! let store = RedbStore::open("/var/lib/fiber-counterparty/channels.redb")?;
//! let loaded = futures::executor::block_on(store.load_all())?;
//! for unreadable in &loaded.unreadable {
//!     eprintln!("kept but not restored: {unreadable}");
//! }
//! # Ok::<(), fiber_funding::store::StoreError>(())
//! ```

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::flow::record::ChannelRecord;
use crate::primitives::ChannelId;
use crate::store::{LoadedRecords, Store, StoreError};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Channel records: channel id (`0x`-hex) to the record's bytes (schemas 3 to 5,
/// or the JSON of schemas 1 and 2 from an earlier module).
const CHANNELS: Table = TableDefinition::new("channels");
/// Closed flows' tombstones, filed like `channels`: read after a boot, never by it.
const TOMBSTONES: Table = TableDefinition::new("tombstones");
/// Node-level values (the node key), by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `meta` entry holding the records' filing ([`FILING`]); a file without
/// it has every record in `channels`.
const FILING_KEY: &str = "records_filing";
/// Version 2 of the filing: tombstones in `tombstones`.
const FILING: &[u8] = &[2];

/// Channel records in a redb database file. Clones share the database.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbStore({})", self.path.display())
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating it (readable by the owner only:
    /// it holds the node key) if it does not exist. Fails with
    /// [`StoreError::Unavailable`] when another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = Database::builder()
            .create_file(file)
            .map_err(|e| failure(&path, "open", e))?;
        let store = RedbStore { db: Arc::new(db), path };
        // Every table exists from the start, so readers never meet a missing table.
        let mut filing = None;
        store.write(|tx| {
            tx.open_table(CHANNELS)?;
            tx.open_table(TOMBSTONES)?;
            let mut meta = tx.open_table(META)?;
            filing = meta.get(FILING_KEY)?.map(|value| value.value().to_vec());
            if filing.is_none() {
                file_tombstones_apart(tx)?;
                meta.insert(FILING_KEY, FILING)?;
            }
            Ok(())
        })?;
        match filing {
            Some(newer) if newer != FILING => Err(StoreError::Unavailable(format!(
                "{} files its records in a layout this module does not know ({newer:?}): written by a newer module",
                store.path.display()
            ))),
            _ => Ok(store),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A node-level value, e.g. the node key.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| failure(&self.path, "read", e))?;
        let table = tx.open_table(META).map_err(|e| failure(&self.path, "read", e))?;
        let value = table.get(name).map_err(|e| failure(&self.path, "read", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Stores a node-level value durably (fsync before returning).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(META)?.insert(name, value)?;
            Ok(())
        })
    }

    /// The stored bytes under `key`, decodable or not (for inspection and tests).
    pub fn raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lookup(key)?.map(|(bytes, _)| bytes))
    }

    /// The table that holds the record under `key` (for inspection and tests).
    pub fn filed(&self, key: &str) -> Result<Option<Filed>, StoreError> {
        Ok(self.lookup(key)?.map(|(_, filed)| filed))
    }

    fn lookup(&self, key: &str) -> Result<Option<(Vec<u8>, Filed)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| failure(&self.path, "read", e))?;
        for (table, filed) in [(CHANNELS, Filed::Channels), (TOMBSTONES, Filed::Tombstones)] {
            let table = tx.open_table(table).map_err(|e| failure(&self.path, "read", e))?;
            if let Some(value) = table.get(key).map_err(|e| failure(&self.path, "read", e))? {
                return Ok(Some((value.value().to_vec(), filed)));
            }
        }
        Ok(None)
    }

    /// Stores raw bytes under a key, as a damaged or foreign record would be.
    pub fn insert_raw(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(CHANNELS)?.insert(key, bytes)?;
            Ok(())
        })
    }

    /// One write transaction, committed with fsync.
    fn write(&self, body: impl FnOnce(&redb::WriteTransaction) -> Result<(), WriteFailure>) -> Result<(), StoreError> {
        write_durably(&self.db, &self.path, body)
    }

    /// All of `writes` in one transaction: one fsync for the lot. Each is
    /// filed in `channels`, or, a tombstone's, in `tombstones` and out of
    /// `channels`; the record under the id it replaces leaves `channels`.
    fn put_all_blocking(&self, writes: &[EncodedWrite]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut channels = tx.open_table(CHANNELS)?;
            let mut tombstones = tx.open_table(TOMBSTONES)?;
            for write in writes {
                let key = write.key.as_str();
                if let Some(old) = write.replaces.as_deref().filter(|old| *old != key) {
                    channels.remove(old)?;
                }
                if write.tombstone {
                    channels.remove(key)?;
                    tombstones.insert(key, write.bytes.as_slice())?;
                } else {
                    channels.insert(key, write.bytes.as_slice())?;
                }
            }
            Ok(())
        })
    }

    fn get_blocking(&self, key: &str) -> Result<Option<ChannelRecord>, StoreError> {
        match self.raw(key)? {
            Some(bytes) => ChannelRecord::decode(key, &bytes)
                .map(Some)
                .map_err(|e| StoreError::Unavailable(e.to_string())),
            None => Ok(None),
        }
    }

    /// Decodes every record of `tables`; one that does not decode is
    /// reported by name and left where it is, for inspection.
    fn load_blocking(&self, tables: &[Table]) -> Result<LoadedRecords, StoreError> {
        let tx = self.db.begin_read().map_err(|e| failure(&self.path, "read", e))?;
        let mut loaded = LoadedRecords::default();
        for table in tables {
            let table = tx.open_table(*table).map_err(|e| failure(&self.path, "read", e))?;
            for entry in table.iter().map_err(|e| failure(&self.path, "read", e))? {
                let (key, bytes) = entry.map_err(|e| failure(&self.path, "read", e))?;
                match ChannelRecord::decode(key.value(), bytes.value()) {
                    Ok(record) => loaded.records.push(record),
                    Err(error) => loaded.unreadable.push(error),
                }
            }
        }
        Ok(loaded)
    }

    async fn load(&self, tables: &'static [Table]) -> Result<LoadedRecords, StoreError> {
        let store = self.clone();
        off_loop(move || store.load_blocking(tables)).await
    }
}

/// Which table holds a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    Channels,
    Tombstones,
}

/// A record's write, encoded before it goes off the event loop.
struct EncodedWrite {
    key: String,
    bytes: Vec<u8>,
    replaces: Option<String>,
    tombstone: bool,
}

impl EncodedWrite {
    fn of(record: &ChannelRecord, replaces: Option<&ChannelId>) -> Self {
        EncodedWrite {
            key: record.key(),
            bytes: record.encode(),
            replaces: replaces.map(ChannelId::to_string),
            tombstone: record.is_tombstone(),
        }
    }
}

/// Moves the tombstones a file of the first filing keeps in `channels` to
/// `tombstones`, as they are (an earlier module's JSON stays JSON until the
/// record is written again). A record that does not decode stays where it
/// is, and the boot reports it.
fn file_tombstones_apart(tx: &redb::WriteTransaction) -> Result<(), WriteFailure> {
    let mut channels = tx.open_table(CHANNELS)?;
    let mut tombstones = tx.open_table(TOMBSTONES)?;
    let mut moving = Vec::new();
    for entry in channels.iter()? {
        let (key, bytes) = entry?;
        if ChannelRecord::decode(key.value(), bytes.value()).is_ok_and(|record| record.is_tombstone()) {
            moving.push((key.value().to_owned(), bytes.value().to_vec()));
        }
    }
    for (key, bytes) in moving {
        tombstones.insert(key.as_str(), bytes.as_slice())?;
        channels.remove(key.as_str())?;
    }
    Ok(())
}

/// Any redb failure inside a write transaction (boxed: redb's error is large).
struct WriteFailure(Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for WriteFailure {
    fn from(error: E) -> Self {
        Self(Box::new(error.into()))
    }
}

fn write_durably(
    db: &Database,
    path: &Path,
    body: impl FnOnce(&redb::WriteTransaction) -> Result<(), WriteFailure>,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(|e| failure(path, "write", e))?;
    tx.set_durability(Durability::Immediate);
    // Dropping an uncommitted transaction aborts it: nothing of it lands.
    body(&tx).map_err(|e| failure(path, "write", *e.0))?;
    tx.commit().map_err(|e| failure(path, "commit", e))
}

/// Runs blocking file work off the event loop when there is a tokio runtime
/// (so sockets keep moving during an fsync), inline otherwise.
async fn off_loop<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(work).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        },
        Err(_) => work(),
    }
}

impl Store for RedbStore {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        let (store, write) = (self.clone(), EncodedWrite::of(record, replaces));
        off_loop(move || store.put_all_blocking(&[write])).await
    }

    /// A group commit: one transaction, so the writes land or fail together.
    async fn put_all(&self, writes: &[(&ChannelRecord, Option<&ChannelId>)]) -> Vec<Result<(), StoreError>> {
        let store = self.clone();
        let encoded: Vec<EncodedWrite> = writes
            .iter()
            .map(|(record, replaces)| EncodedWrite::of(record, *replaces))
            .collect();
        let outcome = off_loop(move || store.put_all_blocking(&encoded)).await;
        vec![outcome; writes.len()]
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let (store, key) = (self.clone(), channel_id.to_string());
        off_loop(move || store.get_blocking(&key)).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        self.load(&[CHANNELS, TOMBSTONES]).await
    }

    /// `channels` only: the tombstones are never decoded at a boot.
    async fn load_live(&self) -> Result<LoadedRecords, StoreError> {
        self.load(&[CHANNELS]).await
    }

    async fn load_tombstones(&self) -> Result<LoadedRecords, StoreError> {
        self.load(&[TOMBSTONES]).await
    }
}

/// Maps a redb failure to the store's error, saying which file and what failed.
fn failure(path: &Path, what: &str, error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    let message = format!("{what} {} failed: {error}", path.display());
    match &error {
        redb::Error::Io(io) if is_disk_full(io) => StoreError::QuotaExceeded(message),
        redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
            "{} is in use by another process (is another counterparty running on this data dir?)",
            path.display()
        )),
        _ => StoreError::Unavailable(message),
    }
}

fn is_disk_full(error: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT on Linux.
    error.kind() == std::io::ErrorKind::StorageFull || matches!(error.raw_os_error(), Some(28) | Some(122))
}
