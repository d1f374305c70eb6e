//! The event loop around a [`Node`]: one task owns the node and processes
//! inputs one at a time (commands, peer messages, chain answers, timers), so
//! no two steps interleave, and nothing a step's write holds back runs
//! before that write is durable. Writes of steps for different peers are
//! committed together at the end of a round (a group commit, see
//! [`Driver::run`]). Adapters — a [`PeerLink`], a [`ChainClient`], a [`Store`] and
//! a [`Platform`] — are all it needs; the browser and the native counterparty
//! plug in their own.

use crate::collections::{VecMap, VecSet};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ckb_types::packed;
use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};

use super::{commit_writes, execute, run_until_write, Effects, PendingWrite, PersistFailed};
use crate::chain::client::{ChainClient, ChainError};
use crate::chain::{CheckedTx, LiveCell, TxReport};
use crate::flow::error::FlowError;
use crate::flow::record::{ChannelRecord, RecordDecodeError};
use crate::flow::{
    Action, ChainEvent, ChainQuery, ChannelView, EntropySource, Event, Node, NodeConfig, OpenChannelParams,
    OpenFailure, OpenId,
};
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::store::{LoadedRecords, Store, StoreError};
use crate::tx::script::ScriptTemplate;
use crate::wire::FiberMessage;

/// Time and tasks, as the host provides them.
pub trait Platform {
    fn now_ms(&self) -> u64;
    fn spawn(&self, task: LocalBoxFuture<'static, ()>);
    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()>;
}

/// A connection to peers. Connection changes and incoming messages arrive as
/// [`Input`]s through the sender the link was given.
pub trait PeerLink {
    /// Sends if connected to `peer`; otherwise the message is dropped (the
    /// reestablish on reconnection brings the peer up to date).
    fn send(&self, peer: &NodeId, message: &FiberMessage);
    fn close(&self);
}

type Reply<T> = oneshot::Sender<Result<T, DriverError>>;

/// Why the link could not give us the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTrouble {
    /// Nothing answered, or the connection failed.
    Unreachable,
    /// The node there is another one than the channel is opened with.
    Mismatch,
}

/// Why a command to the driver failed: domain errors only; the API layer
/// maps each to the code a page sees (`api::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Persist(#[from] PersistFailed),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An open request that ended without an unsigned tx (the core's answer).
    #[error(transparent)]
    Open(#[from] OpenFailure),
    #[error("{0}")]
    NodeClosed(&'static str),
}

/// A flow restored or running that has not reached a terminal state.
pub struct PendingFunding {
    pub view: ChannelView,
    pub unsigned_funding_tx: Option<packed::Transaction>,
    pub started_at_ms: u64,
    /// The wallet cells this funding holds: no other open spends them.
    pub reserved_cells: Vec<packed::OutPoint>,
}

/// A signed funding tx taken: checked and durably stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    pub funding_tx_hash: Hash256,
    /// The peer was away: our commitment signature goes out when it is back
    /// (before the deadline, or the flow aborts as any other).
    pub queued: bool,
}

/// Something the application asks of the node.
// Open's parameters dwarf the rest; commands are few, so the size is moot.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    Open {
        params: OpenChannelParams,
        reply: Reply<(ChannelId, packed::Transaction)>,
    },
    Submit {
        channel_id: ChannelId,
        tx: packed::Transaction,
        reply: Reply<Submitted>,
    },
    Abandon {
        channel_id: ChannelId,
        reply: Reply<()>,
    },
    CancelTx {
        channel_id: ChannelId,
        fee_rate: Option<u64>,
        reply: Reply<packed::Transaction>,
    },
    SubmitCancel {
        channel_id: ChannelId,
        tx: packed::Transaction,
        reply: Reply<Hash256>,
    },
    Shutdown {
        channel_id: ChannelId,
        close_script: Option<packed::Script>,
        fee_rate: Option<u64>,
        reply: Reply<()>,
    },
    ForceClose {
        channel_id: ChannelId,
        reply: Reply<()>,
    },
    Pending {
        reply: Reply<Vec<PendingFunding>>,
    },
    Channel {
        channel_id: ChannelId,
        reply: Reply<Option<ChannelView>>,
    },
    List {
        reply: Reply<Vec<ChannelView>>,
    },
    /// Every record a backup should hold (not the wiped ones).
    Backup {
        reply: Reply<Vec<ChannelRecord>>,
    },
    /// Channels from a backup, each stored before the node acts on it.
    Import {
        records: Vec<ChannelRecord>,
        reply: Reply<ImportOutcome>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// What an import took, and each record it left out with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub imported: Vec<ChannelId>,
    pub skipped: Vec<(ChannelId, String)>,
    /// The store holds records of another node key: its stored node key
    /// is theirs and must not be replaced.
    pub other_keys_records: bool,
}

