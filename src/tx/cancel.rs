//! The cancel tx: the user's funding inputs spent back to the user's own
//! lock, so the funding tx, which spends them too, can never confirm.
//!
//! It is the way out of a flow that can no longer be abandoned: a
//! counterparty that keeps its signatures back, or a funding tx that never
//! confirms while its inputs stay live. A wallet's "send" picks its own
//! cells and may never touch the ones the flow holds, so this module builds
//! the tx that does, for the wallet to sign like a payment to itself.
//!
//! What leaves is checked from the signed tx alone, whatever built it:
//!
//! ```text
//! inputs  = exactly our inputs of the funding tx, each final (since 0)
//! outputs = plain cells under our own lock only
//! fee     = Σ inputs (hash-checked) − Σ outputs,
//!           from a node's minimum relay fee to the highest rate a flow accepts, at its signed size
//! ```

use ckb_types::packed;
use ckb_types::prelude::*;

use super::default_lock;
use super::fee::{capacity_of, fee_for_size, occupied_capacity, sum, Overflow};
use super::parts::TxParts;
use crate::chain::ResolvedCell;

/// Our part of the funding tx, as this node knows it.
#[derive(Debug, Clone)]
pub struct OwnFunding<'a> {
    /// Our inputs of the funding tx, in its order.
    pub inputs: &'a [packed::OutPoint],
    /// The hash-checked cell each of them spends.
    pub cells: &'a [ResolvedCell],
    /// The wallet lock of those cells: the cancel tx pays it back.
    pub owner_lock: &'a packed::Script,
    /// What the owner's lock needs to run.
    pub cell_deps: &'a [packed::CellDep],
    /// The first input's witness as the funding tx had it before signing:
    /// the room the wallet's signature takes, so the fee pays for it.
    pub placeholder_witness: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelTxError {
    #[error("the channel has {inputs} inputs of ours but {cells} checked cells")]
    InputCount { inputs: usize, cells: usize },
    #[error(
        "the cancel tx must spend exactly the channel's {expected} wallet inputs, in the funding tx's order; {found}"
    )]
    WrongInputs { expected: usize, found: String },
    #[error("input {index} is not final (since {since}); the cancel tx must be spendable at once")]
    NotFinal { index: usize, since: u64 },
    #[error(
        "output {index} does not pay the wallet's own lock as a plain cell: nothing may leave the wallet but the fee"
    )]
    OutputNotOurs { index: usize },
    #[error("the cancel tx has no output")]
    NoOutput,
    #[error("the first witness is not a signed WitnessArgs: the wallet did not sign the cancel tx")]
    NotSigned,
    #[error("the wallet's signature does not unlock its cells: {0}")]
    BadSignature(String),
    #[error("the cancel tx pays {fee} shannons of fee for {size} bytes, less than the {needed} a node's minimum relay fee asks")]
    FeeTooLow { size: usize, fee: u64, needed: u64 },
    #[error(
        "the cancel tx pays {fee} shannons of fee for {size} bytes, more than the {max} the highest fee rate allows"
    )]
    FeeTooHigh { size: usize, fee: u64, max: u64 },
    #[error("the inputs ({capacity} shannons) cannot pay a fee of {fee} shannons and keep a cell of {occupied}")]
    TooSmall { capacity: u64, fee: u64, occupied: u64 },
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// The unsigned cancel tx at `fee_rate`: every input of ours into one cell
/// under our lock, the first witness the funding tx's placeholder.
pub fn build_cancel_tx(own: &OwnFunding, fee_rate: u64) -> Result<packed::Transaction, CancelTxError> {
    let total = own_total(own)?;
    let output = packed::CellOutput::new_builder().lock(own.owner_lock.clone()).build();
    let occupied = occupied_capacity(&output, 0)?;
    let mut parts = TxParts {
        cell_deps: own.cell_deps.to_vec(),
        inputs: own
            .inputs
            .iter()
            .map(|out_point| {
                packed::CellInput::new_builder()
                    .previous_output(out_point.clone())
                    .since(0u64)
                    .build()
            })
            .collect(),
        outputs: vec![output.clone()],
        outputs_data: vec![Vec::new()],
        witnesses: own.inputs.iter().map(|_| Vec::new()).collect(),
        ..TxParts::default()
    };
    if let Some(first) = parts.witnesses.first_mut() {
        *first = own.placeholder_witness.to_vec();
    }
    // Capacity is a fixed-size field: the fee does not change with it.
    let fee = fee_for_size(parts.build().as_slice().len(), fee_rate)?;
    let capacity = total
        .checked_sub(fee)
        .filter(|capacity| *capacity >= occupied)
        .ok_or(CancelTxError::TooSmall {
            capacity: total,
            fee,
            occupied,
        })?;
    parts.outputs = vec![output.as_builder().capacity(capacity).build()];
    Ok(parts.build())
}

