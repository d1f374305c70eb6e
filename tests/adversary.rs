#![cfg(not(target_arch = "wasm32"))]
//! The adversary suite, scripted: a counterparty (or a browser, a CKB RPC
//! node, a wallet) that deviates on purpose, one named attack per test. Each
//! hole of issue 7 is an attack here; every one of these tests failed on the
//! code before its fix (see the closing note) and passes after it.
//!
//! The honest parties are real `Node`s in the deterministic `World`; the
//! attacker rewrites, injects or withholds messages on the link, lies in
//! chain answers, or signs with its own wallet key.

mod common;

use ckb_types::core::ScriptHashType;
use ckb_types::packed;
use ckb_types::prelude::*;
use common::*;
use fiber_funding::chain::{LiveCell, TxStatus};
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::flow::{ChannelState, Event, FlowError};
use fiber_funding::primitives::{ChannelId, Hash256, NodeId};
use fiber_funding::store::Store;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::parts::TxParts;
use fiber_funding::wire::{FiberMessage, TxAbort, TxUpdate};

/// 1,000 CKB and the 99 CKB reserve of a default-lock shutdown script.
const USER_CONTRIBUTION: u64 = 1_099 * CKB;
/// What a user may pay above the contribution: the fee of a small tx,
/// generously. Anything beyond it is money taken.
const MAX_USER_FEE: u64 = CKB;

fn input(out_point: &packed::OutPoint) -> packed::CellInput {
    packed::CellInput::new_builder()
        .previous_output(out_point.clone())
        .since(0u64)
        .build()
}

/// The cell an out point names, from the chain itself.
fn spent_cell(world: &World, out_point: &packed::OutPoint) -> Option<packed::CellOutput> {
    let hash: [u8; 32] = out_point.tx_hash().unpack();
    let index: u32 = out_point.index().unpack();
    world.chain.transaction(&hash)?.raw().outputs().get(index as usize)
}

/// `cell` (a default-lock cell of `key`) spent by a tx of its own, mined:
/// how a side cancels a funding tx that names it.
fn spend_elsewhere(world: &mut World, cell: packed::OutPoint, key: &k256::ecdsa::SigningKey) {
    let spent = spent_cell(world, &cell).expect("a cell the chain has");
    let elsewhere = TxParts {
        cell_deps: vec![world.chain.default_lock_cell_dep()],
        inputs: vec![packed::CellInput::new_builder().previous_output(cell).build()],
        outputs: vec![spent
            .clone()
            .as_builder()
            .capacity(capacity_of(&spent) - CKB / 100)
            .build()],
        outputs_data: vec![Vec::new()],
        witnesses: vec![default_lock::placeholder_witness().as_slice().to_vec()],
        ..TxParts::default()
    }
    .build();
    let elsewhere = default_lock::sign_group(&elsewhere, &[0], key).unwrap();
    world.chain.mine_foreign_transaction(elsewhere).unwrap();
}

/// What leaves the user's wallet in `tx`, from the chain alone: the user's
/// inputs minus the outputs back to the user's lock.
fn user_outflow(world: &World, tx: &packed::Transaction) -> i128 {
    let lock = world.user.lock.clone();
    let paid: i128 = tx
        .raw()
        .inputs()
        .into_iter()
        .filter_map(|i| spent_cell(world, &i.previous_output()))
        .filter(|cell| cell.lock() == lock)
        .map(|cell| i128::from(capacity_of(&cell)))
        .sum();
    let back: i128 = tx
        .raw()
        .outputs()
        .into_iter()
        .filter(|o| o.lock() == lock)
        .map(|o| i128::from(capacity_of(&o)))
        .sum();
    paid - back
}

/// The user was never asked to sign, and never released, a tx that takes
/// more than the channel's contribution and a small fee.
fn assert_user_never_overpays(world: &World) {
    for (_, tx) in &world.handed_out {
        let outflow = user_outflow(world, tx);
        assert!(
            (i128::from(USER_CONTRIBUTION)..=i128::from(USER_CONTRIBUTION + MAX_USER_FEE)).contains(&outflow),
            "the wallet was asked to sign a tx taking {outflow} shannons from the user"
        );
    }
}

/// A flow whose unsigned tx the wallet got and signed; not submitted yet.
fn handed_out_and_signed() -> (World, ChannelId, packed::Transaction) {
    let world = world_at_the_signer();
    let (channel_id, signed) = world.user.signed_in_url.clone().expect("handed out");
    (world, channel_id, signed)
}

fn user_cell(world: &World, ckb: u64) -> LiveCell {
    world
        .live_cells(&world.user.lock.clone())
        .into_iter()
        .find(|c| capacity_of(&c.output) == ckb * CKB)
        .unwrap_or_else(|| panic!("no {ckb} CKB user cell"))
}

fn acceptor_lock(world: &World) -> packed::Script {
    default_lock::lock_script_for_key(world.acceptor_key.verifying_key())
}

/// Node `node` refused a peer message for a reason containing `needle`.
fn assert_rejected(world: &World, node: usize, needle: &str) {
    let rejections = world.rejections(node);
    assert!(
        rejections.iter().any(|r| r.contains(needle)),
        "node {node} refused nothing about {needle:?}: {rejections:?}"
    );
}

fn tx_abort_reasons(world: &World, from: usize) -> Vec<String> {
    world
        .sent_log
        .iter()
        .filter(|(index, _)| *index == from)
        .filter_map(|(_, m)| match m {
            FiberMessage::TxAbort(abort) => Some(String::from_utf8_lossy(&abort.message).into_owned()),
            _ => None,
        })
        .collect()
}

fn sent_by(world: &World, from: usize, name: &str) -> usize {
    world
        .sent_log
        .iter()
        .filter(|(index, m)| *index == from && m.name() == name)
        .count()
}

// ---- hole 1: a chain answer checked against the wrong TxUpdate ---------------------------

/// The acceptor sends a harmless TxUpdate A, then at once B, whose only
/// "acceptor" input is another of the user's cells, with a change output
/// taking its value. A's chain answer must not pass for B.
#[test]
fn attack_1_swapped_tx_update_cannot_make_the_wallet_sign_another_user_cell() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![700, 800, 900],
        ..Setup::default()
    });
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    let spare = user_cell(&world, 900);
    world.run_until_queued_from(ACCEPTOR, "TxUpdate");
    let FiberMessage::TxUpdate(a) = world.queued_from(ACCEPTOR, "TxUpdate") else {
        unreachable!()
    };
    let ours = world
        .initiator()
        .record(&a.channel_id)
        .unwrap()
        .funding_tx
        .clone()
        .unwrap();
    let (our_inputs, our_outputs) = (ours.raw().inputs().len(), ours.raw().outputs().len());
    let thief = acceptor_lock(&world);
    let b = with_parts(&a.tx, |p| {
        p.inputs.truncate(our_inputs);
        p.witnesses.truncate(our_inputs);
        p.outputs.truncate(our_outputs);
        p.outputs_data.truncate(our_outputs);
        p.inputs.push(input(&spare.out_point));
        p.witnesses.push(Vec::new());
        p.outputs.push(
            packed::CellOutput::new_builder()
                // Within what A's single acceptor input (500 CKB) can be
                // said to pay for; the rest of the 900 would go to miners.
                .capacity(400 * CKB)
                .lock(thief.clone())
                .build(),
        );
        p.outputs_data.push(Vec::new());
    });
    world.inject(
        ACCEPTOR,
        FiberMessage::TxUpdate(TxUpdate {
            channel_id: a.channel_id,
            tx: b,
        }),
    );
    world.run();
    for (_, tx) in &world.handed_out {
        let spends_spare = tx
            .raw()
            .inputs()
            .into_iter()
            .any(|i| i.previous_output() == spare.out_point);
        assert!(!spends_spare, "the wallet was asked to sign away the user's spare cell");
    }
    assert_user_never_overpays(&world);
    assert_rejected(&world, INITIATOR, "TxUpdate");
}

// ---- hole 2: capacity arithmetic that wraps -------------------------------------------------

/// An open whose `AcceptChannel` announces `reserve`, run as far as it goes.
fn with_the_acceptor_announcing_a_reserve_of(reserve: u64) -> World {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "AcceptChannel");
    world.tamper_next("AcceptChannel", |m| {
        if let FiberMessage::AcceptChannel(m) = m {
            m.reserved_ckb_amount = reserve;
        }
    });
    world.run();
    world
}

/// The acceptor announces a contribution of 2^64 − D: `ours + contribution`
/// wraps to ours − D in a release build. It must be refused outright.
#[test]
fn attack_2_a_contribution_near_2_pow_64_is_refused_without_wrapping_or_panicking() {
    let world = with_the_acceptor_announcing_a_reserve_of(u64::MAX - 500 * CKB);
    assert!(world.handed_out.is_empty(), "nothing may be handed out");
    assert_rejected(&world, INITIATOR, "reserved_ckb_amount");
}

