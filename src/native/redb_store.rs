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

/// Channel records: channel id (`0x`-hex) to the record's bytes (schemas 3 to 5,
/// or the JSON of schemas 1 and 2 from an earlier module).
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// Node-level values (the node key), by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

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
        // Both tables exist from the start, so readers never meet a missing table.
        store.write(|tx| {
            tx.open_table(CHANNELS)?;
            tx.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
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
        let tx = self.db.begin_read().map_err(|e| failure(&self.path, "read", e))?;
        let table = tx.open_table(CHANNELS).map_err(|e| failure(&self.path, "read", e))?;
        let value = table.get(key).map_err(|e| failure(&self.path, "read", e))?;
        Ok(value.map(|v| v.value().to_vec()))
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

    fn put_blocking(&self, key: &str, bytes: &[u8], replaces: Option<&str>) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(CHANNELS)?;
            if let Some(old) = replaces.filter(|old| *old != key) {
                table.remove(old)?;
            }
            table.insert(key, bytes)?;
            Ok(())
        })
    }

    /// All of `writes` in one transaction: one fsync for the lot.
    fn put_all_blocking(&self, writes: &[(String, Vec<u8>, Option<String>)]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(CHANNELS)?;
            for (key, bytes, replaces) in writes {
                if let Some(old) = replaces.as_deref().filter(|old| old != key) {
                    table.remove(old)?;
                }
                table.insert(key.as_str(), bytes.as_slice())?;
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

    fn load_all_blocking(&self) -> Result<LoadedRecords, StoreError> {
        let tx = self.db.begin_read().map_err(|e| failure(&self.path, "read", e))?;
        let table = tx.open_table(CHANNELS).map_err(|e| failure(&self.path, "read", e))?;
        let mut loaded = LoadedRecords::default();
        for entry in table.iter().map_err(|e| failure(&self.path, "read", e))? {
            let (key, bytes) = entry.map_err(|e| failure(&self.path, "read", e))?;
            match ChannelRecord::decode(key.value(), bytes.value()) {
                Ok(record) => loaded.records.push(record),
                // Reported by name and left where it is, for inspection.
                Err(error) => loaded.unreadable.push(error),
            }
        }
        Ok(loaded)
    }
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
        let (store, key, bytes) = (self.clone(), record.key(), record.encode());
        let replaces = replaces.map(ChannelId::to_string);
        off_loop(move || store.put_blocking(&key, &bytes, replaces.as_deref())).await
    }

    /// A group commit: one transaction, so the writes land or fail together.
    async fn put_all(&self, writes: &[(&ChannelRecord, Option<&ChannelId>)]) -> Vec<Result<(), StoreError>> {
        let store = self.clone();
        let encoded: Vec<(String, Vec<u8>, Option<String>)> = writes
            .iter()
            .map(|(record, replaces)| (record.key(), record.encode(), replaces.map(ChannelId::to_string)))
            .collect();
        let outcome = off_loop(move || store.put_all_blocking(&encoded)).await;
        vec![outcome; writes.len()]
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        let (store, key) = (self.clone(), channel_id.to_string());
        off_loop(move || store.get_blocking(&key)).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        let store = self.clone();
        off_loop(move || store.load_all_blocking()).await
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
