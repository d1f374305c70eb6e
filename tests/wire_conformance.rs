#![cfg(not(target_arch = "wasm32"))]
//! Our wire format against fiber-types 0.10.0-rc1's generated molecule code:
//! each message is built twice from the same values, once by us and once by
//! Fiber's builders, and the bytes must be identical in both directions.

use ckb_types::core::{DepType, TransactionBuilder};
use ckb_types::packed::{self, Byte, Byte32, BytesVec, CellDep, CellInput, CellOutput, OutPoint};
use ckb_types::prelude::{Builder, Entity, Pack, Reader};
use fiber_funding::primitives::{Hash256, PubNonceBytes, Pubkey};
use fiber_funding::wire::{
    AcceptChannel, ChannelReady, ClosingSigned, CommitmentSigned, FiberMessage, OpenChannel, ReestablishChannel,
    Shutdown, TxAbort, TxComplete, TxSignatures, TxUpdate, WireError, CHANNEL_FLAG_EXTERNAL_FUNDING,
    CHANNEL_FLAG_PUBLIC,
};
use fiber_types::gen::fiber as mol;

/// Distinct, recognisable bytes, so a field written in the wrong place shows.
fn pattern<const N: usize>(seed: u8) -> [u8; N] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8).wrapping_mul(7))
}

fn script(seed: u8, args_len: usize) -> packed::Script {
    packed::Script::new_builder()
        .code_hash(pattern::<32>(seed).pack())
        .hash_type(Byte::new(1))
        .args(vec![seed; args_len].pack())
        .build()
}

fn funding_tx() -> packed::Transaction {
    TransactionBuilder::default()
        .cell_dep(
            CellDep::new_builder()
                .out_point(OutPoint::new(pattern::<32>(1).pack(), 0))
                .dep_type(DepType::DepGroup)
                .build(),
        )
        .header_dep(pattern::<32>(2).pack())
        .input(CellInput::new(OutPoint::new(pattern::<32>(3).pack(), 1), 0))
        .input(CellInput::new(OutPoint::new(pattern::<32>(4).pack(), 2), 0))
        .output(
            CellOutput::new_builder()
                .capacity(62_000_000_000u64)
                .lock(script(5, 20))
                .type_(Some(script(6, 32)).pack())
                .build(),
        )
        .output(
            CellOutput::new_builder()
                .capacity(6_100_000_000u64)
                .lock(script(7, 20))
                .build(),
        )
        .output_data([0x10u8; 16].pack())
        .output_data(Vec::<u8>::new().pack())
        .witness([0x55u8; 85].pack())
        .witness(Vec::<u8>::new().pack())
        .build()
        .data()
}

fn byte32(bytes: &[u8; 32]) -> Byte32 {
    bytes.pack()
}

fn mol_pubkey(key: &Pubkey) -> mol::Pubkey {
    mol::Pubkey::from_slice(&key.0).unwrap()
}

fn mol_nonce(nonce: &PubNonceBytes) -> mol::PubNonce {
    mol::PubNonce::from_slice(&nonce.0).unwrap()
}

fn mol_nonce_opt(nonce: &Option<PubNonceBytes>) -> mol::PubNonceOpt {
    mol::PubNonceOpt::new_builder()
        .set(nonce.as_ref().map(mol_nonce))
        .build()
}

fn fiber_message_bytes(item: impl Into<mol::FiberMessageUnion>) -> Vec<u8> {
    mol::FiberMessage::new_builder().set(item).build().as_slice().to_vec()
}

/// The three-way check every message of the subset must pass.
fn assert_byte_exact(ours: FiberMessage, theirs: Vec<u8>) {
    let encoded = ours.encode();
    assert_eq!(encoded, theirs, "{}: our encoding differs", ours.name());
    assert_eq!(
        FiberMessage::decode(&theirs),
        Ok(ours.clone()),
        "{}: decoding Fiber's bytes",
        ours.name()
    );
    mol::FiberMessageReader::verify(&encoded, false)
        .unwrap_or_else(|e| panic!("{}: Fiber rejects our bytes: {e}", ours.name()));

    let mut trailing = theirs;
    trailing.push(0);
    assert!(
        FiberMessage::decode(&trailing).is_err(),
        "{}: trailing byte accepted",
        ours.name()
    );
}

