//! The ways out of a funded channel, between two nodes over the simulated
//! chain: a cooperative close asked by either side, a unilateral close by
//! either side with the claim after the delay, claims racing, restarts in
//! between, and a peer that tries to change what was agreed.

mod common;

use ckb_types::packed;
use ckb_types::prelude::*;
use common::*;
use fiber_funding::chain::simulated::{ChainRejection, SimulatedChain};
use fiber_funding::chain::TxStatus;
use fiber_funding::flow::record::ChannelRecord;
use fiber_funding::flow::state::*;
use fiber_funding::flow::{Action, ChannelState, Event, FlowError};
use fiber_funding::primitives::{ChannelId, Hash256};
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::script::ScriptTemplate;
use fiber_funding::wire::FiberMessage;

/// A world with one channel ready (1000 CKB from the user, 99 reserve each side).
fn ready_world(setup: Setup) -> (World, ChannelId, Hash256) {
    let mut world = World::new(setup);
    world.open(1000).unwrap();
    world.run();
    let funding = assert_channel_ready(&world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    (world, channel_id, funding)
}

fn shutdown(world: &mut World, index: usize, channel_id: &ChannelId) -> Result<(), FlowError> {
    let now = world.now_ms;
    let actions = world.nodes[index].node.shutdown_channel(channel_id, None, None, now)?;
    world.execute(index, actions);
    Ok(())
}

fn force_close(world: &mut World, index: usize, channel_id: &ChannelId) -> Result<(), FlowError> {
    let now = world.now_ms;
    let actions = world.nodes[index].node.force_close_channel(channel_id, now)?;
    world.execute(index, actions);
    Ok(())
}

/// The committed tx that spends the funding cell.
fn funding_spender(world: &World, funding: &Hash256) -> packed::Transaction {
    world
        .broadcasts
        .iter()
        .map(|(_, tx)| tx.clone())
        .find(|tx| {
            tx.raw()
                .inputs()
                .into_iter()
                .any(|input| input.previous_output().tx_hash().as_slice() == funding.0.as_slice())
                && matches!(
                    world.chain.transaction_status(&tx.calc_tx_hash().unpack()),
                    TxStatus::Committed { .. }
                )
        })
        .expect("a committed tx spends the funding cell")
}

/// After the user's unilateral close and its delay: the counterparty claims
/// first, alone (its claim committed); then the user's node comes back and
/// claims what is left.
fn the_peer_claims_first_then_the_user_returns(world: &mut World, channel_id: &ChannelId) {
    world.nodes[INITIATOR].up = false;
    world.run();
    assert_eq!(
        closed_flags(world, ACCEPTOR, channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE
    );
    world.restart(INITIATOR);
    world.run();
    assert_eq!(
        closed_flags(world, INITIATOR, channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

/// The user's node refused the peer's close message (naming `needle`) and
/// signed no closing tx.
fn assert_refused_unsigned(world: &World, needle: &str) {
    let rejections = world.rejections(INITIATOR);
    assert!(rejections.iter().any(|r| r.contains(needle)), "{rejections:?}");
    assert!(
        !world
            .sent_log
            .iter()
            .any(|(from, m)| *from == INITIATOR && m.name() == "ClosingSigned"),
        "nothing was signed"
    );
}

fn closed_flags(world: &World, index: usize, channel_id: &ChannelId) -> CloseFlags {
    match world.state(index, channel_id) {
        Some(ChannelState::Closed(flags)) => flags,
        other => panic!("node {index}: {other:?}"),
    }
}

fn commitments_on_chain(world: &World, index: usize) -> Vec<bool> {
    world
        .events
        .iter()
        .filter(|(node, _)| *node == index)
        .filter_map(|(_, event)| match event {
            Event::CommitmentOnChain { holder_is_local, .. } => Some(*holder_is_local),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cooperative_close_asked_by_the_user_pays_each_side_its_balance() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);
    let (user_before, peer_before) = (world.balance(&user_script), world.balance(&peer_script));

    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();

    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(closed_flags(&world, index, &channel_id), CloseFlags::COOPERATIVE);
        let record = world.stored_record(index, &channel_id).unwrap();
        assert!(
            record.closed.is_some() && record.close.is_none(),
            "a tombstone: {record:?}"
        );
    }
    let closing = funding_spender(&world, &funding);
    assert_eq!(closing.raw().inputs().len(), 1);
    assert_eq!(closing.raw().outputs().len(), 2);
    // The user asked, so the user pays the fee; the counterparty's reserve comes back whole.
    let fee = (1000 + 99 + 99) * CKB
        - closing
            .raw()
            .outputs()
            .into_iter()
            .map(|o| capacity_of(&o))
            .sum::<u64>();
    assert!(fee > 0 && fee < CKB / 1000, "fee {fee}");
    assert_eq!(world.balance(&user_script) - user_before, (1000 + 99) * CKB - fee);
    assert_eq!(world.balance(&peer_script) - peer_before, 99 * CKB);
    assert_eq!(
        world.broadcasts.iter().filter(|(i, _)| *i == INITIATOR).count(),
        2,
        "funding and closing"
    );
    world.assert_no_nonce_reuse();
}

#[test]
fn a_cooperative_close_asked_by_the_counterparty_leaves_the_user_whole() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let user_before = world.balance(&user_script);

    shutdown(&mut world, ACCEPTOR, &channel_id).unwrap();
    world.run();

    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(closed_flags(&world, index, &channel_id), CloseFlags::COOPERATIVE);
    }
    funding_spender(&world, &funding);
    assert_eq!(world.balance(&user_script) - user_before, (1000 + 99) * CKB);
}

#[test]
fn a_unilateral_close_by_the_user_claims_after_the_delay_on_both_sides() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);
    let (user_before, peer_before) = (world.balance(&user_script), world.balance(&peer_script));

    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::ShuttingDown(
            ShuttingDownFlags::WAITING_COMMITMENT_CONFIRMATION
        ))
    );
    world.run();

    let commitment = funding_spender(&world, &funding);
    assert_eq!(commitment.raw().outputs().len(), 1, "one commitment-lock cell");
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL | CloseFlags::WAITING_ONCHAIN_SETTLEMENT
    );
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE | CloseFlags::WAITING_ONCHAIN_SETTLEMENT
    );
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true]);
    assert_eq!(commitments_on_chain(&world, ACCEPTOR), [false]);
    // Within the delay nobody can claim: nothing was tried.
    world.chain.mine_epochs(0);
    world.run();
    assert_eq!(world.balance(&user_script), user_before);

    world.chain.mine_epochs(1);
    world.run();

    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE
    );
    // Each got its share less its own claim's fee; the commitment's fee came out of the user's.
    let user_gain = world.balance(&user_script) - user_before;
    let peer_gain = world.balance(&peer_script) - peer_before;
    assert!(
        user_gain > (1000 + 99) * CKB - CKB / 100 && user_gain < (1000 + 99) * CKB,
        "{user_gain}"
    );
    assert!(peer_gain > 99 * CKB - CKB / 100 && peer_gain < 99 * CKB, "{peer_gain}");
    for index in [INITIATOR, ACCEPTOR] {
        let record = world.stored_record(index, &channel_id).unwrap();
        assert!(record.close.is_none() && record.closed.is_some(), "wiped: {record:?}");
    }
}

#[test]
fn a_claim_before_the_delay_is_refused_by_the_chain() {
    let (mut world, channel_id, _) = ready_world(Setup::default());
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    let record = world.initiator().record(&channel_id).unwrap().clone();
    let on_chain = record.close.as_ref().unwrap().commitment_on_chain.clone().unwrap();
    let commitment = world.chain.transaction(&on_chain.tx_hash.0).unwrap();
    let cell = packed::OutPoint::new_builder()
        .tx_hash(on_chain.tx_hash.0.pack())
        .index(0u32)
        .build();
    let claim = world
        .initiator()
        .claim_commitment_share(
            &channel_id,
            true,
            cell,
            commitment.raw().outputs().get(0).unwrap(),
            None,
            1_000,
        )
        .unwrap();

    let refused = world.chain.send_transaction(claim.clone()).unwrap_err();
    assert!(refused.to_string().contains("Immature"), "{refused}");

    world.chain.mine_epochs(1);
    assert!(world.chain.send_transaction(claim).is_ok());
}

