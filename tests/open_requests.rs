//! The open flow in the core: an open request waits for its peer, asks for
//! the wallet's cells, and ends in the unsigned tx or a named failure — all
//! decided by `Node`, which the runtime only forwards.

mod common;

use common::*;
use fiber_funding::flow::{Action, FlowError, Node, OpenFailure, OpenId};
use fiber_funding::primitives::NodeId;
use fiber_funding::wire::FiberMessage;

fn failure_of(actions: &[Action], open: OpenId) -> Option<&OpenFailure> {
    actions.iter().find_map(|action| match action {
        Action::OpenFailed { open: id, failure } if *id == open => Some(failure),
        _ => None,
    })
}

fn asks_for_cells(actions: &[Action], open: OpenId) -> bool {
    actions
        .iter()
        .any(|action| matches!(action, Action::FetchWalletCells { open: id, .. } if *id == open))
}

#[test]
fn an_open_waits_for_its_peer_then_asks_for_the_wallets_cells() {
    let world = World::new(Setup::default());
    let mut node = lone_initiator(&world);
    let params = world.open_params(1000);
    let peer = params.pubkey;
    let now = world.now_ms;
    let open = OpenId(1);

    let actions = node.request_open(open, params, now + OPEN_WAIT_MS, now);
    assert!(
        actions.is_empty(),
        "nothing happens before the peer is there: {actions:?}"
    );
    assert_eq!(
        node.next_deadline(),
        Some(now + OPEN_WAIT_MS),
        "the core wakes up to give up"
    );

    let actions = node.peer_connected(&peer);
    assert!(asks_for_cells(&actions, open), "{actions:?}");
    assert_eq!(
        node.next_deadline(),
        None,
        "a request looking up its cells no longer gives up"
    );
}

#[test]
fn an_open_whose_peer_never_connects_fails_as_unreachable_at_its_time() {
    let world = World::new(Setup::default());
    let mut node = lone_initiator(&world);
    let params = world.open_params(1000);
    let peer = params.pubkey;
    let now = world.now_ms;
    let open = OpenId(7);
    node.request_open(open, params, now + OPEN_WAIT_MS, now);

    assert!(failure_of(&node.tick(now + OPEN_WAIT_MS - 1), open).is_none());
    let actions = node.tick(now + OPEN_WAIT_MS);
    assert_eq!(
        failure_of(&actions, open),
        Some(&OpenFailure::PeerUnreachable {
            peer,
            waited_s: OPEN_WAIT_MS / 1000
        })
    );
    assert!(node.tick(now + 2 * OPEN_WAIT_MS).is_empty(), "it fails once");
}

#[test]
fn an_open_to_another_node_than_the_connected_one_fails_as_a_mismatch() {
    let world = World::new(Setup::default());
    let mut node = lone_initiator(&world);
    let params = world.open_params(1000);
    let now = world.now_ms;
    let stranger: NodeId = world.nodes[INITIATOR].id();
    node.peer_connected(&stranger);
    let actions = node.request_open(OpenId(2), params, now + OPEN_WAIT_MS, now);
    let failure = failure_of(&actions, OpenId(2)).expect("fails at once");
    assert!(matches!(failure, OpenFailure::PeerMismatch(reason) if reason.contains(&stranger.to_string())));
}

#[test]
fn a_link_that_reached_the_wrong_node_fails_the_waiting_opens() {
    let world = World::new(Setup::default());
    let mut node = lone_initiator(&world);
    let now = world.now_ms;
    node.request_open(OpenId(3), world.open_params(1000), now + OPEN_WAIT_MS, now);
    let actions = node.peer_mismatch("the node at ws://x is not the one asked for");
    assert!(matches!(
        failure_of(&actions, OpenId(3)),
        Some(OpenFailure::PeerMismatch(_))
    ));
    assert!(node.tick(now + OPEN_WAIT_MS).is_empty(), "nothing is left waiting");
}

#[test]
fn parameters_the_user_got_wrong_fail_at_once_without_waiting() {
    let world = World::new(Setup::default());
    let mut node = lone_initiator(&world);
    let now = world.now_ms;
    let mut params = world.open_params(1000);
    params.funding_amount = 0;
    let actions = node.request_open(OpenId(4), params, now + OPEN_WAIT_MS, now);
    assert!(matches!(
        failure_of(&actions, OpenId(4)),
        Some(OpenFailure::Flow(FlowError::InvalidParams { .. }))
    ));
    assert_eq!(node.next_deadline(), None);
}

