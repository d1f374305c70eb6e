//! Fiber's JSON-RPC shapes: snake_case keys, `0x`-hex numbers and bytes.
//! Timestamps this module adds (`*_ms`) are plain JSON numbers.

use crate::json::{Map, Value};

use super::error::ApiError;
use super::shapes::{
    commitment_holder, CancelFundingTxResult, Epoch, FundingEvent, OpenChannelResult, SubmitSignedCancelTxResult,
    SubmitSignedFundingTxResult,
};
use crate::flow::{Event, OpenChannelParams};
use crate::primitives::{hex_u64, ChannelId, Hash256, Pubkey};
use crate::runtime::Submitted;
use crate::tx::json::{parse_cell_dep, parse_script, TransactionJson};
use ckb_types::packed;

const OPEN_FIELDS: &[&str] = &[
    "pubkey",
    "funding_amount",
    "public",
    "funding_udt_type_script",
    "shutdown_script",
    "funding_lock_script",
    "funding_lock_script_cell_deps",
    "commitment_delay_epoch",
    "commitment_fee_rate",
    "funding_fee_rate",
    "funding_witness_lock_len",
    "tlc_expiry_delta",
    "tlc_min_value",
    "tlc_fee_proportional_millionths",
    "max_tlc_value_in_flight",
    "max_tlc_number_in_flight",
];

/// Reads `open_channel_with_external_funding` parameters. Unknown keys are an
/// error (a typo would otherwise silently fall back to a default).
pub fn parse_open_params(value: &Value) -> Result<OpenChannelParams, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("params", "expected an object"))?;
    if let Some(unknown) = map.keys().find(|key| !OPEN_FIELDS.contains(&key.as_str())) {
        return Err(ApiError::invalid(
            unknown,
            "not a parameter of openChannelWithExternalFunding",
        ));
    }
    let pubkey = Pubkey::from_hex(required_str(map, "pubkey")?).map_err(|e| ApiError::invalid("pubkey", e))?;
    let funding_amount = hex_u128(required(map, "funding_amount")?, "funding_amount")?;
    let public = match map.get("public") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(public)) => *public,
        Some(_) => return Err(ApiError::invalid("public", "expected true or false")),
    };
    let script = |name: &str| -> Result<Option<packed::Script>, ApiError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse_script(value, name).map(Some).map_err(ApiError::from),
        }
    };
    let funding_lock_script =
        script("funding_lock_script")?.ok_or_else(|| ApiError::invalid("funding_lock_script", "required"))?;
    let shutdown_script = script("shutdown_script")?.ok_or_else(|| ApiError::invalid("shutdown_script", "required"))?;
    let funding_lock_script_cell_deps = match map.get("funding_lock_script_cell_deps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(deps)) => deps
            .iter()
            .enumerate()
            .map(|(i, dep)| parse_cell_dep(dep, &format!("funding_lock_script_cell_deps[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("funding_lock_script_cell_deps", "expected an array")),
    };
    for name in ["tlc_expiry_delta", "tlc_min_value", "tlc_fee_proportional_millionths"] {
        optional(map, name, |v| hex_u128(v, name))?;
    }
    Ok(OpenChannelParams {
        pubkey,
        funding_amount,
        public,
        funding_udt_type_script: script("funding_udt_type_script")?,
        shutdown_script,
        funding_lock_script,
        funding_lock_script_cell_deps,
        commitment_delay_epoch: optional(map, "commitment_delay_epoch", |v| {
            hex_u64_field(v, "commitment_delay_epoch")
        })?,
        commitment_fee_rate: optional(map, "commitment_fee_rate", |v| hex_u64_field(v, "commitment_fee_rate"))?,
        funding_fee_rate: optional(map, "funding_fee_rate", |v| hex_u64_field(v, "funding_fee_rate"))?,
        funding_witness_lock_len: optional(map, "funding_witness_lock_len", |v| {
            hex_u64_field(v, "funding_witness_lock_len")
        })?,
        max_tlc_value_in_flight: optional(map, "max_tlc_value_in_flight", |v| {
            hex_u128(v, "max_tlc_value_in_flight")
        })?,
        max_tlc_number_in_flight: optional(map, "max_tlc_number_in_flight", |v| {
            hex_u64_field(v, "max_tlc_number_in_flight")
        })?,
    })
}

/// Reads a `channel_id`.
pub fn parse_channel_id(value: &Value, field: &str) -> Result<ChannelId, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::invalid(field, "expected a 0x-prefixed 32-byte hex string"))?;
    Hash256::from_hex(text).map_err(|e| ApiError::invalid(field, e))
}

fn required<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a Value, ApiError> {
    map.get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid(name, "required"))
}

fn required_str<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    required(map, name)?
        .as_str()
        .ok_or_else(|| ApiError::invalid(name, "expected a string"))
}

