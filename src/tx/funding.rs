//! The funding transaction: each side adds its own inputs and change and pays
//! the fee for the bytes it adds.
//!
//! Layout: output 0 is the 2-of-2 funding output; the initiator's inputs come
//! first, then the acceptor's; each side's first input carries a placeholder
//! `WitnessArgs` (65-byte zero lock) so the fee is right once it is signed.

use std::collections::HashSet;

use ckb_types::packed;
use ckb_types::prelude::*;

use super::default_lock::placeholder_witness_with_lock_len;
use super::fee::{
    add, capacity_of, fee_for_size, occupied_capacity, occupied_capacity_of_lock, Ckb, Overflow, SHANNONS_PER_CKB,
};
use super::parts::TxParts;
use crate::chain::LiveCell;

/// Leftover below this may go to the fee when it cannot pay for a change cell.
pub const MAX_FEE_ABSORBED_LEFTOVER: u64 = SHANNONS_PER_CKB;
/// Inputs the initiator's part may have; the rest of
/// [`crate::flow::limits::MAX_FUNDING_INPUTS`] is the acceptor's.
pub const MAX_INITIATOR_INPUTS: usize = 400;
/// Inputs the acceptor may add.
pub const MAX_ACCEPTOR_INPUTS: usize = 100;

/// Why a side cannot add its part to the funding tx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FundingError {
    #[error(
        "not enough funds: needed {needed_ckb} CKB ({needed} shannons) but only {available_ckb} CKB ({available} shannons) are available in spendable cells",
        needed_ckb = Ckb(*needed),
        available_ckb = Ckb(*available)
    )]
    InsufficientFunds { needed: u64, available: u64 },
    #[error(
        "funding would leave {leftover} shannons, too little for a change cell (which needs {min_change} shannons) and too much to give away as fee; add funds or change the amount"
    )]
    UnspendableChange { leftover: u64, min_change: u64 },
    #[error("{0}")]
    Overflow(#[from] Overflow),
    #[error("funding this amount would take more than {max} of the wallet's cells; consolidate small cells into larger ones first")]
    TooManyInputs { max: usize },
}

/// What one side adds to the funding transaction.
pub struct Contribution<'a> {
    /// Candidate cells, in the order they should be tried (the indexer's order).
    pub cells: &'a [LiveCell],
    /// Out points other flows already use; never spent twice.
    pub excluded: &'a HashSet<packed::OutPoint>,
    /// The lock of the cells; change goes back to it.
    pub owner_lock: &'a packed::Script,
    /// Cell deps the owner's lock needs; added unless already present.
    pub cell_deps: &'a [packed::CellDep],
    /// Capacity this side puts into the funding output.
    pub amount: u64,
    pub fee_rate: u64,
    /// At most this many inputs of this side.
    pub max_inputs: usize,
    /// Bytes of the signature the owner's wallet puts in the first input's
    /// `WitnessArgs.lock`; the placeholder holds as many, so the fee pays
    /// for them.
    pub witness_lock_len: usize,
}

/// A funding output with `capacity`, locked by `funding_lock`.
pub fn funding_output(funding_lock: packed::Script, capacity: u64) -> packed::CellOutput {
    packed::CellOutput::new_builder()
        .capacity(capacity)
        .lock(funding_lock)
        .build()
}

/// The initiator's half: the funding output with its own amount, its inputs,
/// its change. It pays the fee of every byte in it.
pub fn build_initiator_part(
    funding_lock: packed::Script,
    contribution: &Contribution,
) -> Result<packed::Transaction, FundingError> {
    let base = TxParts {
        outputs: vec![funding_output(funding_lock, 0)],
        outputs_data: vec![Vec::new()],
        ..TxParts::default()
    };
    add_contribution(base, 0, contribution)
}

/// The acceptor's half on top of the initiator's: more capacity in output 0,
/// its inputs and change appended. It pays the fee of the bytes it adds.
pub fn add_acceptor_part(
    initiator_part: &packed::Transaction,
    contribution: &Contribution,
) -> Result<packed::Transaction, FundingError> {
    let fee_already_paid = fee_for_size(initiator_part.as_slice().len(), contribution.fee_rate)?;
    add_contribution(TxParts::from_tx(initiator_part), fee_already_paid, contribution)
}

/// Whether a cell holds only capacity (no type, no data), and so may fund a channel.
pub fn is_plain_capacity_cell(cell: &LiveCell) -> bool {
    cell.output.type_().is_none() && cell.output_data.is_empty()
}

