//! The stored record format (`docs/storage.md`): schema 3's binary layout
//! round-trips every record; legacy JSON records decode to exactly what they
//! did and are stored again in the binary layout; hostile bytes (truncated,
//! huge counts and lengths, bad tags, trailing bytes, a wrong magic, a newer
//! version) get a typed error naming the field, and never a panic (these
//! tests run with overflow checks on).

#![cfg(not(target_arch = "wasm32"))]

use ckb_types::core::{ScriptHashType, TransactionBuilder};
use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::{LiveCell, ResolvedCell};
use fiber_funding::flow::record::{
    AbortWatch, ChannelRecord, ChannelTerms, CloseProgress, Closure, CommitmentOnChain, ExternalFundingPersistState,
    FieldPath, PartyParams, PathStep, RecordFormatError, Role, ShutdownTerms, MAX_FIELD_BYTES, MAX_LIST_ITEMS,
    RECORD_MAGIC, SCHEMA_VERSION,
};
use fiber_funding::flow::state::CloseFlags;
use fiber_funding::primitives::{Hash256, PubNonceBytes, Pubkey};
use fiber_funding::tx::script::{HashType, ScriptTemplate};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct LegacyFixture {
    v1_from_idb_v1: Vec<Decoded>,
    v2: Vec<LegacyRecord>,
}

#[derive(Deserialize)]
struct Decoded {
    key: String,
    decoded: String,
}

#[derive(Deserialize)]
struct LegacyRecord {
    about: String,
    key: String,
    value: String,
    decoded: String,
}

#[derive(Deserialize)]
struct IdbV1 {
    channels: Vec<IdbV1Entry>,
}

#[derive(Deserialize)]
struct IdbV1Entry {
    key: String,
    value: String,
}

fn legacy() -> LegacyFixture {
    serde_json::from_str(include_str!("fixtures/records-legacy.json")).expect("the legacy fixture parses")
}

/// A record's `Debug` as the fixture froze it, before schema 5 added
/// `key_check` and schema 6 `restored_from_backup`: a record read from
/// JSON has neither, and only those absent fields are left out (a present
/// one stays, and the comparison fails).
fn as_frozen(record: &ChannelRecord) -> String {
    format!("{record:?}")
        .replacen(", key_check: None", "", 1)
        .replacen(", restored_from_backup: false", "", 1)
}

/// What the decoder of schema 2 made of each JSON record, field for field.
#[test]
fn every_legacy_json_record_decodes_to_what_it_did() {
    let fixture = legacy();
    assert_eq!(fixture.v2.len(), 4);
    for entry in &fixture.v2 {
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", entry.about));
        assert_eq!(as_frozen(&record), entry.decoded, "{}", entry.about);
    }

    let idb: IdbV1 = serde_json::from_str(include_str!("fixtures/idb-v1.json")).unwrap();
    assert_eq!(fixture.v1_from_idb_v1.len(), 3);
    for expected in &fixture.v1_from_idb_v1 {
        let entry = idb.channels.iter().find(|e| e.key == expected.key).unwrap();
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes()).unwrap();
        assert_eq!(record.schema_version, 1);
        assert_eq!(as_frozen(&record), expected.decoded, "{}", entry.key);
    }
}

/// Every legacy record (schemas 1 and 2) is stored again in schema 3's
/// layout as it is, and reads back the same; the richest of them is the
/// hostile tests' sample.
#[test]
fn legacy_records_round_trip_through_the_binary_layout() {
    for entry in &legacy().v2 {
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes()).unwrap();
        let bytes = record.encode();
        assert!(
            bytes.len() * 2 < entry.value.len(),
            "{}: {} bytes",
            entry.about,
            bytes.len()
        );
        assert_eq!(
            ChannelRecord::decode(&entry.key, &bytes).unwrap(),
            record,
            "{}",
            entry.about
        );
        assert_eq!(as_frozen(&ChannelRecord::read(&bytes).unwrap()), entry.decoded);
    }
    let idb: IdbV1 = serde_json::from_str(include_str!("fixtures/idb-v1.json")).unwrap();
    for expected in &legacy().v1_from_idb_v1 {
        let entry = idb.channels.iter().find(|e| e.key == expected.key).unwrap();
        let record = ChannelRecord::decode(&entry.key, entry.value.as_bytes()).unwrap();
        let reread = ChannelRecord::read(&record.encode()).unwrap();
        assert_eq!(reread.schema_version, 1, "kept until the upgrade runs");
        assert_eq!(as_frozen(&reread), expected.decoded);
    }
}

