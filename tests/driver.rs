//! The event loop that browsers and the native counterparty run, here with
//! in-memory adapters and a virtual clock: the whole flow through the
//! application API, including dropping the initiator entirely (the page
//! reload) and starting a new one on the same storage.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ckb_types::packed;
use ckb_types::prelude::*;
use common::chain_double::ChainWith;
use common::pool::Counter;
use common::two_nodes::fund_wallets;
use common::{config, CKB, TIMEOUT_MS};
use fiber_funding::api::{ApiError, ErrorCode};
use fiber_funding::chain::client::{ChainClient, ChainError, ChainErrorKind};
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::chain::TxStatus;
use fiber_funding::flow::record::{ChannelRecord, RecordDecodeError};
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::flow::{ChannelState, ChannelView, Event, OpenChannelParams};
use fiber_funding::primitives::{ChannelId, Hash256, NodeId};
use fiber_funding::runtime::loopback::LoopbackLink;
use fiber_funding::runtime::*;
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::store::{LoadedRecords, Store, StoreError};
use fiber_funding::tx::default_lock;
use fiber_funding::wire::{FiberMessage, ReestablishChannel};
use futures::channel::oneshot;
use futures::executor::{LocalPool, LocalSpawner};
use futures::future::LocalBoxFuture;
use futures::task::LocalSpawnExt;
use k256::ecdsa::SigningKey;

/// A clock that moves only when the test says so.
struct ManualPlatform {
    now: Cell<u64>,
    timers: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    spawner: LocalSpawner,
}

impl Platform for ManualPlatform {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        self.spawner.spawn_local(task).expect("spawn");
    }
    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        let (fire, fired) = oneshot::channel();
        self.timers.borrow_mut().push((self.now.get() + ms, fire));
        Box::pin(async move {
            let _ = fired.await;
        })
    }
}

impl ManualPlatform {
    /// Moves the clock without ringing the timers now due: what a command
    /// arriving before a timer meets.
    fn jump(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
        let now = self.now.get();
        let (due, later): (Vec<_>, Vec<_>) = self.timers.borrow_mut().drain(..).partition(|(at, _)| *at <= now);
        *self.timers.borrow_mut() = later;
        for (_, fire) in due {
            let _ = fire.send(());
        }
    }
}

struct Harness {
    pool: LocalPool,
    platform: Rc<ManualPlatform>,
    chain: Rc<RefCell<SimulatedChain>>,
    user_key: SigningKey,
    user_lock: packed::Script,
    acceptor_config: fiber_funding::flow::NodeConfig,
    initiator_store: Rc<MemoryStore>,
    /// The byte the initiator's node key is made of (`config`).
    initiator_key: u8,
    events: Rc<RefCell<Vec<DriverEvent>>>,
    settings: DriverSettings,
}

fn block_on<T>(harness: &mut Harness, future: impl std::future::Future<Output = T>) -> T {
    harness.pool.run_until(future)
}

impl Harness {
    fn new() -> Self {
        let pool = LocalPool::new();
        let platform = Rc::new(ManualPlatform {
            now: Cell::new(1_000_000),
            timers: RefCell::new(Vec::new()),
            spawner: pool.spawner(),
        });
        let chain = Rc::new(RefCell::new(SimulatedChain::new()));
        let wallets = fund_wallets(&mut chain.borrow_mut(), 1_500);
        Self {
            pool,
            platform,
            chain,
            user_key: wallets.user_key,
            user_lock: wallets.user_lock,
            acceptor_config: config(0x22, Some(wallets.acceptor), 1),
            initiator_store: Rc::new(MemoryStore::new()),
            initiator_key: 0x11,
            events: Rc::new(RefCell::new(Vec::new())),
            settings: DriverSettings::default(),
        }
    }

    /// Starts an initiator and an acceptor joined by a loopback link.
    fn start_pair(
        &mut self,
        acceptor_store: Rc<MemoryStore>,
    ) -> (DriverHandle, DriverHandle, Rc<LoopbackLink>, Rc<LoopbackLink>) {
        let client = Rc::new(SimulatedChainClient::new(self.chain.clone()));
        self.start_pair_reading(acceptor_store, client)
    }

    /// As [`Harness::start_pair`], the initiator reading the chain through
    /// `initiator_chain`.
    fn start_pair_reading(
        &mut self,
        acceptor_store: Rc<MemoryStore>,
        initiator_chain: Rc<dyn ChainClient>,
    ) -> (DriverHandle, DriverHandle, Rc<LoopbackLink>, Rc<LoopbackLink>) {
        let initiator_config = config(0x11, None, 1);
        let ids = (
            initiator_config.node_secret.node_id(),
            self.acceptor_config.node_secret.node_id(),
        );
        let (i_sender, i_receiver) = inbox();
        let (a_sender, a_receiver) = inbox();
        let (i_link, a_link) = LoopbackLink::pair((ids.0, i_sender.clone()), (ids.1, a_sender.clone()));
        let client = Rc::new(SimulatedChainClient::new(self.chain.clone()));
        let events = self.events.clone();
        let initiator = DriverParts {
            config: initiator_config,
            entropy: Box::new(Counter(self.platform.now_ms())),
            store: self.initiator_store.clone(),
            link: i_link.clone(),
            chain: initiator_chain,
            platform: self.platform.clone(),
            settings: self.settings,
            on_event: Box::new(move |event| events.borrow_mut().push(event)),
        };
        let acceptor = DriverParts {
            config: self.acceptor_config.clone(),
            entropy: Box::new(Counter(1 << 40)),
            store: acceptor_store,
            link: a_link.clone(),
            chain: client,
            platform: self.platform.clone(),
            settings: self.settings,
            on_event: Box::new(|_| {}),
        };
        let (initiator, unreadable) = block_on(self, start(initiator, i_sender, i_receiver)).unwrap();
        assert!(unreadable.is_empty());
        let (acceptor, _) = block_on(self, start(acceptor, a_sender, a_receiver)).unwrap();
        i_link.connect();
        self.pool.run_until_stalled();
        (initiator, acceptor, i_link, a_link)
    }

    /// A new initiator on the same storage, wired to the running acceptor.
    fn restart_initiator(&mut self, acceptor_link: &LoopbackLink) -> (DriverHandle, Rc<LoopbackLink>) {
        let (handle, link) = self.restart_initiator_offline(acceptor_link);
        link.connect();
        self.pool.run_until_stalled();
        (handle, link)
    }

