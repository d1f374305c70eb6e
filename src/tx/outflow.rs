//! What leaves this side's wallet in a funding tx, computed from the final
//! tx and the hash-checked cells it spends alone — never from how the tx was
//! built. The hardware-wallet rule ("show what leaves"): it must hold
//! whatever bug sits in the building code, and it is checked before the
//! unsigned tx is handed to the wallet and again before our witnesses leave.
//!
//! ```text
//! paid  = Σ our inputs − Σ outputs back to one of our locks
//! paid  = contribution (funding amount + reserve) + fee share,
//!         0 ≤ fee share ≤ fee of our own bytes at the funding fee rate + 1 CKB
//! every input in our range spends a plain cell of ours; none outside it does
//! output 0 = exactly the channel's funding lock, with both contributions
//! ```

use std::ops::Range;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::fee::{add, capacity_of, fee_for_size, sum, Overflow};
use super::funding::MAX_FEE_ABSORBED_LEFTOVER;
use super::parts::TxParts;
use crate::chain::ResolvedCell;

/// This side of the funding tx, as this node knows it independently of the tx.
#[derive(Debug, Clone)]
pub struct OurSide<'a> {
    /// Our inputs: the initiator's come first, the acceptor's after them.
    pub inputs: Range<usize>,
    /// Our locks: the wallet lock of our cells (change returns to it) and
    /// our shutdown script.
    pub locks: &'a [packed::Script],
    /// What we put into the funding output: funding amount + reserve.
    pub contribution: u64,
    /// The cell deps our lock needs; their bytes are ours to pay for.
    pub cell_deps: &'a [packed::CellDep],
    /// The initiator pays for the funding output's bytes.
    pub pays_for_funding_output: bool,
    pub fee_rate: u64,
}

/// Output 0 as it must be.
#[derive(Debug, Clone)]
pub struct ExpectedFundingOutput {
    pub lock: packed::Script,
    pub capacity: u64,
}