#[test]
fn the_counterparty_force_closes_a_channel_whose_user_went_away() {
    let setup = Setup {
        force_close_after_ms: Some(60_000),
        ..Setup::default()
    };
    let (mut world, channel_id, funding) = ready_world(setup);
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let user_before = world.balance(&user_script);
    let user = world.nodes[INITIATOR].id();
    let now = world.now_ms;
    world.nodes[ACCEPTOR].node.peer_disconnected(&user, now);
    world.nodes[INITIATOR].up = false;

    world.advance(59_000);
    world.run();
    assert_eq!(world.state(ACCEPTOR, &channel_id), Some(ChannelState::ChannelReady));

    world.advance(1_000);
    world.run();
    funding_spender(&world, &funding);
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL | CloseFlags::WAITING_ONCHAIN_SETTLEMENT
    );

    // The page comes back after the delay: it finds the peer's commitment and claims its share.
    world.chain.mine_epochs(1);
    world.restart(INITIATOR);
    world.run();

    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE
    );
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
    assert_our_share_claimed(&world, &user_script, user_before);
}

#[test]
fn the_second_claim_finds_the_cell_the_first_one_recreated() {
    let (mut world, channel_id, _) = ready_world(Setup::default());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);
    let user_before = world.balance(&user_script);
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    world.chain.mine_epochs(1);

    the_peer_claims_first_then_the_user_returns(&mut world, &channel_id);
    assert!(world.balance(&peer_script) > 0);
    assert_our_share_claimed(&world, &user_script, user_before);
}

#[test]
fn a_peer_cannot_change_its_shutdown_or_sign_another_closing_tx() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run_until_queued_from(ACCEPTOR, "Shutdown");
    // A second Shutdown from the counterparty, paying its share elsewhere,
    // right behind its first one and its ClosingSigned.
    let FiberMessage::Shutdown(mut changed) = world.queued_from(ACCEPTOR, "Shutdown") else {
        unreachable!()
    };
    changed.close_script = world.user.lock.clone();
    world.inject(ACCEPTOR, FiberMessage::Shutdown(changed));
    world.run();

    assert!(
        world
            .rejections(INITIATOR)
            .iter()
            .any(|r| r.contains("other terms than the first")),
        "{:?}",
        world.rejections(INITIATOR)
    );
    assert_eq!(closed_flags(&world, INITIATOR, &channel_id), CloseFlags::COOPERATIVE);
    funding_spender(&world, &funding);
    world.assert_no_nonce_reuse();
}

#[test]
fn a_closing_signature_that_does_not_verify_is_refused_and_never_completed_by_us() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run_until_queued_from(ACCEPTOR, "ClosingSigned");
    world.tamper_next("ClosingSigned", |message| {
        if let FiberMessage::ClosingSigned(m) = message {
            m.partial_signature[31] ^= 1;
        }
    });
    world.run();

    assert!(
        world
            .rejections(INITIATOR)
            .iter()
            .any(|r| r.starts_with("ClosingSigned")),
        "{:?}",
        world.rejections(INITIATOR)
    );
    let user_broadcasts = world.broadcasts.iter().filter(|(i, _)| *i == INITIATOR).count();
    assert_eq!(
        user_broadcasts, 1,
        "only the funding tx: the user never completed a closing tx"
    );
    // The counterparty holds the user's valid signature and completes the
    // close; the user sees the closing tx it agreed to confirm.
    funding_spender(&world, &funding);
    assert_eq!(closed_flags(&world, INITIATOR, &channel_id), CloseFlags::COOPERATIVE);
}

#[test]
fn a_counterparty_that_never_signs_the_closing_tx_leaves_the_unilateral_way_open() {
    let (mut world, channel_id, _) = ready_world(Setup::default());
    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run_until_queued_from(ACCEPTOR, "ClosingSigned");
    assert_eq!(world.drop_queued("ClosingSigned"), 1);
    world.nodes[ACCEPTOR].up = false;
    world.run();
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::ShuttingDown(
            ShuttingDownFlags::OUR_SHUTDOWN_SENT | ShuttingDownFlags::THEIR_SHUTDOWN_SENT
        ))
    );

    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL | CloseFlags::WAITING_ONCHAIN_SETTLEMENT
    );
    world.chain.mine_epochs(1);
    world.run();
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

#[test]
fn closing_a_channel_that_is_not_funded_is_a_typed_error_that_changes_nothing() {
    let mut world = world_at_the_signer();
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();

    for result in [
        shutdown(&mut world, INITIATOR, &channel_id),
        force_close(&mut world, INITIATOR, &channel_id),
    ] {
        assert!(matches!(result, Err(FlowError::NotClosable { .. })), "{result:?}");
    }
    let after = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    // A Shutdown from the peer before funding is refused too.
    world.inject(
        ACCEPTOR,
        FiberMessage::Shutdown(fiber_funding::wire::Shutdown {
            channel_id,
            fee_rate: 1_000,
            close_script: world.user.lock.clone(),
        }),
    );
    world.run();
    assert!(world.rejections(INITIATOR).iter().any(|r| r.starts_with("Shutdown")));
}

#[test]
fn the_commitment_delay_counts_epochs_from_the_committing_block() {
    let (mut world, channel_id, _) = ready_world(Setup::default());
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    let record = world.initiator().record(&channel_id).unwrap();
    let on_chain = record.close.as_ref().unwrap().commitment_on_chain.clone().unwrap();
    assert_eq!(
        on_chain.epoch,
        SimulatedChain::epoch_of(on_chain.block_number).full_value()
    );
    let claimable = world
        .events
        .iter()
        .find_map(|(node, event)| match event {
            Event::CommitmentOnChain { claimable_at_epoch, .. } if *node == INITIATOR => Some(*claimable_at_epoch),
            _ => None,
        })
        .unwrap();
    let delay = record.terms.commitment_delay_epoch;
    let expected = ckb_types::core::EpochNumberWithFraction::from_full_value(on_chain.epoch);
    let claimable = ckb_types::core::EpochNumberWithFraction::from_full_value(claimable);
    assert_eq!(delay, (1 << 40) | 1, "one epoch");
    assert_eq!(
        (claimable.number(), claimable.index(), claimable.length()),
        (expected.number() + 1, expected.index(), expected.length())
    );
}

/// Cycles the chain's ckb-vm spent on a tx it accepted: proof its scripts ran.
fn vm_cycles(world: &World, tx: &packed::Transaction) -> u64 {
    world
        .chain
        .cycles(&tx.calc_tx_hash().unpack())
        .expect("the chain ran the tx's scripts in ckb-vm")
}

fn is_committed(world: &World, tx: &packed::Transaction) -> bool {
    matches!(
        world.chain.transaction_status(&tx.calc_tx_hash().unpack()),
        TxStatus::Committed { .. }
    )
}

/// Output 0 of `tx`, where a commitment or a first claim leaves the channel's money.
fn first_output(tx: &packed::Transaction) -> (packed::OutPoint, packed::CellOutput) {
    let out_point = packed::OutPoint::new_builder()
        .tx_hash(tx.calc_tx_hash())
        .index(0u32)
        .build();
    (out_point, tx.raw().outputs().get(0).unwrap())
}

fn with_witness_byte_flipped(tx: &packed::Transaction, from_end: usize) -> packed::Transaction {
    let mut witnesses: Vec<packed::Bytes> = tx.witnesses().into_iter().collect();
    let mut bytes = witnesses[0].raw_data().to_vec();
    let at = bytes.len() - 1 - from_end;
    bytes[at] ^= 1;
    witnesses[0] = bytes.pack();
    tx.clone().as_builder().witnesses(witnesses.pack()).build()
}

fn real_contracts() -> Setup {
    Setup {
        fiber_contracts: true,
        ..Setup::default()
    }
}

/// With Fiber's real contracts and CKB's real default lock, the chain runs
/// the funding and the closing tx in ckb-vm before it takes them, and both
/// nodes see the close confirm.
#[test]
fn with_the_real_contracts_a_cooperative_close_commits_through_the_vm() {
    let (mut world, channel_id, funding) = ready_world(real_contracts());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let user_before = world.balance(&user_script);
    let funding_cycles = world.chain.cycles(&funding.0).expect("the funding tx ran in ckb-vm");

    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();

    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(closed_flags(&world, index, &channel_id), CloseFlags::COOPERATIVE);
    }
    let closing = funding_spender(&world, &funding);
    let closing_cycles = vm_cycles(&world, &closing);
    println!(
        "cooperative close through the chain's VM: funding {funding_cycles} cycles, closing {closing_cycles} cycles"
    );
    let gain = world.balance(&user_script) - user_before;
    assert!(
        gain > (1000 + 99) * CKB - CKB / 1000 && gain < (1000 + 99) * CKB,
        "{gain}"
    );
}