    /// As [`Harness::restart_initiator`], with the counterparty unreachable
    /// until the test connects the returned link.
    fn restart_initiator_offline(&mut self, acceptor_link: &LoopbackLink) -> (DriverHandle, Rc<LoopbackLink>) {
        let (sender, receiver) = inbox();
        let link = LoopbackLink::replace_peer(acceptor_link, sender.clone());
        let handle = self.start_initiator(self.initiator_store.clone(), link.clone(), (sender, receiver));
        (handle, link)
    }

    /// A new initiator on the initiator's storage, wired to the running
    /// acceptor but offline, and what its `start` returned, for the test to
    /// judge (nothing run after it).
    fn boot_initiator_offline(&mut self, acceptor_link: &LoopbackLink) -> Booted {
        let chain = Rc::new(SimulatedChainClient::new(self.chain.clone()));
        self.boot_initiator_reading(acceptor_link, chain).0
    }

    /// As [`Harness::boot_initiator_offline`], reading the chain through
    /// `chain`; also the link, for the test to connect.
    fn boot_initiator_reading(
        &mut self,
        acceptor_link: &LoopbackLink,
        chain: Rc<dyn ChainClient>,
    ) -> (Booted, Rc<LoopbackLink>) {
        let (sender, receiver) = inbox();
        let link = LoopbackLink::replace_peer(acceptor_link, sender.clone());
        let parts = self.initiator_parts(self.initiator_store.clone(), link.clone(), chain);
        (block_on(self, start(parts, sender, receiver)), link)
    }

    /// A new initiator on `store` and `link`, its events recorded; every
    /// record it reads at boot readable.
    fn start_initiator<S: Store + 'static>(
        &mut self,
        store: S,
        link: Rc<dyn PeerLink>,
        (sender, receiver): (InputSender, InputReceiver),
    ) -> DriverHandle {
        let chain = Rc::new(SimulatedChainClient::new(self.chain.clone()));
        let parts = self.initiator_parts(store, link, chain);
        let (handle, unreadable) = block_on(self, start(parts, sender, receiver)).unwrap();
        assert!(unreadable.is_empty());
        self.pool.run_until_stalled();
        handle
    }

    /// As [`Harness::start_initiator`] on the initiator's storage, reading
    /// the chain through `chain`.
    fn start_initiator_on(&mut self, link: Rc<dyn PeerLink>, chain: Rc<dyn ChainClient>) -> DriverHandle {
        let (sender, receiver) = inbox();
        let parts = self.initiator_parts(self.initiator_store.clone(), link, chain);
        let (handle, _) = block_on(self, start(parts, sender, receiver)).unwrap();
        self.pool.run_until_stalled();
        handle
    }

    /// The initiator's driver parts on `store`, `link` and `chain`, its
    /// events recorded.
    fn initiator_parts<S: Store>(
        &self,
        store: S,
        link: Rc<dyn PeerLink>,
        chain: Rc<dyn ChainClient>,
    ) -> DriverParts<S> {
        let events = self.events.clone();
        DriverParts {
            config: config(self.initiator_key, None, 1),
            entropy: Box::new(Counter(self.platform.now_ms())),
            store,
            link,
            chain,
            platform: self.platform.clone(),
            settings: DriverSettings::default(),
            on_event: Box::new(move |event| events.borrow_mut().push(event)),
        }
    }

    /// The redirect: every Rust object of the initiator goes away, and its link.
    fn drop_initiator(&mut self, initiator: DriverHandle, link: &LoopbackLink) {
        block_on(self, initiator.close()).unwrap();
        drop(initiator);
        link.disconnect();
        self.pool.run_until_stalled();
    }

    /// The counterparty is reachable again: the flow goes on by itself, the
    /// funding tx is mined, and both sides end ready. Returns the initiator's view.
    fn reconnect_until_ready(
        &mut self,
        link: &LoopbackLink,
        initiator: &DriverHandle,
        acceptor: &DriverHandle,
        channel_id: ChannelId,
    ) -> ChannelView {
        link.connect();
        self.pool.run_until_stalled();
        self.mine_and_poll(3);
        let view = block_on(self, initiator.channel(channel_id)).unwrap().unwrap();
        assert_eq!(view.state, ChannelState::ChannelReady);
        let acceptor_view = block_on(self, acceptor.channel(channel_id)).unwrap().unwrap();
        assert_eq!(acceptor_view.state, ChannelState::ChannelReady);
        view
    }

    /// Opens a channel, reloads with the counterparty unreachable, and
    /// submits the user's signed tx: queued, after the counterparty had
    /// signed our commitment (it signs first).
    fn open_and_queue_a_submit(&mut self) -> Queued {
        let (initiator, acceptor, i_link, a_link) = self.start_pair(Rc::new(MemoryStore::new()));
        let params = self.params();
        let (channel_id, unsigned) = block_on(self, initiator.open_channel(params)).unwrap();
        self.drop_initiator(initiator, &i_link);
        let signed = default_lock::sign_group(&unsigned, &[0], &self.user_key).unwrap();
        let (initiator, link) = self.restart_initiator_offline(&a_link);
        let submitted = block_on(self, initiator.submit_signed_funding_tx(channel_id, signed)).unwrap();
        assert!(submitted.queued);
        Queued {
            initiator,
            acceptor,
            link,
            a_link,
            channel_id,
            unsigned,
        }
    }

    /// The initiator's record as stored.
    /// [`Harness::open_and_queue_a_submit`], then the page closes: the
    /// acceptor's link and the channel, for a boot of the test's own.
    fn queue_a_submit_and_close_the_page(&mut self) -> (Rc<LoopbackLink>, ChannelId) {
        let Queued {
            initiator,
            a_link,
            link,
            channel_id,
            ..
        } = self.open_and_queue_a_submit();
        self.drop_initiator(initiator, &link);
        (a_link, channel_id)
    }

    fn stored_initiator_record(&self, channel_id: ChannelId) -> ChannelRecord {
        futures::executor::block_on(fiber_funding::store::Store::get(&*self.initiator_store, &channel_id))
            .unwrap()
            .expect("stored")
    }

    fn params(&self) -> OpenChannelParams {
        OpenChannelParams::new(
            self.acceptor_config.node_secret.node_id(),
            1_000 * CKB,
            self.user_lock.clone(),
            vec![self.chain.borrow().default_lock_cell_dep()],
        )
    }

    /// Blocks are mined and polled until nothing changes.
    fn mine_and_poll(&mut self, blocks: usize) {
        for _ in 0..blocks {
            self.chain.borrow_mut().mine_block();
            self.platform.advance(DriverSettings::default().poll_interval_ms);
            self.pool.run_until_stalled();
        }
    }
}

