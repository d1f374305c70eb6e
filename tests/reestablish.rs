//! What a (re)connection resends: only what is in flight. A page reload after
//! `ChannelReady` must not replay the funding collaboration at the initiator,
//! whose recovery state is gone, nor make either side refuse anything; a
//! close under way must still be brought up to date.

mod common;

use common::*;
use fiber_funding::flow::state::*;
use fiber_funding::flow::ChannelState;

/// Names of the messages node `from` sent since `mark` (an index into the sent log).
fn sent_since(world: &World, mark: usize, from: usize) -> Vec<&'static str> {
    world.sent_log[mark..]
        .iter()
        .filter(|(index, _)| *index == from)
        .map(|(_, message)| message.name())
        .collect()
}

#[test]
fn a_reload_after_channel_ready_resends_nothing_and_rejects_nothing() {
    let (mut world, channel_id) = ready_world();

    // A reconnection, then a reload of the page (the initiator rebuilt from
    // its store), then a restart of the counterparty.
    for index in [None, Some(INITIATOR), Some(ACCEPTOR)] {
        let mark = world.sent_log.len();
        match index {
            None => world.reconnect(),
            Some(index) => world.restart(index),
        }
        world.run();
        for node in [INITIATOR, ACCEPTOR] {
            assert_eq!(
                sent_since(&world, mark, node),
                Vec::<&str>::new(),
                "node {node} resent messages for a ready channel (after {index:?})"
            );
        }
        assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());
        assert_eq!(world.rejections(ACCEPTOR), Vec::<String>::new());
        assert_channel_ready(&world);
    }

    // A peer that still asks (upstream Fiber sends ReestablishChannel for
    // every channel) hears ChannelReady, nothing of the funding phases.
    let mark = world.sent_log.len();
    let ask = world.initiator().channel(&channel_id).unwrap();
    assert_eq!(ask.state, ChannelState::ChannelReady);
    world.inject(
        INITIATOR,
        fiber_funding::wire::FiberMessage::ReestablishChannel(fiber_funding::wire::ReestablishChannel {
            channel_id,
            local_commitment_number: 1,
            remote_commitment_number: 1,
        }),
    );
    world.run();
    // It asks back once (it had nothing in flight to ask about itself).
    assert_eq!(
        sent_since(&world, mark, ACCEPTOR)[..2],
        ["ReestablishChannel", "ChannelReady"]
    );
    for index in [INITIATOR, ACCEPTOR] {
        let sent = sent_since(&world, mark, index);
        assert!(
            sent.iter()
                .all(|name| ["ReestablishChannel", "ChannelReady"].contains(name)),
            "node {index} sent {sent:?}"
        );
    }
    assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());
    assert_eq!(world.rejections(ACCEPTOR), Vec::<String>::new());
}

#[test]
fn a_cooperative_close_under_way_is_still_resent_on_reconnection() {
    let (mut world, channel_id) = ready_world();
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR]
        .node
        .shutdown_channel(&channel_id, None, None, now)
        .unwrap();
    world.execute(INITIATOR, actions);
    // The Shutdown is lost with the connection.
    assert_eq!(world.drop_queued("Shutdown"), 1);

    let mark = world.sent_log.len();
    world.reconnect();
    world.run();
    assert!(
        sent_since(&world, mark, INITIATOR).contains(&"Shutdown"),
        "{:?}",
        sent_since(&world, mark, INITIATOR)
    );
    for index in [INITIATOR, ACCEPTOR] {
        match world.state(index, &channel_id) {
            Some(ChannelState::Closed(flags)) => assert!(flags.contains(CloseFlags::COOPERATIVE), "{flags:?}"),
            other => panic!("node {index}: {other:?}"),
        }
    }
    assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());
    assert_eq!(world.rejections(ACCEPTOR), Vec::<String>::new());
}

#[test]
fn once_the_funding_tx_is_final_only_the_signing_phase_is_resent() {
    let mut world = world_at_the_signer();
    let channel_id = world.only_channel(INITIATOR).channel_id;
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::SigningCommitment(
            SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT
        ))
    );

    let mark = world.sent_log.len();
    world.reconnect();
    world.run();
    // Both sides hold the final tx: neither replays the collaboration.
    let collaboration = ["OpenChannel", "AcceptChannel", "TxUpdate", "TxComplete"];
    for index in [INITIATOR, ACCEPTOR] {
        let sent = sent_since(&world, mark, index);
        assert!(
            !sent.iter().any(|name| collaboration.contains(name)),
            "node {index} resent {sent:?}"
        );
    }
    // The acceptor's commitment signature is what the initiator may lack.
    assert_eq!(
        sent_since(&world, mark, ACCEPTOR),
        vec!["ReestablishChannel", "CommitmentSigned"]
    );
    assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());
    assert_eq!(world.rejections(ACCEPTOR), Vec::<String>::new());

    let (channel_id, signed) = world.user.signed_in_url.clone().unwrap();
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