fn open_channel(udt: Option<packed::Script>, nonce: Option<PubNonceBytes>) -> OpenChannel {
    OpenChannel {
        chain_hash: Hash256(pattern(10)),
        channel_id: Hash256(pattern(11)),
        funding_udt_type_script: udt,
        funding_amount: 0x0123_4567_89ab_cdef_0fed_cba9_8765_4321,
        shutdown_script: script(12, 20),
        reserved_ckb_amount: 9_800_000_000,
        funding_fee_rate: 1_000,
        commitment_fee_rate: 1_234,
        max_tlc_value_in_flight: u128::MAX - 5,
        max_tlc_number_in_flight: 125,
        commitment_delay_epoch: 0x2000_0000_0006_0000,
        funding_pubkey: Pubkey(pattern(13)),
        tlc_basepoint: Pubkey(pattern(14)),
        first_per_commitment_point: Pubkey(pattern(15)),
        second_per_commitment_point: Pubkey(pattern(16)),
        channel_announcement_nonce: nonce,
        next_commitment_nonce: PubNonceBytes(pattern(17)),
        next_revocation_nonce: PubNonceBytes(pattern(18)),
        channel_flags: CHANNEL_FLAG_PUBLIC | CHANNEL_FLAG_EXTERNAL_FUNDING,
    }
}

fn mol_open_channel(m: &OpenChannel) -> mol::OpenChannel {
    mol::OpenChannel::new_builder()
        .chain_hash(byte32(&m.chain_hash.0))
        .channel_id(byte32(&m.channel_id.0))
        .funding_udt_type_script(
            packed::ScriptOpt::new_builder()
                .set(m.funding_udt_type_script.clone())
                .build(),
        )
        .funding_amount(m.funding_amount.pack())
        .shutdown_script(m.shutdown_script.clone())
        .reserved_ckb_amount(m.reserved_ckb_amount.pack())
        .funding_fee_rate(m.funding_fee_rate.pack())
        .commitment_fee_rate(m.commitment_fee_rate.pack())
        .max_tlc_value_in_flight(m.max_tlc_value_in_flight.pack())
        .max_tlc_number_in_flight(m.max_tlc_number_in_flight.pack())
        .commitment_delay_epoch(m.commitment_delay_epoch.pack())
        .funding_pubkey(mol_pubkey(&m.funding_pubkey))
        .tlc_basepoint(mol_pubkey(&m.tlc_basepoint))
        .first_per_commitment_point(mol_pubkey(&m.first_per_commitment_point))
        .second_per_commitment_point(mol_pubkey(&m.second_per_commitment_point))
        .channel_announcement_nonce(mol_nonce_opt(&m.channel_announcement_nonce))
        .next_commitment_nonce(mol_nonce(&m.next_commitment_nonce))
        .next_revocation_nonce(mol_nonce(&m.next_revocation_nonce))
        .channel_flags(Byte::new(m.channel_flags))
        .build()
}

#[test]
fn open_channel_with_udt_and_announcement_nonce_matches_fiber() {
    let ours = open_channel(Some(script(20, 32)), Some(PubNonceBytes(pattern(21))));
    let theirs = fiber_message_bytes(mol_open_channel(&ours));
    assert_byte_exact(FiberMessage::OpenChannel(ours), theirs);
}

#[test]
fn open_channel_without_options_matches_fiber() {
    let ours = open_channel(None, None);
    let theirs = fiber_message_bytes(mol_open_channel(&ours));
    assert_byte_exact(FiberMessage::OpenChannel(ours), theirs);
}

fn accept_channel(nonce: Option<PubNonceBytes>) -> AcceptChannel {
    AcceptChannel {
        channel_id: Hash256(pattern(30)),
        funding_amount: 6_200_000_000,
        shutdown_script: script(31, 20),
        reserved_ckb_amount: 9_900_000_000,
        max_tlc_value_in_flight: 1 << 100,
        max_tlc_number_in_flight: 30,
        funding_pubkey: Pubkey(pattern(32)),
        tlc_basepoint: Pubkey(pattern(33)),
        first_per_commitment_point: Pubkey(pattern(34)),
        second_per_commitment_point: Pubkey(pattern(35)),
        channel_announcement_nonce: nonce,
        next_commitment_nonce: PubNonceBytes(pattern(36)),
        next_revocation_nonce: PubNonceBytes(pattern(37)),
    }
}