/// The made-up schema 2 record with every optional part present.
fn rich() -> ChannelRecord {
    let entry = &legacy().v2[1];
    assert!(entry.about.contains("every optional part"));
    ChannelRecord::decode(&entry.key, entry.value.as_bytes()).unwrap()
}

fn read(bytes: &[u8]) -> Result<ChannelRecord, RecordFormatError> {
    ChannelRecord::read(bytes)
}

fn at(bytes: &[u8], needle: &[u8]) -> usize {
    let found: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i..].starts_with(needle)).collect();
    assert_eq!(found.len(), 1, "the marker occurs exactly once");
    found[0]
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn path(names: &[&'static str]) -> FieldPath {
    FieldPath::of(names)
}

#[test]
fn the_prefix_is_the_magic_then_the_version() {
    let bytes = rich().encode();
    assert_eq!(bytes[..5], [0x89, b'F', b'F', b'R', 6]);
    assert_eq!(RECORD_MAGIC, [0x89, b'F', b'F', b'R']);
    assert_eq!(SCHEMA_VERSION, 6);

    for wrong in [0u8, b'{', b' ', b'\n', 0x88] {
        let mut bad = bytes.clone();
        bad[0] = wrong;
        let expected = if wrong == b'{' { "not JSON" } else { "neither JSON nor" };
        let error = read(&bad).unwrap_err();
        assert!(error.to_string().contains(expected), "{wrong:#x}: {error}");
    }
    let mut bad = bytes.clone();
    bad[3] = b'r';
    assert_eq!(read(&bad), Err(RecordFormatError::NotARecord));

    let mut newer = bytes.clone();
    for version in [7u8, 255] {
        newer[4] = version;
        let error = read(&newer).unwrap_err();
        assert_eq!(
            error,
            RecordFormatError::Newer {
                version: version.into()
            }
        );
        assert!(error.to_string().contains("newer than this module's 6"), "{error}");
    }
    let mut older = bytes.clone();
    older[4] = 2;
    assert_eq!(read(&older), Err(RecordFormatError::NoBinarySchema { version: 2 }));

    // The record's own schema_version, right after: at most this schema's.
    let mut future = bytes.clone();
    put_u32(&mut future, 5, 7);
    assert!(matches!(
        read(&future),
        Err(RecordFormatError::Invalid { field, .. }) if field == path(&["schema_version"])
    ));
}

#[test]
fn a_record_truncated_anywhere_is_refused_as_truncated() {
    for record in [
        rich(),
        ChannelRecord::decode(&legacy().v2[2].key, legacy().v2[2].value.as_bytes()).unwrap(),
    ] {
        let bytes = record.encode();
        for len in 0..bytes.len() {
            match read(&bytes[..len]) {
                Err(RecordFormatError::NotARecord) if len < 4 => {}
                Err(RecordFormatError::Truncated { needed, left, .. }) if len >= 4 => assert!(needed > left),
                other => panic!("truncated to {len} of {} bytes: {other:?}", bytes.len()),
            }
        }
    }
    let bytes = rich().encode();
    // The error names the field it ran out in.
    let tx = rich().funding_tx.unwrap();
    let tx_at = at(&bytes, tx.as_slice());
    let error = read(&bytes[..tx_at + 10]).unwrap_err();
    assert_eq!(
        error,
        RecordFormatError::Truncated {
            field: path(&["funding_tx"]),
            needed: tx.as_slice().len(),
            left: 10
        }
    );
    assert_eq!(
        error.to_string(),
        format!("truncated in funding_tx: needs {} bytes, 10 left", tx.as_slice().len())
    );
}

#[test]
fn bytes_after_the_record_are_refused() {
    let mut bytes = rich().encode();
    bytes.push(0);
    assert_eq!(read(&bytes), Err(RecordFormatError::TrailingBytes { count: 1 }));
    bytes.extend_from_slice(&rich().encode());
    assert!(matches!(read(&bytes), Err(RecordFormatError::TrailingBytes { .. })));
}

/// A count is held to its bound before anything is allocated.
#[test]
fn huge_counts_are_refused_before_allocating() {
    // `own_cells` (a count) comes right before `deadline_ms`.
    let mut record = rich();
    record.own_cells.clear();
    record.deadline_ms = 0x1122_3344_5566_7788;
    let bytes = record.encode();
    let count_at = at(&bytes, &record.deadline_ms.to_le_bytes()) - 4;
    for count in [MAX_LIST_ITEMS as u32 + 1, u32::MAX] {
        let mut hostile = bytes.clone();
        put_u32(&mut hostile, count_at, count);
        assert_eq!(
            read(&hostile),
            Err(RecordFormatError::TooMany {
                field: path(&["own_cells"]),
                count,
                max: MAX_LIST_ITEMS
            })
        );
    }
    // At the bound, the items are simply not there.
    let mut hostile = bytes.clone();
    put_u32(&mut hostile, count_at, MAX_LIST_ITEMS as u32);
    match read(&hostile) {
        Err(RecordFormatError::Truncated { field, .. }) => {
            assert_eq!(field.0[..2], [PathStep::Field("own_cells"), PathStep::Item(0)])
        }
        other => panic!("{other:?}"),
    }

    // Cell deps: bounded by what fits in a block.
    let mut record = rich();
    let deps = &mut record.external_funding.as_mut().unwrap().funding_lock_script_cell_deps;
    deps.clear();
    deps.push(
        packed::CellDep::new_builder()
            .out_point(packed::OutPoint::new_builder().tx_hash([0xee; 32].pack()).build())
            .build(),
    );
    let dep = deps[0].clone();
    let bytes = record.encode();
    let count_at = at(&bytes, dep.as_slice()) - 4;
    let mut hostile = bytes.clone();
    put_u32(&mut hostile, count_at, u32::MAX);
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::TooMany { field, .. })
            if field == path(&["external_funding", "funding_lock_script_cell_deps"])
    ));
}