#[test]
fn a_submit_while_the_link_is_down_holds_our_signature_until_the_reconnection() {
    let mut world = world_at_the_signer();
    let (channel_id, signed) = world.user.signed_in_url.clone().unwrap();

    world.disconnect();
    let mark = world.sent_log.len();
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_eq!(
        sent_since(&world, mark, INITIATOR),
        Vec::<&str>::new(),
        "nothing leaves for a peer that is away"
    );
    let stored = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(stored.commitment_signed_held, "held, and stored as held");

    // A reload keeps it held; the reconnection that comes with it releases it.
    world.restart(INITIATOR);
    world.run();
    let stored = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(!stored.commitment_signed_held);
    assert!(
        sent_since(&world, mark, INITIATOR).contains(&"CommitmentSigned"),
        "{:?}",
        sent_since(&world, mark, INITIATOR)
    );
    assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());
    assert_eq!(world.rejections(ACCEPTOR), Vec::<String>::new());
    assert_channel_ready(&world);
}

/// A record a node cannot read (written by a newer module it was rolled
/// back from, or damaged) is still a channel it has. The peer's
/// `ReestablishChannel` for it was answered as for an unknown channel,
/// `TxAbort`, and the peer aborted a flow the newer module could have
/// resumed. It is now left unanswered. (Here the counterparty's record; a
/// wallet's node answers no unknown channel at all, see below.)
#[test]
fn a_channel_whose_record_cannot_be_read_is_not_aborted_on_reconnection() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run();
    let channel_id = world.only_channel(INITIATOR).channel_id;
    world.nodes[ACCEPTOR]
        .store
        .inner
        .insert_raw(&channel_id.to_string(), b"{\"schema_version\": 99}".to_vec());
    let mark = world.sent_log.len();
    world.restart(ACCEPTOR);
    world.run();
    assert_eq!(world.nodes[ACCEPTOR].restore_errors.len(), 1);
    assert!(
        !sent_since(&world, mark, ACCEPTOR).contains(&"TxAbort"),
        "{:?}",
        sent_since(&world, mark, ACCEPTOR)
    );
    assert!(
        !matches!(world.state(INITIATOR, &channel_id), Some(ChannelState::Closed(_))),
        "the user's flow was aborted"
    );
}

/// The wallet derives its node key (`nodeSecretKey`, as docs/recovery.md
/// suggests) and the user opens it on a second device, whose storage has
/// none of the first one's flows. The counterparty's `ReestablishChannel`
/// reached the second device, which answered `TxAbort` "unknown channel":
/// the counterparty aborted the first device's flow while its user was
/// signing. Now the second device stays quiet, and when the first comes
/// back its flow goes on to `ChannelReady`.
#[test]
fn a_second_device_with_the_same_node_key_does_not_abort_the_firsts_flow() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run();
    let (channel_id, signed) = world.user.signed_in_url.clone().expect("handed out");

    let first_device = std::mem::take(&mut world.nodes[INITIATOR].store.inner);
    let mark = world.sent_log.len();
    world.restart(INITIATOR);
    world.run();
    assert!(world.initiator().channels().is_empty(), "the second device has no flow");
    assert!(
        !sent_since(&world, mark, INITIATOR).contains(&"TxAbort"),
        "{:?}",
        sent_since(&world, mark, INITIATOR)
    );

    world.nodes[INITIATOR].store.inner = first_device;
    world.restart(INITIATOR);
    world.run();
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

fn reestablish(channel_id: fiber_funding::primitives::ChannelId) -> fiber_funding::wire::FiberMessage {
    fiber_funding::wire::FiberMessage::ReestablishChannel(fiber_funding::wire::ReestablishChannel {
        channel_id,
        local_commitment_number: 0,
        remote_commitment_number: 0,
    })
}

/// A peer may ask for what is in flight again and again on one connection
/// (a failed write makes an honest one ask again). Each answer was built
/// from the record anew, our MuSig2 partial signature made again each time:
/// 50 asks, 50 signatures, a cheap way for a peer to keep a page's CPU busy.
/// The answer is now kept until the record changes or the peer leaves.
#[test]
fn a_peer_asking_again_and_again_is_answered_without_signing_again() {
    let mut world = world_at_the_signer();
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let built_before = world.nodes[ACCEPTOR].node.retransmits_built();

    let mark = world.sent_log.len();
    for _ in 0..50 {
        world.inject(INITIATOR, reestablish(channel_id));
    }
    world.run();
    let built = world.nodes[ACCEPTOR].node.retransmits_built() - built_before;
    assert_eq!(built, 1, "{built} answers built from the record for 50 asks");
    // Each ask is still answered as before: the 50, and the one the
    // initiator makes back (it had nothing in flight to ask about).
    let answers = sent_since(&world, mark, ACCEPTOR);
    assert_eq!(
        answers.iter().filter(|name| **name == "CommitmentSigned").count(),
        51,
        "{answers:?}"
    );
    assert_eq!(world.rejections(INITIATOR), Vec::<String>::new());

    // Once the record changes, the next ask is answered from the new record.
    let (channel_id, signed) = world.user.signed_in_url.clone().unwrap();
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
    let mark = world.sent_log.len();
    world.inject(INITIATOR, reestablish(channel_id));
    world.run();
    assert_eq!(sent_since(&world, mark, ACCEPTOR), vec!["ChannelReady"]);
    // And a new connection starts afresh.
    let built_before = world.nodes[ACCEPTOR].node.retransmits_built();
    world.reconnect();
    world.run();
    world.inject(INITIATOR, reestablish(channel_id));
    world.inject(INITIATOR, reestablish(channel_id));
    world.run();
    assert_eq!(world.nodes[ACCEPTOR].node.retransmits_built() - built_before, 1);
    assert_channel_ready(&world);
}
