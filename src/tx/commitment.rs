//! The commitment transaction each side holds, signed for it by the other,
//! exactly as Fiber v0.8.0 builds it, so Fiber's `funding-lock` accepts it
//! and its `commitment-lock` guards the output (both checked in ckb-vm by
//! `tests/contracts_verify.rs`).
//!
//! One input, the funding out point (`since` 0); one output locked by the
//! commitment-lock contract holding the channel's capacity minus the
//! commitment fee. Its 57 bytes of lock args:
//!
//! ```text
//! blake160(x-only MuSig2 key of [counterparty, holder] funding keys)   20   (revocation)
//! the delay as a relative-epoch `since`, little-endian                  8
//! the commitment number, big-endian                                     8
//! blake160(settlement script)                                          20
//! 0x00 (a first commitment cell; settlements re-create it with 0x01)    1
//! ```
//! The settlement script is the TLC count (0), then the holder's slot and the
//! counterparty's: blake160 of its settlement key (its tlc basepoint) and its
//! *full* amount, u128 little-endian. The fee is not deducted from either:
//! whoever settles second gets what is left, as upstream.

use ckb_types::packed;
use ckb_types::prelude::*;

use super::fee::{fee_for_size, Overflow};
use super::parts::{tx_hash, TxParts};
use super::script::ScriptTemplate;
use crate::crypto::{blake160, musig};
use crate::primitives::Pubkey;

/// The funding lock's unlock witness: an empty `WitnessArgs` (16 bytes), the
/// x-only aggregated key (32), a BIP340 signature (64). Raw bytes, exactly.
pub const FUNDING_UNLOCK_WITNESS_LEN: usize = 16 + 32 + 64;
/// An empty `WitnessArgs`, as both locks expect their witnesses to begin.
pub const EMPTY_WITNESS_ARGS: [u8; 16] = [16, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0];
/// Cell deps a funding-lock spend carries: the lock's code and ckb-auth.
pub const FUNDING_LOCK_DEPS: usize = 2;
/// Length of a commitment-lock's args.
pub const COMMITMENT_LOCK_ARGS_LEN: usize = 57;
/// Length of a settlement script without TLCs: count byte and two slots.
pub const SETTLEMENT_SCRIPT_LEN: usize = 1 + 2 * SLOT_LEN;
/// One party's slot in a settlement script: key hash (20) and amount (16).
pub const SLOT_LEN: usize = 20 + 16;

/// `since` flags: relative (bit 63), measured in epochs (bits 61-62 = 01).
pub const RELATIVE_EPOCH_SINCE: u64 = 0xa000_0000_0000_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error("the commitment fee {fee} exceeds the channel's capacity {capacity}")]
    FeeExceedsCapacity { fee: u64, capacity: u64 },
    #[error("invalid funding key: {0}")]
    Key(#[from] musig::MusigError),
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// One side of a commitment: its funding key, where its settlement goes, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentParty {
    pub funding_pubkey: Pubkey,
    /// The key of its settlement slot (its tlc basepoint).
    pub settlement_pubkey: Pubkey,
    /// Its full balance, reserve included; the commitment fee is not taken from it.
    pub amount: u64,
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
    /// The fee, sized as upstream's `commitment_tx_size`: the tx as it will be
    /// broadcast, with the funding lock's two cell deps and its 112-byte
    /// witness (and CKB's 4 bytes per tx in a block).
    pub fn fee(&self) -> Result<u64, CommitmentError> {
        Ok(commitment_fee(self.lock, self.fee_rate)?)
    }

    /// The settlement script: no TLCs, the holder's slot, the counterparty's.
    pub fn settlement_script(&self) -> Vec<u8> {
        let mut script = Vec::with_capacity(SETTLEMENT_SCRIPT_LEN);
        script.push(0u8);
        for party in [&self.holder, &self.counterparty] {
            script.extend_from_slice(&blake160(&party.settlement_pubkey.0));
            script.extend_from_slice(&u128::from(party.amount).to_le_bytes());
        }
        script
    }

    /// The commitment lock's args (57 bytes, see the module docs).
    pub fn lock_args(&self) -> Result<Vec<u8>, CommitmentError> {
        // Upstream aggregates [non-holder, holder], unsorted, for revocation.
        let keys = musig::key_agg(&[self.counterparty.funding_pubkey, self.holder.funding_pubkey])?;
        let mut args = Vec::with_capacity(COMMITMENT_LOCK_ARGS_LEN);
        args.extend_from_slice(&blake160(&musig::xonly_key(&keys)));
        args.extend_from_slice(&(RELATIVE_EPOCH_SINCE | self.delay_epoch).to_le_bytes());
        args.extend_from_slice(&self.number.to_be_bytes());
        args.extend_from_slice(&blake160(&self.settlement_script()));
        args.push(0);
        Ok(args)
    }

    /// The unsigned commitment transaction: no cell deps (they are not
    /// signed, and are added at broadcast), no witness.
    pub fn build_tx(&self) -> Result<packed::Transaction, CommitmentError> {
        let fee = self.fee()?;
        let capacity = self
            .funding_capacity
            .checked_sub(fee)
            .ok_or(CommitmentError::FeeExceedsCapacity {
                fee,
                capacity: self.funding_capacity,
            })?;
        self.tx_with_capacity(capacity)
    }

    fn tx_with_capacity(&self, capacity: u64) -> Result<packed::Transaction, CommitmentError> {
        let parts = TxParts {
            inputs: vec![packed::CellInput::new_builder()
                .previous_output(self.funding_out_point.clone())
                .since(0u64)
                .build()],
            outputs: vec![packed::CellOutput::new_builder()
                .capacity(capacity)
                .lock(self.lock.script(&self.lock_args()?))
                .build()],
            outputs_data: vec![Vec::new()],
            ..TxParts::default()
        };
        Ok(parts.build())
    }
}

