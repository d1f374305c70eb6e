//! A backup of a node's channels (`exportBackup` / `importBackup`): the
//! records the browser's storage holds, so a wallet can keep them where a
//! cleared or evicted site storage cannot take them. A funded channel's
//! keys derive from the node key and the channel's seed, which only its
//! record holds: without the record, the user's share cannot be moved.
//!
//! Each entry carries an HMAC-SHA256 under a key only the node secret
//! makes ([`BackupKey`]): a backup lives outside the browser, and one made
//! with the wallet's own node key holds no secret, so without it whoever
//! could write the file could rewrite where a record pays the user's share
//! (a record's key check binds only its seed and funding key).

use serde::Serialize;
use tsify_next::Tsify;

use super::options::refuse_unknown_keys;
use super::{ApiError, ErrorCode};
use crate::crypto::keys::{BackupKey, NodeSecret};
use crate::flow::record::ChannelRecord;
use crate::json::Value;
use crate::primitives::{decode_hex, encode_hex, ChannelId};
use crate::runtime::ImportOutcome;

/// What `format` says, so a file is known for what it is.
pub const BACKUP_FORMAT: &str = "fiber-funding-backup";
pub const BACKUP_VERSION: u64 = 2;
/// Version 1 had no authentication codes: read only when the page says so.
const UNAUTHENTICATED_VERSION: u64 = 1;
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

/// One channel's record, as stored (0x-hex), and its authentication code.
#[derive(Debug, Serialize, Tsify)]
pub struct BackupChannel {
    pub channel_id: String,
    pub record: String,
    /// HMAC-SHA256 of the node id, the channel id and the record under a
    /// key derived from the node secret (0x-hex); since version 2.
    pub mac: String,
}

/// `importBackup`'s options, read from the page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Read a version 1 backup, which has no authentication codes.
    pub allow_unauthenticated: bool,
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
    /// A backup of `records`, each authenticated with `key` (whose node it is).
    pub fn new(key: &BackupKey, node_secret_key: Option<[u8; 32]>, now_ms: u64, records: &[ChannelRecord]) -> Self {
        Self {
            format: BACKUP_FORMAT.to_owned(),
            version: BACKUP_VERSION,
            node_id: key.node_id().to_string(),
            node_secret_key: node_secret_key.map(|key| encode_hex(&key)),
            created_at_ms: now_ms,
            channels: records
                .iter()
                .map(|record| {
                    let bytes = record.encode();
                    BackupChannel {
                        channel_id: record.channel_id.to_string(),
                        mac: encode_hex(&key.tag(&record.channel_id, &bytes)),
                        record: encode_hex(&bytes),
                    }
                })
                .collect(),
        }
    }
}

impl ImportOptions {
    /// Reads `{ allowUnauthenticated?: boolean }`; absent is the default.
    pub fn parse(value: &Value) -> Result<Self, ApiError> {
        if value.is_null() {
            return Ok(Self::default());
        }
        let map = value
            .as_object()
            .ok_or_else(|| ApiError::invalid("options", "expected an object or nothing"))?;
        refuse_unknown_keys(map, &["allowUnauthenticated"], "an importBackup option")?;
        let allow_unauthenticated = match map.get("allowUnauthenticated") {
            None | Some(Value::Null) => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| ApiError::invalid("allowUnauthenticated", "expected a boolean"))?,
        };
        Ok(Self { allow_unauthenticated })
    }
}

/// A backup of this node as read: each channel's record.
pub struct ParsedBackup {
    /// The node key, when the module made it; checked to be `node_id`'s.
    pub node_secret: Option<NodeSecret>,
    pub records: Vec<ChannelRecord>,
    /// Entries left out before the node saw them (a record that does not
    /// read, or whose authentication code does not match), with why.
    pub unreadable: Vec<(String, String)>,
}

