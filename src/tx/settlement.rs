//! Claiming a party's share of a commitment-lock cell after the delay: the
//! unilateral way out, signed by the node alone (the settlement key is the
//! channel's tlc basepoint, derived from the node secret and the channel
//! seed — no wallet signature).
//!
//! As Fiber's `commitment-lock` (v0.8.0) checks it:
//!
//! ```text
//! input:   the commitment cell; since = the delay, relative epochs, on the
//!          first settlement (args flag 0x00)
//! witness: empty WitnessArgs (16) ‖ 0x01 ‖ settlement script
//!          ‖ unlock type (0xFE: the first slot, the holder's; 0xFF: the second)
//!          ‖ 0x00 (no preimage) ‖ 65-byte recoverable ECDSA signature
//! output 0 (when the other slot still holds something): the same lock with
//!          args[0..36] ‖ blake160(script with our slot zeroed) ‖ 0x01, holding
//!          the cell's capacity minus our amount
//! output 1: our amount, less this tx's fee, to our shutdown script
//! ```
//! The signature signs the raw tx with its cell deps emptied, like every
//! other Fiber signature.

use ckb_types::packed;
use ckb_types::prelude::*;

use super::commitment::{signing_message, EMPTY_WITNESS_ARGS, RELATIVE_EPOCH_SINCE, SETTLEMENT_SCRIPT_LEN, SLOT_LEN};
use super::fee::{capacity_of, fee_for_size, occupied_capacity, Overflow};
use super::parts::TxParts;
use crate::crypto::blake160;

/// Unlock types of the commitment lock for the two party slots.
pub const UNLOCK_FIRST_SLOT: u8 = 0xfe;
pub const UNLOCK_SECOND_SLOT: u8 = 0xff;
/// A recoverable ECDSA signature: r ‖ s ‖ recovery id.
pub const SETTLEMENT_SIGNATURE_LEN: usize = 65;

/// Which slot of the settlement script a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The commitment's holder (the side that broadcast it).
    Holder,
    /// The other side.
    Counterparty,
}

impl Slot {
    fn range(self) -> std::ops::Range<usize> {
        match self {
            Slot::Holder => 1..1 + SLOT_LEN,
            Slot::Counterparty => 1 + SLOT_LEN..SETTLEMENT_SCRIPT_LEN,
        }
    }

    fn unlock_type(self) -> u8 {
        match self {
            Slot::Holder => UNLOCK_FIRST_SLOT,
            Slot::Counterparty => UNLOCK_SECOND_SLOT,
        }
    }

    fn other(self) -> Slot {
        match self {
            Slot::Holder => Slot::Counterparty,
            Slot::Counterparty => Slot::Holder,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("the commitment cell's lock args are {0} bytes, not 57")]
    Args(usize),
    #[error("the settlement script does not hash to the cell's args")]
    ScriptMismatch,
    #[error("the settlement script has TLCs, which this module does not settle")]
    HasTlcs,
    #[error("our slot of the settlement script is empty: nothing to claim")]
    NothingToClaim,
    #[error("after the fee of {fee} shannons, our {amount} shannons cannot pay for the output cell ({needed} needed)")]
    TooSmall { amount: u64, fee: u64, needed: u64 },
    #[error("the settlement key could not sign")]
    Signing,
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// A claim of one slot of a commitment-lock cell.
#[derive(Debug, Clone)]
pub struct Settlement<'a> {
    pub cell_out_point: packed::OutPoint,
    pub cell: packed::CellOutput,
    /// The settlement script whose blake160 is in the cell's args.
    pub script: &'a [u8],
    pub slot: Slot,
    /// Where our share goes.
    pub to: packed::Script,
    pub fee_rate: u64,
    /// The commitment lock's code and ckb-auth.
    pub cell_deps: &'a [packed::CellDep],
}

impl Settlement<'_> {
    fn args(&self) -> Result<Vec<u8>, SettlementError> {
        let args = self.cell.lock().args().raw_data().to_vec();
        if args.len() != super::commitment::COMMITMENT_LOCK_ARGS_LEN {
            return Err(SettlementError::Args(args.len()));
        }
        if self.script.len() != SETTLEMENT_SCRIPT_LEN {
            return Err(SettlementError::HasTlcs);
        }
        if args.get(36..56) != Some(blake160(self.script).as_slice()) {
            return Err(SettlementError::ScriptMismatch);
        }
        Ok(args)
    }