/// The fee of every commitment of a channel whose commitment lock is `lock`:
/// the tx always has one input, one output under `lock` with 57 bytes of
/// args, the funding lock's two cell deps and its 112-byte witness, so its
/// size does not depend on keys or amounts.
pub fn commitment_fee(lock: &ScriptTemplate, fee_rate: u64) -> Result<u64, Overflow> {
    let sized = TxParts {
        cell_deps: vec![packed::CellDep::default(); FUNDING_LOCK_DEPS],
        inputs: vec![packed::CellInput::default()],
        outputs: vec![packed::CellOutput::new_builder()
            .lock(lock.script(&[0; COMMITMENT_LOCK_ARGS_LEN]))
            .build()],
        outputs_data: vec![Vec::new()],
        witnesses: vec![vec![0; FUNDING_UNLOCK_WITNESS_LEN]],
        ..TxParts::default()
    };
    fee_for_size(sized.build().as_slice().len(), fee_rate)
}

/// What MuSig2 signs for a tx spending the funding output (commitment or
/// closing), and what the commitment lock's ECDSA signatures sign: the hash
/// of its raw part with the cell deps emptied, so a script upgrade does not
/// invalidate signatures.
pub fn signing_message(tx: &packed::Transaction) -> [u8; 32] {
    let mut parts = TxParts::from_tx(tx);
    parts.cell_deps.clear();
    tx_hash(&parts.build())
}

/// The funding lock's witness: empty `WitnessArgs` ‖ x-only key ‖ signature.
pub fn funding_unlock_witness(xonly_key: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
    let mut witness = Vec::with_capacity(FUNDING_UNLOCK_WITNESS_LEN);
    witness.extend_from_slice(&EMPTY_WITNESS_ARGS);
    witness.extend_from_slice(xonly_key);
    witness.extend_from_slice(signature);
    witness
}