/// A browser whose outputs sum past 2^64: the acceptor's "needed" must not wrap.
#[test]
fn attack_2_initiator_outputs_summing_past_2_pow_64_are_refused() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxUpdate");
    world.tamper_next("TxUpdate", |m| {
        if let FiberMessage::TxUpdate(m) = m {
            m.tx = with_parts(&m.tx, |p| {
                let change = p.outputs.len() - 1;
                p.outputs[change] = p.outputs[change].clone().as_builder().capacity(u64::MAX - CKB).build();
            });
        }
    });
    world.run();
    assert_eq!(sent_by(&world, ACCEPTOR, "TxUpdate"), 0, "the acceptor added its part");
    let reasons = tx_abort_reasons(&world, ACCEPTOR).join(" | ");
    assert!(reasons.contains("overflow") || reasons.contains("exceed"), "{reasons}");
}

// ---- hole 3: the acceptor checked only the funding output's args ----------------------------

/// The initiator's next `TxUpdate` funds "the channel" into a lock under
/// another code hash, one of its own that ignores the args.
fn fund_into_a_lock_of_its_own(world: &mut World) {
    world.tamper_next("TxUpdate", |m| {
        if let FiberMessage::TxUpdate(m) = m {
            m.tx = with_parts(&m.tx, |p| {
                let lock = p.outputs[0].lock();
                let foreign = lock.as_builder().code_hash([0x66; 32].pack()).build();
                p.outputs[0] = p.outputs[0].clone().as_builder().lock(foreign).build();
            });
        }
    });
}

/// A browser funds "the channel" into a lock of its own that ignores the
/// args. The acceptor must compare the whole script.
#[test]
fn attack_3_a_funding_output_under_another_code_hash_is_refused_by_the_acceptor() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxUpdate");
    fund_into_a_lock_of_its_own(&mut world);
    world.run();
    assert_eq!(sent_by(&world, ACCEPTOR, "TxUpdate"), 0, "the acceptor added its part");
    assert_eq!(sent_by(&world, ACCEPTOR, "CommitmentSigned"), 0);
    let reasons = tx_abort_reasons(&world, ACCEPTOR).join(" | ");
    assert!(reasons.contains("funding output"), "{reasons}");
}

/// The acceptor aborted a channel (a refused `TxUpdate`); its tombstone
/// still holds the terms. A well-formed `TxUpdate` for it then made the
/// acceptor look its inputs up on chain (up to 400 reads), fail to add its
/// part (its cells were freed), close the channel again (one more durable
/// write) and send one more `TxAbort`, as often as the peer liked, outside
/// the per-peer limit of unfunded channels. An ended channel takes no
/// funding message.
#[test]
fn acceptor_attack_funding_messages_for_an_aborted_channel_cost_nothing() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxUpdate");
    let genuine = world.queued_from(INITIATOR, "TxUpdate");
    fund_into_a_lock_of_its_own(&mut world);
    world.run();
    assert_eq!(tx_abort_reasons(&world, ACCEPTOR).len(), 1);
    let channel_id = world.only_channel(ACCEPTOR).channel_id;
    let before = world.stored_record(ACCEPTOR, &channel_id).unwrap();
    assert!(before.closed.is_some());

    for _ in 0..3 {
        world.inject(INITIATOR, genuine.clone());
        world.run();
    }
    assert_eq!(tx_abort_reasons(&world, ACCEPTOR).len(), 1, "a TxAbort per TxUpdate");
    assert_eq!(
        world.stored_record(ACCEPTOR, &channel_id).unwrap(),
        before,
        "the ended channel was written again"
    );
}

/// A browser adds an output carrying a type script and data, paid from its
/// own change. The acceptor's default-lock signature covers the whole tx,
/// and a type script that grants its owner a right when the owner's lock
/// is among the inputs (sUDT's owner mode: mint any amount) would take
/// that right from the hub's input. The initiator's outputs must be plain
/// cells, as the ones this module builds are; and none below what it occupies.
#[test]
fn acceptor_attack_an_initiator_output_with_a_type_script_is_refused() {
    let typed = packed::Script::new_builder()
        .code_hash([0x5d; 32].pack())
        .hash_type(ScriptHashType::Type)
        .build();
    type MakeOutput = Box<dyn Fn(packed::CellOutput) -> (packed::CellOutput, Vec<u8>)>;
    let cases: [(&str, MakeOutput); 3] = [
        (
            "type script",
            Box::new(move |out| {
                (
                    out.as_builder().type_(Some(typed.clone()).pack()).build(),
                    vec![0xff; 16],
                )
            }),
        ),
        (
            "occupies",
            Box::new(|out| (out.as_builder().capacity(60 * CKB).build(), Vec::new())),
        ),
        (
            "hash type",
            Box::new(|out| {
                let lock = out.lock().as_builder().hash_type(packed::Byte::new(5)).build();
                (out.as_builder().lock(lock).build(), Vec::new())
            }),
        ),
    ];
    for (needle, make) in cases {
        let mut world = World::new(Setup::default());
        world.open(1000).unwrap();
        world.run_until_queued_from(INITIATOR, "TxUpdate");
        world.tamper_next("TxUpdate", |m| {
            if let FiberMessage::TxUpdate(m) = m {
                m.tx = with_parts(&m.tx, |p| {
                    let change = p.outputs.len() - 1;
                    let (added, data) = make(p.outputs[change].clone().as_builder().capacity(200 * CKB).build());
                    let left = capacity_of(&p.outputs[change]) - capacity_of(&added) - CKB / 100;
                    p.outputs[change] = p.outputs[change].clone().as_builder().capacity(left).build();
                    p.outputs.push(added);
                    p.outputs_data.push(data);
                });
            }
        });
        world.run();
        assert_eq!(
            sent_by(&world, ACCEPTOR, "TxUpdate"),
            0,
            "{needle}: the acceptor added its part"
        );
        let reasons = tx_abort_reasons(&world, ACCEPTOR).join(" | ");
        assert!(reasons.contains(needle), "{needle}: {reasons}");
    }
}

// ---- hole 4: a CKB RPC trusted for the user's own cells -------------------------------------

/// The indexer understates a cell's capacity by 100 CKB: built on that, the
/// difference would become miner fee.
#[test]
fn attack_4_an_rpc_understating_a_cells_capacity_cannot_burn_the_difference() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let params = world.open_params(1000);
    let mut cells = world.live_cells(&world.user.lock.clone());
    cells[0].output = cells[0]
        .output
        .clone()
        .as_builder()
        .capacity(capacity_of(&cells[0].output) - 100 * CKB)
        .build();
    world.open_from_cells(&params, cells).unwrap();
    world.run();
    assert_user_never_overpays(&world);
    assert!(world.handed_out.is_empty(), "a tx built on a lie was handed out");
    let view = world.initiator().channels().pop().unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::FUNDING_ABORTED));
    assert!(view.close_reason.unwrap().contains("misreported"));
}

/// The indexer presents a token cell (type script and data) as plain CKB:
/// spending it would burn the token.
#[test]
fn attack_4_an_rpc_hiding_a_cells_type_and_data_cannot_burn_a_token() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![],
        ..Setup::default()
    });
    let token_type = packed::Script::new_builder()
        .code_hash([0x77; 32].pack())
        .hash_type(ScriptHashType::Type)
        .build();
    let lock = world.user.lock.clone();
    let token = world.chain.genesis_cell(
        packed::CellOutput::new_builder()
            .capacity(2_000 * CKB)
            .lock(lock.clone())
            .type_(Some(token_type).pack())
            .build(),
        vec![0x10; 16],
    );
    world.user.auto_submit = false;
    let params = world.open_params(1000);
    let disguised = LiveCell {
        out_point: token.clone(),
        output: packed::CellOutput::new_builder()
            .capacity(2_000 * CKB)
            .lock(lock)
            .build(),
        output_data: Vec::new(),
        block_number: 0,
    };
    world.open_from_cells(&params, vec![disguised]).unwrap();
    world.run();
    assert!(
        world.handed_out.is_empty(),
        "the wallet was asked to spend a token cell"
    );
    let view = world.initiator().channels().pop().unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::FUNDING_ABORTED));
}

/// The indexer lists, among the user's cells, a real cell under another
/// lock (a stranger's; a peer colluding with the node could own it). The
/// hash-checked path confirms it exists, but the wallet can never sign it:
/// a tx spending it never confirms, every input stays live, and once our
/// witnesses left the flow could no longer give up, while the cell's owner
/// could complete the tx whenever it chose. Only the wallet's cells are spent.
#[test]
fn attack_4_an_rpc_listing_another_locks_cell_as_the_users_gets_it_never_spent() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let user_lock = world.user.lock.clone();
    let stranger_lock = user_lock
        .clone()
        .as_builder()
        .args([0x55u8; 20].to_vec().pack())
        .build();
    let stranger = world.chain.genesis_cell(
        packed::CellOutput::new_builder()
            .capacity(5_000 * CKB)
            .lock(stranger_lock.clone())
            .build(),
        Vec::new(),
    );
    let params = world.open_params(1000);
    let mut cells = vec![LiveCell {
        out_point: stranger.clone(),
        output: packed::CellOutput::new_builder()
            .capacity(5_000 * CKB)
            .lock(stranger_lock)
            .build(),
        output_data: Vec::new(),
        block_number: 0,
    }];
    cells.extend(world.live_cells(&user_lock));
    world.open_from_cells(&params, cells).unwrap();
    world.run();
    let (_, unsigned) = world.handed_out.first().expect("built from the user's own cells");
    for input in unsigned.raw().inputs() {
        let out_point = input.previous_output();
        assert_ne!(out_point, stranger, "the stranger's cell was spent");
    }
}

// ---- hole 5: peer-chosen terms without bounds -----------------------------------------------

