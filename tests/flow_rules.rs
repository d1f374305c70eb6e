//! The rules of the flow, one behaviour per test: what is refused, what
//! survives a restart, and the order in which signatures may leave.

mod common;

use ckb_types::core::{DepType, ScriptHashType};
use ckb_types::packed;
use ckb_types::prelude::*;
use common::*;
use fiber_funding::flow::state::*;
use fiber_funding::flow::{Action, ChannelRecord, ChannelState, FlowError, OpenChannelParams};
use fiber_funding::primitives::{ChannelId, Hash256};
use fiber_funding::tx::default_lock;
use fiber_funding::tx::parts::TxParts;
use fiber_funding::tx::validate::SignedTxError;
use fiber_funding::wire::FiberMessage;

/// A world where the tx has been handed out and signed, but not submitted.
fn awaiting_submission() -> (World, ChannelId, packed::Transaction) {
    let world = world_at_the_signer();
    let (channel_id, signed) = world
        .user
        .signed_in_url
        .clone()
        .expect("the tx was handed out and signed");
    (world, channel_id, signed)
}

#[test]
fn each_raw_tx_field_changed_alone_is_rejected_naming_the_field() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();
    let other_hash = [0xee; 32];
    type Change = Box<dyn Fn(&mut TxParts)>;
    let table: Vec<(&str, Change)> = vec![
        ("version", Box::new(|p| p.version = 1)),
        (
            "cell_deps[0].out_point.tx_hash",
            Box::new(move |p| {
                let dep = &p.cell_deps[0];
                p.cell_deps[0] = dep
                    .clone()
                    .as_builder()
                    .out_point(dep.out_point().as_builder().tx_hash(other_hash.pack()).build())
                    .build();
            }),
        ),
        (
            "cell_deps[0].out_point.index",
            Box::new(|p| {
                let dep = &p.cell_deps[0];
                p.cell_deps[0] = dep
                    .clone()
                    .as_builder()
                    .out_point(dep.out_point().as_builder().index(7u32).build())
                    .build();
            }),
        ),
        (
            "cell_deps[0].dep_type",
            Box::new(|p| p.cell_deps[0] = p.cell_deps[0].clone().as_builder().dep_type(DepType::Code).build()),
        ),
        (
            "cell_deps (length 2 instead of 1)",
            Box::new(|p| p.cell_deps.push(p.cell_deps[0].clone())),
        ),
        (
            "header_deps (length 1 instead of 0)",
            Box::new(move |p| p.header_deps.push(other_hash.pack())),
        ),
        (
            "inputs[0].previous_output.tx_hash",
            Box::new(move |p| {
                let input = &p.inputs[0];
                p.inputs[0] = input
                    .clone()
                    .as_builder()
                    .previous_output(input.previous_output().as_builder().tx_hash(other_hash.pack()).build())
                    .build();
            }),
        ),
        (
            "inputs[0].previous_output.index",
            Box::new(|p| {
                let input = &p.inputs[0];
                p.inputs[0] = input
                    .clone()
                    .as_builder()
                    .previous_output(input.previous_output().as_builder().index(9u32).build())
                    .build();
            }),
        ),
        (
            "inputs[0].since",
            Box::new(|p| p.inputs[0] = p.inputs[0].clone().as_builder().since(5u64).build()),
        ),
        (
            "outputs[0].capacity",
            Box::new(|p| p.outputs[0] = p.outputs[0].clone().as_builder().capacity(1u64).build()),
        ),
        (
            "outputs[1].lock.code_hash",
            Box::new(move |p| {
                let lock = p.outputs[1].lock().as_builder().code_hash(other_hash.pack()).build();
                p.outputs[1] = p.outputs[1].clone().as_builder().lock(lock).build();
            }),
        ),
        (
            "outputs[1].lock.hash_type",
            Box::new(|p| {
                let lock = p.outputs[1]
                    .lock()
                    .as_builder()
                    .hash_type(ScriptHashType::Data1)
                    .build();
                p.outputs[1] = p.outputs[1].clone().as_builder().lock(lock).build();
            }),
        ),
        (
            "outputs[1].lock.args",
            Box::new(|p| {
                let lock = p.outputs[1].lock().as_builder().args([1u8; 20].to_vec().pack()).build();
                p.outputs[1] = p.outputs[1].clone().as_builder().lock(lock).build();
            }),
        ),
        (
            "outputs[1].type",
            Box::new(|p| {
                let type_ = packed::ScriptOpt::new_builder().set(Some(p.outputs[1].lock())).build();
                p.outputs[1] = p.outputs[1].clone().as_builder().type_(type_).build();
            }),
        ),
        ("outputs_data[1]", Box::new(|p| p.outputs_data[1] = vec![0xab])),
    ];
    for (field, change) in &table {
        let tampered = with_parts(&signed, change);
        let error = world.submit(&channel_id, &tampered).unwrap_err();
        assert_eq!(
            error,
            FlowError::SignedTx(SignedTxError::FieldChanged {
                field: field.to_string()
            }),
            "changing {field}"
        );
        assert!(error.to_string().contains(field), "{error}");
        assert_eq!(
            world.stored_record(INITIATOR, &channel_id).unwrap(),
            before,
            "{field}: the record changed"
        );
    }
    println!("{} raw-tx fields checked", table.len());
    // The genuine signed tx is still accepted afterwards.
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

#[test]
fn witnesses_that_are_missing_unsigned_or_touch_the_peers_inputs_are_rejected() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let unsigned = world.handed_out.last().unwrap().1.clone();
    let peer_index = signed.witnesses().len() - 1;
    let cases: Vec<(packed::Transaction, SignedTxError)> = vec![
        (unsigned.clone(), SignedTxError::NotSigned { index: 0 }),
        (
            with_parts(&signed, |p| {
                p.witnesses.pop();
            }),
            SignedTxError::WitnessCount {
                expected: signed.witnesses().len(),
                got: signed.witnesses().len() - 1,
            },
        ),
        (
            with_parts(&signed, |p| p.witnesses[peer_index] = vec![1, 2, 3]),
            SignedTxError::OtherWitnessChanged { index: peer_index },
        ),
        (
            with_parts(&signed, |p| p.witnesses[0] = vec![1, 2, 3]),
            SignedTxError::WitnessNotWitnessArgs { index: 0 },
        ),
    ];
    for (tx, expected) in cases {
        assert_eq!(
            world.submit(&channel_id, &tx).unwrap_err(),
            FlowError::SignedTx(expected)
        );
    }
    assert!(!world.initiator().channel(&channel_id).unwrap().signed_submitted);
}