/// A tx spending the funding output, ready to broadcast: `tx` with the
/// funding lock's cell deps and its unlock witness.
pub fn complete_funding_spend(
    tx: &packed::Transaction,
    cell_deps: &[packed::CellDep],
    xonly_key: &[u8; 32],
    signature: &[u8; 64],
) -> packed::Transaction {
    let mut parts = TxParts::from_tx(tx);
    parts.cell_deps = cell_deps.to_vec();
    parts.witnesses = vec![funding_unlock_witness(xonly_key, signature)];
    parts.build()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::crypto::keys::{ChannelKeys, NodeSecret};
    use crate::tx::fee::capacity_of;

    fn party(seed: u8, amount: u64) -> CommitmentParty {
        let keys = ChannelKeys::derive(&NodeSecret::from_bytes([seed; 32]).unwrap(), &[seed; 32]);
        CommitmentParty {
            funding_pubkey: keys.funding_pubkey(),
            settlement_pubkey: keys.tlc_basepoint(),
            amount,
        }
    }

    fn commitment(lock: &ScriptTemplate) -> Commitment<'_> {
        Commitment {
            funding_out_point: packed::OutPoint::new_builder().tx_hash([5u8; 32].pack()).build(),
            funding_capacity: 1_000_000,
            lock,
            delay_epoch: (1 << 40) | 1,
            number: 0,
            fee_rate: 1_000,
            holder: party(1, 1_000_000 - 400_000),
            counterparty: party(2, 400_000),
        }
    }

    /// Upstream's `test_commitment_tx_capacity`: capacity = total − the size
    /// in a block of the commitment tx with two deps and its witness, 456
    /// bytes, at 1,000 shannons/KB.
    #[test]
    fn the_fee_is_sized_like_upstream_with_deps_and_witness() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let c = commitment(&lock);
        assert_eq!(c.fee().unwrap(), 456);
        let tx = c.build_tx().unwrap();
        assert_eq!(capacity_of(&tx.raw().outputs().get(0).unwrap()), 1_000_000 - 456);
        let signed = complete_funding_spend(&tx, &vec![packed::CellDep::default(); 2], &[1; 32], &[2; 64]);
        assert_eq!(signed.as_slice().len() + 4, 456);
        assert_eq!(signing_message(&signed), signing_message(&tx));
    }

    /// Why a peer's reserve must cover the commitment fee too: the holder
    /// claiming first re-creates a cell for the other side holding its
    /// amount less the fee, and that cell must pay for its own bytes.
    #[test]
    fn a_first_claim_leaves_the_other_side_a_valid_cell_only_if_its_reserve_covers_the_fee() {
        use crate::tx::default_lock::lock_script;
        use crate::tx::fee::occupied_capacity;
        use crate::tx::funding::min_reserved_ckb_amount;
        use crate::tx::settlement::{Settlement, Slot};

        let lock = ScriptTemplate::type_hash([7; 32]);
        let shutdown = lock_script([9; 20]);
        let floor = min_reserved_ckb_amount(&shutdown).unwrap();
        let fee = commitment_fee(&lock, 1_000).unwrap();
        let left_to_the_peer = |peer_amount: u64| {
            let holder_amount = 500 * crate::tx::fee::SHANNONS_PER_CKB;
            let mut c = commitment(&lock);
            c.funding_capacity = holder_amount + peer_amount;
            c.holder.amount = holder_amount;
            c.counterparty.amount = peer_amount;
            let tx = c.build_tx().unwrap();
            let script = c.settlement_script();
            let claim = Settlement {
                cell_out_point: packed::OutPoint::new_builder().tx_hash(tx_hash(&tx).pack()).build(),
                cell: tx.raw().outputs().get(0).unwrap(),
                script: &script,
                slot: Slot::Holder,
                to: shutdown.clone(),
                fee_rate: 1_000,
                cell_deps: &[],
            }
            .build_unsigned()
            .unwrap();
            let left = claim.raw().outputs().get(0).unwrap();
            (capacity_of(&left), occupied_capacity(&left, 0).unwrap())
        };
        let (held, needed) = left_to_the_peer(floor);
        assert!(
            held < needed,
            "at the bare floor the cell left ({held}) is below its {needed}"
        );
        let (held, needed) = left_to_the_peer(floor + fee);
        assert!(
            held >= needed,
            "with the fee on top the cell left ({held}) pays for its {needed}"
        );
    }

    #[test]
    fn the_args_commit_to_full_amounts_and_start_with_the_counterparty_holder_key() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let c = commitment(&lock);
        let args = c.lock_args().unwrap();
        assert_eq!(args.len(), COMMITMENT_LOCK_ARGS_LEN);
        let keys = musig::key_agg(&[c.counterparty.funding_pubkey, c.holder.funding_pubkey]).unwrap();
        assert_eq!(args[..20], blake160(&musig::xonly_key(&keys)));
        assert_eq!(args[20..28], 0xa000_0100_0000_0001u64.to_le_bytes());
        assert_eq!(args[28..36], 0u64.to_be_bytes());
        let script = c.settlement_script();
        assert_eq!(script.len(), SETTLEMENT_SCRIPT_LEN);
        assert_eq!(script[21..37], 600_000u128.to_le_bytes(), "the holder's full amount");
        assert_eq!(script[57..73], 400_000u128.to_le_bytes());
        assert_eq!(args[36..56], blake160(&script));
        assert_eq!(args[56], 0);
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
    fn a_fee_larger_than_the_capacity_is_an_error() {
        let lock = ScriptTemplate::type_hash([7; 32]);
        let mut broke = commitment(&lock);
        broke.funding_capacity = 100;
        assert!(matches!(
            broke.build_tx(),
            Err(CommitmentError::FeeExceedsCapacity { .. })
        ));
    }
}
