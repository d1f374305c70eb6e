//! A deterministic world for native tests: an initiator (the browser) and an
//! acceptor (the counterparty), each a real `Node` over a `MemoryStore`,
//! joined by a loopback link that can hold, drop and reorder delivery, over a
//! simulated chain that checks transactions as CKB would.
//!
//! Every message crosses the link as encoded bytes. A crash is injected
//! through the store: the k-th write lands (or not) and the node dies before
//! running anything after it; the node is then rebuilt from its store alone.

#![allow(dead_code)]

pub mod chain_double;
pub mod lies;
pub mod pool;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::simulated::{CellFilter, SimulatedChain};
use fiber_funding::chain::{CheckedTx, LiveCell, ResolvedCell, TxReport, TxStatus};
use fiber_funding::flow::config::*;
use fiber_funding::flow::*;
use fiber_funding::primitives::{ChannelId, Hash256, NodeId};
use fiber_funding::runtime::{execute, Effects};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::store::{LoadedRecords, Store, StoreError};
use fiber_funding::tx::default_lock;
use fiber_funding::tx::parts::TxParts;
use fiber_funding::tx::script::ScriptTemplate;
use fiber_funding::wire::FiberMessage;
use k256::ecdsa::SigningKey;

pub mod two_nodes;

pub use two_nodes::CKB;
use two_nodes::{node_config, COMMITMENT_LOCK_CODE_HASH, FUNDING_LOCK_CODE_HASH};

pub const INITIATOR: usize = 0;
pub const ACCEPTOR: usize = 1;
pub const TIMEOUT_MS: u64 = 300_000;
pub const GRACE_MS: u64 = 60_000;
/// How long an open request waits for its peer (both are connected in a World).
pub const OPEN_WAIT_MS: u64 = 10_000;

/// Counter-based randomness that survives a node's restart (a restarted
/// node must not draw the seeds it drew before).
struct CountingEntropy {
    node: u8,
    counter: Rc<Cell<u64>>,
}

impl EntropySource for CountingEntropy {
    fn random_32(&mut self) -> [u8; 32] {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let mut seed = [self.node; 40];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        fiber_funding::crypto::blake2b_256(&seed)
    }
}

/// A fresh node with the world's initiator config, connected to nobody and
/// outside the world: for tests that drive the core's inputs one by one.
pub fn lone_initiator(world: &World) -> Node {
    let entropy = CountingEntropy {
        node: 0xee,
        counter: Rc::new(Cell::new(0)),
    };
    Node::new(world.nodes[INITIATOR].config.clone(), Box::new(entropy))
}

/// Where to kill a node: at its `at_put`-th store write (counting from 1),
/// with the write landing first (`lands`) or not.
#[derive(Debug, Clone, Copy)]
pub struct CrashPlan {
    pub node: usize,
    pub at_put: usize,
    pub lands: bool,
    /// How long the node stays down before it restarts.
    pub down_for_ms: u64,
}

/// A store that can die at a chosen write.
pub struct CrashingStore {
    pub inner: MemoryStore,
    pub puts_seen: Cell<usize>,
    crash_at: Cell<Option<(usize, bool)>>,
    pub crashed: Cell<bool>,
}

impl CrashingStore {
    pub fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            puts_seen: Cell::new(0),
            crash_at: Cell::new(None),
            crashed: Cell::new(false),
        }
    }
}

impl Store for CrashingStore {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        let n = self.puts_seen.get() + 1;
        self.puts_seen.set(n);
        if let Some((at, lands)) = self.crash_at.get() {
            if at == n {
                self.crash_at.set(None);
                self.crashed.set(true);
                if lands {
                    self.inner.put(record, replaces).await?;
                }
                return Err(StoreError::Unavailable("the process died".into()));
            }
        }
        self.inner.put(record, replaces).await
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        self.inner.get(channel_id).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        self.inner.load_all().await
    }
}

#[derive(Default)]
struct Outbox {
    sends: Vec<(NodeId, FiberMessage)>,
    handed_out: Vec<(ChannelId, packed::Transaction)>,
    handed_out_to: Vec<Option<OpenId>>,
    wallet_cell_lookups: Vec<(OpenId, packed::Script)>,
    open_failures: Vec<(OpenId, OpenFailure)>,
    broadcasts: Vec<(ChannelId, packed::Transaction)>,
    queries: Vec<(ChannelId, ChainQuery)>,
    events: Vec<Event>,
}

impl Effects for Outbox {
    fn send(&mut self, peer: NodeId, message: FiberMessage) {
        self.sends.push((peer, message));
    }
    fn hand_out_unsigned_tx(
        &mut self,
        open: Option<OpenId>,
        channel_id: ChannelId,
        _temporary: ChannelId,
        tx: packed::Transaction,
    ) {
        self.handed_out.push((channel_id, tx));
        self.handed_out_to.push(open);
    }
    fn fetch_wallet_cells(&mut self, open: OpenId, lock: packed::Script) {
        self.wallet_cell_lookups.push((open, lock));
    }
    fn open_failed(&mut self, open: OpenId, failure: OpenFailure) {
        self.open_failures.push((open, failure));
    }
    fn broadcast(&mut self, channel_id: ChannelId, tx: packed::Transaction) {
        self.broadcasts.push((channel_id, tx));
    }
    fn query_chain(&mut self, channel_id: ChannelId, query: ChainQuery) {
        self.queries.push((channel_id, query));
    }
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}

pub struct TestNode {
    pub node: Node,
    pub store: CrashingStore,
    /// What the node runs with; a change takes effect at the next restart.
    pub config: NodeConfig,
    entropy_counter: Rc<Cell<u64>>,
    index: u8,
    pub up: bool,
    /// Its broadcasts never reach the chain (a peer that takes the other
    /// side's signatures and sits on the complete tx).
    pub broadcasts_withheld: bool,
    pub restarts: usize,
    pub restore_errors: Vec<String>,
}

impl TestNode {
    fn new(config: NodeConfig, index: u8) -> Self {
        let entropy_counter = Rc::new(Cell::new(0));
        let node = Node::new(
            config.clone(),
            Box::new(CountingEntropy {
                node: index,
                counter: entropy_counter.clone(),
            }),
        );
        Self {
            node,
            store: CrashingStore::new(),
            config,
            entropy_counter,
            index,
            up: true,
            broadcasts_withheld: false,
            restarts: 0,
            restore_errors: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.node_secret.node_id()
    }
}

/// How the link delivers packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    InOrder,
    /// A pseudo-random queued packet next (deterministic per seed).
    Shuffled(u64),
    /// Nothing is delivered until released.
    Held,
}

