//! Transactions as JSON: Fiber's JSON-RPC shape (snake_case) out, and either
//! that or JoyID's / CCC's camelCase shape in.
//!
//! Parsing walks the value by hand so an error names the exact place, e.g.
//! `inputs[0].previous_output.tx_hash: expected 32 bytes, got 31`.

use crate::json::{Map, Value};
use ckb_types::core::{DepType, ScriptHashType};
use ckb_types::packed;
use ckb_types::prelude::*;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::primitives::{decode_hex, encode_hex};

/// A transaction JSON that could not be read, with the path of the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TxJsonError {
    pub path: String,
    pub reason: String,
}

fn error(path: &str, reason: impl Into<String>) -> TxJsonError {
    TxJsonError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a transaction in Fiber's snake_case or JoyID's camelCase shape.
/// A `hash` field (as in a `TransactionView`) is ignored.
pub fn parse_transaction(value: &Value) -> Result<packed::Transaction, TxJsonError> {
    let tx = object(value, "transaction")?;
    let version = number(field(tx, "version", "version", "version")?, "version")?;
    let version = u32::try_from(version).map_err(|_| error("version", "does not fit in u32"))?;

    let cell_deps = list(field(tx, "cell_deps", "cellDeps", "cell_deps")?, "cell_deps", cell_dep)?;
    let header_deps = list(
        field(tx, "header_deps", "headerDeps", "header_deps")?,
        "header_deps",
        |v, p| Ok(hash(v, p)?.pack()),
    )?;
    let inputs = list(field(tx, "inputs", "inputs", "inputs")?, "inputs", cell_input)?;
    let outputs = list(field(tx, "outputs", "outputs", "outputs")?, "outputs", cell_output)?;
    let outputs_data = list(
        field(tx, "outputs_data", "outputsData", "outputs_data")?,
        "outputs_data",
        bytes,
    )?;
    let witnesses = list(field(tx, "witnesses", "witnesses", "witnesses")?, "witnesses", bytes)?;

    let raw = packed::RawTransaction::new_builder()
        .version(version)
        .cell_deps(packed::CellDepVec::new_builder().extend(cell_deps).build())
        .header_deps(packed::Byte32Vec::new_builder().extend(header_deps).build())
        .inputs(packed::CellInputVec::new_builder().extend(inputs).build())
        .outputs(packed::CellOutputVec::new_builder().extend(outputs).build())
        .outputs_data(
            packed::BytesVec::new_builder()
                .extend(outputs_data.iter().map(|d| d.pack()))
                .build(),
        )
        .build();
    Ok(packed::Transaction::new_builder()
        .raw(raw)
        .witnesses(
            packed::BytesVec::new_builder()
                .extend(witnesses.iter().map(|w| w.pack()))
                .build(),
        )
        .build())
}

/// The transaction in Fiber's JSON-RPC shape (CKB's `Transaction` JSON), as
/// a `Value`. Written by hand rather than through `ckb-jsonrpc-types`, which
/// is large in the wasm; `tests/tx_json.rs` checks it against that crate.
pub fn transaction_to_json(tx: &packed::Transaction) -> Value {
    value_of(&TransactionJson(tx.clone()))
}

/// A script in Fiber's JSON-RPC shape.
pub fn script_to_json(script: &packed::Script) -> Value {
    value_of(&ScriptJson(script.clone()))
}

/// A value as JSON text read back: these are built for a request body, once
/// per request, so one writer serves both the text and the value.
fn value_of(value: &impl Serialize) -> Value {
    let text = crate::json::to_string(value).expect("strings and lists always make JSON");
    crate::json::parse(&text).expect("the writer writes JSON")
}

/// The transaction in Fiber's JSON-RPC shape, serialized straight from the
/// molecule bytes: a list of many pending flows is written as JSON text
/// without building a map per field first.
#[derive(Debug, Clone)]
pub struct TransactionJson(pub packed::Transaction);

impl Serialize for TransactionJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = self.0.raw();
        let mut tx = serializer.serialize_struct("Transaction", 7)?;
        tx.serialize_field("version", &hex_number(Unpack::<u32>::unpack(&raw.version()).into()))?;
        let cell_deps: Vec<_> = raw.cell_deps().into_iter().map(CellDepJson).collect();
        tx.serialize_field("cell_deps", &cell_deps)?;
        let header_deps: Vec<_> = raw
            .header_deps()
            .into_iter()
            .map(|h| encode_hex(h.as_slice()))
            .collect();
        tx.serialize_field("header_deps", &header_deps)?;
        let inputs: Vec<_> = raw.inputs().into_iter().map(CellInputJson).collect();
        tx.serialize_field("inputs", &inputs)?;
        let outputs: Vec<_> = raw.outputs().into_iter().map(CellOutputJson).collect();
        tx.serialize_field("outputs", &outputs)?;
        let bytes_list =
            |list: packed::BytesVec| list.into_iter().map(|b| encode_hex(&b.raw_data())).collect::<Vec<_>>();
        tx.serialize_field("outputs_data", &bytes_list(raw.outputs_data()))?;
        tx.serialize_field("witnesses", &bytes_list(self.0.witnesses()))?;
        tx.end()
    }
}