#[test]
fn double_submit_returns_the_same_hash_and_broadcasts_once() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let first = world.submit(&channel_id, &signed).unwrap();
    let second = world.submit(&channel_id, &signed).unwrap();
    assert_eq!(first, second);
    world.run();
    assert_eq!(
        world.submit(&channel_id, &signed).unwrap(),
        first,
        "even after the channel is ready"
    );
    let hash = assert_channel_ready(&world);
    assert_eq!(hash, first);
    assert_eq!(world.broadcasts.len(), 1);
}

/// Witnesses do not change the tx hash: until the user's witnesses leave,
/// a wallet may send another valid signature (a junk one is refused at once,
/// the first stays); once they left, another one is refused. The flow pays
/// twice the minimum fee rate, so the larger second signature still pays a
/// node's minimum relay fee (at the minimum rate it would be refused:
/// `a_signature_the_fee_cannot_carry_is_refused_and_the_flow_stays_as_it_was`).
#[test]
fn a_different_signed_tx_is_taken_until_the_witnesses_leave_and_refused_after() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let mut params = world.open_params(1000);
    params.funding_fee_rate = Some(2_000);
    world.open_with(&params).unwrap();
    world.run();
    let (channel_id, signed) = world
        .user
        .signed_in_url
        .clone()
        .expect("the tx was handed out and signed");
    let hash = world.submit(&channel_id, &signed).unwrap();
    let stored = world.stored_record(INITIATOR, &channel_id).unwrap();

    // Same raw tx, a corrupted signature: refused, nothing stored.
    let junk = with_parts(&signed, |p| {
        let mut witness = p.witnesses[0].clone();
        let last = witness.len() - 2;
        witness[last] ^= 1;
        p.witnesses[0] = witness;
    });
    assert!(matches!(
        world.submit(&channel_id, &junk),
        Err(FlowError::SignedTx(SignedTxError::BadSignature(_)))
    ));
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), stored);

    // Another valid signature (the wallet put more in its WitnessArgs):
    // taken, the witnesses have not left yet.
    let unsigned = world.handed_out.last().unwrap().1.clone();
    let user_inputs = world.user_input_indices(&unsigned);
    let richer = with_parts(&unsigned, |p| {
        p.witnesses[user_inputs[0]] = witness_with_input_type(vec![7; 3]);
    });
    let resigned = default_lock::sign_group(&richer, &user_inputs, &world.user.key).unwrap();
    assert_eq!(world.submit(&channel_id, &resigned).unwrap(), hash);

    // The witnesses that leave are the ones taken last; once they left, the
    // first one is refused.
    world.run_until_queued_from(INITIATOR, "TxSignatures");
    let FiberMessage::TxSignatures(released) = world.queued_from(INITIATOR, "TxSignatures") else {
        unreachable!()
    };
    assert_eq!(
        released.witnesses[user_inputs[0]],
        resigned.witnesses().get(user_inputs[0]).unwrap().raw_data().to_vec()
    );
    assert_eq!(
        world.submit(&channel_id, &signed).unwrap_err(),
        FlowError::DifferentTxAlreadySubmitted {
            channel_id,
            funding_tx_hash: hash
        }
    );
}

#[test]
fn a_peer_tx_update_while_awaiting_submission_is_rejected_and_changes_nothing() {
    let (mut world, channel_id, _) = awaiting_submission();
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();
    let state = world.state(INITIATOR, &channel_id).unwrap();
    let unsigned = world.handed_out.last().unwrap().1.clone();
    let stale = with_parts(&unsigned, |p| {
        p.outputs[0] = p.outputs[0].clone().as_builder().capacity(1u64).build();
    });
    world.inject(
        ACCEPTOR,
        FiberMessage::TxUpdate(fiber_funding::wire::TxUpdate { channel_id, tx: stale }),
    );
    world.run();
    let rejections = world.rejections(INITIATOR);
    assert!(
        rejections
            .iter()
            .any(|r| r.starts_with("TxUpdate: TxUpdate after the funding tx was agreed")),
        "{rejections:?}"
    );
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), before);
    assert_eq!(world.state(INITIATOR, &channel_id).unwrap(), state);
    // A plain retransmission of the agreed tx is quietly ignored.
    world.inject(
        ACCEPTOR,
        FiberMessage::TxUpdate(fiber_funding::wire::TxUpdate {
            channel_id,
            tx: unsigned,
        }),
    );
    world.run();
    assert_eq!(world.rejections(INITIATOR).len(), rejections.len());
}

#[test]
fn a_bad_commitment_signature_is_rejected_and_the_genuine_one_still_counts() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run_until_queued("CommitmentSigned");
    let genuine = world
        .link
        .iter()
        .find_map(|p| match FiberMessage::decode(&p.bytes).unwrap() {
            FiberMessage::CommitmentSigned(m) => Some(m),
            _ => None,
        })
        .unwrap();
    world.tamper_next("CommitmentSigned", |m| {
        if let FiberMessage::CommitmentSigned(m) = m {
            m.funding_tx_partial_signature[5] ^= 0x40;
        }
    });
    world.run();
    let rejections = world.rejections(INITIATOR);
    assert!(
        rejections.iter().any(|r| r.contains("does not verify")),
        "{rejections:?}"
    );
    let view = world.open_channel_view(INITIATOR);
    // Not handed out: the wallet sees the tx once the peer's signature of
    // our commitment is verified (`tests/adversary.rs`, `attack_a_peer_keeping_…`).
    assert_eq!(
        view.state,
        ChannelState::SigningCommitment(SigningCommitmentFlags::default())
    );
    assert!(world.handed_out.is_empty());
    assert!(world
        .stored_record(INITIATOR, &view.channel_id)
        .unwrap()
        .peer_commitment_signature
        .is_none());

    world.inject(ACCEPTOR, FiberMessage::CommitmentSigned(genuine));
    world.run();
    assert_eq!(
        world.state(INITIATOR, &view.channel_id).unwrap(),
        ChannelState::SigningCommitment(SigningCommitmentFlags::THEIR_COMMITMENT_SIGNED_SENT)
    );
    assert_eq!(world.handed_out.len(), 1);
}