/// Everything that reaches the loop.
// Short-lived and moved once; boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Input {
    Command(Command),
    PeerConnected(NodeId),
    PeerDisconnected {
        peer: NodeId,
        reason: String,
    },
    /// The link could not reach or authenticate the peer.
    PeerUnavailable {
        reason: String,
        trouble: PeerTrouble,
    },
    PeerMessage(NodeId, FiberMessage),
    /// The wallet's cells for an open request ([`Action::FetchWalletCells`]).
    WalletCells {
        open: OpenId,
        cells: Result<Vec<LiveCell>, ChainError>,
    },
    Chain(ChainEvent),
    ChainQueryFailed {
        channel_id: ChannelId,
        query: ChainQuery,
        error: ChainError,
    },
    StatusChecked {
        channel_id: ChannelId,
        tx_hash: Hash256,
        result: Result<TxReport, ChainError>,
    },
    /// Whether a funded channel's funding cell was spent, and by what.
    SpenderChecked {
        channel_id: ChannelId,
        result: Result<Option<(packed::Transaction, TxReport)>, ChainError>,
    },
    /// The timer of [`Driver::rearm_timer`] rang; stale ones (an earlier
    /// arming) are ignored.
    Timer {
        generation: u64,
    },
    Poll,
    /// The closed flows' tombstones, read after the boot ([`start`]).
    Tombstones(Result<LoadedRecords, StoreError>),
    /// Fiber's published code cells, looked up after the boot
    /// ([`Node::published_cell_deps_found`]): each lock as the lookup
    /// placed it (without deps where it could not).
    PublishedCellDeps {
        funding_lock: ScriptTemplate,
        commitment_lock: ScriptTemplate,
    },
}

pub type InputSender = mpsc::UnboundedSender<Input>;
pub type InputReceiver = mpsc::UnboundedReceiver<Input>;

/// The queue a driver reads; give the sender to the link before starting.
pub fn inbox() -> (InputSender, InputReceiver) {
    mpsc::unbounded()
}

/// What the application hears about, beyond the core's own events.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    Flow(Event),
    PeerConnected(NodeId),
    PeerDisconnected(String),
    PeerUnavailable {
        reason: String,
        trouble: PeerTrouble,
    },
    ChainError(ChainError),
    StorageError(String),
    /// Stored records found unreadable after the boot (closed flows'
    /// tombstones, read once the live flows are restored); kept in the store.
    UnreadableRecords(Vec<RecordDecodeError>),
}

#[derive(Debug, Clone, Copy)]
pub struct DriverSettings {
    /// How often the funding tx's status is asked for.
    pub poll_interval_ms: u64,
    /// How long an open waits for the peer to connect.
    pub connect_timeout_ms: u64,
    /// Pause before a failed chain query is tried again.
    pub chain_retry_ms: u64,
    /// The most status and spender polls in flight at once. A hub watches
    /// hundreds of txs: unbounded, its polls crowd out the chain queries an
    /// open waits on (and its CKB node). The cap bounds concurrency, not
    /// rate: each poll interval starts a round over every watched tx, and
    /// the next lookup starts as soon as one is answered.
    pub max_polls_in_flight: usize,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 2_000,
            connect_timeout_ms: 10_000,
            chain_retry_ms: 2_000,
            max_polls_in_flight: 32,
        }
    }
}

/// One lookup of a poll round.
enum Watch {
    /// Which committed tx spent a funded channel's funding cell, if any.
    Spender(ChannelId, packed::OutPoint, packed::Script),
    /// The status of a tx.
    Status(ChannelId, Hash256),
}

pub struct Driver<S> {
    node: Node,
    store: Rc<S>,
    link: Rc<dyn PeerLink>,
    chain: Rc<dyn ChainClient>,
    platform: Rc<dyn Platform>,
    sender: InputSender,
    settings: DriverSettings,
    on_event: Box<dyn FnMut(DriverEvent)>,
    /// The caller of each open request, until the core answers it.
    pending_opens: VecMap<OpenId, Reply<(ChannelId, packed::Transaction)>>,
    next_open_id: u64,
    status_in_flight: VecSet<Hash256>,
    /// Channels whose funding cell's spender is being looked up.
    spender_in_flight: VecSet<ChannelId>,
    /// Txs a send loop is sending (retrying while the node is unreachable).
    sending: Rc<RefCell<VecSet<Hash256>>>,
    /// What the current poll round has yet to ask about, in turn: taken
    /// from the core once per round, so a round costs one pass however
    /// many answers it waits for.
    poll_round: VecDeque<Watch>,
    /// The one timer: when it rings, and which arming it is.
    timer: Option<u64>,
    timer_generation: u64,
    closed: bool,
    /// Writes this round's steps asked for, committed together at its end.
    writes: Vec<PendingWrite>,
    /// Inputs that wait for the tombstones ([`Node::awaits_tombstones`]),
    /// in the order they came.
    parked: Vec<Input>,
    /// Inputs to take before the queue's: the parked ones once the
    /// tombstones are in, or one a round took but could not join.
    /// A `Vec`, taken from the front: it is almost always empty.
    replay: Vec<Input>,
}

/// The application's side of a running driver.
#[derive(Clone)]
pub struct DriverHandle {
    sender: InputSender,
    ended: futures::future::Shared<oneshot::Receiver<()>>,
}

/// Signals the handle when the loop ends, however it ends: its drop runs on
/// a normal return and while a panic unwinds the task.
struct EndSignal(Option<oneshot::Sender<()>>);

