//! Fees and capacities, in shannons (1 CKB = 10^8 shannons), with checked
//! arithmetic only: amounts come from peers and chain nodes, and a wrap in a
//! release build would be a theft, a panic a denial of service.

use ckb_types::core::Capacity;
use ckb_types::packed;
use ckb_types::prelude::*;

pub const SHANNONS_PER_CKB: u64 = 100_000_000;

/// Shannons shown as CKB, exactly: `106200000218` as `1062.00000218`. Integer
/// digits only: a float would round large amounts (and costs the wasm its
/// float formatter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ckb(pub u64);

impl std::fmt::Display for Ckb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, fraction) = (self.0 / SHANNONS_PER_CKB, self.0 % SHANNONS_PER_CKB);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:08}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// An amount, size or fee that does not fit in a `u64`; names what overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} overflows (the amounts involved exceed what CKB can hold)")]
pub struct Overflow(pub &'static str);

/// `a + b`, or an error naming `what`.
pub fn add(a: u64, b: u64, what: &'static str) -> Result<u64, Overflow> {
    a.checked_add(b).ok_or(Overflow(what))
}

/// The sum of `amounts`, or an error naming `what`.
pub fn sum(amounts: impl IntoIterator<Item = u64>, what: &'static str) -> Result<u64, Overflow> {
    amounts
        .into_iter()
        .try_fold(0u64, |total, amount| add(total, amount, what))
}

/// The fee a tx of `size` serialized bytes pays at `fee_rate` shannons per
/// 1,000 bytes; CKB counts 4 more bytes per tx in a block.
pub fn fee_for_size(size: usize, fee_rate: u64) -> Result<u64, Overflow> {
    let size = u64::try_from(size).map_err(|_| Overflow("tx size"))?;
    let weighted = size
        .checked_add(4)
        .and_then(|bytes| bytes.checked_mul(fee_rate))
        .ok_or(Overflow("fee"))?;
    Ok(weighted.div_ceil(1000))
}

/// [`fee_for_size`] of a whole transaction, witnesses included.
pub fn tx_fee(tx: &packed::Transaction, fee_rate: u64) -> Result<u64, Overflow> {
    fee_for_size(tx.as_slice().len(), fee_rate)
}

/// The capacity a cell must hold to exist: its own bytes (capacity field,
/// lock, type, data), one CKB per byte.
pub fn occupied_capacity(output: &packed::CellOutput, data_len: usize) -> Result<u64, Overflow> {
    let data = Capacity::bytes(data_len).map_err(|_| Overflow("cell data size"))?;
    output
        .occupied_capacity(data)
        .map(|capacity| capacity.as_u64())
        .map_err(|_| Overflow("occupied capacity"))
}

/// The occupied capacity of a data-less cell locked by `lock`.
pub fn occupied_capacity_of_lock(lock: &packed::Script) -> Result<u64, Overflow> {
    let output = packed::CellOutput::new_builder().lock(lock.clone()).build();
    occupied_capacity(&output, 0)
}

pub fn capacity_of(output: &packed::CellOutput) -> u64 {
    output.capacity().unpack()
}

/// Total capacity of a tx's outputs from `from` on (0: all of them).
pub fn outputs_capacity(tx: &packed::Transaction, from: usize) -> Result<u64, Overflow> {
    sum(
        tx.raw().outputs().into_iter().skip(from).map(|o| capacity_of(&o)),
        "outputs' capacity",
    )
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_up_and_counts_the_block_overhead() {
        assert_eq!(fee_for_size(996, 1000), Ok(1000));
        assert_eq!(fee_for_size(997, 1000), Ok(1001));
        assert_eq!(fee_for_size(1, 1), Ok(1));
    }

    #[test]
    fn a_fee_rate_that_would_wrap_is_an_error_not_a_small_fee() {
        assert_eq!(fee_for_size(500, u64::MAX), Err(Overflow("fee")));
        assert_eq!(fee_for_size(usize::MAX, 1), Err(Overflow("fee")));
    }

    #[test]
    fn sums_that_would_wrap_are_errors() {
        assert_eq!(sum([u64::MAX, 1], "x"), Err(Overflow("x")));
        assert_eq!(sum([u64::MAX - 1, 1], "x"), Ok(u64::MAX));
        assert_eq!(
            add(u64::MAX, 1, "y").unwrap_err().to_string(),
            "y overflows (the amounts involved exceed what CKB can hold)"
        );
    }

    #[test]
    fn ckb_amounts_print_every_shannon_and_no_trailing_zeros() {
        assert_eq!(Ckb(106_200_000_218).to_string(), "1062.00000218");
        assert_eq!(Ckb(0).to_string(), "0");
        assert_eq!(Ckb(61 * SHANNONS_PER_CKB).to_string(), "61");
        assert_eq!(Ckb(150_000_000).to_string(), "1.5");
        assert_eq!(Ckb(1).to_string(), "0.00000001");
        // A float would print 184467440737.09552.
        assert_eq!(Ckb(u64::MAX).to_string(), "184467440737.09551615");
    }

    #[test]
    fn a_default_lock_cell_occupies_61_ckb() {
        let lock = packed::Script::new_builder()
            .args([0u8; 20].to_vec().pack())
            .hash_type(ckb_types::core::ScriptHashType::Type)
            .build();
        assert_eq!(occupied_capacity_of_lock(&lock), Ok(61 * SHANNONS_PER_CKB));
    }
}