struct CellDepJson(packed::CellDep);

impl Serialize for CellDepJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut dep = serializer.serialize_struct("CellDep", 2)?;
        dep.serialize_field("out_point", &OutPointJson(self.0.out_point()))?;
        let dep_type = if self.0.dep_type() == DepType::DepGroup.into() {
            "dep_group"
        } else {
            "code"
        };
        dep.serialize_field("dep_type", dep_type)?;
        dep.end()
    }
}

struct CellInputJson(packed::CellInput);

impl Serialize for CellInputJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut input = serializer.serialize_struct("CellInput", 2)?;
        input.serialize_field("since", &hex_number(self.0.since().unpack()))?;
        input.serialize_field("previous_output", &OutPointJson(self.0.previous_output()))?;
        input.end()
    }
}

struct CellOutputJson(packed::CellOutput);

impl Serialize for CellOutputJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut output = serializer.serialize_struct("CellOutput", 3)?;
        output.serialize_field("capacity", &hex_number(self.0.capacity().unpack()))?;
        output.serialize_field("lock", &ScriptJson(self.0.lock()))?;
        output.serialize_field("type", &self.0.type_().to_opt().map(ScriptJson))?;
        output.end()
    }
}

/// A script in Fiber's JSON-RPC shape.
#[derive(Debug, Clone)]
pub struct ScriptJson(pub packed::Script);

impl Serialize for ScriptJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let script = &self.0;
        let hash_type = hash_type_name(script.hash_type());
        let mut json = serializer.serialize_struct("Script", 3)?;
        json.serialize_field("code_hash", &encode_hex(script.code_hash().as_slice()))?;
        json.serialize_field("hash_type", &hash_type)?;
        json.serialize_field("args", &encode_hex(&script.args().raw_data()))?;
        json.end()
    }
}

/// A script's hash type as CKB's JSON names it.
fn hash_type_name(hash_type: packed::Byte) -> std::borrow::Cow<'static, str> {
    match ScriptHashType::try_from(hash_type) {
        Ok(ScriptHashType::Data) => "data".into(),
        Ok(ScriptHashType::Type) => "type".into(),
        Ok(ScriptHashType::Data1) => "data1".into(),
        Ok(ScriptHashType::Data2) => "data2".into(),
        // Not one CKB knows: shown as its byte, which no reader will take.
        _ => format!("{:#04x}", u8::from(hash_type)).into(),
    }
}

/// An out point in Fiber's JSON-RPC shape.
#[derive(Debug, Clone)]
pub struct OutPointJson(pub packed::OutPoint);