fn add_contribution(
    mut parts: TxParts,
    fee_already_paid: u64,
    contribution: &Contribution,
) -> Result<packed::Transaction, FundingError> {
    let funding = &parts.outputs[0];
    let funding_capacity = add(
        capacity_of(funding),
        contribution.amount,
        "the funding output's capacity",
    )?;
    parts.outputs[0] = funding.clone().as_builder().capacity(funding_capacity).build();
    for dep in contribution.cell_deps {
        if !parts.cell_deps.contains(dep) {
            parts.cell_deps.push(dep.clone());
        }
    }

    let change_output = packed::CellOutput::new_builder()
        .lock(contribution.owner_lock.clone())
        .build();
    let min_change = occupied_capacity(&change_output, 0)?;
    let first_input = parts.inputs.len();
    let mut input_total = 0u64;
    let mut best_shortfall = None;

    // An indexer listing a cell twice must not get it spent twice.
    let mut listed = HashSet::new();
    let candidates = contribution
        .cells
        .iter()
        // Only the owner's cells: one under another lock (an indexer's
        // lie) is a cell the owner's wallet cannot sign.
        .filter(|cell| cell.output.lock().as_slice() == contribution.owner_lock.as_slice())
        .filter(|cell| is_plain_capacity_cell(cell) && !contribution.excluded.contains(&cell.out_point))
        .filter(|cell| listed.insert(cell.out_point.clone()));
    for (taken, cell) in candidates.enumerate() {
        if taken >= contribution.max_inputs {
            return Err(FundingError::TooManyInputs {
                max: contribution.max_inputs,
            });
        }
        let is_first = parts.inputs.len() == first_input;
        parts.inputs.push(
            packed::CellInput::new_builder()
                .previous_output(cell.out_point.clone())
                .since(0u64)
                .build(),
        );
        parts.witnesses.push(if is_first {
            placeholder_witness_with_lock_len(contribution.witness_lock_len)
                .as_slice()
                .to_vec()
        } else {
            Vec::new()
        });
        input_total = add(input_total, capacity_of(&cell.output), "the inputs' capacity")?;

        // With a change cell, if the inputs can pay for one.
        let mut with_change = parts.clone();
        with_change.outputs.push(change_output.clone());
        with_change.outputs_data.push(Vec::new());
        let fee = fee_of(&with_change, contribution.fee_rate, fee_already_paid)?;
        let needed = add(contribution.amount, fee, "the amount and fee")?;
        if let Some(change) = input_total.checked_sub(needed) {
            if change >= min_change {
                if let Some(last) = with_change.outputs.last_mut() {
                    *last = change_output.as_builder().capacity(change).build();
                }
                return Ok(with_change.build());
            }
        }

        // Without one, if what is left is small enough to give to the fee.
        let fee = fee_of(&parts, contribution.fee_rate, fee_already_paid)?;
        let needed = add(contribution.amount, fee, "the amount and fee")?;
        match input_total.checked_sub(needed) {
            Some(leftover) if leftover <= MAX_FEE_ABSORBED_LEFTOVER => return Ok(parts.build()),
            Some(leftover) => best_shortfall = Some(FundingError::UnspendableChange { leftover, min_change }),
            None => {
                best_shortfall = Some(FundingError::InsufficientFunds {
                    needed,
                    available: input_total,
                })
            }
        }
    }

    match best_shortfall {
        Some(shortfall) => Err(shortfall),
        None => Err(FundingError::InsufficientFunds {
            needed: add(
                contribution.amount,
                fee_of(&parts, contribution.fee_rate, fee_already_paid)?,
                "the amount and fee",
            )?,
            available: 0,
        }),
    }
}

fn fee_of(parts: &TxParts, fee_rate: u64, fee_already_paid: u64) -> Result<u64, Overflow> {
    Ok(fee_for_size(parts.build().as_slice().len(), fee_rate)?.saturating_sub(fee_already_paid))
}

/// Replaces the lock of the funding output (output 0), keeping its capacity.
/// The initiator builds its part before it knows the peer's key; the lock args
/// have a fixed size, so the fee does not change.
pub fn with_funding_lock(tx: &packed::Transaction, funding_lock: packed::Script) -> packed::Transaction {
    let mut parts = TxParts::from_tx(tx);
    parts.outputs[0] = parts.outputs[0].clone().as_builder().lock(funding_lock).build();
    parts.build()
}

