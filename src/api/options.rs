//! `FundingNode.open` options, read from JSON and checked key by key: an
//! unknown key or a value out of range is `INVALID_PARAMS` naming the key,
//! never a silent default. (The JS object arrives as JSON text and is read key
//! by key here, not through a derived struct deserializer.)
//!
//! ```
//! use fiber_funding::api::options::NodeOptions;
//! let options = serde_json::json!({
//!     "ckbRpcUrl": "http://127.0.0.1:8114",
//!     "peerUrl": "ws://127.0.0.1:8230",
//!     "peerPubkey": "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
//!     "externalFundingTimeoutSeconds": 300,
//! });
//! let options = NodeOptions::from_json(&options.into()).unwrap();
//! assert_eq!(options.external_funding_timeout_ms, Some(300_000));
//!
//! let typo = serde_json::json!({ "ckbRpcUrl": "http://x", "peerUrl": "ws://x",
//!     "peerPubkey": "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
//!     "externalFundingTimeoutSecond": 5 });
//! let error = NodeOptions::from_json(&typo.into()).unwrap_err();
//! assert!(error.message.contains("externalFundingTimeoutSecond"));
//! ```

use crate::json::{Map, Value};

use super::error::ApiError;
use crate::crypto::keys::{parse_pubkey, NodeSecret};
use crate::primitives::{decode_hex, Hash256, NodeId, Pubkey};
use crate::tx::script::{HashType, ScriptTemplate};

pub use super::deployment::{contracts_for_chain, known_deployments, KnownDeployment};

/// Every key `FundingNode.open` takes.
pub const OPTION_KEYS: &[&str] = &[
    "ckbRpcUrl",
    "peerUrl",
    "peerPubkey",
    "dbName",
    "externalFundingTimeoutSeconds",
    "nodeSecretKey",
    "waitForLock",
    "chainHash",
    "fundingLock",
    "commitmentLock",
    "fundingConfirmations",
    "settleConfirmations",
    "pollIntervalMs",
];

/// Limits of the numeric options, inclusive.
pub const TIMEOUT_SECONDS: (u64, u64) = (1, 86_400);
pub const FUNDING_CONFIRMATIONS: (u64, u64) = (1, 100);
pub const SETTLE_CONFIRMATIONS: (u64, u64) = (1, 10_000);
pub const POLL_INTERVAL_MS: (u64, u64) = (10, 600_000);
pub const MAX_DB_NAME_CHARS: usize = 100;

/// The options, checked. Absent optional ones are `None` (defaults apply later).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub ckb_rpc_url: String,
    pub peer_url: String,
    /// The counterparty's node id: the static key the BOLT 8 handshake must meet.
    pub peer_pubkey: NodeId,
    pub db_name: Option<String>,
    pub external_funding_timeout_ms: Option<u64>,
    pub node_secret: Option<NodeSecret>,
    pub wait_for_lock: bool,
    pub chain_hash: Option<Hash256>,
    pub funding_lock: Option<ScriptTemplate>,
    pub commitment_lock: Option<ScriptTemplate>,
    pub funding_confirmations: Option<u64>,
    pub settle_confirmations: Option<u64>,
    pub poll_interval_ms: Option<u64>,
}

