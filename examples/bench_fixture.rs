//! Prints (as JSON) one real initiator record waiting for the user's
//! signature, the tombstone the same flow leaves once it closed unfunded, the
//! user's signed funding tx for it, and the options a browser node needs to
//! load them: the benchmark seeds IndexedDB with copies of both.
//! Each record is its stored bytes (record schema 5) as hex, with where in
//! them its two ids are, so that each copy gets ids of its own.
//! Run with `cargo run --example bench_fixture`.

use std::cell::RefCell;
use std::rc::Rc;

use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::flow::record::ChannelRecord;
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::flow::{EntropySource, OpenChannelParams};
use fiber_funding::primitives::encode_hex;
use fiber_funding::runtime::driver::DriverParts;
use fiber_funding::runtime::loopback::LoopbackLink;
use fiber_funding::runtime::{inbox, start, DriverSettings, Platform};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::json::transaction_to_json;
use futures::executor::{LocalPool, LocalSpawner};
use futures::future::LocalBoxFuture;
use futures::task::LocalSpawnExt;

#[path = "../tests/common/two_nodes.rs"]
mod two_nodes;
use two_nodes::{fund_wallets, node_config, CHAIN_HASH, CKB, COMMITMENT_LOCK_CODE_HASH, FUNDING_LOCK_CODE_HASH};

const INITIATOR_SECRET: u8 = 0x11;

/// Tasks on a local pool; timers never fire (nothing here waits for one).
struct PoolPlatform(LocalSpawner);

impl Platform for PoolPlatform {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }
    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        self.0.spawn_local(task).expect("spawn");
    }
    fn sleep(&self, _ms: u64) -> LocalBoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

struct Counter(u64);
impl EntropySource for Counter {
    fn random_32(&mut self) -> [u8; 32] {
        self.0 += 1;
        fiber_funding::crypto::blake2b_256(&self.0.to_le_bytes())
    }
}

fn main() {
    let mut pool = LocalPool::new();
    let platform = Rc::new(PoolPlatform(pool.spawner()));
    let chain = Rc::new(RefCell::new(SimulatedChain::new()));
    let wallets = fund_wallets(&mut chain.borrow_mut(), 1_500);
    let configs = [
        node_config(INITIATOR_SECRET, None),
        node_config(0x22, Some(wallets.acceptor)),
    ];
    let ids = [configs[0].node_secret.node_id(), configs[1].node_secret.node_id()];
    let (i_sender, i_receiver) = inbox();
    let (a_sender, a_receiver) = inbox();
    let (i_link, a_link) = LoopbackLink::pair((ids[0], i_sender.clone()), (ids[1], a_sender.clone()));
    let store = Rc::new(MemoryStore::new());
    let client = Rc::new(SimulatedChainClient::new(chain.clone()));
    let parts = |index: usize, store: Rc<MemoryStore>, link: Rc<LoopbackLink>| DriverParts {
        config: configs[index].clone(),
        entropy: Box::new(Counter(index as u64 * 1000)),
        store,
        link,
        chain: client.clone(),
        platform: platform.clone(),
        settings: DriverSettings::default(),
        on_event: Box::new(|_| {}),
    };
    let (initiator, _) = pool
        .run_until(start(parts(0, store.clone(), i_link.clone()), i_sender, i_receiver))
        .unwrap();
    let (_acceptor, _) = pool
        .run_until(start(
            parts(1, Rc::new(MemoryStore::new()), a_link),
            a_sender,
            a_receiver,
        ))
        .unwrap();
    i_link.connect();
    pool.run_until_stalled();

    let params = OpenChannelParams::new(
        ids[1],
        1_000 * CKB,
        wallets.user_lock,
        vec![chain.borrow().default_lock_cell_dep()],
    );
    let (channel_id, unsigned) = pool.run_until(initiator.open_channel(params)).unwrap();
    pool.run_until_stalled();
    let record = store.raw(&channel_id.to_string()).expect("stored");
    let stored = ChannelRecord::decode(&channel_id.to_string(), &record).expect("the stored record reads");
    let offset_of = |record: &[u8], id: &[u8; 32]| {
        let found: Vec<usize> = (0..record.len()).filter(|&at| record[at..].starts_with(id)).collect();
        assert_eq!(found.len(), 1, "an id occurs once in the record");
        found[0]
    };
    let id_offsets = serde_json::json!({
        "channel_id": offset_of(&record, &stored.channel_id.0),
        "temporary_channel_id": offset_of(&record, &stored.temporary_channel_id.0),
    });
    // What the same flow leaves behind once it closed unfunded: a tombstone,
    // as the core wipes it (a boot with many closed flows reads these).
    let mut tombstone = stored.clone();
    tombstone.close_as_tombstone(
        CloseFlags::FUNDING_ABORTED,
        "the external funding timed out".into(),
        stored.deadline_ms,
    );
    let tombstone = tombstone.encode();
    let tombstone_id_offsets = serde_json::json!({
        "channel_id": offset_of(&tombstone, &stored.channel_id.0),
        "temporary_channel_id": offset_of(&tombstone, &stored.temporary_channel_id.0),
    });
    let signed = default_lock::sign_group(&unsigned, &[0], &wallets.user_key).unwrap();
    let fixture = serde_json::json!({
        "options": {
            "nodeSecretKey": encode_hex(&[INITIATOR_SECRET; 32]),
            "peerPubkey": ids[1].to_string(),
            "chainHash": encode_hex(&CHAIN_HASH),
            "fundingLock": { "code_hash": encode_hex(&FUNDING_LOCK_CODE_HASH), "hash_type": "type" },
            "commitmentLock": { "code_hash": encode_hex(&COMMITMENT_LOCK_CODE_HASH), "hash_type": "type" },
        },
        "channel_id": channel_id.to_string(),
        "record": encode_hex(&record),
        "record_id_offsets": id_offsets,
        "tombstone": encode_hex(&tombstone),
        "tombstone_id_offsets": tombstone_id_offsets,
        "signed_funding_tx": transaction_to_json(&signed),
    });
    println!("{fixture}");
}