/// A browser's OpenChannel with one term changed; the acceptor must refuse
/// it with a TxAbort naming the term, and keep nothing.
fn acceptor_refuses_open(change: impl FnOnce(&mut fiber_funding::wire::OpenChannel), term: &str) {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.tamper_next("OpenChannel", |m| {
        if let FiberMessage::OpenChannel(m) = m {
            change(m);
        }
    });
    world.run();
    assert!(world.acceptor().channels().is_empty(), "the acceptor kept a channel");
    assert_eq!(sent_by(&world, ACCEPTOR, "AcceptChannel"), 0);
    let reasons = tx_abort_reasons(&world, ACCEPTOR).join(" | ");
    assert!(reasons.contains(term), "{term}: {reasons}");
    assert_rejected(&world, ACCEPTOR, term);
}

#[test]
fn attack_5_a_funding_fee_rate_that_would_burn_the_hubs_funds_is_refused() {
    acceptor_refuses_open(|m| m.funding_fee_rate = 100_000_000_000, "funding_fee_rate");
}

#[test]
fn attack_5_a_commitment_fee_rate_above_the_limit_is_refused() {
    acceptor_refuses_open(|m| m.commitment_fee_rate = 1 << 50, "commitment_fee_rate");
}

#[test]
fn attack_5_a_commitment_delay_with_since_flag_bits_is_refused() {
    acceptor_refuses_open(|m| m.commitment_delay_epoch |= 0x20 << 56, "commitment_delay_epoch");
}

#[test]
fn attack_5_a_commitment_delay_with_an_invalid_fraction_is_refused() {
    // Epoch 1 and 3/2 of the next: index 3 of length 2.
    acceptor_refuses_open(
        |m| m.commitment_delay_epoch = (2 << 40) | (3 << 24) | 1,
        "commitment_delay_epoch",
    );
}

#[test]
fn attack_5_a_commitment_delay_of_two_months_is_refused() {
    acceptor_refuses_open(|m| m.commitment_delay_epoch = (1 << 40) | 360, "commitment_delay_epoch");
}

#[test]
fn attack_5_a_shutdown_script_with_huge_args_is_refused() {
    acceptor_refuses_open(
        |m| {
            m.shutdown_script = m
                .shutdown_script
                .clone()
                .as_builder()
                .args(vec![7u8; 20_000].pack())
                .build();
            // Enough reserve for such a cell, so only the size is wrong.
            m.reserved_ckb_amount = 21_000 * CKB;
        },
        "shutdown_script",
    );
}

/// A TxAbort with a 60 KB reason: refused, nothing stored, the channel goes on.
#[test]
fn attack_5_an_oversized_tx_abort_reason_is_refused_and_changes_nothing() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let temporary = world.open(1000).unwrap();
    world.run();
    let channel_id = world.initiator().channel(&temporary).unwrap().channel_id;
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();
    world.inject(
        ACCEPTOR,
        FiberMessage::TxAbort(TxAbort {
            channel_id,
            message: vec![b'x'; 60_000],
        }),
    );
    world.run();
    assert_rejected(&world, INITIATOR, "TxAbort");
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), before);
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::SigningCommitment(
            fiber_funding::flow::state::SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT
        ))
    );
}

// ---- hole 6: timers and aborts that lose keys ------------------------------------------------

/// Collaboration takes 250 s (a slow chain), then the user takes 200 s to
/// sign: well inside the initiator's 300 s, which starts when the tx is
/// final. The acceptor must count from the same moment, not from the open.
#[test]
fn attack_6_a_slow_collaboration_does_not_make_the_acceptor_abort_while_the_user_signs() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    // Everything up to the initiator's check of the acceptor's inputs.
    world.run_until_queued_from(ACCEPTOR, "TxComplete");
    while world.queries.is_empty() {
        assert!(world.step());
    }
    world.advance(250_000);
    world.run();
    let (channel_id, signed) = world.user.signed_in_url.clone().expect("handed out");
    world.advance(200_000);
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// The flow aborts after the unsigned tx was handed out; the user's signed tx
/// (it was in the wallet's redirect URL) leaks, and the acceptor completes
/// and broadcasts it. The user's funding key and the acceptor's commitment
/// signature must still be there: the channel exists, and the user can close it.
#[test]
fn attack_6_a_signed_tx_confirming_after_an_abort_does_not_lose_the_funding_key() {
    let (mut world, channel_id, signed) = handed_out_and_signed();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    assert!(matches!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::Closed(_))
    ));
    let complete = completed_by_the_acceptor(&world, &signed);
    world.chain.send_transaction(complete).unwrap();
    for _ in 0..4 {
        world.chain.mine_block();
        world.run();
    }
    assert_funded_after_the_abort(&world, &channel_id);
}

/// The acceptor keeps its `CommitmentSigned` back. Had the unsigned tx gone
/// to the wallet anyway, the user's signed copy (in the redirect URL) could
/// leak, and the acceptor complete and broadcast it: the user's money in a
/// 2-of-2 output with no commitment to close it, at the acceptor's mercy.
/// The wallet sees the tx only once the peer's commitment signature is
/// verified; without it the flow ends at its deadline, nothing signed.
#[test]
fn attack_a_peer_keeping_its_commitment_signature_back_never_gets_the_tx_signed() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "CommitmentSigned");
    assert_eq!(world.drop_queued("CommitmentSigned"), 1);
    world.run();
    assert!(
        world.user.signed_in_url.is_none(),
        "the wallet was asked to sign before the peer signed our commitment"
    );
    let channel_id = world.only_channel(INITIATOR).channel_id;
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::SigningCommitment(Default::default()))
    );

    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    assert!(world.user.signed_in_url.is_none());
    let record = world.stored_record(INITIATOR, &channel_id).unwrap();
    let closed = record.closed.as_ref().expect("aborted at its deadline");
    assert!(closed.watch.is_none(), "no signed tx can exist: nothing to watch");
}

/// The leaked signed tx with the acceptor's wallet signatures added.
fn completed_by_the_acceptor(world: &World, signed: &packed::Transaction) -> packed::Transaction {
    let acceptor_lock = acceptor_lock(world);
    let acceptor_inputs: Vec<usize> = signed
        .raw()
        .inputs()
        .into_iter()
        .enumerate()
        .filter(|(_, i)| spent_cell(world, &i.previous_output()).is_some_and(|c| c.lock() == acceptor_lock))
        .map(|(index, _)| index)
        .collect();
    default_lock::sign_group(signed, &acceptor_inputs, &world.acceptor_key).unwrap()
}

fn assert_funded_after_the_abort(world: &World, channel_id: &ChannelId) {
    assert!(
        world.initiator().signed_own_commitment(channel_id).is_some(),
        "the user lost the key to a confirmed 2-of-2 output"
    );
    let told = world.events.iter().any(|(node, event)| {
        *node == INITIATOR
            && matches!(event, Event::FundingConfirmedAfterAbort { channel_id: id, .. } if id == channel_id)
    });
    assert!(told, "the app was not told the aborted channel got funded");
}

/// The same leak, read through a CKB node that missed the funding tx (a
/// load-balanced endpoint lagging, a node on another fork): its status
/// polls answer "unknown" while our inputs read dead, spent by that very
/// tx. Taken on its word once that was buried, the aborted flow's keys were
/// wiped with the 2-of-2 output on chain. Our input's spender is now read
/// (hash-checked) before anything is wiped: the funding tx, so funded.
#[test]
fn attack_6_a_node_that_missed_the_funding_tx_does_not_get_the_keys_wiped() {
    let (mut world, channel_id, signed) = handed_out_and_signed();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    let complete = completed_by_the_acceptor(&world, &signed);
    world.status_hidden.push(Hash256(complete.calc_tx_hash().unpack()));
    world.chain.send_transaction(complete).unwrap();
    for _ in 0..8 {
        world.chain.mine_block();
        world.run();
    }
    let settled = world
        .events
        .iter()
        .any(|(node, event)| *node == INITIATOR && matches!(event, Event::AbortSettled { .. }));
    assert!(!settled, "the abort was taken as settled");
    assert_funded_after_the_abort(&world, &channel_id);
}

/// The honest end of the same watch: the flow aborted after the hand-out,
/// and the user spends one of its cells from the wallet (the way out).
/// Once that is buried and read back as spent by a tx other than the
/// funding tx, the txs and signatures go (the seed stays: the node's word
/// could be false) and the app hears `abort_settled`.
#[test]
fn an_aborted_flow_whose_input_the_user_spent_elsewhere_settles() {
    let (mut world, channel_id, signed) = handed_out_and_signed();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    let input = signed.raw().inputs().get(world.user_input_indices(&signed)[0]).unwrap();
    let user_key = world.user.key.clone();
    spend_elsewhere(&mut world, input.previous_output(), &user_key);
    for _ in 0..8 {
        world.chain.mine_block();
        world.run();
    }
    let settled = world.events.iter().any(|(node, event)| {
        *node == INITIATOR && matches!(event, Event::AbortSettled { channel_id: id } if *id == channel_id)
    });
    assert!(settled, "the abort never settled");
    assert!(
        world.initiator().signed_own_commitment(&channel_id).is_none(),
        "the keys of a tx that can never confirm were kept"
    );
    let record = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(record.is_tombstone() && record.funding_tx.is_none() && record.peer_commitment_signature.is_none());
    assert_ne!(record.channel_seed, Hash256([0; 32]), "the seed is kept");
}