/// Capacity of the plain cells that could fund a channel, for error messages
/// (saturating: it is only shown).
pub fn spendable_capacity(cells: &[LiveCell], excluded: &HashSet<packed::OutPoint>) -> u64 {
    let mut listed = HashSet::new();
    cells
        .iter()
        .filter(|cell| is_plain_capacity_cell(cell) && !excluded.contains(&cell.out_point))
        .filter(|cell| listed.insert(cell.out_point.clone()))
        .fold(0u64, |total, cell| total.saturating_add(capacity_of(&cell.output)))
}

/// The reserve each side keeps in the channel, as upstream's
/// `reserved_capacity`: the occupied capacity of a cell locked by its
/// shutdown script with the args padded to 57 bytes, plus 1 CKB towards the
/// closing fee — 99 CKB for a default-lock wallet. The padding is what makes
/// a unilateral close possible: after one side settles its share of a
/// commitment, the other side's share stays in a commitment-lock cell (57
/// bytes of args), which must hold its own occupied capacity.
pub fn reserved_ckb_amount(shutdown_script: &packed::Script) -> Result<u64, Overflow> {
    add(
        min_reserved_ckb_amount(shutdown_script)?,
        SHANNONS_PER_CKB,
        "the reserve",
    )
}

/// The least reserve a side may announce: upstream's `occupied_capacity`,
/// the shutdown cell with its lock args padded to 57 bytes.
pub fn min_reserved_ckb_amount(shutdown_script: &packed::Script) -> Result<u64, Overflow> {
    let args = shutdown_script.args().raw_data();
    let padded = args.len().max(crate::tx::commitment::COMMITMENT_LOCK_ARGS_LEN);
    let lock = shutdown_script
        .clone()
        .as_builder()
        .args(vec![0u8; padded].pack())
        .build();
    occupied_capacity_of_lock(&lock)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::tx::default_lock::{lock_script, placeholder_witness, SIGNATURE_LEN};
    use crate::tx::fee::tx_fee;

    fn cell(lock: &packed::Script, index: u32, ckb: u64) -> LiveCell {
        LiveCell {
            out_point: packed::OutPoint::new_builder()
                .tx_hash([index as u8; 32].pack())
                .index(index)
                .build(),
            output: packed::CellOutput::new_builder()
                .capacity(ckb * SHANNONS_PER_CKB)
                .lock(lock.clone())
                .build(),
            output_data: Vec::new(),
            block_number: 1,
        }
    }

    fn funding_lock() -> packed::Script {
        lock_script([9; 20])
    }

    fn inputs_capacity(tx: &packed::Transaction, cells: &[LiveCell]) -> u64 {
        tx.raw()
            .inputs()
            .into_iter()
            .map(|input| {
                let cell = cells.iter().find(|c| c.out_point == input.previous_output()).unwrap();
                capacity_of(&cell.output)
            })
            .sum()
    }

    fn outputs_capacity(tx: &packed::Transaction) -> u64 {
        crate::tx::fee::outputs_capacity(tx, 0).unwrap()
    }

    #[test]
    fn both_parts_balance_and_pay_at_least_the_fee_rate() {
        let user = lock_script([1; 20]);
        let peer = lock_script([2; 20]);
        let user_cells = vec![cell(&user, 1, 300), cell(&user, 2, 800)];
        let peer_cells = vec![cell(&peer, 3, 200)];
        let none = HashSet::new();
        let initiator = build_initiator_part(
            funding_lock(),
            &Contribution {
                cells: &user_cells,
                excluded: &none,
                owner_lock: &user,
                cell_deps: &[],
                amount: 1000 * SHANNONS_PER_CKB,
                fee_rate: 1000,
                max_inputs: MAX_INITIATOR_INPUTS,
                witness_lock_len: SIGNATURE_LEN,
            },
        )
        .unwrap();
        assert_eq!(initiator.raw().inputs().len(), 2);
        let tx = add_acceptor_part(
            &initiator,
            &Contribution {
                cells: &peer_cells,
                excluded: &none,
                owner_lock: &peer,
                cell_deps: &[],
                amount: 99 * SHANNONS_PER_CKB,
                fee_rate: 1000,
                max_inputs: MAX_ACCEPTOR_INPUTS,
                witness_lock_len: SIGNATURE_LEN,
            },
        )
        .unwrap();
        let all_cells: Vec<_> = user_cells.iter().chain(&peer_cells).cloned().collect();
        let fee = inputs_capacity(&tx, &all_cells) - outputs_capacity(&tx);
        assert!(fee >= tx_fee(&tx, 1000).unwrap(), "fee {fee} below rate");
        assert!(fee <= tx_fee(&tx, 1000).unwrap() + 2, "fee {fee} overpays");
        assert_eq!(
            capacity_of(&tx.raw().outputs().get(0).unwrap()),
            1099 * SHANNONS_PER_CKB
        );
        assert_eq!(tx.witnesses().len(), tx.raw().inputs().len());
        // Each side's first input carries the placeholder, the others are empty.
        assert_eq!(
            tx.witnesses().get(0).unwrap().raw_data().len(),
            placeholder_witness().as_slice().len()
        );
        assert!(tx.witnesses().get(1).unwrap().raw_data().is_empty());
        assert_eq!(
            tx.witnesses().get(2).unwrap().raw_data().len(),
            placeholder_witness().as_slice().len()
        );
    }

    #[test]
    fn not_enough_funds_says_needed_and_available() {
        let user = lock_script([1; 20]);
        let cells = vec![cell(&user, 1, 100)];
        let err = build_initiator_part(
            funding_lock(),
            &Contribution {
                cells: &cells,
                excluded: &HashSet::new(),
                owner_lock: &user,
                cell_deps: &[],
                amount: 500 * SHANNONS_PER_CKB,
                fee_rate: 1000,
                max_inputs: MAX_INITIATOR_INPUTS,
                witness_lock_len: SIGNATURE_LEN,
            },
        )
        .unwrap_err();
        match err {
            FundingError::InsufficientFunds { needed, available } => {
                assert!(needed > 500 * SHANNONS_PER_CKB);
                assert_eq!(available, 100 * SHANNONS_PER_CKB);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("needed"));
    }

    #[test]
    fn excluded_cells_and_cells_with_data_are_never_spent() {
        let user = lock_script([1; 20]);
        let mut with_data = cell(&user, 1, 1000);
        with_data.output_data = vec![1];
        let reserved = cell(&user, 2, 1000);
        let free = cell(&user, 3, 1000);
        let excluded: HashSet<_> = [reserved.out_point.clone()].into_iter().collect();
        let cells = vec![with_data, reserved, free.clone()];
        let tx = build_initiator_part(
            funding_lock(),
            &Contribution {
                cells: &cells,
                excluded: &excluded,
                owner_lock: &user,
                cell_deps: &[],
                amount: 100 * SHANNONS_PER_CKB,
                fee_rate: 1000,
                max_inputs: MAX_INITIATOR_INPUTS,
                witness_lock_len: SIGNATURE_LEN,
            },
        )
        .unwrap();
        let inputs: Vec<_> = tx.raw().inputs().into_iter().map(|i| i.previous_output()).collect();
        assert_eq!(inputs, vec![free.out_point]);
    }

    #[test]
    fn small_leftover_goes_to_fee_large_leftover_without_change_is_refused() {
        let user = lock_script([1; 20]);
        // 100 CKB in, 99.5 CKB out: leftover under 1 CKB, no change cell.
        let cells = vec![cell(&user, 1, 100)];
        let none = HashSet::new();
        let contribution = |amount| Contribution {
            cells: &cells,
            excluded: &none,
            owner_lock: &user,
            cell_deps: &[],
            amount,
            fee_rate: 1000,
            max_inputs: MAX_INITIATOR_INPUTS,
            witness_lock_len: SIGNATURE_LEN,
        };
        let tx = build_initiator_part(
            funding_lock(),
            &contribution(99 * SHANNONS_PER_CKB + SHANNONS_PER_CKB / 2),
        )
        .unwrap();
        assert_eq!(tx.raw().outputs().len(), 1);
        let err = build_initiator_part(funding_lock(), &contribution(60 * SHANNONS_PER_CKB)).unwrap_err();
        assert!(matches!(err, FundingError::UnspendableChange { .. }), "{err:?}");
    }

    #[test]
    fn a_wallet_of_dust_cells_is_refused_beyond_the_input_limit() {
        let user = lock_script([1; 20]);
        let cells: Vec<_> = (0..5).map(|i| cell(&user, i, 100)).collect();
        let none = HashSet::new();
        let err = build_initiator_part(
            funding_lock(),
            &Contribution {
                cells: &cells,
                excluded: &none,
                owner_lock: &user,
                cell_deps: &[],
                amount: 450 * SHANNONS_PER_CKB,
                fee_rate: 1000,
                max_inputs: 3,
                witness_lock_len: SIGNATURE_LEN,
            },
        )
        .unwrap_err();
        assert_eq!(err, FundingError::TooManyInputs { max: 3 });
    }
}
