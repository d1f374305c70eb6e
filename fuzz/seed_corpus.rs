//! Writes the seed corpora (`fuzz/corpus/<target>/seed-*`) from the crate's
//! fixtures and from real flows of `tests/common`'s World: every record
//! either node stored at every step of an open, a cooperative close, a
//! force close and an abort after hand-out (schema 3), the legacy records of
//! schemas 1 and 2, every message the nodes sent, the transaction JSON in
//! both casings, and step sequences for the initiator core.
//!
//! Run by `scripts/fuzz seed`; the seeds are committed with the corpora, so
//! this only needs to run again when the formats change. It is built as a
//! libFuzzer binary like the targets (a plain `main` does not link against
//! their instrumented build): it writes the seeds in the initialisation hook
//! and fuzzes nothing. Output: `FUZZ_SEED_DIR`, by default
//! `fuzz/corpus`.

#![no_main]

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "../tests/common/camel.rs"]
mod camel;
use camel::camelize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use fiber_funding::crypto::blake2b_256;
use fiber_funding::flow::record::ChannelRecord;
use fiber_funding::primitives::encode_hex;
use fiber_funding::tx::json::transaction_to_json;
use serde_json::Value;

struct Corpus {
    dir: PathBuf,
    written: BTreeSet<Vec<u8>>,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus dir");
        Self {
            dir,
            written: BTreeSet::new(),
        }
    }

    fn add(&mut self, bytes: Vec<u8>) {
        if self.written.insert(bytes.clone()) {
            let name = format!("seed-{}", &encode_hex(&blake2b_256(&bytes))[2..18]);
            std::fs::write(self.dir.join(name), bytes).expect("write a seed");
        }
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name),
    )
    .expect("read a fixture")
}

/// What a world's flows leave behind: records, messages, handed-out txs.
#[derive(Default)]
struct Harvest {
    records: BTreeSet<Vec<u8>>,
    messages: BTreeSet<Vec<u8>>,
    txs: Vec<Value>,
}

impl Harvest {
    fn snapshot(&mut self, world: &World) {
        for index in [INITIATOR, ACCEPTOR] {
            for view in world.nodes[index].node.channels() {
                if let Some(record) = world.stored_record(index, &view.channel_id) {
                    self.records.insert(record.encode());
                }
            }
        }
    }

    /// Runs the world to quiet, keeping every record stored on the way.
    fn run(&mut self, world: &mut World) {
        self.snapshot(world);
        for _ in 0..20_000 {
            if !world.step() {
                break;
            }
            self.snapshot(world);
        }
    }

    fn finish(&mut self, world: &World) {
        for (_, message) in &world.sent_log {
            self.messages.insert(message.encode());
        }
        for (_, tx) in &world.handed_out {
            self.txs
                .push(serde_json::to_value(transaction_to_json(tx)).expect("JSON"));
        }
        for (_, tx) in &world.broadcasts {
            self.txs
                .push(serde_json::to_value(transaction_to_json(tx)).expect("JSON"));
        }
    }
}

fn flows() -> Harvest {
    let mut harvest = Harvest::default();

    // Open, then a cooperative close.
    let mut world = World::new(Setup::default());
    world.open(1000).expect("open");
    harvest.run(&mut world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR]
        .node
        .shutdown_channel(&channel_id, None, None, now)
        .expect("shutdown");
    world.execute(INITIATOR, actions);
    harvest.run(&mut world);
    harvest.finish(&world);

    // Open, then a force close and the claim after the delay.
    let mut world = World::new(Setup::default());
    world.open(1000).expect("open");
    harvest.run(&mut world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR]
        .node
        .force_close_channel(&channel_id, now)
        .expect("force close");
    world.execute(INITIATOR, actions);
    harvest.run(&mut world);
    world.chain.mine_epochs(200);
    world.advance(1_000);
    harvest.run(&mut world);
    harvest.finish(&world);

    // Handed out, never signed: the deadline aborts it with a watch.
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).expect("open");
    harvest.run(&mut world);
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    harvest.run(&mut world);
    harvest.finish(&world);
    harvest
}

/// peer_frames' layout (fuzz_targets/peer_frames.rs): start byte, then frames.
fn sealed_frames(messages: &[&[u8]]) -> Vec<u8> {
    let mut input = vec![0];
    for message in messages {
        input.push(0);
        input.extend_from_slice(&(message.len() as u16).to_le_bytes());
        input.extend_from_slice(message);
    }
    input
}

