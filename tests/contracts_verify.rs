#![cfg(not(target_arch = "wasm32"))]
//! Fiber's own contracts (`third_party/fiber-contracts`) and CKB's secp256k1
//! default lock (the system script binary of `ckb-system-scripts`), run in
//! ckb-vm by `ckb-testtool` on every kind of transaction this module builds,
//! as upstream Fiber's tests do: a channel's money is only safe if these
//! scripts accept what we sign. Each transaction is also changed by one byte
//! (signature, key, args) and must then be refused, so the tests can fail.

mod common;

use ckb_types::bytes::Bytes;
use ckb_types::packed;
use ckb_types::prelude::*;
use common::*;
use fiber_funding::chain::simulated::ScriptRunner;
use fiber_funding::chain::simulated_client::simulated_cell;
use fiber_funding::native::script_vm::{self, CkbVm};
use fiber_funding::primitives::ChannelId;
use fiber_funding::tx::default_lock::{self, SIGHASH_ALL_TYPE_HASH};
use fiber_funding::tx::fee::capacity_of;
use fiber_funding::tx::parts::TxParts;

/// Runs `tx`'s scripts in ckb-vm with the runner the World's chain uses
/// (CKB's default cycle limit). Its cells are where the chain has them, spent
/// or not; `extra` gives outputs of txs that never reached the chain.
fn verify(
    world: &World,
    tx: &packed::Transaction,
    extra: &[(packed::OutPoint, packed::CellOutput)],
) -> Result<u64, String> {
    CkbVm::default().run(tx, &|out_point| {
        if let Some((_, output)) = extra.iter().find(|(op, _)| op == out_point) {
            return Some((output.clone(), Bytes::new()));
        }
        simulated_cell(&world.chain, out_point).map(|cell| (cell.output, cell.data.into()))
    })
}

/// The World's default lock is CKB's real binary behind the chain's dep
/// group, its code cell carrying the genesis type id that makes its type
/// hash the default lock's well-known code hash.
fn assert_real_default_lock(world: &World) {
    let group = world.chain.default_lock_cell_dep().out_point();
    let group_data = simulated_cell(&world.chain, &group).unwrap().data;
    let members = packed::OutPointVec::from_slice(&group_data).unwrap();
    let code = simulated_cell(&world.chain, &members.get(0).unwrap()).unwrap();
    let data = simulated_cell(&world.chain, &members.get(1).unwrap()).unwrap();
    assert_eq!(code.data, script_vm::secp256k1_blake160_sighash_all());
    assert_eq!(data.data, script_vm::secp256k1_data());
    let genesis_type = code.output.type_().to_opt().expect("a type id");
    assert_eq!(
        genesis_type.calc_script_hash().as_slice(),
        SIGHASH_ALL_TYPE_HASH,
        "the genesis type id gives the default lock's code hash"
    );
}

/// A channel opened to `ChannelReady` with Fiber's contracts in the chain.
fn ready_channel() -> (World, ChannelId, packed::Transaction) {
    let mut world = World::new(Setup {
        fiber_contracts: true,
        ..Setup::default()
    });
    world.open(1000).unwrap();
    world.run();
    let hash = assert_channel_ready(&world);
    let funding_tx = world.chain.transaction(&hash.0).unwrap();
    assert_real_default_lock(&world);
    // The chain ran the funding tx's scripts before it took it.
    assert!(world.chain.cycles(&hash.0).is_some_and(|cycles| cycles > 0));
    let id = world.initiator().channels()[0].channel_id;
    (world, id, funding_tx)
}

fn with_witness_byte_flipped(tx: &packed::Transaction, witness: usize, from_end: usize) -> packed::Transaction {
    let mut parts = TxParts::from_tx(tx);
    let bytes = &mut parts.witnesses[witness];
    let at = bytes.len() - 1 - from_end;
    bytes[at] ^= 1;
    parts.build()
}

#[test]
fn the_funding_tx_passes_both_default_locks_and_a_changed_signature_is_refused() {
    let (world, _, funding_tx) = ready_channel();
    let cycles = verify(&world, &funding_tx, &[]).expect("the funding tx verifies");
    println!("funding tx (two default-lock groups): {cycles} cycles");
    for (index, witness) in funding_tx.witnesses().into_iter().enumerate() {
        if witness.raw_data().is_empty() {
            continue;
        }
        let bad = with_witness_byte_flipped(&funding_tx, index, 10);
        let error = verify(&world, &bad, &[]).expect_err("a changed signature is refused");
        assert!(
            error.contains("ValidationFailure") || error.contains("error code"),
            "{error}"
        );
    }
}