/// A spender answer must be about an input of this flow: one about any
/// other cell (a stale or made-up answer) wipes nothing.
#[test]
fn a_spender_answer_about_another_cell_wipes_nothing() {
    use fiber_funding::flow::ChainEvent;
    let (mut world, channel_id, _) = handed_out_and_signed();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    let report = world.chain.report(&[0x99; 32]);
    let elsewhere = packed::OutPoint::new_builder().tx_hash([0x98; 32].pack()).build();
    let answer = ChainEvent::SpenderOf {
        channel_id,
        spender: Some((made_up_spender(&elsewhere), report)),
        out_point: elsewhere,
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    world.execute(INITIATOR, actions);
    assert!(
        world.initiator().signed_own_commitment(&channel_id).is_some(),
        "the keys were wiped on an answer about another cell"
    );
    let refused = world.events.iter().any(|(node, event)| {
        *node == INITIATOR
            && matches!(event, Event::FundingTxRejected { reason, .. } if reason.contains("no input of ours"))
    });
    assert!(refused, "the answer was not refused");
}

/// The tx a node names as our input's spender is only its word until it is
/// committed and buried: a node can make up a tx that spends the input (the
/// hash check passes on a hash it computed itself) and call it pending.
/// Wiping the 2-of-2 key on that would leave the funding tx, which the peer
/// holds signed, free to confirm later with no way to close the channel.
#[test]
fn attack_a_made_up_spender_that_is_not_buried_wipes_no_keys() {
    use fiber_funding::chain::{TxReport, TxStatus};
    use fiber_funding::flow::ChainEvent;
    let (mut world, channel_id, input) = aborted_after_the_hand_out();
    let tip = world.chain.report(&[0x99; 32]).tip;
    let confirmations = world.nodes[INITIATOR].node.config().funding_confirmations;
    let not_buried = [
        TxStatus::Pending,
        TxStatus::Unknown,
        TxStatus::Committed {
            block_number: tip.block_number.saturating_add(2).saturating_sub(confirmations),
        },
    ];
    for status in not_buried {
        let answer = ChainEvent::SpenderOf {
            channel_id,
            out_point: input.clone(),
            spender: Some((
                made_up_spender(&input),
                TxReport {
                    status,
                    block_epoch: None,
                    tip,
                },
            )),
        };
        let now = world.now_ms;
        let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
        world.execute(INITIATOR, actions);
        assert!(
            world.initiator().signed_own_commitment(&channel_id).is_some(),
            "the keys were wiped on a spender {status:?} at tip {}",
            tip.block_number
        );
    }
}

/// The keys go on a spender buried under the settle depth, not the
/// funding's: a reorganisation deeper than a funding's few confirmations
/// (or a node that says so) must not cost the 2-of-2 key of a tx a leaked
/// signed copy could still confirm. (The spender is one the wallet signed:
/// an unsigned one settles nothing, `attack_a_made_up_spender_…`.)
#[test]
fn attack_a_spender_buried_only_as_deep_as_the_funding_wipes_no_keys() {
    use fiber_funding::chain::TxReport;
    use fiber_funding::flow::ChainEvent;
    let setup = Setup {
        settle_confirmations: Some(24),
        ..Setup::default()
    };
    let mut world = world_at_the_signer_with(setup);
    let (channel_id, _) = world.user.signed_in_url.clone().expect("handed out");
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    let input = world.initiator().record(&channel_id).unwrap().own_cells[0]
        .out_point
        .clone();
    for _ in 0..24 {
        world.chain.mine_block();
    }
    let tip = world.chain.report(&[0x99; 32]).tip;
    let user_key = world.user.key.clone();
    let confirmations = world.nodes[INITIATOR].node.config().funding_confirmations;
    let spender = |block_number| ChainEvent::SpenderOf {
        channel_id,
        out_point: input.clone(),
        spender: Some((
            wallet_signed_spender(&input, &user_key),
            TxReport {
                status: TxStatus::Committed { block_number },
                block_epoch: None,
                tip,
            },
        )),
    };
    let as_deep_as_the_funding = tip.block_number + 1 - confirmations;
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR]
        .node
        .chain_event(spender(as_deep_as_the_funding), now);
    world.execute(INITIATOR, actions);
    assert!(
        world.initiator().signed_own_commitment(&channel_id).is_some(),
        "the keys were wiped on a spender {confirmations} blocks deep"
    );
    let settle_deep = tip.block_number + 1 - 24;
    let actions = world.nodes[INITIATOR].node.chain_event(spender(settle_deep), now);
    world.execute(INITIATOR, actions);
    world.run();
    assert!(
        world.initiator().signed_own_commitment(&channel_id).is_none(),
        "a spender at the settle depth settles the abort"
    );
}

// ---- hole 7: one peer's TxAbort cancels another peer's pending open ------------------------

#[test]
fn attack_7_another_peers_tx_abort_does_not_cancel_a_pending_open() {
    let mut world = World::new(Setup::default());
    let temporary = world.open(1000).unwrap();
    // The acceptor receives OpenChannel and starts looking up its cells.
    assert!(world.step());
    assert!(!world.queries.is_empty(), "the acceptor asked for its cells");
    let stranger: NodeId = fiber_funding::crypto::keys::NodeSecret::from_bytes([0x99; 32])
        .unwrap()
        .node_id();
    let now = world.now_ms;
    let abort = FiberMessage::TxAbort(TxAbort {
        channel_id: temporary,
        message: b"never mind".to_vec(),
    });
    let actions = world.nodes[ACCEPTOR].node.peer_message(&stranger, abort, now);
    world.execute(ACCEPTOR, actions);
    world.run();
    assert_channel_ready(&world);
}

// ---- hole 8: the user's witnesses were never checked ----------------------------------------

/// A wallet returns a junk signature: it must be refused at submit, and the
/// genuine one accepted afterwards (witnesses do not change the tx hash).
#[test]
fn attack_8_a_junk_wallet_signature_is_refused_and_does_not_wedge_the_flow() {
    let (mut world, channel_id, signed) = handed_out_and_signed();
    let junk = with_parts(&signed, |p| {
        let witness = packed::WitnessArgs::new_builder()
            .lock(Some(ckb_types::bytes::Bytes::from(vec![0x42u8; 65])).pack())
            .build();
        p.witnesses[0] = witness.as_bytes().to_vec();
    });
    match world.submit(&channel_id, &junk) {
        Err(FlowError::SignedTx(error)) => assert!(error.to_string().contains("signature"), "{error}"),
        other => panic!("a junk signature was taken: {other:?}"),
    }
    world
        .submit(&channel_id, &signed)
        .expect("the genuine signature after the junk one");
    world.run();
    assert_channel_ready(&world);
}

// ---- hole 9: the deadline was not stored ----------------------------------------------------

/// A flow opened with a 5 s timeout, reopened by a page whose options say
/// 300 s: it must still expire at 5 s.
#[test]
fn attack_9_a_reopen_with_other_options_does_not_move_the_stored_deadline() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.nodes[INITIATOR].config.external_funding_timeout_ms = 5_000;
    world.restart(INITIATOR);
    let temporary = world.open(1000).unwrap();
    world.run();
    world.nodes[INITIATOR].config.external_funding_timeout_ms = 300_000;
    world.restart(INITIATOR);
    world.run();
    world.advance(6_000);
    world.run();
    let channel_id = world.initiator().channel(&temporary).unwrap().channel_id;
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::Closed(CloseFlags::FUNDING_ABORTED)),
        "the 5 s deadline was stretched to 300 s by the new options"
    );
}

// ---- hole 11: one peer message stops the counterparty -------------------------------------

#[test]
fn attack_11_a_fee_rate_of_u64_max_is_refused_without_a_panic() {
    acceptor_refuses_open(|m| m.funding_fee_rate = u64::MAX, "funding_fee_rate");
    acceptor_refuses_open(|m| m.commitment_fee_rate = u64::MAX, "commitment_fee_rate");
}

/// A channel id both sides can see, for the tests that need the final id.
#[allow(dead_code)]
fn final_id(world: &World, temporary: &ChannelId) -> Hash256 {
    world.initiator().channel(temporary).unwrap().channel_id
}

// ---- the same holes, against the counterparty (a malicious browser) -------------------------

/// Hole 1 on the acceptor: the browser sends its part A, then at once B
/// while A's inputs are being checked. B must be refused, A goes on.
#[test]
fn acceptor_attack_1_a_swapped_tx_update_is_refused_while_the_first_is_checked() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxUpdate");
    let FiberMessage::TxUpdate(a) = world.queued_from(INITIATOR, "TxUpdate") else {
        unreachable!()
    };
    // B: the same part with the user's change cut, the difference left as fee.
    let b = with_parts(&a.tx, |p| {
        let change = p.outputs.len() - 1;
        let capacity = capacity_of(&p.outputs[change]) - 10 * CKB;
        p.outputs[change] = p.outputs[change].clone().as_builder().capacity(capacity).build();
    });
    world.inject(
        INITIATOR,
        FiberMessage::TxUpdate(TxUpdate {
            channel_id: a.channel_id,
            tx: b,
        }),
    );
    world.run();
    assert_rejected(&world, ACCEPTOR, "being checked");
    assert_channel_ready(&world);
}