fn mol_accept_channel(m: &AcceptChannel) -> mol::AcceptChannel {
    mol::AcceptChannel::new_builder()
        .channel_id(byte32(&m.channel_id.0))
        .funding_amount(m.funding_amount.pack())
        .shutdown_script(m.shutdown_script.clone())
        .reserved_ckb_amount(m.reserved_ckb_amount.pack())
        .max_tlc_value_in_flight(m.max_tlc_value_in_flight.pack())
        .max_tlc_number_in_flight(m.max_tlc_number_in_flight.pack())
        .funding_pubkey(mol_pubkey(&m.funding_pubkey))
        .tlc_basepoint(mol_pubkey(&m.tlc_basepoint))
        .first_per_commitment_point(mol_pubkey(&m.first_per_commitment_point))
        .second_per_commitment_point(mol_pubkey(&m.second_per_commitment_point))
        .channel_announcement_nonce(mol_nonce_opt(&m.channel_announcement_nonce))
        .next_commitment_nonce(mol_nonce(&m.next_commitment_nonce))
        .next_revocation_nonce(mol_nonce(&m.next_revocation_nonce))
        .build()
}

#[test]
fn accept_channel_with_announcement_nonce_matches_fiber() {
    let ours = accept_channel(Some(PubNonceBytes(pattern(38))));
    let theirs = fiber_message_bytes(mol_accept_channel(&ours));
    assert_byte_exact(FiberMessage::AcceptChannel(ours), theirs);
}

#[test]
fn accept_channel_without_announcement_nonce_matches_fiber() {
    let ours = accept_channel(None);
    let theirs = fiber_message_bytes(mol_accept_channel(&ours));
    assert_byte_exact(FiberMessage::AcceptChannel(ours), theirs);
}

#[test]
fn tx_update_with_a_full_funding_tx_matches_fiber() {
    let ours = TxUpdate {
        channel_id: Hash256(pattern(40)),
        tx: funding_tx(),
    };
    let theirs = fiber_message_bytes(
        mol::TxUpdate::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .tx(ours.tx.clone())
            .build(),
    );
    assert_byte_exact(FiberMessage::TxUpdate(ours), theirs);
}

#[test]
fn tx_complete_matches_fiber() {
    let ours = TxComplete {
        channel_id: Hash256(pattern(50)),
        next_commitment_nonce: PubNonceBytes(pattern(51)),
    };
    let theirs = fiber_message_bytes(
        mol::TxComplete::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .next_commitment_nonce(mol_nonce(&ours.next_commitment_nonce))
            .build(),
    );
    assert_byte_exact(FiberMessage::TxComplete(ours), theirs);
}

#[test]
fn commitment_signed_matches_fiber() {
    let ours = CommitmentSigned {
        channel_id: Hash256(pattern(60)),
        funding_tx_partial_signature: pattern(61),
        next_commitment_nonce: PubNonceBytes(pattern(62)),
    };
    let theirs = fiber_message_bytes(
        mol::CommitmentSigned::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .funding_tx_partial_signature(byte32(&ours.funding_tx_partial_signature))
            .next_commitment_nonce(mol_nonce(&ours.next_commitment_nonce))
            .build(),
    );
    assert_byte_exact(FiberMessage::CommitmentSigned(ours), theirs);
}

fn mol_tx_signatures(m: &TxSignatures) -> mol::TxSignatures {
    let witnesses = BytesVec::new_builder()
        .set(m.witnesses.iter().map(|w| w.pack()).collect())
        .build();
    mol::TxSignatures::new_builder()
        .channel_id(byte32(&m.channel_id.0))
        .witnesses(witnesses)
        .build()
}

#[test]
fn tx_signatures_with_several_witnesses_matches_fiber() {
    let ours = TxSignatures {
        channel_id: Hash256(pattern(70)),
        witnesses: vec![vec![0x55; 85], vec![], vec![1, 2, 3], vec![0xee; 300]],
    };
    let theirs = fiber_message_bytes(mol_tx_signatures(&ours));
    assert_byte_exact(FiberMessage::TxSignatures(ours), theirs);
}

#[test]
fn tx_signatures_without_witnesses_matches_fiber() {
    let ours = TxSignatures {
        channel_id: Hash256(pattern(71)),
        witnesses: vec![],
    };
    let theirs = fiber_message_bytes(mol_tx_signatures(&ours));
    assert_byte_exact(FiberMessage::TxSignatures(ours), theirs);
}

#[test]
fn channel_ready_matches_fiber() {
    let ours = ChannelReady {
        channel_id: Hash256(pattern(80)),
    };
    let theirs = fiber_message_bytes(
        mol::ChannelReady::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .build(),
    );
    assert_byte_exact(FiberMessage::ChannelReady(ours), theirs);
}