/// Checks a signed cancel tx against what we know of our part; returns its fee.
pub fn check_cancel_tx(
    own: &OwnFunding,
    tx: &packed::Transaction,
    min_fee_rate: u64,
    max_fee_rate: u64,
) -> Result<u64, CancelTxError> {
    let raw = tx.raw();
    let inputs: Vec<packed::CellInput> = raw.inputs().into_iter().collect();
    if inputs.len() != own.inputs.len() {
        return Err(CancelTxError::WrongInputs {
            expected: own.inputs.len(),
            found: format!("it spends {}", inputs.len()),
        });
    }
    for (index, (input, ours)) in inputs.iter().zip(own.inputs).enumerate() {
        if input.previous_output().as_slice() != ours.as_slice() {
            return Err(CancelTxError::WrongInputs {
                expected: own.inputs.len(),
                found: format!("input {index} spends another cell"),
            });
        }
        let since: u64 = input.since().unpack();
        if since != 0 {
            return Err(CancelTxError::NotFinal { index, since });
        }
    }
    if raw.outputs().is_empty() {
        return Err(CancelTxError::NoOutput);
    }
    let data_lens: Vec<usize> = raw.outputs_data().into_iter().map(|d| d.raw_data().len()).collect();
    for (index, output) in raw.outputs().into_iter().enumerate() {
        let plain = output.type_().is_none() && data_lens.get(index).is_some_and(|len| *len == 0);
        if output.lock().as_slice() != own.owner_lock.as_slice() || !plain {
            return Err(CancelTxError::OutputNotOurs { index });
        }
    }
    let total_in = own_total(own)?;
    let total_out = sum(
        raw.outputs().into_iter().map(|o| capacity_of(&o)),
        "the outputs' capacity",
    )?;
    let size = tx.as_slice().len();
    let needed = fee_for_size(size, min_fee_rate)?;
    // Outputs above the inputs pay no fee at all (no node takes such a tx).
    let fee = total_in.saturating_sub(total_out);
    if fee < needed {
        return Err(CancelTxError::FeeTooLow { size, fee, needed });
    }
    let max = fee_for_size(size, max_fee_rate)?;
    if fee > max {
        return Err(CancelTxError::FeeTooHigh { size, fee, max });
    }
    check_signature(own, tx)?;
    Ok(fee)
}

/// The first witness carries a signature; CKB's default lock's is verified
/// here as the chain would, another lock's (JoyID's) only by the chain.
fn check_signature(own: &OwnFunding, tx: &packed::Transaction) -> Result<(), CancelTxError> {
    let first = tx.witnesses().get(0).ok_or(CancelTxError::NotSigned)?;
    let witness_args: packed::WitnessArgs =
        crate::wire::decode_checked("witness", &first.raw_data()).map_err(|_| CancelTxError::NotSigned)?;
    let lock = witness_args.lock().to_opt().ok_or(CancelTxError::NotSigned)?;
    if lock.raw_data().iter().all(|byte| *byte == 0) {
        return Err(CancelTxError::NotSigned);
    }
    if default_lock::is_default_lock(own.owner_lock) {
        let group: Vec<usize> = (0..own.inputs.len()).collect();
        default_lock::verify_group(tx, &group, &own.owner_lock.args().raw_data())
            .map_err(|e| CancelTxError::BadSignature(e.to_string()))?;
    }
    Ok(())
}

fn own_total(own: &OwnFunding) -> Result<u64, CancelTxError> {
    if own.cells.len() != own.inputs.len() || own.inputs.is_empty() {
        return Err(CancelTxError::InputCount {
            inputs: own.inputs.len(),
            cells: own.cells.len(),
        });
    }
    Ok(sum(
        own.cells.iter().map(|c| capacity_of(&c.output)),
        "the inputs' capacity",
    )?)
}