pub struct Packet {
    pub from: usize,
    pub to: usize,
    pub bytes: Vec<u8>,
}

/// The user at the wallet: signs whatever is handed out with their key.
pub struct User {
    pub key: SigningKey,
    pub lock: packed::Script,
    pub auto_submit: bool,
    /// The signed tx "in the URL" when the wallet redirects back.
    pub signed_in_url: Option<(ChannelId, packed::Transaction)>,
    pub submit_results: Vec<Result<Hash256, FlowError>>,
}

pub struct World {
    pub chain: SimulatedChain,
    pub now_ms: u64,
    pub nodes: [TestNode; 2],
    pub link: VecDeque<Packet>,
    pub delivery: Delivery,
    pub drop_next: usize,
    pub dropped: usize,
    pub queries: VecDeque<(usize, ChannelId, ChainQuery)>,
    pub user: User,
    pub acceptor_key: SigningKey,
    pub events: Vec<(usize, Event)>,
    /// Every message any node sent, decoded again from the bytes that crossed.
    pub sent_log: Vec<(usize, FiberMessage)>,
    pub handed_out: Vec<(ChannelId, packed::Transaction)>,
    pub broadcasts: Vec<(usize, packed::Transaction)>,
    pub crash_plan: Option<CrashPlan>,
    pub crashes: usize,
    next_open: u64,
    /// Open requests that failed, until `open_with` reads them.
    pub open_failures: Vec<(OpenId, OpenFailure)>,
    /// The open request each hand-out named (`None`: a restored flow's).
    pub handed_out_to: Vec<Option<OpenId>>,
    /// The channel each open request made, noted before its actions ran
    /// (a crash planned at its first write restarts the node).
    opened: Vec<(OpenId, ChannelId)>,
    pending_submit: bool,
    /// The connection between the two nodes broke ([`World::disconnect`])
    /// and is not back: nothing crosses until [`World::reconnect`].
    pub link_down: bool,
    /// Txs whose status polls answer "unknown" though the chain has them (a
    /// node that missed them); other reads still find them.
    pub status_hidden: Vec<Hash256>,
    shuffle_state: u64,
    reported_status: BTreeMap<(usize, ChannelId, Hash256), TxReport>,
    confirmations: u64,
}

pub struct Setup {
    pub user_cells_ckb: Vec<u64>,
    pub acceptor_cells_ckb: Vec<u64>,
    pub acceptor_funding_ckb: u64,
    pub confirmations: u64,
    /// Deploy Fiber's real contracts in the chain's genesis and name them in
    /// both configs (code by data2 hash, cell deps [the lock's code, auth]),
    /// instead of made-up code hashes; the chain then holds CKB's real default
    /// lock and runs every script of every tx it accepts in ckb-vm.
    pub fiber_contracts: bool,
    /// The acceptor force-closes a funded channel whose peer has been away this long.
    pub force_close_after_ms: Option<u64>,
    /// With `fiber_contracts`: the acceptor names the contracts' cell deps in
    /// the other order, as another node's configuration may, so the txs it
    /// broadcasts hash differently from the user's.
    pub acceptor_reorders_contract_deps: bool,
    /// Confirmations before a tx that ends a channel settles it; `None`:
    /// `confirmations`, so a close ends as soon as it is final.
    pub settle_confirmations: Option<u64>,
}

impl Setup {
    /// Cells for two flows at once: two of the user's, two of the acceptor's.
    pub fn two_flows() -> Self {
        Self {
            user_cells_ckb: vec![5_000, 5_000],
            acceptor_cells_ckb: vec![500, 500],
            ..Self::default()
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            user_cells_ckb: vec![700, 800],
            acceptor_cells_ckb: vec![500, 500],
            acceptor_funding_ckb: 0,
            confirmations: 3,
            fiber_contracts: false,
            force_close_after_ms: None,
            acceptor_reorders_contract_deps: false,
            settle_confirmations: None,
        }
    }
}

/// Fiber's contracts as genesis cells of `chain`: (funding lock, commitment lock).
#[cfg(not(target_arch = "wasm32"))]
pub fn deploy_fiber_contracts(chain: &mut SimulatedChain) -> (ScriptTemplate, ScriptTemplate) {
    use fiber_funding::native::contracts::Contract;
    use fiber_funding::tx::script::HashType;
    let mut deploy = |contract: Contract| {
        let binary = contract.binary();
        let holder = packed::Script::new_builder().code_hash([0xee; 32].pack()).build();
        let output = packed::CellOutput::new_builder()
            .capacity((binary.len() as u64 + 200) * CKB)
            .lock(holder)
            .build();
        let data_hash = packed::CellOutput::calc_data_hash(&binary);
        let out_point = chain.genesis_cell(output, binary);
        let dep = packed::CellDep::new_builder()
            .out_point(out_point)
            .dep_type(ckb_types::core::DepType::Code)
            .build();
        (data_hash, dep)
    };
    let (auth_hash, auth) = deploy(Contract::Auth);
    let _ = auth_hash;
    // Data2: the commitment lock spawns ckb-auth, which needs VM version 2
    // (upstream's dev chain references both locks this way too).
    let template = |(code_hash, dep): (packed::Byte32, packed::CellDep)| ScriptTemplate {
        code_hash: Hash256(code_hash.unpack()),
        hash_type: HashType::Data2,
        cell_deps: vec![dep, auth.clone()],
    };
    let funding = template(deploy(Contract::FundingLock));
    let commitment = template(deploy(Contract::CommitmentLock));
    (funding, commitment)
}

pub fn funding_lock() -> ScriptTemplate {
    ScriptTemplate::type_hash(FUNDING_LOCK_CODE_HASH)
}

pub fn commitment_lock() -> ScriptTemplate {
    ScriptTemplate::type_hash(COMMITMENT_LOCK_CODE_HASH)
}

pub fn config(secret: u8, acceptor: Option<AcceptorConfig>, confirmations: u64) -> NodeConfig {
    NodeConfig {
        external_funding_timeout_ms: TIMEOUT_MS,
        funding_confirmations: confirmations,
        settle_confirmations: confirmations,
        ..node_config(secret, acceptor)
    }
}

fn cell_output(lock: &packed::Script, ckb: u64) -> packed::CellOutput {
    packed::CellOutput::new_builder()
        .capacity(ckb * CKB)
        .lock(lock.clone())
        .build()
}

