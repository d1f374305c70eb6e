#![cfg(not(target_arch = "wasm32"))]
//! `FiberMessage::decode` reads bytes from an untrusted peer: it must never
//! panic, must accept exactly what Fiber's own (strict) molecule verifier
//! accepts, and whatever it accepts must re-encode to the very same bytes.

use ckb_types::core::TransactionBuilder;
use ckb_types::packed::{self, Byte, CellDep, CellInput, CellOutput, OutPoint};
use ckb_types::prelude::{Builder, Entity, Pack, Reader};
use fiber_funding::primitives::{Hash256, PubNonceBytes, Pubkey};
use fiber_funding::wire::{
    AcceptChannel, ChannelReady, CommitmentSigned, FiberMessage, OpenChannel, ReestablishChannel, TxAbort, TxComplete,
    TxSignatures, TxUpdate, WireError,
};
use fiber_types::gen::fiber as mol;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Don't write regression files into the tree; a failure prints its seed.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The properties every input must satisfy, whatever it is.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = FiberMessage::decode(bytes);
    let fiber_accepts = mol::FiberMessageReader::verify(bytes, false).is_ok();
    match &ours {
        Ok(message) => {
            prop_assert_eq!(message.encode(), bytes, "accepted bytes must be canonical");
            prop_assert!(fiber_accepts, "we accept {} but Fiber rejects", message.name());
        }
        // Bodies outside the subset are deliberately not read.
        Err(WireError::UnsupportedMessage { .. }) => {}
        Err(error) => {
            prop_assert!(!fiber_accepts, "we reject ({error}) but Fiber accepts");
            prop_assert!(!error.to_string().is_empty());
        }
    }
    Ok(())
}

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn pubkey() -> impl Strategy<Value = Pubkey> {
    vec(any::<u8>(), 33).prop_map(|b| Pubkey::from_slice(&b).unwrap())
}

fn nonce() -> impl Strategy<Value = PubNonceBytes> {
    vec(any::<u8>(), 66).prop_map(|b| PubNonceBytes::from_slice(&b).unwrap())
}

fn script() -> impl Strategy<Value = packed::Script> {
    (any::<[u8; 32]>(), any::<u8>(), vec(any::<u8>(), 0..48)).prop_map(|(code_hash, hash_type, args)| {
        packed::Script::new_builder()
            .code_hash(code_hash.pack())
            .hash_type(Byte::new(hash_type))
            .args(args.pack())
            .build()
    })
}

fn out_point() -> impl Strategy<Value = OutPoint> {
    (any::<[u8; 32]>(), any::<u32>()).prop_map(|(tx_hash, index)| OutPoint::new(tx_hash.pack(), index))
}

fn transaction() -> impl Strategy<Value = packed::Transaction> {
    (
        vec((out_point(), 0u8..3), 0..3),
        vec(any::<[u8; 32]>(), 0..2),
        vec((out_point(), any::<u64>()), 0..4),
        vec((any::<u64>(), script(), option::of(script())), 0..3),
        vec(vec(any::<u8>(), 0..40), 0..3),
        vec(vec(any::<u8>(), 0..120), 0..4),
    )
        .prop_map(|(cell_deps, header_deps, inputs, outputs, outputs_data, witnesses)| {
            let mut tx = TransactionBuilder::default();
            for (out_point, dep_type) in cell_deps {
                tx = tx.cell_dep(
                    CellDep::new_builder()
                        .out_point(out_point)
                        .dep_type(Byte::new(dep_type))
                        .build(),
                );
            }
            for header in header_deps {
                tx = tx.header_dep(header.pack());
            }
            for (previous_output, since) in inputs {
                tx = tx.input(CellInput::new(previous_output, since));
            }
            for (capacity, lock, type_) in outputs {
                tx = tx.output(
                    CellOutput::new_builder()
                        .capacity(capacity)
                        .lock(lock)
                        .type_(type_.pack())
                        .build(),
                );
            }
            for data in outputs_data {
                tx = tx.output_data(data.pack());
            }
            for witness in witnesses {
                tx = tx.witness(witness.pack());
            }
            tx.build().data()
        })
}

fn open_channel() -> impl Strategy<Value = FiberMessage> {
    (
        (hash(), hash(), option::of(script()), any::<u128>(), script()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u128>()),
        (any::<u64>(), any::<u64>()),
        (pubkey(), pubkey(), pubkey(), pubkey()),
        (option::of(nonce()), nonce(), nonce(), any::<u8>()),
    )
        .prop_map(|(a, b, c, d, e)| {
            FiberMessage::OpenChannel(OpenChannel {
                chain_hash: a.0,
                channel_id: a.1,
                funding_udt_type_script: a.2,
                funding_amount: a.3,
                shutdown_script: a.4,
                reserved_ckb_amount: b.0,
                funding_fee_rate: b.1,
                commitment_fee_rate: b.2,
                max_tlc_value_in_flight: b.3,
                max_tlc_number_in_flight: c.0,
                commitment_delay_epoch: c.1,
                funding_pubkey: d.0,
                tlc_basepoint: d.1,
                first_per_commitment_point: d.2,
                second_per_commitment_point: d.3,
                channel_announcement_nonce: e.0,
                next_commitment_nonce: e.1,
                next_revocation_nonce: e.2,
                channel_flags: e.3,
            })
        })
}