#[test]
fn open_drop_everything_reopen_and_submit_reaches_channel_ready() {
    let mut harness = Harness::new();
    let (initiator, acceptor, i_link, a_link) = harness.start_pair(Rc::new(MemoryStore::new()));

    let params = harness.params();
    let (channel_id, unsigned) = block_on(&mut harness, initiator.open_channel(params)).unwrap();
    // Durable before the call returned.
    let stored = futures::executor::block_on(fiber_funding::store::Store::get(&*harness.initiator_store, &channel_id))
        .unwrap()
        .expect("stored before open resolved");
    assert_eq!(
        stored.external_funding.unwrap().unsigned_funding_tx.unwrap().as_slice(),
        unsigned.as_slice()
    );

    // The redirect: every Rust object of the initiator goes away.
    harness.drop_initiator(initiator, &i_link);
    let signed = default_lock::sign_group(&unsigned, &[0], &harness.user_key).unwrap();
    harness.platform.advance(30_000);

    // The page boots again: a new driver on the same storage.
    let (initiator, _) = harness.restart_initiator(&a_link);
    let pending = block_on(&mut harness, initiator.pending_fundings()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].view.channel_id, channel_id);
    assert!(!pending[0].view.signed_submitted);
    assert_eq!(
        pending[0].unsigned_funding_tx.as_ref().unwrap().as_slice(),
        unsigned.as_slice()
    );
    // The wallet cells it holds are the tx's first inputs (the user's come first).
    let user_inputs: Vec<_> = unsigned
        .raw()
        .inputs()
        .into_iter()
        .map(|input| input.previous_output())
        .take(1)
        .collect();
    assert_eq!(pending[0].reserved_cells, user_inputs);

    let hash = block_on(
        &mut harness,
        initiator.submit_signed_funding_tx(channel_id, signed.clone()),
    )
    .unwrap()
    .funding_tx_hash;
    assert_eq!(
        block_on(&mut harness, initiator.submit_signed_funding_tx(channel_id, signed))
            .unwrap()
            .funding_tx_hash,
        hash
    );
    harness.pool.run_until_stalled();
    harness.mine_and_poll(3);

    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert_eq!(view.state, ChannelState::ChannelReady);
    let acceptor_view = block_on(&mut harness, acceptor.channel(channel_id)).unwrap().unwrap();
    assert_eq!(acceptor_view.state, ChannelState::ChannelReady);
    assert!(block_on(&mut harness, initiator.pending_fundings()).unwrap().is_empty());
    let stored = harness.stored_initiator_record(channel_id);
    assert!(stored.external_funding.is_none());
    assert_eq!(harness.chain.borrow().submissions(&hash.0), 1);
}

#[test]
fn a_submit_while_the_peer_is_away_is_queued_and_goes_on_when_it_is_back() {
    let mut harness = Harness::new();
    let (initiator, acceptor, i_link, a_link) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    let (channel_id, unsigned) = block_on(&mut harness, initiator.open_channel(params)).unwrap();
    harness.drop_initiator(initiator, &i_link);
    let signed = default_lock::sign_group(&unsigned, &[0], &harness.user_key).unwrap();

    // The page boots while the counterparty is unreachable: the flow is
    // listed at once, shown as waiting for its peer.
    let (initiator, link) = harness.restart_initiator_offline(&a_link);
    let pending = block_on(&mut harness, initiator.pending_fundings()).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(!pending[0].view.peer_connected);
    let submitted = block_on(&mut harness, initiator.submit_signed_funding_tx(channel_id, signed)).unwrap();
    assert!(submitted.queued, "{submitted:?}");

    // A reload while queued keeps it queued: the signed tx is stored.
    harness.drop_initiator(initiator, &link);
    let (initiator, link) = harness.restart_initiator_offline(&a_link);
    let pending = block_on(&mut harness, initiator.pending_fundings()).unwrap();
    assert!(pending[0].view.signed_submitted && !pending[0].view.peer_connected);

    // The counterparty is back: the flow goes on to the end by itself.
    let view = harness.reconnect_until_ready(&link, &initiator, &acceptor, channel_id);
    assert!(view.peer_connected);
}

/// What `Harness::open_and_queue_a_submit` leaves.
/// What `start` returned: the node and the records it could not read.
type Booted = Result<(DriverHandle, Vec<RecordDecodeError>), DriverError>;

struct Queued {
    initiator: DriverHandle,
    acceptor: DriverHandle,
    link: Rc<LoopbackLink>,
    a_link: Rc<LoopbackLink>,
    channel_id: ChannelId,
    unsigned: packed::Transaction,
}

/// Queued after the counterparty had signed our commitment (it signs first:
/// it adds only its reserve), and it stays away past the deadline. Our own
/// commitment signature never left (it was held, and that is stored), so
/// the flow may still give up, and does at the deadline: the user is never
/// left waiting for a counterparty that may not come back. When it does
/// come back, it has released nothing either and aborts too.
#[test]
fn a_queued_submit_past_the_deadline_aborts_since_our_signature_never_left() {
    let mut harness = Harness::new();
    let Queued {
        initiator,
        acceptor,
        link,
        a_link,
        channel_id,
        unsigned,
    } = harness.open_and_queue_a_submit();

    // A reload while queued: the held signature is a stored fact.
    harness.drop_initiator(initiator, &link);
    let (initiator, link) = harness.restart_initiator_offline(&a_link);
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert!(view.deadline_ms.is_some(), "it may still give up: {view:?}");

    harness.platform.advance(TIMEOUT_MS + 1);
    harness.pool.run_until_stalled();
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert_eq!(
        view.state,
        ChannelState::Closed(CloseFlags::FUNDING_ABORTED),
        "{view:?}"
    );

    // The counterparty is back after its own deadline: both sides agree.
    harness
        .platform
        .advance(fiber_funding::flow::config::DEFAULT_ACCEPTOR_GRACE_MS + 1);
    link.connect();
    harness.pool.run_until_stalled();
    harness.mine_and_poll(3);
    let acceptor_view = block_on(&mut harness, acceptor.channel(channel_id)).unwrap().unwrap();
    assert!(
        matches!(acceptor_view.state, ChannelState::Closed(_)),
        "{acceptor_view:?}"
    );
    let hash: [u8; 32] = unsigned.calc_tx_hash().unpack();
    assert_eq!(
        harness.chain.borrow().submissions(&hash),
        0,
        "nobody could complete the tx"
    );
}

