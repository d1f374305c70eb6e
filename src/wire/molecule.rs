//! Molecule framing: the few layouts Fiber's messages are built from.
//!
//! Every decoder accepts exactly what molecule 0.9's strict verifier
//! (`verify(bytes, false)`) accepts, so a message we take is a message Fiber
//! takes, and the other way round. Lengths and offsets come from the peer and
//! `usize` is 32 bits in the browser, so arithmetic on them never overflows.
//!
//! The CKB types from `blockchain.mol` (`Script`, `ScriptOpt`, `Transaction`)
//! come out as `ckb_types::packed` values, verified by `packed`'s `from_slice`.
//! Their layout is walked here first only because `packed`'s verifier is not
//! overflow-safe on wasm32 (see `check_transaction_layout`).

use ckb_types::packed;
use ckb_types::prelude::Entity;

use super::WireError;

/// Every molecule size, offset, count and union id is a little-endian u32.
const NUMBER_SIZE: usize = 4;

fn pack_number(value: usize) -> [u8; NUMBER_SIZE] {
    u32::try_from(value)
        .expect("molecule sizes are u32; no Fiber message comes near 4 GiB")
        .to_le_bytes()
}

/// Reads the u32 at `at`, or says how many bytes were missing.
fn read_number(what: &'static str, bytes: &[u8], at: usize) -> Result<u32, WireError> {
    let end = at.saturating_add(NUMBER_SIZE);
    bytes
        .get(at..end)
        .and_then(|word| word.first_chunk::<NUMBER_SIZE>())
        .map(|word| u32::from_le_bytes(*word))
        .ok_or(WireError::Truncated {
            what,
            needed: end,
            got: bytes.len(),
        })
}

fn read_size(what: &'static str, bytes: &[u8], at: usize) -> Result<usize, WireError> {
    // u32 always fits: the crate only targets 32- and 64-bit platforms.
    read_number(what, bytes, at).map(|n| n as usize)
}

/// A declared length must match the bytes present: fewer is truncation,
/// more is trailing garbage.
fn exact_len(what: &'static str, declared: usize, got: usize) -> Result<(), WireError> {
    if declared == got {
        Ok(())
    } else {
        Err(length_mismatch(what, declared, got))
    }
}

fn length_mismatch(what: &'static str, declared: usize, got: usize) -> WireError {
    if declared > got {
        WireError::Truncated {
            what,
            needed: declared,
            got,
        }
    } else {
        WireError::WrongLength {
            what,
            expected: declared,
            got,
        }
    }
}

/// Encodes a `dynvec`: total size, one offset per item, then the items.
pub(crate) fn encode_dynvec<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let header_size = NUMBER_SIZE * (items.len() + 1);
    let total_size = header_size + items.iter().map(|i| i.as_ref().len()).sum::<usize>();
    let mut out = Vec::with_capacity(total_size);
    out.extend_from_slice(&pack_number(total_size));
    let mut offset = header_size;
    for item in items {
        out.extend_from_slice(&pack_number(offset));
        offset += item.as_ref().len();
    }
    for item in items {
        out.extend_from_slice(item.as_ref());
    }
    out
}

/// Splits a `dynvec` into its items, checking the header the way molecule does:
/// total size equal to the length, first offset right after the offsets,
/// offsets never decreasing.
pub(crate) fn decode_dynvec<'a>(what: &'static str, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, WireError> {
    let total_size = read_size(what, bytes, 0)?;
    exact_len(what, total_size, bytes.len())?;
    if total_size == NUMBER_SIZE {
        return Ok(Vec::new());
    }
    let header_size = read_size(what, bytes, NUMBER_SIZE)?;
    if header_size % NUMBER_SIZE != 0 || header_size < 2 * NUMBER_SIZE {
        return Err(WireError::BadHeader {
            what,
            reason: format!("first offset {header_size} is not a multiple of 4 of at least 8"),
        });
    }
    if header_size > total_size {
        return Err(WireError::Truncated {
            what,
            needed: header_size,
            got: total_size,
        });
    }
    let item_count = header_size / NUMBER_SIZE - 1;
    let mut bounds = Vec::with_capacity(item_count + 1);
    for index in 0..item_count {
        bounds.push(read_size(what, bytes, NUMBER_SIZE * (index + 1))?);
    }
    bounds.push(total_size);
    let mut items = Vec::with_capacity(item_count);
    for (index, pair) in bounds.windows(2).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        let item = bytes.get(start..end).ok_or_else(|| WireError::BadHeader {
            what,
            reason: format!("item {index} spans {start}..{end}: offsets out of order"),
        })?;
        items.push(item);
    }
    Ok(items)
}