fn optional<T>(
    map: &Map<String, Value>,
    name: &str,
    read: impl Fn(&Value) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value).map(Some),
    }
}

fn hex_u64_field(value: &Value, name: &str) -> Result<u64, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::invalid(name, "expected a 0x-prefixed hex number"))?;
    hex_u64::parse(text).map_err(|e| ApiError::invalid(name, e))
}

fn hex_u128(value: &Value, name: &str) -> Result<u128, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::invalid(name, "expected a 0x-prefixed hex number"))?;
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| ApiError::invalid(name, "expected a 0x-prefixed hex number"))?;
    u128::from_str_radix(digits, 16).map_err(|e| ApiError::invalid(name, e))
}

/// `{ state: "NegotiatingFunding", flags: ["AWAITING_EXTERNAL_FUNDING"] }`.
pub fn opened(channel_id: &ChannelId, unsigned_funding_tx: &packed::Transaction) -> OpenChannelResult {
    OpenChannelResult {
        channel_id: channel_id.to_string(),
        unsigned_funding_tx: TransactionJson(unsigned_funding_tx.clone()),
    }
}

pub fn submitted(channel_id: &ChannelId, outcome: &Submitted) -> SubmitSignedFundingTxResult {
    SubmitSignedFundingTxResult {
        channel_id: channel_id.to_string(),
        funding_tx_hash: outcome.funding_tx_hash.to_string(),
        status: if outcome.queued { "queued" } else { "sent" },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownParams {
    pub channel_id: ChannelId,
    pub close_script: Option<packed::Script>,
    pub fee_rate: Option<u64>,
    /// Broadcast our commitment instead; `close_script` and `fee_rate` are
    /// then ignored, as upstream.
    pub force: bool,
}

pub fn parse_shutdown_params(value: &Value) -> Result<ShutdownParams, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("params", "expected an object"))?;
    crate::api::options::refuse_unknown_keys(
        map,
        &["channel_id", "close_script", "fee_rate", "force"],
        "a shutdown_channel param",
    )?;
    let channel_id = map
        .get("channel_id")
        .ok_or_else(|| ApiError::invalid("channel_id", "required"))
        .and_then(|v| parse_channel_id(v, "channel_id"))?;
    let close_script = match map.get("close_script") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_script(value, "close_script").map_err(ApiError::from)?),
    };
    let fee_rate = match map.get("fee_rate") {
        None | Some(Value::Null) => None,
        Some(value) => Some(hex_u64_field(value, "fee_rate")?),
    };
    let force = match map.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => return Err(ApiError::invalid("force", "expected true or false")),
    };
    Ok(ShutdownParams {
        channel_id,
        close_script,
        fee_rate,
        force,
    })
}

/// `cancelFundingTx`'s params: `{ channel_id, fee_rate? }`.
pub fn parse_cancel_params(value: &Value) -> Result<(ChannelId, Option<u64>), ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("params", "expected an object"))?;
    crate::api::options::refuse_unknown_keys(map, &["channel_id", "fee_rate"], "a cancelFundingTx param")?;
    let channel_id = map
        .get("channel_id")
        .ok_or_else(|| ApiError::invalid("channel_id", "required"))
        .and_then(|v| parse_channel_id(v, "channel_id"))?;
    let fee_rate = match map.get("fee_rate") {
        None | Some(Value::Null) => None,
        Some(value) => Some(hex_u64_field(value, "fee_rate")?),
    };
    Ok((channel_id, fee_rate))
}

/// `submitSignedFundingTx`'s params: `signed_funding_tx` in Fiber's
/// snake_case or JoyID's camelCase.
pub fn parse_submit_params(value: &Value) -> Result<(ChannelId, packed::Transaction), ApiError> {
    channel_id_and_tx(value, "signed_funding_tx")
}

/// `submitSignedCancelTx`'s params: `{ channel_id, signed_cancel_tx }`, the
/// tx in Fiber's snake_case shape or JoyID's camelCase one.
pub fn parse_submit_cancel_params(value: &Value) -> Result<(ChannelId, packed::Transaction), ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("params", "expected an object"))?;
    crate::api::options::refuse_unknown_keys(map, &["channel_id", "signed_cancel_tx"], "a submitSignedCancelTx param")?;
    channel_id_and_tx(value, "signed_cancel_tx")
}

/// `channel_id` and the signed tx under `tx_field`.
fn channel_id_and_tx(value: &Value, tx_field: &str) -> Result<(ChannelId, packed::Transaction), ApiError> {
    let channel_id = value
        .get("channel_id")
        .ok_or_else(|| ApiError::invalid("channel_id", "required"))
        .and_then(|v| parse_channel_id(v, "channel_id"))?;
    let tx = value
        .get(tx_field)
        .ok_or_else(|| ApiError::invalid(tx_field, "required"))
        .and_then(|v| crate::tx::json::parse_transaction(v).map_err(ApiError::from))?;
    Ok((channel_id, tx))
}