impl World {
    pub fn new(setup: Setup) -> Self {
        // Made-up lock code hashes cannot run, so only a chain with the real
        // contracts runs scripts.
        #[cfg(not(target_arch = "wasm32"))]
        let mut chain = if setup.fiber_contracts {
            fiber_funding::native::script_vm::verifying_chain()
        } else {
            SimulatedChain::new()
        };
        #[cfg(target_arch = "wasm32")]
        let mut chain = SimulatedChain::new();
        let user_key = SigningKey::from_slice(&[0x51; 32]).unwrap();
        let acceptor_key = SigningKey::from_slice(&[0x52; 32]).unwrap();
        let user_lock = default_lock::lock_script_for_key(user_key.verifying_key());
        let acceptor_lock = default_lock::lock_script_for_key(acceptor_key.verifying_key());
        for ckb in &setup.user_cells_ckb {
            chain.genesis_cell(cell_output(&user_lock, *ckb), Vec::new());
        }
        for ckb in &setup.acceptor_cells_ckb {
            chain.genesis_cell(cell_output(&acceptor_lock, *ckb), Vec::new());
        }
        let acceptor = AcceptorConfig {
            wallet_lock: acceptor_lock,
            wallet_cell_deps: vec![chain.default_lock_cell_dep()],
            wallet_key: acceptor_key.to_bytes().into(),
            funding_amount: setup.acceptor_funding_ckb * CKB,
            grace_ms: GRACE_MS,
            force_close_after_ms: setup.force_close_after_ms,
        };
        #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
        let mut configs = [
            config(0x11, None, setup.confirmations),
            config(0x22, Some(acceptor), setup.confirmations),
        ];
        if let Some(settle) = setup.settle_confirmations {
            for config in &mut configs {
                config.settle_confirmations = settle;
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        if setup.fiber_contracts {
            let (funding, commitment) = deploy_fiber_contracts(&mut chain);
            for config in &mut configs {
                config.funding_lock = funding.clone();
                config.commitment_lock = commitment.clone();
            }
            if setup.acceptor_reorders_contract_deps {
                configs[ACCEPTOR].funding_lock.cell_deps.reverse();
                configs[ACCEPTOR].commitment_lock.cell_deps.reverse();
            }
        }
        let [initiator_config, acceptor_config] = configs;
        let nodes = [TestNode::new(initiator_config, 0), TestNode::new(acceptor_config, 1)];
        let mut world = Self {
            chain,
            now_ms: 1_000_000,
            nodes,
            link: VecDeque::new(),
            delivery: Delivery::InOrder,
            drop_next: 0,
            dropped: 0,
            queries: VecDeque::new(),
            user: User {
                key: user_key,
                lock: user_lock,
                auto_submit: true,
                signed_in_url: None,
                submit_results: Vec::new(),
            },
            acceptor_key,
            events: Vec::new(),
            sent_log: Vec::new(),
            handed_out: Vec::new(),
            broadcasts: Vec::new(),
            crash_plan: None,
            crashes: 0,
            pending_submit: false,
            link_down: false,
            status_hidden: Vec::new(),
            shuffle_state: 0,
            reported_status: BTreeMap::new(),
            // Mined for until the deeper of the two: a close settles at its own depth.
            confirmations: setup.confirmations.max(setup.settle_confirmations.unwrap_or(0)),
            next_open: 0,
            open_failures: Vec::new(),
            opened: Vec::new(),
            handed_out_to: Vec::new(),
        };
        // Both nodes start connected to each other.
        world.reconnect();
        world
    }

    /// Where a node's share of a channel goes when it closes.
    pub fn shutdown_script(&self, index: usize, channel_id: &ChannelId) -> packed::Script {
        let record = self.nodes[index].node.record(channel_id).expect("a channel");
        record.local.shutdown_script.clone()
    }

    /// The capacity of the live cells locked by exactly `lock`.
    pub fn balance(&self, lock: &packed::Script) -> u64 {
        self.live_cells(lock)
            .iter()
            .map(|cell| fiber_funding::tx::fee::capacity_of(&cell.output))
            .sum()
    }

    /// The funding lock's cell deps the user's node names.
    pub fn initiator_config_funding_deps(&self) -> packed::CellDepVec {
        self.nodes[INITIATOR].config.funding_lock.cell_deps.clone().pack()
    }

    pub fn initiator(&self) -> &Node {
        &self.nodes[INITIATOR].node
    }

    pub fn acceptor(&self) -> &Node {
        &self.nodes[ACCEPTOR].node
    }

    pub fn arm_crash(&mut self, plan: CrashPlan) {
        let store = &self.nodes[plan.node].store;
        store
            .crash_at
            .set(Some((store.puts_seen.get() + plan.at_put, plan.lands)));
        self.crash_plan = Some(plan);
    }

    /// Plain live cells of `lock`, all pages, as a runtime would collect them.
    pub fn live_cells(&self, lock: &packed::Script) -> Vec<LiveCell> {
        let mut cells = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.chain.get_cells(lock, &CellFilter::plain(), 2, cursor);
            cells.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return cells,
            }
        }
    }

    pub fn open_params(&self, funding_ckb: u64) -> OpenChannelParams {
        OpenChannelParams::new(
            self.nodes[ACCEPTOR].id(),
            funding_ckb * CKB,
            self.user.lock.clone(),
            vec![self.chain.default_lock_cell_dep()],
        )
    }

    /// The user opens a channel; returns its temporary id.
    pub fn open(&mut self, funding_ckb: u64) -> Result<ChannelId, FlowError> {
        let params = self.open_params(funding_ckb);
        self.open_with(&params)
    }

    /// The user opens a channel through the core's open request: the node
    /// asks for the wallet's cells, the chain answers, the channel is built.
    pub fn open_with(&mut self, params: &OpenChannelParams) -> Result<ChannelId, FlowError> {
        let open = self.next_open_id();
        let now = self.now_ms;
        let actions = self.nodes[INITIATOR]
            .node
            .request_open(open, params.clone(), now + OPEN_WAIT_MS, now);
        self.execute(INITIATOR, actions);
        self.open_result(open)
    }

    /// As [`World::open_with`], with the wallet's cells as an indexer that
    /// may lie reports them.
    pub fn open_from_cells(
        &mut self,
        params: &OpenChannelParams,
        cells: Vec<LiveCell>,
    ) -> Result<ChannelId, FlowError> {
        let open = self.next_open_id();
        let now = self.now_ms;
        let node = &mut self.nodes[INITIATOR].node;
        let asked = node.request_open(open, params.clone(), now + OPEN_WAIT_MS, now);
        assert!(
            matches!(asked.as_slice(), [Action::FetchWalletCells { open: asked, .. }] if *asked == open),
            "a connected node asks for the wallet's cells at once: {asked:?}"
        );
        let actions = node.wallet_cells(open, Ok(cells), now);
        self.note_opened(INITIATOR, open);
        self.execute(INITIATOR, actions);
        self.open_result(open)
    }