/// Encodes a `table`: laid out exactly like a `dynvec` of its fields.
pub(crate) fn encode_table(fields: &[&[u8]]) -> Vec<u8> {
    encode_dynvec(fields)
}

/// Splits a `table` into exactly `N` fields; extra fields are an error
/// because Fiber reads its messages in strict (non-compatible) mode.
pub(crate) fn decode_table<'a, const N: usize>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<[&'a [u8]; N], WireError> {
    let fields = decode_dynvec(what, bytes)?;
    let got = fields.len();
    fields
        .try_into()
        .map_err(|_| WireError::WrongFieldCount { what, expected: N, got })
}

/// Encodes `Bytes`, a `fixvec<byte>`: item count, then the bytes.
pub(crate) fn encode_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NUMBER_SIZE + bytes.len());
    out.extend_from_slice(&pack_number(bytes.len()));
    out.extend_from_slice(bytes);
    out
}

pub(crate) fn decode_bytes<'a>(what: &'static str, bytes: &'a [u8]) -> Result<&'a [u8], WireError> {
    decode_fixvec(what, bytes, 1)
}

/// Checks a `fixvec` of `item_size`-byte items and returns the items' bytes.
fn decode_fixvec<'a>(what: &'static str, bytes: &'a [u8], item_size: usize) -> Result<&'a [u8], WireError> {
    let count = read_size(what, bytes, 0)?;
    // Checked: `4 + item_size * count` overflows a 32-bit usize for hostile counts.
    let declared = count
        .checked_mul(item_size)
        .and_then(|size| size.checked_add(NUMBER_SIZE))
        .ok_or_else(|| WireError::BadHeader {
            what,
            reason: format!("{count} items of {item_size} bytes cannot fit in memory"),
        })?;
    exact_len(what, declared, bytes.len())?;
    Ok(&bytes[NUMBER_SIZE..])
}

/// Encodes `BytesVec`, a `dynvec<Bytes>`.
pub(crate) fn encode_bytes_vec(list: &[Vec<u8>]) -> Vec<u8> {
    let items: Vec<Vec<u8>> = list.iter().map(|bytes| encode_bytes(bytes)).collect();
    encode_dynvec(&items)
}

pub(crate) fn decode_bytes_vec(what: &'static str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    decode_dynvec(what, bytes)?
        .into_iter()
        .map(|item| decode_bytes(what, item).map(<[u8]>::to_vec))
        .collect()
}

fn check_bytes_vec(what: &'static str, bytes: &[u8]) -> Result<(), WireError> {
    for item in decode_dynvec(what, bytes)? {
        decode_bytes(what, item)?;
    }
    Ok(())
}

/// An `option` is empty for `None` and the bare inner bytes for `Some`.
pub(crate) fn encode_option(inner: Option<&[u8]>) -> &[u8] {
    inner.unwrap_or_default()
}

pub(crate) fn decode_option(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

/// Encodes a `union`: the item's position in the declaration, then the item.
pub(crate) fn encode_union(item_id: u32, item: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NUMBER_SIZE + item.len());
    out.extend_from_slice(&item_id.to_le_bytes());
    out.extend_from_slice(item);
    out
}

/// Splits a `union` into its item id and item bytes; the caller knows which ids exist.
pub(crate) fn decode_union<'a>(what: &'static str, bytes: &'a [u8]) -> Result<(u32, &'a [u8]), WireError> {
    let item_id = read_number(what, bytes, 0)?;
    Ok((item_id, &bytes[NUMBER_SIZE..]))
}

/// Reads an `array` (`Byte32`, `Pubkey`, `Uint64`, ...): exactly `N` bytes.
pub(crate) fn decode_array<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| length_mismatch(what, N, bytes.len()))
}

/// Reads a molecule `struct`: fixed-size fields back to back, nothing after.
pub(crate) struct StructFields<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> StructFields<'a> {
    /// Checks the whole struct's size up front, so a short or long struct is
    /// reported as such rather than as one bad field.
    pub(crate) fn new(what: &'static str, bytes: &'a [u8], size: usize) -> Result<Self, WireError> {
        exact_len(what, size, bytes.len())?;
        Ok(Self { what, rest: bytes })
    }

    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (field, rest) = self.rest.split_first_chunk::<N>().ok_or(WireError::Truncated {
            what: self.what,
            needed: N,
            got: self.rest.len(),
        })?;
        self.rest = rest;
        Ok(*field)
    }

    /// Ends the read; leftover bytes mean the declared size and the fields disagree.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        exact_len(self.what, 0, self.rest.len())
    }
}

