//! Kill each node at every point where it persists, rebuild it from its store
//! alone, reconnect, and check the flow still ends well: in `ChannelReady` on
//! both sides, or — when the node stayed down past the deadline — in an abort
//! both sides agree on, with the user's cells free for a new channel. Every
//! run also checks that the funding tx reached the chain at most once and
//! that no MuSig2 nonce signed two different things.

mod common;

use common::*;
use fiber_funding::flow::ChannelState;

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