    fn next_open_id(&mut self) -> OpenId {
        self.next_open += 1;
        OpenId(self.next_open)
    }

    /// The channel an open request made, or why it failed.
    fn open_result(&mut self, open: OpenId) -> Result<ChannelId, FlowError> {
        if let Some(at) = self.open_failures.iter().position(|(id, _)| *id == open) {
            return match self.open_failures.remove(at).1 {
                OpenFailure::Flow(error) => Err(error),
                other => panic!("open {open:?} failed: {other}"),
            };
        }
        let at = self
            .opened
            .iter()
            .position(|(id, _)| *id == open)
            .expect("an open that did not fail made a channel");
        Ok(self.opened.remove(at).1)
    }

    fn note_opened(&mut self, index: usize, open: OpenId) {
        if let Some(channel_id) = self.nodes[index].node.opened_channel(open) {
            self.opened.push((open, channel_id));
        }
    }

    /// The wallet signs the user's inputs of a handed-out tx.
    pub fn user_sign(&self, unsigned: &packed::Transaction) -> packed::Transaction {
        let user_inputs = self.user_input_indices(unsigned);
        default_lock::sign_group(unsigned, &user_inputs, &self.user.key).unwrap()
    }

    /// The inputs the wallet signs: every input spending a cell of its lock,
    /// spent or not (after the user double-spends one from the wallet, a
    /// handed-out tx still names it, and the wallet still signs it).
    pub fn user_input_indices(&self, tx: &packed::Transaction) -> Vec<usize> {
        self.input_indices_of(tx, &self.user.lock)
    }

    /// The acceptor's inputs of a tx: those spending a cell of its wallet lock.
    pub fn acceptor_input_indices(&self, tx: &packed::Transaction) -> Vec<usize> {
        self.input_indices_of(
            tx,
            &default_lock::lock_script_for_key(self.acceptor_key.verifying_key()),
        )
    }

    /// Every input of `tx` spending a cell of `lock`, spent or not.
    fn input_indices_of(&self, tx: &packed::Transaction, lock: &packed::Script) -> Vec<usize> {
        tx.raw()
            .inputs()
            .into_iter()
            .enumerate()
            .filter(|(_, input)| {
                let out_point = input.previous_output();
                let hash: [u8; 32] = out_point.tx_hash().unpack();
                let index: u32 = out_point.index().unpack();
                self.chain
                    .transaction(&hash)
                    .and_then(|t| t.raw().outputs().get(index as usize))
                    .is_some_and(|cell| cell.lock() == *lock)
            })
            .map(|(index, _)| index)
            .collect()
    }

    pub fn submit(&mut self, channel_id: &ChannelId, signed: &packed::Transaction) -> Result<Hash256, FlowError> {
        let now = self.now_ms;
        let result = self.nodes[INITIATOR]
            .node
            .submit_signed_funding_tx(channel_id, signed, now);
        match result {
            Ok((hash, actions)) => {
                self.execute(INITIATOR, actions);
                Ok(hash)
            }
            Err(error) => Err(error),
        }
    }

    /// Runs the node's actions through the real runtime; detects a planned crash.
    pub fn execute(&mut self, index: usize, actions: Vec<Action>) {
        if !self.nodes[index].up {
            return;
        }
        assert_persist_comes_first(&actions);
        let mut outbox = Outbox::default();
        let test_node = &mut self.nodes[index];
        let result = futures::executor::block_on(execute(&mut test_node.node, &test_node.store, &mut outbox, actions));
        let crashed = test_node.store.crashed.replace(false);
        if crashed {
            // The process died at that write, and the page that asked with
            // it: the core's answer to the failed write reaches nobody.
            outbox
                .open_failures
                .retain(|(_, failure)| failure.storage_error().is_none());
        }
        self.absorb(index, outbox);
        if crashed {
            self.crash(index);
        } else if let Err(error) = result {
            panic!("unplanned persist failure on node {index}: {error}");
        }
    }

    /// Steps until node `index` asks the chain to resolve inputs, and takes
    /// that question off the queue: the channel and the out points asked.
    pub fn take_resolve_inputs(&mut self, index: usize) -> (ChannelId, Vec<packed::OutPoint>) {
        let asks = |(from, _, query): &(usize, ChannelId, ChainQuery)| {
            *from == index && matches!(query, ChainQuery::ResolveInputs { .. })
        };
        let mut steps = 0;
        while !self.queries.iter().any(asks) {
            assert!(
                self.step() && steps < 10_000,
                "node {index} never asked to resolve inputs"
            );
            steps += 1;
        }
        let at = self.queries.iter().position(asks).expect("found above");
        match self.queries.remove(at) {
            Some((_, channel_id, ChainQuery::ResolveInputs { out_points })) => (channel_id, out_points),
            _ => unreachable!("matched above"),
        }
    }

    /// The chain's true answer to a resolve-inputs question.
    pub fn resolved_inputs(&self, (channel_id, out_points): (ChannelId, Vec<packed::OutPoint>)) -> ChainEvent {
        use fiber_funding::chain::simulated_client::simulated_cell;
        ChainEvent::ResolvedInputs {
            channel_id,
            cells: out_points.iter().map(|op| simulated_cell(&self.chain, op)).collect(),
            out_points,
        }
    }

    /// Runs `actions` on node `index` with its next store write failing;
    /// what they let out is caught in the sink, not delivered.
    pub fn execute_with_the_write_failing(
        &mut self,
        index: usize,
        actions: Vec<Action>,
    ) -> (Result<(), fiber_funding::runtime::PersistFailed>, NullEffects) {
        let node = &mut self.nodes[index];
        node.store.inner.fail_next_puts(1);
        let mut sink = NullEffects::default();
        let result = futures::executor::block_on(execute(&mut node.node, &node.store, &mut sink, actions));
        (result, sink)
    }

    /// Takes the message `name` queued from node `from` off the link and
    /// delivers it to the other node with that node's next write failing;
    /// what the step let out is caught in the sink, not delivered.
    pub fn deliver_with_the_write_failing(&mut self, from: usize, name: &str) -> NullEffects {
        let message = self.queued_from(from, name);
        assert_eq!(self.drop_queued(name), 1, "one {name} queued");
        let (to, peer) = (1 - from, self.nodes[from].id());
        let now = self.now_ms;
        let actions = self.nodes[to].node.peer_message(&peer, message, now);
        let (result, sink) = self.execute_with_the_write_failing(to, actions);
        assert!(result.is_err(), "the write was made to fail");
        sink
    }