#[test]
fn the_hand_out_names_its_request() {
    let world = world_at_the_signer();
    assert_eq!(world.handed_out_to, [Some(OpenId(1))]);
    assert_eq!(world.initiator().opened_channel(OpenId(1)), None, "answered once");
}

#[test]
fn a_flow_restored_before_its_hand_out_hands_out_to_nobody() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    // The page reloads before the acceptor answered: the request is gone.
    world.restart(INITIATOR);
    world.run();
    assert_eq!(world.handed_out_to, [None]);
    assert!(world.open_failures.is_empty());
}

#[test]
fn a_channel_the_peer_refuses_fails_its_open_as_refused() {
    // The acceptor has no cells for its reserve, so it refuses the open.
    let mut world = World::new(Setup {
        acceptor_cells_ckb: Vec::new(),
        ..Setup::default()
    });
    world.open(1000).unwrap();
    world.run();
    assert!(world.handed_out.is_empty());
    match world.open_failures.as_slice() {
        [(OpenId(1), OpenFailure::Refused(reason))] => assert!(!reason.is_empty()),
        other => panic!("expected the open refused: {other:?}"),
    }
}

/// A lone initiator whose open sent `OpenChannel` to a connected peer that
/// never answers.
fn open_to_a_silent_peer(world: &World, open: OpenId) -> (Node, NodeId) {
    let mut node = lone_initiator(world);
    let params = world.open_params(1000);
    let peer = params.pubkey;
    let cells = world.live_cells(&params.funding_lock_script);
    let now = world.now_ms;
    node.peer_connected(&peer);
    node.request_open(open, params, now + OPEN_WAIT_MS, now);
    let actions = node.wallet_cells(open, Ok(cells), now);
    let write = actions
        .iter()
        .find_map(|action| match action {
            Action::Persist { update, .. } => Some(*update),
            _ => None,
        })
        .expect("the new channel is stored first");
    let sent = node.persisted(write);
    assert!(
        sent.iter().any(|a| matches!(
            a,
            Action::Send {
                message: FiberMessage::OpenChannel(_),
                ..
            }
        )),
        "{sent:?}"
    );
    (node, peer)
}

#[test]
fn an_open_whose_connected_peer_stays_silent_fails_as_unreachable_and_aborts() {
    let world = World::new(Setup::default());
    let open = OpenId(5);
    let (mut node, peer) = open_to_a_silent_peer(&world, open);
    let now = world.now_ms;
    assert_eq!(
        node.next_deadline(),
        Some(now + OPEN_WAIT_MS),
        "the core wakes up to give up"
    );
    assert!(failure_of(&node.tick(now + OPEN_WAIT_MS - 1), open).is_none());

    // The abort is stored before anyone hears of it: the peer's TxAbort and
    // the request's failure both wait for the write.
    let actions = node.tick(now + OPEN_WAIT_MS);
    let write = match actions.as_slice() {
        [Action::Persist { update, .. }] => *update,
        other => panic!("expected the abort's write alone first: {other:?}"),
    };
    let released = node.persisted(write);
    assert_eq!(
        failure_of(&released, open),
        Some(&OpenFailure::PeerSilent {
            peer,
            waited_s: OPEN_WAIT_MS / 1000
        })
    );
    assert!(
        released.iter().any(|a| matches!(
            a,
            Action::Send {
                message: FiberMessage::TxAbort(_),
                ..
            }
        )),
        "{released:?}"
    );
    let channels = node.channels();
    assert!(
        matches!(channels.as_slice(), [c] if c.close_reason.as_deref().is_some_and(|r| r.contains("did not answer"))),
        "{channels:?}"
    );
    assert!(
        failure_of(&node.tick(now + 2 * OPEN_WAIT_MS), open).is_none(),
        "it fails once"
    );
}

#[test]
fn a_message_from_the_peer_restarts_the_silence_clock() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    // The acceptor answers late, but inside the window ...
    world.advance(OPEN_WAIT_MS - 1);
    while world.only_channel(INITIATOR).remote_funding_amount.is_none() {
        assert!(world.step(), "the AcceptChannel never came");
    }
    // ... and its next message takes as long again: more than one window
    // since the open, each gap inside one. The open goes on.
    world.advance(OPEN_WAIT_MS - 1);
    world.run();
    assert!(world.open_failures.is_empty(), "{:?}", world.open_failures);
    assert_eq!(world.handed_out_to, [Some(OpenId(1))]);
}
