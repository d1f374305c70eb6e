//! The stored record (`ChannelRecord::read`): schemas 3 and 4 (binary) and
//! the JSON of schemas 1 and 2, read from storage a page (or another tab, or
//! a damaged disk) may have written anything to. A record that reads is then
//! restored into a node, as a boot does.
//!
//! Checked on every input:
//! * nothing panics (overflow checks and debug assertions are on), and a
//!   refusal is a message naming what is wrong;
//! * a record that reads writes back (schema 4) to bytes that read as the
//!   same record, and so does the record once upgraded with a node's terms;
//! * restoring it into the node whose key made the corpus' records (the
//!   initiator's, and the acceptor's with its wallet), then letting time pass
//!   and the peer reconnect, panics nowhere, acts on nothing before the write
//!   it depends on, and leaves memory equal to what was stored.

#![no_main]

#[path = "../../tests/common/two_nodes.rs"]
mod two_nodes;

use std::cell::Cell;
use std::sync::OnceLock;

use ckb_types::packed;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::flow::record::ChannelRecord;
use fiber_funding::flow::Node;
use fiber_funding::flow::{Action, ChainQuery, EntropySource, Event, NodeConfig, OpenFailure, OpenId, Role};
use fiber_funding::primitives::{ChannelId, NodeId};
use fiber_funding::runtime::{execute, Effects};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::store::Store;
use fiber_funding::wire::FiberMessage;
use libfuzzer_sys::fuzz_target;

struct Counter(Cell<u64>);

impl EntropySource for Counter {
    fn random_32(&mut self) -> [u8; 32] {
        let n = self.0.get();
        self.0.set(n + 1);
        let mut seed = [0xf0; 32];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        seed
    }
}

/// Effects that go nowhere: the node's decisions are what is checked.
struct Discard;

impl Effects for Discard {
    fn send(&mut self, _: NodeId, message: FiberMessage) {
        let bytes = message.encode();
        assert_eq!(
            FiberMessage::decode(&bytes).as_ref(),
            Ok(&message),
            "what we send decodes"
        );
    }
    fn hand_out_unsigned_tx(&mut self, _: Option<OpenId>, _: ChannelId, _: ChannelId, _: packed::Transaction) {}
    fn fetch_wallet_cells(&mut self, _: OpenId, _: packed::Script) {}
    fn open_failed(&mut self, _: OpenId, _: OpenFailure) {}
    fn broadcast(&mut self, _: ChannelId, _: packed::Transaction) {}
    fn query_chain(&mut self, _: ChannelId, _: ChainQuery) {}
    fn emit(&mut self, _: Event) {}
}

/// The configs of the nodes that made the corpus' records (tests/common's World).
fn configs() -> &'static [NodeConfig; 2] {
    static CONFIGS: OnceLock<[NodeConfig; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut chain = SimulatedChain::new();
        let wallets = two_nodes::fund_wallets(&mut chain, 2_000);
        [
            two_nodes::node_config(0x11, None),
            two_nodes::node_config(0x22, Some(wallets.acceptor)),
        ]
    })
}

/// Nothing about a channel is acted on before a write of that channel in the same list.
fn assert_persist_comes_first(actions: &[Action]) {
    for (index, action) in actions.iter().enumerate() {
        let channel = match action {
            Action::Send { message, .. } => message.channel_id(),
            Action::HandOutUnsignedTx { channel_id, .. }
            | Action::Broadcast { channel_id, .. }
            | Action::QueryChain { channel_id, .. } => *channel_id,
            _ => continue,
        };
        let persisted_later = actions[index..].iter().any(|later| {
            matches!(later, Action::Persist { record, .. }
                if record.channel_id == channel || record.temporary_channel_id == channel)
        });
        assert!(!persisted_later, "{action:?} runs before the persist it depends on");
    }
}

fn run(node: &mut Node, store: &MemoryStore, actions: Vec<Action>) {
    assert_persist_comes_first(&actions);
    futures::executor::block_on(execute(node, store, &mut Discard, actions)).expect("a memory store write lands");
}

fn restore(config: NodeConfig, record: ChannelRecord) {
    let store = MemoryStore::new();
    let mut node = Node::new(config, Box::new(Counter(Cell::new(0))));
    let id = record.channel_id;
    let peer = record.peer;
    let now = record.created_at_ms.saturating_add(1_000);
    let (actions, errors) = node.restore(vec![record], now);
    for error in &errors {
        assert!(!error.to_string().is_empty());
    }
    run(&mut node, &store, actions);
    let actions = node.peer_connected(&peer);
    run(&mut node, &store, actions);
    for later in [now.saturating_add(60_000), now.saturating_add(10_000_000)] {
        let actions = node.tick(later);
        run(&mut node, &store, actions);
        let _ = node.next_deadline();
    }
    for view in node.channels() {
        let memory = node.record(&view.channel_id).expect("a listed channel has a record");
        if let Some(stored) = futures::executor::block_on(store.get(&view.channel_id)).unwrap() {
            assert_eq!(
                &stored, memory,
                "channel {} in memory differs from storage",
                view.channel_id
            );
        }
    }
    let _ = node.channel(&id);
}

fuzz_target!(|data: &[u8]| {
    let record = match ChannelRecord::read(data) {
        Ok(record) => record,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let bytes = record.encode();
    assert_eq!(
        ChannelRecord::read(&bytes).as_ref(),
        Ok(&record),
        "a read record writes back as itself"
    );

    let [initiator, acceptor] = configs();
    let config = match record.role {
        Role::Initiator => initiator.clone(),
        Role::Acceptor => acceptor.clone(),
    };
    let mut upgraded = record.clone();
    upgraded.upgrade(&config);
    let bytes = upgraded.encode();
    assert_eq!(
        ChannelRecord::read(&bytes).as_ref(),
        Ok(&upgraded),
        "an upgraded record writes back as itself"
    );

    restore(config, record);
});
