//! Group commit in the driver: steps for different peers that are queued
//! together share one store write (one fsync in the counterparty's redb
//! store), and a peer's second input never runs while its first one's
//! write is still in flight (one of the peers has two channels opening). One acceptor driver serves several initiator
//! drivers through a switch that holds every message until the test
//! delivers the lot, so messages from all peers arrive together, as they do
//! at a busy hub.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use common::chain_double::ChainWith;
use common::pool::{Counter, PoolPlatform};
use common::two_nodes::fund_wallets;
use common::{config, CKB};
use fiber_funding::chain::client::ChainClient;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::flow::record::{ChannelRecord, RecordDecodeError};
use fiber_funding::flow::{ChannelState, OpenChannelParams};
use fiber_funding::primitives::{ChannelId, Hash256, NodeId};
use fiber_funding::runtime::*;
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::store::{LoadedRecords, Store, StoreError};
use fiber_funding::tx::default_lock;
use fiber_funding::wire::FiberMessage;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use k256::ecdsa::SigningKey;

const INITIATORS: usize = 3;

/// Every node's inbox, and the messages in transit, held until delivered.
#[derive(Default)]
struct Switch {
    inboxes: RefCell<Vec<(NodeId, InputSender)>>,
    in_transit: RefCell<Vec<(NodeId, Input)>>,
    /// Every message to this node arrives twice, back to back (a peer that
    /// retransmits, as after a reconnection).
    doubled_to: Cell<Option<NodeId>>,
}

impl Switch {
    fn inbox(&self, node: &NodeId) -> InputSender {
        let inboxes = self.inboxes.borrow();
        inboxes
            .iter()
            .find(|(id, _)| id == node)
            .expect("a node on the switch")
            .1
            .clone()
    }

    /// Hands every message in transit to its node at once; how many.
    fn deliver(&self) -> usize {
        let messages: Vec<_> = self.in_transit.borrow_mut().drain(..).collect();
        let count = messages.len();
        for (to, input) in messages {
            let _ = self.inbox(&to).unbounded_send(input);
        }
        count
    }

    fn connect(&self, a: NodeId, b: NodeId) {
        let _ = self.inbox(&a).unbounded_send(Input::PeerConnected(b));
        let _ = self.inbox(&b).unbounded_send(Input::PeerConnected(a));
    }
}

/// One node's end of the switch.
struct Port {
    own: NodeId,
    switch: Rc<Switch>,
}

impl PeerLink for Port {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        let copies = if self.switch.doubled_to.get() == Some(*peer) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let message = FiberMessage::decode(&message.encode()).expect("what we encode decodes");
            self.switch
                .in_transit
                .borrow_mut()
                .push((*peer, Input::PeerMessage(self.own, message)));
        }
    }
    fn close(&self) {}
}

/// A memory store that notes which channels each write operation carried.
#[derive(Default)]
struct GroupLog {
    memory: MemoryStore,
    groups: RefCell<Vec<Vec<(ChannelId, NodeId)>>>,
}

impl Store for GroupLog {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        self.groups.borrow_mut().push(vec![(record.channel_id, record.peer)]);
        self.memory.put(record, replaces).await
    }

    async fn put_all(&self, writes: &[(&ChannelRecord, Option<&ChannelId>)]) -> Vec<Result<(), StoreError>> {
        self.groups.borrow_mut().push(
            writes
                .iter()
                .map(|(record, _)| (record.channel_id, record.peer))
                .collect(),
        );
        self.memory.put_all(writes).await
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        self.memory.get(channel_id).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        self.memory.load_all().await
    }
}

/// A channel id and its unsigned funding tx, as an open answers.
type Opened = (ChannelId, packed::Transaction);

/// Pending once, then ready: a status lookup stays in flight while the
/// pool runs the other tasks, as an HTTP request would.
#[derive(Default)]
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// The simulated chain, noting which txs' status each caller asked about,
/// and how many status lookups were in flight at most (each stays in
/// flight while the pool runs the other tasks, as an HTTP request would).
fn counting_chain(
    inner: SimulatedChainClient,
    asked: Rc<RefCell<Vec<Hash256>>>,
    most_in_flight: Rc<Cell<usize>>,
) -> ChainWith {
    let in_flight = Rc::new(Cell::new(0));
    ChainWith {
        transaction_status: Some(Box::new(move |inner, tx_hash| {
            asked.borrow_mut().push(tx_hash);
            let answer = inner.transaction_status(tx_hash);
            let (in_flight, most) = (in_flight.clone(), most_in_flight.clone());
            in_flight.set(in_flight.get() + 1);
            most.set(most.get().max(in_flight.get()));
            Box::pin(async move {
                YieldOnce::default().await;
                in_flight.set(in_flight.get() - 1);
                answer.await
            })
        })),
        ..ChainWith::new(inner)
    }
}