/// Every byte string the initiator sent to the acceptor.
fn initiator_payloads(world: &World) -> Vec<Vec<u8>> {
    world
        .sent_log
        .iter()
        .filter(|(from, _)| *from == INITIATOR)
        .map(|(_, m)| m.encode())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_users_witnesses_stay_home_until_the_peers_commitment_signature_is_verified() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run_until_queued("CommitmentSigned");
    // A peer that never signs our commitment (here: its signature is lost):
    // the wallet is not even asked to sign, so no witness of the user's
    // exists to leave.
    assert_eq!(world.drop_queued("CommitmentSigned"), 1);
    world.run();
    assert!(world.user.signed_in_url.is_none(), "handed out before the peer signed");
    assert!(!world
        .sent_log
        .iter()
        .any(|(from, m)| *from == INITIATOR && m.name() == "CommitmentSigned"));
    assert!(world.broadcasts.is_empty());

    // Once the acceptor's signature arrives (it resends on reconnect) the tx
    // is handed out; the user's witnesses leave only after the submit.
    world.reconnect();
    world.run();
    let (channel_id, signed) = world.user.signed_in_url.clone().expect("handed out");
    let user_witness = signed.witnesses().get(0).unwrap().raw_data().to_vec();
    assert!(initiator_payloads(&world)
        .iter()
        .all(|bytes| !contains(bytes, &user_witness)));
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

#[test]
fn the_acceptor_keeps_its_witnesses_until_the_initiators_commitment_signature_is_verified() {
    let (mut world, channel_id, signed) = awaiting_submission();
    world.submit(&channel_id, &signed).unwrap();
    world.tamper_next("CommitmentSigned", |m| {
        if let FiberMessage::CommitmentSigned(m) = m {
            m.funding_tx_partial_signature[0] ^= 1;
        }
    });
    world.run();
    assert!(world.rejections(ACCEPTOR).iter().any(|r| r.contains("does not verify")));
    assert!(!world
        .sent_log
        .iter()
        .any(|(from, m)| *from == ACCEPTOR && m.name() == "TxSignatures"));
    assert!(world.broadcasts.is_empty());
    world.reconnect();
    world.run();
    assert_channel_ready(&world);
}

#[test]
fn an_acceptor_spending_one_of_the_users_cells_is_refused() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![700, 800, 300],
        ..Setup::default()
    });
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    let spare_user_cell = world
        .live_cells(&world.user.lock.clone())
        .last()
        .unwrap()
        .out_point
        .clone();
    world.run_until_queued("TxUpdate"); // ours
    world.step();
    world.run_until_queued("TxUpdate"); // the acceptor's part
    world.tamper_next("TxUpdate", |m| {
        if let FiberMessage::TxUpdate(m) = m {
            // The acceptor claims one of the user's cells as its own input.
            m.tx = with_parts(&m.tx, |p| {
                let last = p.inputs.len() - 1;
                p.inputs[last] = p.inputs[last]
                    .clone()
                    .as_builder()
                    .previous_output(spare_user_cell.clone())
                    .build();
            });
        }
    });
    world.run();
    let view = world.initiator().channels().pop().unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::FUNDING_ABORTED));
    assert!(view.close_reason.unwrap().contains("one of our own cells"));
    assert!(world.handed_out.is_empty(), "nothing was handed out to sign");
    assert_aborted_on_both_sides(&world);
}

#[test]
fn timeout_fires_after_reload_when_deadline_passed() {
    let (mut world, channel_id, signed) = awaiting_submission();
    // The user is at the signer; the page is gone for longer than the timeout.
    world.nodes[INITIATOR].up = false;
    world.link.clear();
    world.now_ms += TIMEOUT_MS + 1;
    world.user.auto_submit = false;
    world.restart(INITIATOR);
    world.run();
    let view = world.initiator().channel(&channel_id).unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::FUNDING_ABORTED));
    assert!(view.close_reason.as_deref().unwrap().contains("timed out"));
    // Back from the signer: the submit is refused with the reason.
    let error = world.submit(&channel_id, &signed).unwrap_err();
    assert!(
        matches!(error, FlowError::ChannelClosed { .. }) && error.to_string().contains("timed out"),
        "{error}"
    );
    assert_aborted_on_both_sides(&world);
    // The cells are free again: a new channel opens and completes.
    world.user.auto_submit = true;
    world.open(1000).unwrap();
    world.run();
    assert_channel_ready(&world);
}

#[test]
fn timeout_is_rearmed_after_reload_and_fires_at_the_original_deadline() {
    let (mut world, channel_id, _) = awaiting_submission();
    let deadline = world.initiator().channel(&channel_id).unwrap().deadline_ms.unwrap();
    let started = world
        .stored_record(INITIATOR, &channel_id)
        .unwrap()
        .external_funding
        .unwrap()
        .started_at_ms;
    assert_eq!(deadline, started + TIMEOUT_MS);
    world.now_ms += 10_000;
    world.user.auto_submit = false;
    world.restart(INITIATOR);
    world.run();
    assert_eq!(
        world.initiator().next_deadline(),
        Some(deadline),
        "re-armed at the same deadline"
    );
    world.advance(deadline - world.now_ms - 1);
    assert!(!matches!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::Closed(_))
    ));
    world.advance(1);
    world.run();
    assert_aborted_on_both_sides(&world);
}

#[test]
fn the_acceptor_gives_up_on_an_initiator_that_never_returns() {
    let (mut world, _, _) = awaiting_submission();
    world.nodes[INITIATOR].up = false;
    world.advance(TIMEOUT_MS + GRACE_MS);
    let view = world.acceptor().channels().pop().unwrap();
    assert_eq!(view.state, ChannelState::Closed(CloseFlags::FUNDING_ABORTED));
    // Its cells are free for the next channel.
    let record = world.stored_record(ACCEPTOR, &view.channel_id).unwrap();
    assert!(record.own_cells.is_empty());
}

#[test]
fn abandon_before_release_aborts_both_sides_and_after_release_is_refused() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let actions = world.nodes[INITIATOR]
        .node
        .abandon_channel(&channel_id, world.now_ms)
        .unwrap();
    world.execute(INITIATOR, actions);
    world.run();
    assert_eq!(
        world.state(INITIATOR, &channel_id),
        Some(ChannelState::Closed(CloseFlags::ABANDONED))
    );
    assert_aborted_on_both_sides(&world);
    let error = world.submit(&channel_id, &signed).unwrap_err();
    assert!(error.to_string().contains("abandoned"), "{error}");

    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run();
    let ready = assert_channel_ready(&world);
    let channel_id = world.open_channel_view(INITIATOR).channel_id;
    let error = world.nodes[INITIATOR]
        .node
        .abandon_channel(&channel_id, world.now_ms)
        .unwrap_err();
    assert!(matches!(error, FlowError::TooLateToAbandon { .. }), "{error}");
    assert!(matches!(
        world.chain.transaction_status(&ready.0),
        fiber_funding::chain::TxStatus::Committed { .. }
    ));
}

#[test]
fn a_tx_abort_after_our_signatures_left_is_refused() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run();
    let channel_id = world.open_channel_view(INITIATOR).channel_id;
    world.inject(
        ACCEPTOR,
        FiberMessage::TxAbort(fiber_funding::wire::TxAbort {
            channel_id,
            message: b"bye".to_vec(),
        }),
    );
    world.run();
    assert_eq!(world.state(INITIATOR, &channel_id), Some(ChannelState::ChannelReady));
    assert!(world
        .rejections(INITIATOR)
        .iter()
        .any(|r| r.contains("after our funding signatures")));
}

