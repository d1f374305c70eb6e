//! Checks on a funding tx coming back signed, from the user's wallet or the peer.
//!
//! The rule, as upstream: only witnesses may change. Here each difference is
//! reported by the name of the field that changed, so a wallet developer can
//! see what their signer did.

use std::ops::Range;

use ckb_types::packed;
use ckb_types::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedTxError {
    #[error("the signed transaction changed {field}; only witnesses may change")]
    FieldChanged { field: String },
    #[error("input {index} has since {since:#x}; the funding tx must be final (since 0)")]
    NotFinal { index: usize, since: u64 },
    #[error("the signed transaction has {got} witnesses, expected {expected}")]
    WitnessCount { expected: usize, got: usize },
    #[error("witness {index} belongs to another party's input and must not change")]
    OtherWitnessChanged { index: usize },
    #[error("witness {index} must be a WitnessArgs with a lock signature")]
    WitnessNotWitnessArgs { index: usize },
    #[error("witness {index} still holds the unsigned placeholder: the inputs were not signed")]
    NotSigned { index: usize },
    #[error("the wallet's signature does not unlock its inputs: {0}")]
    BadSignature(String),
    /// Valid, but the tx it completes could never confirm (too large to
    /// send, or below a node's minimum relay fee for its size).
    #[error("the signed transaction could never confirm: {reason}")]
    CannotConfirm { reason: String },
}

/// The first field (in molecule order) where two raw transactions differ.
pub fn first_raw_difference(expected: &packed::RawTransaction, actual: &packed::RawTransaction) -> Option<String> {
    if expected.version().as_slice() != actual.version().as_slice() {
        return Some("version".into());
    }
    if let Some(field) = list_difference(
        "cell_deps",
        &expected.cell_deps().into_iter().collect::<Vec<_>>(),
        &actual.cell_deps().into_iter().collect::<Vec<_>>(),
        cell_dep_difference,
    ) {
        return Some(field);
    }
    if let Some(field) = list_difference(
        "header_deps",
        &expected.header_deps().into_iter().collect::<Vec<_>>(),
        &actual.header_deps().into_iter().collect::<Vec<_>>(),
        |_, _| None,
    ) {
        return Some(field);
    }
    if let Some(field) = list_difference(
        "inputs",
        &expected.inputs().into_iter().collect::<Vec<_>>(),
        &actual.inputs().into_iter().collect::<Vec<_>>(),
        input_difference,
    ) {
        return Some(field);
    }
    if let Some(field) = list_difference(
        "outputs",
        &expected.outputs().into_iter().collect::<Vec<_>>(),
        &actual.outputs().into_iter().collect::<Vec<_>>(),
        output_difference,
    ) {
        return Some(field);
    }
    list_difference(
        "outputs_data",
        &expected.outputs_data().into_iter().collect::<Vec<_>>(),
        &actual.outputs_data().into_iter().collect::<Vec<_>>(),
        |_, _| None,
    )
}

/// Names the first differing element as `name[i]` or `name[i].field`;
/// a length difference as `name (length)`.
fn list_difference<T: Entity>(
    name: &str,
    expected: &[T],
    actual: &[T],
    field_of: impl Fn(&T, &T) -> Option<&'static str>,
) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "{name} (length {} instead of {})",
            actual.len(),
            expected.len()
        ));
    }
    expected
        .iter()
        .zip(actual)
        .enumerate()
        .find(|(_, (a, b))| a.as_slice() != b.as_slice())
        .map(|(index, (a, b))| match field_of(a, b) {
            Some(field) => format!("{name}[{index}].{field}"),
            None => format!("{name}[{index}]"),
        })
}

fn cell_dep_difference(a: &packed::CellDep, b: &packed::CellDep) -> Option<&'static str> {
    out_point_difference(&a.out_point(), &b.out_point())
        .map(|field| {
            if field == "tx_hash" {
                "out_point.tx_hash"
            } else {
                "out_point.index"
            }
        })
        .or_else(|| (a.dep_type() != b.dep_type()).then_some("dep_type"))
}

fn input_difference(a: &packed::CellInput, b: &packed::CellInput) -> Option<&'static str> {
    out_point_difference(&a.previous_output(), &b.previous_output())
        .map(|field| {
            if field == "tx_hash" {
                "previous_output.tx_hash"
            } else {
                "previous_output.index"
            }
        })
        .or_else(|| (a.since().as_slice() != b.since().as_slice()).then_some("since"))
}

fn out_point_difference(a: &packed::OutPoint, b: &packed::OutPoint) -> Option<&'static str> {
    if a.tx_hash() != b.tx_hash() {
        Some("tx_hash")
    } else if a.index().as_slice() != b.index().as_slice() {
        Some("index")
    } else {
        None
    }
}

fn output_difference(a: &packed::CellOutput, b: &packed::CellOutput) -> Option<&'static str> {
    if a.capacity().as_slice() != b.capacity().as_slice() {
        Some("capacity")
    } else if a.lock().code_hash() != b.lock().code_hash() {
        Some("lock.code_hash")
    } else if a.lock().hash_type() != b.lock().hash_type() {
        Some("lock.hash_type")
    } else if a.lock().args().as_slice() != b.lock().args().as_slice() {
        Some("lock.args")
    } else if a.type_().as_slice() != b.type_().as_slice() {
        Some("type")
    } else {
        None
    }
}