/// The holder's commitment, its claim after the delay and the peer's claim
/// of what is left, each run in ckb-vm by the chain and each made by the
/// nodes themselves; a claim with a changed signature byte, which no Rust
/// check looks at, is refused by the VM.
#[test]
fn with_the_real_contracts_a_unilateral_close_and_both_claims_commit_through_the_vm() {
    let (mut world, channel_id, funding) = ready_world(real_contracts());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);
    let (user_before, peer_before) = (world.balance(&user_script), world.balance(&peer_script));

    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    let commitment = funding_spender(&world, &funding);
    let commitment_cycles = vm_cycles(&world, &commitment);
    assert_eq!(
        commitments_on_chain(&world, ACCEPTOR),
        [false],
        "the counterparty saw it"
    );
    world.chain.mine_epochs(1);

    let (cell, output) = first_output(&commitment);
    let claim = world
        .initiator()
        .claim_commitment_share(&channel_id, true, cell, output, None, 1_000)
        .unwrap();
    let refused = world
        .chain
        .send_transaction(with_witness_byte_flipped(&claim, 3))
        .unwrap_err();
    assert!(
        matches!(&refused, ChainRejection::Script { reason } if reason.contains("Inputs[0].Lock")),
        "{refused}"
    );

    world.run();
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE
    );
    // The first claim spends the commitment cell, the second the cell it re-created.
    let committed_spender_of = |spent: &packed::Transaction| {
        world
            .broadcasts
            .iter()
            .map(|(_, tx)| tx.clone())
            .find(|tx| {
                is_committed(&world, tx)
                    && tx.raw().inputs().get(0).unwrap().previous_output().tx_hash() == spent.calc_tx_hash()
            })
            .expect("a committed claim")
    };
    let first_claim = committed_spender_of(&commitment);
    let claims = [first_claim.clone(), committed_spender_of(&first_claim)];
    let user_gain = world.balance(&user_script) - user_before;
    let peer_gain = world.balance(&peer_script) - peer_before;
    assert!(
        user_gain > (1000 + 99) * CKB - CKB / 100 && user_gain < (1000 + 99) * CKB,
        "{user_gain}"
    );
    assert!(peer_gain > 99 * CKB - CKB / 100 && peer_gain < 99 * CKB, "{peer_gain}");
    println!(
        "unilateral close through the chain's VM: commitment {commitment_cycles}, first claim {}, second claim {} cycles",
        vm_cycles(&world, &claims[0]),
        vm_cycles(&world, &claims[1])
    );
}

/// A counterparty whose funding lock deps differ from the user's (its own
/// deployment cells, another order): the txs it broadcasts have other hashes
/// than the user could predict, and the user's node still sees each close.
#[test]
fn a_close_broadcast_with_the_peers_own_cell_deps_is_seen_by_the_user() {
    let with_reordered_deps = || {
        let mut setup = real_contracts();
        setup.acceptor_reorders_contract_deps = true;
        setup
    };
    let (mut world, channel_id, funding) = ready_world(with_reordered_deps());
    shutdown(&mut world, ACCEPTOR, &channel_id).unwrap();
    world.run();
    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(closed_flags(&world, index, &channel_id), CloseFlags::COOPERATIVE);
    }
    let closing = funding_spender(&world, &funding);
    let record = world.initiator().record(&channel_id).unwrap();
    assert!(record.close.is_none(), "wiped");
    assert_ne!(
        closing.raw().cell_deps().as_slice(),
        world.initiator_config_funding_deps().as_slice(),
        "the counterparty named other deps"
    );

    let (mut world, channel_id, _) = ready_world(with_reordered_deps());
    force_close(&mut world, ACCEPTOR, &channel_id).unwrap();
    world.run();
    assert_eq!(
        commitments_on_chain(&world, INITIATOR),
        [false],
        "the user saw the peer's commitment"
    );
    world.chain.mine_epochs(1);
    world.run();
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE
    );
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

/// The lock of the cell our share is re-created in once the other side
/// claims first is public: anyone can make cells under it. A decoy made
/// before the peer's claim (so an indexer lists it first) is not ours to
/// settle: claiming it would end the channel with our share left behind in
/// the real cell. Real contracts, so the chain runs every claim in ckb-vm.
#[test]
fn a_decoy_under_the_recreated_lock_is_never_claimed_for_our_share() {
    let (mut world, channel_id, funding) = ready_world(real_contracts());
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let user_before = world.balance(&user_script);
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    let commitment = funding_spender(&world, &funding);
    // The counterparty's first claim, built but not sent, shows the lock it
    // will re-create our share under; the decoy takes that lock first.
    let (cell, output) = first_output(&commitment);
    let peer_claim = world
        .acceptor()
        .claim_commitment_share(&channel_id, false, cell, output, None, 1_000)
        .unwrap();
    let recreated_lock = peer_claim.raw().outputs().get(0).unwrap().lock();
    let decoy = packed::CellOutput::new_builder()
        .capacity(98 * CKB)
        .lock(recreated_lock.clone())
        .build();
    world.chain.genesis_cell(decoy, Vec::new());
    world.chain.mine_epochs(1);

    the_peer_claims_first_then_the_user_returns(&mut world, &channel_id);
    assert_our_share_claimed(&world, &user_script, user_before);
    let left = world.live_cells(&recreated_lock);
    assert_eq!(left.len(), 1, "only the decoy is left: {left:?}");
    assert_eq!(capacity_of(&left[0].output), 98 * CKB);
}

/// A fee rate of 0 only answers a Shutdown (the fee is the asker's). A peer
/// that asks to close with 0 would have us answer with 0 and sign a closing
/// tx that pays no fee and never confirms, and then refuse the user's own
/// shutdown as "other terms". It is refused; the user's close still works.
#[test]
fn a_peer_asking_to_close_at_fee_rate_0_is_refused_and_the_users_close_still_works() {
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);
    world.inject(
        ACCEPTOR,
        FiberMessage::Shutdown(fiber_funding::wire::Shutdown {
            channel_id,
            fee_rate: 0,
            close_script: peer_script,
        }),
    );
    world.run();
    assert_refused_unsigned(&world, "fee rate");

    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    assert_eq!(closed_flags(&world, INITIATOR, &channel_id), CloseFlags::COOPERATIVE);
    funding_spender(&world, &funding);
}

/// The peer answers our `Shutdown` with a close script whose hash type no
/// CKB node knows: a closing tx paying it is refused by every node, and
/// the user would see a close that never happens. Refused before we sign.
#[test]
fn a_peer_close_script_under_an_unknown_hash_type_is_refused_before_we_sign() {
    let (mut world, channel_id, _funding) = ready_world(Setup::default());
    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    world.run_until_queued_from(ACCEPTOR, "Shutdown");
    world.tamper_next("Shutdown", |m| {
        if let FiberMessage::Shutdown(m) = m {
            m.close_script = m
                .close_script
                .clone()
                .as_builder()
                .hash_type(packed::Byte::new(3))
                .build();
        }
    });
    world.run();
    assert_refused_unsigned(&world, "hash type 3");
}

/// The user's own close script is held to the same rule: a typed error
/// naming the field, and nothing stored or sent (its terms would be fixed).
#[test]
fn a_users_close_script_under_an_unknown_hash_type_is_a_typed_error_that_changes_nothing() {
    let (mut world, channel_id, _funding) = ready_world(Setup::default());
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();
    let sent = world.sent_log.len();
    let script = world.shutdown_script(INITIATOR, &channel_id);
    let unknown = script.as_builder().hash_type(packed::Byte::new(6)).build();
    let now = world.now_ms;
    let refused = world.nodes[INITIATOR]
        .node
        .shutdown_channel(&channel_id, Some(unknown), None, now)
        .unwrap_err();
    assert!(
        matches!(&refused, FlowError::InvalidParams { field: "close_script", reason } if reason.contains("hash type 6")),
        "{refused:?}"
    );
    world.run();
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), before);
    assert_eq!(world.sent_log.len(), sent);
}