#[test]
fn not_enough_funds_names_needed_and_available_and_stores_nothing() {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![300],
        ..Setup::default()
    });
    let error = world.open(1000).unwrap_err();
    match &error {
        FlowError::InsufficientFunds(shortfall) => {
            assert!(shortfall.needed > (1000 + 99) * CKB);
            assert_eq!(shortfall.amount, 1000 * CKB);
            assert_eq!(shortfall.reserve, 99 * CKB);
            assert_eq!(shortfall.available, 300 * CKB);
            assert_eq!((shortfall.held, shortfall.held_by.len()), (0, 0));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = error.to_string();
    // CKB first, shannons after; the reserve explained; no pending funding blamed.
    assert!(text.starts_with("not enough CKB: this channel needs 1099.0"), "{text}");
    assert!(
        text.contains("1000 CKB for the channel, 99 CKB reserve returned at close"),
        "{text}"
    );
    assert!(
        text.contains("but only 300 CKB (30000000000 shannons) in this wallet is free"),
        "{text}"
    );
    assert!(!text.contains("reserved by"), "{text}");
    assert!(world.nodes[INITIATOR].store.inner.is_empty());
    assert!(world.link.is_empty());
}

#[test]
fn an_open_short_of_funds_names_the_pending_funding_that_holds_the_cells() {
    let mut world = world_at_the_signer();
    let pending = world.only_channel(INITIATOR).channel_id;

    // The first funding holds both cells (700 + 800 CKB) until it completes.
    let error = world.open(100).unwrap_err();
    let FlowError::InsufficientFunds(shortfall) = &error else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(shortfall.available, 0);
    assert_eq!(shortfall.held, 1500 * CKB);
    assert_eq!(shortfall.held_by, vec![pending]);
    let text = error.to_string();
    assert!(text.starts_with("not enough CKB: this channel needs 199.0"), "{text}");
    assert!(
        text.contains("but only 0 CKB (0 shannons) in this wallet is free"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "1500 CKB (150000000000 shannons) more is in cells reserved by the pending funding of channel {pending}"
        )),
        "{text}"
    );
}

#[test]
fn udt_public_and_malformed_opens_are_refused_with_clear_errors() {
    let mut world = World::new(Setup::default());
    let base = world.open_params(1000);
    let cases: Vec<(OpenChannelParams, &str)> = vec![
        (
            OpenChannelParams {
                funding_udt_type_script: Some(base.funding_lock_script.clone()),
                ..base.clone()
            },
            "UDT",
        ),
        (
            OpenChannelParams {
                public: true,
                ..base.clone()
            },
            "public",
        ),
        (
            OpenChannelParams {
                funding_amount: 0,
                ..base.clone()
            },
            "funding_amount",
        ),
        (
            OpenChannelParams {
                funding_fee_rate: Some(10),
                ..base.clone()
            },
            "funding_fee_rate",
        ),
        (
            OpenChannelParams {
                pubkey: fiber_funding::primitives::Pubkey([5; 33]),
                ..base.clone()
            },
            "pubkey",
        ),
    ];
    for (params, word) in cases {
        let error = world.open_with(&params).unwrap_err();
        assert!(error.to_string().contains(word), "{error} should mention {word}");
    }
    assert!(world.nodes[INITIATOR].store.inner.is_empty());
}

#[test]
fn dropped_messages_are_recovered_by_reconnecting() {
    for drop_at in 0..12 {
        let mut world = World::new(Setup::default());
        world.open(1000).unwrap();
        for _ in 0..drop_at {
            world.step();
        }
        world.drop_next = 1;
        world.run();
        world.reconnect();
        world.run();
        assert_channel_ready(&world);
    }
}

#[test]
fn reordered_delivery_still_ends_ready_after_reconnects() {
    for seed in 1..=20 {
        let mut world = World::new(Setup::default());
        world.delivery = common::Delivery::Shuffled(seed);
        world.open(1000).unwrap();
        world.run();
        for _ in 0..6 {
            if world
                .initiator()
                .channels()
                .iter()
                .all(|c| c.state == ChannelState::ChannelReady)
            {
                break;
            }
            world.reconnect();
            world.run();
        }
        assert_channel_ready(&world);
    }
}

#[test]
fn held_messages_past_the_deadline_end_in_an_agreed_abort() {
    let mut world = World::new(Setup::default());
    world.delivery = common::Delivery::Held;
    world.open(1000).unwrap();
    world.advance(TIMEOUT_MS + GRACE_MS + 1);
    world.delivery = common::Delivery::InOrder;
    world.run();
    assert_aborted_on_both_sides(&world);
}

#[test]
fn a_failed_write_leaves_memory_and_storage_in_step() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let before = world.stored_record(INITIATOR, &channel_id).unwrap();
    let now = world.now_ms;
    let (_, actions) = world.nodes[INITIATOR]
        .node
        .submit_signed_funding_tx(&channel_id, &signed, now)
        .unwrap();
    let (result, sink) = world.execute_with_the_write_failing(INITIATOR, actions);
    let error = result.unwrap_err();
    assert!(error.to_string().contains("storage is full"), "{error}");
    assert!(sink.sent.is_empty(), "nothing may leave after a failed persist");
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), before);
    assert!(
        !world.initiator().channel(&channel_id).unwrap().signed_submitted,
        "memory rolled back"
    );
    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// The write after the chain answered our check of the acceptor's part
/// fails. The step is taken back, and with it the answer: nobody answers
/// an unasked question, so the check must be asked again (at the next
/// tick) or the open sits until its deadline with the same `TxUpdate`
/// taken as "already being checked".
#[test]
fn a_failed_write_after_the_chains_answer_asks_the_chain_again() {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    let lookup = world.take_resolve_inputs(INITIATOR);
    let answer = world.resolved_inputs(lookup);
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR].node.chain_event(answer, now);
    let (result, sink) = world.execute_with_the_write_failing(INITIATOR, actions);
    assert!(result.is_err(), "the write was made to fail");
    assert!(sink.sent.is_empty(), "nothing may leave after a failed persist");

    world.advance(1_000);
    world.run();
    assert_eq!(world.handed_out.len(), 1, "the open went on");
    assert_channel_ready(&world);
}

