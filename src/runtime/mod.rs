//! Carries out the core's actions, in order, never running one before the
//! persist ahead of it has completed.

use crate::flow::{Action, ChainQuery, Event, Node, OpenFailure, OpenId};
use crate::primitives::{ChannelId, NodeId};
use crate::store::{Store, StoreError};
use crate::wire::FiberMessage;
use ckb_types::packed;
use std::collections::VecDeque;

/// The I/O side of a node: each call hands work to an adapter (a socket, a
/// chain client, the JS page) and returns at once.
pub trait Effects {
    fn send(&mut self, peer: NodeId, message: FiberMessage);
    /// The unsigned tx of open request `open` (`None`: nobody asked in this
    /// session, e.g. a flow restored after a reload).
    fn hand_out_unsigned_tx(
        &mut self,
        open: Option<OpenId>,
        channel_id: ChannelId,
        temporary_channel_id: ChannelId,
        tx: packed::Transaction,
    );
    /// Looks up the wallet's live cells for open request `open`; the answer
    /// goes to [`Node::wallet_cells`].
    fn fetch_wallet_cells(&mut self, open: OpenId, lock: packed::Script);
    fn open_failed(&mut self, open: OpenId, failure: OpenFailure);
    fn broadcast(&mut self, channel_id: ChannelId, tx: packed::Transaction);
    fn query_chain(&mut self, channel_id: ChannelId, query: ChainQuery);
    fn emit(&mut self, event: Event);
}

/// A persist that did not land; the core took the step back
/// ([`Node::persist_failed`]) and nothing held behind it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not save channel {channel_id}: {error}")]
pub struct PersistFailed {
    pub channel_id: ChannelId,
    pub error: StoreError,
}

/// Runs `actions` against `store` and `effects`, in order. Each write is
/// awaited and its outcome told to the core: [`Node::persisted`] hands back
/// what waited for it, [`Node::persist_failed`] has the core take the step
/// back, and nothing after the failed write runs.
pub async fn execute<S: Store, E: Effects>(
    node: &mut Node,
    store: &S,
    effects: &mut E,
    actions: Vec<Action>,
) -> Result<(), PersistFailed> {
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Persist {
                update,
                record,
                replaces,
            } => match store.put(&record, replaces.as_ref()).await {
                Ok(()) => queue.extend(node.persisted(update)),
                Err(error) => {
                    // Only the core's answers to open requests run now.
                    for answer in node.persist_failed(update, &error) {
                        if let Action::OpenFailed { open, failure } = answer {
                            effects.open_failed(open, failure);
                        }
                    }
                    return Err(PersistFailed {
                        channel_id: record.channel_id,
                        error,
                    });
                }
            },
            Action::Send { peer, message } => effects.send(peer, message),
            Action::HandOutUnsignedTx {
                open,
                channel_id,
                temporary_channel_id,
                unsigned_funding_tx,
            } => effects.hand_out_unsigned_tx(open, channel_id, temporary_channel_id, unsigned_funding_tx),
            Action::FetchWalletCells { open, lock } => effects.fetch_wallet_cells(open, lock),
            Action::OpenFailed { open, failure } => effects.open_failed(open, failure),
            Action::Broadcast { channel_id, tx } => effects.broadcast(channel_id, tx),
            Action::QueryChain { channel_id, query } => effects.query_chain(channel_id, query),
            Action::Emit(event) => effects.emit(event),
        }
    }
    Ok(())
}

pub mod driver;
// Two drivers linked in-process: for tests and the in-page harness.
#[cfg(feature = "simulator")]
pub mod loopback;

pub use driver::{
    inbox, start, Command, Driver, DriverError, DriverEvent, DriverHandle, DriverParts, DriverSettings, Input,
    InputReceiver, InputSender, PeerLink, PeerTrouble, PendingFunding, Platform, Submitted,
};