/// A command first runs the core's due deadlines. Their writes must land
/// before the command's own step and reply: answered from memory the write
/// later takes back, the reply said the flow was closed while storage (and,
/// after the failure, memory) held it open, and a command's write could
/// land on top of a state storage never had.
#[test]
fn a_command_meets_the_deadlines_writes_landed_not_only_computed() {
    let mut harness = Harness::new();
    let Queued {
        initiator, channel_id, ..
    } = harness.open_and_queue_a_submit();
    harness.initiator_store.fail_next_puts(1);
    // The deadline passes; the command reaches the driver before its timer.
    harness.platform.jump(TIMEOUT_MS + 1);
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    let stored = harness.stored_initiator_record(channel_id);
    assert!(stored.closed.is_none(), "the abort's write was made to fail");
    assert!(
        !matches!(view.state, ChannelState::Closed(_)),
        "the reply shows what storage does not hold: {view:?}"
    );
    assert!(
        harness
            .events
            .borrow()
            .iter()
            .any(|event| matches!(event, DriverEvent::StorageError(_))),
        "the failed write is reported"
    );
}

/// A boot whose write fails (here, the abort of a flow whose deadline
/// passed while the page was away; a full quota fails every write) must
/// still boot: failing it left the user no way to see or act on any flow,
/// on every reload, while storage still read. The step is taken back, the
/// failure reported, and the abort made again when next due (at once: the
/// deadline is past).
#[test]
fn a_boot_whose_write_fails_still_boots_and_makes_the_write_again() {
    let mut harness = Harness::new();
    let (a_link, channel_id) = harness.queue_a_submit_and_close_the_page();
    harness.platform.jump(TIMEOUT_MS + 1);
    harness.initiator_store.fail_next_puts(1);
    let booted = harness.boot_initiator_offline(&a_link);
    let (initiator, _) = booted.expect("the boot survives a failed write");
    let failures = harness
        .events
        .borrow()
        .iter()
        .filter(|event| matches!(event, DriverEvent::StorageError(_)))
        .count();
    assert_eq!(failures, 1, "the boot's failed write is reported");

    // The deadline is still past: the abort is made again, and lands.
    harness.pool.run_until_stalled();
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert_eq!(
        view.state,
        ChannelState::Closed(CloseFlags::FUNDING_ABORTED),
        "{view:?}"
    );
    assert!(harness.stored_initiator_record(channel_id).closed.is_some());
}

/// The database deleted while the page runs (site data cleared, the
/// browser evicting the site): the page's memory holds the only copy of
/// each flow's keys, a funded channel's among them. The write that finds
/// it gone fails and is taken back; the store is then made again with
/// every record the node holds (memory is back to what was durable), so a
/// reload finds the flows, and the next write goes through.
#[test]
fn a_database_deleted_while_the_page_runs_is_made_again_with_every_flow() {
    let mut harness = Harness::new();
    let Queued {
        initiator, channel_id, ..
    } = harness.open_and_queue_a_submit();
    let before = harness.stored_initiator_record(channel_id);
    harness.initiator_store.delete_database();

    let refused = ApiError::from(block_on(&mut harness, initiator.abandon_channel(channel_id)).unwrap_err());
    assert_eq!(refused.code, ErrorCode::StorageUnavailable, "{refused:?}");
    assert!(
        refused.message.contains("deleted") && refused.message.contains("created again with 1 flow"),
        "{}",
        refused.message
    );
    assert_eq!(
        harness.stored_initiator_record(channel_id),
        before,
        "the flow is stored again as it was before the failed write"
    );

    block_on(&mut harness, initiator.abandon_channel(channel_id)).unwrap();
    assert!(harness.stored_initiator_record(channel_id).closed.is_some());
}

/// A record the page could not read (a newer module's) may hold a funded
/// channel's keys: the database made again holds it too, as it was.
#[test]
fn a_database_deleted_while_the_page_runs_is_made_again_with_the_records_it_could_not_read() {
    let mut harness = Harness::new();
    let foreign = format!("0x{}", "6c".repeat(32));
    let foreign_bytes = b"{\"schema_version\": 99}".to_vec();
    let (a_link, channel_id) = harness.queue_a_submit_and_close_the_page();
    harness.initiator_store.insert_raw(&foreign, foreign_bytes.clone());
    let (initiator, unreadable) = harness.boot_initiator_offline(&a_link).unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    harness.initiator_store.delete_database();

    let refused = ApiError::from(block_on(&mut harness, initiator.abandon_channel(channel_id)).unwrap_err());
    assert!(refused.message.contains("created again"), "{}", refused.message);
    assert_eq!(harness.initiator_store.raw(&foreign), Some(foreign_bytes));
    harness.stored_initiator_record(channel_id);
}

/// While our signature is held the user has a way out: abandoning works.
#[test]
fn a_queued_submit_can_be_abandoned_while_our_signature_is_held() {
    let mut harness = Harness::new();
    let queued = harness.open_and_queue_a_submit();
    let (initiator, channel_id) = (queued.initiator, queued.channel_id);
    block_on(&mut harness, initiator.abandon_channel(channel_id)).unwrap();
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::ABANDONED), "{view:?}");
}

/// A held signature goes out when the counterparty is back, and from then
/// on the flow is committed (rule 5): the write that says so lands first.
#[test]
fn a_held_commitment_signature_is_recorded_as_sent_before_it_leaves() {
    let mut harness = Harness::new();
    let Queued {
        initiator,
        acceptor,
        link,
        channel_id,
        ..
    } = harness.open_and_queue_a_submit();
    let stored = harness.stored_initiator_record(channel_id);
    assert!(stored.commitment_signed_held, "the queued submit holds our signature");

    let view = harness.reconnect_until_ready(&link, &initiator, &acceptor, channel_id);
    assert_eq!(view.deadline_ms, None);
    let stored = harness.stored_initiator_record(channel_id);
    assert!(!stored.commitment_signed_held);
}

#[test]
fn a_submit_with_the_peer_connected_is_sent() {
    let mut harness = Harness::new();
    let (initiator, _acceptor, _i_link, _a_link) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    let (channel_id, unsigned) = block_on(&mut harness, initiator.open_channel(params)).unwrap();
    let signed = default_lock::sign_group(&unsigned, &[0], &harness.user_key).unwrap();
    let submitted = block_on(&mut harness, initiator.submit_signed_funding_tx(channel_id, signed)).unwrap();
    assert!(!submitted.queued, "{submitted:?}");
}