/// CKB's secp256k1 lock reads each witness it hashes into a 32 KiB buffer:
/// a witness of 32,768 bytes passes, one byte more is refused. The module's
/// own check of a default-lock group (`verify_group`, run on the peer's and
/// the wallet's signatures before ours leave) must agree on both.
#[test]
fn the_default_lock_reads_witnesses_up_to_32_kib_and_verify_group_agrees() {
    let (world, _, funding_tx) = ready_channel();
    let peer_inputs = world.acceptor_input_indices(&funding_tx);
    let peer_lock = default_lock::lock_script_for_key(world.acceptor_key.verifying_key());
    // A WitnessArgs of a 65-byte lock and an input_type of n bytes is 89 + n bytes.
    for (witness_len, accepted) in [(32_768, true), (32_769, false)] {
        let padded = with_parts(&funding_tx, |p| {
            p.witnesses[peer_inputs[0]] = witness_with_input_type(vec![7; witness_len - 89]);
        });
        let signed = default_lock::sign_group(&padded, &peer_inputs, &world.acceptor_key).unwrap();
        assert_eq!(
            signed.witnesses().get(peer_inputs[0]).unwrap().raw_data().len(),
            witness_len
        );
        let on_chain = verify(&world, &signed, &[]);
        let ours = default_lock::verify_group(&signed, &peer_inputs, &peer_lock.args().raw_data());
        assert_eq!(on_chain.is_ok(), accepted, "{witness_len} bytes: {on_chain:?}");
        assert_eq!(ours.is_ok(), accepted, "{witness_len} bytes: {ours:?}");
    }
}

#[test]
fn each_sides_signed_commitment_passes_the_funding_lock_and_a_changed_byte_is_refused() {
    let (world, id, funding_tx) = ready_channel();
    for (name, node) in [("initiator", INITIATOR), ("acceptor", ACCEPTOR)] {
        let commitment = world.nodes[node]
            .node
            .signed_own_commitment(&id)
            .expect("a signed commitment");
        assert_eq!(commitment.raw().cell_deps().len(), 2, "funding-lock and auth deps");
        assert_eq!(commitment.witnesses().get(0).unwrap().raw_data().len(), 112);
        let cycles = verify(&world, &commitment, &[]).unwrap_or_else(|e| panic!("{name}'s commitment: {e}"));
        println!("{name}'s commitment tx (funding-lock): {cycles} cycles");
        // Signature, then x-only key, one byte each.
        for from_end in [5, 64 + 5] {
            let bad = with_witness_byte_flipped(&commitment, 0, from_end);
            assert!(
                verify(&world, &bad, &[]).is_err(),
                "{name}: a changed witness byte was accepted"
            );
        }
        // A changed output (the args the signature covers).
        let mut parts = TxParts::from_tx(&commitment);
        let lock = parts.outputs[0].lock();
        let mut args = lock.args().raw_data().to_vec();
        args[30] ^= 1;
        parts.outputs[0] = parts.outputs[0]
            .clone()
            .as_builder()
            .lock(lock.as_builder().args(args.pack()).build())
            .build();
        assert!(
            verify(&world, &parts.build(), &[]).is_err(),
            "{name}: changed args were accepted"
        );
        // The fee pays at least CKB's minimum relay rate, deps and witness included.
        let fee = capacity_of(&funding_tx.raw().outputs().get(0).unwrap())
            - capacity_of(&commitment.raw().outputs().get(0).unwrap());
        assert!(
            fee * 1000 >= (commitment.as_slice().len() as u64 + 4) * 1000,
            "{name}: fee {fee} too low"
        );
    }
}