/// The write of the step taking the acceptor's `CommitmentSigned` fails.
/// The step is taken back, and with it the peer's signature, which nobody
/// sends unasked on a connection that stays up: our witnesses wait for it,
/// so the user's signature was wasted and the flow sat until its deadline.
/// At the next tick the node asks the peer to bring it up to date
/// (`ReestablishChannel`), as a reconnection would.
#[test]
fn a_failed_write_of_a_peer_message_asks_the_peer_again() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "CommitmentSigned");
    let sink = world.deliver_with_the_write_failing(ACCEPTOR, "CommitmentSigned");
    assert!(sink.sent.is_empty(), "nothing may leave after a failed persist");
    world.run();

    world.advance(1_000);
    world.run();
    let (channel_id, tx) = world.user.signed_in_url.clone().expect("handed out and signed");
    world.submit(&channel_id, &tx).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// The re-ask of a peer message must not wait behind another channel's
/// write in the same tick: held behind it, it was dropped when that write
/// failed, and with the flag already cleared nothing asked again.
#[test]
fn a_peer_asked_again_is_asked_even_when_another_channels_write_fails_in_that_tick() {
    let mut world = World::new(Setup::two_flows());
    world.user.auto_submit = false;
    // Flow X: handed out, its deadline first.
    world.open(1000).unwrap();
    world.run();
    let x = world.handed_out[0].0;
    world.advance(10_000);
    // Flow Y: the write of the step taking the acceptor's signature fails.
    world.open(1000).unwrap();
    world.run_until_queued_from(ACCEPTOR, "CommitmentSigned");
    world.deliver_with_the_write_failing(ACCEPTOR, "CommitmentSigned");
    world.run();
    // Y is handed out once that signature is in again.
    let y = world.nodes[INITIATOR]
        .node
        .channels()
        .into_iter()
        .map(|view| view.channel_id)
        .find(|id| *id != x)
        .expect("Y");

    // X's deadline: its abort is this tick's first write, and it fails.
    let deadline = world.initiator().channel(&x).unwrap().deadline_ms.unwrap();
    world.now_ms = deadline;
    let actions = world.nodes[INITIATOR].node.tick(deadline);
    let (result, sink) = world.execute_with_the_write_failing(INITIATOR, actions);
    assert!(result.is_err());
    assert_eq!(sink.sent, ["ReestablishChannel"], "Y's peer asked again all the same");
    for message in sink.messages {
        world.inject(INITIATOR, message);
    }
    world.run();

    let (handed_out, tx) = world.user.signed_in_url.clone().expect("Y handed out and signed");
    assert_eq!(handed_out, y);
    world.submit(&y, &tx).unwrap();
    world.run();
    for _ in 0..3 {
        world.chain.mine_block();
        world.advance(1_000);
        world.run();
    }
    assert_eq!(world.state(INITIATOR, &y), Some(ChannelState::ChannelReady));
}

/// A fresh initiator node with the world's configuration, to restore records into.
fn restoring_node(world: &World) -> fiber_funding::flow::Node {
    struct NoEntropy;
    impl fiber_funding::flow::EntropySource for NoEntropy {
        fn random_32(&mut self) -> [u8; 32] {
            unreachable!("a restore draws no randomness")
        }
    }
    fiber_funding::flow::Node::new(world.nodes[INITIATOR].config.clone(), Box::new(NoEntropy))
}

#[test]
fn a_restore_names_each_record_made_under_another_node_key_and_keeps_the_rest() {
    let (world, channel_id, _) = awaiting_submission();
    let ours = world.stored_record(INITIATOR, &channel_id).unwrap();
    // Two records whose funding key this node did not derive: as if the page
    // had been given another nodeSecretKey when they were written.
    let foreign = |n: u8| {
        let mut record = ours.clone();
        record.channel_id = Hash256([n; 32]);
        record.temporary_channel_id = Hash256([n; 32]);
        record.local.funding_pubkey = world.acceptor().node_id();
        record
    };
    let mut node = restoring_node(&world);
    let (_, errors) = node.restore(vec![foreign(0x01), ours.clone(), foreign(0x02)], world.now_ms);
    let named: Vec<&str> = errors.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(
        named,
        [Hash256([0x01; 32]).to_string(), Hash256([0x02; 32]).to_string()]
    );
    assert!(
        errors.iter().all(|e| e.reason.contains("another node key")),
        "{errors:?}"
    );
    let restored: Vec<ChannelId> = node.channels().iter().map(|view| view.channel_id).collect();
    assert_eq!(restored, [ours.channel_id]);
}

/// A record of schema 4 or earlier has no key check: its funding key is read
/// as a curve point (all such keys in one sum), and once it is found to be
/// this node's the record is stored again with its key check. A foreign one
/// is still refused by name, and not stored.
#[test]
fn a_record_without_a_key_check_is_checked_by_its_key_and_stored_with_one() {
    let (world, channel_id, _) = awaiting_submission();
    let ours = world.stored_record(INITIATOR, &channel_id).unwrap();
    let key_check = ours.key_check.expect("a record made now has its key check");
    let schema_4 = ChannelRecord {
        schema_version: 4,
        key_check: None,
        ..ours.clone()
    };
    let mut foreign = schema_4.clone();
    foreign.channel_id = Hash256([0x01; 32]);
    foreign.temporary_channel_id = Hash256([0x01; 32]);
    foreign.local.funding_pubkey = world.acceptor().node_id();

    let mut node = restoring_node(&world);
    let (actions, errors) = node.restore(vec![foreign, schema_4], world.now_ms);
    let named: Vec<&str> = errors.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(named, [Hash256([0x01; 32]).to_string()]);
    assert!(errors[0].reason.contains("another node key"), "{errors:?}");
    let stored: Vec<&ChannelRecord> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Persist { record, .. } => Some(&**record),
            _ => None,
        })
        .collect();
    assert_eq!(stored.len(), 1, "{actions:?}");
    assert_eq!(stored[0].channel_id, ours.channel_id);
    assert_eq!(stored[0].schema_version, ours.schema_version);
    assert_eq!(stored[0].key_check, Some(key_check));
}

/// A key check that is not this node's for the record's key refuses the
/// record, whatever its funding key.
#[test]
fn a_record_whose_key_check_does_not_match_is_refused() {
    let (world, channel_id, _) = awaiting_submission();
    let ours = world.stored_record(INITIATOR, &channel_id).unwrap();
    let mut forged = ours.clone();
    forged.key_check = Some(Hash256([0; 32]));
    let mut node = restoring_node(&world);
    let (_, errors) = node.restore(vec![forged], world.now_ms);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("another node key"), "{errors:?}");
    assert!(node.channels().is_empty());
}