/// What we pay, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outflow {
    /// Σ our inputs − Σ our outputs.
    pub paid: u64,
    /// `paid` − our contribution.
    pub fee: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutflowError {
    #[error("the tx has {inputs} inputs but {cells} checked cells")]
    InputCount { inputs: usize, cells: usize },
    #[error("input {index} spends the same cell as input {first}: a node refuses the tx")]
    DuplicateInput { index: usize, first: usize },
    #[error("input {index} is in our part but does not spend a cell of ours")]
    NotOurs { index: usize },
    #[error("input {index} spends a cell of ours outside our part of the tx")]
    OursOutsideOurPart { index: usize },
    #[error("input {index} spends a cell with a type script or data")]
    NotPlain { index: usize },
    #[error("output {index} pays one of our locks but carries a type script or data")]
    OutputToUsNotPlain { index: usize },
    #[error("output 0 is not the channel's funding output: {0}")]
    FundingOutput(String),
    #[error("we would pay {paid} shannons, less than our contribution of {contribution}")]
    Underpays { paid: u64, contribution: u64 },
    #[error("we would pay {fee} shannons of fee, more than our share of at most {max}")]
    Overpays { fee: u64, max: u64 },
    #[error("the tx pays {fee} shannons of fee, less than the {needed} its size needs")]
    FeeTooLow { fee: u64, needed: u64 },
    #[error("as signed, the tx is {size} bytes and pays {fee} shannons of fee, less than the {needed} a node's minimum relay fee asks: a signature larger than the placeholder the fee was sized for needs a higher funding fee rate")]
    BelowRelayFee { size: usize, fee: u64, needed: u64 },
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// Checks `tx` (with placeholder witnesses, as its fee was sized) against
/// `spent`, the hash-checked cell of each of its inputs, in order.
pub fn check_what_leaves(
    tx: &packed::Transaction,
    spent: &[ResolvedCell],
    ours: &OurSide,
    funding: &ExpectedFundingOutput,
) -> Result<Outflow, OutflowError> {
    let raw = tx.raw();
    let inputs = raw.inputs().len();
    if spent.len() != inputs {
        return Err(OutflowError::InputCount {
            inputs,
            cells: spent.len(),
        });
    }
    // A cell listed twice would be counted twice below, and no node takes
    // such a tx: it could never confirm.
    let out_points: Vec<packed::OutPoint> = raw.inputs().into_iter().map(|i| i.previous_output()).collect();
    for (index, out_point) in out_points.iter().enumerate() {
        if let Some(first) = out_points[..index]
            .iter()
            .position(|o| o.as_slice() == out_point.as_slice())
        {
            return Err(OutflowError::DuplicateInput { index, first });
        }
    }
    let is_ours = |lock: &packed::Script| ours.locks.iter().any(|l| l.as_slice() == lock.as_slice());

    let mut paid = 0u64;
    for (index, cell) in spent.iter().enumerate() {
        if cell.output.type_().is_some() || !cell.data.is_empty() {
            return Err(OutflowError::NotPlain { index });
        }
        let mine = is_ours(&cell.output.lock());
        match (ours.inputs.contains(&index), mine) {
            (true, true) => paid = add(paid, capacity_of(&cell.output), "our inputs' capacity")?,
            (true, false) => return Err(OutflowError::NotOurs { index }),
            (false, true) => return Err(OutflowError::OursOutsideOurPart { index }),
            (false, false) => {}
        }
    }

    let outputs: Vec<packed::CellOutput> = raw.outputs().into_iter().collect();
    let data: Vec<Vec<u8>> = raw.outputs_data().into_iter().map(|d| d.raw_data().to_vec()).collect();
    let funding_output = outputs
        .first()
        .ok_or_else(|| OutflowError::FundingOutput("the tx has no outputs".into()))?;
    if funding_output.lock().as_slice() != funding.lock.as_slice() {
        return Err(OutflowError::FundingOutput(
            "its lock script is not the 2-of-2 funding lock".into(),
        ));
    }
    if capacity_of(funding_output) != funding.capacity {
        return Err(OutflowError::FundingOutput(format!(
            "it holds {} shannons instead of {}",
            capacity_of(funding_output),
            funding.capacity
        )));
    }
    if funding_output.type_().is_some() || data.first().is_none_or(|d| !d.is_empty()) {
        return Err(OutflowError::FundingOutput("it has a type script or data".into()));
    }
    let mut back = 0u64;
    let mut our_outputs = Vec::new();
    for (index, output) in outputs.iter().enumerate().skip(1) {
        if !is_ours(&output.lock()) {
            continue;
        }
        if output.type_().is_some() || data.get(index).is_none_or(|d| !d.is_empty()) {
            return Err(OutflowError::OutputToUsNotPlain { index });
        }
        back = add(back, capacity_of(output), "our outputs' capacity")?;
        our_outputs.push(output.clone());
    }

    let outflow = paid.checked_sub(back).ok_or(OutflowError::Underpays {
        paid: 0,
        contribution: ours.contribution,
    })?;
    let fee = outflow.checked_sub(ours.contribution).ok_or(OutflowError::Underpays {
        paid: outflow,
        contribution: ours.contribution,
    })?;
    let our_bytes = our_part(tx, ours, our_outputs).build().as_slice().len();
    let max = add(
        fee_for_size(our_bytes, ours.fee_rate)?,
        MAX_FEE_ABSORBED_LEFTOVER,
        "our fee share",
    )?;
    if fee > max {
        return Err(OutflowError::Overpays { fee, max });
    }

    // The tx as a whole must pay its way, or it never confirms and our
    // funds wait in limbo until an input is spent elsewhere.
    let total_in = sum(spent.iter().map(|c| capacity_of(&c.output)), "the inputs' capacity")?;
    let total_out = sum(outputs.iter().map(capacity_of), "the outputs' capacity")?;
    let total_fee = total_in.saturating_sub(total_out);
    let needed = fee_for_size(tx.as_slice().len(), ours.fee_rate)?;
    if total_fee < needed {
        return Err(OutflowError::FeeTooLow { fee: total_fee, needed });
    }
    Ok(Outflow { paid: outflow, fee })
}

/// Checks the tx as it will be broadcast, with the witnesses it will carry
/// rather than the placeholders its fee was sized with, against `spent`
/// (the hash-checked cell of each input, in order): it must still pay
/// `min_fee_rate`, a node's minimum relay fee, for its size, or it never
/// confirms. A wallet's lock may sign with a witness larger than the
/// placeholder (a passkey signature does), and a peer may send larger ones.
pub fn check_relay_fee(
    tx: &packed::Transaction,
    spent: &[ResolvedCell],
    min_fee_rate: u64,
) -> Result<(), OutflowError> {
    let inputs = tx.raw().inputs().len();
    if spent.len() != inputs {
        return Err(OutflowError::InputCount {
            inputs,
            cells: spent.len(),
        });
    }
    let total_in = sum(spent.iter().map(|c| capacity_of(&c.output)), "the inputs' capacity")?;
    let total_out = sum(
        tx.raw().outputs().into_iter().map(|o| capacity_of(&o)),
        "the outputs' capacity",
    )?;
    let fee = total_in.saturating_sub(total_out);
    let size = tx.as_slice().len();
    let needed = fee_for_size(size, min_fee_rate)?;
    if fee < needed {
        return Err(OutflowError::BelowRelayFee { size, fee, needed });
    }
    Ok(())
}

/// The bytes of the tx that are ours to pay for: our cell deps, inputs,
/// witnesses and outputs (and the funding output, if we built it), as a tx
/// of their own — slightly more than our exact share, never less.
fn our_part(tx: &packed::Transaction, ours: &OurSide, our_outputs: Vec<packed::CellOutput>) -> TxParts {
    let parts = TxParts::from_tx(tx);
    let mut outputs = Vec::new();
    if ours.pays_for_funding_output {
        outputs.extend(parts.outputs.first().cloned());
    }
    outputs.extend(our_outputs);
    TxParts {
        version: parts.version,
        cell_deps: parts
            .cell_deps
            .iter()
            .filter(|dep| ours.cell_deps.contains(dep))
            .cloned()
            .collect(),
        header_deps: Vec::new(),
        inputs: parts
            .inputs
            .get(ours.inputs.clone())
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        outputs_data: vec![Vec::new(); outputs.len()],
        outputs,
        witnesses: parts
            .witnesses
            .get(ours.inputs.clone())
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::tx::default_lock::{lock_script, placeholder_witness};
    use crate::tx::fee::SHANNONS_PER_CKB as CKB;

    fn cell(lock: &packed::Script, ckb: u64) -> ResolvedCell {
        ResolvedCell {
            output: packed::CellOutput::new_builder()
                .capacity(ckb * CKB)
                .lock(lock.clone())
                .build(),
            data: Vec::new(),
        }
    }

    fn output(lock: &packed::Script, shannons: u64) -> packed::CellOutput {
        packed::CellOutput::new_builder()
            .capacity(shannons)
            .lock(lock.clone())
            .build()
    }

    struct Case {
        user: packed::Script,
        peer: packed::Script,
        funding: ExpectedFundingOutput,
        parts: TxParts,
        spent: Vec<ResolvedCell>,
    }

    /// A two-party funding tx: the user's 1,500 CKB in, 1,062 into the
    /// funding output, the rest back less a fee; the peer's 500 in, 62 in,
    /// the rest back less its fee.
    fn case() -> Case {
        let user = lock_script([1; 20]);
        let peer = lock_script([2; 20]);
        let funding_lock = lock_script([9; 20]);
        let user_fee = 1_000;
        let peer_fee = 1_000;
        let input = |i: u8| {
            packed::CellInput::new_builder()
                .previous_output(packed::OutPoint::new_builder().tx_hash([i; 32].pack()).build())
                .build()
        };
        let parts = TxParts {
            inputs: vec![input(1), input(2), input(3)],
            outputs: vec![
                output(&funding_lock, 1_124 * CKB),
                output(&user, 438 * CKB - user_fee),
                output(&peer, 438 * CKB - peer_fee),
            ],
            outputs_data: vec![Vec::new(); 3],
            witnesses: vec![
                placeholder_witness().as_slice().to_vec(),
                Vec::new(),
                placeholder_witness().as_slice().to_vec(),
            ],
            ..TxParts::default()
        };
        Case {
            spent: vec![cell(&user, 700), cell(&user, 800), cell(&peer, 500)],
            funding: ExpectedFundingOutput {
                lock: funding_lock,
                capacity: 1_124 * CKB,
            },
            user,
            peer,
            parts,
        }
    }

    fn check_user(case: &Case) -> Result<Outflow, OutflowError> {
        let locks = [case.user.clone()];
        let ours = OurSide {
            inputs: 0..2,
            locks: &locks,
            contribution: 1_062 * CKB,
            cell_deps: &[],
            pays_for_funding_output: true,
            fee_rate: 1_000,
        };
        check_what_leaves(&case.parts.build(), &case.spent, &ours, &case.funding)
    }

    #[test]
    fn an_honest_tx_pays_the_contribution_and_a_small_fee() {
        let outflow = check_user(&case()).unwrap();
        assert_eq!(
            outflow,
            Outflow {
                paid: 1_062 * CKB + 1_000,
                fee: 1_000
            }
        );
        let mut peer_side = case();
        let locks = [peer_side.peer.clone()];
        let ours = OurSide {
            inputs: 2..3,
            locks: &locks,
            contribution: 62 * CKB,
            cell_deps: &[],
            pays_for_funding_output: false,
            fee_rate: 1_000,
        };
        peer_side.parts.outputs[2] = output(&peer_side.peer, 438 * CKB - 500);
        assert!(check_what_leaves(&peer_side.parts.build(), &peer_side.spent, &ours, &peer_side.funding).is_ok());
    }

    /// Every way a tx can take more than it should, one at a time.
    #[test]
    fn each_way_of_taking_more_is_refused() {
        type Change = fn(&mut Case);
        type Expected = fn(&OutflowError) -> bool;
        let table: Vec<(&str, Change, Expected)> = vec![
            (
                "change shrunk: the fee grows",
                |c| {
                    c.parts.outputs[1] = output(&c.user, 300 * CKB);
                },
                |e| matches!(e, OutflowError::Overpays { .. }),
            ),
            (
                "a user cell in the peer's part",
                |c| {
                    c.spent[2] = cell(&c.user, 500);
                },
                |e| matches!(e, OutflowError::OursOutsideOurPart { index: 2 }),
            ),
            (
                "a peer cell in our part",
                |c| {
                    c.spent[1] = cell(&c.peer, 800);
                },
                |e| matches!(e, OutflowError::NotOurs { index: 1 }),
            ),
            (
                "a token cell spent",
                |c| {
                    c.spent[0].data = vec![1];
                },
                |e| matches!(e, OutflowError::NotPlain { index: 0 }),
            ),
            (
                "funding output under another lock",
                |c| {
                    c.parts.outputs[0] = output(&c.peer, 1_124 * CKB);
                },
                |e| matches!(e, OutflowError::FundingOutput(_)),
            ),
            (
                "funding output short",
                |c| {
                    c.parts.outputs[0] = output(&c.funding.lock, 1_000 * CKB);
                },
                |e| matches!(e, OutflowError::FundingOutput(_)),
            ),
            (
                "change back to us with a type script",
                |c| {
                    let typed = c.parts.outputs[1]
                        .clone()
                        .as_builder()
                        .type_(Some(lock_script([5; 20])).pack())
                        .build();
                    c.parts.outputs[1] = typed;
                },
                |e| matches!(e, OutflowError::OutputToUsNotPlain { index: 1 }),
            ),
            (
                "one of our cells spent twice, counted twice",
                |c| {
                    c.parts.inputs[1] = c.parts.inputs[0].clone();
                    c.spent[1] = c.spent[0].clone();
                    c.parts.outputs[1] = output(&c.user, 338 * CKB - 1_000);
                },
                |e| matches!(e, OutflowError::DuplicateInput { index: 1, first: 0 }),
            ),
            (
                "fewer checked cells than inputs",
                |c| {
                    c.spent.pop();
                },
                |e| matches!(e, OutflowError::InputCount { .. }),
            ),
            (
                "capacities summing past 2^64",
                |c| {
                    c.spent[0].output = output(&c.user, u64::MAX);
                },
                |e| matches!(e, OutflowError::Overflow(_)),
            ),
            (
                "the whole tx paying no fee",
                |c| {
                    c.parts.outputs[2] = output(&c.peer, 438 * CKB + 1_000);
                },
                |e| matches!(e, OutflowError::FeeTooLow { .. }),
            ),
        ];
        for (name, change, expected) in table {
            let mut c = case();
            change(&mut c);
            match check_user(&c) {
                Err(error) => assert!(expected(&error), "{name}: {error}"),
                Ok(outflow) => panic!("{name}: taken, paying {outflow:?}"),
            }
        }
    }
}
