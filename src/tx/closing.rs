//! The cooperative closing transaction, as Fiber v0.8.0 builds it
//! (`build_shutdown_tx`): the funding output spent (`since` 0), each side's
//! balance and reserve paid to its close script, outputs in the order of the
//! sorted funding keys, each side paying the fee its `Shutdown` asked for on
//! the size of the whole tx (the side answering a shutdown asks for 0, so
//! the side closing pays). It spends the funding output, so it carries the
//! funding lock's 112-byte witness and is signed like a commitment.

use ckb_types::packed;
use ckb_types::prelude::*;

use super::commitment::{FUNDING_LOCK_DEPS, FUNDING_UNLOCK_WITNESS_LEN};
use super::fee::{fee_for_size, occupied_capacity, Overflow};
use super::parts::TxParts;
use crate::primitives::Pubkey;

/// One side of a closing tx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingParty {
    pub funding_pubkey: Pubkey,
    /// Its balance and reserve.
    pub amount: u64,
    pub close_script: packed::Script,
    /// The fee rate of its `Shutdown` (shannons per 1,000 bytes).
    pub fee_rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClosingError {
    #[error("after its fee of {fee} shannons, {amount} shannons cannot pay for a cell of its close script ({needed} needed)")]
    TooSmall { amount: u64, fee: u64, needed: u64 },
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// Everything that fixes the closing tx.
#[derive(Debug, Clone)]
pub struct Closing {
    pub funding_out_point: packed::OutPoint,
    pub local: ClosingParty,
    pub remote: ClosingParty,
}

impl Closing {
    /// Both parties, in the order their outputs take: by funding key.
    fn ordered(&self) -> [&ClosingParty; 2] {
        if self.local.funding_pubkey <= self.remote.funding_pubkey {
            [&self.local, &self.remote]
        } else {
            [&self.remote, &self.local]
        }
    }

    fn parts(&self, amounts: [u64; 2]) -> TxParts {
        let [first, second] = self.ordered();
        TxParts {
            inputs: vec![packed::CellInput::new_builder()
                .previous_output(self.funding_out_point.clone())
                .since(0u64)
                .build()],
            outputs: [first, second]
                .iter()
                .zip(amounts)
                .map(|(party, capacity)| {
                    packed::CellOutput::new_builder()
                        .capacity(capacity)
                        .lock(party.close_script.clone())
                        .build()
                })
                .collect(),
            outputs_data: vec![Vec::new(), Vec::new()],
            ..TxParts::default()
        }
    }

    /// The fee each side pays: its own rate on the whole tx as broadcast
    /// (two cell deps, the 112-byte witness, 4 bytes per tx in a block).
    pub fn fee(&self, party: &ClosingParty) -> Result<u64, Overflow> {
        let mut sized = self.parts([0, 0]);
        sized.cell_deps = vec![packed::CellDep::default(); FUNDING_LOCK_DEPS];
        sized.witnesses = vec![vec![0; FUNDING_UNLOCK_WITNESS_LEN]];
        fee_for_size(sized.build().as_slice().len(), party.fee_rate)
    }

    /// What `party`'s output holds: its amount less its fee.
    pub fn payout(&self, party: &ClosingParty) -> Result<u64, ClosingError> {
        let fee = self.fee(party)?;
        let output = packed::CellOutput::new_builder()
            .lock(party.close_script.clone())
            .build();
        let needed = occupied_capacity(&output, 0)?;
        match party.amount.checked_sub(fee) {
            Some(payout) if payout >= needed => Ok(payout),
            _ => Err(ClosingError::TooSmall {
                amount: party.amount,
                fee,
                needed,
            }),
        }
    }

    /// The unsigned closing tx (no cell deps: they are added at broadcast).
    pub fn build_tx(&self) -> Result<packed::Transaction, ClosingError> {
        let [first, second] = self.ordered();
        Ok(self.parts([self.payout(first)?, self.payout(second)?]).build())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::tx::default_lock::lock_script;
    use crate::tx::fee::{capacity_of, SHANNONS_PER_CKB as CKB};

    fn party(key: u8, amount: u64, fee_rate: u64) -> ClosingParty {
        let mut pubkey = [2u8; 33];
        pubkey[1] = key;
        ClosingParty {
            funding_pubkey: Pubkey(pubkey),
            amount,
            close_script: lock_script([key; 20]),
            fee_rate,
        }
    }

    /// Upstream's size for two default-lock outputs: 528 bytes in a block.
    #[test]
    fn the_closer_pays_the_whole_fee_and_outputs_follow_the_funding_keys() {
        let closing = Closing {
            funding_out_point: packed::OutPoint::default(),
            local: party(9, 1_099 * CKB, 1_000),
            remote: party(1, 99 * CKB, 0),
        };
        assert_eq!(closing.fee(&closing.local).unwrap(), 528);
        assert_eq!(closing.fee(&closing.remote).unwrap(), 0);
        let tx = closing.build_tx().unwrap();
        let outputs: Vec<_> = tx.raw().outputs().into_iter().collect();
        assert_eq!(outputs[0].lock(), lock_script([1; 20]), "the smaller funding key first");
        assert_eq!(capacity_of(&outputs[0]), 99 * CKB);
        assert_eq!(capacity_of(&outputs[1]), 1_099 * CKB - 528);
    }

    #[test]
    fn a_balance_that_cannot_pay_for_its_cell_is_an_error() {
        let closing = Closing {
            funding_out_point: packed::OutPoint::default(),
            local: party(9, 61 * CKB, 1_000),
            remote: party(1, 99 * CKB, 0),
        };
        assert!(matches!(closing.build_tx(), Err(ClosingError::TooSmall { .. })));
    }
}
