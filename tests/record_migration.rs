//! The first boot of a module of record schema 3 on records stored as JSON
//! by an earlier one (schemas 1 and 2): the driver restores them, and every
//! restored record is stored again, at once, in schema 3's binary layout.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::flow::record::{ChannelRecord, RECORD_MAGIC, SCHEMA_VERSION};
use fiber_funding::runtime::driver::DriverParts;
use fiber_funding::runtime::loopback::LoopbackLink;
use fiber_funding::runtime::{inbox, start, DriverSettings};
use fiber_funding::store::memory::MemoryStore;
use futures::executor::LocalPool;
use serde::Deserialize;

#[path = "common/pool.rs"]
mod pool;
#[path = "common/two_nodes.rs"]
mod two_nodes;
use pool::{Counter, PoolPlatform};

/// The benchmark's records were made by the node of this secret.
const INITIATOR_SECRET: u8 = 0x11;

/// A stopped clock (the records' own time) and tasks on a local pool.
#[derive(Deserialize)]
struct Legacy {
    v2: Vec<Stored>,
}

#[derive(Deserialize)]
struct IdbV1 {
    channels: Vec<Stored>,
}

#[derive(Deserialize)]
struct Stored {
    key: String,
    value: String,
}

#[test]
fn the_first_boot_stores_every_restored_json_record_in_the_binary_layout() {
    let legacy: Legacy = serde_json::from_str(include_str!("fixtures/records-legacy.json")).unwrap();
    let idb_v1: IdbV1 = serde_json::from_str(include_str!("fixtures/idb-v1.json")).unwrap();
    let store = Rc::new(MemoryStore::new());
    let mut json = Vec::new();
    for entry in legacy.v2.iter().chain(&idb_v1.channels) {
        store.insert_raw(&entry.key, entry.value.clone().into_bytes());
        json.push((entry.key.clone(), entry.value.clone()));
    }
    // The benchmark's flow, before its deadline: restored as it is.
    let bench = ChannelRecord::decode(&legacy.v2[0].key, legacy.v2[0].value.as_bytes()).unwrap();
    let now_ms = bench.created_at_ms + 1;

    let mut pool = LocalPool::new();
    let platform = Rc::new(PoolPlatform {
        spawner: pool.spawner(),
        now_ms,
    });
    let config = two_nodes::node_config(INITIATOR_SECRET, None);
    let peer = two_nodes::node_config(0x22, None).node_secret.node_id();
    let (sender, receiver) = inbox();
    let (link, _peer_end) = LoopbackLink::pair((config.node_secret.node_id(), sender.clone()), (peer, inbox().0));
    let chain = Rc::new(RefCell::new(SimulatedChain::new()));
    let parts = DriverParts {
        config,
        entropy: Box::new(Counter(0)),
        store: store.clone(),
        link,
        chain: Rc::new(SimulatedChainClient::new(chain)),
        platform,
        settings: DriverSettings::default(),
        on_event: Box::new(|_| {}),
    };
    let (_node, unreadable) = pool.run_until(start(parts, sender, receiver)).unwrap();
    pool.run_until_stalled();

    let refused: Vec<&str> = unreadable.iter().map(|e| e.channel_id.as_str()).collect();
    let mut rewritten = 0;
    for (key, json) in &json {
        let stored = store.raw(key).unwrap();
        if refused.contains(&key.as_str()) {
            // Not restored (damaged, or another node's): left as it was.
            assert_eq!(stored, json.as_bytes(), "{key}");
            continue;
        }
        assert_eq!(stored[..4], RECORD_MAGIC, "{key} is stored again in the binary layout");
        let record = ChannelRecord::decode(key, &stored).unwrap();
        assert_eq!(record.schema_version, SCHEMA_VERSION, "{key}");
        rewritten += 1;
    }
    // The benchmark's flow and the three schema 1 records of the IndexedDB
    // fixture; refused by name: its damaged entry, and the made-up records
    // whose keys are no node's, the open one and the two closed ones still
    // watched (they hold keys, and are key-checked like an open one).
    assert_eq!(rewritten, 4);
    let mut refused = refused;
    refused.sort();
    assert_eq!(
        refused,
        [
            "0x7777777777777777777777777777777777777777777777777777777777777777",
            "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "0xb1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
            "0xc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1",
        ]
    );
}