    fn absorb(&mut self, index: usize, outbox: Outbox) {
        for (peer, message) in outbox.sends {
            let to = if peer == self.nodes[INITIATOR].id() {
                INITIATOR
            } else {
                ACCEPTOR
            };
            assert_ne!(to, index, "a node sent a message to itself");
            let bytes = message.encode();
            // Logged even on a broken link: it left the node, and the peer
            // may have read it before the break was noticed.
            self.sent_log
                .push((index, FiberMessage::decode(&bytes).expect("what we send decodes")));
            if !self.link_down {
                self.link.push_back(Packet { from: index, to, bytes });
            }
        }
        self.open_failures.extend(outbox.open_failures);
        self.handed_out_to.extend(outbox.handed_out_to);
        for (open, lock) in outbox.wallet_cell_lookups {
            let cells = self.live_cells(&lock);
            let now = self.now_ms;
            let actions = self.nodes[index].node.wallet_cells(open, Ok(cells), now);
            self.note_opened(index, open);
            self.execute(index, actions);
        }
        for (channel_id, tx) in outbox.handed_out {
            self.handed_out.push((channel_id, tx.clone()));
            let signed = self.user_sign(&tx);
            self.user.signed_in_url = Some((channel_id, signed));
            if self.user.auto_submit {
                self.pending_submit = true;
            }
        }
        for (channel_id, tx) in outbox.broadcasts {
            self.broadcasts.push((index, tx.clone()));
            if self.nodes[index].broadcasts_withheld {
                continue;
            }
            let tx_hash = Hash256(tx.calc_tx_hash().unpack());
            // As the chain clients take it: a tx already sent is no refusal.
            match self.chain.send_transaction(tx) {
                Ok(_) | Err(fiber_funding::chain::simulated::ChainRejection::Duplicated { .. }) => {}
                Err(rejection) => {
                    let now = self.now_ms;
                    let actions = self.nodes[index].node.chain_event(
                        ChainEvent::BroadcastFailed {
                            channel_id,
                            tx_hash,
                            reason: rejection.to_string(),
                        },
                        now,
                    );
                    self.execute(index, actions);
                }
            }
        }
        for (channel_id, query) in outbox.queries {
            self.queries.push_back((index, channel_id, query));
        }
        for event in outbox.events {
            self.events.push((index, event));
        }
    }

    /// The node dies: its memory, its inbound packets and queries are gone.
    pub fn crash(&mut self, index: usize) {
        self.crashes += 1;
        self.nodes[index].up = false;
        self.link.retain(|p| p.to != index && p.from != index);
        self.queries.retain(|(node, _, _)| *node != index);
        let down_for = self.crash_plan.map_or(0, |plan| plan.down_for_ms);
        self.advance(down_for);
        self.restart(index);
    }

    /// Rebuilds a node from its store alone, then reconnects both sides.
    pub fn restart(&mut self, index: usize) {
        let test_node = &mut self.nodes[index];
        test_node.node = Node::new(
            test_node.config.clone(),
            Box::new(CountingEntropy {
                node: test_node.index,
                counter: test_node.entropy_counter.clone(),
            }),
        );
        test_node.up = true;
        test_node.restarts += 1;
        self.reported_status.retain(|(node, _, _), _| *node != index);
        let loaded = futures::executor::block_on(test_node.store.load_all()).unwrap();
        test_node.restore_errors = loaded.unreadable.iter().map(|e| e.to_string()).collect();
        let now = self.now_ms;
        let (actions, errors) = test_node.node.restore(loaded.records, now);
        test_node.restore_errors.extend(errors.iter().map(|e| e.to_string()));
        // As the runtime does.
        test_node.node.note_unreadable(&loaded.unreadable);
        test_node.node.note_unreadable(&errors);
        self.execute(index, actions);
        if index == INITIATOR && self.user.auto_submit {
            // The page boots. A flow whose unsigned tx never reached the wallet
            // (the page died first) is shown restored, and the user signs it now;
            // otherwise the signed tx is still in the URL.
            let unsigned_waiting = self.nodes[INITIATOR].node.channels().into_iter().find_map(|view| {
                let record = self.nodes[INITIATOR].node.record(&view.channel_id)?;
                let ext = record.external_funding.as_ref()?;
                (!ext.signed_submitted()).then(|| (view.channel_id, ext.unsigned_funding_tx.clone()))
            });
            if let Some((channel_id, Some(unsigned))) = unsigned_waiting {
                if self.user.signed_in_url.as_ref().is_none_or(|(id, _)| *id != channel_id) {
                    self.user.signed_in_url = Some((channel_id, self.user_sign(&unsigned)));
                }
            }
            self.pending_submit = self.user.signed_in_url.is_some();
        }
        self.reconnect();
    }

    /// The connection breaks: what is in flight is lost, both nodes hear of
    /// it, and what either sends before [`World::reconnect`] goes nowhere.
    pub fn disconnect(&mut self) {
        if self.link_down {
            return;
        }
        self.link_down = true;
        self.link.clear();
        let now = self.now_ms;
        for index in [INITIATOR, ACCEPTOR] {
            if self.nodes[index].up {
                let peer = self.nodes[1 - index].id();
                self.nodes[index].node.peer_disconnected(&peer, now);
            }
        }
    }

    pub fn reconnect(&mut self) {
        self.link_down = false;
        for index in [INITIATOR, ACCEPTOR] {
            let peer = self.nodes[1 - index].id();
            let actions = self.nodes[index].node.peer_connected(&peer);
            self.execute(index, actions);
        }
    }