/// Hole 4 on the acceptor: its own indexer understates one of its cells by
/// 100 CKB; it must build from the cell's transaction, not the indexer.
#[test]
fn acceptor_attack_4_its_own_indexer_understating_a_cell_burns_nothing() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    // The acceptor receives OpenChannel and asks for its cells.
    assert!(world.step());
    let (index, channel_id, query) = world.queries.pop_front().expect("the acceptor's cell query");
    assert_eq!(index, ACCEPTOR);
    let fiber_funding::flow::ChainQuery::LiveCells { lock } = query else {
        panic!("expected the acceptor's LiveCells query")
    };
    let mut cells = world.live_cells(&lock);
    for cell in &mut cells {
        cell.output = cell
            .output
            .clone()
            .as_builder()
            .capacity(capacity_of(&cell.output) - 100 * CKB)
            .build();
    }
    let now = world.now_ms;
    let actions = world.nodes[ACCEPTOR]
        .node
        .chain_event(fiber_funding::flow::ChainEvent::LiveCells { channel_id, cells }, now);
    world.execute(ACCEPTOR, actions);
    world.run();
    assert_channel_ready(&world);
    let lock = acceptor_lock(&world);
    let (_, tx) = world.broadcasts.last().expect("broadcast").clone();
    let paid: u64 = tx
        .raw()
        .inputs()
        .into_iter()
        .filter_map(|i| spent_cell(&world, &i.previous_output()))
        .filter(|c| c.lock() == lock)
        .map(|c| capacity_of(&c))
        .sum();
    let back: u64 = tx
        .raw()
        .outputs()
        .into_iter()
        .filter(|o| o.lock() == lock)
        .map(|o| capacity_of(&o))
        .sum();
    assert!(
        paid - back <= 99 * CKB + CKB,
        "the counterparty paid {} shannons",
        paid - back
    );
}

/// Hole 8 on the acceptor: the browser's TxSignatures carry a junk default-
/// lock signature; the acceptor refuses them instead of taking a tx that
/// can never confirm.
#[test]
fn acceptor_attack_8_junk_user_witnesses_are_refused_by_the_acceptor() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxSignatures");
    world.tamper_next("TxSignatures", |m| {
        if let FiberMessage::TxSignatures(m) = m {
            let witness = packed::WitnessArgs::new_builder()
                .lock(Some(ckb_types::bytes::Bytes::from(vec![0x42u8; 65])).pack())
                .build();
            m.witnesses[0] = witness.as_bytes().to_vec();
        }
    });
    world.run();
    assert_rejected(&world, ACCEPTOR, "TxSignatures do not sign");
}

/// A peer opening channel after channel and funding none: each open
/// reserves a cell of the hub's wallet until its deadline, so one peer
/// could hold every cell and keep the hub from anyone else. As LDK does,
/// the acceptor takes at most four unfunded channels per peer; the fifth
/// open is refused by name although a cell is free for it, and once one of
/// the four ends, an open is taken again.
#[test]
fn acceptor_attack_a_peer_cannot_hold_more_than_four_unfunded_channels() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![1_500; 6],
        acceptor_cells_ckb: vec![500; 6],
        ..Setup::default()
    });
    world.user.auto_submit = false;
    let mut opened = Vec::new();
    for _ in 0..5 {
        opened.push(world.open(1000).unwrap());
        world.run();
    }
    assert_eq!(sent_by(&world, ACCEPTOR, "AcceptChannel"), 4);
    assert_eq!(world.handed_out.len(), 4);
    assert_eq!(world.acceptor().channels().len(), 4);
    let reasons = tx_abort_reasons(&world, ACCEPTOR).join(" | ");
    assert!(reasons.contains("4 unfunded channels"), "{reasons}");
    assert_rejected(&world, ACCEPTOR, "4 unfunded channels");

    let now = world.now_ms;
    let first = world.handed_out[0].0;
    let actions = world.nodes[INITIATOR].node.abandon_channel(&first, now).unwrap();
    world.execute(INITIATOR, actions);
    world.run();
    world.open(1000).unwrap();
    world.run();
    assert_eq!(sent_by(&world, ACCEPTOR, "AcceptChannel"), 5);
    assert_eq!(world.handed_out.len(), 5);
}

/// Hole 9 on the acceptor: its stored deadline holds when it restarts with
/// another timeout.
#[test]
fn acceptor_attack_9_a_restart_with_another_timeout_keeps_the_stored_deadline() {
    let mut world = world_at_the_signer();
    let channel_id = world.acceptor().channels()[0].channel_id;
    let deadline = world.acceptor().channel(&channel_id).unwrap().deadline_ms;
    world.nodes[ACCEPTOR].config.external_funding_timeout_ms = 10 * TIMEOUT_MS;
    world.restart(ACCEPTOR);
    world.run();
    assert_eq!(world.acceptor().channel(&channel_id).unwrap().deadline_ms, deadline);
}

// ---- a final channel id another channel already has -------------------------------------

/// A final channel id is the hash of both sides' basepoints, sorted. A peer
/// that answers two of our opens with each other's basepoints gives both the
/// same id; the second must not take the first one's place. Had it, the
/// first channel's record (its keys, the peer's commitment signature) would
/// be replaced in memory and in storage while its funding tx might confirm.
#[test]
fn attack_an_accept_giving_another_channels_id_is_refused_and_replaces_nothing() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![1_500, 1_500],
        ..Setup::default()
    });
    world.user.auto_submit = false;
    let first = world.open(1000).unwrap();
    let second = world.open(1000).unwrap();
    let basepoint = |world: &World, id: &ChannelId| world.initiator().record(id).unwrap().local.tlc_basepoint;
    let (ours_first, ours_second) = (basepoint(&world, &first), basepoint(&world, &second));
    // Each open is answered with the basepoint of our other one, as the
    // answers go out.
    let mut tampered = Vec::new();
    while tampered.len() < 2 {
        for packet in world.link.iter_mut().filter(|p| p.from == ACCEPTOR) {
            if let Ok(FiberMessage::AcceptChannel(mut accept)) = FiberMessage::decode(&packet.bytes) {
                if !tampered.contains(&accept.channel_id) {
                    tampered.push(accept.channel_id);
                    accept.tlc_basepoint = if accept.channel_id == first {
                        ours_second
                    } else {
                        ours_first
                    };
                    packet.bytes = FiberMessage::AcceptChannel(accept).encode();
                }
            }
        }
        if tampered.len() < 2 {
            assert!(world.step(), "the acceptor answered fewer than two opens");
        }
    }
    world.run();

    let first_record = world
        .initiator()
        .channels()
        .into_iter()
        .filter_map(|view| world.initiator().record(&view.channel_id).cloned())
        .collect::<Vec<_>>();
    assert_eq!(first_record.len(), 2, "both channels are still there");
    let taken = first_record
        .iter()
        .find(|r| r.channel_id != r.temporary_channel_id)
        .unwrap();
    assert_eq!(taken.temporary_channel_id, first, "the id went to the first accept");
    let refused = first_record.iter().find(|r| r.temporary_channel_id == second).unwrap();
    assert_eq!(refused.channel_id, second, "the second keeps its temporary id");
    let stored = world.stored_record(INITIATOR, &taken.channel_id).unwrap();
    assert_eq!(
        stored.temporary_channel_id, first,
        "the stored record is the first channel's"
    );
    assert_rejected(&world, INITIATOR, "already has");
}

// ---- witnesses the fee cannot carry ------------------------------------------------------

/// One flow, the user's tx signed and submitted, the acceptor's
/// `TxSignatures` (it signs first) queued, not delivered yet: the channel's
/// temporary id and the unsigned tx.
fn at_the_peers_signatures() -> (World, ChannelId, packed::Transaction) {
    at_the_peers_signatures_paying(None)
}

/// As [`at_the_peers_signatures`], the funding tx paying `fee_rate`
/// shannons/KB (the default when `None`).
fn at_the_peers_signatures_paying(fee_rate: Option<u64>) -> (World, ChannelId, packed::Transaction) {
    let mut world = World::new(Setup::default());
    let mut params = world.open_params(1000);
    params.funding_fee_rate = fee_rate.or(params.funding_fee_rate);
    let channel_id = world.open_with(&params).unwrap();
    world.run_until_queued_from(ACCEPTOR, "TxSignatures");
    let unsigned = world.handed_out.last().unwrap().1.clone();
    (world, channel_id, unsigned)
}

/// The peer signs first, validly, with a witness far larger than the
/// placeholder the fee was sized for: the completed tx would be below a
/// node's minimum relay fee and never confirm, while the peer could later
/// send a smaller copy of the same tx whenever it liked. Our witnesses must
/// not leave for it: the flow aborts before release.
#[test]
fn attack_peer_witnesses_the_fee_cannot_carry_keep_ours_from_leaving() {
    let (mut world, channel_id, unsigned) = at_the_peers_signatures();
    let peer_inputs = world.acceptor_input_indices(&unsigned);
    assert!(!peer_inputs.is_empty(), "the acceptor funds its reserve");
    let bloated = with_parts(&unsigned, |p| {
        p.witnesses[peer_inputs[0]] = witness_with_input_type(vec![7; 2_000]);
    });
    let bloated = default_lock::sign_group(&bloated, &peer_inputs, &world.acceptor_key).unwrap();
    world.tamper_next("TxSignatures", |m| {
        if let FiberMessage::TxSignatures(m) = m {
            m.witnesses = bloated.witnesses().into_iter().map(|w| w.raw_data().to_vec()).collect();
        }
    });
    world.run();

    assert_eq!(
        sent_by(&world, INITIATOR, "TxSignatures"),
        0,
        "the user's witnesses never left"
    );
    let record = world.initiator().record(&channel_id).unwrap();
    let closed = record.closed.as_ref().expect("the flow was aborted");
    assert_eq!(closed.flags, CloseFlags::FUNDING_ABORTED);
    assert!(closed.reason.contains("minimum relay fee"), "{}", closed.reason);
}