/// initiator_core's step codes (fuzz_targets/initiator_core.rs `op`).
const DELIVER: u8 = 0;
const ANSWER_HONESTLY: u8 = 22;
const HONEST_LIE: u8 = 0;
const TICK: u8 = 28;
const MINE: u8 = 30;
const SUBMIT: u8 = 32;
const RELOAD: u8 = 34;
const DOUBLE_SPEND: u8 = 36;

fn core_steps() -> Vec<Vec<u8>> {
    let honest_round = |rounds: usize| -> Vec<u8> {
        let mut steps = vec![HONEST_LIE];
        for _ in 0..rounds {
            steps.extend([DELIVER, ANSWER_HONESTLY, HONEST_LIE]);
        }
        steps
    };
    let mut seeds = vec![Vec::new(), vec![HONEST_LIE; 64], honest_round(24)];
    let mut signed = honest_round(24);
    signed.extend([SUBMIT, 0]);
    signed.extend(honest_round(12)[1..].iter());
    signed.extend([MINE, MINE, MINE]);
    signed.extend(honest_round(12)[1..].iter());
    seeds.push(signed);
    let mut timed_out = honest_round(24);
    timed_out.extend([TICK, 0xff, 0xff, 0xff, 0xff, TICK, 0xff, 0xff, 0xff, 0xff]);
    timed_out.extend(honest_round(8)[1..].iter());
    seeds.push(timed_out);
    let mut reloaded = honest_round(12);
    reloaded.push(RELOAD);
    reloaded.extend(honest_round(12)[1..].iter());
    seeds.push(reloaded);
    let mut double_spent = honest_round(24);
    double_spent.extend([DOUBLE_SPEND, 0, MINE, MINE, MINE]);
    double_spent.extend([TICK, 0xff, 0xff, 0xff, 0xff]);
    double_spent.extend(honest_round(8)[1..].iter());
    seeds.push(double_spent);
    seeds
}

libfuzzer_sys::fuzz_target!(
    // `scripts/fuzz seed` runs it with `-runs=0`: nothing is fuzzed after.
    init: write_seeds(),
    |_data: &[u8]| {}
);

fn write_seeds() {
    let root = std::env::var_os("FUZZ_SEED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let harvest = flows();

    let mut records = Corpus::new(&root, "stored_record");
    for bytes in &harvest.records {
        records.add(bytes.clone());
    }
    let legacy: Value = serde_json::from_str(&fixture("records-legacy.json")).expect("legacy fixture");
    for entry in legacy["v2"].as_array().expect("v2 records") {
        records.add(entry["value"].as_str().expect("a v2 value").as_bytes().to_vec());
    }
    let idb_v1: Value = serde_json::from_str(&fixture("idb-v1.json")).expect("idb-v1 fixture");
    for entry in idb_v1["channels"].as_array().expect("v1 channels") {
        let value = entry["value"].as_str().expect("a v1 value");
        if ChannelRecord::read(value.as_bytes()).is_ok() {
            records.add(value.as_bytes().to_vec());
        }
    }

    let mut frames = Corpus::new(&root, "peer_frames");
    let messages: Vec<&[u8]> = harvest.messages.iter().map(Vec::as_slice).collect();
    for message in &messages {
        frames.add(sealed_frames(&[message]));
    }
    frames.add(sealed_frames(&messages));

    let mut json = Corpus::new(&root, "tx_json");
    let mut txs = harvest.txs.clone();
    for name in ["fiber_unsigned_funding_tx.json", "joyid_signed_funding_tx.json"] {
        txs.push(serde_json::from_str(&fixture(name)).expect("a tx fixture"));
    }
    for tx in &txs {
        json.add(serde_json::to_vec_pretty(tx).unwrap());
        json.add(serde_json::to_vec(&camelize(&tx.into())).unwrap());
        for part in ["cell_deps", "inputs", "outputs"] {
            if let Some(first) = tx[part].get(0) {
                json.add(serde_json::to_vec(first).unwrap());
            }
        }
        if let Some(lock) = tx["outputs"].get(0).map(|o| &o["lock"]) {
            json.add(serde_json::to_vec(lock).unwrap());
        }
    }
    let rpc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rpc");
    let mut names: Vec<_> = std::fs::read_dir(&rpc).expect("rpc fixtures").flatten().collect();
    names.sort_by_key(|entry| entry.file_name());
    for entry in names {
        json.add(std::fs::read(entry.path()).expect("an rpc fixture"));
    }

    let mut core = Corpus::new(&root, "initiator_core");
    for steps in core_steps() {
        core.add(steps);
    }

    for corpus in [&records, &frames, &json, &core] {
        println!("{}: {} seeds", corpus.dir.display(), corpus.written.len());
    }
}