/// Reads what `exportBackup` gave, for the node `ours` is the key of. A
/// malformed backup is `INVALID_PARAMS` naming the field; another node's
/// is `BACKUP_OF_ANOTHER_NODE`; a version 1 backup, unless the options
/// allow it, `BACKUP_UNAUTHENTICATED`. An entry whose code does not match,
/// or whose record does not read, is left out by name.
pub fn parse_backup(value: &Value, ours: &BackupKey, options: ImportOptions) -> Result<ParsedBackup, ApiError> {
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
    let authenticated = match map.get("version").and_then(Value::as_u64) {
        Some(BACKUP_VERSION) => true,
        Some(UNAUTHENTICATED_VERSION) => false,
        _ => {
            return Err(ApiError::invalid(
                "backup.version",
                format!(
                "expected {BACKUP_VERSION} (or {UNAUTHENTICATED_VERSION}): this module reads no other backup version"
            ),
            ))
        }
    };
    let node_id = map
        .get("node_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("backup.node_id", "expected a 0x-hex node id"))?
        .to_ascii_lowercase();
    let ours_id = ours.node_id().to_string();
    if node_id != ours_id {
        return Err(ApiError::new(
            ErrorCode::BackupOfAnotherNode,
            format!(
                "the backup is of node {node_id}, this node is {ours_id}: open with nodeSecretKey set to the \
                 backup's node_secret_key, then import"
            ),
        ));
    }
    if !authenticated && !options.allow_unauthenticated {
        return Err(ApiError::new(
            ErrorCode::BackupUnauthenticated,
            "the backup is version 1, made before backups were authenticated: nothing shows its records were \
             not changed since (where a record pays the user's share, say). Import it with allowUnauthenticated: \
             true only if the user kept it themselves",
        ));
    }
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
        if authenticated {
            let mac = decode_hex(text("mac")?).map_err(|e| ApiError::invalid(&field("mac"), e))?;
            let genuine = ChannelId::from_hex(&channel_id).is_ok_and(|id| ours.verify(&id, &bytes, &mac));
            if !genuine {
                parsed.unreadable.push((
                    channel_id,
                    "its authentication code does not match: the entry was changed after the backup was made"
                        .to_owned(),
                ));
                continue;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{self, Map};

    /// A real record: the fixture's schema 2 record with every optional part.
    fn record() -> ChannelRecord {
        let fixture = json::parse(include_str!("../../tests/fixtures/records-legacy.json")).unwrap();
        let entry = &fixture.get("v2").unwrap().as_array().unwrap()[1];
        let text = |name: &str| entry.get(name).unwrap().as_str().unwrap().to_owned();
        ChannelRecord::decode(&text("key"), text("value").as_bytes()).unwrap()
    }

    fn key(byte: u8) -> BackupKey {
        NodeSecret::from_bytes([byte; 32]).unwrap().backup_key()
    }

    fn backup_of(key: &BackupKey, records: &[ChannelRecord]) -> Value {
        json::parse(&json::to_string(&Backup::new(key, None, 5, records)).unwrap()).unwrap()
    }

    fn channels(backup: &mut Value) -> &mut Vec<Value> {
        backup
            .as_object_mut()
            .unwrap()
            .get_mut("channels")
            .unwrap()
            .as_array_mut()
            .unwrap()
    }

    fn entry(backup: &mut Value, index: usize) -> &mut Map {
        channels(backup)[index].as_object_mut().unwrap()
    }

    fn parse(backup: &Value, key: &BackupKey, allow_unauthenticated: bool) -> Result<ParsedBackup, ApiError> {
        parse_backup(backup, key, ImportOptions { allow_unauthenticated })
    }

    #[test]
    fn a_backup_reads_back_with_its_codes_checked() {
        let ours = key(1);
        let parsed = parse(&backup_of(&ours, &[record()]), &ours, false).unwrap();
        assert_eq!(parsed.records, vec![record()]);
        assert!(parsed.unreadable.is_empty());
    }

    /// The code binds the entry's channel id too: two entries swapped, or a
    /// record filed under another id, are left out.
    #[test]
    fn an_entry_under_another_channel_id_is_left_out() {
        let ours = key(1);
        let mut backup = backup_of(&ours, &[record()]);
        let other = format!("0x{}", "b2".repeat(32));
        entry(&mut backup, 0).insert("channel_id".into(), Value::String(other.clone()));
        let parsed = parse(&backup, &ours, false).unwrap();
        assert!(parsed.records.is_empty());
        assert_eq!(parsed.unreadable[0].0, other);
        assert!(
            parsed.unreadable[0].1.contains("authentication code"),
            "{:?}",
            parsed.unreadable
        );
    }

    #[test]
    fn another_nodes_backup_is_refused_before_its_entries_are_read() {
        let mut backup = backup_of(&key(2), &[record()]);
        entry(&mut backup, 0).insert("mac".into(), Value::String("not hex".into()));
        let error = parse(&backup, &key(1), false).err().unwrap();
        assert_eq!(error.code, ErrorCode::BackupOfAnotherNode, "{error}");
        // Another node's entries under this node's id: its codes do not match.
        let mut backup = backup_of(&key(2), &[record()]);
        let ours = key(1).node_id().to_string();
        backup
            .as_object_mut()
            .unwrap()
            .insert("node_id".into(), Value::String(ours));
        let parsed = parse(&backup, &key(1), false).unwrap();
        assert!(parsed.records.is_empty() && parsed.unreadable.len() == 1);
    }

    #[test]
    fn an_entry_without_a_code_is_a_malformed_backup() {
        let ours = key(1);
        for (mac, says) in [(None, "expected a string"), (Some("0x12z4"), "hex")] {
            let mut backup = backup_of(&ours, &[record(), record()]);
            match mac {
                None => entry(&mut backup, 1).remove("mac"),
                Some(text) => entry(&mut backup, 1).insert("mac".into(), Value::String(text.into())),
            };
            let error = parse(&backup, &ours, false).err().unwrap();
            assert_eq!(error.code, ErrorCode::InvalidParams);
            assert!(error.message.contains("backup.channels[1].mac"), "{error}");
            assert!(error.message.contains(says), "{error}");
        }
        // A code of the wrong length never matches.
        let mut backup = backup_of(&ours, &[record()]);
        entry(&mut backup, 0).insert("mac".into(), Value::String("0x00".into()));
        assert_eq!(parse(&backup, &ours, false).unwrap().unreadable.len(), 1);
    }

    /// Version 1 had no codes: read only when the page allows it, and then
    /// as it was (a `mac` left there is not looked at).
    #[test]
    fn a_version_1_backup_needs_the_page_to_allow_it() {
        let ours = key(1);
        let mut backup = backup_of(&ours, &[record()]);
        backup
            .as_object_mut()
            .unwrap()
            .insert("version".into(), json::parse("1").unwrap());
        entry(&mut backup, 0).remove("mac");
        let error = parse(&backup, &ours, false).err().unwrap();
        assert_eq!(error.code, ErrorCode::BackupUnauthenticated, "{error}");
        assert!(error.message.contains("allowUnauthenticated"), "{error}");
        let parsed = parse(&backup, &ours, true).unwrap();
        assert_eq!(parsed.records, vec![record()]);
        // Still another node's first.
        let error = parse(&backup, &key(2), false).err().unwrap();
        assert_eq!(error.code, ErrorCode::BackupOfAnotherNode);
        for version in ["0", "3", "1.5", "\"1\""] {
            backup
                .as_object_mut()
                .unwrap()
                .insert("version".into(), json::parse(version).unwrap());
            let error = parse(&backup, &ours, true).err().unwrap();
            assert!(error.message.contains("backup.version"), "{version}: {error}");
        }
    }

    #[test]
    fn import_options_are_read_strictly() {
        assert_eq!(ImportOptions::parse(&Value::Null).unwrap(), ImportOptions::default());
        let read = |text: &str| ImportOptions::parse(&json::parse(text).unwrap());
        assert!(read(r#"{"allowUnauthenticated":true}"#).unwrap().allow_unauthenticated);
        assert!(!read(r#"{"allowUnauthenticated":false}"#).unwrap().allow_unauthenticated);
        assert!(!read("{}").unwrap().allow_unauthenticated);
        for (text, names) in [
            (r#"{"allowUnauthenticated":"yes"}"#, "allowUnauthenticated"),
            (r#"{"allowUnauthentic":true}"#, "allowUnauthentic"),
            ("true", "options"),
        ] {
            let error = read(text).err().unwrap();
            assert_eq!(error.code, ErrorCode::InvalidParams);
            assert!(error.message.contains(names), "{text}: {error}");
        }
    }
}
