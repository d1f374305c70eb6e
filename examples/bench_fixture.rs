//! Prints (as JSON) one real initiator record waiting for the user's
//! signature, the user's signed funding tx for it, and the options a browser
//! node needs to load it: the benchmark seeds IndexedDB with copies of it.
//! Run with `cargo run --example bench_fixture`.

use std::cell::RefCell;
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::client::SimulatedChainClient;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::flow::config::*;
use fiber_funding::flow::{AcceptorConfig, EntropySource, NodeConfig, OpenChannelParams};
use fiber_funding::primitives::{encode_hex, Hash256};
use fiber_funding::runtime::driver::DriverParts;
use fiber_funding::runtime::loopback::LoopbackLink;
use fiber_funding::runtime::{inbox, start, DriverSettings, Platform};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::json::transaction_to_json;
use fiber_funding::tx::script::ScriptTemplate;
use futures::executor::{LocalPool, LocalSpawner};
use futures::future::LocalBoxFuture;
use futures::task::LocalSpawnExt;
use k256::ecdsa::SigningKey;

const CKB: u64 = 100_000_000;
const NODE_SECRET: [u8; 32] = [0x11; 32];
const CHAIN_HASH: [u8; 32] = [0xcc; 32];

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

fn config(secret: [u8; 32], acceptor: Option<AcceptorConfig>) -> NodeConfig {
    NodeConfig {
        node_secret: NodeSecret::from_bytes(secret).unwrap(),
        chain_hash: Hash256(CHAIN_HASH),
        funding_lock: ScriptTemplate::type_hash([0xf1; 32]),
        commitment_lock: ScriptTemplate::type_hash([0xc1; 32]),
        external_funding_timeout_ms: DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS,
        funding_confirmations: 1,
        acceptor,
    }
}

fn main() {
    let mut pool = LocalPool::new();
    let platform = Rc::new(PoolPlatform(pool.spawner()));
    let chain = Rc::new(RefCell::new(SimulatedChain::new()));
    let user_key = SigningKey::from_slice(&[0x51; 32]).unwrap();
    let peer_key = SigningKey::from_slice(&[0x52; 32]).unwrap();
    let user_lock = default_lock::lock_script_for_key(user_key.verifying_key());
    let peer_lock = default_lock::lock_script_for_key(peer_key.verifying_key());
    for (lock, ckb) in [(&user_lock, 1_500), (&peer_lock, 500)] {
        let output = packed::CellOutput::new_builder()
            .capacity(ckb * CKB)
            .lock(lock.clone())
            .build();
        chain.borrow_mut().genesis_cell(output, Vec::new());
    }
    let acceptor = AcceptorConfig {
        wallet_lock: peer_lock,
        wallet_cell_deps: vec![chain.borrow().default_lock_cell_dep()],
        wallet_key: peer_key.to_bytes().into(),
        funding_amount: 0,
        grace_ms: DEFAULT_ACCEPTOR_GRACE_MS,
        force_close_after_ms: None,
    };
    let configs = [config(NODE_SECRET, None), config([0x22; 32], Some(acceptor))];
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
        user_lock,
        vec![chain.borrow().default_lock_cell_dep()],
    );
    let (channel_id, unsigned) = pool.run_until(initiator.open_channel(params)).unwrap();
    pool.run_until_stalled();
    let record = String::from_utf8(store.raw(&channel_id.to_string()).expect("stored")).unwrap();
    let signed = default_lock::sign_group(&unsigned, &[0], &user_key).unwrap();
    let fixture = serde_json::json!({
        "options": {
            "nodeSecretKey": encode_hex(&NODE_SECRET),
            "peerPubkey": ids[1].to_string(),
            "chainHash": encode_hex(&CHAIN_HASH),
            "fundingLock": { "code_hash": encode_hex(&[0xf1; 32]), "hash_type": "type" },
            "commitmentLock": { "code_hash": encode_hex(&[0xc1; 32]), "hash_type": "type" },
        },
        "channel_id": channel_id.to_string(),
        "record": record,
        "signed_funding_tx": transaction_to_json(&signed),
    });
    println!("{fixture}");
}
