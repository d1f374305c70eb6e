//! Persistence as LDK's `ChannelMonitor` updates work: every record write is
//! an update with an id, and the core holds whatever came after it until the
//! runtime says how the write went — [`Node::persisted`] releases the held
//! actions, [`Node::persist_failed`] takes the step back. The runtime never
//! edits the core's memory; the core decides what a failed write means.

use super::Node;
use crate::flow::channel::Channel;
use crate::flow::record::ChannelRecord;
use crate::flow::Action;
use crate::primitives::ChannelId;
use crate::store::StoreError;

use super::OpenFailure;

/// Names one record write ([`Action::Persist`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpdateId(pub u64);

/// How to take back a step whose write failed.
pub(super) enum Rollback {
    /// The write only restated what memory holds (a schema upgrade at restore).
    Keep,
    /// The channel was never stored: it goes.
    Remove(ChannelId),
    /// Back to the channel as it was before the step (stored then).
    Restore { current: ChannelId, previous: Box<Channel> },
}

impl Node {
    /// An [`Action::Persist`] of `record`, with the way back should it fail.
    pub(super) fn persist_action(
        &mut self,
        record: ChannelRecord,
        replaces: Option<ChannelId>,
        rollback: Rollback,
    ) -> Action {
        let update = UpdateId(self.next_update);
        self.next_update = self.next_update.wrapping_add(1);
        self.rollbacks.insert(update, rollback);
        Action::Persist {
            update,
            record: Box::new(record),
            replaces,
        }
    }

    /// Returns `actions` up to their first persist and holds the rest until
    /// that write is confirmed. Applying it again to a list that already went
    /// through it appends to the same hold, so the order is kept.
    pub(super) fn hold_after_persist(&mut self, mut actions: Vec<Action>) -> Vec<Action> {
        let Some(at) = actions.iter().position(|a| matches!(a, Action::Persist { .. })) else {
            return actions;
        };
        let rest = actions.split_off(at.saturating_add(1));
        if let Some(Action::Persist { update, .. }) = actions.last() {
            let update = *update;
            match self.held.get_mut(&update) {
                Some(held) => held.extend(rest),
                None => {
                    self.held.insert(update, rest);
                }
            }
        }
        actions
    }

    /// The channel write `update` concerns, if it was stored before it.
    fn stored_channel(&self, update: UpdateId) -> Option<ChannelId> {
        match self.rollbacks.get(&update)? {
            Rollback::Restore { previous, .. } => Some(previous.id()),
            Rollback::Keep | Rollback::Remove(_) => None,
        }
    }

    /// Everything held behind `update`, in order, with what each write held
    /// there holds in turn (a list held once and then held again behind an
    /// earlier write, as a boot's upgrades and deadline aborts are).
    fn held_behind(&mut self, update: UpdateId) -> Vec<Action> {
        let mut held = self.held.remove(&update).unwrap_or_default();
        let mut at = 0;
        while at < held.len() {
            if let Action::Persist { update: later, .. } = &held[at] {
                if let Some(more) = self.held.remove(later) {
                    let after = at.saturating_add(1);
                    held.splice(after..after, more);
                }
            }
            at = at.saturating_add(1);
        }
        held
    }

    /// The write `update` is durable: what it held may run now (up to the
    /// next write, which is held for in turn).
    pub fn persisted(&mut self, update: UpdateId) -> Vec<Action> {
        self.rollbacks.remove(&update);
        let held = self.held.remove(&update).unwrap_or_default();
        self.hold_after_persist(held)
    }

    /// The write `update` did not land (`error`): nothing it held runs, and
    /// every channel it or a held write concerned is back as storage has it,
    /// so memory never runs ahead of what is durable. An open request whose
    /// answer was held (a new channel never stored, a hand-out, a failure)
    /// fails with the storage error instead: the answer is its
    /// [`Action::OpenFailed`], the only kind of action returned.
    pub fn persist_failed(&mut self, update: UpdateId, error: &StoreError) -> Vec<Action> {
        let held = self.held_behind(update);
        // The answers the dropped actions carried: the step that gave them
        // took the request out of `opens_in_flight`, and nothing would
        // answer it again. Each follows the write of its channel's step; a
        // channel stored before that step stays, and the answer names it.
        let mut stored = self.stored_channel(update);
        let mut answers = Vec::new();
        for action in &held {
            let open = match action {
                Action::Persist { update, .. } => {
                    stored = self.stored_channel(*update);
                    continue;
                }
                Action::HandOutUnsignedTx { open: Some(open), .. } | Action::OpenFailed { open, .. } => *open,
                _ => continue,
            };
            let failure = match stored {
                Some(channel_id) => OpenFailure::NotSaved {
                    channel_id,
                    error: error.clone(),
                },
                None => OpenFailure::Storage(error.clone()),
            };
            answers.push(Action::OpenFailed { open, failure });
        }
        let later = held.iter().filter_map(|action| match action {
            Action::Persist { update, .. } => Some(*update),
            _ => None,
        });
        let updates: Vec<UpdateId> = std::iter::once(update).chain(later).collect();
        // Latest first: a channel written twice ends as it was before both.
        for update in updates.into_iter().rev() {
            match self.rollbacks.remove(&update) {
                Some(Rollback::Keep) | None => {}
                Some(Rollback::Remove(id)) => {
                    let in_flight = self
                        .channels
                        .remove(&id)
                        .and_then(|channel| self.opens_in_flight.remove(&channel.record.temporary_channel_id));
                    if let Some(open) = in_flight {
                        answers.push(Action::OpenFailed {
                            open: open.id,
                            failure: OpenFailure::Storage(error.clone()),
                        });
                    }
                }
                Some(Rollback::Restore { current, previous }) => {
                    let mut previous = *previous;
                    if let Some(failed) = self.channels.remove(&current) {
                        previous.restored_after_failed_write(&failed);
                    }
                    self.channels.insert(previous.id(), previous);
                }
            }
        }
        answers
    }
}