impl NodeOptions {
    pub fn from_json(value: &Value) -> Result<Self, ApiError> {
        let map = value
            .as_object()
            .ok_or_else(|| ApiError::invalid("options", "expected an object"))?;
        refuse_unknown_keys(map, OPTION_KEYS, "an option of FundingNode.open")?;
        Ok(Self {
            ckb_rpc_url: required_string(map, "ckbRpcUrl")?,
            peer_url: required_string(map, "peerUrl")?,
            peer_pubkey: node_id(map, "peerPubkey")?,
            db_name: optional(map, "dbName", |v| {
                let name = string(v, "dbName")?;
                if name.is_empty() || name.chars().count() > MAX_DB_NAME_CHARS {
                    return Err(ApiError::invalid(
                        "dbName",
                        format!("must be 1 to {MAX_DB_NAME_CHARS} characters"),
                    ));
                }
                Ok(name.to_owned())
            })?,
            external_funding_timeout_ms: optional(map, "externalFundingTimeoutSeconds", |v| {
                whole_number(v, "externalFundingTimeoutSeconds", TIMEOUT_SECONDS).map(|s| s * 1_000)
            })?,
            node_secret: optional(map, "nodeSecretKey", |v| {
                let bytes: [u8; 32] = decode_hex(string(v, "nodeSecretKey")?)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ApiError::invalid("nodeSecretKey", "expected 32 bytes of 0x-hex"))?;
                NodeSecret::from_bytes(bytes)
                    .ok_or_else(|| ApiError::invalid("nodeSecretKey", "not a valid secp256k1 key"))
            })?,
            wait_for_lock: optional(map, "waitForLock", |v| {
                v.as_bool()
                    .ok_or_else(|| ApiError::invalid("waitForLock", "expected true or false"))
            })?
            .unwrap_or(false),
            chain_hash: optional(map, "chainHash", |v| {
                Hash256::from_hex(string(v, "chainHash")?).map_err(|e| ApiError::invalid("chainHash", e))
            })?,
            funding_lock: optional(map, "fundingLock", |v| script_template(v, "fundingLock"))?,
            commitment_lock: optional(map, "commitmentLock", |v| script_template(v, "commitmentLock"))?,
            funding_confirmations: optional(map, "fundingConfirmations", |v| {
                whole_number(v, "fundingConfirmations", FUNDING_CONFIRMATIONS)
            })?,
            settle_confirmations: optional(map, "settleConfirmations", |v| {
                whole_number(v, "settleConfirmations", SETTLE_CONFIRMATIONS)
            })?,
            poll_interval_ms: optional(map, "pollIntervalMs", |v| {
                whole_number(v, "pollIntervalMs", POLL_INTERVAL_MS)
            })?,
        })
    }
}

impl NodeOptions {
    /// The URLs are ones `fetch` and `WebSocket` can use: `http(s)://` for
    /// the CKB node, `ws(s)://` for the counterparty. (A host that brings its
    /// own adapters, through `FundingNode::open_with`, may name them otherwise.)
    pub fn check_urls(&self) -> Result<(), ApiError> {
        check_scheme("ckbRpcUrl", &self.ckb_rpc_url, &["http://", "https://"])?;
        check_scheme("peerUrl", &self.peer_url, &["ws://", "wss://"])
    }
}

/// Refuses any key not in `known`, naming it.
pub fn refuse_unknown_keys(map: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), ApiError> {
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(ApiError::invalid(unknown, format!("not {what}"))),
        None => Ok(()),
    }
}

fn optional<T>(
    map: &Map<String, Value>,
    name: &str,
    read: impl FnOnce(&Value) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value).map(Some),
    }
}

fn string<'a>(value: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| ApiError::invalid(name, "expected a string"))
}

fn required_string(map: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    let value = map
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid(name, "required"))?;
    let text = string(value, name)?;
    if text.is_empty() {
        return Err(ApiError::invalid(name, "must not be empty"));
    }
    Ok(text.to_owned())
}

fn check_scheme(name: &str, url: &str, schemes: &[&str]) -> Result<(), ApiError> {
    let has_host = |scheme: &str| url.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty());
    if schemes.iter().any(|scheme| has_host(scheme)) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            name,
            format!("{url:?} is not a {} URL", schemes.join(" or ")),
        ))
    }
}

fn node_id(map: &Map<String, Value>, name: &str) -> Result<NodeId, ApiError> {
    let value = map.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
        ApiError::invalid(
            name,
            "required: the counterparty's node id, which the encrypted handshake must meet",
        )
    })?;
    let key = Pubkey::from_hex(string(value, name)?).map_err(|e| ApiError::invalid(name, e))?;
    parse_pubkey(&key).ok_or_else(|| ApiError::invalid(name, "not a valid compressed secp256k1 public key"))?;
    Ok(key)
}