/// A CKB node lagging behind (or lying once) answers our claim lookup with
/// "transaction unknown". The answer is refused, and the lookup must end
/// with it: left waiting, no later poll asked again and our share stayed
/// unclaimed for the rest of the session.
#[test]
fn a_claim_lookup_answered_unknown_once_is_asked_again_and_the_share_claimed() {
    use fiber_funding::flow::ChainEvent;
    let (mut world, user_script, user_before, (asked_for, out_points)) = at_our_claim_lookup();
    let unknown = ChainEvent::ResolvedInputs {
        channel_id: asked_for,
        cells: vec![None; out_points.len()],
        out_points,
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(unknown, now);
    world.execute(INITIATOR, actions);
    assert_rejected_answer(&world);

    // The node catches up; the next polls ask again.
    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
}

/// The claim lookup is answered, but the write of the claim fails: the
/// step is taken back, and the lookup it answered must not be left
/// waiting, or no later poll would ask again.
#[test]
fn a_claim_whose_write_fails_is_looked_up_again_and_made() {
    let (mut world, user_script, user_before, lookup) = at_our_claim_lookup();
    let answer = world.resolved_inputs(lookup);
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    let (result, _) = world.execute_with_the_write_failing(INITIATOR, actions);
    assert!(result.is_err(), "the write was made to fail");
    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
}

/// Our claim goes to a node one block behind (or a load-balanced twin),
/// which refuses it as immature, while the commitment cell is live. Taken
/// as "the cell is gone", the node only looked for the cell the peer's
/// claim re-creates, so with the peer away our share stayed unclaimed
/// until a reload. The cell's liveness is read first: live, the claim is
/// made again at the next poll.
#[test]
fn a_claim_refused_while_the_commitment_cell_is_live_is_made_again() {
    let (mut world, user_script, user_before, channel_id, claim) = our_claim_sent_nowhere();
    our_node_refuses(
        &mut world,
        channel_id,
        &claim,
        "Immature: the since of input 0 is not met yet",
    );

    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
}

/// Our claim reached the chain through another node, and the node we asked
/// refused it (behind, or load-balanced). Taken as "the other side claimed
/// first", the node looked for a re-created cell that never comes, our
/// claim was no longer watched, and the close never ended. The spender of
/// the commitment cell is read: it is our claim, watched again to the end.
#[test]
fn a_claim_refused_by_our_node_but_committed_through_another_ends_the_close() {
    let (mut world, user_script, user_before, channel_id, claim) = our_claim_sent_nowhere();
    // Another node took it, and it is mined.
    world.chain.send_transaction(claim.clone()).unwrap();
    world.chain.mine_block();
    our_node_refuses(
        &mut world,
        channel_id,
        &claim,
        "TransactionFailedToResolve: Dead(OutPoint)",
    );

    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL,
        "the close ended"
    );
}

