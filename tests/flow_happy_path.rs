//! The whole external-funding flow between two nodes over the simulated chain.

mod common;

use ckb_types::prelude::*;
use common::*;
use fiber_funding::flow::state::*;
use fiber_funding::flow::{Action, ChainEvent, ChannelState, Event};
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::capacity_of;

#[test]
fn external_funding_flow_reaches_channel_ready_on_both_sides() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run();
    let hash = assert_channel_ready(&world);

    let funding_tx = world.chain.transaction(&hash.0).unwrap();
    let funding = funding_tx.raw().outputs().get(0).unwrap();
    // 1000 CKB from the user, a 99 CKB reserve from each side.
    assert_eq!(capacity_of(&funding), (1000 + 99 + 99) * CKB);
    // The user signed only the user's inputs (first), the acceptor only its own.
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let user_inputs = world.initiator().record(&channel_id).unwrap().own_cells.len();
    let all_inputs = funding_tx.raw().inputs().len();
    assert!(user_inputs > 0 && user_inputs < all_inputs);
    let user_args = world.user.lock.args().raw_data();
    let user_group: Vec<usize> = (0..user_inputs).collect();
    let acceptor_group: Vec<usize> = (user_inputs..all_inputs).collect();
    default_lock::verify_group(&funding_tx, &user_group, &user_args).unwrap();
    let acceptor_lock = default_lock::lock_script_for_key(world.acceptor_key.verifying_key());
    default_lock::verify_group(&funding_tx, &acceptor_group, &acceptor_lock.args().raw_data()).unwrap();
    assert!(default_lock::verify_group(&funding_tx, &acceptor_group, &user_args).is_err());
    assert_eq!(world.broadcasts.len(), 1);
    assert_eq!(world.broadcasts[0].0, INITIATOR, "the side signing second broadcasts");

    // Each side can close with its commitment: the peer's partial signature
    // and its own aggregate into a valid BIP340 signature.
    for index in [INITIATOR, ACCEPTOR] {
        assert!(world.nodes[index].node.signed_own_commitment(&channel_id).is_some());
    }
}

#[test]
fn before_the_user_signs_the_flow_waits_with_its_unsigned_tx_stored() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let temporary = world.open(1000).unwrap();
    world.run();

    let view = world.only_channel(INITIATOR);
    assert_ne!(view.channel_id, temporary, "the channel id was renamed once accepted");
    // The acceptor signed our commitment as soon as the tx was final.
    assert_eq!(
        view.state,
        ChannelState::SigningCommitment(SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT)
    );
    let record = world.stored_record(INITIATOR, &view.channel_id).unwrap();
    let ext = record.external_funding.clone().unwrap();
    let (_, handed_out) = world.handed_out.last().unwrap();
    assert_eq!(
        ext.unsigned_funding_tx.as_ref().unwrap().as_slice(),
        handed_out.as_slice()
    );
    assert!(!ext.signed_submitted());
    assert!(
        record.peer_commitment_signature.is_some(),
        "the peer's commitment signature is stored"
    );
    assert!(
        world.stored_record(INITIATOR, &temporary).is_none(),
        "the temporary record was replaced"
    );

    // Nothing was broadcast and the acceptor holds no witnesses of ours.
    assert!(world.broadcasts.is_empty());
    assert_eq!(world.only_channel(ACCEPTOR).state.name(), "SigningCommitment");

    let (channel_id, signed) = world.user.signed_in_url.clone().unwrap();
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// The `FundingConfirmations` events node `index` emitted: (confirmations, required).
fn confirmation_events(world: &World, index: usize) -> Vec<(u64, u64)> {
    world
        .events
        .iter()
        .filter(|(node, _)| *node == index)
        .filter_map(|(_, event)| match event {
            Event::FundingConfirmations {
                confirmations,
                required,
                ..
            } => Some((*confirmations, *required)),
            _ => None,
        })
        .collect()
}

#[test]
fn confirmations_are_reported_as_they_accrue_then_the_channel_is_ready() {
    let mut world = World::new(Setup {
        confirmations: 3,
        ..Setup::default()
    });
    world.open(1000).unwrap();
    world.run();
    assert_channel_ready(&world);
    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(
            confirmation_events(&world, index),
            vec![(1, 3), (2, 3), (3, 3)],
            "node {index}"
        );
        let position = |wanted: &dyn Fn(&Event) -> bool| {
            world
                .events
                .iter()
                .position(|(node, event)| *node == index && wanted(event))
                .unwrap()
        };
        let last_count = position(&|e| matches!(e, Event::FundingConfirmations { confirmations: 3, .. }));
        let ready =
            position(&|e| matches!(e, Event::StateChanged { state, .. } if *state == ChannelState::ChannelReady));
        assert!(last_count < ready, "node {index}: the count comes before the state");
    }
}

#[test]
fn the_same_confirmation_count_polled_again_is_not_reported_again() {
    let mut world = World::new(Setup {
        confirmations: 3,
        ..Setup::default()
    });
    world.open(1000).unwrap();
    while confirmation_events(&world, INITIATOR).is_empty() {
        assert!(world.step(), "settled before any confirmation");
    }
    let view = world.only_channel(INITIATOR);
    let hash = view.funding_tx_hash.unwrap();
    // The runtime polls every few seconds: the same tip comes back again and again.
    for _ in 0..3 {
        let report = world.chain.report(&hash.0);
        let now = world.now_ms;
        let actions = world.nodes[INITIATOR].node.chain_event(
            ChainEvent::TxStatus {
                channel_id: view.channel_id,
                tx_hash: hash,
                report,
            },
            now,
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Emit(Event::FundingConfirmations { .. }))),
            "{actions:?}"
        );
        world.execute(INITIATOR, actions);
    }
    assert_eq!(confirmation_events(&world, INITIATOR), vec![(1, 3)]);
    world.run();
    assert_eq!(confirmation_events(&world, INITIATOR), vec![(1, 3), (2, 3), (3, 3)]);
}
