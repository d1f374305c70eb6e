//! The commitment transaction each side holds, signed for it by the other.
//!
//! As in Fiber: one input, the funding out point; one output locked by the
//! commitment-lock contract holding the channel's capacity minus the commitment
//! fee. Its lock args commit to both settlements, and the holder's own share
//! is claimable only after `commitment_delay_epoch`, so a counterparty has time
//! to react (see `docs/protocol.md`).

use ckb_types::packed;
use ckb_types::prelude::*;

use super::fee::{fee_for_size, Overflow};
use super::parts::{tx_hash, TxParts};
use super::script::ScriptTemplate;
use crate::crypto::{blake160, musig};
use crate::primitives::Pubkey;

/// Bytes the funding lock's unlock witness will take (empty `WitnessArgs`,
/// x-only key, BIP340 signature); counted in the commitment fee.
pub const FUNDING_UNLOCK_WITNESS_LEN: usize = 16 + 32 + 64;

/// `since` flags: relative (bit 63), measured in epochs (bits 61-62 = 01).
const RELATIVE_EPOCH_SINCE: u64 = 0xa000_0000_0000_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error("the commitment fee {fee} exceeds the balance {balance} of the side paying it")]
    FeeExceedsBalance { fee: u64, balance: u64 },
    #[error("invalid funding key: {0}")]
    Key(#[from] musig::MusigError),
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// One side of a commitment: its funding key, where its settlement goes, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentParty {
    pub funding_pubkey: Pubkey,
    pub settlement_pubkey: Pubkey,
    /// Balance in shannons before the commitment fee.
    pub amount: u64,
    /// The funder (the initiator) pays the commitment fee.
    pub pays_fee: bool,
}

/// Everything that fixes one commitment transaction.
#[derive(Debug, Clone)]
pub struct Commitment<'a> {
    pub funding_out_point: packed::OutPoint,
    pub funding_capacity: u64,
    pub lock: &'a ScriptTemplate,
    /// `commitment_delay_epoch` as an `EpochNumberWithFraction` value.
    pub delay_epoch: u64,
    pub number: u64,
    pub fee_rate: u64,
    pub holder: CommitmentParty,
    pub counterparty: CommitmentParty,
}

impl Commitment<'_> {
    /// The unsigned commitment transaction.
    pub fn build_tx(&self) -> Result<packed::Transaction, CommitmentError> {
        let draft = self.tx_with_capacity(self.funding_capacity, [0; 20])?;
        let mut sized = TxParts::from_tx(&draft);
        sized.witnesses = vec![vec![0; FUNDING_UNLOCK_WITNESS_LEN]];
        let fee = fee_for_size(sized.build().as_slice().len(), self.fee_rate)?;

        let mut holder = self.holder.clone();
        let mut counterparty = self.counterparty.clone();
        let payer = if holder.pays_fee {
            &mut holder
        } else {
            &mut counterparty
        };
        payer.amount = payer
            .amount
            .checked_sub(fee)
            .ok_or(CommitmentError::FeeExceedsBalance {
                fee,
                balance: payer.amount,
            })?;
        let settlement = settlement_hash(&holder, &counterparty);
        let capacity = self
            .funding_capacity
            .checked_sub(fee)
            .ok_or(CommitmentError::FeeExceedsBalance {
                fee,
                balance: self.funding_capacity,
            })?;
        self.tx_with_capacity(capacity, settlement)
    }

    fn tx_with_capacity(&self, capacity: u64, settlement: [u8; 20]) -> Result<packed::Transaction, CommitmentError> {
        let keys = musig::key_agg(&[self.holder.funding_pubkey, self.counterparty.funding_pubkey])?;
        let mut args = Vec::with_capacity(57);
        args.extend_from_slice(&blake160(&musig::xonly_key(&keys)));
        args.extend_from_slice(&(RELATIVE_EPOCH_SINCE | self.delay_epoch).to_le_bytes());
        args.extend_from_slice(&self.number.to_be_bytes());
        args.extend_from_slice(&settlement);
        args.push(0);
        let parts = TxParts {
            inputs: vec![packed::CellInput::new_builder()
                .previous_output(self.funding_out_point.clone())
                .since(0u64)
                .build()],
            outputs: vec![packed::CellOutput::new_builder()
                .capacity(capacity)
                .lock(self.lock.script(&args))
                .build()],
            outputs_data: vec![Vec::new()],
            ..TxParts::default()
        };
        Ok(parts.build())
    }
}

/// blake160 of the settlement data: the TLC count (none while funding), then
/// for the holder and then the counterparty, blake160 of its settlement key and
/// its amount as u128 little-endian.
fn settlement_hash(holder: &CommitmentParty, counterparty: &CommitmentParty) -> [u8; 20] {
    let mut data = vec![0u8];
    for party in [holder, counterparty] {
        data.extend_from_slice(&blake160(&party.settlement_pubkey.0));
        data.extend_from_slice(&(party.amount as u128).to_le_bytes());
    }
    blake160(&data)
}

/// What MuSig2 signs for a commitment: the hash of its raw part with the cell
/// deps emptied, so a script upgrade does not invalidate signatures.
pub fn signing_message(tx: &packed::Transaction) -> [u8; 32] {
    let mut parts = TxParts::from_tx(tx);
    parts.cell_deps.clear();
    tx_hash(&parts.build())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::crypto::keys::{ChannelKeys, NodeSecret};
    use crate::tx::fee::capacity_of;

    fn party(seed: u8, amount: u64, pays_fee: bool) -> CommitmentParty {
        let keys = ChannelKeys::derive(&NodeSecret::from_bytes([seed; 32]).unwrap(), &[seed; 32]);
        CommitmentParty {
            funding_pubkey: keys.funding_pubkey(),
            settlement_pubkey: keys.tlc_basepoint(),
            amount,
            pays_fee,
        }
    }

    fn commitment(lock: &ScriptTemplate) -> Commitment<'_> {
        Commitment {
            funding_out_point: packed::OutPoint::new_builder().tx_hash([5u8; 32].pack()).build(),
            funding_capacity: 1_000,
            lock,
            delay_epoch: 1,
            number: 0,
            fee_rate: 1_000,
            holder: party(1, 1_000 - 400, true),
            counterparty: party(2, 400, false),
        }
    }

    #[test]
    fn fee_comes_out_of_the_payer_and_the_capacity() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let tx = commitment(&lock).build_tx().unwrap();
        let output = tx.raw().outputs().get(0).unwrap();
        let fee = 1_000 - capacity_of(&output);
        assert!(fee > 0);
        assert_eq!(output.lock().args().raw_data().len(), 57);
        assert_eq!(signing_message(&tx), tx_hash(&tx));
    }

    #[test]
    fn each_holder_gets_a_different_commitment() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let mine = commitment(&lock);
        let theirs = Commitment {
            holder: mine.counterparty.clone(),
            counterparty: mine.holder.clone(),
            ..mine.clone()
        };
        assert_ne!(
            signing_message(&mine.build_tx().unwrap()),
            signing_message(&theirs.build_tx().unwrap())
        );
    }

    #[test]
    fn fee_larger_than_the_payers_balance_is_an_error() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let mut broke = commitment(&lock);
        broke.holder.amount = 1;
        assert!(matches!(
            broke.build_tx(),
            Err(CommitmentError::FeeExceedsBalance { .. })
        ));
    }
}
