//! An in-memory [`Store`] for unit tests. It stores encoded bytes, so every
//! load goes through the same decoding as a real store, and it can be told to
//! fail, to test what happens when a write does not land.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use super::{LoadedRecords, Store, StoreError};
use crate::flow::record::ChannelRecord;
use crate::primitives::ChannelId;

#[derive(Debug, Default)]
pub struct MemoryStore {
    records: RefCell<BTreeMap<String, Vec<u8>>>,
    fail_next_puts: Cell<usize>,
    puts: Cell<usize>,
    /// Deleted behind the store ([`MemoryStore::delete_database`]) and not
    /// made again: every operation fails with [`StoreError::Deleted`].
    deleted: Cell<bool>,
    /// The entries a load could not decode, as they were: written back by
    /// [`Store::recreate`], as `IdbStore` does.
    unreadable_seen: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `count` puts fail with [`StoreError::QuotaExceeded`].
    pub fn fail_next_puts(&self, count: usize) {
        self.fail_next_puts.set(count);
    }

    /// Plays the database deleted behind the store: the records are gone
    /// and every operation fails until [`Store::recreate`].
    pub fn delete_database(&self) {
        self.records.borrow_mut().clear();
        self.deleted.set(true);
    }

    fn check_not_deleted(&self) -> Result<(), StoreError> {
        if self.deleted.get() {
            return Err(StoreError::Deleted("deleted by MemoryStore::delete_database".into()));
        }
        Ok(())
    }

    /// How many puts have succeeded.
    pub fn puts(&self) -> usize {
        self.puts.get()
    }

    /// Stores raw bytes under a key, as a damaged or foreign record would be.
    pub fn insert_raw(&self, key: &str, bytes: Vec<u8>) {
        self.records.borrow_mut().insert(key.to_owned(), bytes);
    }

    pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.records.borrow().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.records.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.borrow().is_empty()
    }
}

impl Store for MemoryStore {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        self.check_not_deleted()?;
        if self.fail_next_puts.get() > 0 {
            self.fail_next_puts.set(self.fail_next_puts.get() - 1);
            return Err(StoreError::QuotaExceeded(
                "injected by MemoryStore::fail_next_puts".into(),
            ));
        }
        let mut records = self.records.borrow_mut();
        if let Some(old) = replaces {
            records.remove(&old.to_string());
        }
        records.insert(record.key(), record.encode());
        self.puts.set(self.puts.get() + 1);
        Ok(())
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        self.check_not_deleted()?;
        let key = channel_id.to_string();
        match self.records.borrow().get(&key) {
            Some(bytes) => ChannelRecord::decode(&key, bytes)
                .map(Some)
                .map_err(|e| StoreError::Unavailable(e.to_string())),
            None => Ok(None),
        }
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        self.check_not_deleted()?;
        let mut loaded = LoadedRecords::default();
        for (key, bytes) in self.records.borrow().iter() {
            match ChannelRecord::decode(key, bytes) {
                Ok(record) => loaded.records.push(record),
                Err(error) => {
                    loaded.unreadable.push(error);
                    self.unreadable_seen.borrow_mut().insert(key.clone(), bytes.clone());
                }
            }
        }
        Ok(loaded)
    }

    async fn recreate(&self, records: &[&ChannelRecord]) -> Result<(), StoreError> {
        let mut stored = self.records.borrow_mut();
        stored.extend(self.unreadable_seen.borrow().clone());
        for record in records {
            stored.insert(record.key(), record.encode());
        }
        self.deleted.set(false);
        Ok(())
    }
}