#[test]
fn an_open_to_a_peer_that_never_connects_fails_with_peer_unreachable() {
    let mut harness = Harness::new();
    let (sender, receiver) = inbox();
    let (link, _) = LoopbackLink::pair(
        (config(0x11, None, 1).node_secret.node_id(), sender.clone()),
        (harness.acceptor_config.node_secret.node_id(), inbox().0),
    );
    let parts = DriverParts {
        config: config(0x11, None, 1),
        entropy: Box::new(Counter(1)),
        store: harness.initiator_store.clone(),
        link,
        chain: Rc::new(SimulatedChainClient::new(harness.chain.clone())),
        platform: harness.platform.clone(),
        settings: DriverSettings::default(),
        on_event: Box::new(|_| {}),
    };
    let (handle, _) = block_on(&mut harness, start(parts, sender, receiver)).unwrap();
    let params = harness.params();
    let (done, result) = oneshot::channel();
    harness
        .pool
        .spawner()
        .spawn_local(async move {
            let _ = done.send(handle.open_channel(params).await);
        })
        .unwrap();
    harness.pool.run_until_stalled();
    harness
        .platform
        .advance(DriverSettings::default().connect_timeout_ms + 1);
    harness.pool.run_until_stalled();
    let error = ApiError::from(futures::executor::block_on(result).unwrap().unwrap_err());
    assert_eq!(error.code, ErrorCode::PeerUnreachable, "{error}");
    assert!(
        harness.initiator_store.is_empty(),
        "nothing stored for an open that never started"
    );
}

#[test]
fn the_deadline_keeps_running_while_the_page_is_gone() {
    let mut harness = Harness::new();
    let (initiator, acceptor, i_link, a_link) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    let (channel_id, unsigned) = block_on(&mut harness, initiator.open_channel(params)).unwrap();
    harness.drop_initiator(initiator, &i_link);
    harness.platform.advance(TIMEOUT_MS + 1);
    harness.pool.run_until_stalled();

    let (initiator, _) = harness.restart_initiator(&a_link);
    assert!(block_on(&mut harness, initiator.pending_fundings()).unwrap().is_empty());
    let signed = default_lock::sign_group(&unsigned, &[0], &harness.user_key).unwrap();
    let error =
        ApiError::from(block_on(&mut harness, initiator.submit_signed_funding_tx(channel_id, signed)).unwrap_err());
    assert_eq!(error.code, ErrorCode::ChannelClosed);
    assert!(error.message.contains("timed out"), "{error}");
    let acceptor_view = block_on(&mut harness, acceptor.channel(channel_id)).unwrap().unwrap();
    assert!(
        matches!(acceptor_view.state, ChannelState::Closed(_)),
        "{acceptor_view:?}"
    );
}

#[test]
fn deadlines_ring_on_the_drivers_own_timer_with_no_polling_at_all() {
    let mut harness = Harness::new();
    // No poll and no command after the open (a command ticks the core too):
    // only the timer kept at Node::next_deadline can end the flow.
    harness.settings.poll_interval_ms = 1_000_000_000;
    let (initiator, _acceptor, _, _) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    block_on(&mut harness, initiator.open_channel(params)).unwrap();
    let aborted = |harness: &Harness| {
        harness.events.borrow().iter().any(|event| {
            matches!(
                event,
                DriverEvent::Flow(Event::StateChanged {
                    state: ChannelState::Closed(flags),
                    ..
                }) if *flags == CloseFlags::FUNDING_ABORTED
            )
        })
    };

    harness.platform.advance(TIMEOUT_MS - 1);
    harness.pool.run_until_stalled();
    assert!(!aborted(&harness), "not yet");

    harness.platform.advance(1);
    harness.pool.run_until_stalled();
    assert!(aborted(&harness), "the deadline rang on its own");
}

// ---- the closed flows' tombstones, restored after the boot ----------------------------

/// The initiator's store, whose tombstones come only once the test opens the
/// gate (with what the gate says: a failure, or unreadable records besides).
struct GatedTombstones {
    inner: Rc<MemoryStore>,
    gate: RefCell<Option<oneshot::Receiver<Result<LoadedRecords, StoreError>>>>,
}

impl Store for GatedTombstones {
    async fn put(&self, record: &ChannelRecord, replaces: Option<&ChannelId>) -> Result<(), StoreError> {
        self.inner.put(record, replaces).await
    }

    async fn get(&self, channel_id: &ChannelId) -> Result<Option<ChannelRecord>, StoreError> {
        self.inner.get(channel_id).await
    }

    async fn load_all(&self) -> Result<LoadedRecords, StoreError> {
        self.inner.load_all().await
    }

    async fn load_live(&self) -> Result<LoadedRecords, StoreError> {
        self.inner.load_live().await
    }

    async fn load_tombstones(&self) -> Result<LoadedRecords, StoreError> {
        let gate = self.gate.borrow_mut().take().expect("the tombstones are read once");
        let besides = gate.await.expect("the test opens the gate")?;
        let mut loaded = self.inner.load_tombstones().await?;
        loaded.unreadable.extend(besides.unreadable);
        Ok(loaded)
    }
}

/// Every message the node sends; no peer behind it.
#[derive(Default)]
struct RecordingLink {
    sent: RefCell<Vec<(NodeId, FiberMessage)>>,
}

impl PeerLink for RecordingLink {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        self.sent.borrow_mut().push((*peer, message.clone()));
    }
    fn close(&self) {}
}

struct BootedBesideATombstone {
    initiator: DriverHandle,
    link: Rc<RecordingLink>,
    gate: oneshot::Sender<Result<LoadedRecords, StoreError>>,
    live_id: ChannelId,
    signed: packed::Transaction,
    tombstone: ChannelRecord,
}