/// Checks a tx signed by the party owning `signer_inputs` against the unsigned
/// one: same raw part, every input final, the other parties' witnesses
/// untouched, and the signer's first witness a real signature.
pub fn check_signed_tx(
    unsigned: &packed::Transaction,
    signed: &packed::Transaction,
    signer_inputs: Range<usize>,
) -> Result<(), SignedTxError> {
    if let Some(field) = first_raw_difference(&unsigned.raw(), &signed.raw()) {
        return Err(SignedTxError::FieldChanged { field });
    }
    for (index, input) in signed.raw().inputs().into_iter().enumerate() {
        let since: u64 = input.since().unpack();
        if since != 0 {
            return Err(SignedTxError::NotFinal { index, since });
        }
    }
    let witnesses: Vec<Vec<u8>> = signed.witnesses().into_iter().map(|w| w.raw_data().to_vec()).collect();
    check_witnesses(unsigned, &witnesses, signer_inputs)
}

/// Checks a full witness list sent by the party owning `signer_inputs`.
pub fn check_witnesses(
    unsigned: &packed::Transaction,
    witnesses: &[Vec<u8>],
    signer_inputs: Range<usize>,
) -> Result<(), SignedTxError> {
    let expected: Vec<Vec<u8>> = unsigned
        .witnesses()
        .into_iter()
        .map(|w| w.raw_data().to_vec())
        .collect();
    if witnesses.len() != expected.len() {
        return Err(SignedTxError::WitnessCount {
            expected: expected.len(),
            got: witnesses.len(),
        });
    }
    for (index, (got, want)) in witnesses.iter().zip(&expected).enumerate() {
        if !signer_inputs.contains(&index) && got != want {
            return Err(SignedTxError::OtherWitnessChanged { index });
        }
    }
    if signer_inputs.is_empty() {
        // Nothing of the signer's to sign, and the rest is unchanged.
        return Ok(());
    }
    // Each input has its witness; a tx that lost them (a damaged record)
    // is refused by count, never indexed past its end.
    if signer_inputs.end > witnesses.len() {
        return Err(SignedTxError::WitnessCount {
            expected: signer_inputs.end,
            got: witnesses.len(),
        });
    }
    let first = signer_inputs.start;
    let witness_args: packed::WitnessArgs = crate::wire::decode_checked("witness", &witnesses[first])
        .map_err(|_| SignedTxError::WitnessNotWitnessArgs { index: first })?;
    let lock = witness_args
        .lock()
        .to_opt()
        .ok_or(SignedTxError::WitnessNotWitnessArgs { index: first })?;
    // A placeholder of any size (the one handed out, or another signer's
    // own) is zeros; no signature of any lock is.
    if lock.raw_data().iter().all(|byte| *byte == 0) {
        return Err(SignedTxError::NotSigned { index: first });
    }
    Ok(())
}

/// The witnesses of `signer_inputs` taken from `witnesses`, the rest from `tx`.
pub fn merge_witnesses(
    tx: &packed::Transaction,
    witnesses: &[Vec<u8>],
    signer_inputs: Range<usize>,
) -> packed::Transaction {
    let merged: Vec<packed::Bytes> = tx
        .witnesses()
        .into_iter()
        .enumerate()
        .map(|(index, current)| match witnesses.get(index) {
            Some(theirs) if signer_inputs.contains(&index) => theirs.pack(),
            _ => current,
        })
        .collect();
    tx.clone()
        .as_builder()
        .witnesses(packed::BytesVec::new_builder().extend(merged).build())
        .build()
}

/// The witnesses of a transaction as byte vectors.
pub fn witnesses_of(tx: &packed::Transaction) -> Vec<Vec<u8>> {
    tx.witnesses().into_iter().map(|w| w.raw_data().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx_with(inputs: usize, witnesses: usize) -> packed::Transaction {
        let inputs = packed::CellInputVec::new_builder()
            .extend((0..inputs).map(|_| packed::CellInput::default()))
            .build();
        let witnesses = packed::BytesVec::new_builder()
            .extend((0..witnesses).map(|_| Vec::<u8>::new().pack()))
            .build();
        packed::Transaction::new_builder()
            .raw(packed::RawTransaction::new_builder().inputs(inputs).build())
            .witnesses(witnesses)
            .build()
    }

    /// A stored tx that lost its witnesses (a damaged or foreign record)
    /// and a submit with none: refused by count, not a panic.
    #[test]
    fn a_signer_range_past_the_witnesses_is_refused_without_a_panic() {
        let bare = tx_with(1, 0);
        assert_eq!(
            check_witnesses(&bare, &[], 0..1),
            Err(SignedTxError::WitnessCount { expected: 1, got: 0 })
        );
    }

    /// A signer with no inputs has nothing to sign: its list passes when
    /// everything else is unchanged, and only then.
    #[test]
    fn a_signer_without_inputs_only_keeps_the_other_witnesses() {
        let tx = tx_with(2, 2);
        assert_eq!(check_witnesses(&tx, &witnesses_of(&tx), 2..2), Ok(()));
        assert_eq!(
            check_witnesses(&tx, &[vec![], vec![1]], 2..2),
            Err(SignedTxError::OtherWitnessChanged { index: 1 })
        );
    }
}