/// After our claim is refused, a node says the commitment cell is dead and
/// names as its spender a tx it made up (its hash is the node's to
/// compute), pending. Taken as the other side's claim, our claims stopped
/// for the session and the node looked for a re-created cell that never
/// comes. Only a committed spender counts: the next poll claims again.
#[test]
fn a_made_up_pending_spender_of_the_commitment_cell_does_not_stop_our_claim() {
    use fiber_funding::chain::{TxReport, TxStatus};
    use fiber_funding::flow::{ChainEvent, ChainQuery};
    let (mut world, user_script, user_before, channel_id, claim) = our_claim_sent_nowhere();
    our_node_refuses(
        &mut world,
        channel_id,
        &claim,
        "TransactionFailedToResolve: Dead(OutPoint)",
    );
    let asked = world
        .queries
        .iter()
        .position(|(node, _, q)| *node == INITIATOR && matches!(q, ChainQuery::InputsLive { .. }))
        .expect("the commitment cell's liveness is asked");
    let Some((_, _, ChainQuery::InputsLive { out_points, at_tip })) = world.queries.remove(asked) else {
        unreachable!("matched above")
    };
    let cell = out_points[0].clone();
    let dead = ChainEvent::InputsLive {
        channel_id,
        live: vec![false; out_points.len()],
        out_points,
        at_tip,
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(dead, now);
    world.execute(INITIATOR, actions);
    world
        .queries
        .retain(|(node, _, q)| !(*node == INITIATOR && matches!(q, ChainQuery::SpenderOf { .. })));
    let made_up = ChainEvent::SpenderOf {
        channel_id,
        spender: Some((
            made_up_spender(&cell),
            TxReport {
                status: TxStatus::Pending,
                block_epoch: None,
                tip: world.chain.tip(),
            },
        )),
        out_point: cell,
    };
    let actions = world.nodes[INITIATOR].node.chain_event(made_up, now);
    world.execute(INITIATOR, actions);

    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
}

/// At our claim lookup with the peer away: the lookup answered, and the
/// claim it makes broadcast to nowhere (the test says what the node heard).
fn our_claim_sent_nowhere() -> (World, packed::Script, u64, ChannelId, packed::Transaction) {
    our_claim_sent_nowhere_with(Setup::default())
}

/// [`our_claim_sent_nowhere`] in a world of `setup`.
fn our_claim_sent_nowhere_with(setup: Setup) -> (World, packed::Script, u64, ChannelId, packed::Transaction) {
    let (mut world, user_script, user_before, lookup) = at_our_claim_lookup_with(setup);
    let channel_id = lookup.0;
    world.nodes[ACCEPTOR].up = false;
    let answer = world.resolved_inputs(lookup);
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    let mut nowhere = NullEffects::default();
    let node = &mut world.nodes[INITIATOR];
    futures::executor::block_on(fiber_funding::runtime::execute(
        &mut node.node,
        &node.store,
        &mut nowhere,
        actions,
    ))
    .unwrap();
    assert_eq!(nowhere.sent, ["broadcast"]);
    let close = node.node.record(&channel_id).unwrap().close.as_ref();
    let claim = close.and_then(|c| c.claim_tx.clone()).expect("the claim is out");
    (world, user_script, user_before, channel_id, claim)
}

/// The node we asked says `tx` is committed three blocks deep (two on top
/// of its block), whatever the chain holds.
fn our_node_says_committed_three_deep(world: &mut World, channel_id: ChannelId, tx: &packed::Transaction) {
    let tip = world.chain.report(&[0x99; 32]).tip;
    let lie = fiber_funding::flow::ChainEvent::TxStatus {
        channel_id,
        tx_hash: Hash256(tx.calc_tx_hash().unpack()),
        report: fiber_funding::chain::TxReport {
            status: TxStatus::Committed {
                block_number: tip.block_number - 2,
            },
            block_epoch: Some(tip.epoch),
            tip,
        },
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(lie, now);
    world.execute(INITIATOR, actions);
}

/// The node we asked refuses `claim`, with `reason`.
fn our_node_refuses(world: &mut World, channel_id: ChannelId, claim: &packed::Transaction, reason: &str) {
    let refused = fiber_funding::flow::ChainEvent::BroadcastFailed {
        channel_id,
        tx_hash: Hash256(claim.calc_tx_hash().unpack()),
        reason: reason.into(),
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(refused, now);
    world.execute(INITIATOR, actions);
}

fn assert_claimed_within_three_blocks(world: &mut World, user_script: &packed::Script, user_before: u64) {
    for _ in 0..3 {
        world.chain.mine_block();
        world.run();
    }
    assert_our_share_claimed(world, user_script, user_before);
}

/// Our share claimed, and the close ended on it.
fn assert_our_claim_ended_the_close(
    world: &World,
    channel_id: &ChannelId,
    user_script: &packed::Script,
    user_before: u64,
) {
    assert_our_share_claimed(world, user_script, user_before);
    assert_eq!(
        closed_flags(world, INITIATOR, channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

/// The user's shutdown script got its share of the channel (1000 CKB and
/// its 99 reserve) less at most the claim's and commitment's fees.
fn assert_our_share_claimed(world: &World, user_script: &packed::Script, user_before: u64) {
    let gain = world.balance(user_script) - user_before;
    assert!(
        gain > (1000 + 99) * CKB - CKB / 100,
        "our share was never claimed: {gain}"
    );
}

/// [`ready_world`] with the user's shutdown script and its balance before the close.
fn ready_world_and_the_users_balance() -> (World, ChannelId, packed::Script, u64) {
    ready_world_of(Setup::default())
}

/// [`ready_world_and_the_users_balance`] in a world of `setup`.
fn ready_world_of(setup: Setup) -> (World, ChannelId, packed::Script, u64) {
    let (world, channel_id, _) = ready_world(setup);
    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let user_before = world.balance(&user_script);
    (world, channel_id, user_script, user_before)
}

/// The user force-closed and the delay has passed: the world with the
/// user's claim lookup taken off the queue (the channel and the cell
/// asked), the user's shutdown script and its balance before the close.
fn at_our_claim_lookup() -> (World, packed::Script, u64, (ChannelId, Vec<packed::OutPoint>)) {
    at_our_claim_lookup_with(Setup::default())
}

fn at_our_claim_lookup_with(setup: Setup) -> (World, packed::Script, u64, (ChannelId, Vec<packed::OutPoint>)) {
    let (mut world, channel_id, user_script, user_before) = ready_world_of(setup);
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    world.chain.mine_epochs(1);
    let lookup = world.take_resolve_inputs(INITIATOR);
    (world, user_script, user_before, lookup)
}

fn assert_rejected_answer(world: &World) {
    assert!(
        world.events.iter().any(|(index, event)| *index == INITIATOR
            && matches!(event, Event::FundingTxRejected { reason, .. } if reason.contains("unknown"))),
        "the unknown cell was not reported"
    );
}

/// A channel opened while the node named no cell deps for Fiber's locks
/// (a wallet on the published defaults, which carry none): its record holds
/// none, and a commitment without the funding lock's code can never be
/// broadcast, so the user had no way out without the peer. Given the deps
/// later, the node takes them into the record at boot (and deps that moved
/// replace stale ones), and the user's unilateral close and claim commit
/// through the VM.
#[test]
fn a_channel_opened_without_cell_deps_takes_the_nodes_at_boot_and_can_be_force_closed() {
    let (mut world, (funding_lock, commitment_lock), funding, channel_id) = ready_without_cell_deps();
    let deps = (funding_lock.cell_deps, commitment_lock.cell_deps);
    let terms = |world: &World| world.initiator().record(&channel_id).unwrap().terms.clone();

    let config = &mut world.nodes[INITIATOR].config;
    config.funding_lock.cell_deps = deps.0.clone();
    config.commitment_lock.cell_deps = deps.1.clone();
    world.restart(INITIATOR);
    world.run();
    assert_eq!(terms(&world).funding_lock.cell_deps, deps.0);
    assert_eq!(terms(&world).commitment_lock.cell_deps, deps.1);
    // Stored, not only filled in memory: a boot with no deps keeps them.
    let config = &mut world.nodes[INITIATOR].config;
    config.funding_lock.cell_deps.clear();
    config.commitment_lock.cell_deps.clear();
    world.restart(INITIATOR);
    assert_eq!(terms(&world).funding_lock.cell_deps, deps.0);
    // Deps that moved (a contract's code cell re-published; here the same
    // cells named in the other order) replace the record's at the next boot.
    let moved: Vec<_> = deps.0.iter().rev().cloned().collect();
    world.nodes[INITIATOR].config.funding_lock.cell_deps = moved.clone();
    world.restart(INITIATOR);
    assert_eq!(terms(&world).funding_lock.cell_deps, moved);

    force_close_alone_and_claim(&mut world, &channel_id, &funding);
}

/// A ready channel opened while the user's node named no deps for Fiber's
/// locks (its record holds none), and the locks with the deps it lacked.
fn ready_without_cell_deps() -> (World, (ScriptTemplate, ScriptTemplate), Hash256, ChannelId) {
    let mut world = World::new(real_contracts());
    let config = &mut world.nodes[INITIATOR].config;
    let locks = (config.funding_lock.clone(), config.commitment_lock.clone());
    config.funding_lock.cell_deps.clear();
    config.commitment_lock.cell_deps.clear();
    world.restart(INITIATOR);
    world.open(1000).unwrap();
    world.run();
    let funding = assert_channel_ready(&world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let record = world.initiator().record(&channel_id).unwrap();
    assert!(record.terms.funding_lock.cell_deps.is_empty());
    (world, locks, funding, channel_id)
}

/// The peer gone, the user force-closes: the commitment and then the claim
/// commit through the VM, which needs the deps of Fiber's code.
fn force_close_alone_and_claim(world: &mut World, channel_id: &ChannelId, funding: &Hash256) {
    let user_script = world.shutdown_script(INITIATOR, channel_id);
    let user_before = world.balance(&user_script);
    world.nodes[ACCEPTOR].up = false;
    force_close(world, INITIATOR, channel_id).unwrap();
    world.run();
    funding_spender(world, funding);
    world.chain.mine_epochs(1);
    world.run();
    assert_eq!(
        closed_flags(world, INITIATOR, channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
    assert_our_share_claimed(world, &user_script, user_before);
}

/// The browser's storage is gone (site data cleared, or evicted) while a
/// funded channel's keys were only there: the node key alone derives none
/// of them, so the user's share could never be moved. A backup taken
/// before (`exportBackup`) brings the channel back into empty storage under
/// the same node key, stored before anything acts on it, and the user
/// closes without the peer and claims their share. Records of another node
/// key, or of a channel the node holds, are left out by name.
#[test]
fn a_funded_channel_restored_from_a_backup_into_empty_storage_closes_without_the_peer() {
    let mut world = World::new(real_contracts());
    world.open(1000).unwrap();
    world.run();
    let funding = assert_channel_ready(&world);
    let channel_id = world.only_channel(INITIATOR).channel_id;
    let backup: Vec<ChannelRecord> = world.initiator().records().into_iter().cloned().collect();

    world.nodes[INITIATOR].store = CrashingStore::new();
    world.restart(INITIATOR);
    assert!(world.initiator().record(&channel_id).is_none(), "the storage is empty");

    let theirs: Vec<ChannelRecord> = world.nodes[ACCEPTOR].node.records().into_iter().cloned().collect();
    let refused = world.nodes[INITIATOR].node.import_records(theirs);
    assert!(refused.writes.is_empty() && refused.ids.is_empty(), "{refused:?}");
    assert_eq!(
        refused.skipped,
        vec![(channel_id, "it was made with another node key".to_owned())]
    );

    let imported = world.nodes[INITIATOR].node.import_records(backup.clone());
    assert_eq!(imported.ids, vec![channel_id]);
    assert!(
        matches!(imported.writes[..], [Action::Persist { .. }]),
        "{:?}",
        imported.writes
    );
    world.execute(INITIATOR, imported.writes);
    // Stored, not only in memory: it is there after a restart.
    world.restart(INITIATOR);
    assert!(world.initiator().record(&channel_id).is_some());
    let again = world.nodes[INITIATOR].node.import_records(backup);
    assert_eq!(
        again.skipped,
        vec![(channel_id, "this node holds the channel already".to_owned())]
    );

    force_close_alone_and_claim(&mut world, &channel_id, &funding);
}

/// The closing nonce is announced (in `CommitmentSigned`) before any
/// closing tx exists, so it is bound to none: it may sign one closing tx,
/// ever, and the record keeps the terms it signed. A backup is a record
/// from before: restored (the storage lost, or on a second device), it
/// knew of no close, and a peer that had kept the first close to itself
/// asked again with other terms and got a second closing signature with
/// the same nonce. Two such signatures give the peer a linear equation in
/// our funding key, three the key, and with it the whole channel. A
/// restored channel now closes only unilaterally, whose signature signs
/// the one commitment tx the funding fixed.
#[test]
fn a_channel_restored_from_a_backup_never_signs_a_second_closing_tx() {
    let (mut world, channel_id, funding) = ready_world(real_contracts());
    let backup: Vec<ChannelRecord> = world.initiator().records().into_iter().cloned().collect();
    let peer_script = world.shutdown_script(ACCEPTOR, &channel_id);

    // The peer asks to close; the user's node signs; the peer keeps it.
    shutdown(&mut world, ACCEPTOR, &channel_id).unwrap();
    world.run_until_queued_from(INITIATOR, "ClosingSigned");
    world.nodes[ACCEPTOR].up = false;
    world.run();
    let signed = |world: &World| {
        world
            .sent_log
            .iter()
            .filter(|(from, m)| *from == INITIATOR && m.name() == "ClosingSigned")
            .count()
    };
    assert_eq!(signed(&world), 1);

    // The storage is lost; the backup comes back.
    world.nodes[INITIATOR].store = CrashingStore::new();
    world.restart(INITIATOR);
    let imported = world.nodes[INITIATOR].node.import_records(backup);
    assert_eq!(imported.ids, vec![channel_id]);
    world.execute(INITIATOR, imported.writes);
    world.restart(INITIATOR);

    // The peer asks again, at another fee rate; and the user asks too.
    world.inject(
        ACCEPTOR,
        FiberMessage::Shutdown(fiber_funding::wire::Shutdown {
            channel_id,
            fee_rate: 5_000,
            close_script: peer_script,
        }),
    );
    world.run();
    assert!(
        world
            .rejections(INITIATOR)
            .iter()
            .any(|r| r.contains("restored from a backup")),
        "{:?}",
        world.rejections(INITIATOR)
    );
    let refused = shutdown(&mut world, INITIATOR, &channel_id);
    assert!(
        matches!(refused, Err(FlowError::RestoredChannelClosesUnilaterally { .. })),
        "{refused:?}"
    );
    world.assert_no_nonce_reuse();
    assert_eq!(signed(&world), 1, "a second closing tx was signed with the same nonce");
    // Stored so: a restart does not forget it.
    world.restart(INITIATOR);
    assert!(matches!(
        shutdown(&mut world, INITIATOR, &channel_id),
        Err(FlowError::RestoredChannelClosesUnilaterally { .. })
    ));

    // The way out is the unilateral close, with or without the peer.
    force_close_alone_and_claim(&mut world, &channel_id, &funding);
}

/// A backup edited so that a record of this node key names a channel whose
/// stored record is another node key's (one the boot refused and keeps):
/// taken, its write would replace that record, the other key's only copy.
#[test]
fn an_imported_record_never_writes_over_another_keys_record() {
    let mut world = World::new(real_contracts());
    world.open(1000).unwrap();
    world.run();
    assert_channel_ready(&world);
    let theirs = world.only_channel(INITIATOR).channel_id;
    // The page opens the same database with another node key.
    world.nodes[INITIATOR].config.node_secret =
        fiber_funding::crypto::keys::NodeSecret::from_bytes([0x77; 32]).unwrap();
    world.restart(INITIATOR);
    assert!(
        world.initiator().record(&theirs).is_none(),
        "refused at boot as another key's"
    );
    let ours = world.open(200).unwrap();
    world.run();
    let mut edited = world.initiator().record(&ours).unwrap().clone();
    edited.channel_id = theirs;
    edited.temporary_channel_id = theirs;
    let imported = world.nodes[INITIATOR].node.import_records(vec![edited]);
    assert!(imported.writes.is_empty(), "{:?}", imported.ids);
    assert_eq!(
        imported.skipped,
        vec![(theirs, "the database holds another node key's record of it".to_owned())]
    );
}

/// The browser looks Fiber's code up once the node is open, not before
/// (`src/wasm/published_code.rs`): what it finds reaches every live record
/// that names no deps, and is stored, so the user's way out without the
/// peer commits as it does when the deps were there at boot.
#[test]
fn deps_found_after_the_boot_reach_a_channel_opened_without_them_and_are_stored() {
    let (mut world, (funding_lock, commitment_lock), funding, channel_id) = ready_without_cell_deps();
    let terms = |world: &World| world.initiator().record(&channel_id).unwrap().terms.clone();

    let actions = world.nodes[INITIATOR]
        .node
        .published_cell_deps_found(&funding_lock, &commitment_lock);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Persist { .. })),
        "the record that took the deps is stored again"
    );
    world.execute(INITIATOR, actions);
    world.run();
    assert_eq!(terms(&world).funding_lock.cell_deps, funding_lock.cell_deps);
    assert_eq!(terms(&world).commitment_lock.cell_deps, commitment_lock.cell_deps);
    // Stored, not only in memory: a boot whose node names none keeps them.
    world.restart(INITIATOR);
    assert_eq!(terms(&world).funding_lock.cell_deps, funding_lock.cell_deps);
    // Found again, the same: nothing to store.
    let again = world.nodes[INITIATOR]
        .node
        .published_cell_deps_found(&funding_lock, &commitment_lock);
    assert!(again.is_empty(), "{again:?}");

    force_close_alone_and_claim(&mut world, &channel_id, &funding);
}

/// While our claim is out, a refusal of another of the channel's txs comes
/// back (a stale rebroadcast of the commitment, say). It said nothing about
/// the claim, yet it was taken as the claim refused: the claim was dropped
/// from the record and the node went looking for a cell the other side
/// never re-created, so the close never ended though the claim confirmed.
#[test]
fn a_refusal_of_another_tx_while_our_claim_is_out_leaves_the_claim_watched() {
    use fiber_funding::flow::ChainEvent;
    let (mut world, user_script, user_before, lookup) = at_our_claim_lookup();
    let channel_id = lookup.0;
    let answer = world.resolved_inputs(lookup);
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    world.execute(INITIATOR, actions);
    let refused = ChainEvent::BroadcastFailed {
        channel_id,
        tx_hash: Hash256([0x99; 32]),
        reason: "another tx of the channel".into(),
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(refused, now);
    world.execute(INITIATOR, actions);

    assert_claimed_within_three_blocks(&mut world, &user_script, user_before);
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

/// A node that refuses our close tx once (here its minimum fee rate was
/// above the channel's for a while) records the refusal, and
/// `get_transaction` then answers "rejected" for it, as CKB's recent-reject
/// store does. Only "unknown" sent it again, so the user's way out stalled
/// for as long as the node remembered the refusal, a reload included.
fn a_close_tx_refused_once_is_sent_again(close: fn(&mut World, usize, &ChannelId) -> Result<(), FlowError>) -> World {
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    world.chain.set_min_fee_rate(1_000_000);
    close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    assert!(
        world
            .events
            .iter()
            .any(|(node, e)| *node == INITIATOR && matches!(e, Event::CloseTxRejected { .. })),
        "the node refused the close tx"
    );
    world
        .chain
        .set_min_fee_rate(fiber_funding::chain::simulated::DEFAULT_MIN_FEE_RATE);
    for _ in 0..5 {
        world.chain.mine_block();
        world.run();
    }
    world.chain.mine_epochs(1);
    world.run();
    assert!(
        world.balance(&user_script) > user_before,
        "the user's share came back: {:?}",
        world.state(INITIATOR, &channel_id)
    );
    world
}

#[test]
fn a_commitment_the_node_refused_once_is_sent_again() {
    let world = a_close_tx_refused_once_is_sent_again(force_close);
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true]);
}

#[test]
fn a_closing_tx_the_node_refused_once_is_sent_again() {
    a_close_tx_refused_once_is_sent_again(shutdown);
}

/// Our force close, then the page away while the delay passes: the other
/// side claims first, which re-creates our share's cell under the
/// re-created lock. The page is back, its claim not yet made.
fn the_peer_claimed_first_while_we_were_away() -> (World, ChannelId, packed::Script, u64) {
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    world.chain.mine_epochs(1);
    world.nodes[INITIATOR].up = false;
    world.run();
    assert_eq!(
        closed_flags(&world, ACCEPTOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_REMOTE,
        "the peer claimed first"
    );
    world.restart(INITIATOR);
    (world, channel_id, user_script, user_before)
}

/// The look-up of the re-created cell is made at each poll. Against a node
/// failing every indexer read, each failure was also asked again every
/// `chain_retry_ms` for as long as the cell was wanted: one more endless
/// retry loop per poll, until the page flooded the node (and a node that
/// limits its callers then failed the reads that would find the cell). A
/// failed poll-driven read is left to the next poll.
#[test]
fn a_failed_look_up_of_the_recreated_cell_is_left_to_the_next_poll() {
    use fiber_funding::flow::ChainQuery;
    let (mut world, _, user_script, user_before) = the_peer_claimed_first_while_we_were_away();
    let mut looked_up = 0;
    for _ in 0..2_000 {
        if let Some(at) = world
            .queries
            .iter()
            .position(|(node, _, q)| *node == INITIATOR && matches!(q, ChainQuery::LiveCells { .. }))
        {
            // The read fails: it is not answered.
            let (_, id, query) = world.queries.remove(at).unwrap();
            let node = &world.nodes[INITIATOR].node;
            assert!(
                !node.retries_failed_query(&id, &query),
                "a failed look-up of the re-created cell is asked again apart from the polls"
            );
            looked_up += 1;
            if looked_up == 3 {
                break;
            }
        }
        if !world.step() {
            world.chain.mine_block();
            world.advance(2_000);
        }
    }
    assert_eq!(looked_up, 3, "each poll looks the cell up again");
    // Once the node answers, our share is claimed.
    for _ in 0..5 {
        world.chain.mine_block();
        world.run();
    }
    assert_our_share_claimed(&world, &user_script, user_before);
}

/// The other side claimed first and re-created our share's cell; then it
/// spent 16 decoy cells it had made under the commitment lock, each in a
/// tx of its own, newer than its claim. The indexer lists those first and
/// the spender search gives up after 16 candidates: every answer is "none
/// found". Only a found spender used to start the look-up of the
/// re-created cell, so our claim of the dead original was made again at
/// each poll and our share never claimed. A re-created cell is looked for
/// on "none found" too (read, as ever, through the hash-checked path).
#[test]
fn a_spender_hidden_behind_decoys_still_lets_us_claim_the_recreated_cell() {
    use fiber_funding::flow::{ChainEvent, ChainQuery};
    let (mut world, channel_id, user_script, user_before) = the_peer_claimed_first_while_we_were_away();

    let mut hidden = 0;
    for _ in 0..2_000 {
        while let Some(at) = world
            .queries
            .iter()
            .position(|(node, _, q)| *node == INITIATOR && matches!(q, ChainQuery::SpenderOf { .. }))
        {
            let Some((_, channel_id, ChainQuery::SpenderOf { out_point, .. })) = world.queries.remove(at) else {
                unreachable!("matched above")
            };
            hidden += 1;
            let none_found = ChainEvent::SpenderOf {
                channel_id,
                out_point,
                spender: None,
            };
            let now = world.now_ms;
            let actions = world.nodes[INITIATOR].node.chain_event(none_found, now);
            world.execute(INITIATOR, actions);
        }
        if !world.step() {
            world.chain.mine_block();
        }
        if matches!(world.state(INITIATOR, &channel_id), Some(ChannelState::Closed(flags)) if flags == CloseFlags::UNCOOPERATIVE_LOCAL)
        {
            break;
        }
    }
    assert!(hidden > 0, "the spender was asked for, and hidden");
    assert_our_share_claimed(&world, &user_script, user_before);
}

/// One report of our commitment with a wrong epoch (a faulty or lying
/// node: here far in the future) was stored as the commitment's and never
/// read again, so the claim was never due, even once honest nodes answered.
/// Each committed report of the commitment now sets where it stands.
#[test]
fn a_commitment_reported_once_with_a_wrong_epoch_is_still_claimed() {
    use fiber_funding::chain::TxReport;
    use fiber_funding::flow::ChainEvent;
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    let commitment = world.initiator().signed_own_commitment(&channel_id).unwrap();
    let commitment_hash: [u8; 32] = commitment.calc_tx_hash().unpack();
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    for _ in 0..3 {
        world.chain.mine_block();
    }
    let TxStatus::Committed { block_number } = world.chain.transaction_status(&commitment_hash) else {
        panic!("the commitment is committed")
    };
    let far = ckb_types::core::EpochNumberWithFraction::new(0xFF_FFF0, 0, 1).full_value();
    let lie = ChainEvent::TxStatus {
        channel_id,
        tx_hash: Hash256(commitment_hash),
        report: TxReport {
            status: TxStatus::Committed { block_number },
            block_epoch: Some(far),
            tip: world.chain.tip(),
        },
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(lie, now);
    world.execute(INITIATOR, actions);
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true]);

    world.run();
    world.chain.mine_epochs(2);
    world.run();
    assert_our_share_claimed(&world, &user_script, user_before);
}

/// A commitment seen on chain and then reported unknown (a reorganisation
/// deeper than the confirmations, maybe with the peer's commitment in its
/// place) was watched by its hash for ever, the funding cell no longer, so
/// a commitment that replaced it was never claimed from. The funding cell
/// is watched again, and whichever tx spends it found.
#[test]
fn a_commitment_that_leaves_the_chain_has_the_funding_cell_watched_again() {
    use fiber_funding::chain::TxReport;
    use fiber_funding::flow::ChainEvent;
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    world.run();
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true]);
    let commitment_hash: [u8; 32] = world
        .initiator()
        .signed_own_commitment(&channel_id)
        .unwrap()
        .calc_tx_hash()
        .unpack();
    let gone = ChainEvent::TxStatus {
        channel_id,
        tx_hash: Hash256(commitment_hash),
        report: TxReport {
            status: TxStatus::Unknown,
            block_epoch: None,
            tip: world.chain.tip(),
        },
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(gone, now);
    world.execute(INITIATOR, actions);
    assert!(
        world
            .initiator()
            .funding_cells_to_watch()
            .iter()
            .any(|(id, _, _)| *id == channel_id),
        "the funding cell is watched again"
    );

    world.run();
    world.chain.mine_epochs(1);
    world.run();
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true, true], "seen again");
    assert_our_share_claimed(&world, &user_script, user_before);
}

/// The claim's signature covers it without its cell deps (as every
/// settlement of the commitment lock), so whoever relays it may add, drop
/// or reorder deps: the copy that confirms has another hash than the one
/// we sent. Taken for the other side's claim, it left us looking for a
/// re-created cell that never comes, at every poll, with the share in
/// fact home. Our claim is told by what was signed.
#[test]
fn a_copy_of_our_claim_with_other_cell_deps_is_our_claim() {
    let (mut world, user_script, user_before, channel_id, claim) = our_claim_sent_nowhere_with(real_contracts());
    world.nodes[ACCEPTOR].up = true;
    let relayed = with_parts(&claim, |parts| parts.cell_deps.reverse());
    assert_ne!(relayed.calc_tx_hash(), claim.calc_tx_hash());
    world.chain.mine_foreign_transaction(relayed).unwrap();
    for _ in 0..6 {
        world.chain.mine_block();
        world.advance(2_000);
        world.run();
    }
    assert_our_share_claimed(&world, &user_script, user_before);
    assert_eq!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL,
        "the close never finished"
    );
}

/// A node that says our claim is committed as deep as a funding needs
/// (or a reorganisation that takes it back after that many blocks) does not
/// end the close: the keys stay until the claim is buried under the settle
/// depth, so the claim the chain then does not know is sent again.
#[test]
fn a_claim_reported_only_as_deep_as_the_funding_keeps_the_keys_and_is_sent_again() {
    let setup = Setup {
        settle_confirmations: Some(24),
        ..Setup::default()
    };
    let (mut world, user_script, user_before, channel_id, claim) = our_claim_sent_nowhere_with(setup);
    world.nodes[ACCEPTOR].up = true;
    for _ in 0..24 {
        world.chain.mine_block();
    }
    our_node_says_committed_three_deep(&mut world, channel_id, &claim);
    let record = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(
        !record.is_tombstone() && record.channel_seed != Hash256([0; 32]),
        "the close ended on a claim 3 blocks deep: {:?}",
        record.closed
    );
    for _ in 0..4 {
        world.advance(2_000);
        world.run();
    }
    assert_our_claim_ended_the_close(&world, &channel_id, &user_script, user_before);
}

/// A node that says our claim is settled when it is not ends the close all
/// the same (nothing else tells the module otherwise), but the tombstone
/// keeps the seed: with the node secret, every key of the channel can still
/// be derived to claim the share the node hid.
#[test]
fn a_tombstone_a_lying_node_made_can_still_derive_the_channels_keys() {
    use fiber_funding::crypto::keys::ChannelKeys;
    let (mut world, _, _, channel_id, claim) = our_claim_sent_nowhere();
    for _ in 0..3 {
        world.chain.mine_block();
    }
    our_node_says_committed_three_deep(&mut world, channel_id, &claim);
    let record = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(
        record.is_tombstone(),
        "the node's word ends the close: {:?}",
        record.closed
    );
    assert!(record.close.is_none() && record.funding_tx.is_none(), "the txs go");
    let keys = ChannelKeys::derive(
        &world.nodes[INITIATOR].node.config().node_secret,
        &record.channel_seed.0,
    );
    assert_eq!(
        keys.funding_pubkey(),
        record.local.funding_pubkey,
        "the channel's keys can no longer be derived"
    );
}

/// A cooperative close ends at the settle depth, not the funding's: until
/// then the closing tx is watched and the keys kept.
#[test]
fn a_cooperative_close_ends_at_the_settle_depth() {
    let setup = Setup {
        settle_confirmations: Some(24),
        ..Setup::default()
    };
    let (mut world, channel_id, funding) = ready_world(setup);
    let funding_cell = packed::OutPoint::new_builder()
        .tx_hash(funding.0.pack())
        .index(0u32)
        .build();
    shutdown(&mut world, INITIATOR, &channel_id).unwrap();
    let mut depths = Vec::new();
    while world.step() {
        let Some(closing) = world.chain.spender_of(&funding_cell) else {
            continue;
        };
        let report = world.chain.report(&closing);
        if let TxStatus::Committed { block_number } = report.status {
            let tombstone = world.stored_record(INITIATOR, &channel_id).unwrap().is_tombstone();
            depths.push((report.tip.block_number + 1 - block_number, tombstone));
        }
    }
    world.run();
    let early: Vec<_> = depths.iter().filter(|(depth, _)| *depth < 24).collect();
    assert!(!early.is_empty(), "the closing tx was never seen under 24 blocks");
    assert!(
        early.iter().all(|(_, tombstone)| !tombstone),
        "ended before the settle depth: {depths:?}"
    );
    assert_eq!(closed_flags(&world, INITIATOR, &channel_id), CloseFlags::COOPERATIVE);
    let record = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(record.is_tombstone(), "settled: {record:?}");
}

/// Our claim went to the node and was lost there (a restart without its
/// pool, another node behind the same endpoint): every later poll says
/// "unknown". A claim already sent in this session was not sent again, so
/// the user's share waited for a reload. It is sent at each such poll.
#[test]
fn a_claim_the_node_lost_is_sent_again() {
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    for _ in 0..3 {
        world.chain.mine_block();
        world.run();
    }
    let mark = world.broadcasts.len();
    world.nodes[INITIATOR].broadcasts_withheld = true;
    world.chain.mine_epochs(1);
    world.run();
    assert!(
        world.broadcasts[mark..].iter().any(|(node, _)| *node == INITIATOR),
        "the claim was sent"
    );
    world.nodes[INITIATOR].broadcasts_withheld = false;
    for _ in 0..5 {
        world.chain.mine_block();
        world.advance(2_000);
        world.run();
    }
    assert_our_share_claimed(&world, &user_script, user_before);
}

/// The node's minimum fee rate rose above the channel's commitment fee rate
/// after the commitment confirmed (a node operator's setting, or another
/// RPC node behind the same endpoint). The claim, signed by our node alone,
/// was made again at the same rate after each refusal, so our share stayed
/// on chain for as long as the node kept its minimum. Each refusal doubles
/// the claim's fee rate, up to `MAX_FEE_RATE`.
#[test]
fn a_claim_refused_for_its_fee_rate_is_made_again_at_a_higher_one() {
    let (mut world, channel_id, user_script, user_before) = ready_world_and_the_users_balance();
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    for _ in 0..3 {
        world.chain.mine_block();
        world.run();
    }
    assert_eq!(commitments_on_chain(&world, INITIATOR), [true]);
    world.chain.set_min_fee_rate(20_000);
    world.chain.mine_epochs(1);
    for _ in 0..10 {
        world.run();
        world.chain.mine_block();
    }
    world.run();
    assert_our_claim_ended_the_close(&world, &channel_id, &user_script, user_before);
}

/// A node that refuses every claim, however high its fee (its reason is
/// its word), steps our claim's fee rate up to `MAX_FEE_RATE` and never
/// past it: what it can make us burn is bounded.
#[test]
fn claims_refused_without_end_never_pay_past_the_highest_fee_rate() {
    use fiber_funding::flow::limits::MAX_FEE_RATE;
    let (mut world, channel_id, funding) = ready_world(Setup::default());
    force_close(&mut world, INITIATOR, &channel_id).unwrap();
    for _ in 0..3 {
        world.chain.mine_block();
        world.run();
    }
    let commitment = funding_spender(&world, &funding);
    let cell: u64 = commitment.raw().outputs().get(0).unwrap().capacity().unpack();
    world.chain.set_min_fee_rate(2 * MAX_FEE_RATE);
    world.chain.mine_epochs(1);
    for _ in 0..20 {
        world.run();
        world.chain.mine_block();
    }
    let commitment_hash = commitment.calc_tx_hash();
    let rates: Vec<u64> = world
        .broadcasts
        .iter()
        .filter(|(node, tx)| {
            *node == INITIATOR
                && tx.raw().inputs().len() == 1
                && tx.raw().inputs().get(0).unwrap().previous_output().tx_hash() == commitment_hash
        })
        .map(|(_, claim)| {
            let out: u64 = claim
                .raw()
                .outputs()
                .into_iter()
                .map(|o| Unpack::<u64>::unpack(&o.capacity()))
                .sum();
            (cell - out) * 1000 / (claim.as_slice().len() as u64 + 4)
        })
        .collect();
    assert!(rates.len() > 10, "claims made: {rates:?}");
    assert!(rates.windows(2).all(|pair| pair[0] <= pair[1]), "{rates:?}");
    assert!(rates.iter().all(|rate| *rate <= MAX_FEE_RATE), "{rates:?}");
    assert!(*rates.last().unwrap() > MAX_FEE_RATE / 2, "{rates:?}");
    assert_ne!(
        closed_flags(&world, INITIATOR, &channel_id),
        CloseFlags::UNCOOPERATIVE_LOCAL
    );
}

/// A backup lives outside the browser (a file, a wallet's cloud copy), and
/// one made with the wallet's own `nodeSecretKey` carries no secret: it
/// looks safe to keep anywhere. Whoever could write it could rewrite a
/// record's shutdown script, where a unilateral close's claim pays the
/// user's share: the record's key check still matched (it binds the seed
/// and the funding key only), the import took it, and the claim paid the
/// thief ("the altered record was taken; the thief's lock holds
/// 109899999390 shannons"). Each entry now carries a code only the node
/// key makes; one that does not match is left out by name, and the
/// genuine backup still brings the channel back.
#[test]
fn a_backup_altered_to_pay_someone_else_is_left_out() {
    use fiber_funding::api::backup::{parse_backup, Backup, ImportOptions};
    use fiber_funding::json::{self, Value};
    let (mut world, channel_id, funding) = ready_world(real_contracts());
    let key = world.nodes[INITIATOR].config.node_secret.backup_key();
    let records = world.initiator().backup_records();
    let made = Backup::new(&key, None, world.now_ms, &records);
    let genuine = json::parse(&json::to_string(&made).unwrap()).unwrap();

    let user_script = world.shutdown_script(INITIATOR, &channel_id);
    let thief = user_script
        .clone()
        .as_builder()
        .args([0x66u8; 20].to_vec().pack())
        .build();
    let mut altered_record = records[0].clone();
    altered_record.local.shutdown_script = thief.clone();
    let mut altered = genuine.clone();
    let entry = &mut altered
        .as_object_mut()
        .unwrap()
        .get_mut("channels")
        .unwrap()
        .as_array_mut()
        .unwrap()[0];
    entry.as_object_mut().unwrap().insert(
        "record".into(),
        Value::String(fiber_funding::primitives::encode_hex(&altered_record.encode())),
    );

    world.nodes[INITIATOR].store = CrashingStore::new();
    world.restart(INITIATOR);
    let parsed = parse_backup(&altered, &key, ImportOptions::default()).unwrap();
    assert!(parsed.records.is_empty(), "the altered record was taken");
    assert_eq!(parsed.unreadable.len(), 1);
    assert_eq!(parsed.unreadable[0].0, channel_id.to_string());
    assert!(
        parsed.unreadable[0].1.contains("authentication code does not match"),
        "{:?}",
        parsed.unreadable
    );

    let parsed = parse_backup(&genuine, &key, ImportOptions::default()).unwrap();
    assert!(parsed.unreadable.is_empty(), "{:?}", parsed.unreadable);
    let imported = world.nodes[INITIATOR].node.import_records(parsed.records);
    assert_eq!(imported.ids, vec![channel_id]);
    world.execute(INITIATOR, imported.writes);
    force_close_alone_and_claim(&mut world, &channel_id, &funding);
    assert_eq!(world.balance(&thief), 0);
}
