//! Persistence as LDK does it: every write is an update with an id; the core
//! holds what follows it until the runtime reports `persisted` or
//! `persist_failed`, and on a failure takes the step back itself.

mod common;

use common::*;
use fiber_funding::flow::{Action, ChannelState, Node, OpenFailure, OpenId, UpdateId};
use fiber_funding::store::StoreError;

fn unavailable() -> StoreError {
    StoreError::Unavailable("the disk went away".into())
}

fn persist_update(actions: &[Action]) -> UpdateId {
    match actions {
        [Action::Persist { update, .. }] => *update,
        other => panic!("expected exactly one write and nothing after it: {other:?}"),
    }
}

fn names(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|action| match action {
            Action::Persist { .. } => "Persist",
            Action::Send { message, .. } => message.name(),
            Action::Emit(_) => "Emit",
            Action::HandOutUnsignedTx { .. } => "HandOut",
            Action::FetchWalletCells { .. } => "FetchWalletCells",
            Action::OpenFailed { .. } => "OpenFailed",
            Action::Broadcast { .. } => "Broadcast",
            Action::QueryChain { .. } => "QueryChain",
        })
        .collect()
}

/// A lone initiator connected to its peer, its wallet cells at hand.
fn opening_node(world: &World) -> (Node, OpenId, Vec<Action>) {
    let mut node = lone_initiator(world);
    let params = world.open_params(1000);
    let cells = world.live_cells(&params.funding_lock_script);
    node.peer_connected(&params.pubkey);
    let open = OpenId(1);
    let now = world.now_ms;
    node.request_open(open, params, now + OPEN_WAIT_MS, now);
    let actions = node.wallet_cells(open, Ok(cells), now);
    (node, open, actions)
}

#[test]
fn what_follows_a_write_waits_for_it_to_be_confirmed() {
    let world = World::new(Setup::default());
    let (mut node, _, actions) = opening_node(&world);
    let update = persist_update(&actions);
    let released = node.persisted(update);
    assert_eq!(names(&released), ["OpenChannel", "Emit"]);
    assert!(node.persisted(update).is_empty(), "released once");
}

#[test]
fn a_failed_first_write_leaves_no_channel_behind() {
    let world = World::new(Setup::default());
    let (mut node, open, actions) = opening_node(&world);
    let update = persist_update(&actions);
    assert_eq!(node.channels().len(), 1);
    let full = StoreError::QuotaExceeded("no room".into());
    let answers = node.persist_failed(update, &full);
    // The core answers the open itself: the runtime only forwards it.
    assert!(
        matches!(
            answers.as_slice(),
            [Action::OpenFailed { open: answered, failure: OpenFailure::Storage(error) }]
                if *answered == open && *error == full
        ),
        "{answers:?}"
    );
    assert!(node.channels().is_empty(), "a channel never stored is gone");
    assert_eq!(node.opened_channel(open), None);
    assert!(node.persisted(update).is_empty(), "nothing held survives the failure");
}

#[test]
fn a_failed_write_takes_the_step_back_and_drops_what_it_held() {
    let mut world = world_at_the_signer();
    let (channel_id, signed) = world.user.signed_in_url.clone().expect("handed out");
    let before = world.initiator().channel(&channel_id).unwrap();
    let now = world.now_ms;
    let node = &mut world.nodes[INITIATOR].node;
    let (_, actions) = node.submit_signed_funding_tx(&channel_id, &signed, now).unwrap();
    let update = persist_update(&actions);
    assert!(node.channel(&channel_id).unwrap().signed_submitted);
    assert!(node.persist_failed(update, &unavailable()).is_empty());
    let after = node.channel(&channel_id).unwrap();
    assert_eq!(after, before, "memory is back to what storage holds");
    // The same submit again works, as it would after a reload.
    let (_, actions) = node.submit_signed_funding_tx(&channel_id, &signed, now).unwrap();
    let released = node.persisted(persist_update(&actions));
    assert!(names(&released).contains(&"CommitmentSigned"), "{:?}", names(&released));
}