/// A flow waiting for the user's signature and, stored beside it, the
/// tombstone of a flow the user abandoned; then a page load on them whose
/// tombstones wait for the test.
fn boot_beside_a_tombstone(harness: &mut Harness) -> BootedBesideATombstone {
    let (initiator, _acceptor, i_link, _a_link) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    let (live_id, unsigned) = block_on(harness, initiator.open_channel(params)).unwrap();
    harness.drop_initiator(initiator, &i_link);
    let mut tombstone = harness.stored_initiator_record(live_id);
    tombstone.channel_id = Hash256([0x0d; 32]);
    tombstone.temporary_channel_id = Hash256([0x0e; 32]);
    tombstone.close_as_tombstone(
        CloseFlags::ABANDONED,
        "abandoned by the user".into(),
        harness.platform.now_ms(),
    );
    assert!(tombstone.is_tombstone());
    futures::executor::block_on(harness.initiator_store.put(&tombstone, None)).unwrap();

    let (gate, gated) = oneshot::channel();
    let link = Rc::new(RecordingLink::default());
    let store = GatedTombstones {
        inner: harness.initiator_store.clone(),
        gate: RefCell::new(Some(gated)),
    };
    let initiator = harness.start_initiator(store, link.clone(), inbox());
    BootedBesideATombstone {
        initiator,
        link,
        gate,
        live_id,
        signed: default_lock::sign_group(&unsigned, &[0], &harness.user_key).unwrap(),
        tombstone,
    }
}

/// Runs `call` on the pool; its answer, once there is one.
fn in_background<T: 'static>(
    harness: &Harness,
    call: impl std::future::Future<Output = T> + 'static,
) -> oneshot::Receiver<T> {
    let (answer, answered) = oneshot::channel();
    harness
        .pool
        .spawner()
        .spawn_local(async move {
            let _ = answer.send(call.await);
        })
        .unwrap();
    answered
}

/// A boot answers for the live flows before the tombstones are read; what
/// names a closed flow (a call, the peer's reestablish) or lists every
/// channel waits for them and is answered from them, in order.
#[test]
fn what_needs_the_tombstones_waits_for_them_and_the_live_flows_do_not() {
    let mut harness = Harness::new();
    let booted = boot_beside_a_tombstone(&mut harness);
    let (initiator, tombstone_id) = (booted.initiator.clone(), booted.tombstone.channel_id);
    let peer = harness.acceptor_config.node_secret.node_id();

    let closed_view = in_background(&harness, {
        let initiator = initiator.clone();
        async move { initiator.channel(tombstone_id).await }
    });
    let listed = in_background(&harness, {
        let initiator = initiator.clone();
        async move { initiator.channels().await }
    });
    let reestablish = FiberMessage::ReestablishChannel(ReestablishChannel {
        channel_id: tombstone_id,
        local_commitment_number: 0,
        remote_commitment_number: 0,
    });
    initiator
        .sender()
        .unbounded_send(Input::PeerMessage(peer, reestablish))
        .unwrap();
    harness.pool.run_until_stalled();

    // The live flow: listed, looked up and submitted while the tombstones wait.
    let pending = block_on(&mut harness, initiator.pending_fundings()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].view.channel_id, booted.live_id);
    assert!(block_on(&mut harness, initiator.channel(booted.live_id))
        .unwrap()
        .is_some());
    let submitted = block_on(
        &mut harness,
        initiator.submit_signed_funding_tx(booted.live_id, booted.signed.clone()),
    )
    .unwrap();
    assert!(submitted.queued);
    // What needs the tombstones: not answered, nothing said to the peer.
    harness.pool.run_until_stalled();
    let mut closed_view = closed_view;
    let mut listed = listed;
    assert_eq!(
        closed_view.try_recv().unwrap(),
        None,
        "answered before the tombstones were in"
    );
    assert!(
        listed.try_recv().unwrap().is_none(),
        "listed before the tombstones were in"
    );
    assert!(booted.link.sent.borrow().is_empty(), "{:?}", booted.link.sent.borrow());

    booted.gate.send(Ok(LoadedRecords::default())).unwrap();
    harness.pool.run_until_stalled();
    let view = closed_view
        .try_recv()
        .unwrap()
        .expect("answered")
        .unwrap()
        .expect("known");
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::ABANDONED));
    let ids: Vec<ChannelId> = listed
        .try_recv()
        .unwrap()
        .expect("answered")
        .unwrap()
        .iter()
        .map(|view| view.channel_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&booted.live_id) && ids.contains(&tombstone_id), "{ids:?}");
    // The peer hears why the flow closed, not that it is unknown.
    let sent = booted.link.sent.borrow();
    let aborts: Vec<&[u8]> = sent
        .iter()
        .filter_map(|(_, message)| match message {
            FiberMessage::TxAbort(abort) if abort.channel_id == tombstone_id => Some(&abort.message[..]),
            _ => None,
        })
        .collect();
    assert_eq!(aborts, [&b"abandoned by the user"[..]], "{sent:?}");
}

/// Tombstones that cannot be read are reported, and what waited for them is
/// answered anyway: a closed flow then reads as unknown, never as a hang.
#[test]
fn tombstones_that_cannot_be_read_are_reported_and_nothing_waits_forever() {
    let mut harness = Harness::new();
    let booted = boot_beside_a_tombstone(&mut harness);
    let tombstone_id = booted.tombstone.channel_id;
    let closed_view = in_background(&harness, {
        let initiator = booted.initiator.clone();
        async move { initiator.channel(tombstone_id).await }
    });
    harness.pool.run_until_stalled();
    let mut closed_view = closed_view;
    assert!(closed_view.try_recv().unwrap().is_none(), "waits for the tombstones");
    booted
        .gate
        .send(Err(StoreError::Unavailable("the disk went away".into())))
        .unwrap();
    harness.pool.run_until_stalled();
    assert_eq!(closed_view.try_recv().unwrap().expect("answered").unwrap(), None);
    let events = harness.events.borrow();
    assert!(
        events.iter().any(|event| matches!(event,
            DriverEvent::StorageError(reason) if reason.contains("closed flows") && reason.contains("the disk went away"))),
        "{events:?}"
    );
}

/// An unreadable tombstone is named in an event; the others are restored.
#[test]
fn an_unreadable_tombstone_is_named_in_an_event() {
    let mut harness = Harness::new();
    let booted = boot_beside_a_tombstone(&mut harness);
    let unreadable = RecordDecodeError {
        channel_id: Hash256([0x0f; 32]).to_string(),
        reason: "damaged".into(),
    };
    let besides = LoadedRecords {
        records: Vec::new(),
        unreadable: vec![unreadable.clone()],
    };
    booted.gate.send(Ok(besides)).unwrap();
    harness.pool.run_until_stalled();
    let view = block_on(&mut harness, booted.initiator.channel(booted.tombstone.channel_id)).unwrap();
    assert!(view.is_some(), "the readable tombstone is restored");
    let events = harness.events.borrow();
    let named: Vec<&Vec<RecordDecodeError>> = events
        .iter()
        .filter_map(|event| match event {
            DriverEvent::UnreadableRecords(records) => Some(records),
            _ => None,
        })
        .collect();
    assert_eq!(named, [&vec![unreadable]]);
}