impl Drop for EndSignal {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

/// Everything [`start`] needs.
pub struct DriverParts<S> {
    pub config: NodeConfig,
    pub entropy: Box<dyn EntropySource>,
    pub store: S,
    pub link: Rc<dyn PeerLink>,
    pub chain: Rc<dyn ChainClient>,
    pub platform: Rc<dyn Platform>,
    pub settings: DriverSettings,
    pub on_event: Box<dyn FnMut(DriverEvent)>,
}

/// Restores every live channel from the store (aborting expired flows),
/// then runs the loop as a task. Returns the records it could not read; the
/// others are restored. The closed flows' tombstones are read after this
/// returns, so however many there are they never slow a boot; what needs
/// them waits for them (see [`Driver::needs_tombstones`]), and an unreadable
/// one is reported as [`DriverEvent::UnreadableRecords`].
pub async fn start<S: Store + 'static>(
    parts: DriverParts<S>,
    sender: InputSender,
    receiver: InputReceiver,
) -> Result<(DriverHandle, Vec<RecordDecodeError>), DriverError> {
    let store = Rc::new(parts.store);
    let loaded = store.load_live().await?;
    let mut driver = Driver {
        node: Node::new(parts.config, parts.entropy),
        store: store.clone(),
        link: parts.link,
        chain: parts.chain,
        platform: parts.platform.clone(),
        sender: sender.clone(),
        settings: parts.settings,
        on_event: parts.on_event,
        pending_opens: VecMap::new(),
        next_open_id: 0,
        status_in_flight: VecSet::new(),
        spender_in_flight: VecSet::new(),
        sending: Rc::new(RefCell::new(VecSet::new())),
        poll_round: VecDeque::new(),
        timer: None,
        timer_generation: 0,
        closed: false,
        writes: Vec::new(),
        parked: Vec::new(),
        replay: Vec::new(),
    };
    let now = driver.platform.now_ms();
    let (actions, mut unreadable) = driver.node.restore(loaded.records, now);
    unreadable.extend(loaded.unreadable);
    driver.node.note_unreadable(&unreadable);
    // A failed write at boot (a full quota fails them all) is taken back by
    // the core and reported; the boot goes on, so the user still sees and
    // can act on every flow, and the step is made again when next due.
    if let Err(failure) = driver.run_actions(actions).await {
        (driver.on_event)(DriverEvent::StorageError(failure.to_string()));
    }
    let poll_sender = sender.clone();
    let platform = parts.platform.clone();
    let interval = driver.settings.poll_interval_ms;
    parts.platform.spawn(Box::pin(async move {
        // Ends when the driver has stopped and the queue is gone.
        loop {
            platform.sleep(interval).await;
            if poll_sender.unbounded_send(Input::Poll).is_err() {
                break;
            }
        }
    }));
    let (end_signal, ended) = oneshot::channel();
    parts
        .platform
        .spawn(Box::pin(driver.run(receiver, EndSignal(Some(end_signal)))));
    let tombstone_sender = sender.clone();
    parts.platform.spawn(Box::pin(async move {
        let loaded = store.load_tombstones().await;
        let _ = tombstone_sender.unbounded_send(Input::Tombstones(loaded));
    }));
    let handle = DriverHandle {
        sender,
        ended: ended.shared(),
    };
    Ok((handle, unreadable))
}

/// The adapters as [`Effects`], borrowed field by field so the node and
/// the round's writes stay free to borrow alongside.
macro_rules! driver_effects {
    ($driver:ident) => {
        DriverEffects {
            link: &$driver.link,
            chain: &$driver.chain,
            platform: &$driver.platform,
            sender: &$driver.sender,
            pending_opens: &mut $driver.pending_opens,
            on_event: &mut $driver.on_event,
            settings: &$driver.settings,
            sending: &$driver.sending,
        }
    };
}

impl<S: Store> Driver<S> {
    /// Takes inputs in rounds. A round starts with the next input; when that
    /// one concerns a single peer, every input already queued for other
    /// peers joins it. The round's writes are then committed together (one
    /// fsync where the store can: a group commit) before anything the core
    /// held behind them runs. No step sees a channel whose write is still
    /// in flight: a second input for a peer in the round, or an input that
    /// may touch any channel (a command, a timer), waits for the next round.
    async fn run(mut self, mut receiver: InputReceiver, _end_signal: EndSignal) {
        self.rearm_timer();
        loop {
            let input = if !self.replay.is_empty() {
                self.replay.remove(0)
            } else {
                match receiver.next().await {
                    Some(input) => input,
                    None => break,
                }
            };
            if let Some(peer) = self.lane(&input) {
                let mut peers = VecSet::new();
                peers.insert(peer);
                self.handle(input).await;
                // Inputs still to replay came before any queued one.
                while !self.closed && self.replay.is_empty() {
                    // `Err`: nothing queued now (or the queue is gone).
                    let Ok(next) = receiver.try_recv() else { break };
                    match self.lane(&next) {
                        Some(peer) if peers.insert(peer) => self.handle(next).await,
                        _ => {
                            self.replay.push(next);
                            break;
                        }
                    }
                }
            } else {
                self.handle(input).await;
            }
            self.commit_round().await;
            if self.closed {
                break;
            }
            self.rearm_timer();
        }
        self.link.close();
    }

