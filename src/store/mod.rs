//! Where recovery records live. The core never touches storage itself: the
//! runtime writes each [`crate::flow::Action::Persist`] through a [`Store`]
//! and runs nothing the core held behind a write before it is durable.

use crate::flow::record::{ChannelRecord, RecordDecodeError};
use crate::primitives::ChannelId;

pub mod memory;

/// Why a store operation failed. The previous record is always left intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage is full: {0}")]
    QuotaExceeded(String),
    #[error("the storage transaction was aborted: {0}")]
    Aborted(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The database was deleted behind the store (site data cleared, or
    /// evicted by the browser): see [`Store::recreate`].
    #[error("the database was deleted: {0}")]
    Deleted(String),
}

/// Every record a store holds; the unreadable ones reported by channel.
#[derive(Debug, Default)]
pub struct LoadedRecords {
    pub records: Vec<ChannelRecord>,
    pub unreadable: Vec<RecordDecodeError>,
}

/// Durable storage of recovery records, one record per channel.
///
/// Single-threaded by design (the browser's event loop), hence no `Send`
/// bounds on the futures.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Writes `record` in one atomic operation; in the same operation deletes
    /// the record filed under `replaces` (a channel whose id changed).
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError>;

    /// Writes several records, each as [`Store::put`] would, and says how
    /// each went, in order. A store that can make them durable together (one
    /// transaction, one fsync: a group commit) does so, and then they land or
    /// fail together; the default writes them one after another.
    async fn put_all(&self, writes: &[(&ChannelRecord, Option<&ChannelId>)]) -> Vec<Result<(), StoreError>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        for (record, replaces) in writes {
            outcomes.push(self.put(record, *replaces).await);
        }
        outcomes
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError>;

    /// All records. One that fails to decode is reported by name and left in
    /// place; the others still load.
    async fn load_all(&self) -> Result<LoadedRecords, StoreError>;

    /// What a boot restores before it answers: every record but the
    /// tombstones ([`ChannelRecord::is_tombstone`]), and every unreadable one.
    /// A store that files tombstones apart (IndexedDB) does not read them
    /// here; the default reads everything and leaves them out.
    async fn load_live(&self) -> Result<LoadedRecords, StoreError> {
        let mut loaded = self.load_all().await?;
        loaded.records.retain(|record| !record.is_tombstone());
        Ok(loaded)
    }

    /// The tombstones, which a boot restores after it has answered. The
    /// default reports unreadable records in [`Store::load_live`] only.
    async fn load_tombstones(&self) -> Result<LoadedRecords, StoreError> {
        let records = self.load_all().await?.records;
        Ok(LoadedRecords {
            records: records.into_iter().filter(ChannelRecord::is_tombstone).collect(),
            unreadable: Vec::new(),
        })
    }

    /// Makes the storage again after [`StoreError::Deleted`], holding
    /// `records` and what the store itself holds besides (the node key, the
    /// entries it read but could not decode, as they were), in
    /// one durable operation: the page's memory may hold the only copy of a
    /// funded channel's keys. A store whose storage cannot vanish so says
    /// it cannot.
    async fn recreate(&self, records: &[&ChannelRecord]) -> Result<(), StoreError> {
        let _ = records;
        Err(StoreError::Unavailable("this store cannot be made again".into()))
    }
}

/// A shared store is a store: several owners (say, a node that is dropped and
/// a new one on the same storage) can hold it.
impl<T: Store> Store for std::rc::Rc<T> {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        (**self).put(record, replaces).await
    }

    async fn put_all(&self, writes: &[(&ChannelRecord, Option<&ChannelId>)]) -> Vec<Result<(), StoreError>> {
        (**self).put_all(writes).await
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        (**self).get(channel_id).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        (**self).load_all().await
    }

    async fn load_live(&self) -> Result<LoadedRecords, StoreError> {
        (**self).load_live().await
    }

    async fn load_tombstones(&self) -> Result<LoadedRecords, StoreError> {
        (**self).load_tombstones().await
    }

    async fn recreate(&self, records: &[&ChannelRecord]) -> Result<(), StoreError> {
        (**self).recreate(records).await
    }
}