    /// Time passes; both nodes' clocks tick.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        for index in [INITIATOR, ACCEPTOR] {
            if self.nodes[index].up {
                let now = self.now_ms;
                let actions = self.nodes[index].node.tick(now);
                self.execute(index, actions);
            }
        }
    }

    fn next_packet(&mut self) -> Option<Packet> {
        match self.delivery {
            Delivery::Held => None,
            Delivery::InOrder => self.link.pop_front(),
            Delivery::Shuffled(seed) => {
                if self.link.is_empty() {
                    return None;
                }
                self.shuffle_state = self
                    .shuffle_state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(seed | 1);
                let index = (self.shuffle_state >> 33) as usize % self.link.len();
                self.link.remove(index)
            }
        }
    }

    /// A packet reaches its node, 5 ms on. Nothing crosses a broken link,
    /// forged or replayed bytes included, and one that no longer decodes is
    /// dropped, as the transport drops an unreadable message.
    pub fn deliver(&mut self, packet: Packet) {
        self.now_ms += 5;
        if !self.nodes[packet.to].up || self.link_down {
            return;
        }
        let Ok(message) = FiberMessage::decode(&packet.bytes) else {
            return;
        };
        let from = self.nodes[packet.from].id();
        let now = self.now_ms;
        let actions = self.nodes[packet.to].node.peer_message(&from, message, now);
        self.execute(packet.to, actions);
    }

    /// The adversary stops: the user submits again whenever asked, a broken
    /// link comes back, and everything left runs to its end.
    pub fn let_the_honest_finish(&mut self) {
        self.user.auto_submit = true;
        if self.link_down {
            self.reconnect();
        }
        self.run();
    }

    /// Processes one pending thing; false when the world is quiet.
    pub fn step(&mut self) -> bool {
        if self.pending_submit {
            self.pending_submit = false;
            if let Some((channel_id, signed)) = self.user.signed_in_url.clone() {
                let result = self.submit(&channel_id, &signed);
                self.user.submit_results.push(result);
            }
            return true;
        }
        if let Some(packet) = self.next_packet() {
            if self.drop_next > 0 {
                self.now_ms += 5;
                self.drop_next -= 1;
                self.dropped += 1;
                return true;
            }
            self.deliver(packet);
            return true;
        }
        if let Some((index, channel_id, query)) = self.queries.pop_front() {
            let event = match query {
                ChainQuery::LiveCells { lock } => ChainEvent::LiveCells {
                    channel_id,
                    cells: self.live_cells(&lock),
                },
                ChainQuery::ResolveInputs { out_points } => ChainEvent::ResolvedInputs {
                    channel_id,
                    cells: out_points.iter().map(|op| self.resolve(op)).collect(),
                    out_points,
                },
                ChainQuery::InputsLive { out_points, at_tip } => ChainEvent::InputsLive {
                    channel_id,
                    live: out_points.iter().map(|op| self.chain.is_live(op)).collect(),
                    out_points,
                    at_tip,
                },
                ChainQuery::SpenderOf { out_point, .. } => ChainEvent::SpenderOf {
                    channel_id,
                    spender: self.chain.spender_of(&out_point).map(|hash| {
                        let tx = self.chain.transaction(&hash).expect("a spender the chain has");
                        (CheckedTx(tx), self.chain.report(&hash))
                    }),
                    out_point,
                },
            };
            let now = self.now_ms;
            let actions = self.nodes[index].node.chain_event(event, now);
            self.execute(index, actions);
            return true;
        }
        if self.report_tx_status() {
            return true;
        }
        if self.needs_block() {
            self.chain.mine_block();
            return true;
        }
        false
    }

    fn resolve(&self, out_point: &packed::OutPoint) -> Option<ResolvedCell> {
        fiber_funding::chain::simulated_client::simulated_cell(&self.chain, out_point)
    }

    /// Reports one changed funding tx status to the node watching it, as the
    /// runtime's polling does; false when nothing changed.
    pub fn step_status(&mut self) -> bool {
        self.report_tx_status()
    }

    /// Feeds each node the status of the txs it watches, and the spender of
    /// each funding cell it watches, once per change.
    fn report_tx_status(&mut self) -> bool {
        for index in [INITIATOR, ACCEPTOR] {
            if !self.nodes[index].up {
                continue;
            }
            for (channel_id, out_point, _lock) in self.nodes[index].node.funding_cells_to_watch() {
                let Some(spender) = self.chain.spender_of(&out_point).map(Hash256) else {
                    continue;
                };
                let report = self.chain.report(&spender.0);
                let key = (index, channel_id, spender);
                if self.reported_status.get(&key) == Some(&report) {
                    continue;
                }
                self.reported_status.insert(key, report);
                let tx = CheckedTx(self.chain.transaction(&spender.0).expect("a committed spender"));
                let now = self.now_ms;
                let actions = self.nodes[index]
                    .node
                    .chain_event(ChainEvent::FundingSpent { channel_id, tx, report }, now);
                self.execute(index, actions);
                return true;
            }
            for (channel_id, tx_hash) in self.nodes[index].node.txs_to_watch() {
                let mut report = self.chain.report(&tx_hash.0);
                if self.status_hidden.contains(&tx_hash) {
                    report.status = TxStatus::Unknown;
                    report.block_epoch = None;
                }
                let key = (index, channel_id, tx_hash);
                if self.reported_status.get(&key) == Some(&report) {
                    continue;
                }
                self.reported_status.insert(key, report);
                let now = self.now_ms;
                let actions = self.nodes[index].node.chain_event(
                    ChainEvent::TxStatus {
                        channel_id,
                        tx_hash,
                        report,
                    },
                    now,
                );
                self.execute(index, actions);
                return true;
            }
        }
        false
    }

    /// Mine while something waits in the pool or for confirmations (not for
    /// a close's delay: tests mine the epochs themselves).
    fn needs_block(&self) -> bool {
        let tip = self.chain.tip_block_number();
        let waits = |hash: &Hash256| match self.chain.transaction_status(&hash.0) {
            TxStatus::Pending => true,
            TxStatus::Committed { block_number } => {
                tip.saturating_add(1).saturating_sub(block_number) < self.confirmations
            }
            _ => false,
        };
        [INITIATOR, ACCEPTOR].iter().any(|index| {
            let node = &self.nodes[*index].node;
            self.nodes[*index].up
                && (node.txs_to_watch().iter().any(|(_, hash)| waits(hash))
                    || node
                        .funding_cells_to_watch()
                        .iter()
                        .filter_map(|(_, out_point, _)| self.chain.spender_of(out_point))
                        .any(|spender| waits(&Hash256(spender))))
        })
    }

    /// Rewrites the next packet carrying message `name` (decoded, changed, re-encoded).
    pub fn tamper_next(&mut self, name: &str, change: impl FnOnce(&mut FiberMessage)) {
        let packet = self
            .link
            .iter_mut()
            .find(|p| FiberMessage::decode(&p.bytes).is_ok_and(|m| m.name() == name))
            .unwrap_or_else(|| panic!("no {name} on the link"));
        let mut message = FiberMessage::decode(&packet.bytes).unwrap();
        change(&mut message);
        packet.bytes = message.encode();
    }

    /// Drops every queued packet carrying message `name`.
    pub fn drop_queued(&mut self, name: &str) -> usize {
        let before = self.link.len();
        self.link
            .retain(|p| FiberMessage::decode(&p.bytes).map_or(true, |m| m.name() != name));
        before - self.link.len()
    }

    /// Processes packets and queries until a queued packet carries `name`
    /// (which stays queued); panics if the world settles first.
    pub fn run_until_queued(&mut self, name: &str) {
        for _ in 0..20_000 {
            if self
                .link
                .iter()
                .any(|p| FiberMessage::decode(&p.bytes).is_ok_and(|m| m.name() == name))
            {
                return;
            }
            if !self.step() {
                panic!("settled before any {name} was sent");
            }
        }
        panic!("no {name} after many steps");
    }

    /// Like [`Self::run_until_queued`], for a message sent by node `from`.
    pub fn run_until_queued_from(&mut self, from: usize, name: &str) {
        for _ in 0..20_000 {
            if self
                .link
                .iter()
                .any(|p| p.from == from && FiberMessage::decode(&p.bytes).is_ok_and(|m| m.name() == name))
            {
                return;
            }
            if !self.step() {
                panic!("settled before node {from} sent any {name}");
            }
        }
        panic!("no {name} from node {from} after many steps");
    }

    /// The queued message `name` from node `from` (it stays queued).
    pub fn queued_from(&self, from: usize, name: &str) -> FiberMessage {
        self.link
            .iter()
            .filter(|p| p.from == from)
            .find_map(|p| FiberMessage::decode(&p.bytes).ok().filter(|m| m.name() == name))
            .unwrap_or_else(|| panic!("no {name} from node {from} on the link"))
    }

    /// Injects a message as if `from` had sent it.
    pub fn inject(&mut self, from: usize, message: FiberMessage) {
        self.link.push_back(Packet {
            from,
            to: 1 - from,
            bytes: message.encode(),
        });
    }

    /// Runs until nothing is left to do.
    pub fn run(&mut self) {
        for _ in 0..20_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the world did not settle: a livelock");
    }

    pub fn state(&self, index: usize, channel_id: &ChannelId) -> Option<ChannelState> {
        self.nodes[index].node.channel(channel_id).map(|view| view.state)
    }

    /// The one channel a node has (tests open one at a time).
    pub fn only_channel(&self, index: usize) -> ChannelView {
        let channels = self.nodes[index].node.channels();
        assert_eq!(channels.len(), 1, "node {index} has {} channels", channels.len());
        channels.into_iter().next().unwrap()
    }

    /// The one channel of a node that is not closed.
    pub fn open_channel_view(&self, index: usize) -> ChannelView {
        let open: Vec<_> = self.nodes[index]
            .node
            .channels()
            .into_iter()
            .filter(|c| !matches!(c.state, ChannelState::Closed(_)))
            .collect();
        assert_eq!(open.len(), 1, "node {index} has {} open channels: {open:?}", open.len());
        open.into_iter().next().unwrap()
    }

    pub fn stored_record(&self, index: usize, channel_id: &ChannelId) -> Option<ChannelRecord> {
        futures::executor::block_on(self.nodes[index].store.get(channel_id)).unwrap()
    }

    /// Rejections of peer messages seen by a node.
    pub fn rejections(&self, index: usize) -> Vec<String> {
        self.events
            .iter()
            .filter(|(node, _)| *node == index)
            .filter_map(|(_, event)| match event {
                Event::PeerMessageRejected { message, reason, .. } => Some(format!("{message}: {reason}")),
                _ => None,
            })
            .collect()
    }

    /// No nonce was used for two different signatures: every node sent the same
    /// `TxComplete` nonce and the same commitment signature each time, and the
    /// nonces it announced in `OpenChannel`/`AcceptChannel` never changed.
    pub fn assert_no_nonce_reuse(&self) {
        let mut seen: BTreeMap<(usize, ChannelId, &'static str), Vec<u8>> = BTreeMap::new();
        let mut check = |key: (usize, ChannelId, &'static str), value: Vec<u8>| {
            if let Some(previous) = seen.get(&key) {
                assert_eq!(
                    previous, &value,
                    "node {} sent two different {} for channel {}",
                    key.0, key.2, key.1
                );
            } else {
                seen.insert(key, value);
            }
        };
        for (index, message) in &self.sent_log {
            match message {
                FiberMessage::OpenChannel(m) => check(
                    (*index, m.channel_id, "OpenChannel nonces"),
                    [m.next_commitment_nonce.0, m.next_revocation_nonce.0].concat(),
                ),
                FiberMessage::AcceptChannel(m) => check(
                    (*index, m.channel_id, "AcceptChannel nonces"),
                    [m.next_commitment_nonce.0, m.next_revocation_nonce.0].concat(),
                ),
                FiberMessage::TxComplete(m) => check(
                    (*index, m.channel_id, "TxComplete nonces"),
                    m.next_commitment_nonce.0.to_vec(),
                ),
                FiberMessage::CommitmentSigned(m) => check(
                    (*index, m.channel_id, "commitment signatures"),
                    [m.funding_tx_partial_signature.as_slice(), &m.next_commitment_nonce.0].concat(),
                ),
                // The closing nonce signs one closing tx, ever.
                FiberMessage::ClosingSigned(m) => check(
                    (*index, m.channel_id, "closing signatures"),
                    m.partial_signature.to_vec(),
                ),
                _ => {}
            }
        }
    }

    /// Signed funding txs that reached the chain, by hash.
    pub fn funding_submissions(&self, hash: &Hash256) -> usize {
        self.chain.submissions(&hash.0)
    }
}

