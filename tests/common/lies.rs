//! What the adversary property tests and the `initiator_core` fuzz target
//! do to a node: a peer that rewrites its messages, and a CKB node that lies.

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::{LiveCell, ResolvedCell};
use fiber_funding::flow::{ChainEvent, ChainQuery};
use fiber_funding::primitives::ChannelId;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::parts::TxParts;
use fiber_funding::wire::{FiberMessage, TxAbort};

use super::World;

/// What an attacking peer does to one of its queued messages.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Bytes flipped: the message no longer decodes (or decodes as another).
    FlipByte(usize),
    /// In a funding tx: a capacity moved by `delta` shannons.
    Capacity { output: usize, delta: i64 },
    /// In a funding tx: one of the victim's spare cells added as an input,
    /// with an output to the attacker taking some of it.
    StealSpareCell,
    /// In a funding tx: the funding output under another code hash.
    ForeignFundingLock,
    /// An abort with an oversized reason.
    HugeAbort,
}

/// Applies `mutation` to the queued packet at `index` (the attacker's);
/// `victim_lock` owns the cells a theft takes, `thief_lock` receives them.
pub fn mutate_packet(
    world: &mut World,
    index: usize,
    mutation: &Mutation,
    victim_lock: &packed::Script,
    thief_lock: &packed::Script,
) {
    let bytes = world.link[index].bytes.clone();
    let changed = match (FiberMessage::decode(&bytes), mutation) {
        (_, Mutation::FlipByte(at)) => {
            let mut bytes = bytes;
            let at = at % bytes.len().max(1);
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= 0x5a;
            }
            bytes
        }
        (Ok(message), Mutation::HugeAbort) => FiberMessage::TxAbort(TxAbort {
            channel_id: message.channel_id(),
            message: vec![b'!'; 5_000],
        })
        .encode(),
        (Ok(FiberMessage::TxUpdate(mut update)), mutation) => {
            update.tx = mutate_tx(world, victim_lock, thief_lock, &update.tx, mutation);
            FiberMessage::TxUpdate(update).encode()
        }
        (Ok(FiberMessage::AcceptChannel(mut accept)), Mutation::Capacity { delta, .. }) => {
            accept.reserved_ckb_amount = accept.reserved_ckb_amount.saturating_add_signed(*delta);
            FiberMessage::AcceptChannel(accept).encode()
        }
        (Ok(FiberMessage::OpenChannel(mut open)), Mutation::Capacity { delta, .. }) => {
            open.funding_fee_rate = open.funding_fee_rate.saturating_add_signed(*delta);
            FiberMessage::OpenChannel(open).encode()
        }
        (_, _) => bytes,
    };
    world.link[index].bytes = changed;
}

/// A funding tx as an attacker would rewrite it.
pub fn mutate_tx(
    world: &World,
    victim_lock: &packed::Script,
    thief_lock: &packed::Script,
    tx: &packed::Transaction,
    mutation: &Mutation,
) -> packed::Transaction {
    let mut parts = TxParts::from_tx(tx);
    match mutation {
        Mutation::Capacity { output, delta } => {
            let index = output % parts.outputs.len().max(1);
            if let Some(out) = parts.outputs.get_mut(index) {
                let capacity = capacity_of(out).saturating_add_signed(*delta);
                *out = out.clone().as_builder().capacity(capacity).build();
            }
        }
        Mutation::StealSpareCell => {
            let used: Vec<_> = parts.inputs.iter().map(|i| i.previous_output()).collect();
            if let Some(spare) = world
                .live_cells(victim_lock)
                .into_iter()
                .find(|c| !used.contains(&c.out_point))
            {
                parts.inputs.push(
                    packed::CellInput::new_builder()
                        .previous_output(spare.out_point)
                        .build(),
                );
                parts.witnesses.push(Vec::new());
                parts.outputs.push(
                    packed::CellOutput::new_builder()
                        .capacity(capacity_of(&spare.output) / 2)
                        .lock(thief_lock.clone())
                        .build(),
                );
                parts.outputs_data.push(Vec::new());
            }
        }
        Mutation::ForeignFundingLock => {
            if let Some(funding) = parts.outputs.first_mut() {
                let lock = funding.lock().as_builder().code_hash([0x66; 32].pack()).build();
                *funding = funding.clone().as_builder().lock(lock).build();
            }
        }
        Mutation::FlipByte(_) | Mutation::HugeAbort => {}
    }
    parts.build()
}

