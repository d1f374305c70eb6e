//! The funding flow: a deterministic state machine per channel, for both the
//! initiator (the browser, funding externally) and the acceptor.
//!
//! Nothing in here does I/O, reads a clock or draws randomness. A [`Node`]
//! takes inputs — user commands, peer messages, chain observations, clock
//! ticks carrying `now_ms` — and returns an ordered list of [`Action`]s for a
//! runtime to carry out. Whenever a step changes a channel's record, the first
//! action is [`Action::Persist`]; a runtime must finish it before it runs the
//! actions after it (see [`crate::runtime`]).
//!
//! Every capacity, fee and size computed here uses checked arithmetic: the
//! amounts come from peers and chain nodes, and the release build must never
//! wrap (`clippy::arithmetic_side_effects` is denied in this module tree).
#![deny(clippy::arithmetic_side_effects)]

use ckb_types::packed;

use crate::chain::{CheckedTx, LiveCell, ResolvedCell, TxReport};
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::wire::FiberMessage;

#[cfg(feature = "acceptor")]
mod acceptor;
mod cancel;
mod channel;
mod closing;
pub mod config;
pub mod error;
mod initiator;
pub mod limits;
mod node;
pub mod record;
mod signing;
pub mod state;

pub use channel::ChannelView;
pub use closing::{CloseView, CommitmentView};
pub use config::{AcceptorConfig, NodeConfig, OpenChannelParams};
pub use error::{FlowError, Shortfall};
pub use node::{EntropySource, Imported, Node, OpenFailure, OpenId, UpdateId};
pub use record::{ChannelRecord, ExternalFundingPersistState, Role};
pub use state::ChannelState;

/// Something for the runtime to do, in the order given.
// Actions live for one step and are moved once; boxing messages would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    /// Write this record in one atomic operation (deleting the record filed
    /// under `replaces`, when the channel's id changed). Everything after this
    /// action depends on it being durable.
    /// The runtime answers with [`Node::persisted`] or
    /// [`Node::persist_failed`] under `update`; what follows the write is
    /// held in the core until then.
    Persist {
        update: UpdateId,
        record: Box<ChannelRecord>,
        replaces: Option<ChannelId>,
    },
    /// Send a message to a peer.
    Send { peer: NodeId, message: FiberMessage },
    /// The unsigned funding tx is final: give it to the caller of
    /// `open_channel_with_external_funding`, request `open` (`None` when the
    /// request is gone, e.g. the flow was restored after a reload).
    HandOutUnsignedTx {
        open: Option<OpenId>,
        channel_id: ChannelId,
        temporary_channel_id: ChannelId,
        unsigned_funding_tx: packed::Transaction,
    },
    /// Look up the wallet's live cells with `lock` for open request `open`;
    /// the answer goes to [`Node::wallet_cells`].
    FetchWalletCells { open: OpenId, lock: packed::Script },
    /// Open request `open` ended without an unsigned tx.
    OpenFailed { open: OpenId, failure: OpenFailure },
    /// Send this fully signed tx to the chain.
    Broadcast {
        channel_id: ChannelId,
        tx: packed::Transaction,
    },
    /// Ask the chain something; the answer comes back as a [`ChainEvent`].
    QueryChain { channel_id: ChannelId, query: ChainQuery },
    /// Tell the application.
    Emit(Event),
}

/// A read from the chain that a step needs. Its answer echoes the question,
/// and the core checks that it answers the one it is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainQuery {
    /// Live cells with this lock (all pages), for the acceptor's contribution.
    LiveCells { lock: packed::Script },
    /// The cells these out points refer to, through the hash-checked path:
    /// every input of the funding tx, ours and the peer's.
    ResolveInputs { out_points: Vec<packed::OutPoint> },
    /// Whether these out points are still live, asked at tip `at_tip`: the
    /// inputs of a funding tx that is not on chain (ours after an abort,
    /// every one while the flow can no longer give up), or the commitment
    /// cell after our claim of it was refused.
    InputsLive {
        out_points: Vec<packed::OutPoint>,
        at_tip: u64,
    },
    /// The committed tx that spent `out_point` (a cell locked by `lock`),
    /// found through the hash-checked path: asked before an aborted flow's
    /// keys are wiped, since a dead input of ours may be dead because the
    /// funding tx itself spent it; and about the commitment cell after our
    /// claim of it was refused (our claim, or the other side's?).
    SpenderOf {
        out_point: packed::OutPoint,
        lock: packed::Script,
    },
}