    /// The peer whose channels an input concerns, if it is one peer only.
    fn lane(&self, input: &Input) -> Option<NodeId> {
        let peer_of = |channel_id: &ChannelId| self.node.record(channel_id).map(|record| record.peer);
        match input {
            Input::PeerConnected(peer) | Input::PeerMessage(peer, _) | Input::PeerDisconnected { peer, .. } => {
                Some(*peer)
            }
            Input::Chain(event) => peer_of(event.channel_id()),
            Input::ChainQueryFailed { channel_id, .. }
            | Input::StatusChecked { channel_id, .. }
            | Input::SpenderChecked { channel_id, .. } => peer_of(channel_id),
            Input::Command(_)
            | Input::PeerUnavailable { .. }
            | Input::WalletCells { .. }
            | Input::Timer { .. }
            | Input::Poll
            | Input::Tombstones(_)
            | Input::PublishedCellDeps { .. } => None,
        }
    }

    /// Whether `input`'s answer depends on the closed flows' tombstones while
    /// they are not in yet: a call or a peer message naming a channel the
    /// node does not know (the core's [`Node::awaits_tombstones`]), or a list
    /// of every channel. Anything about a live flow — `pendingFundings()`, a
    /// submit after the wallet's redirect — goes ahead.
    fn needs_tombstones(&self, input: &Input) -> bool {
        if self.node.tombstones_restored() {
            return false;
        }
        let channel_id = match input {
            Input::Command(Command::List { .. } | Command::Backup { .. } | Command::Import { .. }) => return true,
            Input::Command(
                Command::Submit { channel_id, .. }
                | Command::Abandon { channel_id, .. }
                | Command::Shutdown { channel_id, .. }
                | Command::ForceClose { channel_id, .. }
                | Command::Channel { channel_id, .. },
            ) => *channel_id,
            Input::PeerMessage(_, message) => message.channel_id(),
            _ => return false,
        };
        self.node.awaits_tombstones(&channel_id)
    }

    /// Restores the tombstones and replays what waited for them, in order,
    /// each in a round of its own after this one's writes. If they cannot be
    /// read, that is reported and the node goes on without them: a call about
    /// a closed flow then answers as for an unknown channel, which is better
    /// than never answering.
    fn restore_tombstones(&mut self, loaded: Result<LoadedRecords, StoreError>, now: u64) {
        let (records, mut unreadable) = match loaded {
            Ok(loaded) => (loaded.records, loaded.unreadable),
            Err(error) => {
                (self.on_event)(DriverEvent::StorageError(format!(
                    "reading the closed flows' records: {error}; calls about them answer as for unknown channels"
                )));
                (Vec::new(), Vec::new())
            }
        };
        let (actions, refused) = self.node.restore_tombstones(records, now);
        unreadable.extend(refused);
        self.node.note_unreadable(&unreadable);
        if !unreadable.is_empty() {
            (self.on_event)(DriverEvent::UnreadableRecords(unreadable));
        }
        self.run_background(actions);
        self.replay.append(&mut self.parked);
    }