#[test]
fn huge_lengths_are_refused_before_allocating() {
    let record = rich();
    let bytes = record.encode();
    let tx = record.funding_tx.as_ref().unwrap().as_slice();
    let len_at = at(&bytes, tx) - 4;
    for len in [MAX_FIELD_BYTES as u32 + 1, u32::MAX] {
        let mut hostile = bytes.clone();
        put_u32(&mut hostile, len_at, len);
        assert_eq!(
            read(&hostile),
            Err(RecordFormatError::TooLong {
                field: path(&["funding_tx"]),
                len,
                max: MAX_FIELD_BYTES
            })
        );
    }
    let mut hostile = bytes.clone();
    put_u32(&mut hostile, len_at, MAX_FIELD_BYTES as u32);
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::Truncated { field, needed: MAX_FIELD_BYTES, .. }) if field == path(&["funding_tx"])
    ));
    // A length that takes a byte of the next field: the tx is not molecule.
    let mut hostile = bytes.clone();
    put_u32(&mut hostile, len_at, tx.len() as u32 + 1);
    match read(&hostile) {
        Err(RecordFormatError::Invalid { field, reason }) => {
            assert_eq!(field, path(&["funding_tx"]));
            assert!(reason.contains("Transaction"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Every u32 of a record set to the largest value, in turn: never a panic,
/// never an allocation beyond the bounds (the test would run out of memory).
#[test]
fn every_word_set_huge_is_refused_or_read_without_panicking() {
    let bytes = rich().encode();
    for offset in 0..bytes.len() - 4 {
        let mut hostile = bytes.clone();
        put_u32(&mut hostile, offset, u32::MAX);
        let _ = read(&hostile);
        put_u32(&mut hostile, offset, MAX_FIELD_BYTES as u32);
        let _ = read(&hostile);
    }
}

#[test]
fn tags_outside_their_values_are_refused() {
    let bytes = rich().encode();
    // The fixed head: magic, version, schema_version, two ids, then the role.
    let role_at = 4 + 1 + 4 + 32 + 32;
    assert_eq!(bytes[role_at], 0, "the initiator");
    let mut hostile = bytes.clone();
    hostile[role_at] = 2;
    assert_eq!(
        read(&hostile),
        Err(RecordFormatError::BadTag {
            field: path(&["role"]),
            tag: 2,
            expected: "0 (initiator) or 1 (acceptor)"
        })
    );
    // Then the peer (33), created_at_ms (8), the seed (32); the terms:
    // chain hash (32), three u64s, the flags (1), the funding lock's code hash.
    let hash_type_at = role_at + 1 + 33 + 8 + 32 + 32 + 24 + 1 + 32;
    assert_eq!(bytes[hash_type_at], 4, "data2 is CKB's byte 4");
    let mut hostile = bytes.clone();
    hostile[hash_type_at] = 3;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 3, .. }) if field == path(&["terms", "funding_lock", "hash_type"])
    ));

    // `close` and `closed` come last but three: both absent, two 0 tags,
    // then schema 4's `commitment_signed_held`, schema 5's absent
    // `key_check` and schema 6's `restored_from_backup`.
    let mut record = rich();
    record.close = None;
    record.closed = None;
    assert_eq!(record.key_check, None, "schema 2 stored none");
    let bytes = record.encode();
    let close_at = bytes.len() - 5;
    assert_eq!(bytes[close_at..], [0, 0, 0, 0, 0]);
    let mut hostile = bytes.clone();
    hostile[close_at] = 7;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 7, .. }) if field == path(&["close"])
    ));
    let mut hostile = bytes.clone();
    hostile[close_at + 1] = 1;
    hostile.truncate(close_at + 2);
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::Truncated { field, .. }) if field == path(&["closed", "flags"])
    ));
    // The last byte but one, `commitment_signed_held`, is a bool.
    let mut hostile = bytes.clone();
    hostile[close_at + 2] = 2;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 2, .. }) if field == path(&["commitment_signed_held"])
    ));
    // The last but one, `key_check`, is an `Option`'s tag.
    let mut hostile = bytes.clone();
    hostile[close_at + 3] = 2;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 2, .. }) if field == path(&["key_check"])
    ));
    // The last, `restored_from_backup`, is a bool.
    let mut hostile = bytes.clone();
    hostile[close_at + 4] = 2;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 2, .. }) if field == path(&["restored_from_backup"])
    ));
}