/// A flow aborted after its tx was handed out keeps its keys and is
/// watched: should its funding tx confirm, it is a channel again. Restored
/// under another node key, it is refused by name like an open one, not
/// restored with keys that can sign nothing.
#[test]
fn a_watched_aborted_flow_made_under_another_node_key_is_refused() {
    let (mut world, channel_id, _) = awaiting_submission();
    world.advance(world.nodes[INITIATOR].config.external_funding_timeout_ms + 1);
    let watched = world.stored_record(INITIATOR, &channel_id).unwrap();
    assert!(
        watched.closed.as_ref().is_some_and(|c| c.watch.is_some()),
        "{:?}",
        watched.closed
    );
    let mut forged = watched.clone();
    forged.key_check = Some(Hash256([0; 32]));
    let mut node = restoring_node(&world);
    let (_, errors) = node.restore(vec![forged], world.now_ms);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].reason.contains("another node key"), "{errors:?}");
    assert!(node.channels().is_empty());

    let (_, errors) = restoring_node(&world).restore(vec![watched], world.now_ms);
    assert!(errors.is_empty(), "{errors:?}");
}

/// The tombstones a boot reads after the live flows: a channel the node
/// already holds keeps its state in memory (it may have closed, or moved on,
/// since the boot), and until they are in, an id the node does not know may
/// be one of theirs.
#[test]
fn tombstones_restored_after_the_boot_never_overwrite_a_channel_the_node_holds() {
    let (world, channel_id, _) = awaiting_submission();
    let ours = world.stored_record(INITIATOR, &channel_id).unwrap();
    let tombstone_of = |record: &ChannelRecord| {
        let mut tombstone = record.clone();
        tombstone.close_as_tombstone(CloseFlags::ABANDONED, "abandoned by the user".into(), world.now_ms);
        assert!(tombstone.is_tombstone());
        tombstone
    };
    let stale = tombstone_of(&ours);
    let mut other = ours.clone();
    other.channel_id = Hash256([0x0d; 32]);
    other.temporary_channel_id = Hash256([0x0e; 32]);
    let other = tombstone_of(&other);

    let mut node = restoring_node(&world);
    let (_, errors) = node.restore(vec![ours.clone()], world.now_ms);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!node.tombstones_restored());
    assert!(!node.awaits_tombstones(&channel_id), "a live flow never waits");
    assert!(node.awaits_tombstones(&other.channel_id));
    assert!(node.awaits_tombstones(&other.temporary_channel_id));

    let (actions, errors) = node.restore_tombstones(vec![stale, other.clone()], world.now_ms);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(actions.is_empty(), "{actions:?}");
    assert!(node.tombstones_restored());
    assert!(
        !node.awaits_tombstones(&Hash256([0x0f; 32])),
        "nothing waits once they are in"
    );
    assert_eq!(
        node.record(&channel_id).unwrap().closed,
        None,
        "the live flow stays live"
    );
    assert!(node.record(&channel_id).unwrap().funding_tx.is_some());
    assert_eq!(node.record(&other.channel_id), Some(&other));
}

/// JoyID's lock on testnet (CCC's `KnownScript.JoyId`), for a made-up account.
fn joyid_lock() -> packed::Script {
    let code_hash: [u8; 32] =
        fiber_funding::primitives::decode_hex("0xd23761b364210735c19c60561d213fb3beae2fd6172743719eff6920e020baac")
            .unwrap()
            .try_into()
            .unwrap();
    packed::Script::new_builder()
        .code_hash(code_hash.pack())
        .hash_type(ScriptHashType::Type)
        .args([&[0u8, 1][..], &[0x42; 20]].concat().pack())
        .build()
}

/// A flow opened at the default fee rate from a JoyID wallet (its cells
/// under [`joyid_lock`]), the unsigned tx handed out.
fn joyid_flow_awaiting_submission() -> (World, ChannelId, packed::Transaction) {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let joyid = joyid_lock();
    for ckb in [700u64, 800] {
        let output = packed::CellOutput::new_builder()
            .capacity(ckb * CKB)
            .lock(joyid.clone())
            .build();
        world.chain.genesis_cell(output, Vec::new());
    }
    world.user.lock = joyid.clone();
    let mut params = world.open_params(1000);
    params.funding_lock_script = joyid.clone();
    params.shutdown_script = joyid;
    world.open_with(&params).unwrap();
    world.run();
    let (channel_id, unsigned) = world.handed_out.last().unwrap().clone();
    (world, channel_id, unsigned)
}

/// A JoyID wallet signs with a passkey: WebAuthn's signature, key,
/// authenticator data and client data JSON in `WitnessArgs.lock`, up to the
/// 1,000 bytes CCC's JoyID signer reserves. Opened at the default fee rate
/// with a JoyID lock, the tx handed out carries a placeholder that large, so
/// the fee covers the real signature: the signed tx is taken, and the chain
/// (which checks the minimum fee rate) commits it.
#[test]
fn a_joyid_signature_at_the_default_fee_rate_is_paid_for_and_the_channel_opens() {
    let (mut world, channel_id, unsigned) = joyid_flow_awaiting_submission();
    let user_inputs = world.user_input_indices(&unsigned);
    let passkey_witness = packed::WitnessArgs::new_builder()
        .lock(Some(ckb_types::bytes::Bytes::from(vec![0x5a; 1_000])).pack())
        .build();
    let signed = with_parts(&unsigned, |p| {
        p.witnesses[user_inputs[0]] = passkey_witness.as_slice().to_vec();
    });

    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// The room can be named for any wallet, within bounds: the tx handed out
/// then carries a placeholder of that many bytes where the wallet signs.
#[test]
fn the_room_for_the_wallets_signature_can_be_named_within_bounds() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let mut params = world.open_params(1000);
    for outside in [64, 8_193] {
        params.funding_witness_lock_len = Some(outside);
        match world.open_with(&params) {
            Err(FlowError::InvalidParams { field, .. }) => assert_eq!(field, "funding_witness_lock_len"),
            other => panic!("{other:?}"),
        }
    }
    assert!(world.handed_out.is_empty());

    params.funding_witness_lock_len = Some(300);
    world.open_with(&params).unwrap();
    world.run();
    let unsigned = world.handed_out.last().unwrap().1.clone();
    let first = world.user_input_indices(&unsigned)[0];
    let witness = packed::WitnessArgs::from_slice(&unsigned.witnesses().get(first).unwrap().raw_data()).unwrap();
    assert_eq!(witness.lock().to_opt().unwrap().raw_data().len(), 300);
}