/// The peer signs first, validly, with a witness the default lock cannot
/// read: CKB's secp256k1 lock loads each witness it hashes into a 32 KiB
/// buffer and fails on a larger one (`contracts_verify` runs the real
/// binary on it). A fee rate high enough to carry the size passes the relay
/// fee check, so only that rule stands between our witnesses and a tx that
/// never confirms as sent, while the peer could swap in a small witness and
/// broadcast whenever it liked. The signatures are refused as a junk
/// signature is, and ours never leave.
#[test]
fn attack_peer_witness_larger_than_the_default_lock_reads_keeps_ours_from_leaving() {
    let (mut world, channel_id, unsigned) = at_the_peers_signatures_paying(Some(200_000));
    let peer_inputs = world.acceptor_input_indices(&unsigned);
    let unreadable = with_parts(&unsigned, |p| {
        p.witnesses[peer_inputs[0]] = witness_with_input_type(vec![7; 33_000]);
    });
    let unreadable = default_lock::sign_group(&unreadable, &peer_inputs, &world.acceptor_key).unwrap();
    world.tamper_next("TxSignatures", |m| {
        if let FiberMessage::TxSignatures(m) = m {
            m.witnesses = unreadable
                .witnesses()
                .into_iter()
                .map(|w| w.raw_data().to_vec())
                .collect();
        }
    });
    world.run();

    assert_eq!(
        sent_by(&world, INITIATOR, "TxSignatures"),
        0,
        "the user's witnesses never left"
    );
    assert_rejected(&world, INITIATOR, "the default lock reads at most 32768");
    let record = world.initiator().record(&channel_id).unwrap();
    assert!(record.peer_witnesses.is_none(), "the peer's witnesses were not taken");
}

/// A record whose resolved inputs are missing (schema 1 and 2 records are
/// read with an empty list where the field is absent) must not let the
/// peer's signatures pass unchecked: a junk signature taken there would
/// leave the tx unbroadcastable once ours went out.
#[test]
fn attack_junk_peer_witnesses_are_refused_when_the_resolved_inputs_are_missing() {
    let (mut world, _, unsigned) = at_the_peers_signatures();
    let channel_id = world.initiator().channels()[0].channel_id;
    let mut record = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(record.funding_tx.is_some(), "the funding tx is agreed");
    record.funding_inputs.clear();
    futures::executor::block_on(world.nodes[INITIATOR].store.put(&record, None)).unwrap();
    // The peer's queued signatures are lost with the page; it sends them again.
    world.crash(INITIATOR);
    world.run_until_queued_from(ACCEPTOR, "TxSignatures");
    let peer_inputs = world.acceptor_input_indices(&unsigned);
    world.tamper_next("TxSignatures", |m| {
        if let FiberMessage::TxSignatures(m) = m {
            let witness = packed::WitnessArgs::new_builder()
                .lock(Some(ckb_types::bytes::Bytes::from(vec![0x42u8; 65])).pack())
                .build();
            m.witnesses[peer_inputs[0]] = witness.as_bytes().to_vec();
        }
    });
    world.run();

    assert_rejected(&world, INITIATOR, "TxSignatures do not sign");
    assert_eq!(
        sent_by(&world, INITIATOR, "TxSignatures"),
        0,
        "the user's witnesses never left"
    );
}

/// An indexer listing one cell twice: built on that, the tx would spend the
/// cell twice (a tx no node takes, so the flow would stall after the user
/// signed) while the checks counted its capacity twice. The cell is spent
/// once, so the wallet is short, and the open says so.
#[test]
fn an_indexer_listing_a_cell_twice_never_gets_it_spent_twice() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let params = world.open_params(1000);
    let cells = world.live_cells(&world.user.lock.clone());
    let larger = cells.into_iter().max_by_key(|cell| capacity_of(&cell.output)).unwrap();
    let result = world.open_from_cells(&params, vec![larger.clone(), larger]);
    assert!(matches!(result, Err(FlowError::InsufficientFunds(_))), "{result:?}");
    world.run();
    assert!(world.handed_out.is_empty(), "a tx spending a cell twice was handed out");
}

// ---- a funding tx that can never confirm, after the point of no abandon -------------------

/// The peer spends one of its own inputs elsewhere right after it signed:
/// the funding tx the user's node completes and broadcasts can never
/// confirm. Our witnesses left, so the flow can no longer be abandoned; it
/// must not stay pending (its cells held) forever. Once the conflict is
/// buried the flow is aborted, and the usual watch of an aborted flow takes
/// over (it keeps the keys until that settles too).
#[test]
fn a_funding_tx_that_can_never_confirm_does_not_hold_the_flow_forever() {
    let (mut world, channel_id, unsigned) = at_the_peers_signatures();
    let peer_input = *world
        .acceptor_input_indices(&unsigned)
        .first()
        .expect("the acceptor funds its reserve");
    let peer_cell = unsigned.raw().inputs().get(peer_input).unwrap().previous_output();
    let acceptor_key = world.acceptor_key.clone();
    spend_elsewhere(&mut world, peer_cell, &acceptor_key);
    world.run();
    assert_eq!(
        sent_by(&world, INITIATOR, "TxSignatures"),
        1,
        "the user's witnesses left"
    );
    let now = world.now_ms;
    assert!(matches!(
        world.nodes[INITIATOR].node.abandon_channel(&channel_id, now),
        Err(FlowError::TooLateToAbandon { .. })
    ));

    // Seen, not yet buried: the flow waits (the spend could still be undone).
    world.chain.mine_block();
    world.run();
    assert!(world.initiator().record(&channel_id).unwrap().closed.is_none());
    for _ in 0..8 {
        world.chain.mine_block();
        world.run();
    }
    let record = world.initiator().record(&channel_id).unwrap();
    let closed = record.closed.as_ref().expect("the flow was aborted");
    assert_eq!(closed.flags, CloseFlags::FUNDING_ABORTED);
    assert!(closed.reason.contains("never confirm"), "{}", closed.reason);
    let state = world.initiator().channel(&channel_id).unwrap().state;
    assert!(state.is_terminal(), "no longer pending, its cells free: {state:?}");
}

// ---- the user's way out: a cancel tx -------------------------------------------------------

/// The acceptor signs the funding tx first, and keeps its `TxSignatures`
/// back after taking our commitment signature. The flow can neither give up
/// nor complete, the user's inputs stay live, and the user's signed copy
/// may be out (a redirect URL): the channel, with its keys and signature.
fn peer_keeping_its_funding_signatures_back() -> (World, ChannelId) {
    let (mut world, channel_id, _) = at_the_peers_signatures();
    assert_eq!(world.drop_queued("TxSignatures"), 1);
    world.run();
    (world, channel_id)
}

fn cancel_tx(world: &World, channel_id: &ChannelId) -> Result<packed::Transaction, FlowError> {
    world.initiator().cancel_funding_tx(channel_id, None)
}

fn submit_cancel(
    world: &mut World,
    channel_id: &ChannelId,
    signed: &packed::Transaction,
) -> Result<Hash256, FlowError> {
    let now = world.now_ms;
    let (hash, actions) = world.nodes[INITIATOR]
        .node
        .submit_signed_cancel_tx(channel_id, signed, now)?;
    world.execute(INITIATOR, actions);
    Ok(hash)
}

/// Before the cancel tx, such a flow was stuck for good: no deadline, no
/// abandon, and the wallet's own "send" need not pick the cells it holds.
/// The cancel tx spends exactly those back to the wallet; once it is
/// buried the flow ends as aborted and the user has everything back but
/// the cancel tx's fee.
#[test]
fn a_peer_keeping_its_funding_signatures_back_is_left_behind_with_a_cancel_tx() {
    let (mut world, channel_id) = peer_keeping_its_funding_signatures_back();
    let user_lock = world.user.lock.clone();
    let before = world.balance(&user_lock);
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    for _ in 0..8 {
        world.chain.mine_block();
        world.run();
    }
    assert!(
        world.initiator().record(&channel_id).unwrap().closed.is_none(),
        "the flow is stuck: it no longer times out"
    );
    let now = world.now_ms;
    assert!(matches!(
        world.nodes[INITIATOR].node.abandon_channel(&channel_id, now),
        Err(FlowError::TooLateToAbandon { .. })
    ));

    let unsigned = cancel_tx(&world, &channel_id).unwrap();
    assert_eq!(
        world.user_input_indices(&unsigned).len(),
        unsigned.raw().inputs().len(),
        "the cancel tx spends the user's cells only"
    );
    let signed = world.user_sign(&unsigned);
    let hash = submit_cancel(&mut world, &channel_id, &signed).unwrap();
    assert_eq!(world.chain.transaction_status(&hash.0), TxStatus::Pending);
    for _ in 0..8 {
        world.chain.mine_block();
        world.run();
    }
    let record = world.initiator().record(&channel_id).unwrap();
    let closed = record
        .closed
        .as_ref()
        .expect("the flow ended once the cancel tx was buried");
    assert_eq!(closed.flags, CloseFlags::FUNDING_ABORTED);
    assert!(world.initiator().channel(&channel_id).unwrap().state.is_terminal());
    let fee = before - world.balance(&user_lock);
    assert!(fee > 0 && fee < CKB / 100, "the cancel tx cost the user {fee} shannons");
}

