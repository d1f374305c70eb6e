//! Schemas 1 and 2: the JSON records of earlier versions, read by walking the
//! parsed JSON by hand.
//!
//! Those versions read (and wrote) them through serde's derive. Running that
//! derive over `serde_json::Value` cost the browser package about 100 KB of
//! wasm for a path each record takes once, so the walk below reads the same
//! fields with the same rules, and the derive stays on the types as the
//! test oracle this walk is checked against (`tests` below), never called
//! outside tests. The rules, as serde's derive has them:
//! * a required field that is missing is an error; `null` is not a value;
//! * an `Option` field reads missing or `null` as `None` — except the ones
//!   read through a `with` module, which must be present (`null` is `None`);
//! * a `default` field reads missing as its default;
//! * unknown fields are ignored.

use crate::json::{Map, Value};
use ckb_types::packed;

use super::{
    AbortWatch, ChannelRecord, ChannelTerms, CloseProgress, Closure, CommitmentOnChain, ExternalFundingPersistState,
    PartyParams, Role, ShutdownTerms,
};
use crate::chain::{LiveCell, ResolvedCell};
use crate::flow::state::CloseFlags;
use crate::primitives::{decode_hex, hex_u64, Hash256, PubNonceBytes, Pubkey};
use crate::tx::script::{HashType, ScriptTemplate};
use crate::wire::{decode_checked, CheckedDecode};

/// Why a field does not read, with the path of names leading to it.
type Read<T> = Result<T, String>;

/// Reads a record of schema 1 or 2 from its parsed JSON.
pub(super) fn read(value: &Value) -> Read<ChannelRecord> {
    let record = Fields::of(value, "record")?;
    Ok(ChannelRecord {
        schema_version: record.required("schema_version", |v| small(v, u32::MAX.into()).map(|n| n as u32))?,
        channel_id: record.required("channel_id", hash)?,
        temporary_channel_id: record.required("temporary_channel_id", hash)?,
        role: record.required("role", role)?,
        peer: record.required("peer", pubkey)?,
        created_at_ms: record.required("created_at_ms", number)?,
        channel_seed: record.required("channel_seed", hash)?,
        // No JSON schema stored one (the derive skips it too).
        key_check: None,
        terms: record.required("terms", terms)?,
        local: record.required("local", party)?,
        remote: record.optional("remote", party)?,
        own_cells: record.required("own_cells", |v| list(v, live_cell))?,
        deadline_ms: record.defaulted("deadline_ms", number)?,
        funding_tx: record.present("funding_tx", molecule)?,
        peer_inputs_checked: record.required("peer_inputs_checked", boolean)?,
        funding_inputs: record.defaulted("funding_inputs", |v| list(v, resolved_cell))?,
        peer_tx_complete_nonce: record.optional("peer_tx_complete_nonce", nonce)?,
        peer_commitment_signature: record.present("peer_commitment_signature", bytes)?,
        peer_witnesses: record.present("peer_witnesses", |v| list(v, bytes))?,
        funding_confirmed: record.required("funding_confirmed", boolean)?,
        peer_channel_ready: record.required("peer_channel_ready", boolean)?,
        external_funding: record.optional("external_funding", external_funding)?,
        peer_next_commitment_nonce: record.optional("peer_next_commitment_nonce", nonce)?,
        close: record.optional("close", close)?,
        closed: record.optional("closed", closure)?,
        commitment_signed_held: record.defaulted("commitment_signed_held", boolean)?,
        restored_from_backup: false,
    })
}

/// Schemas 1 and 2 stored two facts twice; a record whose copies disagree
/// is damaged and refused, as those versions refused it.
pub(super) fn copies_agree(value: &Value) -> Result<(), &'static str> {
    let Some(ext) = value.get("external_funding").filter(|ext| !ext.is_null()) else {
        return Ok(());
    };
    let present = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    let copy = |name: &str| ext.get(name).and_then(Value::as_bool).unwrap_or(false);
    if copy("signed_submitted") != present(ext.get("signed_funding_witnesses")) {
        return Err("signed_submitted disagrees with the stored witnesses");
    }
    if copy("peer_commitment_signed_received") != present(value.get("peer_commitment_signature")) {
        return Err("peer_commitment_signed_received disagrees with the stored signature");
    }
    Ok(())
}

