//! Carries out the core's actions, in order, never running one before the
//! persist ahead of it has completed.

use crate::flow::{Action, ChainQuery, Event, Node, OpenFailure, OpenId};
use crate::primitives::{ChannelId, NodeId};
use crate::store::{Store, StoreError};
use crate::wire::FiberMessage;
use ckb_types::packed;

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

/// A persist that did not land; the channels it concerned were reloaded from
/// the store and the actions after it were dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not save channel {channel_id}: {error}")]
pub struct PersistFailed {
    pub channel_id: ChannelId,
    pub error: StoreError,
}

/// Runs `actions` against `store` and `effects`.
///
/// On a failed persist nothing after it runs, and every channel with a persist
/// still pending is reloaded from the store, so the node's memory never runs
/// ahead of what is durable.
pub async fn execute<S: Store, E: Effects>(
    node: &mut Node,
    store: &S,
    effects: &mut E,
    actions: Vec<Action>,
) -> Result<(), PersistFailed> {
    for (index, action) in actions.iter().enumerate() {
        match action {
            Action::Persist { record, replaces } => {
                if let Err(error) = store.put(record, replaces.as_ref()).await {
                    let channel_id = record.channel_id;
                    for pending in &actions[index..] {
                        if let Action::Persist { record, .. } = pending {
                            let durable = store.get(&record.channel_id).await.ok().flatten();
                            let durable = match (durable, &record.temporary_channel_id) {
                                (None, temporary) if *temporary != record.channel_id => {
                                    store.get(temporary).await.ok().flatten()
                                }
                                (durable, _) => durable,
                            };
                            node.reload_channel(&record.channel_id, durable);
                        }
                    }
                    return Err(PersistFailed { channel_id, error });
                }
            }
            Action::Send { peer, message } => effects.send(*peer, message.clone()),
            Action::HandOutUnsignedTx {
                open,
                channel_id,
                temporary_channel_id,
                unsigned_funding_tx,
            } => effects.hand_out_unsigned_tx(*open, *channel_id, *temporary_channel_id, unsigned_funding_tx.clone()),
            Action::FetchWalletCells { open, lock } => effects.fetch_wallet_cells(*open, lock.clone()),
            Action::OpenFailed { open, failure } => effects.open_failed(*open, failure.clone()),
            Action::Broadcast { channel_id, tx } => effects.broadcast(*channel_id, tx.clone()),
            Action::QueryChain { channel_id, query } => effects.query_chain(*channel_id, query.clone()),
            Action::Emit(event) => effects.emit(event.clone()),
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
    InputReceiver, InputSender, PeerLink, PeerTrouble, PendingFunding, Platform,
};