#[test]
fn a_bool_is_0_or_1() {
    let mut record = rich();
    record.funding_inputs.clear();
    record.peer_inputs_checked = true;
    record.peer_tx_complete_nonce = Some(PubNonceBytes([0x3c; 66]));
    let bytes = record.encode();
    // peer_inputs_checked, an empty funding_inputs, then the nonce's tag.
    let bool_at = at(&bytes, &[0x3c; 66]) - 1 - 4 - 1;
    assert_eq!(bytes[bool_at], 1);
    let mut hostile = bytes.clone();
    hostile[bool_at] = 2;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 2, .. }) if field == path(&["peer_inputs_checked"])
    ));
}

/// While the flow waits for the user, the handed-out tx is the funding tx:
/// stored once, and the second copy refers to the first.
#[test]
fn the_unsigned_tx_is_stored_once_when_it_is_the_funding_tx() {
    let record = rich();
    let tx = record.funding_tx.clone().unwrap();
    let ext = record.external_funding.as_ref().unwrap();
    assert_eq!(ext.unsigned_funding_tx.as_ref().unwrap().as_slice(), tx.as_slice());
    let bytes = record.encode();
    at(&bytes, tx.as_slice()); // exactly once

    // A record that refers to a funding tx it does not hold is refused.
    let mut without = record.clone();
    without.funding_tx = None;
    let bytes = without.encode();
    let tx_at = at(&bytes, tx.as_slice());
    let tag_at = tx_at - 4 - 1;
    assert_eq!(bytes[tag_at], 1);
    let mut hostile = bytes[..tag_at].to_vec();
    hostile.push(2);
    hostile.extend_from_slice(&bytes[tx_at + tx.as_slice().len()..]);
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::Invalid { field, .. }) if field == path(&["external_funding", "unsigned_funding_tx"])
    ));
    let mut hostile = bytes.clone();
    hostile[tag_at] = 3;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::BadTag { field, tag: 3, .. })
            if field == path(&["external_funding", "unsigned_funding_tx"])
    ));
}

