//! The counterparty's redb store: records round-trip, a changed id moves
//! its record in one write, an unreadable record is reported and kept,
//! closed flows' tombstones are filed apart (and moved there in a file from
//! before), and
//! a process killed at random moments while writing always leaves a store
//! that reopens whole, holding the last record it finished writing or the
//! one it was writing, never a torn one.

#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fiber_funding::flow::record::ChannelRecord;
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::native::redb_store::{Filed, RedbStore};
use fiber_funding::primitives::Hash256;
use fiber_funding::store::{Store, StoreError};
use futures::executor::block_on;

/// Set in the child process the crash test starts.
const CRASH_CHILD_ENV: &str = "FIBER_FUNDING_STORE_CRASH_CHILD";

fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("fiber-store-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real record from the simulated flow (the IndexedDB fixture's first channel).
fn template() -> ChannelRecord {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/idb-v1.json")).expect("the fixture is JSON");
    let entry = &fixture["channels"][0];
    let key = entry["key"].as_str().unwrap();
    ChannelRecord::decode(key, entry["value"].as_str().unwrap().as_bytes()).expect("the fixture record decodes")
}

/// The template filed under a channel id of its own, numbered by `seq`.
fn numbered(seq: u64) -> ChannelRecord {
    let mut record = template();
    record.channel_id = id(seq);
    record.created_at_ms = seq;
    record
}

fn id(seq: u64) -> Hash256 {
    Hash256(fiber_funding::crypto::blake2b_256(&seq.to_le_bytes()))
}

#[test]
fn a_record_round_trips_through_the_file() {
    let dir = temp_dir("round-trip");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let record = numbered(1);
    block_on(store.put(&record, None)).unwrap();
    assert_eq!(block_on(store.get(&record.channel_id)).unwrap(), Some(record.clone()));
    assert_eq!(block_on(store.get(&id(2))).unwrap(), None);
    let loaded = block_on(store.load_all()).unwrap();
    assert_eq!(loaded.records, vec![record.clone()]);
    assert!(loaded.unreadable.is_empty());
    assert_eq!(store.raw(&record.key()).unwrap(), Some(record.encode()));

    // Writing it again replaces it.
    let mut changed = record.clone();
    changed.created_at_ms = 99;
    block_on(store.put(&changed, None)).unwrap();
    assert_eq!(block_on(store.load_all()).unwrap().records, vec![changed]);
}

/// A record stored as JSON by an earlier module (schemas 1 and 2) still
/// reads; written again, it is stored in schema 3's binary layout.
#[test]
fn a_json_record_from_an_earlier_module_reads_and_is_rewritten_binary() {
    let dir = temp_dir("legacy");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/idb-v1.json")).expect("the fixture is JSON");
    let entry = &fixture["channels"][0];
    let key = entry["key"].as_str().unwrap();
    let json = entry["value"].as_str().unwrap();
    store.insert_raw(key, json.as_bytes()).unwrap();

    let loaded = block_on(store.load_all()).unwrap();
    assert!(loaded.unreadable.is_empty(), "{:?}", loaded.unreadable);
    assert_eq!(loaded.records, vec![template()]);
    let record = loaded.records.into_iter().next().unwrap();
    block_on(store.put(&record, None)).unwrap();
    let stored = store.raw(key).unwrap().unwrap();
    assert_eq!(stored[..4], fiber_funding::flow::record::RECORD_MAGIC);
    assert!(
        stored.len() * 2 < json.len(),
        "{} bytes, {} as JSON",
        stored.len(),
        json.len()
    );
    assert_eq!(block_on(store.get(&record.channel_id)).unwrap(), Some(record));
}

#[test]
fn a_channel_whose_id_changed_moves_in_one_write() {
    let dir = temp_dir("replaces");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let temporary = numbered(1);
    let other = numbered(7);
    block_on(store.put(&temporary, None)).unwrap();
    block_on(store.put(&other, None)).unwrap();
    let mut accepted = temporary.clone();
    accepted.channel_id = id(2);
    block_on(store.put(&accepted, Some(&temporary.channel_id))).unwrap();

    assert_eq!(block_on(store.get(&temporary.channel_id)).unwrap(), None);
    assert_eq!(
        block_on(store.get(&accepted.channel_id)).unwrap(),
        Some(accepted.clone())
    );
    let mut ids: Vec<_> = block_on(store.load_all())
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.channel_id)
        .collect();
    ids.sort();
    let mut expected = vec![accepted.channel_id, other.channel_id];
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn an_unreadable_record_is_reported_by_name_and_kept() {
    let dir = temp_dir("unreadable");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let good = numbered(1);
    block_on(store.put(&good, None)).unwrap();
    let truncated = &numbered(2).encode()[..100];
    store.insert_raw("0x7777", truncated).unwrap();
    // A record from a newer module: the version byte after the magic.
    let mut newer = numbered(3).encode();
    newer[4] = 99;
    store.insert_raw("0x8888", &newer).unwrap();

    let loaded = block_on(store.load_all()).unwrap();
    assert_eq!(loaded.records, vec![good]);
    let mut names: Vec<_> = loaded.unreadable.iter().map(|e| e.channel_id.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["0x7777", "0x8888"]);
    let newer_error = loaded.unreadable.iter().find(|e| e.channel_id == "0x8888").unwrap();
    assert!(newer_error.reason.contains("newer"), "{newer_error}");
    let truncated_error = loaded.unreadable.iter().find(|e| e.channel_id == "0x7777").unwrap();
    assert!(truncated_error.reason.contains("truncated in"), "{truncated_error}");
    // Left in place for inspection, byte for byte.
    assert_eq!(store.raw("0x7777").unwrap().as_deref(), Some(truncated));
    assert!(store.raw("0x8888").unwrap().is_some());
    // `get` of the damaged one is an error, not a silent `None`.
    let damaged_id = Hash256::from_hex(&format!("0x{}", "77".repeat(32))).unwrap();
    store.insert_raw(&damaged_id.to_string(), b"{").unwrap();
    assert!(matches!(
        block_on(store.get(&damaged_id)),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn records_and_the_node_key_survive_closing_and_reopening() {
    let dir = temp_dir("reopen");
    let path = dir.join("db.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        block_on(store.put(&numbered(1), None)).unwrap();
        block_on(store.put(&numbered(2), None)).unwrap();
        assert_eq!(store.get_meta("node_secret").unwrap(), None);
        store.put_meta("node_secret", &[0x42; 32]).unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let loaded = block_on(store.load_all()).unwrap();
    assert_eq!(loaded.records.len(), 2);
    assert!(loaded.unreadable.is_empty());
    assert_eq!(store.get_meta("node_secret").unwrap(), Some(vec![0x42; 32]));
}

#[test]
fn a_database_open_elsewhere_is_refused_with_a_clear_error() {
    let dir = temp_dir("locked");
    let path = dir.join("db.redb");
    let _first = RedbStore::open(&path).unwrap();
    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("another process")),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn the_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let path = dir.join("db.redb");
    RedbStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn writes_inside_a_tokio_runtime_run_off_the_event_loop() {
    let dir = temp_dir("tokio");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        for seq in 0..20 {
            store.put(&numbered(seq), None).await.unwrap();
        }
        assert_eq!(store.load_all().await.unwrap().records.len(), 20);
    });
}

/// The child of the crash test: rotates one record (each write files the
/// next number under a new id and deletes the previous id, in one
/// transaction) and says which number it finished, until it is killed.
#[test]
fn crash_child_rotates_a_record_until_killed() {
    let Ok(path) = std::env::var(CRASH_CHILD_ENV) else {
        return; // Only meaningful as the crash test's child.
    };
    let store = RedbStore::open(&path).expect("the child opens the store");
    let loaded = block_on(store.load_all()).expect("the child loads the store");
    assert!(loaded.unreadable.is_empty(), "{:?}", loaded.unreadable);
    let mut seq = loaded.records.iter().map(|r| r.created_at_ms).max().unwrap_or(0);
    println!("ready {seq}");
    let started = Instant::now();
    // Bounded, in case the parent died without killing it.
    while started.elapsed() < Duration::from_secs(30) {
        let next = numbered(seq + 1);
        block_on(store.put(&next, Some(&id(seq)))).expect("write");
        seq += 1;
        println!("acked {seq}");
    }
}

/// xorshift64*: the kill moments, reproducible from the printed seed.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Starts the child, kills it after `delay_ms`, and returns the last number
/// it reported as written (if any) and whether it got to write at all.
fn run_child_and_kill(child: &str, path: &Path, delay_ms: u64) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("acked ") {
                last = Some(seq.trim().parse::<u64>().unwrap());
            }
        }
        last
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn a_writer_killed_at_random_moments_always_leaves_a_whole_store() {
    kill_at_random_moments(
        "crash_child_rotates_a_record_until_killed",
        &[numbered(0)],
        25,
        |records, round| {
            assert_eq!(records.len(), 1, "{round}: a rotation was half applied");
            let seq = records[0].created_at_ms;
            assert_eq!(records[0], numbered(seq), "{round}");
            seq
        },
    );
}

/// Starts `child` on a store holding `first`, `rounds` times, each time
/// killing it at a random moment (from before it opened the file to deep in
/// its writing); after each kill the store must read whole, and the number
/// `stands_at` finds in it must be the last one the child reported written
/// or the one it was writing.
fn kill_at_random_moments(
    child: &str,
    first: &[ChannelRecord],
    rounds: usize,
    stands_at: impl Fn(&[ChannelRecord], &str) -> u64,
) {
    let dir = temp_dir("crash");
    let path = dir.join("db.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        let writes: Vec<_> = first.iter().map(|record| (record, None)).collect();
        assert!(block_on(store.put_all(&writes)).iter().all(Result::is_ok));
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("kill moments seed {seed}");
    let mut moments = Moments(seed);
    let mut acked = 0u64;
    let mut kills_after_writes = 0;
    for round in 0..rounds {
        let delay_ms = moments.next_below(120);
        if let Some(last) = run_child_and_kill(child, &path, delay_ms) {
            assert!(
                last >= acked,
                "round {round}: the child went back from {acked} to {last}"
            );
            acked = last;
            kills_after_writes += 1;
        }
        let round = format!("round {round} (seed {seed})");
        let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{round}: reopen: {e}"));
        let loaded = block_on(store.load_all()).unwrap();
        assert!(
            loaded.unreadable.is_empty(),
            "{round}: torn record {:?}",
            loaded.unreadable
        );
        let seq = stands_at(&loaded.records, &round);
        // Every reported write is there; at most the one in flight is too.
        assert!(
            seq == acked || seq == acked + 1,
            "{round}: store holds {seq}, the child had finished {acked}"
        );
        acked = seq;
    }
    println!("{kills_after_writes} of {rounds} kills landed while writing; {acked} written in all");
    assert!(kills_after_writes > rounds / 3, "too few kills landed mid-writing");
}

/// Channel `seq` of the second series (the group-commit tests write two).
fn second(seq: u64) -> ChannelRecord {
    let mut record = numbered(seq);
    record.channel_id = id(seq + (1 << 40));
    record
}

#[test]
fn a_group_commit_writes_every_record_and_moves_every_replaced_one() {
    let dir = temp_dir("group");
    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let (temporary, kept) = (numbered(1), numbered(7));
    block_on(store.put(&temporary, None)).unwrap();
    block_on(store.put(&kept, None)).unwrap();
    let mut accepted = temporary.clone();
    accepted.channel_id = id(2);
    let (new, other) = (numbered(3), second(3));
    let outcomes = block_on(store.put_all(&[(&accepted, Some(&temporary.channel_id)), (&new, None), (&other, None)]));
    assert_eq!(outcomes, vec![Ok(()), Ok(()), Ok(())]);
    drop(store);

    let store = RedbStore::open(dir.join("db.redb")).unwrap();
    let mut ids: Vec<_> = block_on(store.load_all())
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.channel_id)
        .collect();
    ids.sort();
    let mut expected = vec![accepted.channel_id, kept.channel_id, new.channel_id, other.channel_id];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(block_on(store.get(&temporary.channel_id)).unwrap(), None);
}

#[test]
fn crash_child_rotates_two_records_in_one_group_until_killed() {
    let Ok(path) = std::env::var(CRASH_CHILD_ENV) else {
        return; // Only meaningful as the crash test's child.
    };
    let store = RedbStore::open(&path).expect("the child opens the store");
    let loaded = block_on(store.load_all()).expect("the child loads the store");
    let mut seq = loaded.records.iter().map(|r| r.created_at_ms).max().unwrap_or(0);
    println!("ready {seq}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let (a, b) = (numbered(seq + 1), second(seq + 1));
        let outcomes = block_on(store.put_all(&[(&a, Some(&id(seq))), (&b, Some(&second(seq).channel_id))]));
        assert_eq!(outcomes, vec![Ok(()), Ok(())]);
        seq += 1;
        println!("acked {seq}");
    }
}

/// A group commit lands whole or not at all, even when the process is
/// killed in the middle of it: both series always stand at the same number.
#[test]
fn a_writer_killed_during_group_commits_never_leaves_half_a_group() {
    kill_at_random_moments(
        "crash_child_rotates_two_records_in_one_group_until_killed",
        &[numbered(0), second(0)],
        15,
        |records, round| {
            let mut records = records.to_vec();
            records.sort_by_key(|r| r.channel_id);
            let seq = records[0].created_at_ms;
            let mut expected = vec![numbered(seq), second(seq)];
            expected.sort_by_key(|r| r.channel_id);
            assert_eq!(records, expected, "{round}: half a group landed");
            seq
        },
    );
}

/// Channel `seq`, closed unfunded: a tombstone.
fn tombstone(seq: u64) -> ChannelRecord {
    let mut record = numbered(seq);
    record.close_as_tombstone(CloseFlags::ABANDONED, "abandoned by the user".into(), 9);
    assert!(record.is_tombstone());
    record
}

/// Writes entries straight into a table of a closed store's file, as an
/// earlier module (or damage) left them.
fn write_into(path: &Path, table: &str, entries: &[(&str, &[u8])]) {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(redb::TableDefinition::<&str, &[u8]>::new(table)).unwrap();
        for (key, bytes) in entries {
            table.insert(*key, *bytes).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// A boot's read ([`Store::load_live`]) decodes no tombstone, however many
/// closed flows there are: the write that makes a record a tombstone files
/// it in a table of its own. A damaged tombstone shows it: the boot does not
/// see it, the read of the tombstones reports it.
#[test]
fn a_tombstone_is_filed_apart_and_a_boot_never_reads_it() {
    let dir = temp_dir("tombstones");
    let path = dir.join("db.redb");
    let (live, closed) = (numbered(1), tombstone(2));
    {
        let store = RedbStore::open(&path).unwrap();
        block_on(store.put(&live, None)).unwrap();
        block_on(store.put(&numbered(2), None)).unwrap();
        assert_eq!(store.filed(&closed.key()).unwrap(), Some(Filed::Channels));
        // The close moves it, in one write.
        assert_eq!(block_on(store.put_all(&[(&closed, None)])), vec![Ok(())]);
        assert_eq!(store.filed(&closed.key()).unwrap(), Some(Filed::Tombstones));
        assert_eq!(store.filed(&live.key()).unwrap(), Some(Filed::Channels));
        assert_eq!(block_on(store.get(&closed.channel_id)).unwrap(), Some(closed.clone()));
    }
    write_into(&path, "tombstones", &[("0x7777", b"not a record")]);

    let store = RedbStore::open(&path).unwrap();
    let live_load = block_on(store.load_live()).unwrap();
    assert_eq!(live_load.records, vec![live.clone()]);
    assert!(live_load.unreadable.is_empty(), "{:?}", live_load.unreadable);
    let tombstones = block_on(store.load_tombstones()).unwrap();
    assert_eq!(tombstones.records, vec![closed.clone()]);
    let names: Vec<_> = tombstones.unreadable.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(names, ["0x7777"]);
    let all = block_on(store.load_all()).unwrap();
    assert_eq!(all.records.len(), 2);
    assert_eq!(all.unreadable.len(), 1);
}

/// A file from before tombstones were filed apart has them moved when it
/// is opened, as they are; live records, an earlier module's JSON record,
/// a damaged entry and the node key stay where they were.
#[test]
fn a_file_of_the_first_filing_has_its_tombstones_moved_when_opened() {
    let dir = temp_dir("first-filing");
    let path = dir.join("db.redb");
    let (live, closed) = (numbered(1), tombstone(2));
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/idb-v1.json")).expect("the fixture is JSON");
    let json_key = fixture["channels"][0]["key"].as_str().unwrap();
    let json = fixture["channels"][0]["value"].as_str().unwrap();
    let (live_bytes, closed_bytes) = (live.encode(), closed.encode());
    // The layout of the first filing: `channels` and `meta`, nothing else.
    write_into(
        &path,
        "channels",
        &[
            (&live.key(), &live_bytes),
            (&closed.key(), &closed_bytes),
            (json_key, json.as_bytes()),
            ("0x7777", b"not a record"),
        ],
    );
    write_into(&path, "meta", &[("node_secret", &[0x42; 32])]);

    for _ in 0..2 {
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.filed(&closed.key()).unwrap(), Some(Filed::Tombstones));
        assert_eq!(store.raw(&closed.key()).unwrap(), Some(closed_bytes.clone()));
        for key in [live.key().as_str(), json_key, "0x7777"] {
            assert_eq!(store.filed(key).unwrap(), Some(Filed::Channels), "{key}");
        }
        assert_eq!(store.raw(json_key).unwrap().as_deref(), Some(json.as_bytes()));
        let live_load = block_on(store.load_live()).unwrap();
        assert_eq!(live_load.records.len(), 2);
        assert!(!live_load.records.iter().any(ChannelRecord::is_tombstone));
        assert_eq!(live_load.unreadable.len(), 1);
        assert_eq!(block_on(store.load_tombstones()).unwrap().records, vec![closed.clone()]);
        assert_eq!(store.get_meta("node_secret").unwrap(), Some(vec![0x42; 32]));
    }
}

/// A file whose records a newer module filed in a layout this one does not
/// know is refused by name, not read as if it were the layout it knows.
#[test]
fn a_file_filed_by_a_newer_module_is_refused() {
    let dir = temp_dir("newer-filing");
    let path = dir.join("db.redb");
    drop(RedbStore::open(&path).unwrap());
    write_into(&path, "meta", &[("records_filing", &[3])]);
    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("newer module")),
        "{error}"
    );
}
