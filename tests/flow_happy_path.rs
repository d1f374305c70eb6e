//! The whole external-funding flow between two nodes over the simulated chain.

mod common;

use ckb_types::prelude::*;
use common::*;
use fiber_funding::flow::state::*;
use fiber_funding::flow::ChannelState;
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