#[test]
fn entities_and_text_are_checked() {
    let mut record = rich();
    record.closed.as_mut().unwrap().reason = "MARKER-REASON".into();
    let bytes = record.encode();
    let reason_at = at(&bytes, b"MARKER-REASON");
    let mut hostile = bytes.clone();
    hostile[reason_at] = 0xff;
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::Invalid { field, reason }) if field == path(&["closed", "reason"]) && reason.contains("UTF-8")
    ));

    // A script whose molecule header disagrees with its length.
    let script = record.local.shutdown_script.as_slice().to_vec();
    let script_at = bytes.windows(script.len()).position(|w| w == script).unwrap();
    let mut hostile = bytes.clone();
    put_u32(&mut hostile, script_at, script.len() as u32 + 4);
    assert!(matches!(
        read(&hostile),
        Err(RecordFormatError::Invalid { field, .. }) if field == path(&["local", "shutdown_script"])
    ));
}

#[test]
fn the_consistency_rules_still_apply() {
    // Only an initiator has external funding state.
    let mut record = rich();
    record.role = Role::Acceptor;
    let error = read(&record.encode()).unwrap_err();
    assert!(matches!(error, RecordFormatError::Inconsistent(reason) if reason.contains("only the initiator")));
}

// ---- generated records -------------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn pubkey() -> impl Strategy<Value = Pubkey> {
    vec(any::<u8>(), 33).prop_map(|v| Pubkey(v.try_into().unwrap()))
}

fn nonce() -> impl Strategy<Value = PubNonceBytes> {
    vec(any::<u8>(), 66).prop_map(|v| PubNonceBytes(v.try_into().unwrap()))
}

fn hash_type() -> impl Strategy<Value = HashType> {
    prop_oneof![
        Just(HashType::Data),
        Just(HashType::Type),
        Just(HashType::Data1),
        Just(HashType::Data2)
    ]
}

fn script() -> impl Strategy<Value = packed::Script> {
    (any::<[u8; 32]>(), hash_type(), bytes(40)).prop_map(|(code_hash, hash_type, args)| {
        packed::Script::new_builder()
            .code_hash(code_hash.pack())
            .hash_type(ScriptHashType::from(hash_type))
            .args(args.pack())
            .build()
    })
}

fn out_point() -> impl Strategy<Value = packed::OutPoint> {
    (any::<[u8; 32]>(), any::<u32>()).prop_map(|(hash, index)| {
        packed::OutPoint::new_builder()
            .tx_hash(hash.pack())
            .index(index)
            .build()
    })
}

fn cell_dep() -> impl Strategy<Value = packed::CellDep> {
    (out_point(), 0u8..2).prop_map(|(out_point, dep_type)| {
        packed::CellDep::new_builder()
            .out_point(out_point)
            .dep_type(packed::Byte::new(dep_type))
            .build()
    })
}

fn cell_output() -> impl Strategy<Value = packed::CellOutput> {
    (any::<u64>(), script(), proptest::option::of(script())).prop_map(|(capacity, lock, type_)| {
        packed::CellOutput::new_builder()
            .capacity(capacity)
            .lock(lock)
            .type_(type_.pack())
            .build()
    })
}

fn transaction() -> impl Strategy<Value = packed::Transaction> {
    (
        vec(cell_dep(), 0..3),
        vec(hash(), 0..2),
        vec((out_point(), any::<u64>()), 0..3),
        vec((cell_output(), bytes(8)), 0..3),
        vec(bytes(90), 0..3),
    )
        .prop_map(|(deps, headers, inputs, outputs, witnesses)| {
            let mut builder = TransactionBuilder::default();
            for dep in deps {
                builder = builder.cell_dep(dep);
            }
            for header in headers {
                builder = builder.header_dep(header.0.pack());
            }
            for (out_point, since) in inputs {
                builder = builder.input(packed::CellInput::new(out_point, since));
            }
            for (output, data) in outputs {
                builder = builder.output(output).output_data(data.pack());
            }
            for witness in witnesses {
                builder = builder.witness(witness.pack());
            }
            builder.build().data()
        })
}