fn accept_channel() -> impl Strategy<Value = FiberMessage> {
    (
        (hash(), any::<u128>(), script(), any::<u64>()),
        (any::<u128>(), any::<u64>()),
        (pubkey(), pubkey(), pubkey(), pubkey()),
        (option::of(nonce()), nonce(), nonce()),
    )
        .prop_map(|(a, b, c, d)| {
            FiberMessage::AcceptChannel(AcceptChannel {
                channel_id: a.0,
                funding_amount: a.1,
                shutdown_script: a.2,
                reserved_ckb_amount: a.3,
                max_tlc_value_in_flight: b.0,
                max_tlc_number_in_flight: b.1,
                funding_pubkey: c.0,
                tlc_basepoint: c.1,
                first_per_commitment_point: c.2,
                second_per_commitment_point: c.3,
                channel_announcement_nonce: d.0,
                next_commitment_nonce: d.1,
                next_revocation_nonce: d.2,
            })
        })
}

fn message() -> impl Strategy<Value = FiberMessage> {
    prop_oneof![
        open_channel(),
        accept_channel(),
        (hash(), transaction()).prop_map(|(channel_id, tx)| FiberMessage::TxUpdate(TxUpdate { channel_id, tx })),
        (hash(), nonce()).prop_map(|(channel_id, next_commitment_nonce)| {
            FiberMessage::TxComplete(TxComplete {
                channel_id,
                next_commitment_nonce,
            })
        }),
        (hash(), any::<[u8; 32]>(), nonce()).prop_map(
            |(channel_id, funding_tx_partial_signature, next_commitment_nonce)| {
                FiberMessage::CommitmentSigned(CommitmentSigned {
                    channel_id,
                    funding_tx_partial_signature,
                    next_commitment_nonce,
                })
            }
        ),
        (hash(), vec(vec(any::<u8>(), 0..100), 0..5))
            .prop_map(|(channel_id, witnesses)| { FiberMessage::TxSignatures(TxSignatures { channel_id, witnesses }) }),
        hash().prop_map(|channel_id| FiberMessage::ChannelReady(ChannelReady { channel_id })),
        (hash(), vec(any::<u8>(), 0..100))
            .prop_map(|(channel_id, message)| FiberMessage::TxAbort(TxAbort { channel_id, message })),
        (hash(), any::<u64>(), any::<u64>()).prop_map(
            |(channel_id, local_commitment_number, remote_commitment_number)| {
                FiberMessage::ReestablishChannel(ReestablishChannel {
                    channel_id,
                    local_commitment_number,
                    remote_commitment_number,
                })
            }
        ),
    ]
}

/// Raw bytes, or a random body behind a real union id so the body decoders
/// see garbage too (random leading bytes are almost never a valid id).
fn peer_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..4096),
        (0u32..20, vec(any::<u8>(), 0..2048)).prop_map(|(id, body)| {
            let mut bytes = id.to_le_bytes().to_vec();
            bytes.extend(body);
            bytes
        }),
    ]
}

/// Values that sit on the edges of size and offset checks.
fn interesting_u32(len: usize) -> impl Strategy<Value = u32> {
    let len = len as u32;
    prop_oneof![
        Just(0),
        Just(4),
        Just(8),
        Just(len.wrapping_sub(1)),
        Just(len),
        Just(len + 1),
        Just(u32::MAX),
        Just(u32::MAX - 3),
        any::<u32>(),
    ]
}

/// A valid encoding with one byte changed, or one u32 word overwritten with an
/// edge value (sizes and offsets are words, so this reaches the header checks).
fn mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
    message().prop_flat_map(|message| {
        let bytes = message.encode();
        let len = bytes.len();
        prop_oneof![
            (0..len, 1u8..=255).prop_map({
                let bytes = bytes.clone();
                move |(at, flip)| {
                    let mut mutated = bytes.clone();
                    mutated[at] ^= flip;
                    mutated
                }
            }),
            (0..len.saturating_sub(3), interesting_u32(len)).prop_map(move |(at, word)| {
                let mut mutated = bytes.clone();
                mutated[at..at + 4].copy_from_slice(&word.to_le_bytes());
                mutated
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn arbitrary_peer_bytes_never_panic_and_agree_with_fiber(bytes in peer_bytes()) {
        check_decode(&bytes)?;
    }

    #[test]
    fn mutated_encodings_never_panic_and_agree_with_fiber(bytes in mutated_encoding()) {
        check_decode(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn generated_messages_round_trip_and_fiber_accepts_them(message in message()) {
        let bytes = message.encode();
        prop_assert_eq!(FiberMessage::decode(&bytes), Ok(message.clone()));
        prop_assert!(
            mol::FiberMessageReader::verify(&bytes, false).is_ok(),
            "Fiber rejects our {}",
            message.name()
        );
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn every_truncation_of_a_valid_encoding_is_rejected(message in message()) {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            prop_assert!(FiberMessage::decode(prefix).is_err(), "prefix of {len} bytes accepted");
            check_decode(prefix)?;
        }
    }
}