/// A CKB node whose liveness reads always fail (a rate-limited endpoint),
/// counted; every other read is the simulated chain's.
fn liveness_always_fails(chain: SimulatedChainClient, asked: Rc<Cell<usize>>) -> ChainWith {
    ChainWith {
        cells_live: Some(Box::new(move |_, _| {
            asked.set(asked.get() + 1);
            let error = ChainError::new("get_live_cell", ChainErrorKind::Unreachable, "429 Too Many Requests");
            Box::pin(futures::future::ready(Err(error)))
        })),
        ..ChainWith::new(chain)
    }
}

/// A CKB node that never takes a tx (unreachable for sends, counted) and
/// answers every status "rejected" and "unknown" by turns; every other
/// read is the simulated chain's.
fn sends_never_land(chain: SimulatedChainClient, sends: Rc<Cell<usize>>) -> ChainWith {
    let turns = Cell::new(0usize);
    ChainWith {
        transaction_status: Some(Box::new(move |inner, tx_hash| {
            let turn = turns.get();
            turns.set(turn + 1);
            let answer = inner.transaction_status(tx_hash);
            Box::pin(async move {
                let mut report = answer.await?;
                report.status = if turn % 2 == 0 {
                    TxStatus::Rejected
                } else {
                    TxStatus::Unknown
                };
                Ok(report)
            })
        })),
        send_transaction: Some(Box::new(move |_, _| {
            sends.set(sends.get() + 1);
            let error = ChainError::new("send_transaction", ChainErrorKind::Unreachable, "connection refused");
            Box::pin(futures::future::ready(Err(error)))
        })),
        ..ChainWith::new(chain)
    }
}

/// A queued submit, the page booted again against [`sends_never_land`] and
/// the counterparty back: the harness, the node, the channel, the sends.
fn booted_against_a_node_that_never_takes_a_tx() -> (Harness, DriverHandle, ChannelId, Rc<Cell<usize>>) {
    let mut harness = Harness::new();
    let (a_link, channel_id) = harness.queue_a_submit_and_close_the_page();
    let sends = Rc::new(Cell::new(0));
    let chain = Rc::new(sends_never_land(
        SimulatedChainClient::new(harness.chain.clone()),
        sends.clone(),
    ));
    let (booted, link) = harness.boot_initiator_reading(&a_link, chain);
    let (initiator, _) = booted.unwrap();
    link.connect();
    harness.pool.run_until_stalled();
    (harness, initiator, channel_id, sends)
}

/// A send that fails for a passing reason is retried every
/// `chain_retry_ms` until it lands. The core asks for the funding tx to be
/// sent again each time a status poll finds it dropped, and each ask
/// started one more retry loop, every one sending for as long as the page
/// stayed open: one loop per tx.
#[test]
fn a_tx_the_node_never_takes_is_sent_by_one_retry_loop_however_often_it_is_asked() {
    let (mut harness, initiator, channel_id, sends) = booted_against_a_node_that_never_takes_a_tx();
    let view = block_on(&mut harness, initiator.channel(channel_id)).unwrap().unwrap();
    assert!(view.funding_tx_hash.is_some(), "{view:?}");
    assert!(sends.get() >= 1, "the complete funding tx was sent");

    let settings = DriverSettings::default();
    let polls = 30;
    let before = sends.get();
    for _ in 0..polls {
        harness.platform.advance(settings.poll_interval_ms);
        harness.pool.run_until_stalled();
    }
    let elapsed = polls * settings.poll_interval_ms;
    let one_loop = usize::try_from(elapsed / settings.chain_retry_ms).unwrap();
    let sent = sends.get() - before;
    assert!(
        sent <= one_loop + 1,
        "{sent} sends in {elapsed} ms: more than one loop ({one_loop})"
    );
    drop(initiator);
}

/// `close()` promises that nothing of the driver runs after it: a send
/// loop retrying a node that never answers went on every `chain_retry_ms`
/// for as long as the page lived, sending a flow's tx after its node was
/// closed (a second node on the same database would send it too).
#[test]
fn a_send_retrying_an_unreachable_node_stops_when_the_node_closes() {
    let (mut harness, initiator, _, sends) = booted_against_a_node_that_never_takes_a_tx();
    assert!(sends.get() >= 1, "the complete funding tx was sent");

    block_on(&mut harness, initiator.close()).unwrap();
    let after_close = sends.get();
    let settings = DriverSettings::default();
    for _ in 0..10 {
        harness.platform.advance(settings.chain_retry_ms);
        harness.pool.run_until_stalled();
    }
    assert_eq!(sends.get(), after_close, "sent after the node was closed");
}

/// An aborted flow's watch asks at each poll whether its inputs are live.
/// Against a node that keeps failing, each failed ask started a retry loop
/// of its own, so the asks grew with every poll for as long as the page
/// stayed open; a poll-driven question is now simply asked at the next poll.
#[test]
fn failing_liveness_reads_are_asked_once_per_poll_not_once_more_per_poll() {
    let mut harness = Harness::new();
    let (initiator, _acceptor, i_link, a_link) = harness.start_pair(Rc::new(MemoryStore::new()));
    let params = harness.params();
    block_on(&mut harness, initiator.open_channel(params)).unwrap();
    harness.drop_initiator(initiator, &i_link);
    harness.platform.advance(TIMEOUT_MS + 1);
    harness.pool.run_until_stalled();

    let asked = Rc::new(Cell::new(0));
    let chain = Rc::new(liveness_always_fails(
        SimulatedChainClient::new(harness.chain.clone()),
        asked.clone(),
    ));
    let link = LoopbackLink::replace_peer(&a_link, inbox().0);
    let _initiator = harness.start_initiator_on(link, chain);
    let polls = 30;
    for _ in 0..polls {
        harness.platform.advance(DriverSettings::default().poll_interval_ms);
        harness.pool.run_until_stalled();
    }
    assert!(asked.get() > 0, "the watch never asked");
    assert!(
        asked.get() <= polls + 1,
        "{} liveness reads in {polls} polls",
        asked.get()
    );
}