#[test]
fn tx_abort_with_a_reason_matches_fiber() {
    let ours = TxAbort {
        channel_id: Hash256(pattern(90)),
        message: b"funding tx changed a field it must not change".to_vec(),
    };
    let theirs = fiber_message_bytes(
        mol::TxAbort::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .message(ours.message.pack())
            .build(),
    );
    assert_byte_exact(FiberMessage::TxAbort(ours), theirs);
}

#[test]
fn reestablish_channel_matches_fiber() {
    let ours = ReestablishChannel {
        channel_id: Hash256(pattern(100)),
        local_commitment_number: 3,
        remote_commitment_number: 0x0102_0304_0506_0708,
    };
    let theirs = fiber_message_bytes(
        mol::ReestablishChannel::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .local_commitment_number(ours.local_commitment_number.pack())
            .remote_commitment_number(ours.remote_commitment_number.pack())
            .build(),
    );
    assert_byte_exact(FiberMessage::ReestablishChannel(ours), theirs);
}

#[test]
fn shutdown_matches_fiber() {
    let ours = Shutdown {
        channel_id: Hash256(pattern(110)),
        fee_rate: 0x1122_3344,
        close_script: script(111, 22),
    };
    let theirs = fiber_message_bytes(
        mol::Shutdown::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .fee_rate(ours.fee_rate.pack())
            .close_script(ours.close_script.clone())
            .build(),
    );
    assert_byte_exact(FiberMessage::Shutdown(ours), theirs);
}

#[test]
fn closing_signed_matches_fiber() {
    let ours = ClosingSigned {
        channel_id: Hash256(pattern(120)),
        partial_signature: pattern(121),
    };
    let theirs = fiber_message_bytes(
        mol::ClosingSigned::new_builder()
            .channel_id(byte32(&ours.channel_id.0))
            .partial_signature(byte32(&ours.partial_signature))
            .build(),
    );
    assert_byte_exact(FiberMessage::ClosingSigned(ours), theirs);
}

#[test]
fn fiber_init_is_refused_as_unsupported() {
    let init = mol::Init::new_builder()
        .features([0b1010_1010u8, 1].pack())
        .chain_hash(byte32(&pattern(110)))
        .build();
    let bytes = fiber_message_bytes(init);
    mol::FiberMessageReader::verify(&bytes, false).unwrap();
    assert_eq!(
        FiberMessage::decode(&bytes),
        Err(WireError::UnsupportedMessage { id: 0, name: "Init" })
    );
}

#[test]
fn fiber_tx_init_rbf_is_refused_as_unsupported() {
    let rbf = mol::TxInitRBF::new_builder()
        .channel_id(byte32(&pattern(120)))
        .fee_rate(2_000u64.pack())
        .build();
    assert_eq!(
        FiberMessage::decode(&fiber_message_bytes(rbf)),
        Err(WireError::UnsupportedMessage {
            id: 7,
            name: "TxInitRBF"
        })
    );
}

#[test]
fn a_table_with_an_extra_field_is_refused_like_fiber_does() {
    // A future Fiber appending a field to ReestablishChannel: molecule's
    // compatible mode would accept it, strict mode (what Fiber uses) does not.
    let body = mol::ReestablishChannel::new_builder()
        .channel_id(byte32(&pattern(130)))
        .build();
    let fields = mol::ReestablishChannelReader::new_unchecked(body.as_slice());
    let mut parts: Vec<&[u8]> = vec![
        fields.channel_id().as_slice(),
        fields.local_commitment_number().as_slice(),
        fields.remote_commitment_number().as_slice(),
    ];
    parts.push(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let header = 4 * (parts.len() + 1);
    let total = header + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut bytes = 17u32.to_le_bytes().to_vec();
    bytes.extend((total as u32).to_le_bytes());
    let mut offset = header;
    for part in &parts {
        bytes.extend((offset as u32).to_le_bytes());
        offset += part.len();
    }
    for part in &parts {
        bytes.extend_from_slice(part);
    }

    assert!(mol::FiberMessageReader::verify(&bytes, true).is_ok());
    assert!(mol::FiberMessageReader::verify(&bytes, false).is_err());
    assert_eq!(
        FiberMessage::decode(&bytes),
        Err(WireError::WrongFieldCount {
            what: "ReestablishChannel",
            expected: 3,
            got: 4
        })
    );
}

#[test]
fn channel_flag_bits_match_fiber() {
    assert_eq!(CHANNEL_FLAG_PUBLIC, fiber_types::ChannelFlags::PUBLIC.bits());
    assert_eq!(
        CHANNEL_FLAG_EXTERNAL_FUNDING,
        fiber_types::ChannelFlags::EXTERNAL_FUNDING.bits()
    );
}