/// A JSON number that is a whole number within `range`, however it is
/// written (`300`, `300.0`, `3e2`).
fn whole_number(value: &Value, name: &str, (min, max): (u64, u64)) -> Result<u64, ApiError> {
    let out_of_range = || ApiError::invalid(name, format!("must be a whole number from {min} to {max}"));
    match value {
        Value::Number(number) => number
            .as_whole_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(out_of_range),
        _ => Err(out_of_range()),
    }
}

/// A deployment file: `{ "fundingLock": {…}, "commitmentLock": {…} }`, each
/// as in [`NodeOptions`]. The counterparty reads the same shape the wallet
/// takes, so one file configures both sides of a dev chain.
pub fn parse_contracts(value: &Value) -> Result<(ScriptTemplate, ScriptTemplate), ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("contracts", "expected { fundingLock, commitmentLock }"))?;
    refuse_unknown_keys(map, &["fundingLock", "commitmentLock"], "a key of the contracts file")?;
    let lock = |key: &str| {
        map.get(key)
            .ok_or_else(|| ApiError::invalid(key, "required"))
            .and_then(|value| script_template(value, key))
    };
    Ok((lock("fundingLock")?, lock("commitmentLock")?))
}

fn script_template(value: &Value, name: &str) -> Result<ScriptTemplate, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid(name, "expected { code_hash, hash_type }"))?;
    refuse_unknown_keys(
        map,
        &["code_hash", "hash_type", "cell_deps"],
        &format!("a key of {name}"),
    )?;
    let field = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(&format!("{name}.{key}"), "required string"))
    };
    let code_hash =
        Hash256::from_hex(field("code_hash")?).map_err(|e| ApiError::invalid(&format!("{name}.code_hash"), e))?;
    let hash_type = match field("hash_type")? {
        "type" => HashType::Type,
        "data" => HashType::Data,
        "data1" => HashType::Data1,
        "data2" => HashType::Data2,
        other => {
            return Err(ApiError::invalid(
                &format!("{name}.hash_type"),
                format!("{other:?} is not type, data, data1 or data2"),
            ))
        }
    };
    let cell_deps = match map.get("cell_deps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(deps)) => {
            crate::flow::limits::check_lock_cell_deps("cell_deps", deps.len())
                .map_err(|e| ApiError::invalid(&format!("{name}.cell_deps"), e.reason))?;
            deps.iter()
                .enumerate()
                .map(|(i, dep)| {
                    crate::tx::json::parse_cell_dep(dep, &format!("{name}.cell_deps[{i}]")).map_err(ApiError::from)
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(ApiError::invalid(&format!("{name}.cell_deps"), "expected an array")),
    };
    Ok(ScriptTemplate {
        code_hash,
        hash_type,
        cell_deps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;
    use serde_json::{json, Value};

    const PEER: &str = "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    fn base() -> Value {
        json!({ "ckbRpcUrl": "http://127.0.0.1:8114", "peerUrl": "ws://127.0.0.1:8230", "peerPubkey": PEER })
    }

    fn with(key: &str, value: Value) -> Result<NodeOptions, ApiError> {
        let mut options = base();
        options[key] = value;
        NodeOptions::from_json(&options.into())
    }

    /// The option is refused with INVALID_PARAMS and a message naming it.
    fn refused(key: &str, value: Value) {
        let error = with(key, value.clone()).expect_err(&format!("{key} = {value} was taken"));
        assert_eq!(error.code, ErrorCode::InvalidParams, "{key}: {error}");
        assert!(error.message.contains(key), "{key} = {value}: {error}");
    }

    #[test]
    fn a_minimal_set_of_options_is_read() {
        let options = NodeOptions::from_json(&base().into()).unwrap();
        assert_eq!(options.peer_pubkey, Pubkey::from_hex(PEER).unwrap());
        assert!(options.external_funding_timeout_ms.is_none() && !options.wait_for_lock);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        refused("externalFundingTimeoutSecond", json!(5));
        refused("peerPubKey", json!(PEER));
        let error = NodeOptions::from_json(&json!("ws://x").into()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParams);
    }

    /// Read, then checked as `FundingNode.open` checks its URLs.
    fn url_refused(key: &str, value: Value) {
        let error = with(key, value.clone())
            .and_then(|o| o.check_urls())
            .expect_err(&format!("{key} = {value}"));
        assert_eq!(error.code, ErrorCode::InvalidParams);
        assert!(error.message.contains(key), "{key} = {value}: {error}");
    }

    #[test]
    fn ckb_rpc_url_is_required_and_http() {
        let mut options = base();
        options.as_object_mut().unwrap().remove("ckbRpcUrl");
        assert!(NodeOptions::from_json(&options.into())
            .unwrap_err()
            .message
            .contains("ckbRpcUrl"));
        url_refused("ckbRpcUrl", json!("ws://127.0.0.1:8114"));
        url_refused("ckbRpcUrl", json!("http://"));
        refused("ckbRpcUrl", json!(8114));
        refused("ckbRpcUrl", json!(""));
        assert!(with("ckbRpcUrl", json!("https://testnet.ckb.dev/rpc"))
            .unwrap()
            .check_urls()
            .is_ok());
    }

    #[test]
    fn peer_url_is_required_and_a_websocket() {
        url_refused("peerUrl", json!("http://127.0.0.1:8230"));
        refused("peerUrl", json!(null));
        assert!(with("peerUrl", json!("wss://hub.example/fiber"))
            .unwrap()
            .check_urls()
            .is_ok());
    }

    #[test]
    fn peer_pubkey_is_required_and_a_curve_point() {
        refused("peerPubkey", json!(null));
        refused("peerPubkey", json!("0x02"));
        // 33 bytes, right prefix, but no point on the curve has this x.
        refused("peerPubkey", json!(format!("0x02{}", "ff".repeat(32))));
    }

    #[test]
    fn db_name_is_a_short_non_empty_string() {
        refused("dbName", json!(""));
        refused("dbName", json!("x".repeat(MAX_DB_NAME_CHARS + 1)));
        refused("dbName", json!(7));
        assert_eq!(
            with("dbName", json!("wallet-1")).unwrap().db_name.as_deref(),
            Some("wallet-1")
        );
    }

    #[test]
    fn external_funding_timeout_seconds_is_a_whole_number_in_range() {
        for bad in [
            json!(-5),
            json!(0),
            json!(1e300),
            json!(2.5),
            json!("300"),
            json!(86_401),
        ] {
            refused("externalFundingTimeoutSeconds", bad);
        }
        let options = with("externalFundingTimeoutSeconds", json!(5)).unwrap();
        assert_eq!(options.external_funding_timeout_ms, Some(5_000));
        assert!(with("externalFundingTimeoutSeconds", json!(86_400)).is_ok());
    }

    #[test]
    fn node_secret_key_is_32_bytes_of_a_valid_key() {
        refused("nodeSecretKey", json!("0x1234"));
        refused("nodeSecretKey", json!(format!("0x{}", "00".repeat(32))));
        refused("nodeSecretKey", json!(format!("0x{}", "ff".repeat(32))));
        let options = with("nodeSecretKey", json!(format!("0x{}", "11".repeat(32)))).unwrap();
        assert!(options.node_secret.is_some());
    }

    #[test]
    fn wait_for_lock_is_a_boolean() {
        refused("waitForLock", json!("yes"));
        refused("waitForLock", json!(1));
        assert!(with("waitForLock", json!(true)).unwrap().wait_for_lock);
    }

    #[test]
    fn chain_hash_is_32_bytes_of_hex() {
        refused("chainHash", json!("0x10"));
        refused("chainHash", json!(true));
        assert!(with("chainHash", json!(format!("0x{}", "ab".repeat(32)))).is_ok());
    }

    #[test]
    fn funding_and_commitment_locks_are_checked_key_by_key() {
        for key in ["fundingLock", "commitmentLock"] {
            refused(key, json!("0x00"));
            refused(
                key,
                json!({ "code_hash": format!("0x{}", "11".repeat(32)), "hash_type": "typ" }),
            );
            refused(key, json!({ "code_hash": "0x11", "hash_type": "type" }));
            refused(
                key,
                json!({ "code_hash": format!("0x{}", "11".repeat(32)), "hash_type": "type", "args": "0x" }),
            );
            assert!(with(
                key,
                json!({ "code_hash": format!("0x{}", "11".repeat(32)), "hash_type": "data1" })
            )
            .is_ok());
        }
    }

    /// A third dep would make the commitment and closing txs pay less than
    /// their fee rate; two (the lock's code and ckb-auth) are taken.
    #[test]
    fn a_lock_names_at_most_two_cell_deps() {
        let dep =
            json!({ "out_point": { "tx_hash": format!("0x{}", "22".repeat(32)), "index": "0x0" }, "dep_type": "code" });
        for key in ["fundingLock", "commitmentLock"] {
            let lock = |deps: usize| json!({ "code_hash": format!("0x{}", "11".repeat(32)), "hash_type": "type", "cell_deps": vec![dep.clone(); deps] });
            let error = with(key, lock(3)).expect_err("three deps were taken");
            assert_eq!(error.code, ErrorCode::InvalidParams);
            assert!(error.message.contains(&format!("{key}.cell_deps")), "{error}");
            assert_eq!(with(key, lock(2)).unwrap_or_else(|e| panic!("{e}")).db_name, None);
        }
    }

    #[test]
    fn funding_confirmations_is_a_whole_number_in_range() {
        for bad in [json!(0), json!(-1), json!(101), json!(1.5), json!(f64::MAX)] {
            refused("fundingConfirmations", bad);
        }
        assert_eq!(
            with("fundingConfirmations", json!(1)).unwrap().funding_confirmations,
            Some(1)
        );
    }

    #[test]
    fn settle_confirmations_is_a_whole_number_in_range() {
        for bad in [json!(0), json!(10_001), json!(2.5), json!("24")] {
            refused("settleConfirmations", bad);
        }
        assert_eq!(
            with("settleConfirmations", json!(10_000)).unwrap().settle_confirmations,
            Some(10_000)
        );
    }

    #[test]
    fn poll_interval_ms_is_a_whole_number_in_range() {
        for bad in [json!(0), json!(9), json!(600_001), json!(-50), json!("50")] {
            refused("pollIntervalMs", bad);
        }
        assert_eq!(with("pollIntervalMs", json!(10)).unwrap().poll_interval_ms, Some(10));
    }

    #[test]
    fn the_published_contracts_apply_only_on_their_own_chain() {
        let [testnet, mainnet] = known_deployments();
        let (funding, commitment) = contracts_for_chain(&testnet.chain_hash, None, None).unwrap();
        assert_eq!(
            (funding, commitment),
            (testnet.funding_lock.clone(), testnet.commitment_lock.clone())
        );
        let (funding, _) = contracts_for_chain(&mainnet.chain_hash, None, None).unwrap();
        assert_eq!(funding, mainnet.funding_lock);

        let dev_chain = Hash256([0xcc; 32]);
        let error = contracts_for_chain(&dev_chain, None, None).unwrap_err();
        assert!(error.message.contains("fundingLock"), "{error}");
        let error = contracts_for_chain(&dev_chain, Some(testnet.funding_lock.clone()), None).unwrap_err();
        assert!(error.message.contains("commitmentLock"), "{error}");
        let given = ScriptTemplate::type_hash([7; 32]);
        let (funding, commitment) = contracts_for_chain(&dev_chain, Some(given.clone()), Some(given.clone())).unwrap();
        assert_eq!((funding, commitment), (given.clone(), given));
    }
}