/// The peer's part of the funding tx is read on chain; a node failing every
/// such read was asked again every `chain_retry_ms`, and on after the flow
/// had ended and no longer wanted the answer, for the rest of the page's
/// life (and one more loop for each open a hostile peer made). A failed
/// read is asked again only while the core still waits for its answer.
#[test]
fn a_failing_read_of_the_peers_inputs_is_not_asked_again_once_the_flow_ended() {
    let mut harness = Harness::new();
    let asked = Rc::new(Cell::new(0));
    let mut chain = ChainWith::new(SimulatedChainClient::new(harness.chain.clone()));
    chain.resolve_out_points = Some(Box::new({
        let asked = asked.clone();
        move |_, _| {
            asked.set(asked.get() + 1);
            Box::pin(futures::future::ready(Err(ChainError::new(
                "get_transaction",
                ChainErrorKind::Timeout,
                "no answer",
            ))))
        }
    }));
    let (initiator, _acceptor, _i_link, _a_link) =
        harness.start_pair_reading(Rc::new(MemoryStore::new()), Rc::new(chain));
    let open = in_background(&harness, {
        let initiator = initiator.clone();
        let params = harness.params();
        async move { initiator.open_channel(params).await }
    });
    harness.pool.run_until_stalled();
    assert!(asked.get() > 0, "the peer's inputs were read");
    harness.platform.advance(TIMEOUT_MS + 1);
    harness.pool.run_until_stalled();
    drop(open);
    let channels = block_on(&mut harness, initiator.channels()).unwrap();
    assert!(
        channels.iter().all(|c| matches!(c.state, ChannelState::Closed(_))),
        "the flow ended: {channels:?}"
    );
    let after_the_end = asked.get();
    let retry_ms = DriverSettings::default().chain_retry_ms;
    for _ in 0..30 {
        harness.platform.advance(retry_ms);
        harness.pool.run_until_stalled();
    }
    assert!(
        asked.get() <= after_the_end + 1,
        "{} reads after the flow ended",
        asked.get() - after_the_end
    );
}

/// A flow whose record the page could not read (a newer module's, or made
/// under another node key) is still stored: a call naming it, say the
/// wallet's redirect submitting its signed tx, was answered
/// `UNKNOWN_CHANNEL`, and a wallet might tell the user the flow never
/// existed and open again from the same cells. It is `RECORD_UNREADABLE`,
/// and the record is left as it was.
#[test]
fn a_call_naming_a_record_the_page_could_not_read_says_so() {
    let mut harness = Harness::new();
    let (a_link, _) = harness.queue_a_submit_and_close_the_page();
    let unreadable_id = Hash256([0x6c; 32]);
    let bytes = b"{\"schema_version\": 99}".to_vec();
    harness
        .initiator_store
        .insert_raw(&unreadable_id.to_string(), bytes.clone());
    let (initiator, unreadable) = harness.boot_initiator_offline(&a_link).unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");

    let refused = ApiError::from(block_on(&mut harness, initiator.abandon_channel(unreadable_id)).unwrap_err());
    assert_eq!(refused.code, ErrorCode::RecordUnreadable, "{}", refused.message);
    assert!(
        refused.message.contains(&unreadable_id.to_string()),
        "{}",
        refused.message
    );
    assert_eq!(harness.initiator_store.raw(&unreadable_id.to_string()), Some(bytes));
}

/// A flow refused at boot as another node key's (the page now passes
/// another `nodeSecretKey`) is still that key's, maybe a funded channel:
/// the database made again after a deletion holds it too. It was left out,
/// since only records that failed to decode were written back.
#[test]
fn a_database_deleted_while_the_page_runs_is_made_again_with_another_keys_records() {
    let mut harness = Harness::new();
    let (a_link, channel_id) = harness.queue_a_submit_and_close_the_page();
    let stored = harness
        .initiator_store
        .raw(&channel_id.to_string())
        .expect("the flow is stored");
    harness.initiator_key = 0x33;
    let (booted, link) =
        harness.boot_initiator_reading(&a_link, Rc::new(SimulatedChainClient::new(harness.chain.clone())));
    let (initiator, unreadable) = booted.unwrap();
    assert_eq!(unreadable.len(), 1, "refused as another key's: {unreadable:?}");
    harness.initiator_store.delete_database();

    link.connect();
    let open = in_background(&harness, {
        let params = harness.params();
        async move { initiator.open_channel(params).await }
    });
    harness.pool.run_until_stalled();
    drop(open);
    assert!(
        harness
            .initiator_store
            .raw(&channel_id.to_string())
            .is_some_and(|bytes| !bytes.is_empty()),
        "the other key's flow is stored again"
    );
    let again = ChannelRecord::read(&harness.initiator_store.raw(&channel_id.to_string()).unwrap()).unwrap();
    let first = ChannelRecord::read(&stored).unwrap();
    assert_eq!(again.channel_id, first.channel_id);
    assert_eq!(again.channel_seed, first.channel_seed, "its keys with it");
}

/// The database deleted while the page runs, and no write before the page
/// closes (nothing was due: polls do not write, a redirect does not): the
/// deletion was only found by a write, so the page's copy of every flow,
/// keys and all, went with the page. Closing checks the store first.
#[test]
fn a_database_deleted_while_the_page_runs_is_made_again_when_the_page_closes() {
    let mut harness = Harness::new();
    let Queued {
        initiator,
        link,
        channel_id,
        ..
    } = harness.open_and_queue_a_submit();
    harness.initiator_store.delete_database();
    harness.drop_initiator(initiator, &link);
    assert!(
        harness.initiator_store.raw(&channel_id.to_string()).is_some(),
        "the flow is stored again"
    );
}

/// As above, the page left open: the next poll finds the deletion and the
/// database is made again, with the flow, before any write is due.
#[test]
fn a_database_deleted_while_the_page_runs_is_made_again_at_the_next_poll() {
    let mut harness = Harness::new();
    let Queued { channel_id, .. } = harness.open_and_queue_a_submit();
    harness.initiator_store.delete_database();
    harness.platform.advance(DriverSettings::default().poll_interval_ms);
    harness.pool.run_until_stalled();
    assert!(
        harness.initiator_store.raw(&channel_id.to_string()).is_some(),
        "the flow is stored again"
    );
    assert!(
        harness
            .events
            .borrow()
            .iter()
            .any(|e| matches!(e, DriverEvent::StorageError(reason) if reason.contains("created again with 1 flow"))),
        "the page is told"
    );
}