    fn slot_amount(&self, slot: Slot) -> u64 {
        let bytes = &self.script[slot.range()][20..];
        let amount = u128::from_le_bytes(bytes.try_into().unwrap_or([0; 16]));
        u64::try_from(amount).unwrap_or(u64::MAX)
    }

    /// The unsigned claim: the signature's 65 bytes are zeros, so the size
    /// and fee are final.
    pub fn build_unsigned(&self) -> Result<packed::Transaction, SettlementError> {
        let args = self.args()?;
        let first_settlement = args.get(56) == Some(&0);
        let delay = u64::from_le_bytes(args[20..28].try_into().unwrap_or([0; 8]));
        let ours = self.slot_amount(self.slot);
        if ours == 0 {
            return Err(SettlementError::NothingToClaim);
        }
        let capacity = capacity_of(&self.cell);
        let remaining = capacity.saturating_sub(ours);
        let other_settled = self.slot_amount(self.slot.other()) == 0;

        let mut new_script = self.script.to_vec();
        new_script[self.slot.range()].fill(0);
        let mut parts = TxParts {
            cell_deps: self.cell_deps.to_vec(),
            inputs: vec![packed::CellInput::new_builder()
                .previous_output(self.cell_out_point.clone())
                .since(if first_settlement {
                    delay | RELATIVE_EPOCH_SINCE
                } else {
                    0
                })
                .build()],
            ..TxParts::default()
        };
        if remaining > 0 && !other_settled {
            let mut new_args = args[..36].to_vec();
            new_args.extend_from_slice(&blake160(&new_script));
            new_args.push(1);
            let lock = self.cell.lock().as_builder().args(new_args.pack()).build();
            parts
                .outputs
                .push(packed::CellOutput::new_builder().capacity(remaining).lock(lock).build());
            parts.outputs_data.push(Vec::new());
        }
        let claimed = capacity.saturating_sub(remaining);
        parts
            .outputs
            .push(packed::CellOutput::new_builder().lock(self.to.clone()).build());
        parts.outputs_data.push(Vec::new());
        parts.witnesses = vec![self.witness(&[0; SETTLEMENT_SIGNATURE_LEN])];

        let fee = fee_for_size(parts.build().as_slice().len(), self.fee_rate)?;
        let payout = claimed.checked_sub(fee);
        let last = parts.outputs.len().saturating_sub(1);
        let needed = occupied_capacity(&parts.outputs[last], 0)?;
        match payout {
            Some(payout) if payout >= needed => {
                parts.outputs[last] = parts.outputs[last].clone().as_builder().capacity(payout).build();
                Ok(parts.build())
            }
            _ => Err(SettlementError::TooSmall {
                amount: claimed,
                fee,
                needed,
            }),
        }
    }

    /// The commitment cell's witness with `signature`.
    pub fn witness(&self, signature: &[u8; SETTLEMENT_SIGNATURE_LEN]) -> Vec<u8> {
        let mut witness = Vec::with_capacity(16 + 1 + SETTLEMENT_SCRIPT_LEN + 2 + SETTLEMENT_SIGNATURE_LEN);
        witness.extend_from_slice(&EMPTY_WITNESS_ARGS);
        witness.push(1);
        witness.extend_from_slice(self.script);
        witness.push(self.slot.unlock_type());
        witness.push(0);
        witness.extend_from_slice(signature);
        witness
    }

    /// The claim, signed with the slot's settlement key.
    pub fn sign(&self, key: &k256::ecdsa::SigningKey) -> Result<packed::Transaction, SettlementError> {
        let unsigned = self.build_unsigned()?;
        let message = signing_message(&unsigned);
        let signature = super::default_lock::sign_message(key, &message).map_err(|_| SettlementError::Signing)?;
        let mut parts = TxParts::from_tx(&unsigned);
        parts.witnesses = vec![self.witness(&signature)];
        Ok(parts.build())
    }
}
