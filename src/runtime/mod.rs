//! Carries out the core's actions, in order, never running one before the
//! persist ahead of it has completed. Writes of different steps may be
//! committed together (a group commit, [`commit_writes`]).

use crate::flow::record::ChannelRecord;
use crate::flow::{Action, ChainQuery, Event, Node, OpenFailure, OpenId, UpdateId};
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
    let mut writes = Vec::new();
    run_until_write(effects, actions, &mut writes);
    // One list holds at most one write at a time (the core holds the rest).
    while !writes.is_empty() {
        let (next, failures) = commit_writes(node, store, effects, writes).await;
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        writes = next;
    }
    Ok(())
}

/// A write the core asked for ([`Action::Persist`]), waiting to be
/// committed, with the actions that followed it in its list.
pub struct PendingWrite {
    update: UpdateId,
    record: Box<ChannelRecord>,
    replaces: Option<ChannelId>,
    then: Vec<Action>,
}

/// Runs `actions` in order up to their first write, which joins `writes`
/// with everything after it: none of that runs before the write is durable.
pub fn run_until_write<E: Effects>(effects: &mut E, actions: Vec<Action>, writes: &mut Vec<PendingWrite>) {
    let mut actions = actions.into_iter();
    while let Some(action) = actions.next() {
        match action {
            Action::Persist {
                update,
                record,
                replaces,
            } => {
                writes.push(PendingWrite {
                    update,
                    record,
                    replaces,
                    then: actions.collect(),
                });
                return;
            }
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
}

/// Commits `writes` in one store operation ([`Store::put_all`]: a group
/// commit where the store can), then tells the core how each went, in
/// order. A durable write releases what waited for it; the writes that
/// released work asks for are returned, to be committed next. A failed
/// write is taken back by the core ([`Node::persist_failed`]: only its
/// answers to open requests run) and returned as a failure.
pub async fn commit_writes<S: Store, E: Effects>(
    node: &mut Node,
    store: &S,
    effects: &mut E,
    writes: Vec<PendingWrite>,
) -> (Vec<PendingWrite>, Vec<PersistFailed>) {
    let records: Vec<(&ChannelRecord, Option<&ChannelId>)> =
        writes.iter().map(|w| (&*w.record, w.replaces.as_ref())).collect();
    let mut outcomes = store.put_all(&records).await.into_iter();
    let (mut next, mut failures) = (Vec::new(), Vec::new());
    for write in writes {
        // A store that answers fewer writes than it was given has not made
        // the rest durable.
        let outcome = outcomes
            .next()
            .unwrap_or_else(|| Err(StoreError::Aborted("the store did not answer this write".into())));
        match outcome {
            Ok(()) => {
                let mut released = write.then;
                released.extend(node.persisted(write.update));
                run_until_write(effects, released, &mut next);
            }
            Err(error) => {
                for answer in node.persist_failed(write.update, &error) {
                    if let Action::OpenFailed { open, failure } = answer {
                        effects.open_failed(open, failure);
                    }
                }
                failures.push(PersistFailed {
                    channel_id: write.record.channel_id,
                    error,
                });
            }
        }
    }
    if failures.iter().any(|f| matches!(f.error, StoreError::Deleted(_))) {
        let outcome = recreate_deleted(node, store).await;
        for failure in &mut failures {
            if let StoreError::Deleted(reason) = &mut failure.error {
                reason.push_str(&outcome);
            }
        }
    }
    (next, failures)
}

/// The storage was deleted behind the store: it is made again with every
/// record the node holds, which the failed writes just took back to what
/// was durable, and those it refused as another node key's. The page's
/// memory may hold the only copy of a funded channel's keys. Says how that
/// went, to end the failures' reason.
pub(crate) async fn recreate_deleted<S: Store>(node: &Node, store: &S) -> String {
    let records = node.records_to_recreate();
    match store.recreate(&records).await {
        Ok(()) => format!(
            "; it was created again with {} flow{} this page held",
            records.len(),
            if records.len() == 1 { "" } else { "s" }
        ),
        Err(error) => format!("; creating it again failed: {error}"),
    }
}

pub mod driver;
// Two drivers linked in-process: for tests and the in-page harness.
#[cfg(feature = "simulator")]
pub mod loopback;

pub use driver::{
    inbox, start, Command, Driver, DriverError, DriverEvent, DriverHandle, DriverParts, DriverSettings, ImportOutcome,
    Input, InputReceiver, InputSender, PeerLink, PeerTrouble, PendingFunding, Platform, Submitted,
};
