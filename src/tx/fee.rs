//! Fees and capacities, in shannons (1 CKB = 10^8 shannons).

use ckb_types::core::Capacity;
use ckb_types::packed;
use ckb_types::prelude::*;

pub const SHANNONS_PER_CKB: u64 = 100_000_000;

/// The fee a tx of `size` serialized bytes pays at `fee_rate` shannons per
/// 1,000 bytes; CKB counts 4 more bytes per tx in a block.
pub fn fee_for_size(size: usize, fee_rate: u64) -> u64 {
    ((size as u64 + 4) * fee_rate).div_ceil(1000)
}

/// [`fee_for_size`] of a whole transaction, witnesses included.
pub fn tx_fee(tx: &packed::Transaction, fee_rate: u64) -> u64 {
    fee_for_size(tx.as_slice().len(), fee_rate)
}

/// The capacity a cell must hold to exist: its own bytes (capacity field,
/// lock, type, data), one CKB per byte.
pub fn occupied_capacity(output: &packed::CellOutput, data_len: usize) -> u64 {
    output
        .occupied_capacity(Capacity::bytes(data_len).expect("data length fits"))
        .expect("occupied capacity fits in u64")
        .as_u64()
}

/// The occupied capacity of a data-less cell locked by `lock`.
pub fn occupied_capacity_of_lock(lock: &packed::Script) -> u64 {
    let output = packed::CellOutput::new_builder().lock(lock.clone()).build();
    occupied_capacity(&output, 0)
}

pub fn capacity_of(output: &packed::CellOutput) -> u64 {
    output.capacity().unpack()
}

/// Total capacity of a tx's outputs from `from` on (0: all of them).
pub fn outputs_capacity(tx: &packed::Transaction, from: usize) -> u64 {
    tx.raw().outputs().into_iter().skip(from).map(|o| capacity_of(&o)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_up_and_counts_the_block_overhead() {
        assert_eq!(fee_for_size(996, 1000), 1000);
        assert_eq!(fee_for_size(997, 1000), 1001);
        assert_eq!(fee_for_size(1, 1), 1);
    }

    #[test]
    fn a_default_lock_cell_occupies_61_ckb() {
        let lock = packed::Script::new_builder()
            .args([0u8; 20].to_vec().pack())
            .hash_type(ckb_types::core::ScriptHashType::Type)
            .build();
        assert_eq!(occupied_capacity_of_lock(&lock), 61 * SHANNONS_PER_CKB);
    }
}