#[test]
fn the_holders_settlement_after_the_delay_passes_the_commitment_lock_and_before_it_is_refused() {
    let (world, id, _) = ready_channel();
    for (name, node) in [("initiator", INITIATOR), ("acceptor", ACCEPTOR)] {
        let commitment = world.nodes[node].node.signed_own_commitment(&id).unwrap();
        let cell = commitment.raw().outputs().get(0).unwrap();
        let out_point = packed::OutPoint::new_builder()
            .tx_hash(commitment.calc_tx_hash())
            .index(0u32)
            .build();
        let claim = world.nodes[node]
            .node
            .claim_commitment_share(&id, true, out_point.clone(), cell.clone(), None, 1_000)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let extra = [(out_point.clone(), cell.clone())];
        let cycles = verify(&world, &claim, &extra).unwrap_or_else(|e| panic!("{name}'s settlement: {e}"));
        println!("{name}'s settlement of its own commitment (commitment-lock, 0xFE): {cycles} cycles");

        // The share reaches the holder's shutdown script (less the fee).
        let record = world.nodes[node].node.record(&id).unwrap();
        let payout = claim.raw().outputs().into_iter().last().unwrap();
        assert_eq!(payout.lock(), record.local.shutdown_script, "{name}");
        let share = record.local.funding_amount + record.local.reserved_ckb_amount;
        assert!(
            share - capacity_of(&payout) < CKB / 100,
            "{name}: paid {} of {share}",
            capacity_of(&payout)
        );

        // Before the delay (since 0), with a changed signature, or claiming
        // the other slot with our key: refused.
        let mut early = TxParts::from_tx(&claim);
        early.inputs[0] = early.inputs[0].clone().as_builder().since(0u64).build();
        assert!(
            verify(&world, &early.build(), &extra).is_err(),
            "{name}: settled before the delay"
        );
        let bad = with_witness_byte_flipped(&claim, 0, 3);
        assert!(
            verify(&world, &bad, &extra).is_err(),
            "{name}: a changed signature was accepted"
        );
    }
}

#[test]
fn the_counterparty_claims_its_share_of_the_holders_commitment_after_the_holder_settled() {
    let (world, id, _) = ready_channel();
    // The acceptor's commitment goes on chain; the acceptor settles first,
    // then the initiator claims what is left for it.
    let commitment = world.nodes[ACCEPTOR].node.signed_own_commitment(&id).unwrap();
    let cell = commitment.raw().outputs().get(0).unwrap();
    let out_point = packed::OutPoint::new_builder()
        .tx_hash(commitment.calc_tx_hash())
        .index(0u32)
        .build();
    let holder_claim = world.nodes[ACCEPTOR]
        .node
        .claim_commitment_share(&id, true, out_point.clone(), cell.clone(), None, 1_000)
        .unwrap();
    let remaining = holder_claim.raw().outputs().get(0).unwrap();
    let remaining_at = packed::OutPoint::new_builder()
        .tx_hash(holder_claim.calc_tx_hash())
        .index(0u32)
        .build();
    let mut script = world.nodes[INITIATOR]
        .node
        .commitment_settlement_script(&id, false)
        .unwrap();
    script[1..37].fill(0);
    let claim = world.nodes[INITIATOR]
        .node
        .claim_commitment_share(&id, false, remaining_at.clone(), remaining.clone(), Some(script), 1_000)
        .unwrap();
    let since: u64 = claim.raw().inputs().get(0).unwrap().since().unpack();
    assert_eq!(since, 0, "no delay the second time");
    let cycles = verify(&world, &claim, &[(remaining_at, remaining)]).expect("the second settlement verifies");
    println!("the counterparty's settlement after the holder's (commitment-lock, 0xFF): {cycles} cycles");
}

#[test]
fn the_cooperative_closing_tx_passes_the_funding_lock_and_a_changed_byte_is_refused() {
    let (mut world, id, funding_tx) = ready_channel();
    let now = world.now_ms;
    let actions = world.nodes[INITIATOR]
        .node
        .shutdown_channel(&id, None, None, now)
        .unwrap();
    world.execute(INITIATOR, actions);
    world.run();
    let funding_hash = funding_tx.calc_tx_hash();
    let closing = world
        .broadcasts
        .iter()
        .map(|(_, tx)| tx.clone())
        .find(|tx| tx.raw().inputs().get(0).unwrap().previous_output().tx_hash() == funding_hash)
        .expect("a closing tx was broadcast");
    assert_eq!(closing.raw().outputs().len(), 2);

    let cycles = verify(&world, &closing, &[]).unwrap_or_else(|e| panic!("the closing tx: {e}"));
    println!("cooperative closing tx (funding-lock): {cycles} cycles");

    // Signature, then x-only key, one byte each.
    for from_end in [5, 64 + 5] {
        let bad = with_witness_byte_flipped(&closing, 0, from_end);
        assert!(
            verify(&world, &bad, &[]).is_err(),
            "a changed witness byte was accepted"
        );
    }
    // One CKB moved from one side's output to the other's.
    let mut parts = TxParts::from_tx(&closing);
    let moved = |output: &packed::CellOutput, delta: i64| {
        let capacity = capacity_of(output).checked_add_signed(delta * CKB as i64).unwrap();
        output.clone().as_builder().capacity(capacity).build()
    };
    parts.outputs[0] = moved(&parts.outputs[0], 1);
    parts.outputs[1] = moved(&parts.outputs[1], -1);
    assert!(
        verify(&world, &parts.build(), &[]).is_err(),
        "a changed split was accepted"
    );
}
