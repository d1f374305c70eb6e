//! A backup of a node's channels (`exportBackup` / `importBackup`): the
//! records the browser's storage holds, so a wallet can keep them where a
//! cleared or evicted site storage cannot take them. A funded channel's
//! keys derive from the node key and the channel's seed, which only its
//! record holds: without the record, the user's share cannot be moved.

use serde::Serialize;
use tsify_next::Tsify;

use super::options::refuse_unknown_keys;
use super::ApiError;
use crate::crypto::keys::NodeSecret;
use crate::flow::record::ChannelRecord;
use crate::json::Value;
use crate::primitives::{decode_hex, encode_hex, ChannelId, NodeId};
use crate::runtime::ImportOutcome;

/// What `format` says, so a file is known for what it is.
pub const BACKUP_FORMAT: &str = "fiber-funding-backup";
pub const BACKUP_VERSION: u64 = 1;
/// More channels than any wallet holds; a bound on what a page hands in.
pub const MAX_BACKUP_CHANNELS: usize = 10_000;

/// `exportBackup`'s answer, and what `importBackup` takes. It holds every
/// channel's keys: keep it as the wallet keeps its own seed.
#[derive(Debug, Serialize, Tsify)]
pub struct Backup {
    /// Always `"fiber-funding-backup"`.
    pub format: String,
    pub version: u64,
    /// The node key the records are made with.
    pub node_id: String,
    /// The node key itself when this module made it (stored in IndexedDB,
    /// so lost with it); `null` when the page gave `nodeSecretKey`.
    pub node_secret_key: Option<String>,
    pub created_at_ms: u64,
    pub channels: Vec<BackupChannel>,
}

/// One channel's record, as stored (0x-hex).
#[derive(Debug, Serialize, Tsify)]
pub struct BackupChannel {
    pub channel_id: String,
    pub record: String,
}

/// `importBackup`'s answer: the channels taken, and each one left out with why.
#[derive(Debug, Serialize, Tsify)]
pub struct ImportBackupResult {
    pub imported: Vec<String>,
    pub skipped: Vec<SkippedChannel>,
    /// The backup's node key is now the database's own, so later boots need
    /// no `nodeSecretKey`; false when the backup carries none, or the
    /// database holds records of another key (whose key stays).
    pub node_key_stored: bool,
}

#[derive(Debug, Serialize, Tsify)]
pub struct SkippedChannel {
    pub channel_id: String,
    pub reason: String,
}

impl Backup {
    pub fn new(node_id: NodeId, node_secret_key: Option<[u8; 32]>, now_ms: u64, records: &[ChannelRecord]) -> Self {
        Self {
            format: BACKUP_FORMAT.to_owned(),
            version: BACKUP_VERSION,
            node_id: node_id.to_string(),
            node_secret_key: node_secret_key.map(|key| encode_hex(&key)),
            created_at_ms: now_ms,
            channels: records
                .iter()
                .map(|record| BackupChannel {
                    channel_id: record.channel_id.to_string(),
                    record: encode_hex(&record.encode()),
                })
                .collect(),
        }
    }
}

/// A backup as read: whose node it is, and each channel's record.
pub struct ParsedBackup {
    pub node_id: String,
    /// The node key, when the module made it; checked to be `node_id`'s.
    pub node_secret: Option<NodeSecret>,
    pub records: Vec<ChannelRecord>,
    /// Entries whose record could not be read, with why.
    pub unreadable: Vec<(String, String)>,
}

/// Reads what `exportBackup` gave. A malformed backup is `INVALID_PARAMS`
/// naming the field; a record that does not read is left out by name.
pub fn parse_backup(value: &Value) -> Result<ParsedBackup, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("backup", "expected the object exportBackup gives"))?;
    refuse_unknown_keys(
        map,
        &[
            "format",
            "version",
            "node_id",
            "node_secret_key",
            "created_at_ms",
            "channels",
        ],
        "a backup field",
    )?;
    if map.get("format").and_then(Value::as_str) != Some(BACKUP_FORMAT) {
        return Err(ApiError::invalid(
            "backup.format",
            format!("expected \"{BACKUP_FORMAT}\""),
        ));
    }
    if map.get("version").and_then(Value::as_u64) != Some(BACKUP_VERSION) {
        return Err(ApiError::invalid(
            "backup.version",
            format!("expected {BACKUP_VERSION}: this module reads no other backup version"),
        ));
    }
    let node_id = map
        .get("node_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("backup.node_id", "expected a 0x-hex node id"))?
        .to_ascii_lowercase();
    let node_secret = match map.get("node_secret_key") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let field = "backup.node_secret_key";
            let bytes = value
                .as_str()
                .ok_or_else(|| ApiError::invalid(field, "expected 0x-hex or null"))
                .and_then(|text| decode_hex(text).map_err(|e| ApiError::invalid(field, e)))?;
            let secret = <[u8; 32]>::try_from(bytes)
                .ok()
                .and_then(NodeSecret::from_bytes)
                .ok_or_else(|| ApiError::invalid(field, "not a secp256k1 secret key"))?;
            if secret.node_id().to_string() != node_id {
                return Err(ApiError::invalid(field, "it is not the key of backup.node_id"));
            }
            Some(secret)
        }
    };
    let channels = map
        .get("channels")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("backup.channels", "expected an array"))?;
    if channels.len() > MAX_BACKUP_CHANNELS {
        return Err(ApiError::invalid(
            "backup.channels",
            format!("{} entries, more than {MAX_BACKUP_CHANNELS}", channels.len()),
        ));
    }
    let mut parsed = ParsedBackup {
        node_id,
        node_secret,
        records: Vec::with_capacity(channels.len()),
        unreadable: Vec::new(),
    };
    for (index, entry) in channels.iter().enumerate() {
        let field = |name: &str| format!("backup.channels[{index}].{name}");
        let text = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid(&field(name), "expected a string"))
        };
        let channel_id = text("channel_id")?.to_ascii_lowercase();
        let bytes = decode_hex(text("record")?).map_err(|e| ApiError::invalid(&field("record"), e))?;
        match ChannelRecord::decode(&channel_id, &bytes) {
            Ok(record) if record.channel_id.to_string() == channel_id => parsed.records.push(record),
            Ok(record) => parsed
                .unreadable
                .push((channel_id, format!("its record is of channel {}", record.channel_id))),
            Err(error) => parsed
                .unreadable
                .push((channel_id, format!("unreadable: {}", error.reason))),
        }
    }
    Ok(parsed)
}

impl ImportBackupResult {
    pub fn new(outcome: ImportOutcome, unreadable: Vec<(String, String)>, node_key_stored: bool) -> Self {
        let skipped = |(channel_id, reason): (ChannelId, String)| SkippedChannel {
            channel_id: channel_id.to_string(),
            reason,
        };
        Self {
            imported: outcome.imported.iter().map(ChannelId::to_string).collect(),
            skipped: unreadable
                .into_iter()
                .map(|(channel_id, reason)| SkippedChannel { channel_id, reason })
                .chain(outcome.skipped.into_iter().map(skipped))
                .collect(),
            node_key_stored,
        }
    }
}