impl Serialize for OutPointJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out_point = serializer.serialize_struct("OutPoint", 2)?;
        out_point.serialize_field("tx_hash", &encode_hex(self.0.tx_hash().as_slice()))?;
        out_point.serialize_field("index", &hex_number(Unpack::<u32>::unpack(&self.0.index()).into()))?;
        out_point.end()
    }
}

/// A number as CKB's JSON writes it: `0x`-hex, no leading zeros.
fn hex_number(value: u64) -> String {
    format!("{value:#x}")
}

/// The JSON text `serde_json::to_string(&TransactionJson(tx))` writes, byte
/// for byte, written straight into one buffer: no `String` per field and no
/// escape scan (hex digits and the fixed names need none). A boot lists every
/// pending flow's tx, and through serde this was most of `pendingFundings()`
/// for a thousand flows.
pub fn transaction_json_text(tx: &packed::Transaction) -> String {
    let mut out = Vec::new();
    write_transaction_json(tx, &mut out);
    String::from_utf8(out).expect("the writer writes ASCII only")
}

/// [`transaction_json_text`], appended to `buffer` (ASCII only, so a buffer
/// of UTF-8 stays UTF-8).
pub fn write_transaction_json(tx: &packed::Transaction, buffer: &mut Vec<u8>) {
    let raw = tx.raw();
    buffer.reserve(tx.as_slice().len().saturating_mul(2).saturating_add(1024));
    let mut out = JsonText(std::mem::take(buffer));
    out.push(b"{\"version\":");
    out.number(Unpack::<u32>::unpack(&raw.version()).into());
    out.push(b",\"cell_deps\":[");
    for (i, dep) in raw.cell_deps().into_iter().enumerate() {
        out.comma(i);
        out.push(b"{\"out_point\":");
        out.out_point(&dep.out_point());
        out.push(if dep.dep_type() == DepType::DepGroup.into() {
            b",\"dep_type\":\"dep_group\"}"
        } else {
            b",\"dep_type\":\"code\"}"
        });
    }
    out.push(b"],\"header_deps\":[");
    for (i, hash) in raw.header_deps().into_iter().enumerate() {
        out.comma(i);
        out.hex(hash.as_slice());
    }
    out.push(b"],\"inputs\":[");
    for (i, input) in raw.inputs().into_iter().enumerate() {
        out.comma(i);
        out.push(b"{\"since\":");
        out.number(input.since().unpack());
        out.push(b",\"previous_output\":");
        out.out_point(&input.previous_output());
        out.push(b"}");
    }
    out.push(b"],\"outputs\":[");
    for (i, output) in raw.outputs().into_iter().enumerate() {
        out.comma(i);
        out.push(b"{\"capacity\":");
        out.number(output.capacity().unpack());
        out.push(b",\"lock\":");
        out.script(&output.lock());
        out.push(b",\"type\":");
        match output.type_().to_opt() {
            Some(script) => out.script(&script),
            None => out.push(b"null"),
        }
        out.push(b"}");
    }
    out.push(b"],\"outputs_data\":[");
    for (i, data) in raw.outputs_data().into_iter().enumerate() {
        out.comma(i);
        out.hex(&data.raw_data());
    }
    out.push(b"],\"witnesses\":[");
    for (i, witness) in tx.witnesses().into_iter().enumerate() {
        out.comma(i);
        out.hex(&witness.raw_data());
    }
    out.push(b"]}");
    *buffer = out.0;
}

/// A buffer of JSON text that only ever holds ASCII.
struct JsonText(Vec<u8>);

impl JsonText {
    fn push(&mut self, text: &[u8]) {
        self.0.extend_from_slice(text);
    }

    fn comma(&mut self, index: usize) {
        if index > 0 {
            self.0.push(b',');
        }
    }

