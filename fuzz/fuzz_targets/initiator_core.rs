//! The initiator core (`flow::Node`, the browser's side) against a hostile
//! counterparty, a lying chain node, a wandering clock, reloads and the
//! user's own wallet: the generated adversary suite (`tests/adversary_props.rs`)
//! driven by libFuzzer's coverage instead of proptest's dice.
//!
//! The world is `tests/common`'s: a real initiator and a real acceptor over
//! a loopback link of encoded bytes and a simulated chain. The input is a
//! sequence of steps: deliver, reorder, drop, replay, rewrite, splice or forge
//! what the counterparty sends; answer the initiator's chain queries honestly
//! or with a lie; mine; let time pass; break the connection (a submit then
//! holds our commitment signature) or reconnect; reload the page (crash at a
//! chosen write, or between steps); submit the wallet's signed tx (or junk);
//! double-spend an input from the wallet; ask to close or abandon. Then the
//! honest parties finish what is left.
//!
//! After every step (and `World::execute` before every list of actions runs):
//! * nothing panics, and nothing is acted on before the write it depends on;
//! * what was handed to the wallet, every tx whose witnesses left and every
//!   tx broadcast that spends the user's cells takes from the user exactly
//!   the contribution and at most a small fee, computed from the chain's own
//!   cells (the outflow invariant);
//! * no MuSig2 nonce signs two different messages;
//! * every channel in memory equals its stored record;
//! * once its tx was handed out, a channel keeps its funding key (seed)
//!   until that tx can no longer confirm (an input spent by another tx) or
//!   its funding cell has been spent and the channel is closed.

#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use arbitrary::{Result, Unstructured};
use ckb_types::packed;
use ckb_types::prelude::*;
use common::lies::{lying_answer, lying_indexer, mutate_packet, Lie, Liveness, Mutation};
use common::*;
use fiber_funding::chain::TxStatus;
use fiber_funding::primitives::Hash256;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::parts::{tx_hash, TxParts};
use fiber_funding::wire::FiberMessage;
use libfuzzer_sys::fuzz_target;

/// The user's contribution (1,000 CKB and a 99 CKB reserve) and the most
/// they may pay in fee.
const CONTRIBUTION: u64 = 1_099 * CKB;
const MAX_FEE: u64 = CKB;
/// Steps per input; the honest finish comes after.
const MAX_STEPS: usize = 160;