/// What leaves the wallet is checked from the signed cancel tx itself: a
/// page or wallet that changes it to pay anyone else, burn the cells as
/// fee, spend another cell, or go unsigned gets a typed error, and nothing
/// reaches the chain.
#[test]
fn a_cancel_tx_paying_anything_but_the_wallet_a_fee_is_refused() {
    use fiber_funding::tx::cancel::CancelTxError;
    let (mut world, channel_id) = peer_keeping_its_funding_signatures_back();
    let unsigned = cancel_tx(&world, &channel_id).unwrap();
    let output = unsigned.raw().outputs().get(0).unwrap();
    let stranger = acceptor_lock(&world);
    let other_cell = world.live_cells(&stranger)[0].out_point.clone();
    let broadcasts_before = world.broadcasts.len();
    type Change = Box<dyn Fn(&mut TxParts)>;
    type Case = (&'static str, Change, fn(&CancelTxError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "half to the peer",
            Box::new({
                let (output, stranger) = (output.clone(), stranger.clone());
                move |parts| {
                    let half = capacity_of(&output) / 2;
                    parts.outputs = vec![
                        output.clone().as_builder().capacity(half).build(),
                        output
                            .clone()
                            .as_builder()
                            .lock(stranger.clone())
                            .capacity(half)
                            .build(),
                    ];
                    parts.outputs_data = vec![Vec::new(), Vec::new()];
                }
            }),
            |e| matches!(e, CancelTxError::OutputNotOurs { index: 1 }),
        ),
        (
            "burnt as fee",
            Box::new({
                let output = output.clone();
                move |parts| parts.outputs = vec![output.clone().as_builder().capacity(100 * CKB).build()]
            }),
            |e| matches!(e, CancelTxError::FeeTooHigh { .. }),
        ),
        (
            "another cell spent",
            Box::new(move |parts| parts.inputs.push(input(&other_cell))),
            |e| matches!(e, CancelTxError::WrongInputs { .. }),
        ),
        (
            "a data output",
            Box::new(|parts| parts.outputs_data = vec![vec![1]]),
            |e| matches!(e, CancelTxError::OutputNotOurs { index: 0 }),
        ),
    ];
    for (name, change, expected) in cases {
        let signed = world.user_sign(&with_parts(&unsigned, |parts| change(parts)));
        match submit_cancel(&mut world, &channel_id, &signed) {
            Err(FlowError::CancelTx(error)) => assert!(expected(&error), "{name}: {error}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    match submit_cancel(&mut world, &channel_id, &unsigned) {
        Err(FlowError::CancelTx(CancelTxError::NotSigned)) => {}
        other => panic!("unsigned: {other:?}"),
    }
    let acceptor_key = world.acceptor_key.clone();
    let wrong_key = default_lock::sign_group(&unsigned, &[0], &acceptor_key).unwrap();
    match submit_cancel(&mut world, &channel_id, &wrong_key) {
        Err(FlowError::CancelTx(CancelTxError::BadSignature(_))) => {}
        other => panic!("signed by another key: {other:?}"),
    }
    assert_eq!(
        world.broadcasts.len(),
        broadcasts_before,
        "a refused cancel tx was sent"
    );
    assert!(world.initiator().record(&channel_id).unwrap().closed.is_none());
}

/// A cancel tx is for a flow that cannot give up any other way: one that
/// can still be abandoned gets none (abandoning ends it without a tx), nor
/// does a funded channel (it closes), nor the acceptor's side.
#[test]
fn a_flow_that_can_be_abandoned_or_is_funded_gets_no_cancel_tx() {
    let (world, channel_id, _) = handed_out_and_signed();
    assert!(
        matches!(cancel_tx(&world, &channel_id), Err(FlowError::NotCancellable { reason, .. }) if reason.contains("abandoned")),
        "a flow that can still be abandoned"
    );
    let (world, channel_id) = ready_world();
    assert!(
        matches!(cancel_tx(&world, &channel_id), Err(FlowError::NotCancellable { reason, .. }) if reason.contains("confirmed")),
        "a funded channel"
    );
    assert!(matches!(
        world.acceptor().cancel_funding_tx(&channel_id, None),
        Err(FlowError::NotTheInitiator { .. })
    ));
}

/// The funding tx reached the node first (it waits in the pool): the node
/// refuses the cancel tx, told as the cancel tx's refusal, never as the
/// funding tx's; the channel goes on to ready.
#[test]
fn a_cancel_tx_the_node_refuses_is_told_as_such_and_the_channel_goes_on() {
    let mut world = World::new(Setup::default());
    let channel_id = world.open(1000).unwrap();
    world.run_until_queued_from(INITIATOR, "TxSignatures");
    let funding_tx_hash = world.initiator().channel(&channel_id).unwrap().funding_tx_hash.unwrap();
    assert_eq!(world.chain.transaction_status(&funding_tx_hash.0), TxStatus::Pending);
    let unsigned = cancel_tx(&world, &channel_id).unwrap();
    let signed = world.user_sign(&unsigned);
    submit_cancel(&mut world, &channel_id, &signed).unwrap();
    let told = |world: &World| {
        world
            .events
            .iter()
            .filter(|(node, _)| *node == INITIATOR)
            .map(|(_, event)| event.clone())
            .collect::<Vec<_>>()
    };
    let events = told(&world);
    assert!(
        events.iter().any(|e| matches!(e, Event::CancelTxRejected { .. })),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::FundingTxRejected { .. })),
        "{events:?}"
    );
    world.run();
    for _ in 0..4 {
        world.chain.mine_block();
        world.run();
    }
    assert_channel_ready(&world);
}

/// The acceptor funds its part from a cell under a lock other than CKB's
/// default one. We can check its signatures only for the default lock, so
/// a junk witness there would pass until the chain refused the tx, after
/// our own had left: a tx that never confirms, which the acceptor could
/// still complete with a real signature whenever it liked. Such a part is
/// refused before the wallet is ever asked to sign.
#[test]
fn attack_an_acceptor_input_under_a_lock_we_cannot_check_never_reaches_the_wallet() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let stranger_lock = packed::Script::new_builder()
        .code_hash([0x77; 32].pack())
        .hash_type(ScriptHashType::Type)
        .args(acceptor_lock(&world).args())
        .build();
    let stranger = world.chain.genesis_cell(
        packed::CellOutput::new_builder()
            .capacity(500 * CKB)
            .lock(stranger_lock)
            .build(),
        Vec::new(),
    );
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "TxUpdate");
    let FiberMessage::TxUpdate(update) = world.queued_from(ACCEPTOR, "TxUpdate") else {
        unreachable!()
    };
    let acceptor_inputs = world.acceptor_input_indices(&update.tx);
    assert_eq!(acceptor_inputs.len(), 1, "the acceptor adds one 500 CKB cell");
    let swapped = with_parts(&update.tx, |p| {
        p.inputs[acceptor_inputs[0]] = input(&stranger);
    });
    world.tamper_next("TxUpdate", |m| {
        if let FiberMessage::TxUpdate(m) = m {
            m.tx = swapped;
        }
    });
    world.run();

    assert!(world.handed_out.is_empty(), "the wallet was asked to sign");
    let reasons = tx_abort_reasons(&world, INITIATOR);
    assert!(
        reasons.iter().any(|r| r.contains("not under CKB's default lock")),
        "{reasons:?}"
    );
}

/// A hub announcing the bare floor reserve (the padded shutdown cell, 98
/// CKB) leaves the user no first claim in a unilateral close: the cell our
/// claim re-creates for the hub holds its reserve less the commitment fee,
/// below what that cell occupies, so CKB refuses our claim and the user's
/// share waits on the hub claiming first. The reserve must cover the fee.
#[test]
fn attack_a_reserve_that_leaves_us_no_first_claim_is_refused_before_anything_is_signed() {
    let world = with_the_acceptor_announcing_a_reserve_of(98 * CKB);
    assert!(world.handed_out.is_empty(), "nothing may be handed out");
    assert_rejected(&world, INITIATOR, "cannot pay for the cell left to it after our claim");
}

/// The acceptor's TxUpdate, changed by `change` before the initiator reads
/// it; the acceptor's change gives up 1 CKB so the bytes added are paid for.
fn with_acceptor_part_changed(world: &mut World, change: impl FnOnce(&mut TxParts)) {
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "TxUpdate");
    let FiberMessage::TxUpdate(update) = world.queued_from(ACCEPTOR, "TxUpdate") else {
        unreachable!()
    };
    let changed = with_parts(&update.tx, |p| {
        let change_output = p.outputs.last().unwrap().clone();
        let less = capacity_of(&change_output) - CKB;
        *p.outputs.last_mut().unwrap() = change_output.as_builder().capacity(less).build();
        change(p);
    });
    world.tamper_next("TxUpdate", |m| {
        if let FiberMessage::TxUpdate(m) = m {
            m.tx = changed;
        }
    });
    world.run();
}