/// The fields of one JSON object.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn of(value: &'a Value, what: &str) -> Read<Self> {
        value
            .as_object()
            .map(Fields)
            .ok_or_else(|| format!("{what} is not an object"))
    }

    /// A field that must be there, with a value.
    fn required<T>(&self, name: &str, read: fn(&'a Value) -> Read<T>) -> Read<T> {
        read(self.value(name)?).map_err(|reason| within(name, reason))
    }

    /// An `Option` field: missing or `null` is `None`.
    fn optional<T>(&self, name: &str, read: fn(&'a Value) -> Read<T>) -> Read<Option<T>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => read(value).map(Some).map_err(|reason| within(name, reason)),
        }
    }

    /// An `Option` field that must be there: `null` is `None`.
    fn present<T>(&self, name: &str, read: fn(&'a Value) -> Read<T>) -> Read<Option<T>> {
        match self.value(name)? {
            Value::Null => Ok(None),
            value => read(value).map(Some).map_err(|reason| within(name, reason)),
        }
    }

    fn value(&self, name: &str) -> Read<&'a Value> {
        self.0.get(name).ok_or_else(|| format!("missing field {name}"))
    }

    /// A field read as its type's default when missing.
    fn defaulted<T: Default>(&self, name: &str, read: fn(&'a Value) -> Read<T>) -> Read<T> {
        self.or_else(name, read, T::default)
    }

    /// A field read as `otherwise()` when missing.
    fn or_else<T>(&self, name: &str, read: fn(&'a Value) -> Read<T>, otherwise: fn() -> T) -> Read<T> {
        match self.0.get(name) {
            None => Ok(otherwise()),
            Some(_) => self.required(name, read),
        }
    }
}

/// A field's error, seen from the object that holds it (the error path is
/// out of line: each typed read above is its own instance).
#[cold]
#[inline(never)]
fn within(name: &str, reason: String) -> String {
    format!("{name}: {reason}")
}

fn terms(value: &Value) -> Read<ChannelTerms> {
    let terms = Fields::of(value, "terms")?;
    Ok(ChannelTerms {
        chain_hash: terms.required("chain_hash", hash)?,
        funding_fee_rate: terms.required("funding_fee_rate", hex_number)?,
        commitment_fee_rate: terms.required("commitment_fee_rate", hex_number)?,
        commitment_delay_epoch: terms.required("commitment_delay_epoch", hex_number)?,
        channel_flags: terms.required("channel_flags", |v| small(v, u8::MAX.into()).map(|n| n as u8))?,
        funding_lock: terms.or_else("funding_lock", script_template, ScriptTemplate::unset)?,
        commitment_lock: terms.or_else("commitment_lock", script_template, ScriptTemplate::unset)?,
        timeout_ms: terms.defaulted("timeout_ms", number)?,
    })
}

fn party(value: &Value) -> Read<PartyParams> {
    let party = Fields::of(value, "party")?;
    Ok(PartyParams {
        funding_amount: party.required("funding_amount", hex_number)?,
        reserved_ckb_amount: party.required("reserved_ckb_amount", hex_number)?,
        shutdown_script: party.required("shutdown_script", molecule)?,
        max_tlc_value_in_flight: party.required("max_tlc_value_in_flight", hex_u128)?,
        max_tlc_number_in_flight: party.required("max_tlc_number_in_flight", hex_number)?,
        funding_pubkey: party.required("funding_pubkey", pubkey)?,
        tlc_basepoint: party.required("tlc_basepoint", pubkey)?,
        first_per_commitment_point: party.required("first_per_commitment_point", pubkey)?,
        second_per_commitment_point: party.required("second_per_commitment_point", pubkey)?,
        next_commitment_nonce: party.required("next_commitment_nonce", nonce)?,
        next_revocation_nonce: party.required("next_revocation_nonce", nonce)?,
    })
}

fn external_funding(value: &Value) -> Read<ExternalFundingPersistState> {
    let ext = Fields::of(value, "external_funding")?;
    Ok(ExternalFundingPersistState {
        funding_lock_script: ext.required("funding_lock_script", molecule)?,
        funding_lock_script_cell_deps: ext.required("funding_lock_script_cell_deps", |v| list(v, molecule))?,
        unsigned_funding_tx: ext.present("unsigned_funding_tx", molecule)?,
        started_at_ms: ext.required("started_at_ms", number)?,
        signed_funding_witnesses: ext.present("signed_funding_witnesses", |v| list(v, bytes))?,
    })
}

fn close(value: &Value) -> Read<CloseProgress> {
    let close = Fields::of(value, "close")?;
    Ok(CloseProgress {
        local_shutdown: close.optional("local_shutdown", shutdown)?,
        remote_shutdown: close.optional("remote_shutdown", shutdown)?,
        peer_closing_signature: close.present("peer_closing_signature", bytes)?,
        force_closed_at_ms: close.optional("force_closed_at_ms", number)?,
        commitment_on_chain: close.optional("commitment_on_chain", commitment_on_chain)?,
        closing_on_chain: close.optional("closing_on_chain", hash)?,
        claim_tx: close.present("claim_tx", molecule)?,
    })
}

fn shutdown(value: &Value) -> Read<ShutdownTerms> {
    let shutdown = Fields::of(value, "shutdown")?;
    Ok(ShutdownTerms {
        close_script: shutdown.required("close_script", molecule)?,
        fee_rate: shutdown.required("fee_rate", hex_number)?,
    })
}

fn commitment_on_chain(value: &Value) -> Read<CommitmentOnChain> {
    let seen = Fields::of(value, "commitment_on_chain")?;
    Ok(CommitmentOnChain {
        holder_is_local: seen.required("holder_is_local", boolean)?,
        tx_hash: seen.required("tx_hash", hash)?,
        block_number: seen.required("block_number", number)?,
        epoch: seen.required("epoch", hex_number)?,
    })
}

fn closure(value: &Value) -> Read<Closure> {
    let closed = Fields::of(value, "closed")?;
    Ok(Closure {
        flags: closed.required("flags", |v| small(v, u32::MAX.into()).map(|n| CloseFlags(n as u32)))?,
        reason: closed.required("reason", |v| string(v).map(str::to_owned))?,
        closed_at_ms: closed.required("closed_at_ms", number)?,
        watch: closed.optional("watch", |v| {
            Ok(AbortWatch {
                conflict_seen_at_tip: Fields::of(v, "watch")?.optional("conflict_seen_at_tip", number)?,
            })
        })?,
    })
}

fn script_template(value: &Value) -> Read<ScriptTemplate> {
    let template = Fields::of(value, "script template")?;
    Ok(ScriptTemplate {
        code_hash: template.required("code_hash", hash)?,
        hash_type: template.required("hash_type", |v| match string(v)? {
            "data" => Ok(HashType::Data),
            "type" => Ok(HashType::Type),
            "data1" => Ok(HashType::Data1),
            "data2" => Ok(HashType::Data2),
            other => Err(format!("unknown hash type {other:?}")),
        })?,
        cell_deps: template.defaulted("cell_deps", |v| list(v, molecule))?,
    })
}

fn live_cell(value: &Value) -> Read<LiveCell> {
    let cell = Fields::of(value, "cell")?;
    Ok(LiveCell {
        out_point: cell.required("out_point", molecule)?,
        output: cell.required("output", molecule)?,
        output_data: cell.required("output_data", bytes)?,
        block_number: cell.required("block_number", number)?,
    })
}

fn resolved_cell(value: &Value) -> Read<ResolvedCell> {
    let cell = Fields::of(value, "cell")?;
    Ok(ResolvedCell {
        output: cell.required("output", molecule::<packed::CellOutput>)?,
        data: cell.required("data", bytes)?,
    })
}

fn role(value: &Value) -> Read<Role> {
    match string(value)? {
        "initiator" => Ok(Role::Initiator),
        "acceptor" => Ok(Role::Acceptor),
        other => Err(format!("unknown role {other:?}")),
    }
}

fn list<T>(value: &Value, item: fn(&Value) -> Read<T>) -> Read<Vec<T>> {
    let items = value.as_array().ok_or("not a list")?;
    items
        .iter()
        .enumerate()
        .map(|(at, value)| item(value).map_err(|reason| format!("item {at}: {reason}")))
        .collect()
}

fn string(value: &Value) -> Read<&str> {
    value.as_str().ok_or_else(|| "not a string".to_owned())
}

fn boolean(value: &Value) -> Read<bool> {
    value.as_bool().ok_or_else(|| "not a boolean".to_owned())
}

/// A JSON number that is a whole `u64`.
fn number(value: &Value) -> Read<u64> {
    value
        .as_u64()
        .ok_or_else(|| "not a whole number of at most 64 bits".to_owned())
}

/// A whole number no larger than `max`.
fn small(value: &Value, max: u64) -> Read<u64> {
    number(value).and_then(|n| {
        if n <= max {
            Ok(n)
        } else {
            Err(format!("{n} is more than {max}"))
        }
    })
}

fn hex_number(value: &Value) -> Read<u64> {
    hex_u64::parse(string(value)?)
}

fn hex_u128(value: &Value) -> Read<u128> {
    let text = string(value)?;
    let digits = text.strip_prefix("0x").ok_or("not a 0x-prefixed hex number")?;
    u128::from_str_radix(digits, 16).map_err(|e| format!("invalid hex number: {e}"))
}

fn bytes(value: &Value) -> Read<Vec<u8>> {
    decode_hex(string(value)?).map_err(|e| e.to_string())
}

fn molecule<T: CheckedDecode>(value: &Value) -> Read<T> {
    decode_checked("stored entity", &bytes(value)?).map_err(|e| e.to_string())
}

fn hash(value: &Value) -> Read<Hash256> {
    Hash256::from_hex(string(value)?).map_err(|e| e.to_string())
}

fn pubkey(value: &Value) -> Read<Pubkey> {
    Pubkey::from_hex(string(value)?).map_err(|e| e.to_string())
}

fn nonce(value: &Value) -> Read<PubNonceBytes> {
    PubNonceBytes::from_hex(string(value)?).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    //! The walk against the derive it replaces: every legacy fixture, and
    //! every way of damaging one field of it, read the same by both (`Ok`
    //! with the same record, or `Err`). The damage is done to `serde_json`
    //! values, which the walk reads through `crate::json`.
    use super::*;
    use serde_json::{Map, Value};

    fn fixtures() -> Vec<Value> {
        let fixture: Value = serde_json::from_str(include_str!("../../../tests/fixtures/records-legacy.json")).unwrap();
        let v1: Value = serde_json::from_str(include_str!("../../../tests/fixtures/idb-v1.json")).unwrap();
        let stored = fixture["v2"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v1["channels"].as_array().unwrap());
        // The damaged entry of the v1 fixture is not JSON; the others are records.
        stored
            .filter_map(|entry| serde_json::from_str(entry["value"].as_str().unwrap()).ok())
            .collect()
    }

    /// What serde's derive read, as the module of schemas 1 and 2 did.
    fn by_derive(value: &Value) -> Result<String, ()> {
        serde_json::from_value::<ChannelRecord>(value.clone())
            .map(|record| format!("{record:?}"))
            .map_err(|_| ())
    }

    fn by_walk(value: &Value) -> Result<String, ()> {
        read(&value.into()).map(|record| format!("{record:?}")).map_err(|_| ())
    }

    /// Every path to a value in `value`, as keys and indices.
    fn paths(value: &Value, at: Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let mut path = at.clone();
                    path.push(PathStep::Key(key.clone()));
                    out.push(path.clone());
                    paths(inner, path, out);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    let mut path = at.clone();
                    path.push(PathStep::Index(index));
                    out.push(path.clone());
                    paths(inner, path, out);
                }
            }
            _ => {}
        }
    }

    #[derive(Clone, Debug)]
    enum PathStep {
        Key(String),
        Index(usize),
    }

    /// `value` with the thing at `path` replaced (or removed, for `None`).
    fn edited(value: &Value, path: &[PathStep], replacement: Option<Value>) -> Value {
        let mut edited = value.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut parent = &mut edited;
        for step in parents {
            parent = match step {
                PathStep::Key(key) => &mut parent[key.as_str()],
                PathStep::Index(index) => &mut parent[*index],
            };
        }
        match (last, replacement) {
            (PathStep::Key(key), None) => {
                parent.as_object_mut().unwrap().remove(key);
            }
            (PathStep::Index(index), None) => {
                parent.as_array_mut().unwrap().remove(*index);
            }
            (PathStep::Key(key), Some(new)) => parent[key.as_str()] = new,
            (PathStep::Index(index), Some(new)) => parent[*index] = new,
        }
        edited
    }

    #[test]
    fn every_fixture_reads_as_the_derive_read_it() {
        let records = fixtures();
        assert_eq!(records.len(), 7, "four of schema 2, three of schema 1");
        for value in &records {
            assert!(by_walk(value).is_ok());
            assert_eq!(by_walk(value), by_derive(value));
        }
    }

    #[test]
    fn every_damaged_field_reads_as_the_derive_read_it() {
        let mut compared = 0;
        let mut refused = 0;
        for value in fixtures() {
            let mut all = Vec::new();
            paths(&value, Vec::new(), &mut all);
            for path in &all {
                let replacements = [
                    None,
                    Some(Value::Null),
                    Some(Value::Bool(true)),
                    Some(Value::from(300)),
                    Some(Value::from(-1)),
                    Some(Value::from(1.5)),
                    Some(Value::from(u64::MAX)),
                    Some(Value::from("0x1")),
                    Some(Value::from("initiator")),
                    Some(Value::from("type")),
                    Some(Value::Object(Map::new())),
                    Some(Value::Array(Vec::new())),
                ];
                for replacement in replacements {
                    // serde's derive also reads a struct from a list of its
                    // fields in order, a form no version ever wrote.
                    let struct_as_list = matches!(replacement, Some(Value::Array(_)));
                    let damaged = edited(&value, path, replacement);
                    let (walk, derive) = (by_walk(&damaged), by_derive(&damaged));
                    if struct_as_list && walk.is_err() && derive.is_ok() {
                        continue;
                    }
                    assert_eq!(walk, derive, "at {path:?} in {damaged}");
                    compared += 1;
                    refused += usize::from(walk.is_err());
                }
            }
        }
        assert!(compared > 6_000, "{compared}");
        assert!(refused > compared / 2, "{refused} of {compared}");
    }
}