fn template() -> impl Strategy<Value = ScriptTemplate> {
    (hash(), hash_type(), vec(cell_dep(), 0..3)).prop_map(|(code_hash, hash_type, cell_deps)| ScriptTemplate {
        code_hash,
        hash_type,
        cell_deps,
    })
}

fn terms() -> impl Strategy<Value = ChannelTerms> {
    (
        hash(),
        any::<[u64; 3]>(),
        any::<u8>(),
        template(),
        template(),
        any::<u64>(),
    )
        .prop_map(
            |(chain_hash, [a, b, c], channel_flags, funding_lock, commitment_lock, timeout_ms)| ChannelTerms {
                chain_hash,
                funding_fee_rate: a,
                commitment_fee_rate: b,
                commitment_delay_epoch: c,
                channel_flags,
                funding_lock,
                commitment_lock,
                timeout_ms,
            },
        )
}

fn party() -> impl Strategy<Value = PartyParams> {
    (
        any::<[u64; 3]>(),
        script(),
        any::<u128>(),
        [pubkey(), pubkey(), pubkey(), pubkey()],
        [nonce(), nonce()],
    )
        .prop_map(|([funding, reserve, tlcs], shutdown_script, value, keys, nonces)| {
            let [funding_pubkey, tlc_basepoint, first, second] = keys;
            let [next_commitment_nonce, next_revocation_nonce] = nonces;
            PartyParams {
                funding_amount: funding,
                reserved_ckb_amount: reserve,
                shutdown_script,
                max_tlc_value_in_flight: value,
                max_tlc_number_in_flight: tlcs,
                funding_pubkey,
                tlc_basepoint,
                first_per_commitment_point: first,
                second_per_commitment_point: second,
                next_commitment_nonce,
                next_revocation_nonce,
            }
        })
}

fn live_cell() -> impl Strategy<Value = LiveCell> {
    (out_point(), cell_output(), bytes(20), any::<u64>()).prop_map(|(out_point, output, output_data, block_number)| {
        LiveCell {
            out_point,
            output,
            output_data,
            block_number,
        }
    })
}

fn resolved_cell() -> impl Strategy<Value = ResolvedCell> {
    (cell_output(), bytes(20)).prop_map(|(output, data)| ResolvedCell { output, data })
}

fn shutdown() -> impl Strategy<Value = ShutdownTerms> {
    (script(), any::<u64>()).prop_map(|(close_script, fee_rate)| ShutdownTerms { close_script, fee_rate })
}

fn close() -> impl Strategy<Value = CloseProgress> {
    (
        proptest::option::of(shutdown()),
        proptest::option::of(shutdown()),
        proptest::option::of(bytes(40)),
        proptest::option::of(any::<u64>()),
        proptest::option::of((any::<bool>(), hash(), any::<u64>(), any::<u64>())),
        proptest::option::of(hash()),
        proptest::option::of(transaction()),
    )
        .prop_map(
            |(local, remote, signature, force, on_chain, closing, claim_tx)| CloseProgress {
                local_shutdown: local,
                remote_shutdown: remote,
                peer_closing_signature: signature,
                force_closed_at_ms: force,
                commitment_on_chain: on_chain.map(|(holder_is_local, tx_hash, block_number, epoch)| {
                    CommitmentOnChain {
                        holder_is_local,
                        tx_hash,
                        block_number,
                        epoch,
                    }
                }),
                closing_on_chain: closing,
                claim_tx,
            },
        )
}

fn closure() -> impl Strategy<Value = Closure> {
    (
        any::<u32>(),
        ".{0,40}",
        any::<u64>(),
        proptest::option::of(proptest::option::of(any::<u64>())),
    )
        .prop_map(|(flags, reason, closed_at_ms, watch)| Closure {
            flags: CloseFlags(flags),
            reason,
            closed_at_ms,
            watch: watch.map(|tip| AbortWatch {
                conflict_seen_at_tip: tip,
            }),
        })
}

