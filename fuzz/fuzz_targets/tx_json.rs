//! The transaction JSON readers (`src/tx/json.rs`): what a wallet returns
//! (JoyID's camelCase, Fiber's snake_case), what a chain node answers
//! (transactions, cell outputs, out points) and what a page passes (scripts,
//! cell deps). The input is JSON text; anything serde_json reads is tried.
//!
//! Checked on every input:
//! * nothing panics, and every refusal names a path and a reason;
//! * a transaction read from either casing is written back as Fiber's JSON,
//!   which reads back to the same molecule bytes, in snake_case and again
//!   with every key camelCased (as JoyID and CCC write it);
//! * a script read back from `script_to_json` is the same script;
//! * what the parts' readers accept inside a transaction, they accept alone.

#![no_main]

#[path = "../../tests/common/camel.rs"]
mod camel;
use camel::camelize;
use ckb_types::prelude::Entity;
use fiber_funding::tx::json::{
    parse_bytes, parse_cell_dep, parse_cell_output, parse_hash, parse_number, parse_out_point, parse_script,
    parse_transaction, script_to_json, transaction_to_json, TxJsonError,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn refused(error: TxJsonError) {
    assert!(
        !error.path.is_empty() && !error.reason.is_empty(),
        "an unnamed refusal: {error:?}"
    );
}

fn check_transaction(value: &Value) {
    let tx = match parse_transaction(value) {
        Ok(tx) => tx,
        Err(error) => return refused(error),
    };
    let written = transaction_to_json(&tx);
    let again = parse_transaction(&written).expect("our own JSON reads back");
    assert_eq!(again.as_slice(), tx.as_slice(), "snake_case round trip changed the tx");
    let camel = parse_transaction(&camelize(&written)).expect("the camelCase of our JSON reads");
    assert_eq!(camel.as_slice(), tx.as_slice(), "camelCase reads differently");
    // Each part the transaction reader took, the part readers take alone.
    let raw = tx.raw();
    for (index, output) in value
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let alone = parse_cell_output(output, "output").expect("an output the tx reader took");
        assert_eq!(alone.as_slice(), raw.outputs().get(index).unwrap().as_slice());
    }
}

fn check_parts(value: &Value) {
    match parse_script(value, "script") {
        Ok(script) => {
            let back = parse_script(&script_to_json(&script), "script");
            match back {
                Ok(back) => assert_eq!(back.as_slice(), script.as_slice()),
                Err(error) => panic!("script_to_json of a read script does not read: {error}"),
            }
        }
        Err(error) => refused(error),
    }
    for result in [
        parse_cell_output(value, "output").map(|v| v.as_slice().len()),
        parse_out_point(value, "out_point").map(|v| v.as_slice().len()),
        parse_cell_dep(value, "cell_dep").map(|v| v.as_slice().len()),
        parse_number(value, "number").map(|_| 8),
        parse_bytes(value, "bytes").map(|v| v.len()),
        parse_hash(value, "hash").map(|_| 32),
    ] {
        if let Err(error) = result {
            refused(error);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_transaction(&value);
    check_parts(&value);
    // A page or a node may wrap what we read in a list or an object.
    match &value {
        Value::Array(items) => items.iter().take(8).for_each(check_parts),
        Value::Object(map) => map.values().take(8).for_each(check_parts),
        _ => {}
    }
});
