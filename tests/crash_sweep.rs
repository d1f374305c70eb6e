//! Kill each node at every point where it persists, rebuild it from its store
//! alone, reconnect, and check the flow still ends well: in `ChannelReady` on
//! both sides, or — when the node stayed down past the deadline — in an abort
//! both sides agree on, with the user's cells free for a new channel. Every
//! run also checks that the funding tx reached the chain at most once and
//! that no MuSig2 nonce signed two different things.
//!
//! The same sweep runs over the ways out of a funded channel: a cooperative
//! close asked by either side and a unilateral close, each must end closed
//! on both sides with each side's money back.

mod common;

use common::*;
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::flow::ChannelState;
use fiber_funding::primitives::ChannelId;

/// Persists each node makes in an undisturbed flow.
fn persistence_points() -> [usize; 2] {
    let mut world = World::new(Setup::default());
    world.open(1000).unwrap();
    world.run();
    assert_channel_ready(&world);
    [
        world.nodes[INITIATOR].store.puts_seen.get(),
        world.nodes[ACCEPTOR].store.puts_seen.get(),
    ]
}

/// Runs one crash scenario and checks its outcome. Returns whether it ended
/// aborted (true) or ready (false).
fn run_with_crash(plan: CrashPlan) -> bool {
    let mut world = World::new(Setup::default());
    world.arm_crash(plan);
    world.open(1000).unwrap();
    world.run();
    let context = format!("{plan:?}");
    assert!(world.crashes == 1, "{context}: the planned crash did not happen");
    assert!(
        world.nodes[plan.node].restore_errors.is_empty(),
        "{context}: {:?}",
        world.nodes[plan.node].restore_errors
    );

    let initiator_open = world
        .initiator()
        .channels()
        .iter()
        .any(|c| !matches!(c.state, ChannelState::Closed(_)));
    if !initiator_open {
        // The flow ended (or never became durable): both sides must agree, and
        // the user's cells must be free for a new channel.
        assert_aborted_on_both_sides(&world);
        world
            .open(1000)
            .unwrap_or_else(|e| panic!("{context}: cells still reserved after the abort: {e}"));
        world.run();
        assert_channel_ready(&world);
        return true;
    }
    assert_channel_ready(&world);
    false
}

#[test]
fn every_persistence_point_of_both_roles_recovers() {
    let points = persistence_points();
    let mut runs = 0;
    let mut aborted = 0;
    for node in [INITIATOR, ACCEPTOR] {
        for at_put in 1..=points[node] {
            for lands in [true, false] {
                let ended_aborted = run_with_crash(CrashPlan {
                    node,
                    at_put,
                    lands,
                    down_for_ms: 0,
                });
                // Without the deadline passing, only a flow that never became
                // durable at the initiator may need a fresh open.
                if ended_aborted {
                    assert!(
                        node == INITIATOR && at_put == 1 && !lands,
                        "aborted at {node} {at_put} {lands}"
                    );
                }
                aborted += usize::from(ended_aborted);
                runs += 1;
            }
        }
    }
    println!(
        "crash sweep: {} initiator and {} acceptor persistence points, {runs} runs ({aborted} reopened)",
        points[INITIATOR], points[ACCEPTOR]
    );
}

#[test]
fn a_node_down_past_the_deadline_ends_in_an_abort_both_sides_agree_on_or_in_ready() {
    let points = persistence_points();
    let mut outcomes = [0usize; 2];
    for node in [INITIATOR, ACCEPTOR] {
        for at_put in 1..=points[node] {
            let plan = CrashPlan {
                node,
                at_put,
                lands: true,
                down_for_ms: TIMEOUT_MS + GRACE_MS + 1_000,
            };
            outcomes[usize::from(run_with_crash(plan))] += 1;
        }
    }
    println!(
        "deadline sweep: {} ended ready, {} aborted on both sides",
        outcomes[0], outcomes[1]
    );
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both outcomes should occur: {outcomes:?}"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseKind {
    CooperativeByUser,
    CooperativeByCounterparty,
    UnilateralByUser,
}

impl CloseKind {
    const ALL: [CloseKind; 3] = [
        CloseKind::CooperativeByUser,
        CloseKind::CooperativeByCounterparty,
        CloseKind::UnilateralByUser,
    ];