#[derive(Debug)]
enum Op {
    Deliver,
    DeliverAt(usize),
    Drop(usize),
    /// An earlier counterparty message, sent again.
    Replay(usize),
    /// A queued counterparty message, rewritten.
    Mutate(usize, Mutation),
    /// Bytes written over a queued counterparty message at `at`.
    Splice {
        index: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    /// Bytes of the fuzzer's own, as a counterparty message.
    Forge(Vec<u8>),
    Answer(Lie),
    Tick(u64),
    /// The connection breaks (until a `Reconnect`, a reload or the end).
    Disconnect,
    Reconnect,
    Mine,
    /// The wallet returns the handed-out tx, signed, or with a witness bit flipped.
    Submit {
        junk: bool,
    },
    /// The page reloads between steps.
    Reload,
    /// The page dies at its `at_put`-th next write, which lands or not.
    CrashAt {
        at_put: usize,
        lands: bool,
    },
    /// The user spends an input of the handed-out tx elsewhere.
    DoubleSpend(usize),
    Shutdown {
        fee_rate: Option<u64>,
    },
    ForceClose,
    Abandon,
    /// The user opens a second channel while the first is under way.
    OpenAnother,
}

/// A chain node's lie, where one is possible (tests/adversary_props.rs).
fn lie(u: &mut Unstructured) -> Result<Lie> {
    Ok(match u.arbitrary::<u8>()? % 12 {
        0..=6 => Lie::Honest,
        7 => Lie::Capacity(u.arbitrary::<u8>()?.into(), i64::from(u.arbitrary::<i32>()?)),
        8 => Lie::FlipTypeAndData(u.arbitrary::<u8>()?.into()),
        9 => Lie::Missing(u.arbitrary::<u8>()?.into()),
        10 => Lie::Truncate,
        _ => Lie::WrongOutPoints,
    })
}

fn mutation(u: &mut Unstructured) -> Result<Mutation> {
    Ok(match u.arbitrary::<u8>()? % 5 {
        0 => Mutation::FlipByte(u.arbitrary::<u16>()?.into()),
        1 => Mutation::Capacity {
            output: u.arbitrary::<u8>()?.into(),
            delta: i64::from(u.arbitrary::<i32>()?) * 1_000,
        },
        2 => Mutation::StealSpareCell,
        3 => Mutation::ForeignFundingLock,
        _ => Mutation::HugeAbort,
    })
}

/// One step; an exhausted input reads as zeros, which deliver in order.
fn op(u: &mut Unstructured) -> Result<Op> {
    let small = |u: &mut Unstructured| -> Result<usize> { Ok(u.arbitrary::<u8>()?.into()) };
    Ok(match u.arbitrary::<u8>()? % 40 {
        0..=11 => Op::Deliver,
        12 | 13 => Op::DeliverAt(small(u)?),
        14 => Op::Drop(small(u)?),
        15 | 16 => Op::Replay(small(u)?),
        17..=19 => Op::Mutate(small(u)?, mutation(u)?),
        20 => Op::Splice {
            index: small(u)?,
            at: u.arbitrary::<u16>()?.into(),
            bytes: u.arbitrary()?,
        },
        21 => Op::Forge(u.arbitrary()?),
        22..=27 => Op::Answer(lie(u)?),
        28 => Op::Tick(u64::from(u.arbitrary::<u32>()?) % 1_000_000),
        29 => Op::Reconnect,
        30 | 31 => Op::Mine,
        32 | 33 => Op::Submit { junk: u.arbitrary()? },
        34 => Op::Reload,
        35 => Op::CrashAt {
            at_put: usize::from(u.arbitrary::<u8>()? % 8) + 1,
            lands: u.arbitrary()?,
        },
        36 => Op::DoubleSpend(small(u)?),
        37 => match u.arbitrary::<u8>()? % 4 {
            0 => Op::Shutdown { fee_rate: None },
            1 => Op::Shutdown {
                fee_rate: Some(u.arbitrary()?),
            },
            2 => Op::ForceClose,
            _ => Op::Abandon,
        },
        38 => Op::OpenAnother,
        _ => Op::Disconnect,
    })
}

/// The user's net outflow in `tx`, from the chain's own cells.
fn user_outflow(world: &World, tx: &packed::Transaction) -> i128 {
    let lock = world.user.lock.clone();
    let mut net = 0i128;
    for input in tx.raw().inputs() {
        let out_point = input.previous_output();
        let hash: [u8; 32] = out_point.tx_hash().unpack();
        let index: u32 = out_point.index().unpack();
        if let Some(cell) = world
            .chain
            .transaction(&hash)
            .and_then(|t| t.raw().outputs().get(index as usize))
        {
            if cell.lock() == lock {
                net += i128::from(capacity_of(&cell));
            }
        }
    }
    for output in tx.raw().outputs() {
        if output.lock() == lock {
            net -= i128::from(capacity_of(&output));
        }
    }
    net
}

fn assert_takes_only_the_contribution(world: &World, tx: &packed::Transaction, what: &str) {
    let taken = user_outflow(world, tx);
    let range = i128::from(CONTRIBUTION)..=i128::from(CONTRIBUTION + MAX_FEE);
    assert!(range.contains(&taken), "{what} takes {taken} shannons from the user");
}

/// Whether `tx` can no longer confirm: another tx spent one of its inputs.
fn conflicted(world: &World, tx: &packed::Transaction) -> bool {
    let hash = tx_hash(tx);
    tx.raw().inputs().into_iter().any(|input| {
        world
            .chain
            .spender_of(&input.previous_output())
            .is_some_and(|spender| spender != hash)
    })
}

/// Every invariant, after every step.
fn check(world: &World) {
    for (channel_id, tx) in &world.handed_out {
        assert_takes_only_the_contribution(world, tx, "a handed-out tx");
        let record = world
            .stored_record(INITIATOR, channel_id)
            .unwrap_or_else(|| panic!("channel {channel_id}, whose tx was handed out, has no record"));
        if record.channel_seed != Hash256([0; 32]) {
            continue;
        }
        // The key is gone: only allowed once the tx can never put money
        // under it, or the money under it has left through a close.
        let hash = tx_hash(tx);
        let funding = packed::OutPoint::new(hash.pack(), 0);
        let funded_and_spent = matches!(world.chain.transaction_status(&hash), TxStatus::Committed { .. })
            && world.chain.spender_of(&funding).is_some()
            && record.closed.is_some();
        assert!(
            conflicted(world, tx) || funded_and_spent,
            "channel {channel_id} lost its funding key while its handed-out tx {} may still confirm",
            Hash256(hash)
        );
    }
    for (from, message) in &world.sent_log {
        if *from != INITIATOR {
            continue;
        }
        if let FiberMessage::TxSignatures(signatures) = message {
            let record = world
                .stored_record(INITIATOR, &signatures.channel_id)
                .expect("a channel whose witnesses left is kept");
            match &record.funding_tx {
                Some(tx) => assert_takes_only_the_contribution(world, tx, "a tx whose witnesses left"),
                // A closed channel's tombstone keeps no tx; what it broadcast is checked below.
                None => assert!(
                    record.closed.is_some(),
                    "an open channel whose witnesses left lost its tx"
                ),
            }
        }
    }
    // Every tx the initiator broadcast that spends the user's cells.
    for (from, tx) in &world.broadcasts {
        if *from == INITIATOR && user_outflow(world, tx) > 0 {
            assert_takes_only_the_contribution(world, tx, "a broadcast tx");
        }
    }
    world.assert_no_nonce_reuse();
    for view in world.nodes[INITIATOR].node.channels() {
        let memory = world.nodes[INITIATOR].node.record(&view.channel_id).unwrap().clone();
        let stored = world.stored_record(INITIATOR, &view.channel_id);
        assert_eq!(
            stored.as_ref(),
            Some(&memory),
            "channel {} in memory differs from storage",
            view.channel_id
        );
    }
}

/// Indices of queued packets from the counterparty to the initiator.
fn attacker_packets(world: &World) -> Vec<usize> {
    (0..world.link.len())
        .filter(|j| world.link[*j].from == ACCEPTOR)
        .collect()
}

/// The newest channel of the initiator, if any.
fn newest_channel(world: &World) -> Option<fiber_funding::primitives::ChannelId> {
    world.nodes[INITIATOR]
        .node
        .channels()
        .into_iter()
        .max_by_key(|view| view.created_at_ms)
        .map(|view| view.channel_id)
}

fn apply(world: &mut World, op: &Op) {
    match op {
        Op::Deliver => {
            if let Some(packet) = world.link.pop_front() {
                world.deliver(packet);
            }
        }
        Op::DeliverAt(i) => {
            if !world.link.is_empty() {
                let index = i % world.link.len();
                if let Some(packet) = world.link.remove(index) {
                    world.deliver(packet);
                }
            }
        }
        Op::Drop(i) => {
            if !world.link.is_empty() {
                let index = i % world.link.len();
                world.link.remove(index);
            }
        }
        Op::Replay(i) => {
            let sent: Vec<_> = world
                .sent_log
                .iter()
                .filter(|(from, _)| *from == ACCEPTOR)
                .map(|(_, m)| m.clone())
                .collect();
            if !sent.is_empty() {
                world.inject(ACCEPTOR, sent[i % sent.len()].clone());
            }
        }
        Op::Mutate(i, mutation) => {
            let targets = attacker_packets(world);
            if targets.is_empty() {
                return;
            }
            let index = targets[i % targets.len()];
            let thief = default_lock::lock_script_for_key(world.acceptor_key.verifying_key());
            let victim = world.user.lock.clone();
            mutate_packet(world, index, mutation, &victim, &thief);
        }
        Op::Splice { index, at, bytes } => {
            let targets = attacker_packets(world);
            if targets.is_empty() {
                return;
            }
            let packet = &mut world.link[targets[index % targets.len()]].bytes;
            let at = at % packet.len().max(1);
            for (offset, byte) in bytes.iter().enumerate() {
                match packet.get_mut(at + offset) {
                    Some(slot) => *slot = *byte,
                    None => packet.push(*byte),
                }
            }
        }
        Op::Forge(bytes) => world.link.push_back(Packet {
            from: ACCEPTOR,
            to: INITIATOR,
            bytes: bytes.clone(),
        }),
        Op::Answer(lie) => answer(world, lie),
        Op::Tick(ms) => world.advance(*ms),
        Op::Disconnect => world.disconnect(),
        Op::Reconnect => world.reconnect(),
        Op::Mine => {
            world.chain.mine_block();
            while world.step_status() {}
        }
        Op::Submit { junk } => {
            if let Some((channel_id, signed)) = world.user.signed_in_url.clone() {
                let tx = if *junk {
                    let mut parts = TxParts::from_tx(&signed);
                    if let Some(witness) = parts.witnesses.first_mut() {
                        if let Some(last) = witness.len().checked_sub(3) {
                            witness[last] ^= 1;
                        }
                    }
                    parts.build()
                } else {
                    signed
                };
                let _ = world.submit(&channel_id, &tx);
            }
        }
        Op::Reload => world.crash(INITIATOR),
        Op::CrashAt { at_put, lands } => world.arm_crash(CrashPlan {
            node: INITIATOR,
            at_put: *at_put,
            lands: *lands,
            down_for_ms: 0,
        }),
        Op::DoubleSpend(i) => double_spend(world, *i),
        Op::Shutdown { fee_rate } => {
            if let Some(channel_id) = newest_channel(world) {
                let now = world.now_ms;
                if let Ok(actions) = world.nodes[INITIATOR]
                    .node
                    .shutdown_channel(&channel_id, None, *fee_rate, now)
                {
                    world.execute(INITIATOR, actions);
                }
            }
        }
        Op::ForceClose => {
            if let Some(channel_id) = newest_channel(world) {
                let now = world.now_ms;
                if let Ok(actions) = world.nodes[INITIATOR].node.force_close_channel(&channel_id, now) {
                    world.execute(INITIATOR, actions);
                }
            }
        }
        Op::Abandon => {
            if let Some(channel_id) = newest_channel(world) {
                let now = world.now_ms;
                if let Ok(actions) = world.nodes[INITIATOR].node.abandon_channel(&channel_id, now) {
                    world.execute(INITIATOR, actions);
                }
            }
        }
        // The world's open is a connected node's (an open waiting for its
        // peer is the driver's, tested in tests/driver.rs).
        Op::OpenAnother if world.link_down => {}
        Op::OpenAnother => {
            let params = world.open_params(1000);
            let _ = world.open_with(&params);
        }
    }
}

/// The user spends, from the wallet, an input of the last handed-out tx
/// that is still live: that tx can then never confirm.
fn double_spend(world: &mut World, i: usize) {
    let Some((_, handed_out)) = world.handed_out.last().cloned() else {
        return;
    };
    let lock = world.user.lock.clone();
    let live: Vec<_> = world
        .live_cells(&lock)
        .into_iter()
        .filter(|cell| {
            handed_out
                .raw()
                .inputs()
                .into_iter()
                .any(|input| input.previous_output() == cell.out_point)
        })
        .collect();
    if live.is_empty() {
        return;
    }
    let cell = &live[i % live.len()];
    let unsigned = packed::Transaction::new_builder()
        .raw(
            packed::RawTransaction::new_builder()
                .cell_deps(vec![world.chain.default_lock_cell_dep()].pack())
                .inputs(vec![packed::CellInput::new(cell.out_point.clone(), 0)].pack())
                .outputs(
                    vec![packed::CellOutput::new_builder()
                        .capacity(capacity_of(&cell.output) - CKB / 100)
                        .lock(lock)
                        .build()]
                    .pack(),
                )
                .outputs_data(vec![packed::Bytes::default()].pack())
                .build(),
        )
        .witnesses(vec![packed::WitnessArgs::new_builder()
            .lock(Some(ckb_types::bytes::Bytes::from(vec![0u8; 65])).pack())
            .build()
            .as_bytes()
            .pack()])
        .build();
    let signed = default_lock::sign_group(&unsigned, &[0], &world.user.key).expect("the wallet signs its own cell");
    world
        .chain
        .mine_foreign_transaction(signed)
        .expect("the wallet's own spend is valid");
    while world.step_status() {}
}

fn answer(world: &mut World, lie: &Lie) {
    let Some((index, channel_id, query)) = world.queries.pop_front() else {
        return;
    };
    // Only the initiator's chain node lies; the counterparty's is its own affair.
    let lie = if index == INITIATOR { lie.clone() } else { Lie::Honest };
    let event = lying_answer(world, channel_id, query, &lie, Liveness::Lied);
    let now = world.now_ms;
    let actions = world.nodes[index].node.chain_event(event, now);
    world.execute(index, actions);
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(open_lie) = lie(&mut u) else { return };
    let mut world = World::new(Setup {
        user_cells_ckb: vec![700, 800, 900],
        acceptor_cells_ckb: vec![500, 500, 400],
        ..Setup::default()
    });
    // A token cell of the user's, which must never be spent.
    let token = packed::CellOutput::new_builder()
        .capacity(3_000 * CKB)
        .lock(world.user.lock.clone())
        .type_(Some(default_lock::lock_script([0x70; 20])).pack())
        .build();
    world.chain.genesis_cell(token, vec![1; 16]);
    world.user.auto_submit = false;
    let params = world.open_params(1000);
    let cells = lying_indexer(world.live_cells(&world.user.lock.clone()), &open_lie);
    // An open the lies make fail is fine: the invariants still hold.
    let _ = world.open_from_cells(&params, cells);
    check(&world);
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = op(&mut u) else { break };
        apply(&mut world, &op);
        check(&world);
    }
    // Then let everything honest finish: still no invariant may break.
    world.let_the_honest_finish();
    check(&world);
});