pub fn cancel_tx_built(channel_id: &ChannelId, unsigned_cancel_tx: &packed::Transaction) -> CancelFundingTxResult {
    CancelFundingTxResult {
        channel_id: channel_id.to_string(),
        unsigned_cancel_tx: TransactionJson(unsigned_cancel_tx.clone()),
    }
}

pub fn cancel_tx_sent(channel_id: &ChannelId, cancel_tx_hash: &Hash256) -> SubmitSignedCancelTxResult {
    SubmitSignedCancelTxResult {
        channel_id: channel_id.to_string(),
        cancel_tx_hash: cancel_tx_hash.to_string(),
    }
}

/// Everything `onEvent` listeners receive: the core's events and the
/// connection's, in one shape (the one place it is defined).
pub fn driver_event(event: &crate::runtime::DriverEvent) -> FundingEvent {
    use crate::runtime::DriverEvent;
    match event {
        DriverEvent::Flow(event) => flow_event(event),
        DriverEvent::PeerConnected(peer) => FundingEvent::PeerConnected {
            peer_pubkey: peer.to_string(),
        },
        DriverEvent::PeerDisconnected(reason) => FundingEvent::PeerDisconnected { reason: reason.clone() },
        DriverEvent::PeerUnavailable { reason, trouble } => FundingEvent::PeerUnavailable {
            code: crate::api::error::peer_trouble_code(*trouble).as_str().to_owned(),
            reason: reason.clone(),
        },
        DriverEvent::ChainError(error) => FundingEvent::ChainError {
            reason: error.to_string(),
        },
        DriverEvent::StorageError(reason) => FundingEvent::StorageError { reason: reason.clone() },
        DriverEvent::UnreadableRecords(records) => FundingEvent::UnreadableRecords {
            records: records.iter().map(Into::into).collect(),
        },
    }
}