    /// `"0x…"`, two digits a byte.
    fn hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.0.extend_from_slice(b"\"0x");
        let start = self.0.len();
        self.0.resize(start.saturating_add(bytes.len().saturating_mul(2)), 0);
        for (pair, byte) in self.0[start..].chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        self.0.push(b'"');
    }

    /// `"0x…"` as [`hex_number`] writes it.
    fn number(&mut self, value: u64) {
        self.0.push(b'"');
        self.0.extend_from_slice(hex_number(value).as_bytes());
        self.0.push(b'"');
    }

    fn out_point(&mut self, out_point: &packed::OutPoint) {
        self.push(b"{\"tx_hash\":");
        self.hex(out_point.tx_hash().as_slice());
        self.push(b",\"index\":");
        self.number(Unpack::<u32>::unpack(&out_point.index()).into());
        self.push(b"}");
    }

    fn script(&mut self, script: &packed::Script) {
        self.push(b"{\"code_hash\":");
        self.hex(script.code_hash().as_slice());
        self.push(b",\"hash_type\":\"");
        self.push(hash_type_name(script.hash_type()).as_bytes());
        self.push(b"\",\"args\":");
        self.hex(&script.args().raw_data());
        self.push(b"}");
    }
}

/// Reads a cell output (`capacity`, `lock`, `type`), as chain answers carry it.
pub fn parse_cell_output(value: &Value, path: &str) -> Result<packed::CellOutput, TxJsonError> {
    cell_output(value, path)
}

/// Reads an out point (`tx_hash`, `index`).
pub fn parse_out_point(value: &Value, path: &str) -> Result<packed::OutPoint, TxJsonError> {
    out_point(value, path)
}

/// Reads a `0x`-hex number.
pub fn parse_number(value: &Value, path: &str) -> Result<u64, TxJsonError> {
    number(value, path)
}

/// Reads `0x`-hex bytes.
pub fn parse_bytes(value: &Value, path: &str) -> Result<Vec<u8>, TxJsonError> {
    bytes(value, path)
}

/// Reads a 32-byte `0x`-hex hash.
pub fn parse_hash(value: &Value, path: &str) -> Result<[u8; 32], TxJsonError> {
    hash(value, path)
}

/// Reads a script (`code_hash`/`codeHash`, `hash_type`/`hashType`, `args`).
pub fn parse_script(value: &Value, path: &str) -> Result<packed::Script, TxJsonError> {
    let map = object(value, path)?;
    let code_hash = hash(field(map, "code_hash", "codeHash", path)?, &format!("{path}.code_hash"))?;
    let hash_type = hash_type(field(map, "hash_type", "hashType", path)?, &format!("{path}.hash_type"))?;
    let args = bytes(field(map, "args", "args", path)?, &format!("{path}.args"))?;
    Ok(packed::Script::new_builder()
        .code_hash(code_hash.pack())
        .hash_type(hash_type)
        .args(args.pack())
        .build())
}

/// Reads a cell dep (`out_point`/`outPoint`, `dep_type`/`depType`).
pub fn parse_cell_dep(value: &Value, path: &str) -> Result<packed::CellDep, TxJsonError> {
    cell_dep(value, path)
}

fn cell_dep(value: &Value, path: &str) -> Result<packed::CellDep, TxJsonError> {
    let map = object(value, path)?;
    let out_point = out_point(field(map, "out_point", "outPoint", path)?, &format!("{path}.out_point"))?;
    let dep_path = format!("{path}.dep_type");
    let dep_type = match field(map, "dep_type", "depType", path)?.as_str() {
        Some("code") => DepType::Code,
        Some("dep_group" | "depGroup") => DepType::DepGroup,
        _ => return Err(error(&dep_path, "expected \"code\" or \"dep_group\"")),
    };
    Ok(packed::CellDep::new_builder()
        .out_point(out_point)
        .dep_type(dep_type)
        .build())
}