fn assert_refused_before_the_wallet(world: &World, needle: &str) {
    assert!(world.handed_out.is_empty(), "the wallet was asked to sign");
    let reasons = tx_abort_reasons(world, INITIATOR);
    assert!(reasons.iter().any(|r| r.contains(needle)), "{reasons:?}");
}

/// The acceptor names a cell dep on an output of a tx it has not published:
/// the funding tx fails on chain while every input stays live, so with our
/// witnesses out no deadline and no spent input would ever end the flow,
/// and publishing that tx later would let the acceptor confirm the funding
/// when it chose. Only its lock's dep group may be added.
#[test]
fn attack_an_acceptor_dep_on_a_cell_it_controls_never_reaches_the_wallet() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let unpublished = packed::CellDep::new_builder()
        .out_point(packed::OutPoint::new_builder().tx_hash([0xd0; 32].pack()).build())
        .build();
    with_acceptor_part_changed(&mut world, |p| p.cell_deps.push(unpublished));
    assert_refused_before_the_wallet(&world, "is not the default lock's dep group");
}

/// A type script on the acceptor's change can fail the funding tx on chain
/// whatever the inputs do (a script that always fails, or one whose code
/// is missing): refused like the dep above.
#[test]
fn attack_a_type_script_on_the_acceptors_change_never_reaches_the_wallet() {
    let failing = packed::Script::new_builder()
        .code_hash([0xfa; 32].pack())
        .hash_type(ScriptHashType::Data1)
        .build();
    refused_with_the_acceptors_change(
        |p, change| *p.outputs.last_mut().unwrap() = change.as_builder().type_(Some(failing).pack()).build(),
        "an added output carries a type script",
    );
}

/// Opens with the acceptor's part changed through its change cell (the
/// last output, given apart), and checks the wallet never sees the tx.
fn refused_with_the_acceptors_change(change: impl FnOnce(&mut TxParts, packed::CellOutput), needle: &str) {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    with_acceptor_part_changed(&mut world, |p| {
        let change_output = p.outputs.last().unwrap().clone();
        change(p, change_output);
    });
    assert_refused_before_the_wallet(&world, needle);
}

/// A change cell below what its own bytes occupy makes CKB refuse the
/// funding tx while every input stays live: with our witnesses out, the
/// user's cells would be held with no deadline, at no cost to the acceptor.
#[test]
fn attack_acceptor_change_below_its_occupied_capacity_never_reaches_the_wallet() {
    refused_with_the_acceptors_change(
        |p, change| {
            let dust = change.clone().as_builder().capacity(60 * CKB).build();
            *p.outputs.last_mut().unwrap() = change.as_builder().capacity(capacity_of(&dust) - 60 * CKB).build();
            p.outputs.push(dust);
            p.outputs_data.push(Vec::new());
        },
        "occupies",
    );
}

/// A lock whose hash type byte is none of CKB's is refused by every node:
/// the same stuck tx as above.
#[test]
fn attack_acceptor_change_under_an_unknown_hash_type_never_reaches_the_wallet() {
    refused_with_the_acceptors_change(
        |p, change| {
            let lock = change.lock().as_builder().hash_type(packed::Byte::new(3)).build();
            *p.outputs.last_mut().unwrap() = change.as_builder().lock(lock).build();
        },
        "hash type",
    );
}

/// On a network this module knows, the acceptor may add its lock's dep
/// group (a JoyID wallet's deps do not name it), but not twice: CKB refuses
/// a tx naming a dep twice.
#[test]
fn on_testnet_the_acceptor_may_add_the_default_lock_dep_group_once() {
    let testnet = fiber_funding::tx::networks::known_hash(fiber_funding::tx::networks::TESTNET_CHAIN_HASH);
    let group = fiber_funding::tx::networks::default_lock_dep_group(&testnet).unwrap();
    for times in [1, 2] {
        let mut world = World::new(Setup::default());
        world.user.auto_submit = false;
        // On a network it knows, a node opens only with its locks' cell
        // deps; any live cell stands in for them on the simulated chain.
        let stand_in = world.chain.default_lock_cell_dep();
        for node in [INITIATOR, ACCEPTOR] {
            let config = &mut world.nodes[node].config;
            config.chain_hash = testnet;
            config.funding_lock.cell_deps = vec![stand_in.clone()];
            config.commitment_lock.cell_deps = vec![stand_in.clone()];
            world.restart(node);
        }
        with_acceptor_part_changed(&mut world, |p| {
            p.cell_deps.extend(std::iter::repeat_n(group.clone(), times));
        });
        if times == 1 {
            // Accepted: our `TxComplete` went out. (The acceptor, which never
            // made this change, signs another commitment, so the tx is not
            // handed out: see `attack_a_peer_keeping_its_commitment_…`.)
            let refused = tx_abort_reasons(&world, INITIATOR);
            assert!(refused.is_empty(), "{refused:?}");
            assert_eq!(sent_by(&world, INITIATOR, "TxComplete"), 1);
        } else {
            assert_refused_before_the_wallet(&world, "is named twice");
        }
    }
}

/// A peer's `OpenChannel` whose temporary id is the id of a channel the
/// acceptor already has (here the peer's own funded channel). It became a
/// pending open under that id: the chain's answers about the channel (the
/// look-up of a re-created cell) went to the open and the open's wallet
/// cells to the channel, and while the open was pending a failed claim read
/// for the channel was not asked again. An open under an id in use is now
/// refused, and nothing is asked about it.
#[test]
fn an_open_under_the_id_of_a_channel_the_acceptor_has_is_refused() {
    use fiber_funding::flow::ChainQuery;
    let (mut world, channel_id) = ready_world();
    let Some(FiberMessage::OpenChannel(mut forged)) = world
        .sent_log
        .iter()
        .find(|(from, m)| *from == INITIATOR && m.name() == "OpenChannel")
        .map(|(_, m)| m.clone())
    else {
        panic!("the browser's OpenChannel")
    };
    forged.channel_id = channel_id;
    let mark = world.sent_log.len();
    world.inject(INITIATOR, FiberMessage::OpenChannel(forged));
    while world.step() {
        assert!(
            !world.queries.iter().any(|(node, id, q)| *node == ACCEPTOR
                && *id == channel_id
                && matches!(q, ChainQuery::LiveCells { .. })),
            "the acceptor looked up its wallet cells for an open under the channel's id"
        );
    }
    assert_rejected(&world, ACCEPTOR, "temporary channel id");
    assert!(
        world.sent_log[mark..].iter().all(|(from, _)| *from != ACCEPTOR),
        "the acceptor answered: {:?}",
        world.sent_log[mark..].iter().map(|(_, m)| m.name()).collect::<Vec<_>>()
    );
    assert_eq!(world.acceptor().channels().len(), 1);
    assert_channel_ready(&world);
}

/// A node can make up, whole, a tx that spends an aborted flow's input and
/// report it committed under the settle depth (the hash it is checked
/// against is its own to compute). Taken at its word, the abort settled:
/// the funding tx and the peer's commitment signature were dropped and the
/// watch ended, so a signed copy of the funding tx the peer still holds
/// could confirm later with nothing watching and no way to close alone.
/// Under CKB's default lock the spender must carry the wallet's signature.
#[test]
fn attack_a_made_up_spender_unsigned_by_the_wallet_settles_nothing() {
    let (mut world, channel_id, input) = aborted_after_the_hand_out();
    lie_about_the_spender(&mut world, channel_id, &input, made_up_spender(&input));
    let settled = world
        .events
        .iter()
        .any(|(node, event)| *node == INITIATOR && matches!(event, Event::AbortSettled { .. }));
    assert!(!settled, "the abort settled on a spender the wallet never signed");
    assert!(
        world.initiator().signed_own_commitment(&channel_id).is_some(),
        "the peer's commitment signature was dropped"
    );
}

/// Handed out and signed, then past the deadline: the flow aborted and its
/// inputs watched; with the first of the user's inputs.
fn aborted_after_the_hand_out() -> (World, ChannelId, packed::OutPoint) {
    let (mut world, channel_id, _) = handed_out_and_signed();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.run();
    let input = world.initiator().record(&channel_id).unwrap().own_cells[0]
        .out_point
        .clone();
    (world, channel_id, input)
}

/// A node reports `spender` of our `input`, committed and buried under the
/// settle depth; the world then runs (answering what the node asks next).
fn lie_about_the_spender(
    world: &mut World,
    channel_id: ChannelId,
    input: &packed::OutPoint,
    spender: fiber_funding::chain::CheckedTx,
) {
    use fiber_funding::chain::TxReport;
    let settle = world.nodes[INITIATOR].node.config().settle_depth();
    for _ in 0..settle {
        world.chain.mine_block();
    }
    let tip = world.chain.report(&[0x99; 32]).tip;
    let answer = fiber_funding::flow::ChainEvent::SpenderOf {
        channel_id,
        out_point: input.clone(),
        spender: Some((
            spender,
            TxReport {
                status: TxStatus::Committed {
                    block_number: tip.block_number + 1 - settle,
                },
                block_epoch: None,
                tip,
            },
        )),
    };
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    world.execute(INITIATOR, actions);
    world.run();
}