#[derive(Debug, Clone)]
pub enum Lie {
    Honest,
    /// An indexer cell's capacity moved by `delta` shannons.
    Capacity(usize, i64),
    /// An indexer cell's type script and data hidden, or made up.
    FlipTypeAndData(usize),
    /// A resolved cell said not to exist.
    Missing(usize),
    /// One answer fewer than asked.
    Truncate,
    /// The answer names other out points (a stale answer).
    WrongOutPoints,
}

/// Whether a lie also bends liveness answers (`InputsLive`): short or stale
/// ones. Liveness itself is taken on the node's word (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Honest,
    Lied,
}

/// The chain's answer to `query`, as a node telling `lie` would give it.
pub fn lying_answer(
    world: &World,
    channel_id: ChannelId,
    query: ChainQuery,
    lie: &Lie,
    liveness: Liveness,
) -> ChainEvent {
    match query {
        ChainQuery::LiveCells { lock } => ChainEvent::LiveCells {
            channel_id,
            cells: lying_indexer(world.live_cells(&lock), lie),
        },
        ChainQuery::ResolveInputs { out_points } => {
            let mut cells: Vec<Option<ResolvedCell>> = out_points
                .iter()
                .map(|op| fiber_funding::chain::simulated_client::simulated_cell(&world.chain, op))
                .collect();
            let mut out_points = out_points;
            let len = cells.len().max(1);
            match lie {
                Lie::Honest | Lie::Capacity(..) | Lie::FlipTypeAndData(_) => {}
                Lie::Missing(i) => {
                    if let Some(cell) = cells.get_mut(i % len) {
                        *cell = None;
                    }
                }
                Lie::Truncate => {
                    cells.pop();
                }
                Lie::WrongOutPoints => stale(&mut out_points),
            }
            ChainEvent::ResolvedInputs {
                channel_id,
                out_points,
                cells,
            }
        }
        ChainQuery::SpenderOf { out_point, .. } => ChainEvent::SpenderOf {
            channel_id,
            spender: world.chain.spender_of(&out_point).map(|hash| {
                let tx = world.chain.transaction(&hash).expect("a spender the chain has");
                (fiber_funding::chain::CheckedTx(tx), world.chain.report(&hash))
            }),
            out_point,
        },
        ChainQuery::InputsLive { out_points, at_tip } => {
            let mut live: Vec<bool> = out_points.iter().map(|op| world.chain.is_live(op)).collect();
            let mut out_points = out_points;
            if liveness == Liveness::Lied {
                match lie {
                    Lie::Truncate => {
                        live.pop();
                    }
                    Lie::WrongOutPoints => stale(&mut out_points),
                    _ => {}
                }
            }
            ChainEvent::InputsLive {
                channel_id,
                live,
                out_points,
                at_tip,
            }
        }
    }
}

/// Out points that are not the ones asked about.
fn stale(out_points: &mut Vec<packed::OutPoint>) {
    out_points.reverse();
    if out_points.len() < 2 {
        out_points.clear();
    }
}

/// The indexer's answer, as a lying node would give it.
pub fn lying_indexer(mut cells: Vec<LiveCell>, lie: &Lie) -> Vec<LiveCell> {
    let len = cells.len().max(1);
    match lie {
        Lie::Capacity(i, delta) => {
            if let Some(cell) = cells.get_mut(i % len) {
                let capacity = capacity_of(&cell.output).saturating_add_signed(*delta);
                cell.output = cell.output.clone().as_builder().capacity(capacity).build();
            }
        }
        Lie::FlipTypeAndData(i) => {
            if let Some(cell) = cells.get_mut(i % len) {
                if cell.output.type_().is_some() {
                    cell.output = cell
                        .output
                        .clone()
                        .as_builder()
                        .type_(None::<packed::Script>.pack())
                        .build();
                    cell.output_data.clear();
                } else {
                    let type_script = default_lock::lock_script([0x77; 20]);
                    cell.output = cell.output.clone().as_builder().type_(Some(type_script).pack()).build();
                }
            }
        }
        _ => {}
    }
    cells
}