fn cell_input(value: &Value, path: &str) -> Result<packed::CellInput, TxJsonError> {
    let map = object(value, path)?;
    let previous_output = out_point(
        field(map, "previous_output", "previousOutput", path)?,
        &format!("{path}.previous_output"),
    )?;
    let since = number(field(map, "since", "since", path)?, &format!("{path}.since"))?;
    Ok(packed::CellInput::new_builder()
        .previous_output(previous_output)
        .since(since)
        .build())
}

fn cell_output(value: &Value, path: &str) -> Result<packed::CellOutput, TxJsonError> {
    let map = object(value, path)?;
    let capacity = number(field(map, "capacity", "capacity", path)?, &format!("{path}.capacity"))?;
    let lock = parse_script(field(map, "lock", "lock", path)?, &format!("{path}.lock"))?;
    let type_ = match map.get("type") {
        None | Some(Value::Null) => None,
        Some(script) => Some(parse_script(script, &format!("{path}.type"))?),
    };
    Ok(packed::CellOutput::new_builder()
        .capacity(capacity)
        .lock(lock)
        .type_(packed::ScriptOpt::new_builder().set(type_).build())
        .build())
}

fn out_point(value: &Value, path: &str) -> Result<packed::OutPoint, TxJsonError> {
    let map = object(value, path)?;
    let tx_hash = hash(field(map, "tx_hash", "txHash", path)?, &format!("{path}.tx_hash"))?;
    let index_path = format!("{path}.index");
    let index = number(field(map, "index", "index", path)?, &index_path)?;
    let index = u32::try_from(index).map_err(|_| error(&index_path, "does not fit in u32"))?;
    Ok(packed::OutPoint::new_builder()
        .tx_hash(tx_hash.pack())
        .index(index)
        .build())
}

fn hash_type(value: &Value, path: &str) -> Result<ScriptHashType, TxJsonError> {
    match value.as_str() {
        Some("data") => Ok(ScriptHashType::Data),
        Some("type") => Ok(ScriptHashType::Type),
        Some("data1") => Ok(ScriptHashType::Data1),
        Some("data2") => Ok(ScriptHashType::Data2),
        _ => Err(error(path, "expected \"data\", \"type\", \"data1\" or \"data2\"")),
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, TxJsonError> {
    value.as_object().ok_or_else(|| error(path, "expected an object"))
}

/// A field under its snake_case or camelCase name.
fn field<'a>(map: &'a Map<String, Value>, snake: &str, camel: &str, path: &str) -> Result<&'a Value, TxJsonError> {
    map.get(snake)
        .or_else(|| map.get(camel))
        .ok_or_else(|| error(path, format!("missing field {snake:?}")))
}

fn list<T>(
    value: &Value,
    path: &str,
    item: impl Fn(&Value, &str) -> Result<T, TxJsonError>,
) -> Result<Vec<T>, TxJsonError> {
    value
        .as_array()
        .ok_or_else(|| error(path, "expected an array"))?
        .iter()
        .enumerate()
        .map(|(index, value)| item(value, &format!("{path}[{index}]")))
        .collect()
}

/// A number as a `0x` hex string (as both JSON shapes write them) or a plain JSON integer.
fn number(value: &Value, path: &str) -> Result<u64, TxJsonError> {
    match value {
        Value::String(text) => crate::primitives::hex_u64::parse(text).map_err(|reason| error(path, reason)),
        Value::Number(number) => number
            .as_u64()
            .ok_or_else(|| error(path, "expected a non-negative integer")),
        _ => Err(error(path, "expected a 0x-prefixed hex number")),
    }
}

fn bytes(value: &Value, path: &str) -> Result<Vec<u8>, TxJsonError> {
    let text = value
        .as_str()
        .ok_or_else(|| error(path, "expected a 0x-prefixed hex string"))?;
    decode_hex(text).map_err(|e| error(path, e.to_string()))
}

fn hash(value: &Value, path: &str) -> Result<[u8; 32], TxJsonError> {
    let bytes = bytes(value, path)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| error(path, format!("expected 32 bytes, got {}", bytes.len())))
}