// ckb-gen-types' fixvec verifiers compute `4 + item_size * count` in `usize`.
// On wasm32 a hostile count overflows that: a panic in debug builds, and in
// release a wrap that accepts e.g. a `Byte32Vec` claiming 2^27 + 1 items, whose
// reader then slices out of bounds. So the layout is walked here first with
// checked arithmetic, and `packed`'s verifier only ever sees sane counts.

fn check_script_layout(bytes: &[u8]) -> Result<(), WireError> {
    let [code_hash, hash_type, args] = decode_table::<3>("Script", bytes)?;
    decode_array::<32>("Script.code_hash", code_hash)?;
    decode_array::<1>("Script.hash_type", hash_type)?;
    decode_bytes("Script.args", args)?;
    Ok(())
}

fn check_transaction_layout(bytes: &[u8]) -> Result<(), WireError> {
    let [raw, witnesses] = decode_table::<2>("Transaction", bytes)?;
    let [version, cell_deps, header_deps, inputs, outputs, outputs_data] = decode_table::<6>("Transaction.raw", raw)?;
    decode_array::<4>("Transaction.raw.version", version)?;
    decode_fixvec("Transaction.raw.cell_deps", cell_deps, packed::CellDep::TOTAL_SIZE)?;
    decode_fixvec("Transaction.raw.header_deps", header_deps, packed::Byte32::TOTAL_SIZE)?;
    decode_fixvec("Transaction.raw.inputs", inputs, packed::CellInput::TOTAL_SIZE)?;
    for output in decode_dynvec("Transaction.raw.outputs", outputs)? {
        let [capacity, lock, type_] = decode_table::<3>("CellOutput", output)?;
        decode_array::<8>("CellOutput.capacity", capacity)?;
        check_script_layout(lock)?;
        if let Some(type_) = decode_option(type_) {
            check_script_layout(type_)?;
        }
    }
    check_bytes_vec("Transaction.raw.outputs_data", outputs_data)?;
    check_bytes_vec("Transaction.witnesses", witnesses)?;
    Ok(())
}

fn invalid(what: &'static str, error: ::molecule::error::VerificationError) -> WireError {
    WireError::InvalidField {
        what,
        reason: error.to_string(),
    }
}

pub(crate) fn decode_script(what: &'static str, bytes: &[u8]) -> Result<packed::Script, WireError> {
    check_script_layout(bytes)?;
    packed::Script::from_slice(bytes).map_err(|e| invalid(what, e))
}

pub(crate) fn decode_transaction(what: &'static str, bytes: &[u8]) -> Result<packed::Transaction, WireError> {
    check_transaction_layout(bytes)?;
    packed::Transaction::from_slice(bytes).map_err(|e| invalid(what, e))
}

/// CKB entities that can be read from untrusted bytes without tripping
/// `packed`'s size check, which overflows on 32-bit targets (wasm32): the
/// layout is checked here, with checked arithmetic, before `from_slice`.
pub trait CheckedDecode: Entity {
    fn check_layout(bytes: &[u8]) -> Result<(), WireError>;
}

impl CheckedDecode for packed::Script {
    fn check_layout(bytes: &[u8]) -> Result<(), WireError> {
        check_script_layout(bytes)
    }
}

impl CheckedDecode for packed::Transaction {
    fn check_layout(bytes: &[u8]) -> Result<(), WireError> {
        check_transaction_layout(bytes)
    }
}

impl CheckedDecode for packed::CellOutput {
    fn check_layout(bytes: &[u8]) -> Result<(), WireError> {
        let [capacity, lock, type_] = decode_table::<3>("CellOutput", bytes)?;
        decode_array::<8>("CellOutput.capacity", capacity)?;
        check_script_layout(lock)?;
        decode_option(type_).map(check_script_layout).transpose()?;
        Ok(())
    }
}

impl CheckedDecode for packed::WitnessArgs {
    fn check_layout(bytes: &[u8]) -> Result<(), WireError> {
        for field in decode_table::<3>("WitnessArgs", bytes)? {
            decode_option(field)
                .map(|b| decode_bytes("WitnessArgs field", b))
                .transpose()?;
        }
        Ok(())
    }
}