/// Where the handed-out tx comes from: none, the funding tx, or its own.
#[derive(Debug, Clone)]
enum Unsigned {
    None,
    FundingTx,
    Own(packed::Transaction),
}

fn external() -> impl Strategy<Value = (ExternalFundingPersistState, Unsigned)> {
    (
        script(),
        vec(cell_dep(), 0..3),
        prop_oneof![
            Just(Unsigned::None),
            Just(Unsigned::FundingTx),
            transaction().prop_map(Unsigned::Own)
        ],
        any::<u64>(),
        proptest::option::of(vec(bytes(90), 0..3)),
    )
        .prop_map(|(script, deps, unsigned, started_at_ms, witnesses)| {
            let state = ExternalFundingPersistState {
                funding_lock_script: script,
                funding_lock_script_cell_deps: deps,
                unsigned_funding_tx: None,
                started_at_ms,
                signed_funding_witnesses: witnesses,
            };
            (state, unsigned)
        })
}

prop_compose! {
    fn record()(
        head in (1..=SCHEMA_VERSION, hash(), hash(), any::<bool>(), pubkey(), any::<u64>(), hash(), any::<u64>()),
        key_check in proptest::option::of(hash()),
        parties in (terms(), party(), proptest::option::of(party())),
        cells in (vec(live_cell(), 0..3), proptest::option::of(transaction()), any::<bool>(), vec(resolved_cell(), 0..3)),
        peer in (
            proptest::option::of(nonce()),
            proptest::option::of(bytes(40)),
            proptest::option::of(vec(bytes(90), 0..3)),
            any::<[bool; 4]>(),
            proptest::option::of(nonce()),
        ),
        ending in (proptest::option::of(external()), proptest::option::of(close()), proptest::option::of(closure())),
    ) -> ChannelRecord {
        let (schema_version, channel_id, temporary_channel_id, acceptor, peer_id, created_at_ms, channel_seed, deadline_ms) = head;
        let (terms, local, remote) = parties;
        let (own_cells, funding_tx, peer_inputs_checked, funding_inputs) = cells;
        let (peer_tx_complete_nonce, peer_commitment_signature, peer_witnesses, [funding_confirmed, peer_channel_ready, commitment_signed_held, restored_from_backup], peer_next_commitment_nonce) = peer;
        let (external, close, closed) = ending;
        // What `check_consistency` asks of a stored record.
        let external_funding = external.map(|(mut state, unsigned)| {
            state.unsigned_funding_tx = match unsigned {
                Unsigned::None => None,
                Unsigned::FundingTx => funding_tx.clone(),
                Unsigned::Own(tx) => Some(tx),
            };
            state
        });
        let role = if acceptor && external_funding.is_none() { Role::Acceptor } else { Role::Initiator };
        ChannelRecord {
            schema_version,
            channel_id,
            temporary_channel_id,
            role,
            peer: peer_id,
            created_at_ms,
            channel_seed,
            key_check,
            terms,
            local,
            remote,
            own_cells,
            deadline_ms,
            funding_tx,
            peer_inputs_checked,
            funding_inputs,
            peer_tx_complete_nonce,
            peer_commitment_signature,
            peer_witnesses,
            funding_confirmed,
            peer_channel_ready,
            external_funding,
            peer_next_commitment_nonce,
            close,
            closed,
            commitment_signed_held,
            restored_from_backup,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_records_round_trip(record in record()) {
        let bytes = record.encode();
        prop_assert_eq!(read(&bytes), Ok(record.clone()));
        // The same bytes again: the layout has one encoding per record.
        prop_assert_eq!(read(&bytes).unwrap().encode(), bytes);
    }

    /// Damaged bytes (a byte changed, bytes cut out, bytes added) read as
    /// some record or a typed error; they never panic.
    #[test]
    fn damaged_records_never_panic(
        record in record(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = record.encode();
        for (index, byte, kind) in edits {
            let at = index.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => { bytes.remove(at); }
                _ => bytes.insert(at, byte),
            }
        }
        let _ = read(&bytes);
    }

    #[test]
    fn random_bytes_after_the_prefix_never_panic(body in vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![0x89, b'F', b'F', b'R', 3];
        bytes.extend_from_slice(&body);
        let _ = read(&bytes);
    }
}