/// What a run leaves to check: the acceptor's store, the txs whose status
/// each of two polls made right after the submits asked about, every funding
/// tx, and the most status lookups the acceptor had in flight at once.
struct Run {
    store: Rc<GroupLog>,
    first_polls: [Vec<Hash256>; 2],
    funding_txs: Vec<Hash256>,
    most_polls_in_flight: usize,
}

/// The acceptor's cap on polls in flight in these runs.
const MAX_POLLS: usize = 2;

struct User {
    key: SigningKey,
    lock: packed::Script,
    driver: DriverHandle,
}

fn cell(lock: &packed::Script, ckb: u64) -> packed::CellOutput {
    packed::CellOutput::new_builder()
        .capacity(ckb * CKB)
        .lock(lock.clone())
        .build()
}

/// Opens a channel from every user at once and takes each to ChannelReady,
/// delivering the switch's messages in bulk (each message to the acceptor
/// twice when `retransmitting`).
fn open_all_at_once(retransmitting: bool) -> Run {
    let mut pool = LocalPool::new();
    // The clock stands still: no deadline comes due here.
    let platform = Rc::new(PoolPlatform {
        spawner: pool.spawner(),
        now_ms: 1_000_000,
    });
    let chain = Rc::new(RefCell::new(SimulatedChain::new()));
    let wallets = fund_wallets(&mut chain.borrow_mut(), 1_500);
    // A reserve cell of the acceptor's own for every concurrent open.
    for _ in 0..INITIATORS {
        chain
            .borrow_mut()
            .genesis_cell(cell(&wallets.acceptor.wallet_lock, 500), Vec::new());
    }
    let client = Rc::new(SimulatedChainClient::new(chain.clone()));
    let switch = Rc::new(Switch::default());

    let acceptor_config = config(0x22, Some(wallets.acceptor), 1);
    let acceptor_id = acceptor_config.node_secret.node_id();
    if retransmitting {
        switch.doubled_to.set(Some(acceptor_id));
    }
    let acceptor_store = Rc::new(GroupLog::default());
    let asked = Rc::new(RefCell::new(Vec::new()));
    let most_in_flight = Rc::new(Cell::new(0));
    let (sender, receiver) = inbox();
    switch.inboxes.borrow_mut().push((acceptor_id, sender.clone()));
    let parts = DriverParts {
        config: acceptor_config,
        entropy: Box::new(Counter(1 << 40)),
        store: acceptor_store.clone(),
        link: Rc::new(Port {
            own: acceptor_id,
            switch: switch.clone(),
        }),
        chain: Rc::new(counting_chain(
            SimulatedChainClient::new(chain.clone()),
            asked.clone(),
            most_in_flight.clone(),
        )),
        platform: platform.clone(),
        settings: DriverSettings {
            max_polls_in_flight: MAX_POLLS,
            ..DriverSettings::default()
        },
        on_event: Box::new(|_| {}),
    };
    let (acceptor, _) = pool.run_until(start(parts, sender, receiver)).unwrap();

    let mut users = Vec::new();
    for i in 0..INITIATORS {
        let key = SigningKey::from_slice(&[0x60 + i as u8; 32]).unwrap();
        let lock = default_lock::lock_script_for_key(key.verifying_key());
        // The first user opens two channels at once: a cell for each.
        for _ in 0..if i == 0 { 2 } else { 1 } {
            chain.borrow_mut().genesis_cell(cell(&lock, 1_500), Vec::new());
        }
        let node_config = config(0x30 + i as u8, None, 1);
        let id = node_config.node_secret.node_id();
        let (sender, receiver) = inbox();
        switch.inboxes.borrow_mut().push((id, sender.clone()));
        let parts = DriverParts {
            config: node_config,
            entropy: Box::new(Counter((i as u64) << 20)),
            store: Rc::new(MemoryStore::new()),
            link: Rc::new(Port {
                own: id,
                switch: switch.clone(),
            }),
            chain: client.clone(),
            platform: platform.clone(),
            settings: DriverSettings::default(),
            on_event: Box::new(|_| {}),
        };
        let (driver, _) = pool.run_until(start(parts, sender, receiver)).unwrap();
        switch.connect(id, acceptor_id);
        users.push(User { key, lock, driver });
    }
    pool.run_until_stalled();

    // Every user opens at once, the first one twice; the switch delivers in
    // bulk until all are answered.
    let openers: Vec<usize> = std::iter::once(0).chain(0..INITIATORS).collect();
    let opened: Rc<RefCell<Vec<Option<Opened>>>> = Rc::new(RefCell::new(vec![None; openers.len()]));
    for (slot, &user) in openers.iter().enumerate() {
        let params = OpenChannelParams::new(
            acceptor_id,
            1_000 * CKB,
            users[user].lock.clone(),
            vec![chain.borrow().default_lock_cell_dep()],
        );
        let (driver, opened) = (users[user].driver.clone(), opened.clone());
        pool.spawner()
            .spawn_local(async move {
                opened.borrow_mut()[slot] = Some(driver.open_channel(params).await.expect("open"));
            })
            .unwrap();
    }
    let rounds = Cell::new(0);
    let settle = |pool: &mut LocalPool| loop {
        pool.run_until_stalled();
        rounds.set(rounds.get() + 1);
        assert!(rounds.get() < 1_000, "the nodes never went quiet");
        if switch.deliver() == 0 {
            break;
        }
    };
    settle(&mut pool);

    for (&user, opened) in openers.iter().zip(opened.borrow().iter()) {
        let user = &users[user];
        let (channel_id, unsigned) = opened.clone().expect("every open answered");
        let signed = default_lock::sign_group(&unsigned, &[0], &user.key).unwrap();
        pool.run_until(user.driver.submit_signed_funding_tx(channel_id, signed))
            .unwrap();
    }
    settle(&mut pool);
    let funding_txs: Vec<Hash256> = opened
        .borrow()
        .iter()
        .map(|opened| Hash256(opened.as_ref().unwrap().1.calc_tx_hash().unpack()))
        .collect();
    // Two polls of the acceptor while every funding tx waits for a block.
    let first_polls = [(); 2].map(|()| {
        asked.borrow_mut().clear();
        let _ = acceptor.sender().unbounded_send(Input::Poll);
        settle(&mut pool);
        asked.borrow().clone()
    });

    chain.borrow_mut().mine_block();
    // Polls, as the timers would send them, until nothing is left to learn.
    for _ in 0..openers.len() {
        for user in &users {
            let _ = user.driver.sender().unbounded_send(Input::Poll);
        }
        let _ = acceptor.sender().unbounded_send(Input::Poll);
        settle(&mut pool);
    }

    for (&user, opened) in openers.iter().zip(opened.borrow().iter()) {
        let user = &users[user];
        let channel_id = opened.as_ref().unwrap().0;
        for (side, driver) in [("initiator", &user.driver), ("acceptor", &acceptor)] {
            let view = pool.run_until(driver.channel(channel_id)).unwrap().expect("known");
            assert_eq!(view.state, ChannelState::ChannelReady, "{side} of {channel_id}");
        }
    }
    Run {
        store: acceptor_store,
        first_polls,
        funding_txs,
        most_polls_in_flight: most_in_flight.get(),
    }
}