// Fixed-size structs: `packed` checks their exact length, nothing to overflow.
impl CheckedDecode for packed::CellDep {
    fn check_layout(_: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
}

impl CheckedDecode for packed::OutPoint {
    fn check_layout(_: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
}

/// Reads a CKB entity from untrusted bytes; never panics.
pub fn decode_checked<T: CheckedDecode>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    T::check_layout(bytes)?;
    T::from_slice(bytes).map_err(|e| invalid(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_types::prelude::{Builder, Pack};

    #[test]
    fn empty_table_is_only_its_size() {
        assert_eq!(encode_table(&[]), 4u32.to_le_bytes());
        assert_eq!(decode_table::<0>("Empty", &[4, 0, 0, 0]), Ok([]));
    }

    #[test]
    fn empty_table_rejects_fields() {
        let one_field = encode_table(&[&[7]]);
        assert_eq!(
            decode_table::<0>("Empty", &one_field),
            Err(WireError::WrongFieldCount {
                what: "Empty",
                expected: 0,
                got: 1
            })
        );
    }

    #[test]
    fn table_with_fields_rejects_the_empty_encoding() {
        assert_eq!(
            decode_table::<2>("Pair", &[4, 0, 0, 0]),
            Err(WireError::WrongFieldCount {
                what: "Pair",
                expected: 2,
                got: 0
            })
        );
    }

    #[test]
    fn table_round_trips_fields_of_any_size() {
        let encoded = encode_table(&[&[1, 2, 3], &[], &[4]]);
        assert_eq!(
            encoded,
            [20, 0, 0, 0, 16, 0, 0, 0, 19, 0, 0, 0, 19, 0, 0, 0, 1, 2, 3, 4]
        );
        assert_eq!(
            decode_table::<3>("Triple", &encoded),
            Ok([&[1u8, 2, 3][..], &[][..], &[4][..]])
        );
    }

    #[test]
    fn table_rejects_offsets_out_of_order() {
        // Second field claims to start before the first one does.
        let bytes = [14, 0, 0, 0, 12, 0, 0, 0, 10, 0, 0, 0, 1, 2];
        assert!(matches!(
            decode_table::<2>("Pair", &bytes),
            Err(WireError::BadHeader { what: "Pair", .. })
        ));
    }

    #[test]
    fn table_rejects_an_offset_past_the_end() {
        let bytes = [14, 0, 0, 0, 12, 0, 0, 0, 15, 0, 0, 0, 1, 2];
        assert!(matches!(
            decode_table::<2>("Pair", &bytes),
            Err(WireError::BadHeader { what: "Pair", .. })
        ));
    }

    #[test]
    fn table_rejects_a_first_offset_that_is_not_the_header_end() {
        for first in [0u8, 4, 9, 200] {
            let bytes = [12, 0, 0, 0, first, 0, 0, 0, 1, 2, 3, 4];
            assert!(decode_table::<1>("One", &bytes).is_err(), "first offset {first}");
        }
    }

    #[test]
    fn table_rejects_size_mismatch() {
        let mut encoded = encode_table(&[&[1, 2]]);
        encoded.push(0);
        assert_eq!(
            decode_table::<1>("One", &encoded),
            Err(WireError::WrongLength {
                what: "One",
                expected: 10,
                got: 11
            })
        );
        assert_eq!(
            decode_table::<1>("One", &encoded[..9]),
            Err(WireError::Truncated {
                what: "One",
                needed: 10,
                got: 9
            })
        );
        assert_eq!(
            decode_table::<1>("One", &[1, 0]),
            Err(WireError::Truncated {
                what: "One",
                needed: 4,
                got: 2
            })
        );
    }

    #[test]
    fn bytes_match_ckb_packed_bytes() {
        for payload in [&b""[..], b"x", b"witness bytes"] {
            let packed: packed::Bytes = payload.pack();
            assert_eq!(encode_bytes(payload), packed.as_slice());
            assert_eq!(decode_bytes("Bytes", packed.as_slice()), Ok(payload));
        }
    }

    #[test]
    fn bytes_reject_a_count_that_disagrees_with_the_length() {
        assert!(matches!(
            decode_bytes("Bytes", &[3, 0, 0, 0, 1, 2]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode_bytes("Bytes", &[1, 0, 0, 0, 1, 2]),
            Err(WireError::WrongLength { .. })
        ));
        // A count near u32::MAX must not overflow `4 + count` on 32-bit targets.
        assert!(matches!(
            decode_bytes("Bytes", &[0xff, 0xff, 0xff, 0xff, 1]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn fixvec_counts_that_overflow_are_rejected() {
        // On wasm32, 32 * (2^27 + 1) wraps to 32: ckb's verifier would accept this.
        let mut byte32_vec = ((1u32 << 27) + 1).to_le_bytes().to_vec();
        byte32_vec.extend_from_slice(&[7; 32]);
        assert!(decode_fixvec("Byte32Vec", &byte32_vec, 32).is_err());
        assert!(matches!(
            decode_fixvec("Huge", &[0xff, 0xff, 0xff, 0xff], usize::MAX / 2),
            Err(WireError::BadHeader { what: "Huge", .. })
        ));
    }

    #[test]
    fn transaction_with_a_wrapping_header_deps_count_is_rejected() {
        let header_dep: packed::Byte32 = [9u8; 32].pack();
        let tx = ckb_types::core::TransactionBuilder::default()
            .header_dep(header_dep)
            .build()
            .data();
        assert!(decode_transaction("tx", tx.as_slice()).is_ok());
        let mut bytes = tx.as_slice().to_vec();
        let count_at = bytes
            .windows(4 + 32)
            .position(|w| w[..4] == 1u32.to_le_bytes() && w[4..] == [9; 32])
            .unwrap();
        bytes[count_at..count_at + 4].copy_from_slice(&((1u32 << 27) + 1).to_le_bytes());
        assert_eq!(
            decode_transaction("tx", &bytes).unwrap_err(),
            WireError::Truncated {
                what: "Transaction.raw.header_deps",
                needed: 4 + 32 * ((1 << 27) + 1),
                got: 36
            }
        );
    }

    #[test]
    fn bytes_vec_matches_ckb_packed_bytes_vec() {
        for list in [vec![], vec![vec![]], vec![vec![1, 2], vec![], vec![3; 70]]] {
            let packed = packed::BytesVec::new_builder()
                .set(list.iter().map(|b| b.pack()).collect())
                .build();
            assert_eq!(encode_bytes_vec(&list), packed.as_slice());
            assert_eq!(decode_bytes_vec("BytesVec", packed.as_slice()), Ok(list));
        }
    }

    #[test]
    fn option_is_empty_or_the_inner_bytes() {
        assert_eq!(encode_option(None), b"");
        assert_eq!(encode_option(Some(&[1, 2])), [1, 2]);
        assert_eq!(decode_option(&[]), None);
        assert_eq!(decode_option(&[9]), Some(&[9u8][..]));
    }

    #[test]
    fn union_is_the_item_id_then_the_item() {
        let encoded = encode_union(17, &[5, 6]);
        assert_eq!(encoded, [17, 0, 0, 0, 5, 6]);
        assert_eq!(decode_union("U", &encoded), Ok((17, &[5u8, 6][..])));
        assert!(matches!(
            decode_union("U", &[1, 0, 0]),
            Err(WireError::Truncated { needed: 4, .. })
        ));
    }

    #[test]
    fn struct_fields_need_the_exact_size() {
        let bytes = [1, 2, 3, 4, 5];
        let mut fields = StructFields::new("S", &bytes, 5).unwrap();
        assert_eq!(fields.take::<2>(), Ok([1, 2]));
        assert_eq!(fields.take::<3>(), Ok([3, 4, 5]));
        assert_eq!(fields.finish(), Ok(()));
        assert!(StructFields::new("S", &bytes, 4).is_err());
        assert!(StructFields::new("S", &bytes, 6).is_err());
    }

    #[test]
    fn arrays_need_the_exact_size() {
        assert_eq!(decode_array::<2>("A", &[1, 2]), Ok([1, 2]));
        assert!(decode_array::<2>("A", &[1]).is_err());
        assert!(decode_array::<2>("A", &[1, 2, 3]).is_err());
    }

    #[test]
    fn checked_decode_refuses_hostile_counts_in_witness_args() {
        // A WitnessArgs whose `lock` claims 0xffffffff bytes: `packed`'s own
        // size check overflows on wasm32; ours must just say no.
        let mut lock = Vec::new();
        lock.extend_from_slice(&u32::MAX.to_le_bytes());
        lock.extend_from_slice(&[0; 8]);
        let hostile = encode_table(&[&lock, &[], &[]]);
        assert!(decode_checked::<packed::WitnessArgs>("witness", &hostile).is_err());
        let good = packed::WitnessArgs::new_builder().build();
        assert!(decode_checked::<packed::WitnessArgs>("witness", good.as_slice()).is_ok());
    }
}
