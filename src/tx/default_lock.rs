//! CKB's default lock, secp256k1-blake160-sighash-all: its script, the
//! placeholder witness a wallet signs over, and signing and checking a group of
//! inputs exactly as the on-chain script does.
//!
//! ```
//! use ckb_types::{packed, prelude::*};
//! use fiber_funding::tx::default_lock;
//! use k256::ecdsa::SigningKey;
//!
//! let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
//! let lock = default_lock::lock_script_for_key(key.verifying_key());
//! let tx = packed::Transaction::new_builder()
//!     .raw(
//!         packed::RawTransaction::new_builder()
//!             .inputs(vec![packed::CellInput::new_builder().build()].pack())
//!             .build(),
//!     )
//!     .witnesses(vec![default_lock::placeholder_witness().as_bytes().pack()].pack())
//!     .build();
//! let signed = default_lock::sign_group(&tx, &[0], &key).unwrap();
//! default_lock::verify_group(&signed, &[0], &lock.args().raw_data()).unwrap();
//! ```

use ckb_types::{bytes::Bytes, core::ScriptHashType, packed, prelude::*};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

/// Type hash of the secp256k1-blake160-sighash-all script; used with
/// hash_type `type`, it is the same on mainnet, testnet and dev chains.
pub const SIGHASH_ALL_TYPE_HASH: [u8; 32] = [
    0x9b, 0xd7, 0xe0, 0x6f, 0x3e, 0xcf, 0x4b, 0xe0, 0xf2, 0xfc, 0xd2, 0x18, 0x8b, 0x23, 0xf1, 0xb9, 0xfc, 0xc8, 0x8e,
    0x5d, 0x4b, 0x65, 0xa8, 0x63, 0x7b, 0x17, 0x72, 0x3b, 0xbd, 0xa3, 0xcc, 0xe8,
];

/// Length of a recoverable signature as the lock stores it: r ‖ s ‖ recovery id.
pub const SIGNATURE_LEN: usize = 65;

/// Serialized length of [`placeholder_witness`], for fee estimation.
pub const PLACEHOLDER_WITNESS_LEN: usize = 85;

/// The most bytes of one witness the script reads (its `MAX_WITNESS_SIZE`):
/// it fails on any larger witness it hashes, however the group is signed.
pub const MAX_WITNESS_LEN: usize = 32_768;

/// Why a default-lock input group could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefaultLockError {
    #[error("the input group is empty")]
    EmptyGroup,
    #[error("input {index} is not in the transaction, which has {inputs} inputs")]
    InputOutOfRange { index: usize, inputs: usize },
    #[error("input {index} spends a cell whose lock is not known")]
    UnknownInput { index: usize },
    #[error("no witness at index {index}, the group's first input")]
    MissingWitness { index: usize },
    #[error("witness {index} is not a WitnessArgs")]
    WitnessNotWitnessArgs { index: usize },
    #[error("witness {index} has no lock field to hold the signature")]
    MissingLock { index: usize },
    #[error("witness {index} lock is {len} bytes, a signature is 65")]
    BadSignatureLength { index: usize, len: usize },
    #[error("the signature in witness {index} does not recover a public key")]
    SignatureDoesNotRecover { index: usize },
    #[error("lock args are {len} bytes, the default lock needs a 20-byte blake160")]
    ArgsNotBlake160 { len: usize },
    #[error("input {input_index}: the signer's key hash does not match the lock args")]
    PubkeyHashMismatch { input_index: usize },
    #[error("witness {index} is {len} bytes; the default lock reads at most {MAX_WITNESS_LEN}")]
    WitnessTooLarge { index: usize, len: usize },
    #[error("the key could not sign the message")]
    SigningFailed,
}

/// Inputs that share one lock script, and so one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputGroup {
    pub lock: packed::Script,
    /// Ascending input indices; the first one's witness carries the signature.
    pub input_indices: Vec<usize>,
}

pub use crate::crypto::blake160;

/// The default lock for a key whose compressed public key hashes to `pubkey_hash`.
pub fn lock_script(pubkey_hash: [u8; 20]) -> packed::Script {
    packed::Script::new_builder()
        .code_hash(SIGHASH_ALL_TYPE_HASH.pack())
        .hash_type(ScriptHashType::Type)
        .args(pubkey_hash.to_vec().pack())
        .build()
}

/// The default lock owned by `key`.
pub fn lock_script_for_key(key: &VerifyingKey) -> packed::Script {
    lock_script(pubkey_hash(key))
}

