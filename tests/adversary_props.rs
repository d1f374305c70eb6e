#![cfg(not(target_arch = "wasm32"))]
//! The adversary suite, generated: proptest drives one honest node (the
//! victim) with arbitrary interleavings of valid, replayed, reordered,
//! dropped and malformed peer messages, honest and lying chain answers,
//! ticks, reconnections and (for the browser) junk and genuine wallet
//! signatures. After every step it asserts:
//!
//! * what the victim handed to the wallet, and what it released witnesses
//!   for, takes from the victim exactly its contribution and a small fee,
//!   computed from the chain's own cells (the outflow invariant);
//! * no MuSig2 nonce was used for two different messages;
//! * nothing was acted on before it was durable (`World::execute` checks every
//!   list of actions), and memory never runs ahead of the store.
//!
//! Both roles are victims in turn: the browser against a malicious
//! counterparty, the counterparty against a malicious browser.

mod common;

use ckb_types::packed;
use ckb_types::prelude::*;
use common::lies::{lying_answer, lying_indexer, mutate_packet, Lie, Liveness, Mutation};
use common::*;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::parts::TxParts;
use fiber_funding::wire::FiberMessage;
use proptest::prelude::*;

/// How many generated cases each role gets.
const CASES: u32 = 256;
/// The browser's contribution (1,000 CKB and a 99 CKB reserve) and the
/// counterparty's (its 99 CKB reserve), and the most either may pay in fee.
const CONTRIBUTION: [u64; 2] = [1_099 * CKB, 99 * CKB];
const MAX_FEE: u64 = CKB;

#[derive(Debug, Clone)]
enum Op {
    /// The next packet, in order.
    Deliver,
    /// A queued packet out of order.
    DeliverAt(usize),
    Drop(usize),
    /// An earlier message of the attacker, sent again.
    Replay(usize),
    /// A queued attacker → victim message, changed.
    Mutate(usize, Mutation),
    /// The next chain query answered, honestly or not.
    Answer(Lie),
    Tick(u64),
    /// The connection breaks, until a `Reconnect` or the end.
    Disconnect,
    Reconnect,
    Mine,
    /// The wallet returns the handed-out tx, signed or with junk.
    Submit {
        junk: bool,
    },
}

/// A chain node's lie, where one is possible. The indexer (`get_cells`) is
/// trusted for nothing: it may misstate a cell's capacity, hide its type
/// script and data. Resolved inputs come through the hash-checked path, so
/// their content cannot be forged; the node may still claim a tx does not
/// exist, and a broken runtime could deliver a stale or short answer.
fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        6 => Just(Lie::Honest),
        1 => (0usize..6, -200i64..200).prop_map(|(i, d)| Lie::Capacity(i, d * CKB as i64 / 10)),
        1 => (0usize..6).prop_map(Lie::FlipTypeAndData),
        1 => (0usize..6).prop_map(Lie::Missing),
        1 => Just(Lie::Truncate),
        1 => Just(Lie::WrongOutPoints),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let mutation = prop_oneof![
        (0usize..200).prop_map(Mutation::FlipByte),
        (0usize..4, -200i64..200).prop_map(|(output, delta)| Mutation::Capacity {
            output,
            delta: delta * CKB as i64 / 10
        }),
        Just(Mutation::StealSpareCell),
        Just(Mutation::ForeignFundingLock),
        Just(Mutation::HugeAbort),
    ];
    prop_oneof![
        12 => Just(Op::Deliver),
        2 => (0usize..8).prop_map(Op::DeliverAt),
        1 => (0usize..8).prop_map(Op::Drop),
        2 => (0usize..16).prop_map(Op::Replay),
        3 => ((0usize..8), mutation).prop_map(|(i, m)| Op::Mutate(i, m)),
        8 => lie().prop_map(Op::Answer),
        1 => (0u64..400_000).prop_map(Op::Tick),
        1 => Just(Op::Disconnect),
        1 => Just(Op::Reconnect),
        2 => Just(Op::Mine),
        2 => any::<bool>().prop_map(|junk| Op::Submit { junk }),
    ]
}

