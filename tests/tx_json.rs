//! Transactions in both JSON shapes a wallet may hand us: Fiber's snake_case
//! (`unsigned_funding_tx` as the RPC returns it) and JoyID's camelCase.

#[path = "common/camel.rs"]
mod camel;
use camel::camelize;
use ckb_types::prelude::*;
use fiber_funding::json::Value;
use fiber_funding::tx::json::{parse_transaction, transaction_to_json};
use fiber_funding::tx::parts::tx_hash;
use fiber_funding::tx::validate::first_raw_difference;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fiber_funding::json::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn fiber_snake_case_round_trips_exactly() {
    let json = fixture("fiber_unsigned_funding_tx.json");
    let tx = parse_transaction(&json).unwrap();
    assert_eq!(tx.raw().inputs().len(), 1);
    assert_eq!(tx.raw().outputs().len(), 2);
    assert_eq!(transaction_to_json(&tx), json);
}

#[test]
fn joyid_camel_case_is_the_same_raw_tx_with_signed_witnesses() {
    let unsigned = parse_transaction(&fixture("fiber_unsigned_funding_tx.json")).unwrap();
    let signed = parse_transaction(&fixture("joyid_signed_funding_tx.json")).unwrap();
    assert_eq!(first_raw_difference(&unsigned.raw(), &signed.raw()), None);
    assert_eq!(tx_hash(&unsigned), tx_hash(&signed));
    assert_ne!(unsigned.witnesses().as_slice(), signed.witnesses().as_slice());
}

#[test]
fn any_tx_reads_the_same_from_either_shape() {
    let tx = parse_transaction(&fixture("fiber_unsigned_funding_tx.json")).unwrap();
    let camel = camelize(&transaction_to_json(&tx));
    assert!(camel.get("cellDeps").is_some());
    assert_eq!(parse_transaction(&camel).unwrap().as_slice(), tx.as_slice());
}

#[test]
fn errors_name_the_bad_field() {
    let mut json = fixture("fiber_unsigned_funding_tx.json");
    json["inputs"][0]["previous_output"]["tx_hash"] = Value::from("0x1234");
    let error = parse_transaction(&json).unwrap_err();
    assert_eq!(
        error.to_string(),
        "inputs[0].previous_output.tx_hash: expected 32 bytes, got 2"
    );

    let mut json = fixture("joyid_signed_funding_tx.json");
    json["outputs"][1]["lock"]["hashType"] = Value::from("typo");
    let error = parse_transaction(&json).unwrap_err();
    assert!(error.to_string().starts_with("outputs[1].lock.hash_type:"), "{error}");

    let mut json = fixture("fiber_unsigned_funding_tx.json");
    json.as_object_mut().unwrap().remove("outputs_data");
    assert!(parse_transaction(&json)
        .unwrap_err()
        .to_string()
        .contains("missing field \"outputs_data\""));

    assert!(parse_transaction(&Value::from("0x00")).is_err());
}

/// The hand-written JSON is exactly what `ckb-jsonrpc-types` (CKB's own
/// types, kept out of the wasm) writes, for every field kind.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_hand_written_json_is_ckbs_own() {
    use ckb_types::core::{DepType, ScriptHashType};
    use ckb_types::packed;
    let script = |hash_type: ScriptHashType, args: &[u8]| {
        packed::Script::new_builder()
            .code_hash([0x5a; 32].pack())
            .hash_type(hash_type)
            .args(args.to_vec().pack())
            .build()
    };
    let bytes = |data: &[u8]| -> packed::Bytes { data.to_vec().pack() };
    let out_point = |index: u32| {
        packed::OutPoint::new_builder()
            .tx_hash([0x0b; 32].pack())
            .index(index)
            .build()
    };
    let raw = packed::RawTransaction::new_builder()
        .version(0u32)
        .cell_deps(
            vec![
                packed::CellDep::new_builder()
                    .out_point(out_point(0))
                    .dep_type(DepType::DepGroup)
                    .build(),
                packed::CellDep::new_builder()
                    .out_point(out_point(u32::MAX))
                    .dep_type(DepType::Code)
                    .build(),
            ]
            .pack(),
        )
        .header_deps(vec![packed::Byte32::from_slice(&[0xcd; 32]).unwrap()].pack())
        .inputs(
            vec![
                packed::CellInput::new_builder()
                    .previous_output(out_point(7))
                    .since(0u64)
                    .build(),
                packed::CellInput::new_builder()
                    .previous_output(out_point(16))
                    .since(u64::MAX)
                    .build(),
            ]
            .pack(),
        )
        .outputs(
            vec![
                packed::CellOutput::new_builder()
                    .capacity(0u64)
                    .lock(script(ScriptHashType::Type, &[]))
                    .build(),
                packed::CellOutput::new_builder()
                    .capacity(123_456_789_000u64)
                    .lock(script(ScriptHashType::Data2, &[1, 2, 3]))
                    .type_(Some(script(ScriptHashType::Data1, &[0; 57])).pack())
                    .build(),
                packed::CellOutput::new_builder()
                    .capacity(1u64)
                    .lock(script(ScriptHashType::Data, &[0xff]))
                    .build(),
            ]
            .pack(),
        )
        .outputs_data(vec![bytes(&[]), bytes(&[0xab; 40]), bytes(&[0])].pack())
        .build();
    let tx = packed::Transaction::new_builder()
        .raw(raw)
        .witnesses(vec![bytes(&[]), bytes(&[0x55; 85])].pack())
        .build();
    let ckbs = serde_json::to_value(ckb_jsonrpc_types::Transaction::from(tx.clone())).unwrap();
    assert_eq!(transaction_to_json(&tx), Value::from(ckbs));
    assert_same_text(&tx);
    for fixture_name in ["fiber_unsigned_funding_tx.json", "joyid_signed_funding_tx.json"] {
        let tx = parse_transaction(&fixture(fixture_name)).unwrap();
        let ckbs = serde_json::to_value(ckb_jsonrpc_types::Transaction::from(tx.clone())).unwrap();
        assert_eq!(transaction_to_json(&tx), Value::from(ckbs), "{fixture_name}");
        assert_same_text(&tx);
    }
    // A hash type CKB does not know is written as its byte, by both.
    let odd = tx
        .as_advanced_builder()
        .set_outputs(vec![packed::CellOutput::new_builder()
            .lock(script(ScriptHashType::Type, &[]).as_builder().hash_type(5u8).build())
            .build()])
        .build()
        .data();
    assert_same_text(&odd);
    assert!(fiber_funding::tx::json::transaction_json_text(&odd).contains(r#""hash_type":"0x05""#));
    assert_same_text(&packed::Transaction::default());
}

/// The one-pass text writer writes what serde writes, byte for byte.
#[cfg(not(target_arch = "wasm32"))]
fn assert_same_text(tx: &ckb_types::packed::Transaction) {
    use fiber_funding::tx::json::{transaction_json_text, TransactionJson};
    let by_serde = serde_json::to_string(&TransactionJson(tx.clone())).unwrap();
    assert_eq!(transaction_json_text(tx), by_serde);
}