/// Two flows whose unsigned txs were handed out and never signed.
fn two_flows_handed_out() -> (World, Vec<fiber_funding::primitives::ChannelId>) {
    let mut world = World::new(Setup::two_flows());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run();
    world.open(1000).unwrap();
    world.run();
    let handed_out: Vec<_> = world.handed_out.iter().map(|(id, _)| *id).collect();
    assert_eq!(handed_out.len(), 2);
    (world, handed_out)
}

#[test]
fn a_failed_write_also_takes_back_the_writes_held_behind_it() {
    // Two flows handed out, both past their deadline at the same tick.
    let (mut world, handed_out) = two_flows_handed_out();
    let states =
        |node: &Node| -> Vec<ChannelState> { handed_out.iter().map(|id| node.channel(id).unwrap().state).collect() };
    let before = states(world.initiator());
    let late = world.now_ms + TIMEOUT_MS + 1;
    let node = &mut world.nodes[INITIATOR].node;
    let actions = node.tick(late);
    let first = persist_update(&actions);
    assert!(
        states(node).iter().all(|s| matches!(s, ChannelState::Closed(_))),
        "both aborted in memory"
    );
    assert!(node.persist_failed(first, &unavailable()).is_empty());
    assert_eq!(states(node), before, "neither abort is in memory without its write");
}

/// A boot writes a record it upgraded first, and the deadlines it finds
/// passed abort their flows behind that write, each abort's write held
/// behind the one before. The boot write fails (a full quota): only the
/// writes held directly behind it were taken back, so the second abort
/// stayed in memory with no write ever made for it, and its `TxAbort`
/// and event were never released.
#[test]
fn a_failed_boot_write_takes_back_every_write_held_behind_it_however_deep() {
    let (world, handed_out) = two_flows_handed_out();
    let mut records: Vec<_> = handed_out
        .iter()
        .map(|id| world.stored_record(INITIATOR, id).unwrap())
        .collect();
    // Written before anything else at this boot: an earlier schema's
    // record gets its key check.
    records[0].key_check = None;
    let mut node = lone_initiator(&world);
    let late = world.now_ms + TIMEOUT_MS + 1;
    let (actions, errors) = node.restore(records, late);
    assert!(errors.is_empty(), "{errors:?}");
    let first = persist_update(&actions);
    assert!(node.persist_failed(first, &unavailable()).is_empty());
    for id in &handed_out {
        let state = node.channel(id).unwrap().state;
        assert!(
            !matches!(state, ChannelState::Closed(_)),
            "{id} is aborted in memory, not in storage: {state:?}"
        );
    }
    // The next tick aborts both again, each with its write.
    let writes = node
        .tick(late)
        .iter()
        .filter(|a| matches!(a, Action::Persist { .. }))
        .count();
    assert_eq!(writes, 1, "the first write, the second held behind it");
}

/// The write of the step that hands the unsigned tx out fails. The step is
/// taken back and its hand-out dropped, and with it the answer to the
/// user's open request: left so, `openChannelWithExternalFunding` would
/// never settle. The request is answered with the storage failure, naming
/// the channel: it was opened with the peer and stays stored (it shows in
/// `pendingFundings()` once its tx is final again).
#[test]
fn an_open_whose_hand_out_write_fails_is_answered_with_the_failure() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    let open = OpenId(1);
    // The tx is handed out once it is final and the acceptor's signature of
    // our commitment is verified: fail the write of the step taking it.
    world.run_until_queued_from(ACCEPTOR, "CommitmentSigned");
    assert!(world.handed_out.is_empty());
    let sink = world.deliver_with_the_write_failing(ACCEPTOR, "CommitmentSigned");
    // The channel was opened with the peer and is stored: the answer names
    // it, and does not say that nothing was sent.
    let [(answered, Some(failure))] = sink.open_answers.as_slice() else {
        panic!("one answer: {:?}", sink.open_answers);
    };
    assert_eq!(*answered, open);
    let OpenFailure::NotSaved { channel_id, .. } = failure else {
        panic!("{failure:?}");
    };
    assert!(
        world.stored_record(INITIATOR, channel_id).is_some(),
        "the flow named is stored"
    );
    let message = failure.to_string();
    assert!(message.contains(&channel_id.to_string()), "{message}");
    assert!(!message.contains("nothing was sent"), "{message}");
}
