//! A narrated external-funding flow between a "browser" initiator and an
//! acceptor over the simulated chain, with the page reload a JoyID redirect
//! causes in the middle. Run with `cargo run --example funding_flow`.
//!
//! It also shows how small a runtime is: feed inputs to a `Node`, hand its
//! actions to `runtime::execute` with a `Store` and an `Effects`.

use std::collections::VecDeque;

use ckb_types::packed;
use fiber_funding::chain::simulated::{CellFilter, SimulatedChain};
use fiber_funding::chain::simulated_client::simulated_cell;
use fiber_funding::flow::*;
use fiber_funding::primitives::{ChannelId, Hash256, NodeId};
use fiber_funding::runtime::{execute, Effects};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::store::Store;
use fiber_funding::tx::default_lock;
use fiber_funding::wire::FiberMessage;
use futures::executor::block_on;

#[path = "../tests/common/two_nodes.rs"]
mod two_nodes;
use two_nodes::{fund_wallets, node_config, CKB};

struct Entropy(u64);
impl EntropySource for Entropy {
    fn random_32(&mut self) -> [u8; 32] {
        self.0 += 1;
        fiber_funding::crypto::blake2b_256(&self.0.to_le_bytes())
    }
}

/// Collects what a node wants done; the loop below carries it out.
#[derive(Default)]
struct Outbox {
    name: &'static str,
    messages: Vec<(NodeId, FiberMessage)>,
    handed_out: Vec<(ChannelId, packed::Transaction)>,
    broadcasts: Vec<packed::Transaction>,
    queries: Vec<(ChannelId, ChainQuery)>,
    wallet_cell_lookups: Vec<(OpenId, packed::Script)>,
}

impl Effects for Outbox {
    fn send(&mut self, peer: NodeId, message: FiberMessage) {
        self.messages.push((peer, message));
    }
    fn hand_out_unsigned_tx(
        &mut self,
        _: Option<OpenId>,
        channel_id: ChannelId,
        _: ChannelId,
        tx: packed::Transaction,
    ) {
        self.handed_out.push((channel_id, tx));
    }
    fn fetch_wallet_cells(&mut self, open: OpenId, lock: packed::Script) {
        self.wallet_cell_lookups.push((open, lock));
    }
    fn open_failed(&mut self, _: OpenId, failure: OpenFailure) {
        panic!("the open failed: {failure}");
    }
    fn broadcast(&mut self, _: ChannelId, tx: packed::Transaction) {
        self.broadcasts.push(tx);
    }
    fn query_chain(&mut self, channel_id: ChannelId, query: ChainQuery) {
        self.queries.push((channel_id, query));
    }
    fn emit(&mut self, event: Event) {
        if let Event::StateChanged { state, .. } = event {
            println!("  {}: {state}", self.name);
        }
    }
}

const NAMES: [&str; 2] = ["browser ", "acceptor"];

/// The two nodes, their storage, the wire between them and the chain.
struct Demo {
    ids: [NodeId; 2],
    stores: [MemoryStore; 2],
    nodes: [Node; 2],
    chain: SimulatedChain,
    wire: VecDeque<(usize, FiberMessage)>,
    queries: VecDeque<(usize, ChannelId, ChainQuery)>,
    to_sign: Option<(ChannelId, packed::Transaction)>,
    now: u64,
}

impl Demo {
    /// Carries out node `index`'s actions: persists first, then the rest.
    fn run(&mut self, index: usize, actions: Vec<Action>) {
        let mut outbox = Outbox {
            name: NAMES[index],
            ..Outbox::default()
        };
        block_on(execute(
            &mut self.nodes[index],
            &self.stores[index],
            &mut outbox,
            actions,
        ))
        .expect("in-memory writes succeed");
        for (peer, message) in outbox.messages {
            println!("  {} -> {}", NAMES[index], message.name());
            self.wire.push_back((usize::from(peer == self.ids[1]), message));
        }
        for (channel_id, query) in outbox.queries {
            self.queries.push_back((index, channel_id, query));
        }
        for (open, lock) in outbox.wallet_cell_lookups {
            let cells = self.chain.get_cells(&lock, &CellFilter::plain(), 100, None).0;
            let now = self.now;
            let actions = self.nodes[index].wallet_cells(open, Ok(cells), now);
            self.run(index, actions);
        }
        for (channel_id, tx) in outbox.handed_out {
            println!("  {}: unsigned funding tx handed to the wallet", NAMES[index]);
            self.to_sign = Some((channel_id, tx));
        }
        for tx in outbox.broadcasts {
            let hash = self
                .chain
                .send_transaction(tx)
                .expect("the chain accepts the funding tx");
            println!("  {}: broadcast funding tx {}", NAMES[index], Hash256(hash));
        }
    }
}