/// Whether `script` is the default lock (any args).
pub fn is_default_lock(script: &packed::Script) -> bool {
    script.code_hash().raw_data().as_ref() == SIGHASH_ALL_TYPE_HASH && script.hash_type() == ScriptHashType::Type.into()
}

/// What a wallet must find in the first witness of each default-lock group
/// before signing: a `WitnessArgs` whose lock is 65 zero bytes, so the signed
/// message already covers the final witness length.
pub fn placeholder_witness() -> packed::WitnessArgs {
    placeholder_witness_with_lock_len(SIGNATURE_LEN)
}

/// A `WitnessArgs` whose lock is `lock_len` zero bytes: the room another
/// lock's signature takes (JoyID's passkey signature, say), so the fee
/// sized with it carries the signed tx.
pub fn placeholder_witness_with_lock_len(lock_len: usize) -> packed::WitnessArgs {
    packed::WitnessArgs::new_builder()
        .lock(Some(Bytes::from(vec![0u8; lock_len])).pack())
        .build()
}

/// Groups the transaction's inputs by the lock of the cell each spends, in
/// order of each group's first input. `spent_cell` looks up the cell an input
/// spends; an input it does not know is an error.
pub fn input_groups(
    tx: &packed::Transaction,
    spent_cell: impl Fn(&packed::OutPoint) -> Option<packed::CellOutput>,
) -> Result<Vec<InputGroup>, DefaultLockError> {
    let mut groups: Vec<(packed::Byte32, InputGroup)> = Vec::new();
    for (index, input) in tx.raw().inputs().into_iter().enumerate() {
        let cell = spent_cell(&input.previous_output()).ok_or(DefaultLockError::UnknownInput { index })?;
        let lock = cell.lock();
        let lock_hash = lock.calc_script_hash();
        match groups.iter_mut().find(|(hash, _)| *hash == lock_hash) {
            Some((_, group)) => group.input_indices.push(index),
            None => groups.push((
                lock_hash,
                InputGroup {
                    lock,
                    input_indices: vec![index],
                },
            )),
        }
    }
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}

/// The 32-byte message the default lock checks for the inputs in `group`:
/// blake2b over the tx hash, the group's first witness with its lock set to 65
/// zero bytes, the group's other witnesses, then every witness past the last
/// input, each preceded by its length as u64 little-endian.
pub fn signing_message(tx: &packed::Transaction, group: &[usize]) -> Result<[u8; 32], DefaultLockError> {
    let indices = ascending_group(tx, group)?;
    let first = first_witness_args(tx, indices[0])?;
    Ok(sighash_all_message(
        &tx.calc_tx_hash().unpack(),
        &first,
        &covered_witnesses(tx, &indices),
    ))
}

/// Signs the group with `key` and returns the transaction with the signature in
/// the lock of the group's first witness. Only that witness changes.
pub fn sign_group(
    tx: &packed::Transaction,
    group: &[usize],
    key: &SigningKey,
) -> Result<packed::Transaction, DefaultLockError> {
    let indices = ascending_group(tx, group)?;
    let first = first_witness_args(tx, indices[0])?;
    let message = sighash_all_message(&tx.calc_tx_hash().unpack(), &first, &covered_witnesses(tx, &indices));
    let signature = sign_message(key, &message)?;
    let signed_witness = first
        .as_builder()
        .lock(Some(Bytes::from(signature.to_vec())).pack())
        .build();
    let mut witnesses: Vec<packed::Bytes> = tx.witnesses().into_iter().collect();
    witnesses[indices[0]] = signed_witness.as_bytes().pack();
    Ok(tx.clone().as_builder().witnesses(witnesses.pack()).build())
}

/// Checks the group's signature the way the on-chain script does: the key
/// recovered from the first witness's lock must hash to `expected_args`.
pub fn verify_group(tx: &packed::Transaction, group: &[usize], expected_args: &[u8]) -> Result<(), DefaultLockError> {
    if expected_args.len() != 20 {
        return Err(DefaultLockError::ArgsNotBlake160 {
            len: expected_args.len(),
        });
    }
    let indices = ascending_group(tx, group)?;
    check_witness_lens(tx, &indices)?;
    let first_index = indices[0];
    let first = first_witness_args(tx, first_index)?;
    let lock = first
        .lock()
        .to_opt()
        .ok_or(DefaultLockError::MissingLock { index: first_index })?
        .raw_data();
    if lock.len() != SIGNATURE_LEN {
        return Err(DefaultLockError::BadSignatureLength {
            index: first_index,
            len: lock.len(),
        });
    }
    let message = sighash_all_message(&tx.calc_tx_hash().unpack(), &first, &covered_witnesses(tx, &indices));
    let signer =
        recover_signer(&message, &lock).ok_or(DefaultLockError::SignatureDoesNotRecover { index: first_index })?;
    if pubkey_hash(&signer).as_slice() != expected_args {
        return Err(DefaultLockError::PubkeyHashMismatch {
            input_index: first_index,
        });
    }
    Ok(())
}