    /// Asks for the close; false when the channel is no longer open to ask.
    fn start(self, world: &mut World, channel_id: &ChannelId) {
        let now = world.now_ms;
        let (index, actions) = match self {
            CloseKind::CooperativeByUser => (
                INITIATOR,
                world.nodes[INITIATOR]
                    .node
                    .shutdown_channel(channel_id, None, None, now),
            ),
            CloseKind::CooperativeByCounterparty => (
                ACCEPTOR,
                world.nodes[ACCEPTOR].node.shutdown_channel(channel_id, None, None, now),
            ),
            CloseKind::UnilateralByUser => (
                INITIATOR,
                world.nodes[INITIATOR].node.force_close_channel(channel_id, now),
            ),
        };
        let actions = actions.unwrap_or_else(|e| panic!("{self:?}: {e}"));
        world.execute(index, actions);
    }

    fn asker(self) -> usize {
        match self {
            CloseKind::CooperativeByCounterparty => ACCEPTOR,
            _ => INITIATOR,
        }
    }

    fn expected(self, index: usize) -> CloseFlags {
        match self {
            CloseKind::UnilateralByUser if index == INITIATOR => CloseFlags::UNCOOPERATIVE_LOCAL,
            CloseKind::UnilateralByUser => CloseFlags::UNCOOPERATIVE_REMOTE,
            _ => CloseFlags::COOPERATIVE,
        }
    }
}

/// Drives a close to its end: asks again if the ask was lost with the crash,
/// lets the delay pass, and runs until quiet.
fn finish_close(world: &mut World, kind: CloseKind, channel_id: &ChannelId) {
    world.run();
    if world.state(kind.asker(), channel_id) == Some(ChannelState::ChannelReady) {
        // The command's persist never landed: the user asks again.
        kind.start(world, channel_id);
        world.run();
    }
    world.chain.mine_epochs(1);
    world.run();
}

/// Persists each node makes in an undisturbed close.
fn close_points(kind: CloseKind) -> [usize; 2] {
    let (mut world, channel_id) = ready_world();
    let before = [INITIATOR, ACCEPTOR].map(|index| world.nodes[index].store.puts_seen.get());
    kind.start(&mut world, &channel_id);
    finish_close(&mut world, kind, &channel_id);
    [INITIATOR, ACCEPTOR].map(|index| world.nodes[index].store.puts_seen.get() - before[index])
}

fn run_close_with_crash(kind: CloseKind, plan: CrashPlan) {
    let (mut world, channel_id) = ready_world();
    let scripts = [INITIATOR, ACCEPTOR].map(|index| world.shutdown_script(index, &channel_id));
    let before = scripts.clone().map(|script| world.balance(&script));
    world.arm_crash(plan);
    kind.start(&mut world, &channel_id);
    finish_close(&mut world, kind, &channel_id);

    let context = format!("{kind:?} {plan:?}");
    assert_eq!(world.crashes, 1, "{context}: the planned crash did not happen");
    assert!(world.nodes[plan.node].restore_errors.is_empty(), "{context}");
    for index in [INITIATOR, ACCEPTOR] {
        assert_eq!(
            world.state(index, &channel_id),
            Some(ChannelState::Closed(kind.expected(index))),
            "{context}: node {index}"
        );
        let record = world.stored_record(index, &channel_id).unwrap();
        assert!(
            record.close.is_none() && record.closed.is_some(),
            "{context}: node {index} not wiped"
        );
    }
    // Each side's money back, less at most a hundredth of a CKB in fees.
    let gains = [0, 1].map(|i| world.balance(&scripts[i]) - before[i]);
    let shares = [(1000 + 99) * CKB, 99 * CKB];
    for i in [0, 1] {
        assert!(
            gains[i] <= shares[i] && gains[i] + CKB / 100 >= shares[i],
            "{context}: side {i} got {}",
            gains[i]
        );
    }
    world.assert_no_nonce_reuse();
}

#[test]
fn every_persistence_point_of_every_close_recovers() {
    let mut runs = 0;
    for kind in CloseKind::ALL {
        let points = close_points(kind);
        assert!(points.iter().all(|p| *p > 0), "{kind:?}: {points:?}");
        for node in [INITIATOR, ACCEPTOR] {
            for at_put in 1..=points[node] {
                for lands in [true, false] {
                    run_close_with_crash(
                        kind,
                        CrashPlan {
                            node,
                            at_put,
                            lands,
                            down_for_ms: 0,
                        },
                    );
                    runs += 1;
                }
            }
        }
        println!("close sweep {kind:?}: {points:?} persistence points");
    }
    println!("close sweep: {runs} runs");
}