fn main() {
    let mut chain = SimulatedChain::new();
    let wallets = fund_wallets(&mut chain, 2_000);
    let (user_key, user_lock) = (wallets.user_key, wallets.user_lock);
    let configs = [node_config(0x11, None), node_config(0x22, Some(wallets.acceptor))];
    let mut demo = Demo {
        ids: [configs[0].node_secret.node_id(), configs[1].node_secret.node_id()],
        stores: [MemoryStore::new(), MemoryStore::new()],
        nodes: [
            Node::new(configs[0].clone(), Box::new(Entropy(0))),
            Node::new(configs[1].clone(), Box::new(Entropy(1000))),
        ],
        chain,
        wire: VecDeque::new(),
        queries: VecDeque::new(),
        to_sign: None,
        now: 0,
    };

    println!("The browser opens a 1,000 CKB channel funded by the user's wallet:");
    for index in [0, 1] {
        let actions = demo.nodes[index].peer_connected(&demo.ids[1 - index]);
        demo.run(index, actions);
    }
    let params = OpenChannelParams::new(
        demo.ids[1],
        1_000 * CKB,
        user_lock,
        vec![demo.chain.default_lock_cell_dep()],
    );
    // The node waits for the peer (connected), asks for the wallet's cells
    // (answered from the chain in `run`), then sends OpenChannel.
    let actions = demo.nodes[0].request_open(OpenId(1), params, demo.now + 10_000, demo.now);
    demo.run(0, actions);

    let mut reloaded = false;
    loop {
        demo.now += 10;
        let now = demo.now;
        if let Some((to, message)) = demo.wire.pop_front() {
            let from = demo.ids[1 - to];
            let actions = demo.nodes[to].peer_message(&from, message, now);
            demo.run(to, actions);
        } else if let Some((index, channel_id, query)) = demo.queries.pop_front() {
            let event = match query {
                ChainQuery::LiveCells { lock } => ChainEvent::LiveCells {
                    channel_id,
                    cells: demo.chain.get_cells(&lock, &CellFilter::plain(), 100, None).0,
                },
                ChainQuery::ResolveInputs { out_points } => ChainEvent::ResolvedInputs {
                    channel_id,
                    cells: out_points.iter().map(|op| simulated_cell(&demo.chain, op)).collect(),
                    out_points,
                },
                ChainQuery::InputsLive { out_points, at_tip } => ChainEvent::InputsLive {
                    channel_id,
                    live: out_points.iter().map(|op| demo.chain.is_live(op)).collect(),
                    out_points,
                    at_tip,
                },
                ChainQuery::SpenderOf { out_point, .. } => ChainEvent::SpenderOf {
                    channel_id,
                    spender: demo.chain.spender_of(&out_point).and_then(|hash| {
                        let tx = demo.chain.transaction(&hash)?;
                        Some((fiber_funding::chain::CheckedTx(tx), demo.chain.report(&hash)))
                    }),
                    out_point,
                },
            };
            let actions = demo.nodes[index].chain_event(event, now);
            demo.run(index, actions);
        } else if let Some((channel_id, unsigned)) = demo.to_sign.take() {
            println!("\nThe page redirects to JoyID; the wasm module and all its memory are gone.");
            demo.nodes[0] = Node::new(configs[0].clone(), Box::new(Entropy(500)));
            let signed = default_lock::sign_group(&unsigned, &[0], &user_key).expect("the wallet signs");
            println!("The page boots again with the signed tx in its URL and restores from storage:");
            let records = block_on(demo.stores[0].load_all()).unwrap().records;
            let (actions, _) = demo.nodes[0].restore(records, now);
            demo.run(0, actions);
            for view in demo.nodes[0].channels() {
                println!("  restored {} in {}", view.channel_id, view.state);
            }
            for index in [0, 1] {
                let actions = demo.nodes[index].peer_connected(&demo.ids[1 - index]);
                demo.run(index, actions);
            }
            let (hash, actions) = demo.nodes[0]
                .submit_signed_funding_tx(&channel_id, &signed, now)
                .expect("submit");
            println!("  submit_signed_funding_tx -> funding_tx_hash {hash}");
            demo.run(0, actions);
            reloaded = true;
        } else if let Some((index, channel_id, hash)) = [0, 1].iter().find_map(|i| {
            // Only the funding tx: a ready channel also watches for a
            // commitment on chain, which never comes here.
            let funding = |c: &ChannelId| demo.nodes[*i].channel(c).and_then(|v| v.funding_tx_hash);
            demo.nodes[*i]
                .txs_to_watch()
                .into_iter()
                .find(|(c, h)| funding(c) == Some(*h))
                .map(|(c, h)| (*i, c, h))
        }) {
            let tip = demo.chain.mine_block();
            println!("  block {tip} mined");
            let event = ChainEvent::TxStatus {
                channel_id,
                tx_hash: hash,
                report: demo.chain.report(&hash.0),
            };
            let actions = demo.nodes[index].chain_event(event, now);
            demo.run(index, actions);
        } else {
            break;
        }
    }
    assert!(reloaded);
    for (index, node) in demo.nodes.iter().enumerate() {
        for view in node.channels() {
            println!("{}: channel {} is {}", NAMES[index], view.channel_id, view.state);
        }
    }
}