/// Nothing is acted on before it is durable: no message, hand-out,
/// broadcast or chain query about a channel comes before a persist of that
/// channel in the same list of actions.
pub fn assert_persist_comes_first(actions: &[Action]) {
    let channel_of = |action: &Action| -> Option<ChannelId> {
        match action {
            Action::Send { message, .. } => Some(message.channel_id()),
            Action::HandOutUnsignedTx { channel_id, .. }
            | Action::Broadcast { channel_id, .. }
            | Action::QueryChain { channel_id, .. } => Some(*channel_id),
            _ => None,
        }
    };
    for (index, action) in actions.iter().enumerate() {
        let Some(channel) = channel_of(action) else { continue };
        let persisted_later = actions[index..].iter().any(|later| {
            matches!(later, Action::Persist { record, .. }
                if record.channel_id == channel || record.temporary_channel_id == channel)
        });
        assert!(
            !persisted_later,
            "{action:?} runs before the persist it depends on: {actions:?}"
        );
    }
}

/// A default-lock witness with `input_type` bytes besides its lock (zeros
/// to sign over), as a wallet or a peer may put more in its `WitnessArgs`.
/// `tx` with `change` made to its parts.
/// A tx a lying node names as the spender of `out_point`: it spends it, and
/// its hash is its own, but nothing signs it and no chain holds it.
pub fn made_up_spender(out_point: &packed::OutPoint) -> CheckedTx {
    CheckedTx(
        TxParts {
            inputs: vec![packed::CellInput::new_builder()
                .previous_output(out_point.clone())
                .build()],
            ..TxParts::default()
        }
        .build(),
    )
}