/// A core event for `onEvent`.
pub fn flow_event(event: &Event) -> FundingEvent {
    match event {
        Event::StateChanged {
            channel_id,
            temporary_channel_id,
            state,
            close_reason,
        } => FundingEvent::StateChanged {
            channel_id: channel_id.to_string(),
            temporary_channel_id: temporary_channel_id.to_string(),
            state: state.name().to_owned(),
            flags: state.flag_names().into_iter().map(str::to_owned).collect(),
            close_reason: close_reason.clone(),
        },
        Event::PeerMessageRejected {
            channel_id,
            peer,
            message,
            reason,
        } => FundingEvent::PeerMessageRejected {
            channel_id: channel_id.to_string(),
            peer_pubkey: peer.to_string(),
            message: (*message).to_owned(),
            reason: reason.clone(),
        },
        Event::FundingConfirmedAfterAbort {
            channel_id,
            funding_tx_hash,
        } => FundingEvent::FundingConfirmedAfterAbort {
            channel_id: channel_id.to_string(),
            funding_tx_hash: funding_tx_hash.to_string(),
        },
        Event::CommitmentOnChain {
            channel_id,
            tx_hash,
            holder_is_local,
            claimable_at_epoch,
        } => FundingEvent::CommitmentOnChain {
            channel_id: channel_id.to_string(),
            tx_hash: tx_hash.to_string(),
            by: commitment_holder(*holder_is_local),
            claimable_at_epoch: Epoch::from_full_value(*claimable_at_epoch),
        },
        Event::AbortSettled { channel_id } => FundingEvent::AbortSettled {
            channel_id: channel_id.to_string(),
        },
        Event::CloseTxRejected { channel_id, reason } => FundingEvent::CloseTxRejected {
            channel_id: channel_id.to_string(),
            reason: reason.clone(),
        },
        Event::FundingTxRejected { channel_id, reason } => FundingEvent::FundingTxRejected {
            channel_id: channel_id.to_string(),
            reason: reason.clone(),
        },
        Event::CancelTxRejected { channel_id, reason } => FundingEvent::CancelTxRejected {
            channel_id: channel_id.to_string(),
            reason: reason.clone(),
        },
        Event::FundingConfirmations {
            channel_id,
            confirmations,
            required,
        } => FundingEvent::FundingConfirmations {
            channel_id: channel_id.to_string(),
            confirmations: *confirmations,
            required: *required,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;
    use serde_json::json;

    fn params() -> serde_json::Value {
        json!({
            "pubkey": "0x02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
            "funding_amount": "0x174876e800",
            "public": false,
            "shutdown_script": {
                "code_hash": "0x9bd7e06f3ecf4be0f2fcd2188b23f1b9fcc88e5d4b65a8637b17723bbda3cce8",
                "hash_type": "type",
                "args": "0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7"
            },
            "funding_lock_script": {
                "code_hash": "0x9bd7e06f3ecf4be0f2fcd2188b23f1b9fcc88e5d4b65a8637b17723bbda3cce8",
                "hash_type": "type",
                "args": "0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7"
            },
            "funding_lock_script_cell_deps": [{
                "out_point": { "tx_hash": "0x29ed5663501cd171513155f8939ad2c9ffeb92aa4879d39cde987f8eb6274407", "index": "0x0" },
                "dep_type": "dep_group"
            }],
            "funding_fee_rate": "0x3e8"
        })
    }

    #[test]
    fn connection_events_have_the_documented_shapes() {
        use crate::runtime::DriverEvent;
        let peer = Pubkey::from_hex("0x02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27").unwrap();
        let driver_event_json = |event: &DriverEvent| {
            serde_json::from_str::<serde_json::Value>(&crate::json::to_string(&driver_event(event)).unwrap()).unwrap()
        };
        assert_eq!(
            driver_event_json(&DriverEvent::PeerConnected(peer)),
            json!({ "type": "peer_connected", "peer_pubkey": peer.to_string() })
        );
        assert_eq!(
            driver_event_json(&DriverEvent::PeerUnavailable {
                reason: "gone".into(),
                trouble: crate::runtime::PeerTrouble::Mismatch
            }),
            json!({ "type": "peer_unavailable", "code": "PEER_MISMATCH", "reason": "gone" })
        );
        assert_eq!(
            driver_event_json(&DriverEvent::StorageError("full".into())),
            json!({ "type": "storage_error", "reason": "full" })
        );
    }

    #[test]
    fn shutdown_params_read_as_fibers_and_refuse_what_they_do_not_know() {
        let id = format!("0x{}", "ab".repeat(32));
        let read = |v: serde_json::Value| parse_shutdown_params(&v.into());
        let plain = read(json!({ "channel_id": id })).unwrap();
        assert_eq!((plain.close_script, plain.fee_rate, plain.force), (None, None, false));
        let full = read(json!({
            "channel_id": id,
            "close_script": params()["shutdown_script"],
            "fee_rate": "0x3e8",
            "force": true
        }))
        .unwrap();
        assert_eq!((full.fee_rate, full.force), (Some(1_000), true));
        assert!(full.close_script.is_some());
        // A malformed script is INVALID_TX_JSON, as in openChannelWithExternalFunding.
        for (bad, field, code) in [
            (json!({}), "channel_id", ErrorCode::InvalidParams),
            (
                json!({ "channel_id": id, "force": "yes" }),
                "force",
                ErrorCode::InvalidParams,
            ),
            (
                json!({ "channel_id": id, "fee_rate": 1000 }),
                "fee_rate",
                ErrorCode::InvalidParams,
            ),
            (
                json!({ "channel_id": id, "forced": true }),
                "forced",
                ErrorCode::InvalidParams,
            ),
            (
                json!({ "channel_id": id, "close_script": { "code_hash": "0x00" } }),
                "close_script",
                ErrorCode::InvalidTxJson,
            ),
        ] {
            let error = read(bad.clone()).unwrap_err();
            assert_eq!(error.code, code, "{bad}");
            assert!(error.message.contains(field), "{bad}: {error}");
        }
    }

    #[test]
    fn fiber_rpc_params_are_read() {
        let parsed = parse_open_params(&params().into()).unwrap();
        assert_eq!(parsed.funding_amount, 100_000_000_000);
        assert_eq!(parsed.funding_fee_rate, Some(1000));
        assert_eq!(parsed.funding_witness_lock_len, None);
        let mut with_room = params();
        with_room["funding_witness_lock_len"] = json!("0x3e8");
        let parsed_room = parse_open_params(&with_room.into()).unwrap();
        assert_eq!(parsed_room.funding_witness_lock_len, Some(1000));
        assert_eq!(parsed.funding_lock_script_cell_deps.len(), 1);
        assert!(!parsed.public);
    }

    #[test]
    fn bad_params_name_the_field() {
        for (field, value, word) in [
            ("funding_amount", json!(1000), "funding_amount"),
            ("pubkey", json!("0x02"), "pubkey"),
            ("funding_fee_rate", json!("1000"), "funding_fee_rate"),
            ("funding_witness_lock_len", json!(1000), "funding_witness_lock_len"),
            ("fundingAmount", json!("0x1"), "fundingAmount"),
        ] {
            let mut params = params();
            params[field] = value;
            let error = parse_open_params(&params.into()).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidParams);
            assert!(error.message.contains(word), "{error}");
        }
        let mut params = params();
        params.as_object_mut().unwrap().remove("shutdown_script");
        assert!(parse_open_params(&params.into())
            .unwrap_err()
            .message
            .contains("shutdown_script"));
    }
}