#[test]
fn writes_for_different_peers_queued_together_share_one_commit() {
    let store = open_all_at_once(false).store;
    let groups = store.groups.borrow();
    let largest = groups.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(
        largest, INITIATORS,
        "the steps of {INITIATORS} peers queued together commit as one group: {groups:?}"
    );
    let writes: usize = groups.iter().map(Vec::len).sum();
    assert!(groups.len() < writes, "{writes} writes in {} operations", groups.len());
}

/// A peer's second input waits for the commit of its first: the first user
/// has two channels in flight, so its inputs are often queued two at a
/// time, and with every message arriving twice, always.
#[test]
fn a_peer_never_has_two_writes_in_one_commit() {
    for retransmitting in [false, true] {
        let store = open_all_at_once(retransmitting).store;
        for group in store.groups.borrow().iter() {
            let mut peers: Vec<NodeId> = group.iter().map(|(_, peer)| *peer).collect();
            peers.sort();
            peers.dedup();
            assert_eq!(
                peers.len(),
                group.len(),
                "one peer written twice in one commit: {group:?}"
            );
        }
    }
}

/// What the acceptor's store holds is what a restart would restore: every
/// channel, ready.
#[test]
fn every_grouped_write_is_stored() {
    let store = open_all_at_once(false).store;
    let loaded = futures::executor::block_on(store.load_all()).unwrap();
    let unreadable: &[RecordDecodeError] = &loaded.unreadable;
    assert!(unreadable.is_empty());
    assert_eq!(loaded.records.len(), INITIATORS + 1);
    assert!(loaded
        .records
        .iter()
        .all(|record| record.funding_confirmed && record.peer_channel_ready));
}

/// A hub watching many txs asks about a bounded number per poll, and the
/// next poll goes on where the last one stopped, so each is asked in turn.
/// The cap bounds how many polls are in flight, not how often a tx is asked
/// about: each poll is one round over every watched tx, the next lookup
/// starting as soon as one is answered.
#[test]
fn a_poll_round_asks_about_every_watched_tx_with_few_in_flight() {
    let run = open_all_at_once(false);
    let mut expected = run.funding_txs.clone();
    expected.sort();
    assert!(expected.len() > MAX_POLLS, "more txs than the cap: {expected:?}");
    for (round, asked) in run.first_polls.iter().enumerate() {
        let mut asked = asked.clone();
        asked.sort();
        assert_eq!(asked, expected, "round {round} asked about each funding tx once");
    }
    assert_eq!(
        run.most_polls_in_flight, MAX_POLLS,
        "never more than the cap in flight, and the cap used"
    );
}