/// JoyID's placeholder (a lock of 1,000 zero bytes) handed back unsigned,
/// or replaced by the default lock's 65 zero bytes, is no signature: a
/// lock the module cannot verify itself must still never pass as signed.
#[test]
fn an_unsigned_joyid_tx_is_refused_whatever_placeholder_it_holds() {
    let (mut world, channel_id, unsigned) = joyid_flow_awaiting_submission();
    let user_inputs = world.user_input_indices(&unsigned);
    let stored = world.stored_record(INITIATOR, &channel_id).unwrap();
    let with_default_placeholder = with_parts(&unsigned, |p| {
        p.witnesses[user_inputs[0]] = default_lock::placeholder_witness().as_slice().to_vec();
    });
    for unsigned in [unsigned, with_default_placeholder] {
        match world.submit(&channel_id, &unsigned) {
            Err(FlowError::SignedTx(SignedTxError::NotSigned { index })) => assert_eq!(index, user_inputs[0]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), stored);
}

/// A valid signature larger than the placeholder the fee was sized with (a
/// passkey wallet's is) makes a tx below a node's minimum relay fee: it would
/// never confirm, and once our witnesses left the flow could no longer be
/// abandoned. It is refused at submit, nothing stored, and the flow goes on
/// with a signature the fee carries.
#[test]
fn a_signature_the_fee_cannot_carry_is_refused_and_the_flow_stays_as_it_was() {
    let (mut world, channel_id, signed) = awaiting_submission();
    let stored = world.stored_record(INITIATOR, &channel_id).unwrap();
    let state = world.state(INITIATOR, &channel_id).unwrap();
    let unsigned = world.handed_out.last().unwrap().1.clone();
    let user_inputs = world.user_input_indices(&unsigned);
    let larger = with_parts(&unsigned, |p| {
        p.witnesses[user_inputs[0]] = witness_with_input_type(vec![7; 300]);
    });
    let larger = default_lock::sign_group(&larger, &user_inputs, &world.user.key).unwrap();

    match world.submit(&channel_id, &larger) {
        Err(FlowError::SignedTx(SignedTxError::CannotConfirm { reason })) => {
            assert!(reason.contains("minimum relay fee"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(world.stored_record(INITIATOR, &channel_id).unwrap(), stored);
    assert_eq!(world.state(INITIATOR, &channel_id).unwrap(), state);
    let released = |world: &World| {
        world
            .sent_log
            .iter()
            .any(|(from, m)| *from == INITIATOR && m.name() == "TxSignatures")
    };
    assert!(!released(&world), "the user's witnesses never left");

    world.submit(&channel_id, &signed).unwrap();
    world.run();
    assert_channel_ready(&world);
}

/// A page naming more cell deps for the wallet's lock than a record can
/// hold: stored as given, the record could not be read back after the
/// wallet's redirect, and the flow would be lost with the user's signature
/// in the URL. Refused at open, by name, with nothing stored.
#[test]
fn more_wallet_cell_deps_than_a_record_holds_are_refused_at_open() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let mut params = world.open_params(1000);
    let dep = params.funding_lock_script_cell_deps[0].clone();
    for count in [
        fiber_funding::flow::record::MAX_CELL_DEPS + 1,
        fiber_funding::flow::limits::MAX_WALLET_CELL_DEPS + 1,
    ] {
        params.funding_lock_script_cell_deps = vec![dep.clone(); count];
        match world.open_with(&params) {
            Err(FlowError::InvalidParams { field, .. }) => assert_eq!(field, "funding_lock_script_cell_deps"),
            other => panic!("{other:?}"),
        }
    }
    world.run();
    assert!(world.handed_out.is_empty());
    assert!(world.initiator().channels().is_empty(), "nothing was stored");
}

/// A page opening for a wallet lock other than CKB's default one (JoyID's,
/// say) without its cell deps (optional in the API's types): no node
/// accepts a funding tx without the lock's code, which shows only at the
/// broadcast, after the user's signature left and the flow can no longer
/// be abandoned. Refused at open, by name, with nothing stored.
#[test]
fn a_wallet_lock_other_than_the_default_without_cell_deps_is_refused_at_open() {
    let mut world = World::new(Setup::default());
    world.user.auto_submit = false;
    let mut params = world.open_params(1000);
    params.funding_lock_script = params
        .funding_lock_script
        .clone()
        .as_builder()
        .code_hash([0x4a; 32].pack())
        .build();
    params.funding_lock_script_cell_deps = Vec::new();
    match world.open_with(&params) {
        Err(FlowError::InvalidParams { field, reason }) => {
            assert_eq!(field, "funding_lock_script_cell_deps");
            assert!(reason.contains("lock's code"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    world.run();
    assert!(world.handed_out.is_empty());
    assert!(world.initiator().channels().is_empty(), "nothing was stored");
}

/// A node whose contracts name more than the funding lock's two cell deps:
/// the commitment and closing fees are sized for two, so with three the
/// user's way out pays less than its rate (maybe less than a node relays),
/// and past what a record holds the flow could not be read back at all.
/// Refused at open, by name, with nothing stored.
#[test]
fn a_lock_with_more_cell_deps_than_its_fees_are_sized_for_is_refused_at_open() {
    let dep = packed::CellDep::new_builder()
        .out_point(packed::OutPoint::new_builder().tx_hash([0x22; 32].pack()).build())
        .build();
    for (field, count) in [
        ("fundingLock.cell_deps", 3),
        ("fundingLock.cell_deps", fiber_funding::flow::record::MAX_CELL_DEPS + 1),
        ("commitmentLock.cell_deps", 3),
    ] {
        let mut world = World::new(Setup::default());
        world.user.auto_submit = false;
        let config = &mut world.nodes[INITIATOR].config;
        match field {
            "fundingLock.cell_deps" => config.funding_lock.cell_deps = vec![dep.clone(); count],
            _ => config.commitment_lock.cell_deps = vec![dep.clone(); count],
        }
        world.restart(INITIATOR);
        match world.open(1000) {
            Err(FlowError::InvalidParams { field: refused, .. }) => assert_eq!(refused, field),
            other => panic!("{field} with {count}: {other:?}"),
        }
        world.run();
        assert!(world.handed_out.is_empty());
        assert!(world.initiator().channels().is_empty(), "nothing was stored");
    }
}

/// On testnet or mainnet, a node whose locks name no cell deps (Fiber's
/// published defaults carry none) would open a channel whose commitment can
/// never be broadcast: the user could not leave without the peer. Such an
/// open is refused by name, with nothing stored.
#[test]
fn on_a_known_network_an_open_without_the_locks_cell_deps_is_refused() {
    use fiber_funding::tx::networks;
    for network in [networks::TESTNET_CHAIN_HASH, networks::MAINNET_CHAIN_HASH] {
        let mut world = World::new(Setup::default());
        world.user.auto_submit = false;
        for node in [INITIATOR, ACCEPTOR] {
            world.nodes[node].config.chain_hash = networks::known_hash(network);
            world.restart(node);
        }
        match world.open(1000) {
            Err(FlowError::InvalidParams { field, reason }) => {
                assert_eq!(field, "fundingLock.cell_deps");
                assert!(reason.contains("net"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        world.run();
        assert!(world.initiator().channels().is_empty(), "nothing was stored");
    }
}

fn funding_tx_rejected_at_the_initiator(world: &World) -> bool {
    world
        .events
        .iter()
        .any(|(node, e)| *node == INITIATOR && matches!(e, fiber_funding::flow::Event::FundingTxRejected { .. }))
}

/// Both sides ready (without `assert_channel_ready`'s count of broadcasts:
/// a refused tx is sent again).
fn assert_ready_on_both_sides(world: &World) {
    for node in [INITIATOR, ACCEPTOR] {
        let view = world.open_channel_view(node);
        assert_eq!(view.state, ChannelState::ChannelReady, "node {node}: {view:?}");
    }
}

/// A node that refuses the funding tx once (its minimum fee rate above the
/// tx's for a while) remembers the refusal, and `get_transaction` answers
/// "rejected" for it from then on, as CKB's recent-reject store does. Only
/// "unknown" sent it again: the flow could no longer give up (the tx was
/// released) and never aborted (its inputs stayed live), so both sides'
/// cells were held for as long as the node remembered.
#[test]
fn a_funding_tx_the_node_refused_once_is_sent_again() {
    let mut world = World::new(Setup::default());
    world.chain.set_min_fee_rate(1_000_000);
    world.open(1000).unwrap();
    world.run();
    assert!(
        funding_tx_rejected_at_the_initiator(&world),
        "the node refused the funding tx"
    );
    world
        .chain
        .set_min_fee_rate(fiber_funding::chain::simulated::DEFAULT_MIN_FEE_RATE);
    for _ in 0..5 {
        world.chain.mine_block();
        world.advance(2_000);
        world.run();
    }
    assert_ready_on_both_sides(&world);
}

/// When the user signs first (the counterparty puts in more), the
/// counterparty completes the funding tx and broadcasts it. One that took
/// the user's signatures, sent its own and never broadcast left the flow
/// pending for ever: the page held the complete tx yet never sent it, and
/// could neither give up (the tx was released) nor abort (its inputs stayed
/// live). Whichever side holds the complete tx sends it when the node does
/// not know it.
#[test]
fn a_complete_funding_tx_the_peer_sits_on_is_sent_by_the_page() {
    let mut world = World::new(Setup {
        acceptor_cells_ckb: vec![5_000],
        acceptor_funding_ckb: 2_000,
        ..Setup::default()
    });
    world.nodes[ACCEPTOR].broadcasts_withheld = true;
    world.open(1000).unwrap();
    world.run();
    assert!(
        world.broadcasts.iter().any(|(node, _)| *node == ACCEPTOR),
        "the counterparty completed the tx (and kept it)"
    );
    for _ in 0..5 {
        world.chain.mine_block();
        world.advance(2_000);
        world.run();
    }
    assert_channel_ready(&world);
}

/// Fails every tx whose witnesses carry the marker: the chain's verdict on a
/// wallet signature this module cannot check (JoyID's).
struct RefusesMarkedSignatures;

const BAD_SIGNATURE: u8 = 0x66;

impl fiber_funding::chain::simulated::ScriptRunner for RefusesMarkedSignatures {
    fn run(
        &self,
        tx: &packed::Transaction,
        _cell: &dyn Fn(&packed::OutPoint) -> Option<(packed::CellOutput, ckb_types::bytes::Bytes)>,
    ) -> Result<u64, String> {
        let marked = tx.witnesses().into_iter().any(|w| {
            w.raw_data()
                .windows(64)
                .any(|run| run.iter().all(|b| *b == BAD_SIGNATURE))
        });
        if marked {
            return Err(
                "Script(TransactionScriptError { source: Inputs[0].Lock, cause: ValidationFailure(-31) })".into(),
            );
        }
        Ok(1)
    }
}

/// A JoyID signature is checked only by the chain (this module cannot
/// verify a passkey signature). One the chain refuses, once released, was
/// final: the tx was sent again at each poll and refused each time, the
/// wallet's correct signature of the same tx was refused with
/// `ALREADY_SUBMITTED`, and the flow could neither give up nor abort, its
/// inputs live. Once the chain has refused the tx, the page may hand in
/// other witnesses for it: the raw tx is the same, so whichever set the
/// chain takes funds the same channel.
#[test]
fn a_joyid_signature_the_chain_refuses_can_be_replaced_by_one_it_takes() {
    let (mut world, channel_id, unsigned) = joyid_flow_awaiting_submission();
    world.chain.set_script_runner(Box::new(RefusesMarkedSignatures));
    let user_inputs = world.user_input_indices(&unsigned);
    let signed_with = |byte: u8| {
        let witness = packed::WitnessArgs::new_builder()
            .lock(Some(ckb_types::bytes::Bytes::from(vec![byte; 1_000])).pack())
            .build();
        with_parts(&unsigned, |p| p.witnesses[user_inputs[0]] = witness.as_slice().to_vec())
    };

    world.submit(&channel_id, &signed_with(BAD_SIGNATURE)).unwrap();
    world.run();
    assert!(
        funding_tx_rejected_at_the_initiator(&world),
        "the chain refused the first signature"
    );

    let corrected = world.submit(&channel_id, &signed_with(0x5a));
    assert!(corrected.is_ok(), "{corrected:?}");
    for _ in 0..5 {
        world.chain.mine_block();
        world.run();
    }
    assert_ready_on_both_sides(&world);
}

/// The node took the funding tx and then lost it (a restart without its
/// pool, or another node behind the same endpoint answering): every later
/// poll says "unknown". A tx already sent in this session was not sent
/// again, so with a counterparty that does not send it either the flow sat
/// until a reload: it could neither give up nor abort, its inputs live.
/// A complete tx the node does not know is sent at each such poll.
#[test]
fn a_funding_tx_the_node_lost_is_sent_again() {
    let mut world = World::new(Setup::default());
    // The page's send is lost on the way (as one dropped after it landed
    // is); the counterparty sends nothing.
    world.nodes[INITIATOR].broadcasts_withheld = true;
    world.nodes[ACCEPTOR].broadcasts_withheld = true;
    world.open(1000).unwrap();
    world.run();
    assert!(
        world.broadcasts.iter().any(|(node, _)| *node == INITIATOR),
        "the page sent the funding tx"
    );
    world.nodes[INITIATOR].broadcasts_withheld = false;
    for _ in 0..5 {
        world.chain.mine_block();
        world.advance(2_000);
        world.run();
    }
    assert_ready_on_both_sides(&world);
}