fn pubkey_hash(key: &VerifyingKey) -> [u8; 20] {
    blake160(key.to_encoded_point(true).as_bytes())
}

/// The group as the script sees it: a set of inputs, in input order.
fn ascending_group(tx: &packed::Transaction, group: &[usize]) -> Result<Vec<usize>, DefaultLockError> {
    let inputs = tx.raw().inputs().len();
    let mut indices = group.to_vec();
    indices.sort_unstable();
    indices.dedup();
    match indices.last() {
        None => Err(DefaultLockError::EmptyGroup),
        Some(&index) if index >= inputs => Err(DefaultLockError::InputOutOfRange { index, inputs }),
        Some(_) => Ok(indices),
    }
}

fn first_witness_args(tx: &packed::Transaction, index: usize) -> Result<packed::WitnessArgs, DefaultLockError> {
    let witness = tx
        .witnesses()
        .get(index)
        .ok_or(DefaultLockError::MissingWitness { index })?;
    // Strict parsing: the script rejects a WitnessArgs with extra fields.
    crate::wire::decode_checked::<packed::WitnessArgs>("witness", &witness.raw_data())
        .map_err(|_| DefaultLockError::WitnessNotWitnessArgs { index })
}

/// The witnesses the message covers after the first one: the group's others,
/// stopping at the first missing one as the script's syscall loop does, then
/// every witness with no input of its own.
fn covered_witnesses(tx: &packed::Transaction, indices: &[usize]) -> Vec<Bytes> {
    let witnesses = tx.witnesses();
    let group_rest = indices[1..]
        .iter()
        .map_while(|&index| witnesses.get(index).map(|w| w.raw_data()));
    let past_inputs = (tx.raw().inputs().len()..witnesses.len()).filter_map(|index| witnesses.get(index));
    group_rest.chain(past_inputs.map(|w| w.raw_data())).collect()
}

/// Every witness the script loads for the group (its own, then those with
/// no input of their own) fits the buffer it loads them into.
fn check_witness_lens(tx: &packed::Transaction, indices: &[usize]) -> Result<(), DefaultLockError> {
    let witnesses = tx.witnesses();
    let past_inputs = tx.raw().inputs().len()..witnesses.len();
    for index in indices.iter().copied().chain(past_inputs) {
        let len = witnesses.get(index).map_or(0, |w| w.raw_data().len());
        if len > MAX_WITNESS_LEN {
            return Err(DefaultLockError::WitnessTooLarge { index, len });
        }
    }
    Ok(())
}

fn sighash_all_message(tx_hash: &[u8; 32], first_witness: &packed::WitnessArgs, covered: &[Bytes]) -> [u8; 32] {
    let zeroed = first_witness
        .clone()
        .as_builder()
        .lock(Some(Bytes::from(vec![0u8; SIGNATURE_LEN])).pack())
        .build();
    let mut hasher = ckb_hash::new_blake2b();
    hasher.update(tx_hash);
    for witness in std::iter::once(zeroed.as_slice()).chain(covered.iter().map(AsRef::as_ref)) {
        hasher.update(&(witness.len() as u64).to_le_bytes());
        hasher.update(witness);
    }
    let mut message = [0u8; 32];
    hasher.finalize(&mut message);
    message
}

/// RFC 6979 deterministic, low-s (k256 normalises s and adjusts the recovery id).
/// A 65-byte recoverable signature (r ‖ s ‖ recovery id) of a 32-byte message,
/// as CKB's secp256k1 locks and ckb-auth's algorithm 0 check it.
pub fn sign_message(key: &SigningKey, message: &[u8; 32]) -> Result<[u8; 65], DefaultLockError> {
    let (signature, recovery_id) = key
        .sign_prehash_recoverable(message)
        .map_err(|_| DefaultLockError::SigningFailed)?;
    let mut out = [0u8; SIGNATURE_LEN];
    out[..64].copy_from_slice(&signature.to_bytes());
    out[64] = recovery_id.to_byte();
    Ok(out)
}