/// The victim's net outflow in `tx`, from the chain's own cells.
fn outflow(world: &World, victim: usize, tx: &packed::Transaction) -> i128 {
    let lock = victim_lock(world, victim);
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

fn victim_lock(world: &World, victim: usize) -> packed::Script {
    if victim == INITIATOR {
        world.user.lock.clone()
    } else {
        default_lock::lock_script_for_key(world.acceptor_key.verifying_key())
    }
}

fn assert_takes_only_the_contribution(world: &World, victim: usize, tx: &packed::Transaction, what: &str) {
    let taken = outflow(world, victim, tx);
    let range = i128::from(CONTRIBUTION[victim])..=i128::from(CONTRIBUTION[victim] + MAX_FEE);
    assert!(
        range.contains(&taken),
        "{what} takes {taken} shannons from node {victim}"
    );
}

/// Every invariant, after every step.
fn check(world: &World, victim: usize) {
    // What the browser handed to the wallet.
    if victim == INITIATOR {
        for (_, tx) in &world.handed_out {
            assert_takes_only_the_contribution(world, victim, tx, "a handed-out tx");
        }
    }
    // What the victim committed to (its TxUpdate, for the counterparty) and
    // what it released witnesses for.
    for (from, message) in &world.sent_log {
        if *from != victim {
            continue;
        }
        match message {
            FiberMessage::TxUpdate(update) if victim == ACCEPTOR => {
                assert_takes_only_the_contribution(world, victim, &update.tx, "the counterparty's TxUpdate")
            }
            FiberMessage::TxSignatures(signatures) => {
                let record = world.nodes[victim]
                    .node
                    .record(&signatures.channel_id)
                    .expect("a released channel is kept");
                let tx = record.funding_tx.as_ref().expect("a released channel keeps its tx");
                assert_takes_only_the_contribution(world, victim, tx, "a tx whose witnesses left");
            }
            _ => {}
        }
    }
    world.assert_no_nonce_reuse();
    // Memory never runs ahead of storage.
    for view in world.nodes[victim].node.channels() {
        let memory = world.nodes[victim].node.record(&view.channel_id).unwrap().clone();
        let stored = world.stored_record(victim, &view.channel_id);
        assert_eq!(
            stored.as_ref(),
            Some(&memory),
            "channel {} in memory differs from storage",
            view.channel_id
        );
    }
}

fn apply(world: &mut World, victim: usize, op: &Op) {
    let attacker = 1 - victim;
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
                .filter(|(from, _)| *from == attacker)
                .map(|(_, m)| m.clone())
                .collect();
            if !sent.is_empty() {
                let message = sent[i % sent.len()].clone();
                world.inject(attacker, message);
            }
        }
        Op::Mutate(i, mutation) => {
            let targets: Vec<usize> = (0..world.link.len())
                .filter(|j| world.link[*j].from == attacker)
                .collect();
            if targets.is_empty() {
                return;
            }
            let index = targets[i % targets.len()];
            let (victim_lock, thief_lock) = (victim_lock(world, victim), victim_lock(world, attacker));
            mutate_packet(world, index, mutation, &victim_lock, &thief_lock);
        }
        Op::Answer(lie) => answer(world, victim, lie),
        Op::Tick(ms) => world.advance(*ms),
        Op::Disconnect => world.disconnect(),
        Op::Reconnect => world.reconnect(),
        Op::Mine => {
            world.chain.mine_block();
            // The funding tx's status, as the runtime polls it.
            while world.step_status() {}
        }
        Op::Submit { junk } => {
            if victim != INITIATOR {
                return;
            }
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
    }
}

fn answer(world: &mut World, victim: usize, lie: &Lie) {
    let Some((index, channel_id, query)) = world.queries.pop_front() else {
        return;
    };
    let lie = if index == victim { lie.clone() } else { Lie::Honest };
    let event = lying_answer(world, channel_id, query, &lie, Liveness::Honest);
    let now = world.now_ms;
    let actions = world.nodes[index].node.chain_event(event, now);
    world.execute(index, actions);
}

fn run_case(victim: usize, open_lie: &Lie, ops: &[Op]) {
    let mut world = World::new(Setup {
        user_cells_ckb: vec![700, 800, 900],
        acceptor_cells_ckb: vec![500, 500, 400],
        ..Setup::default()
    });
    // A token cell of each wallet, which must never be spent.
    for lock in [world.user.lock.clone(), victim_lock(&world, ACCEPTOR)] {
        let token = packed::CellOutput::new_builder()
            .capacity(3_000 * CKB)
            .lock(lock)
            .type_(Some(default_lock::lock_script([0x70; 20])).pack())
            .build();
        world.chain.genesis_cell(token, vec![1; 16]);
    }
    world.user.auto_submit = false;
    let params = world.open_params(1000);
    let cells = lying_indexer(world.live_cells(&world.user.lock.clone()), open_lie);
    // An open the lies make fail is fine: the invariants still hold.
    let _ = world.open_from_cells(&params, cells);
    check(&world, victim);
    for op in ops {
        apply(&mut world, victim, op);
        check(&world, victim);
    }
    // Then let everything honest finish: still no invariant may break.
    world.let_the_honest_finish();
    check(&world, victim);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_malicious_counterparty_and_chain_never_take_more_than_the_users_contribution(
        open_lie in lie(),
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        run_case(INITIATOR, &open_lie, &ops);
    }

    #[test]
    fn a_malicious_browser_and_chain_never_take_more_than_the_counterpartys_reserve(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        run_case(ACCEPTOR, &Lie::Honest, &ops);
    }
}

#[test]
fn the_generated_suite_reports_its_size() {
    println!("adversary properties: 2 roles x {CASES} generated cases, up to 79 steps each, invariants checked after every step");
}