/// [`made_up_spender`], signed for the default lock by `key`: a spend the
/// wallet really made, as a node could report it (true or not).
pub fn wallet_signed_spender(out_point: &packed::OutPoint, key: &k256::ecdsa::SigningKey) -> CheckedTx {
    let tx = with_parts(&made_up_spender(out_point).0, |parts| {
        parts.witnesses = vec![fiber_funding::tx::default_lock::placeholder_witness()
            .as_bytes()
            .to_vec()];
    });
    CheckedTx(fiber_funding::tx::default_lock::sign_group(&tx, &[0], key).unwrap())
}

pub fn with_parts(tx: &packed::Transaction, change: impl FnOnce(&mut TxParts)) -> packed::Transaction {
    let mut parts = TxParts::from_tx(tx);
    change(&mut parts);
    parts.build()
}

pub fn witness_with_input_type(input_type: Vec<u8>) -> Vec<u8> {
    packed::WitnessArgs::new_builder()
        .lock(Some(ckb_types::bytes::Bytes::from(vec![0u8; 65])).pack())
        .input_type(Some(ckb_types::bytes::Bytes::from(input_type)).pack())
        .build()
        .as_bytes()
        .to_vec()
}

/// A world whose one flow waits at the wallet: the unsigned tx handed out
/// (the signed one in `user.signed_in_url`), the user not back yet.
pub fn world_at_the_signer() -> World {
    world_at_the_signer_with(Setup::default())
}

/// [`world_at_the_signer`] in a world of `setup`.
pub fn world_at_the_signer_with(setup: Setup) -> World {
    let mut world = World::new(setup);
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run();
    world
}

/// A world whose one channel opened and is ready on both sides.
pub fn ready_world() -> (World, ChannelId) {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run();
    assert_channel_ready(&world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    (world, channel_id)
}

/// Shared assertions for a flow that ended well.
pub fn assert_channel_ready(world: &World) -> Hash256 {
    let initiator = world.open_channel_view(INITIATOR);
    let acceptor = world.open_channel_view(ACCEPTOR);
    assert_eq!(initiator.state, ChannelState::ChannelReady, "initiator: {initiator:?}");
    assert_eq!(acceptor.state, ChannelState::ChannelReady, "acceptor: {acceptor:?}");
    assert_eq!(initiator.channel_id, acceptor.channel_id);
    let hash = initiator.funding_tx_hash.expect("a funding tx");
    assert!(matches!(
        world.chain.transaction_status(&hash.0),
        TxStatus::Committed { .. }
    ));
    assert_eq!(
        world.funding_submissions(&hash),
        1,
        "the funding tx was broadcast more than once"
    );
    let record = world
        .stored_record(INITIATOR, &initiator.channel_id)
        .expect("a stored record");
    assert!(record.external_funding.is_none(), "recovery state not cleared");
    world.assert_no_nonce_reuse();
    hash
}

/// Shared assertions for a flow both sides aborted.
pub fn assert_aborted_on_both_sides(world: &World) {
    for index in [INITIATOR, ACCEPTOR] {
        for channel in world.nodes[index].node.channels() {
            assert!(
                matches!(channel.state, ChannelState::Closed(_)),
                "node {index} channel {} is {}",
                channel.channel_id,
                channel.state
            );
            let record = world.stored_record(index, &channel.channel_id).expect("a tombstone");
            let watching = record.closed.as_ref().is_some_and(|c| c.watch.is_some());
            if watching {
                // The unsigned tx was handed out: a signed copy may exist, so
                // the keys stay until it can no longer confirm (the cells are
                // free all the same: closed channels reserve none).
                assert_eq!(index, INITIATOR, "only a handed-out tx is watched");
                let handed_out = record
                    .external_funding
                    .as_ref()
                    .and_then(|e| e.unsigned_funding_tx.as_ref());
                assert!(handed_out.is_some(), "watched without a handed-out tx");
                assert_ne!(record.channel_seed, Hash256([0; 32]), "a watched abort keeps its seed");
            } else {
                assert!(
                    record.external_funding.is_none() && record.own_cells.is_empty() && record.funding_tx.is_none()
                );
                // A settled watch keeps the seed (the chain node's word could
                // be false); an abort whose signatures never left keeps none.
                let settled = world.events.iter().any(|(node, event)| {
                    *node == index
                        && matches!(event, Event::AbortSettled { channel_id } if *channel_id == channel.channel_id)
                });
                assert_eq!(
                    record.channel_seed != Hash256([0; 32]),
                    settled,
                    "the seed of {record:?}"
                );
            }
        }
    }
    world.assert_no_nonce_reuse();
}

pub fn shared<T>(value: T) -> Rc<RefCell<T>> {
    Rc::new(RefCell::new(value))
}

/// Effects that go nowhere: what left is only named (messages, broadcasts).
#[derive(Default)]
pub struct NullEffects {
    pub sent: Vec<String>,
    /// The messages named in `sent`, to deliver by hand.
    pub messages: Vec<FiberMessage>,
    /// Open requests answered: handed out (`None`) or failed.
    pub open_answers: Vec<(OpenId, Option<OpenFailure>)>,
}

impl Effects for NullEffects {
    fn send(&mut self, _: NodeId, message: FiberMessage) {
        self.sent.push(message.name().into());
        self.messages.push(message);
    }
    fn hand_out_unsigned_tx(&mut self, open: Option<OpenId>, _: ChannelId, _: ChannelId, _: packed::Transaction) {
        self.open_answers.extend(open.map(|open| (open, None)));
    }
    fn fetch_wallet_cells(&mut self, _: OpenId, _: packed::Script) {}
    fn open_failed(&mut self, open: OpenId, failure: OpenFailure) {
        self.open_answers.push((open, Some(failure)));
    }
    fn broadcast(&mut self, _: ChannelId, _: packed::Transaction) {
        self.sent.push("broadcast".into());
    }
    fn query_chain(&mut self, _: ChannelId, _: ChainQuery) {}
    fn emit(&mut self, _: Event) {}
}