/// A chain observation fed back to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    LiveCells {
        channel_id: ChannelId,
        cells: Vec<LiveCell>,
    },
    /// The answer to [`ChainQuery::ResolveInputs`]: the out points asked
    /// for, and one entry per out point, in order; `None` when it does not exist.
    ResolvedInputs {
        channel_id: ChannelId,
        out_points: Vec<packed::OutPoint>,
        cells: Vec<Option<ResolvedCell>>,
    },
    /// The answer to [`ChainQuery::InputsLive`].
    InputsLive {
        channel_id: ChannelId,
        out_points: Vec<packed::OutPoint>,
        live: Vec<bool>,
        at_tip: u64,
    },
    /// The answer to [`ChainQuery::SpenderOf`]: the spending tx's hash and
    /// report, `None` while none is found.
    SpenderOf {
        channel_id: ChannelId,
        out_point: packed::OutPoint,
        spender: Option<(CheckedTx, TxReport)>,
    },
    /// Where a tx of [`Node::txs_to_watch`] stands, with the tip (the
    /// runtime polls them).
    TxStatus {
        channel_id: ChannelId,
        tx_hash: Hash256,
        report: TxReport,
    },
    /// The committed tx that spent a funded channel's funding cell (see
    /// [`Node::funding_cells_to_watch`]), read through the hash-checked path.
    FundingSpent {
        channel_id: ChannelId,
        tx: CheckedTx,
        report: TxReport,
    },
    /// A [`Action::Broadcast`] failed for good.
    BroadcastFailed {
        channel_id: ChannelId,
        /// The tx refused: a channel may have sent more than one.
        tx_hash: Hash256,
        reason: String,
    },
}

impl ChainEvent {
    /// The channel whose question this answers.
    pub fn channel_id(&self) -> &ChannelId {
        match self {
            Self::LiveCells { channel_id, .. }
            | Self::ResolvedInputs { channel_id, .. }
            | Self::InputsLive { channel_id, .. }
            | Self::SpenderOf { channel_id, .. }
            | Self::TxStatus { channel_id, .. }
            | Self::FundingSpent { channel_id, .. }
            | Self::BroadcastFailed { channel_id, .. } => channel_id,
        }
    }
}

/// What the application hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A channel moved to a new state.
    StateChanged {
        channel_id: ChannelId,
        temporary_channel_id: ChannelId,
        state: ChannelState,
        /// Why, when the new state is `Closed`.
        close_reason: Option<String>,
    },
    /// A peer message was refused; nothing changed.
    PeerMessageRejected {
        channel_id: ChannelId,
        peer: NodeId,
        message: &'static str,
        reason: String,
    },
    /// The chain refused the funding tx.
    FundingTxRejected { channel_id: ChannelId, reason: String },
    /// The node refused the user's cancel tx (a funding tx already in its
    /// pool or on chain spends the same inputs, say).
    CancelTxRejected { channel_id: ChannelId, reason: String },
    /// The funding tx has `confirmations` of the `required` ones (reported
    /// when the count changes; `required` of them make the channel ready).
    FundingConfirmations {
        channel_id: ChannelId,
        confirmations: u64,
        required: u64,
    },
    /// The chain refused a closing, commitment or claim tx; it is sent again
    /// on the next status poll that finds it unknown.
    CloseTxRejected { channel_id: ChannelId, reason: String },
    /// A flow that had aborted got funded after all (a signed tx it had
    /// handed out confirmed): the channel goes on, with its keys and the
    /// peer's commitment signature.
    FundingConfirmedAfterAbort {
        channel_id: ChannelId,
        funding_tx_hash: Hash256,
    },
    /// An aborted flow's funding tx can no longer confirm (one of our inputs
    /// was spent by another tx, and that is buried): its keys are wiped.
    AbortSettled { channel_id: ChannelId },
    /// A commitment tx of the channel is committed: a unilateral close (ours
    /// or the peer's). Our share can be claimed from `claimable_at_epoch`.
    CommitmentOnChain {
        channel_id: ChannelId,
        tx_hash: Hash256,
        holder_is_local: bool,
        claimable_at_epoch: u64,
    },
}
