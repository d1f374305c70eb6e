//! The transaction JSON readers (`src/tx/json.rs`): what a wallet returns
//! (JoyID's camelCase, Fiber's snake_case), what a chain node answers
//! (transactions, cell outputs, out points) and what a page passes (scripts,
//! cell deps). The input is JSON text, read by the module's own parser
//! (`src/json`), which must take exactly what serde_json takes.
//!
//! Checked on every input:
//! * the module's parser takes the text exactly when serde_json does (but
//!   for numbers beyond a double's range, which it keeps as written), and
//!   writes what it read as serde_json writes it;
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
use fiber_funding::json::Value;
use fiber_funding::tx::json::{
    parse_bytes, parse_cell_dep, parse_cell_output, parse_hash, parse_number, parse_out_point, parse_script,
    parse_transaction, script_to_json, transaction_to_json, TxJsonError,
};
use libfuzzer_sys::fuzz_target;

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

/// The module's parser against serde_json's: the same verdict, the same value.
fn parse_as_serde_json_does(data: &[u8]) -> Option<Value> {
    let ours = fiber_funding::json::parse_bytes(data);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert!(same(&ours, &theirs), "read differently: {ours} and {theirs}");
            Some(ours)
        }
        (Err(_), Err(_)) => None,
        (Ok(ours), Err(error)) if error.to_string().starts_with("number out of range") => Some(ours),
        (ours, theirs) => panic!("the verdicts differ: ours {ours:?}, serde_json's {theirs:?}"),
    }
}

/// The same JSON value. A number that is not a 64-bit integer is kept as
/// written here and as an `f64` by serde_json: only that it is one is compared.
fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value as Theirs;
    match (ours, theirs) {
        (Value::Null, Theirs::Null) => true,
        (Value::Bool(a), Theirs::Bool(b)) => a == b,
        (Value::String(a), Theirs::String(b)) => a == b,
        (Value::Number(a), Theirs::Number(b)) => match (a.as_u64(), a.as_i64()) {
            (Some(n), _) => b.as_u64() == Some(n),
            (None, Some(n)) => b.as_i64() == Some(n),
            (None, None) => b.is_f64(),
        },
        (Value::Array(a), Theirs::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)),
        (Value::Object(a), Theirs::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(key, a)| b.get(key).is_some_and(|b| same(a, b)))
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = parse_as_serde_json_does(data) else {
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