/// The key whose signature `signature` (r ‖ s ‖ recovery id) is over
/// `message`, as libsecp256k1's `secp256k1_ecdsa_recover` in the on-chain
/// script finds it: Q = r⁻¹(s·R − z·G), where R is the point of x
/// coordinate r (plus the group order, if the id says so) and the id's y
/// parity. A high s recovers as well as its low twin. The `ecdsa` crate's
/// recovery then also verifies the signature against Q, which holds by
/// construction; that second multiplication and inversion were half the
/// time of a submit's check (`docs/bench.md`). Everything here is public,
/// so the inversion may take variable time.
// Field and scalar arithmetic is modular: it cannot overflow.
#[allow(clippy::arithmetic_side_effects)]
fn recover_signer(message: &[u8; 32], signature: &[u8]) -> Option<VerifyingKey> {
    use k256::elliptic_curve::bigint::{CheckedAdd, Encoding, U256};
    use k256::elliptic_curve::ops::{Invert, LinearCombination, Reduce};
    use k256::elliptic_curve::point::DecompressPoint;
    use k256::elliptic_curve::Curve;
    use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, Secp256k1};

    let (compact, &[id]) = signature.split_first_chunk::<64>()? else {
        return None;
    };
    // Both scalars in [1, n).
    let compact = Signature::from_slice(compact).ok()?;
    let recovery_id = RecoveryId::from_byte(id)?;
    let (r, s) = compact.split_scalars();
    let mut x = r.to_bytes();
    if recovery_id.is_x_reduced() {
        let restored = Option::<U256>::from(U256::from_be_slice(&x).checked_add(&Secp256k1::ORDER))?;
        x = FieldBytes::from(restored.to_be_bytes());
    }
    // `None` for an x of the field's size or more, or off the curve.
    let big_r = Option::<AffinePoint>::from(AffinePoint::decompress(&x, u8::from(recovery_id.is_y_odd()).into()))?;
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(*message));
    let r_inv = *r.invert_vartime();
    let u1 = -(r_inv * z);
    let u2 = r_inv * *s;
    let q = ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, &u1, &ProjectivePoint::from(big_r), &u2);
    // Refuses the point at infinity.
    VerifyingKey::from_affine(q.to_affine()).ok()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::primitives::decode_hex;

    fn hex(text: &str) -> Vec<u8> {
        decode_hex(text).unwrap()
    }

    fn key(text: &str) -> SigningKey {
        SigningKey::from_slice(&hex(text)).unwrap()
    }

    fn empty_witness_args() -> packed::WitnessArgs {
        packed::WitnessArgs::new_builder().build()
    }

    fn out_point(tx_byte: u8, index: u32) -> packed::OutPoint {
        packed::OutPoint::new_builder()
            .tx_hash([tx_byte; 32].pack())
            .index(index)
            .build()
    }

    fn input(tx_byte: u8, index: u32) -> packed::CellInput {
        packed::CellInput::new_builder()
            .previous_output(out_point(tx_byte, index))
            .build()
    }

    fn output(capacity: u64, lock: packed::Script) -> packed::CellOutput {
        packed::CellOutput::new_builder().capacity(capacity).lock(lock).build()
    }

    fn alice() -> SigningKey {
        key("0xd00c06bfd800d27397002dca6fb0993d5ba6399b4238b2f29ee9deb97593d2bc")
    }

    fn bob() -> SigningKey {
        key("0x63d86723e08f0f813a36ce6aa123bb2289d90680ae1e99d4de8cdb334553f24d")
    }

    /// Inputs 0 and 2 belong to Alice, input 1 to Bob; witness 3 has no input.
    fn two_group_tx() -> packed::Transaction {
        let raw = packed::RawTransaction::new_builder()
            .inputs(vec![input(1, 0), input(1, 1), input(2, 0)].pack())
            .outputs(vec![output(500_0000_0000, lock_script([9; 20]))].pack())
            .outputs_data([Bytes::new()].pack())
            .build();
        let witnesses: Vec<packed::Bytes> = vec![
            placeholder_witness().as_bytes().pack(),
            placeholder_witness().as_bytes().pack(),
            empty_witness_args().as_bytes().pack(),
            Bytes::from_static(b"beyond the inputs").pack(),
        ];
        packed::Transaction::new_builder()
            .raw(raw)
            .witnesses(witnesses.pack())
            .build()
    }

    fn alice_args() -> Vec<u8> {
        pubkey_hash(alice().verifying_key()).to_vec()
    }

    fn bob_args() -> Vec<u8> {
        pubkey_hash(bob().verifying_key()).to_vec()
    }

    fn signed_two_group_tx() -> packed::Transaction {
        let tx = sign_group(&two_group_tx(), &[0, 2], &alice()).unwrap();
        sign_group(&tx, &[1], &bob()).unwrap()
    }

    fn with_witness(tx: &packed::Transaction, index: usize, bytes: &[u8]) -> packed::Transaction {
        let mut witnesses: Vec<packed::Bytes> = tx.witnesses().into_iter().collect();
        witnesses[index] = bytes.to_vec().pack();
        tx.clone().as_builder().witnesses(witnesses.pack()).build()
    }

    #[test]
    fn dev_chain_key_hashes_to_its_published_args() {
        assert_eq!(alice_args(), hex("0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7"));
        let lock = lock_script_for_key(alice().verifying_key());
        assert!(is_default_lock(&lock));
        assert_eq!(lock.args().raw_data().as_ref(), alice_args().as_slice());
    }

    #[test]
    fn placeholder_witness_is_85_bytes_with_a_zero_lock() {
        let witness = placeholder_witness();
        assert_eq!(witness.as_slice().len(), PLACEHOLDER_WITNESS_LEN);
        assert_eq!(
            witness.lock().to_opt().unwrap().raw_data().as_ref(),
            [0u8; 65].as_slice()
        );
        assert!(witness.input_type().is_none() && witness.output_type().is_none());
    }

    /// Known answer from ckb-sdk-js (packages/ckb-sdk-core/__tests__/signWitnesses/
    /// fixtures.json, "multi groups"): tx hash, keys and expected witnesses are
    /// published there. Group A is inputs 0 and 2, group B input 1, and witness 3
    /// lies past the three inputs, so both messages cover it.
    #[test]
    fn signatures_match_ckb_sdk_js_multi_group_fixture() {
        let tx_hash: [u8; 32] = hex("0x4a4bcfef1b7448e27edf533df2f1de9f56be05eba645fb83f42d55816797ad2a")
            .try_into()
            .unwrap();
        let empty = empty_witness_args().as_bytes();

        let message_a = sighash_all_message(&tx_hash, &empty_witness_args(), &[empty.clone(), empty.clone()]);
        let signature_a = sign_message(
            &key("0xdcec27d0d975b0378471183a03f7071dea8532aaf968be796719ecd20af6988f"),
            &message_a,
        )
        .unwrap();
        assert_eq!(
            signature_a.to_vec(),
            hex("0xd59792eee1e67747d25a36304bf155665a9b552ecda2d84390ba6acfc422dc3f4b599165078ed98c4e930dec79866b50984f3458c5010faefce6574b9659329501")
        );

        let message_b = sighash_all_message(&tx_hash, &empty_witness_args(), &[empty]);
        let signature_b = sign_message(&key(&format!("0x{}", "ee".repeat(32))), &message_b).unwrap();
        assert_eq!(
            signature_b.to_vec(),
            hex("0x91af5eeb1632565dc4a9fb1c6e08d1f1c7da96e10ee00595a2db208f1d15faca03332a1f0f7a0f8522f6e112bb8dde4ed0015d1683b998744a0d8644f0dfd0f800")
        );
    }

    /// Known answer from a real testnet transfer published in the
    /// nervosnetwork/ckb-light-client README (`send_transaction` example): its
    /// signature must recover the key behind the change output's args, which
    /// checks the tx hash and message computed from the full transaction.
    #[test]
    fn published_testnet_transfer_verifies_against_its_change_owner() {
        let sender_lock = |args: &str| {
            packed::Script::new_builder()
                .code_hash(SIGHASH_ALL_TYPE_HASH.pack())
                .hash_type(ScriptHashType::Type)
                .args(hex(args).pack())
                .build()
        };
        let raw = packed::RawTransaction::new_builder()
            .cell_deps(
                vec![packed::CellDep::new_builder()
                    .out_point(
                        packed::OutPoint::new_builder()
                            .tx_hash(
                                <[u8; 32]>::try_from(hex(
                                    "0xf8de3bb47d055cdf460d93a2a6e1b05f7432f9777c8c474abf4eec1d4aee5d37",
                                ))
                                .unwrap()
                                .pack(),
                            )
                            .index(0u32)
                            .build(),
                    )
                    .dep_type(ckb_types::core::DepType::DepGroup)
                    .build()]
                .pack(),
            )
            .inputs(
                vec![packed::CellInput::new_builder()
                    .previous_output(
                        packed::OutPoint::new_builder()
                            .tx_hash(
                                <[u8; 32]>::try_from(hex(
                                    "0x8f8c79eb6671709633fe6a46de93c0fedc9c1b8a6527a18d3983879542635c9f",
                                ))
                                .unwrap()
                                .pack(),
                            )
                            .index(7u32)
                            .build(),
                    )
                    .since(0u64)
                    .build()]
                .pack(),
            )
            .outputs(
                vec![
                    output(
                        0x470de4df820000,
                        sender_lock("0xff5094c2c5f476fc38510018609a3fd921dd28ad"),
                    ),
                    output(
                        0xb61134e5a35e800,
                        sender_lock("0x64257f00b6b63e987609fa9be2d0c86d351020fb"),
                    ),
                ]
                .pack(),
            )
            .outputs_data([Bytes::new(), Bytes::new()].pack())
            .build();
        let witness = hex("0x5500000010000000550000005500000041000000af34b54bebf8c5971da6a880f2df5a186c3f8d0b5c9a1fe1a90c95b8a4fb89ef3bab1ccec13797dcb3fee80400f953227dd7741227e08032e3598e16ccdaa49c00");
        let tx = packed::Transaction::new_builder()
            .raw(raw)
            .witnesses(vec![witness.pack()].pack())
            .build();

        verify_group(&tx, &[0], &hex("0x64257f00b6b63e987609fa9be2d0c86d351020fb")).unwrap();
        assert_eq!(
            verify_group(&tx, &[0], &hex("0xff5094c2c5f476fc38510018609a3fd921dd28ad")),
            Err(DefaultLockError::PubkeyHashMismatch { input_index: 0 })
        );
    }

    #[test]
    fn sign_then_verify_round_trips_for_each_group() {
        let tx = signed_two_group_tx();
        verify_group(&tx, &[0, 2], &alice_args()).unwrap();
        verify_group(&tx, &[1], &bob_args()).unwrap();
        // Group order given by the caller does not matter.
        verify_group(&tx, &[2, 0], &alice_args()).unwrap();
    }

    /// The script fails on any witness it hashes past its 32 KiB buffer:
    /// the group's own (first or not) and those with no input of their
    /// own, which every group hashes. Another group's witness is not read.
    #[test]
    fn a_witness_the_script_cannot_read_fails_every_group_that_hashes_it() {
        let too_large = vec![0u8; MAX_WITNESS_LEN + 1];
        let at_limit = vec![0u8; MAX_WITNESS_LEN];
        let tx = sign_group(&with_witness(&two_group_tx(), 2, &at_limit), &[0, 2], &alice()).unwrap();
        let tx = sign_group(&tx, &[1], &bob()).unwrap();
        verify_group(&tx, &[0, 2], &alice_args()).unwrap();

        let too_large_at = |index| {
            Err(DefaultLockError::WitnessTooLarge {
                index,
                len: MAX_WITNESS_LEN + 1,
            })
        };
        let in_group = with_witness(&tx, 2, &too_large);
        assert_eq!(verify_group(&in_group, &[0, 2], &alice_args()), too_large_at(2));
        verify_group(&in_group, &[1], &bob_args()).unwrap();

        let past_inputs = with_witness(&tx, 3, &too_large);
        assert_eq!(verify_group(&past_inputs, &[0, 2], &alice_args()), too_large_at(3));
        assert_eq!(verify_group(&past_inputs, &[1], &bob_args()), too_large_at(3));
    }

    #[test]
    fn signing_changes_only_the_first_witness_of_the_group() {
        let unsigned = two_group_tx();
        let signed = sign_group(&unsigned, &[0, 2], &alice()).unwrap();
        assert_eq!(signed.raw().as_slice(), unsigned.raw().as_slice());
        for index in 1..4 {
            assert_eq!(
                signed.witnesses().get(index).unwrap().as_slice(),
                unsigned.witnesses().get(index).unwrap().as_slice()
            );
        }
        assert_eq!(
            signed.witnesses().get(0).unwrap().raw_data().len(),
            PLACEHOLDER_WITNESS_LEN
        );
        // The message does not depend on what the lock held before signing.
        assert_eq!(
            signing_message(&signed, &[0, 2]).unwrap(),
            signing_message(&unsigned, &[0, 2]).unwrap()
        );
    }

    #[test]
    fn signing_is_deterministic_and_low_s() {
        let first = signed_two_group_tx();
        let second = signed_two_group_tx();
        assert_eq!(first.as_slice(), second.as_slice());
        let lock = packed::WitnessArgs::from_slice(&first.witnesses().get(0).unwrap().raw_data())
            .unwrap()
            .lock()
            .to_opt()
            .unwrap()
            .raw_data();
        let signature = Signature::from_slice(&lock[..64]).unwrap();
        assert!(signature.normalize_s().is_none());
    }

    #[test]
    fn high_s_signature_still_verifies_as_on_chain() {
        let tx = signed_two_group_tx();
        let first = packed::WitnessArgs::from_slice(&tx.witnesses().get(1).unwrap().raw_data()).unwrap();
        let lock = first.lock().to_opt().unwrap().raw_data();
        let signature = Signature::from_slice(&lock[..64]).unwrap();
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let mut flipped = high.to_bytes().to_vec();
        flipped.push(lock[64] ^ 1);
        let witness = first.as_builder().lock(Some(Bytes::from(flipped)).pack()).build();
        let tx = with_witness(&tx, 1, witness.as_slice());
        verify_group(&tx, &[1], &bob_args()).unwrap();
    }

    #[test]
    fn changing_any_raw_tx_byte_breaks_every_group() {
        let signed = signed_two_group_tx();
        let raw = signed.raw().as_slice().to_vec();
        for position in 0..raw.len() {
            let mut tampered = raw.clone();
            tampered[position] ^= 0x01;
            // Some flips break the molecule layout; those are not a transaction at all.
            let Ok(raw) = packed::RawTransaction::from_slice(&tampered) else {
                continue;
            };
            let tx = signed.clone().as_builder().raw(raw).build();
            assert!(
                verify_group(&tx, &[0, 2], &alice_args()).is_err(),
                "raw byte {position}"
            );
            assert!(verify_group(&tx, &[1], &bob_args()).is_err(), "raw byte {position}");
        }
    }

    #[test]
    fn changing_a_covered_witness_breaks_only_its_groups() {
        let signed = signed_two_group_tx();
        // Witness 2 is Alice's second input; only her group covers it.
        let tampered = with_witness(&signed, 2, b"something else");
        assert_eq!(
            verify_group(&tampered, &[0, 2], &alice_args()),
            Err(DefaultLockError::PubkeyHashMismatch { input_index: 0 })
        );
        verify_group(&tampered, &[1], &bob_args()).unwrap();

        // Witness 3 has no input, so every group covers it.
        let tampered = with_witness(&signed, 3, b"beyond the inputs!");
        assert!(verify_group(&tampered, &[0, 2], &alice_args()).is_err());
        assert!(verify_group(&tampered, &[1], &bob_args()).is_err());

        // Changing Bob's signature leaves Alice's group valid.
        let mut bob_witness = signed.witnesses().get(1).unwrap().raw_data().to_vec();
        bob_witness[30] ^= 0x01;
        let tampered = with_witness(&signed, 1, &bob_witness);
        verify_group(&tampered, &[0, 2], &alice_args()).unwrap();
        assert!(verify_group(&tampered, &[1], &bob_args()).is_err());
    }

    #[test]
    fn flipping_any_covered_witness_byte_breaks_the_signature() {
        let signed = signed_two_group_tx();
        for index in [2usize, 3] {
            let original = signed.witnesses().get(index).unwrap().raw_data().to_vec();
            for position in 0..original.len() {
                let mut tampered = original.clone();
                tampered[position] ^= 0x80;
                let tx = with_witness(&signed, index, &tampered);
                assert!(
                    verify_group(&tx, &[0, 2], &alice_args()).is_err(),
                    "witness {index} byte {position}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_is_a_pubkey_hash_mismatch() {
        let tx = sign_group(&two_group_tx(), &[0, 2], &bob()).unwrap();
        assert_eq!(
            verify_group(&tx, &[0, 2], &alice_args()),
            Err(DefaultLockError::PubkeyHashMismatch { input_index: 0 })
        );
    }

    #[test]
    fn malformed_first_witness_is_named() {
        let tx = two_group_tx();
        let no_witnesses = tx
            .clone()
            .as_builder()
            .witnesses(Vec::<packed::Bytes>::new().pack())
            .build();
        assert_eq!(
            signing_message(&no_witnesses, &[0]),
            Err(DefaultLockError::MissingWitness { index: 0 })
        );
        assert_eq!(
            signing_message(&with_witness(&tx, 0, b""), &[0]),
            Err(DefaultLockError::WitnessNotWitnessArgs { index: 0 })
        );
        assert_eq!(
            verify_group(
                &with_witness(&tx, 0, empty_witness_args().as_slice()),
                &[0],
                &alice_args()
            ),
            Err(DefaultLockError::MissingLock { index: 0 })
        );
        let short_lock = packed::WitnessArgs::new_builder()
            .lock(Some(Bytes::from(vec![1u8; 64])).pack())
            .build();
        assert_eq!(
            verify_group(&with_witness(&tx, 0, short_lock.as_slice()), &[0], &alice_args()),
            Err(DefaultLockError::BadSignatureLength { index: 0, len: 64 })
        );
        // The all-zero placeholder is not a signature.
        assert_eq!(
            verify_group(&tx, &[0], &alice_args()),
            Err(DefaultLockError::SignatureDoesNotRecover { index: 0 })
        );
        assert_eq!(
            verify_group(&tx, &[0], &[0u8; 21]),
            Err(DefaultLockError::ArgsNotBlake160 { len: 21 })
        );
        assert_eq!(signing_message(&tx, &[]), Err(DefaultLockError::EmptyGroup));
        assert_eq!(
            signing_message(&tx, &[3]),
            Err(DefaultLockError::InputOutOfRange { index: 3, inputs: 3 })
        );
    }

    #[test]
    fn input_groups_follow_the_spent_cells_locks() {
        let tx = two_group_tx();
        let alice_lock = lock_script_for_key(alice().verifying_key());
        let bob_lock = lock_script_for_key(bob().verifying_key());
        let spent = |out_point: &packed::OutPoint| {
            let lock = if out_point.as_slice() == out_point_bytes(1, 1) {
                bob_lock.clone()
            } else {
                alice_lock.clone()
            };
            Some(output(100_0000_0000, lock))
        };
        let groups = input_groups(&tx, spent).unwrap();
        assert_eq!(
            groups,
            vec![
                InputGroup {
                    lock: alice_lock,
                    input_indices: vec![0, 2]
                },
                InputGroup {
                    lock: bob_lock,
                    input_indices: vec![1]
                },
            ]
        );
        assert_eq!(
            input_groups(&tx, |_| None),
            Err(DefaultLockError::UnknownInput { index: 0 })
        );
    }

    fn out_point_bytes(tx_byte: u8, index: u32) -> Vec<u8> {
        out_point(tx_byte, index).as_slice().to_vec()
    }

    /// The recovery as the `ecdsa` crate does it, verifying what it finds;
    /// a high s normalised first, as that verification refuses one.
    fn recovered_by_the_ecdsa_crate(message: &[u8; 32], signature: &[u8]) -> Option<VerifyingKey> {
        let mut compact = Signature::from_slice(&signature[..64]).ok()?;
        let mut recovery_id = RecoveryId::from_byte(signature[64])?;
        if let Some(low_s) = compact.normalize_s() {
            compact = low_s;
            recovery_id = RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced());
        }
        VerifyingKey::recover_from_prehash(message, &compact, recovery_id).ok()
    }

    /// Our recovery finds what the `ecdsa` crate's finds, key or none: for
    /// signatures keys made, their high-s twins and either recovery id, and
    /// for arbitrary bytes, an r just under the group order among them.
    #[test]
    fn recovery_agrees_with_the_ecdsa_crates_which_verifies_what_it_finds() {
        let mut found = 0;
        for n in 0u32..200 {
            let message = crate::crypto::blake2b_256(&n.to_le_bytes());
            let key = SigningKey::from_slice(&crate::crypto::hash_parts(&[b"key", &n.to_le_bytes()])).unwrap();
            let (signature, id) = key.sign_prehash_recoverable(&message).unwrap();
            let (r, s) = signature.split_scalars();
            let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
            let noise = crate::crypto::hash_parts(&[b"noise", &n.to_le_bytes()]);
            let mut near_order = [0xff; 32];
            near_order[..4].copy_from_slice(&noise[..4]);
            let mut candidates: Vec<Vec<u8>> = Vec::new();
            for (body, ids) in [(signature.to_bytes(), 0..4u8), (high.to_bytes(), 0..4u8)] {
                for id in ids {
                    candidates.push([&body[..], &[id]].concat());
                }
            }
            candidates.push([&noise[..], &noise[..], &[id.to_byte()]].concat());
            candidates.push([&near_order[..], &noise[..], &[(n % 4) as u8]].concat());
            candidates.push([&noise[..], &noise[..], &[4 + (n % 250) as u8]].concat());
            for candidate in &candidates {
                let ours = recover_signer(&message, candidate);
                assert_eq!(
                    ours,
                    recovered_by_the_ecdsa_crate(&message, candidate),
                    "{n}: {candidate:02x?}"
                );
                found += usize::from(ours.as_ref() == Some(key.verifying_key()));
            }
        }
        // Each signature and its high-s twin with the flipped id recover the key.
        assert_eq!(found, 400);
    }
}