    /// Commits the round's writes, runs what each released, and commits
    /// again while released work writes; a failed write is reported.
    async fn commit_round(&mut self) {
        while !self.writes.is_empty() {
            let writes = std::mem::take(&mut self.writes);
            let mut effects = driver_effects!(self);
            let (next, failures) = commit_writes(&mut self.node, &*self.store, &mut effects, writes).await;
            self.writes = next;
            for failure in failures {
                (self.on_event)(DriverEvent::StorageError(failure.to_string()));
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        if self.needs_tombstones(&input) {
            self.parked.push(input);
            return;
        }
        let now = self.platform.now_ms();
        match input {
            Input::Tombstones(loaded) => self.restore_tombstones(loaded, now),
            Input::PublishedCellDeps {
                funding_lock,
                commitment_lock,
            } => {
                let actions = self.node.published_cell_deps_found(&funding_lock, &commitment_lock);
                self.run_background(actions);
            }
            Input::Command(command) => self.command(command).await,
            Input::PeerConnected(peer) => {
                (self.on_event)(DriverEvent::PeerConnected(peer));
                let actions = self.node.peer_connected(&peer);
                self.run_background(actions);
            }
            Input::PeerDisconnected { peer, reason } => {
                self.node.peer_disconnected(&peer, now);
                (self.on_event)(DriverEvent::PeerDisconnected(reason));
            }
            Input::PeerUnavailable { reason, trouble } => {
                (self.on_event)(DriverEvent::PeerUnavailable {
                    reason: reason.clone(),
                    trouble,
                });
                if trouble == PeerTrouble::Mismatch {
                    let actions = self.node.peer_mismatch(&reason);
                    self.run_background(actions);
                }
            }
            Input::PeerMessage(peer, message) => {
                let actions = self.node.peer_message(&peer, message, now);
                self.run_background(actions);
            }
            Input::WalletCells { open, cells } => {
                // A new channel that cannot be stored fails its request in
                // the core (OpenFailure::Storage); the page hears of it there.
                let actions = self.node.wallet_cells(open, cells, now);
                self.run_background(actions);
            }
            Input::Chain(event) => {
                let actions = self.node.chain_event(event, now);
                self.run_background(actions);
            }
            Input::ChainQueryFailed {
                channel_id,
                query,
                error,
            } => {
                (self.on_event)(DriverEvent::ChainError(error));
                if self.node.retries_failed_query(&channel_id, &query) {
                    self.retry_query(channel_id, query);
                }
            }
            Input::StatusChecked {
                channel_id,
                tx_hash,
                result,
            } => {
                self.status_in_flight.remove(&tx_hash);
                match result {
                    Ok(report) => {
                        let event = ChainEvent::TxStatus {
                            channel_id,
                            tx_hash,
                            report,
                        };
                        let actions = self.node.chain_event(event, now);
                        self.run_background(actions);
                    }
                    Err(error) => (self.on_event)(DriverEvent::ChainError(error)),
                }
                self.poll_watched_txs();
            }
            Input::SpenderChecked { channel_id, result } => {
                self.spender_in_flight.remove(&channel_id);
                match result {
                    Ok(Some((tx, report))) => {
                        let event = ChainEvent::FundingSpent {
                            channel_id,
                            tx: CheckedTx(tx),
                            report,
                        };
                        let actions = self.node.chain_event(event, now);
                        self.run_background(actions);
                    }
                    Ok(None) => {}
                    Err(error) => (self.on_event)(DriverEvent::ChainError(error)),
                }
                self.poll_watched_txs();
            }
            Input::Timer { generation } => {
                if generation != self.timer_generation {
                    return;
                }
                self.timer = None;
                let actions = self.node.tick(now);
                self.run_background(actions);
            }
            Input::Poll => {
                // Timers of the core (deadlines, an acceptor's force closes) come due here too.
                let actions = self.node.tick(now);
                self.run_background(actions);
                self.recreate_if_deleted().await;
                // A round still under way (a slow chain) is not restarted.
                if self.poll_round.is_empty() {
                    self.poll_round = self.watched().collect();
                }
                self.poll_watched_txs();
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let now = self.platform.now_ms();
        // Deadlines first, so a late command meets an already aborted flow,
        // and their writes landed: a write that fails takes the abort back,
        // and the command must meet (and answer from) what storage holds.
        let actions = self.node.tick(now);
        self.run_background(actions);
        self.commit_round().await;
        match command {
            Command::Open { params, reply } => {
                let open = OpenId(self.next_open_id);
                self.next_open_id = self.next_open_id.wrapping_add(1);
                self.pending_opens.insert(open, reply);
                let give_up_at_ms = now.saturating_add(self.settings.connect_timeout_ms);
                let actions = self.node.request_open(open, params, give_up_at_ms, now);
                self.run_background(actions);
            }
            Command::Submit { channel_id, tx, reply } => {
                let result = match self.node.submit_signed_funding_tx(&channel_id, &tx, now) {
                    Ok((funding_tx_hash, actions)) => self
                        .run_actions(actions)
                        .await
                        .map(|()| Submitted {
                            funding_tx_hash,
                            // Held by the core, or sent to a peer that is gone.
                            queued: self.node.record(&channel_id).is_some_and(|r| r.commitment_signed_held)
                                || self.node.peer_is_connected(&channel_id) != Some(true),
                        })
                        .map_err(DriverError::from),
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::Abandon { channel_id, reply } => {
                let result = match self.node.abandon_channel(&channel_id, now) {
                    Ok(actions) => self.run_actions(actions).await.map_err(DriverError::from),
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::CancelTx {
                channel_id,
                fee_rate,
                reply,
            } => {
                let _ = reply.send(
                    self.node
                        .cancel_funding_tx(&channel_id, fee_rate)
                        .map_err(DriverError::from),
                );
            }
            Command::SubmitCancel { channel_id, tx, reply } => {
                let result = match self.node.submit_signed_cancel_tx(&channel_id, &tx, now) {
                    Ok((hash, actions)) => self
                        .run_actions(actions)
                        .await
                        .map(|()| hash)
                        .map_err(DriverError::from),
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown {
                channel_id,
                close_script,
                fee_rate,
                reply,
            } => {
                let result = match self.node.shutdown_channel(&channel_id, close_script, fee_rate, now) {
                    Ok(actions) => self.run_actions(actions).await.map_err(DriverError::from),
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::ForceClose { channel_id, reply } => {
                let result = match self.node.force_close_channel(&channel_id, now) {
                    Ok(actions) => self.run_actions(actions).await.map_err(DriverError::from),
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::Pending { reply } => {
                let _ = reply.send(Ok(self.pending_fundings()));
            }
            Command::Channel { channel_id, reply } => {
                let _ = reply.send(self.node.channel_asked(&channel_id).map_err(DriverError::from));
            }
            Command::List { reply } => {
                let _ = reply.send(Ok(self.node.channels()));
            }
            Command::Backup { reply } => {
                let _ = reply.send(Ok(self.node.backup_records()));
            }
            Command::Import { records, reply } => {
                let imported = self.node.import_records(records);
                // Each write on its own: one that fails takes back its own
                // channel (the core's rollback), not the ones after it.
                for write in imported.writes {
                    self.run_background(vec![write]);
                }
                self.commit_round().await;
                let mut outcome = ImportOutcome {
                    imported: Vec::new(),
                    skipped: imported.skipped,
                    other_keys_records: self.node.holds_other_keys_records(),
                };
                for id in imported.ids {
                    if self.node.record(&id).is_some() {
                        self.node.imported_over_unreadable(&id);
                        outcome.imported.push(id);
                    } else {
                        outcome
                            .skipped
                            .push((id, "it could not be stored (see the storage_error event)".into()));
                    }
                }
                let _ = reply.send(Ok(outcome));
            }
            Command::Close { reply } => {
                self.recreate_if_deleted().await;
                self.closed = true;
                self.link.close();
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// A database deleted behind the store is found by the next storage
    /// call, and a page with nothing to write makes none: its copy of every
    /// flow, keys and all, went with the page. One read at each poll, and
    /// at close, finds it; the database is made again at once.
    async fn recreate_if_deleted(&mut self) {
        if self.node.records_to_recreate().is_empty() {
            return;
        }
        if let Err(StoreError::Deleted(_)) = self.store.get(&Hash256([0; 32])).await {
            let outcome = super::recreate_deleted(&self.node, &*self.store).await;
            (self.on_event)(DriverEvent::StorageError(format!(
                "the database was deleted while this page ran{outcome}"
            )));
        }
    }

    /// Flows restored or running that have not reached a terminal state.
    fn pending_fundings(&self) -> Vec<PendingFunding> {
        self.node
            .channels()
            .into_iter()
            .filter(|view| !view.state.is_terminal())
            .filter_map(|view| {
                let record = self.node.record(&view.channel_id)?;
                let ext = record.external_funding.clone()?;
                let reserved_cells = record.own_cells.iter().map(|cell| cell.out_point.clone()).collect();
                Some(PendingFunding {
                    unsigned_funding_tx: ext.unsigned_funding_tx,
                    started_at_ms: ext.started_at_ms,
                    reserved_cells,
                    view,
                })
            })
            .collect()
    }

    /// The funding cells and txs the chain is asked about at each poll.
    fn watched(&self) -> impl Iterator<Item = Watch> {
        let cells = self.node.funding_cells_to_watch().into_iter();
        let txs = self.node.txs_to_watch().into_iter();
        cells
            .map(|(channel_id, out_point, lock)| Watch::Spender(channel_id, out_point, lock))
            .chain(txs.map(|(channel_id, tx_hash)| Watch::Status(channel_id, tx_hash)))
    }

    /// Asks about what the current round has not reached yet, while fewer
    /// than [`DriverSettings::max_polls_in_flight`] lookups are in flight.
    /// Called at each poll interval and after each answer. An item no longer
    /// watched by the time its turn comes is asked about anyway: the core
    /// ignores an answer it no longer needs, as it does a late one.
    fn poll_watched_txs(&mut self) {
        let in_flight = self.status_in_flight.len().saturating_add(self.spender_in_flight.len());
        let mut room = self.settings.max_polls_in_flight.saturating_sub(in_flight);
        while room > 0 {
            let Some(watch) = self.poll_round.pop_front() else {
                return;
            };
            let chain = self.chain.clone();
            let sender = self.sender.clone();
            match watch {
                Watch::Spender(channel_id, out_point, lock) => {
                    if !self.spender_in_flight.insert(channel_id) {
                        continue;
                    }
                    self.platform.spawn(Box::pin(async move {
                        let result = chain.spender(out_point, lock).await;
                        let _ = sender.unbounded_send(Input::SpenderChecked { channel_id, result });
                    }));
                }
                Watch::Status(channel_id, tx_hash) => {
                    if !self.status_in_flight.insert(tx_hash) {
                        continue;
                    }
                    self.platform.spawn(Box::pin(async move {
                        let result = chain.transaction_status(tx_hash).await;
                        let _ = sender.unbounded_send(Input::StatusChecked {
                            channel_id,
                            tx_hash,
                            result,
                        });
                    }));
                }
            }
            room -= 1;
        }
    }

    fn retry_query(&self, channel_id: ChannelId, query: ChainQuery) {
        let sender = self.sender.clone();
        let delay = self.platform.sleep(self.settings.chain_retry_ms);
        let chain = self.chain.clone();
        self.platform.spawn(Box::pin(async move {
            delay.await;
            if !sender.is_closed() {
                run_query(chain, sender, channel_id, query).await;
            }
        }));
    }

    /// Keeps one timer at the earliest time something is due, the core's
    /// [`Node::next_deadline`] (flow deadlines, open requests waiting for
    /// their peer). Re-read after every input; a timer for a time no longer
    /// due rings unheard.
    fn rearm_timer(&mut self) {
        let due = self.node.next_deadline();
        if due == self.timer {
            return;
        }
        self.timer = due;
        self.timer_generation = self.timer_generation.wrapping_add(1);
        let Some(at_ms) = due else {
            return;
        };
        let generation = self.timer_generation;
        let sender = self.sender.clone();
        let sleep = self.platform.sleep(at_ms.saturating_sub(self.platform.now_ms()));
        self.platform.spawn(Box::pin(async move {
            sleep.await;
            let _ = sender.unbounded_send(Input::Timer { generation });
        }));
    }

    /// Runs actions nobody is waiting on; their write joins the round's
    /// ([`Driver::commit_round`]), where a failure is reported.
    fn run_background(&mut self, actions: Vec<Action>) {
        let mut effects = driver_effects!(self);
        run_until_write(&mut effects, actions, &mut self.writes);
    }

    /// Runs actions a caller waits on: what earlier steps wrote lands
    /// first, then these, each write awaited.
    async fn run_actions(&mut self, actions: Vec<Action>) -> Result<(), PersistFailed> {
        self.commit_round().await;
        let mut effects = driver_effects!(self);
        execute(&mut self.node, &*self.store, &mut effects, actions).await
    }
}

async fn run_query(chain: Rc<dyn ChainClient>, sender: InputSender, channel_id: ChannelId, query: ChainQuery) {
    let input = match &query {
        ChainQuery::LiveCells { lock } => match chain.live_cells(lock.clone()).await {
            Ok(cells) => Input::Chain(ChainEvent::LiveCells { channel_id, cells }),
            Err(error) => Input::ChainQueryFailed {
                channel_id,
                query,
                error,
            },
        },
        ChainQuery::ResolveInputs { out_points } => match chain.resolve_out_points(out_points.clone()).await {
            Ok(cells) => Input::Chain(ChainEvent::ResolvedInputs {
                channel_id,
                out_points: out_points.clone(),
                cells,
            }),
            Err(error) => Input::ChainQueryFailed {
                channel_id,
                query,
                error,
            },
        },
        ChainQuery::SpenderOf { out_point, lock } => match chain.spender(out_point.clone(), lock.clone()).await {
            Ok(found) => Input::Chain(ChainEvent::SpenderOf {
                channel_id,
                out_point: out_point.clone(),
                spender: found.map(|(tx, report)| (CheckedTx(tx), report)),
            }),
            Err(error) => Input::ChainQueryFailed {
                channel_id,
                query,
                error,
            },
        },
        ChainQuery::InputsLive { out_points, at_tip } => match chain.cells_live(out_points.clone()).await {
            Ok(live) => Input::Chain(ChainEvent::InputsLive {
                channel_id,
                out_points: out_points.clone(),
                live,
                at_tip: *at_tip,
            }),
            Err(error) => Input::ChainQueryFailed {
                channel_id,
                query,
                error,
            },
        },
    };
    let _ = sender.unbounded_send(input);
}

struct DriverEffects<'a> {
    link: &'a Rc<dyn PeerLink>,
    chain: &'a Rc<dyn ChainClient>,
    platform: &'a Rc<dyn Platform>,
    sender: &'a InputSender,
    pending_opens: &'a mut VecMap<OpenId, Reply<(ChannelId, packed::Transaction)>>,
    on_event: &'a mut Box<dyn FnMut(DriverEvent)>,
    settings: &'a DriverSettings,
    sending: &'a Rc<RefCell<VecSet<Hash256>>>,
}

impl Effects for DriverEffects<'_> {
    fn send(&mut self, peer: NodeId, message: FiberMessage) {
        self.link.send(&peer, &message);
    }

    fn hand_out_unsigned_tx(
        &mut self,
        open: Option<OpenId>,
        channel_id: ChannelId,
        _temporary_channel_id: ChannelId,
        tx: packed::Transaction,
    ) {
        if let Some(reply) = open.and_then(|open| self.pending_opens.remove(&open)) {
            let _ = reply.send(Ok((channel_id, tx)));
        }
    }

    fn fetch_wallet_cells(&mut self, open: OpenId, lock: packed::Script) {
        let chain = self.chain.clone();
        let sender = self.sender.clone();
        self.platform.spawn(Box::pin(async move {
            let cells = chain.live_cells(lock).await;
            let _ = sender.unbounded_send(Input::WalletCells { open, cells });
        }));
    }

    fn open_failed(&mut self, open: OpenId, failure: OpenFailure) {
        if let Some(reply) = self.pending_opens.remove(&open) {
            let _ = reply.send(Err(failure.into()));
        }
    }

    /// Sends `tx`, again every `chain_retry_ms` while the failure is a
    /// passing one, until it lands or is refused. One loop per tx: the core
    /// asks again each time a poll finds the tx dropped, and a loop per ask
    /// would multiply the sends for as long as the page stays open.
    fn broadcast(&mut self, channel_id: ChannelId, tx: packed::Transaction) {
        let tx_hash = Hash256(crate::tx::parts::tx_hash(&tx));
        if !self.sending.borrow_mut().insert(tx_hash) {
            return;
        }
        let chain = self.chain.clone();
        let sender = self.sender.clone();
        let platform = self.platform.clone();
        let sending = self.sending.clone();
        let retry_ms = self.settings.chain_retry_ms;
        self.platform.spawn(Box::pin(async move {
            let refused = loop {
                // A node whose loop ended (closed) sends nothing more.
                if sender.is_closed() {
                    return;
                }
                match chain.send_transaction(tx.clone()).await {
                    Ok(_) => break None,
                    Err(error) if error.is_transient() => platform.sleep(retry_ms).await,
                    Err(error) => break Some(error),
                }
            };
            sending.borrow_mut().remove(&tx_hash);
            if let Some(error) = refused {
                let event = ChainEvent::BroadcastFailed {
                    channel_id,
                    tx_hash,
                    reason: error.to_string(),
                };
                let _ = sender.unbounded_send(Input::Chain(event));
            }
        }));
    }

    fn query_chain(&mut self, channel_id: ChannelId, query: ChainQuery) {
        let chain = self.chain.clone();
        let sender = self.sender.clone();
        self.platform
            .spawn(Box::pin(run_query(chain, sender, channel_id, query)));
    }

    fn emit(&mut self, event: Event) {
        (self.on_event)(DriverEvent::Flow(event));
    }
}

impl DriverHandle {
    /// Resolves when the loop has stopped: closed, or ended by a bug (a
    /// panic in a step). A host that serves peers must not keep listening
    /// with nothing behind it (the counterparty exits).
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + 'static {
        let ended = self.ended.clone();
        async move {
            let _ = ended.await;
        }
    }

    /// The sender adapters use to feed the loop.
    pub fn sender(&self) -> InputSender {
        self.sender.clone()
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .unbounded_send(Input::Command(command(reply)))
            .map_err(|_| DriverError::NodeClosed("the node is closed; open it again"))?;
        answer
            .await
            .map_err(|_| DriverError::NodeClosed("the node closed before answering"))?
    }

    /// Opens a channel; resolves once the unsigned funding tx is final and stored.
    pub async fn open_channel(
        &self,
        params: OpenChannelParams,
    ) -> Result<(ChannelId, packed::Transaction), DriverError> {
        self.ask(|reply| Command::Open { params, reply }).await
    }

    pub async fn submit_signed_funding_tx(
        &self,
        channel_id: ChannelId,
        tx: packed::Transaction,
    ) -> Result<Submitted, DriverError> {
        self.ask(|reply| Command::Submit { channel_id, tx, reply }).await
    }

    pub async fn abandon_channel(&self, channel_id: ChannelId) -> Result<(), DriverError> {
        self.ask(|reply| Command::Abandon { channel_id, reply }).await
    }

    /// The unsigned cancel tx of a flow that can no longer be abandoned.
    pub async fn cancel_funding_tx(
        &self,
        channel_id: ChannelId,
        fee_rate: Option<u64>,
    ) -> Result<packed::Transaction, DriverError> {
        self.ask(|reply| Command::CancelTx {
            channel_id,
            fee_rate,
            reply,
        })
        .await
    }

    /// The wallet's signed cancel tx; resolves once it is checked and handed
    /// to the send loop, with its hash.
    pub async fn submit_signed_cancel_tx(
        &self,
        channel_id: ChannelId,
        tx: packed::Transaction,
    ) -> Result<Hash256, DriverError> {
        self.ask(|reply| Command::SubmitCancel { channel_id, tx, reply }).await
    }

    /// Fiber's `shutdown_channel`: a cooperative close; resolves once our
    /// `Shutdown` is stored and sent.
    pub async fn shutdown_channel(
        &self,
        channel_id: ChannelId,
        close_script: Option<packed::Script>,
        fee_rate: Option<u64>,
    ) -> Result<(), DriverError> {
        self.ask(|reply| Command::Shutdown {
            channel_id,
            close_script,
            fee_rate,
            reply,
        })
        .await
    }

    /// A unilateral close; resolves once our commitment is stored as sent.
    pub async fn force_close_channel(&self, channel_id: ChannelId) -> Result<(), DriverError> {
        self.ask(|reply| Command::ForceClose { channel_id, reply }).await
    }

    pub async fn pending_fundings(&self) -> Result<Vec<PendingFunding>, DriverError> {
        self.ask(|reply| Command::Pending { reply }).await
    }

    pub async fn channel(&self, channel_id: ChannelId) -> Result<Option<ChannelView>, DriverError> {
        self.ask(|reply| Command::Channel { channel_id, reply }).await
    }

    pub async fn channels(&self) -> Result<Vec<ChannelView>, DriverError> {
        self.ask(|reply| Command::List { reply }).await
    }

    /// Every record worth a backup: all but those whose keys were wiped.
    pub async fn backup(&self) -> Result<Vec<ChannelRecord>, DriverError> {
        self.ask(|reply| Command::Backup { reply }).await
    }

    /// Takes the channels of a backup this node does not hold.
    pub async fn import(&self, records: Vec<ChannelRecord>) -> Result<ImportOutcome, DriverError> {
        self.ask(|reply| Command::Import { records, reply }).await
    }

    /// Stops the loop and resolves once it has ended: whatever the round
    /// under way wrote has landed, and nothing of this driver runs after.
    pub async fn close(&self) -> Result<(), DriverError> {
        self.ask(|reply| Command::Close { reply }).await?;
        self.ended().await;
        Ok(())
    }
}
