//! The counterparty: the acceptor role for many browsers at once, over
//! WebSocket, with its channels in redb. `fiber-counterparty` is a thin `main`
//! around [`CounterpartyConfig::from_args`] and [`run`].
//!
//! Every flag has an environment fallback (`--data-dir` or
//! `FIBER_COUNTERPARTY_DATA_DIR`, and so on; see [`FLAGS`]). On start it
//! prints `node_id=0x…` and `listening=ws://…` on stdout and writes
//! `<data-dir>/node_id`. It can be killed at any moment: on restart the
//! driver restores every channel from redb and re-arms its deadlines, and
//! browsers reconnect and bring their channels up to date.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ckb_types::core::DepType;
use ckb_types::packed;
use ckb_types::prelude::*;
use k256::ecdsa::SigningKey;
use serde_json::json;

use super::http_rpc::{call_json, genesis_default_lock_dep_group, HttpTransport};
use super::platform::{generate_node_secret, OsEntropy, TokioPlatform};
use super::redb_store::RedbStore;
use super::ws_connection::ConnectionTimings;
use super::ws_server::WsServer;
use crate::api::options::contracts_for_chain;
use crate::chain::client::{ChainClient, ChainResult};
use crate::chain::rpc::RpcChainClient;
use crate::chain::{LiveCell, ResolvedCell, TxReport};
use crate::crypto::keys::NodeSecret;
use crate::flow::config::{DEFAULT_ACCEPTOR_GRACE_MS, DEFAULT_FUNDING_CONFIRMATIONS, DEFAULT_SETTLE_CONFIRMATIONS};
use crate::flow::{AcceptorConfig, Event, NodeConfig};
use crate::primitives::{decode_hex, Hash256, NodeId};
use crate::runtime::{inbox, start, DriverEvent, DriverHandle, DriverParts, DriverSettings, PeerLink};
use crate::tx::default_lock;
use crate::tx::script::ScriptTemplate;
use crate::wire::FiberMessage;

/// The exit code for a configuration or start-up failure.
pub const EXIT_BAD_CONFIG: i32 = 2;
/// The exit code when the running node stops by itself (its driver ended).
pub const EXIT_DRIVER_STOPPED: i32 = 1;

/// Where the node key lives in the store's `meta` table.
const NODE_SECRET_META: &str = "node_secret";
const DATABASE_FILE: &str = "channels.redb";
const NODE_ID_FILE: &str = "node_id";
/// How long one RPC call at start may take.
const STARTUP_RPC_TIMEOUT_MS: u64 = 10_000;

/// A flag, its environment fallback, and what it means.
pub struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    pub value: &'static str,
    pub help: &'static str,
}

/// Every flag `fiber-counterparty` takes.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--min-free-cells",
        env: "FIBER_COUNTERPARTY_MIN_FREE_CELLS",
        value: "N",
        help: "at start, split the wallet's largest cell until it has N cells of 2,000 CKB, to fund N channels at once [default: 0]",
    },
    Flag {
        name: "--listen",
        env: "FIBER_COUNTERPARTY_LISTEN",
        value: "ADDR",
        help: "WebSocket listen address [default: 127.0.0.1:8230]",
    },
    Flag {
        name: "--data-dir",
        env: "FIBER_COUNTERPARTY_DATA_DIR",
        value: "DIR",
        help: "channel database and node key (created on first start) [required]",
    },
    Flag {
        name: "--ckb-rpc",
        env: "FIBER_COUNTERPARTY_CKB_RPC",
        value: "URL",
        help: "CKB node JSON-RPC with the indexer [default: http://127.0.0.1:8114]",
    },
    Flag {
        name: "--wallet-key",
        env: "FIBER_COUNTERPARTY_WALLET_KEY",
        value: "HEX",
        help: "0x-hex secret key of the wallet that adds the reserve (or --wallet-key-file)",
    },
    Flag {
        name: "--wallet-key-file",
        env: "FIBER_COUNTERPARTY_WALLET_KEY_FILE",
        value: "PATH",
        help: "file holding the wallet's 0x-hex secret key",
    },
    Flag {
        name: "--wallet-cell-dep",
        env: "FIBER_COUNTERPARTY_WALLET_CELL_DEP",
        value: "TX_HASH:INDEX",
        help: "the default lock's dep group [default: genesis tx 1 output 0]",
    },
    Flag {
        name: "--funding-lock-code-hash",
        env: "FIBER_COUNTERPARTY_FUNDING_LOCK_CODE_HASH",
        value: "HEX",
        help: "funding-lock contract, hash_type type [default: Fiber's, on testnet and mainnet only]",
    },
    Flag {
        name: "--commitment-lock-code-hash",
        env: "FIBER_COUNTERPARTY_COMMITMENT_LOCK_CODE_HASH",
        value: "HEX",
        help: "commitment-lock contract, hash_type type [default: Fiber's, on testnet and mainnet only]",
    },
    Flag {
        name: "--contracts",
        env: "FIBER_COUNTERPARTY_CONTRACTS",
        value: "FILE",
        help: "JSON { fundingLock, commitmentLock }, each { code_hash, hash_type, cell_deps }, as the wallet's options take; instead of the two code-hash flags, and needed to close channels on a dev chain",
    },
    Flag {
        name: "--chain-hash",
        env: "FIBER_COUNTERPARTY_CHAIN_HASH",
        value: "HEX",
        help: "genesis hash [default: asked of the CKB node]",
    },
    Flag {
        name: "--auto-accept-amount",
        env: "FIBER_COUNTERPARTY_AUTO_ACCEPT_AMOUNT",
        value: "SHANNONS",
        help: "CKB added to each channel beyond the reserve [default: 0]",
    },
    Flag {
        name: "--confirmations",
        env: "FIBER_COUNTERPARTY_CONFIRMATIONS",
        value: "N",
        help: "confirmations before ChannelReady [default: 3]",
    },
    Flag {
        name: "--settle-confirmations",
        env: "FIBER_COUNTERPARTY_SETTLE_CONFIRMATIONS",
        value: "N",
        help: "confirmations before a closed channel's keys are wiped, at least --confirmations [default: 24]",
    },
    Flag {
        name: "--timeout-seconds",
        env: "FIBER_COUNTERPARTY_TIMEOUT_SECONDS",
        value: "N",
        help: "external-funding timeout; the acceptor adds 60 s of grace [default: 300]",
    },
    Flag {
        name: "--force-close-after-seconds",
        env: "FIBER_COUNTERPARTY_FORCE_CLOSE_AFTER_SECONDS",
        value: "N",
        help: "force-close a funded channel whose peer has been away this long, so the reserve comes back [default: never]",
    },
    Flag {
        name: "--poll-interval-ms",
        env: "FIBER_COUNTERPARTY_POLL_INTERVAL_MS",
        value: "MS",
        help: "how often funding txs are looked up [default: 1000]",
    },
    Flag {
        name: "--misbehave",
        env: "FIBER_COUNTERPARTY_MISBEHAVE",
        value: "HOW",
        help: "play a hostile counterparty, for tests only: withhold-funding never sends its tx_signatures nor broadcasts any tx, so a browser whose witnesses went first is left with a funding tx only a cancel tx ends [default: off]",
    },
    Flag {
        name: "--log",
        env: "FIBER_COUNTERPARTY_LOG",
        value: "LEVEL",
        help: "error, warn, info or debug [default: info; RUST_LOG when neither is set]",
    },
];

/// Why the counterparty did not start. Printed as one line; exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<CounterpartyConfig>),
    Help,
}

/// Everything `fiber-counterparty` is configured with.
#[derive(Clone)]
pub struct CounterpartyConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub ckb_rpc: String,
    /// Secret; never printed (see the `Debug` impl).
    pub wallet_key: [u8; 32],
    pub wallet_cell_dep: Option<packed::CellDep>,
    /// `None`: Fiber's deployment on the chain (testnet or mainnet only).
    pub funding_lock: Option<ScriptTemplate>,
    pub commitment_lock: Option<ScriptTemplate>,
    pub chain_hash: Option<Hash256>,
    pub auto_accept_amount: u64,
    /// Split the wallet's largest cell at start until it has this many cells.
    pub min_free_cells: u64,
    pub confirmations: u64,
    pub settle_confirmations: u64,
    pub timeout_seconds: u64,
    pub poll_interval_ms: u64,
    /// `None`: never force-close a channel whose peer went away.
    pub force_close_after_seconds: Option<u64>,
    /// `None`: `RUST_LOG`, else info.
    pub log: Option<log::LevelFilter>,
    /// `None`: an honest counterparty.
    pub misbehave: Option<Misbehaviour>,
}

/// How a counterparty started with `--misbehave` cheats, so the end-to-end
/// tests can meet a hostile peer over the real link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Never sends `tx_signatures` and never broadcasts a tx: a browser that
    /// sent its witnesses first holds a funding tx it cannot complete, which
    /// this counterparty could still complete later; only a cancel tx gets
    /// the browser's cells back.
    WithholdFunding,
}

impl std::fmt::Debug for CounterpartyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterpartyConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("ckb_rpc", &self.ckb_rpc)
            .field("wallet_key", &"<secret>")
            .field("wallet_cell_dep", &self.wallet_cell_dep)
            .field("funding_lock", &self.funding_lock)
            .field("commitment_lock", &self.commitment_lock)
            .field("chain_hash", &self.chain_hash)
            .field("auto_accept_amount", &self.auto_accept_amount)
            .field("min_free_cells", &self.min_free_cells)
            .field("confirmations", &self.confirmations)
            .field("settle_confirmations", &self.settle_confirmations)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("force_close_after_seconds", &self.force_close_after_seconds)
            .field("log", &self.log)
            .field("misbehave", &self.misbehave)
            .finish()
    }
}

/// The usage text.
pub fn usage() -> String {
    let mut text = String::from(
        "fiber-counterparty: accepts Fiber channels funded externally from browsers, over WebSocket.\n\n\
         Usage: fiber-counterparty --data-dir DIR (--wallet-key HEX | --wallet-key-file PATH) [options]\n\n\
         Every flag falls back to the environment variable shown.\n\n",
    );
    for flag in FLAGS {
        let left = format!("{} {}", flag.name, flag.value);
        text.push_str(&format!("  {left:<42} {}\n  {:<42} env {}\n", flag.help, "", flag.env));
    }
    text.push_str("\nOn start it prints node_id=0x… and listening=ws://… on stdout.\n");
    text
}

impl CounterpartyConfig {
    /// Reads flags (`--name value` or `--name=value`), falling back to `env`.
    pub fn from_args(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, StartError> {
        let mut given: Vec<(&'static Flag, String)> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Ok(Command::Help);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let flag = FLAGS
                .iter()
                .find(|flag| flag.name == name)
                .ok_or_else(|| StartError(format!("unknown argument {name:?}; see --help")))?;
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| StartError(format!("{} needs a value ({})", flag.name, flag.value)))?,
            };
            given.retain(|(f, _)| f.name != flag.name);
            given.push((flag, value));
        }
        let lookup = |name: &str| -> Option<(String, String)> {
            let flag = FLAGS.iter().find(|flag| flag.name == name).expect("a known flag");
            // An empty value counts as not given, for flags as for variables.
            match given.iter().find(|(f, _)| f.name == name) {
                Some((_, value)) if value.is_empty() => None,
                Some((_, value)) => Some((value.clone(), flag.name.to_owned())),
                None => env(flag.env)
                    .filter(|value| !value.is_empty())
                    .map(|value| (value, flag.env.to_owned())),
            }
        };

        let data_dir = lookup("--data-dir")
            .map(|(value, _)| PathBuf::from(value))
            .ok_or_else(|| StartError("--data-dir (or FIBER_COUNTERPARTY_DATA_DIR) is required".into()))?;
        let wallet_key = match (lookup("--wallet-key"), lookup("--wallet-key-file")) {
            (Some(_), Some(_)) => {
                return Err(StartError("give --wallet-key or --wallet-key-file, not both".into()));
            }
            (Some((text, source)), None) => parse_secret_key(&text, &source)?,
            (None, Some((path, source))) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| StartError(format!("cannot read the wallet key file {path} ({source}): {e}")))?;
                parse_secret_key(text.trim(), &format!("the wallet key file {path}"))?
            }
            (None, None) => {
                return Err(StartError(
                    "--wallet-key or --wallet-key-file (or FIBER_COUNTERPARTY_WALLET_KEY[_FILE]) is required".into(),
                ));
            }
        };
        let code_hash = |name: &str| -> Result<Option<ScriptTemplate>, StartError> {
            let Some((text, source)) = lookup(name) else {
                return Ok(None);
            };
            let hash = Hash256::from_hex(&text)
                .map_err(|e| StartError(format!("{source} is not a 32-byte 0x-hex code hash: {e}")))?;
            Ok(Some(ScriptTemplate::type_hash(hash.0)))
        };
        let number = |name: &str, default: u64| -> Result<u64, StartError> {
            match lookup(name) {
                None => Ok(default),
                Some((text, source)) => parse_number(&text)
                    .ok_or_else(|| StartError(format!("{source} must be a whole number, got {text:?}"))),
            }
        };
        let (funding_lock, commitment_lock) = match lookup("--contracts") {
            None => (
                code_hash("--funding-lock-code-hash")?,
                code_hash("--commitment-lock-code-hash")?,
            ),
            Some(_)
                if lookup("--funding-lock-code-hash").is_some() || lookup("--commitment-lock-code-hash").is_some() =>
            {
                return Err(StartError(
                    "give --contracts or the two code-hash flags, not both".into(),
                ));
            }
            Some((path, source)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| StartError(format!("cannot read the contracts file {path} ({source}): {e}")))?;
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| StartError(format!("the contracts file {path} is not JSON: {e}")))?;
                let (funding, commitment) = crate::api::options::parse_contracts(&value.into())
                    .map_err(|e| StartError(format!("the contracts file {path}: {e}")))?;
                (Some(funding), Some(commitment))
            }
        };
        let config = CounterpartyConfig {
            listen: lookup("--listen").map_or_else(|| "127.0.0.1:8230".to_owned(), |(v, _)| v),
            data_dir,
            ckb_rpc: lookup("--ckb-rpc").map_or_else(|| "http://127.0.0.1:8114".to_owned(), |(v, _)| v),
            wallet_key,
            wallet_cell_dep: lookup("--wallet-cell-dep")
                .map(|(text, source)| parse_cell_dep(&text, &source))
                .transpose()?,
            funding_lock,
            commitment_lock,
            chain_hash: lookup("--chain-hash")
                .map(|(text, source)| {
                    Hash256::from_hex(&text)
                        .map_err(|e| StartError(format!("{source} is not a 32-byte 0x-hex hash: {e}")))
                })
                .transpose()?,
            auto_accept_amount: number("--auto-accept-amount", 0)?,
            min_free_cells: number("--min-free-cells", 0)?,
            confirmations: number("--confirmations", DEFAULT_FUNDING_CONFIRMATIONS)?,
            settle_confirmations: number("--settle-confirmations", DEFAULT_SETTLE_CONFIRMATIONS)?,
            timeout_seconds: number("--timeout-seconds", 300)?,
            poll_interval_ms: number("--poll-interval-ms", 1_000)?,
            force_close_after_seconds: lookup("--force-close-after-seconds")
                .map(|(text, source)| {
                    parse_number(&text).filter(|n| *n > 0).ok_or_else(|| {
                        StartError(format!(
                            "{source} must be a whole number of seconds, at least 1, got {text:?}"
                        ))
                    })
                })
                .transpose()?,
            log: lookup("--log")
                .map(|(text, source)| match text.to_ascii_lowercase().as_str() {
                    "error" => Ok(log::LevelFilter::Error),
                    "warn" => Ok(log::LevelFilter::Warn),
                    "info" => Ok(log::LevelFilter::Info),
                    "debug" => Ok(log::LevelFilter::Debug),
                    _ => Err(StartError(format!(
                        "{source} must be error, warn, info or debug, got {text:?}"
                    ))),
                })
                .transpose()?,
            misbehave: lookup("--misbehave")
                .map(|(text, source)| match text.as_str() {
                    "withhold-funding" => Ok(Misbehaviour::WithholdFunding),
                    _ => Err(StartError(format!("{source} must be withhold-funding, got {text:?}"))),
                })
                .transpose()?,
        };
        if config.confirmations == 0 {
            return Err(StartError("--confirmations must be at least 1".into()));
        }
        if config.settle_confirmations == 0 {
            return Err(StartError("--settle-confirmations must be at least 1".into()));
        }
        if config.timeout_seconds == 0 {
            return Err(StartError("--timeout-seconds must be at least 1".into()));
        }
        if config.poll_interval_ms == 0 {
            return Err(StartError("--poll-interval-ms must be at least 1".into()));
        }
        Ok(Command::Run(Box::new(config)))
    }
}

/// Reads a secp256k1 secret key; the error never quotes the text (it may be
/// a key with a typo).
fn parse_secret_key(text: &str, source: &str) -> Result<[u8; 32], StartError> {
    let text = text.trim();
    let text = if text.starts_with("0x") || text.starts_with("0X") {
        text.to_owned()
    } else {
        format!("0x{text}")
    };
    let bad = || StartError(format!("{source} is not a 32-byte 0x-hex secp256k1 secret key"));
    let bytes: [u8; 32] = decode_hex(&text).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
    SigningKey::from_slice(&bytes).map_err(|_| bad())?;
    Ok(bytes)
}

/// `<tx_hash>:<index>`, index decimal or 0x-hex: a dep group.
fn parse_cell_dep(text: &str, source: &str) -> Result<packed::CellDep, StartError> {
    let bad = || StartError(format!("{source} must be <tx_hash>:<index>, got {text:?}"));
    let (hash, index) = text.rsplit_once(':').ok_or_else(bad)?;
    let hash = Hash256::from_hex(hash).map_err(|_| bad())?;
    let index = parse_number(index)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(bad)?;
    Ok(packed::CellDep::new_builder()
        .out_point(
            packed::OutPoint::new_builder()
                .tx_hash(hash.0.pack())
                .index(index)
                .build(),
        )
        .dep_type(DepType::DepGroup)
        .build())
}

/// Decimal, or `0x`-hex as in CKB's JSON.
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Logs to stderr: `--log` (or its variable), else `RUST_LOG`, else info.
/// Other crates log at warn and above only, unless `RUST_LOG` says otherwise.
pub fn init_logging(level: Option<log::LevelFilter>) {
    let mut builder = env_logger::Builder::new();
    builder.format(|out, record| {
        writeln!(
            out,
            "{} {:<5} {}: {}",
            utc_timestamp(super::platform::now_ms()),
            record.level(),
            record.target(),
            record.args()
        )
    });
    match (level, std::env::var("RUST_LOG")) {
        (None, Ok(directives)) if !directives.is_empty() => {
            builder.parse_filters(&directives);
        }
        (level, _) => {
            let level = level.unwrap_or(log::LevelFilter::Info);
            builder
                .filter_level(level.min(log::LevelFilter::Warn))
                .filter_module("fiber_funding", level)
                .filter_module("fiber_counterparty", level);
        }
    }
    let _ = builder.try_init();
}

/// `2025-01-31T12:34:56.789Z` from milliseconds since the epoch.
fn utc_timestamp(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1_000 % 60,
        rest % 1_000
    )
}

/// A running counterparty.
pub struct Running {
    pub handle: DriverHandle,
    pub node_id: crate::primitives::NodeId,
    pub listening: std::net::SocketAddr,
    pub server: Rc<WsServer>,
}

/// Size of the cells `--min-free-cells` creates: a channel's reserve plus room.
const WALLET_CELL_CAPACITY: u64 = 2_000 * 100_000_000;

/// Checks the CKB node, opens the store, loads or creates the node key,
/// listens, and starts the driver. Call inside a tokio `LocalSet`.
pub async fn start_counterparty(config: &CounterpartyConfig) -> Result<Running, StartError> {
    // The chain first: a wrong URL leaves nothing behind on disk.
    let transport = HttpTransport::new(config.ckb_rpc.clone());
    call_json(&transport, "get_tip_block_number", json!([]), STARTUP_RPC_TIMEOUT_MS)
        .await
        .map_err(|e| StartError(format!("cannot use the CKB node at {}: {e}", config.ckb_rpc)))?;
    let client = RpcChainClient::new(transport);
    let chain_hash = match config.chain_hash {
        Some(hash) => hash,
        None => client
            .genesis_hash()
            .await
            .map_err(|e| StartError(format!("cannot read the chain hash from {}: {e}", config.ckb_rpc)))?,
    };
    // Another chain's code hashes would lock channels under scripts that do not exist here.
    let (funding_lock, commitment_lock) =
        contracts_for_chain(&chain_hash, config.funding_lock.clone(), config.commitment_lock.clone()).map_err(|_| {
            StartError(format!(
                "chain {chain_hash} has no published Fiber deployment: give --funding-lock-code-hash and --commitment-lock-code-hash"
            ))
        })?;
    let (funding_lock, commitment_lock, unplaced) =
        crate::api::deployment::with_published_cell_deps(&client, &chain_hash, funding_lock, commitment_lock).await;
    for reason in unplaced {
        log::warn!("{reason}");
    }
    let wallet_cell_dep = match &config.wallet_cell_dep {
        Some(dep) => dep.clone(),
        None => genesis_default_lock_dep_group(client.transport(), STARTUP_RPC_TIMEOUT_MS)
            .await
            .map_err(|e| {
                StartError(format!(
                    "cannot find the default lock's dep group at {} (give --wallet-cell-dep): {e}",
                    config.ckb_rpc
                ))
            })?,
    };
    let store = open_data_dir(&config.data_dir)?;
    let node_secret = load_or_create_node_secret(&store)?;
    let node_id = node_secret.node_id();
    write_node_id(&config.data_dir, &node_id.to_string())?;

    let wallet_key = SigningKey::from_slice(&config.wallet_key).map_err(|_| StartError("bad wallet key".into()))?;
    let wallet_lock = default_lock::lock_script_for_key(wallet_key.verifying_key());
    if config.min_free_cells > 0 {
        let split = crate::native::wallet_cells::ensure_free_cells(
            &client,
            &wallet_key,
            &wallet_cell_dep,
            config.min_free_cells as usize,
            WALLET_CELL_CAPACITY,
            crate::flow::config::DEFAULT_FEE_RATE,
        )
        .await
        .map_err(|e| StartError(format!("cannot prepare {} wallet cells: {e}", config.min_free_cells)))?;
        if let Some(hash) = split {
            log::info!(
                "split the wallet's largest cell into {} cells: tx {hash}",
                config.min_free_cells
            );
        }
    }
    log::info!(
        "wallet lock args {}, chain {chain_hash}",
        crate::primitives::encode_hex(&wallet_lock.args().raw_data())
    );
    let node_config = NodeConfig {
        node_secret: node_secret.clone(),
        chain_hash,
        funding_lock,
        commitment_lock,
        external_funding_timeout_ms: config.timeout_seconds * 1_000,
        funding_confirmations: config.confirmations,
        settle_confirmations: config.settle_confirmations,
        acceptor: Some(AcceptorConfig {
            wallet_lock,
            wallet_cell_deps: vec![wallet_cell_dep],
            wallet_key: config.wallet_key,
            funding_amount: config.auto_accept_amount,
            grace_ms: DEFAULT_ACCEPTOR_GRACE_MS,
            force_close_after_ms: config.force_close_after_seconds.map(|s| s.saturating_mul(1_000)),
        }),
    };

    let (sender, receiver) = inbox();
    let server = WsServer::bind(
        &config.listen,
        node_secret,
        sender.clone(),
        ConnectionTimings::default(),
    )
    .await
    .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
    let listening = server.local_addr();
    let chain: Rc<dyn ChainClient> = Rc::new(client);
    let (link, chain): (Rc<dyn PeerLink>, Rc<dyn ChainClient>) = match config.misbehave {
        None => (server.clone(), chain),
        Some(how) => {
            log::warn!("misbehaving on purpose ({how:?}): for tests only");
            (
                Rc::new(MisbehavingLink {
                    inner: server.clone(),
                    how,
                }),
                Rc::new(MisbehavingChain { inner: chain, how }),
            )
        }
    };
    let parts = DriverParts {
        config: node_config,
        entropy: Box::new(OsEntropy),
        store,
        link,
        chain,
        platform: Rc::new(TokioPlatform),
        settings: DriverSettings {
            poll_interval_ms: config.poll_interval_ms,
            ..DriverSettings::default()
        },
        on_event: Box::new(log_event),
    };
    let (handle, unreadable) = start(parts, sender, receiver)
        .await
        .map_err(|e| StartError(format!("cannot restore the channels: {}", e)))?;
    for record in &unreadable {
        log::warn!("kept but not restored: {record}");
    }
    Ok(Running {
        handle,
        node_id,
        listening,
        server,
    })
}

/// The link of a counterparty started with `--misbehave`: drops what the
/// misbehaviour keeps back, sends the rest.
struct MisbehavingLink {
    inner: Rc<WsServer>,
    how: Misbehaviour,
}

impl PeerLink for MisbehavingLink {
    fn send(&self, peer: &NodeId, message: &FiberMessage) {
        match (self.how, message) {
            (Misbehaviour::WithholdFunding, FiberMessage::TxSignatures(_)) => {
                log::warn!("withholding tx_signatures of channel {}", message.channel_id());
            }
            _ => self.inner.send(peer, message),
        }
    }

    fn close(&self) {
        self.inner.close();
    }
}

/// The chain of a counterparty started with `--misbehave`: reads pass
/// through, and a tx it would broadcast is kept back while it says "sent".
struct MisbehavingChain {
    inner: Rc<dyn ChainClient>,
    how: Misbehaviour,
}

impl ChainClient for MisbehavingChain {
    fn live_cells(&self, lock: packed::Script) -> ChainResult<Vec<LiveCell>> {
        self.inner.live_cells(lock)
    }
    fn resolve_out_points(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<Option<ResolvedCell>>> {
        self.inner.resolve_out_points(out_points)
    }
    fn cells_with_type(&self, type_script: packed::Script, limit: u32) -> ChainResult<Vec<LiveCell>> {
        self.inner.cells_with_type(type_script, limit)
    }
    fn cells_live(&self, out_points: Vec<packed::OutPoint>) -> ChainResult<Vec<bool>> {
        self.inner.cells_live(out_points)
    }
    fn transaction_status(&self, tx_hash: Hash256) -> ChainResult<TxReport> {
        self.inner.transaction_status(tx_hash)
    }
    fn send_transaction(&self, tx: packed::Transaction) -> ChainResult<Hash256> {
        match self.how {
            Misbehaviour::WithholdFunding => {
                let hash = Hash256(crate::tx::parts::tx_hash(&tx));
                log::warn!("withholding tx {hash}");
                Box::pin(async move { Ok(hash) })
            }
        }
    }
    fn spender(
        &self,
        out_point: packed::OutPoint,
        lock: packed::Script,
    ) -> ChainResult<Option<(packed::Transaction, TxReport)>> {
        self.inner.spender(out_point, lock)
    }
}

/// Runs until SIGTERM or SIGINT, then closes cleanly. Prints the start-up
/// lines on stdout once listening.
/// `listening` turns true once it serves: an error after that is not a
/// start-up failure (the binary's exit code tells the two apart).
pub async fn run(config: CounterpartyConfig, listening: std::rc::Rc<std::cell::Cell<bool>>) -> Result<(), StartError> {
    let running = start_counterparty(&config).await?;
    listening.set(true);
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "node_id={}", running.node_id);
        let _ = writeln!(stdout, "listening=ws://{}", running.listening);
        let _ = stdout.flush();
    }
    log::info!("node {} listening on ws://{}", running.node_id, running.listening);
    tokio::select! {
        signal = wait_for_signal() => {
            log::info!("{signal}: closing");
            let _ = running.handle.close().await;
            // Lets the connections send their close frames.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok(())
        }
        () = running.handle.ended() => {
            // A bug ended the driver: serving connections with nothing behind
            // them would only make every browser wait; exit and be restarted.
            crate::runtime::PeerLink::close(running.server.as_ref());
            Err(StartError("the channel driver stopped unexpectedly; exiting so a supervisor restarts the node".into()))
        }
    }
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}

fn open_data_dir(dir: &Path) -> Result<RedbStore, StartError> {
    if dir.exists() && !dir.is_dir() {
        return Err(StartError(format!("--data-dir {} is not a directory", dir.display())));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| StartError(format!("cannot create the data dir {}: {e}", dir.display())))?;
    RedbStore::open(dir.join(DATABASE_FILE)).map_err(|e| StartError(e.to_string()))
}

/// The node key from the store, or a new one stored durably before use.
fn load_or_create_node_secret(store: &RedbStore) -> Result<NodeSecret, StartError> {
    match store
        .get_meta(NODE_SECRET_META)
        .map_err(|e| StartError(e.to_string()))?
    {
        Some(bytes) => {
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| StartError(format!("the node key in {} is damaged", store.path().display())))?;
            NodeSecret::from_bytes(bytes)
                .ok_or_else(|| StartError(format!("the node key in {} is damaged", store.path().display())))
        }
        None => {
            let secret = generate_node_secret();
            store
                .put_meta(NODE_SECRET_META, &secret.to_bytes())
                .map_err(|e| StartError(e.to_string()))?;
            log::info!("generated node key for {}", secret.node_id());
            Ok(secret)
        }
    }
}

/// `<data-dir>/node_id`, replaced atomically.
fn write_node_id(dir: &Path, node_id: &str) -> Result<(), StartError> {
    let path = dir.join(NODE_ID_FILE);
    let temporary = dir.join(format!("{NODE_ID_FILE}.tmp"));
    std::fs::write(&temporary, format!("{node_id}\n"))
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| StartError(format!("cannot write {}: {e}", path.display())))
}

/// What the operator sees of the channels.
fn log_event(event: DriverEvent) {
    match event {
        DriverEvent::Flow(Event::StateChanged {
            channel_id,
            state,
            close_reason,
            ..
        }) => match close_reason {
            Some(reason) => log::info!("channel={channel_id} state={state} reason={reason:?}"),
            None => log::info!("channel={channel_id} state={state}"),
        },
        DriverEvent::Flow(Event::PeerMessageRejected {
            channel_id,
            peer,
            message,
            reason,
        }) => log::warn!("channel={channel_id} refused {message} from {peer}: {reason}"),
        DriverEvent::Flow(Event::FundingTxRejected { channel_id, reason }) => {
            log::warn!("channel={channel_id} funding tx rejected: {reason}")
        }
        DriverEvent::Flow(Event::CancelTxRejected { channel_id, reason }) => {
            log::warn!("channel={channel_id} cancel tx rejected: {reason}")
        }
        DriverEvent::Flow(Event::CloseTxRejected { channel_id, reason }) => {
            log::warn!("channel={channel_id} close tx rejected: {reason}")
        }
        DriverEvent::Flow(Event::FundingConfirmedAfterAbort {
            channel_id,
            funding_tx_hash,
        }) => log::warn!("channel={channel_id} aborted, but its funding tx {funding_tx_hash} confirmed: it goes on"),
        DriverEvent::Flow(Event::CommitmentOnChain {
            channel_id,
            tx_hash,
            holder_is_local,
            claimable_at_epoch,
        }) => log::info!(
            "channel={channel_id} commitment {tx_hash} of {} committed; our share is claimable at epoch {}",
            if holder_is_local { "ours" } else { "the peer's" },
            serde_json::to_string(&crate::api::shapes::Epoch::from_full_value(claimable_at_epoch)).unwrap_or_default()
        ),
        DriverEvent::Flow(Event::FundingConfirmations {
            channel_id,
            confirmations,
            required,
        }) => log::debug!("channel={channel_id} funding tx confirmations={confirmations}/{required}"),
        DriverEvent::Flow(Event::AbortSettled { channel_id }) => {
            log::info!("channel={channel_id} aborted funding can no longer confirm; keys wiped")
        }
        DriverEvent::PeerConnected(_) | DriverEvent::PeerDisconnected(_) => {}
        DriverEvent::PeerUnavailable { reason, .. } => log::debug!("{reason}"),
        DriverEvent::ChainError(error) => log::warn!("{error}"),
        DriverEvent::StorageError(reason) => log::error!("storage: {reason}"),
        DriverEvent::UnreadableRecords(records) => {
            for record in records {
                log::warn!("kept but not restored: {record}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x63d86723e08f0f813a36ce6aa123bb2289d90680ae1e99d4de8cdb334553f24d";

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<CounterpartyConfig, StartError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args = args.iter().map(|a| a.to_string());
        match CounterpartyConfig::from_args(args, |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))? {
            Command::Run(config) => Ok(*config),
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_fill_everything_but_the_data_dir_and_the_wallet_key() {
        let config = parse(&["--data-dir", "/tmp/x", "--wallet-key", KEY], &[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8230");
        assert_eq!(config.ckb_rpc, "http://127.0.0.1:8114");
        assert_eq!(config.confirmations, 3);
        assert_eq!(config.settle_confirmations, 24);
        assert_eq!(config.timeout_seconds, 300);
        assert_eq!(config.poll_interval_ms, 1_000);
        assert_eq!(config.auto_accept_amount, 0);
        assert_eq!(config.chain_hash, None);
        assert!(config.wallet_cell_dep.is_none());
        assert_eq!(config.funding_lock, None, "Fiber's own on testnet and mainnet");
        assert_eq!(config.commitment_lock, None);
        assert_eq!(config.log, None);
        assert!(!format!("{config:?}").contains(&KEY[2..]), "Debug hides the key");
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_defaults() {
        let env = [
            ("FIBER_COUNTERPARTY_DATA_DIR", "/from/env"),
            ("FIBER_COUNTERPARTY_WALLET_KEY", KEY),
            ("FIBER_COUNTERPARTY_LISTEN", "0.0.0.0:9000"),
            ("FIBER_COUNTERPARTY_CONFIRMATIONS", "5"),
        ];
        let config = parse(&["--listen=127.0.0.1:1", "--auto-accept-amount", "0x174876e800"], &env).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.listen, "127.0.0.1:1");
        assert_eq!(config.confirmations, 5);
        assert_eq!(config.auto_accept_amount, 100_000_000_000);
        let dep = format!("0x{}:1", "ab".repeat(32));
        let config = parse(&["--wallet-cell-dep", &dep, "--log", "DEBUG"], &env).unwrap();
        let out_point = config.wallet_cell_dep.unwrap().out_point();
        assert_eq!(out_point.tx_hash().as_slice(), [0xab; 32]);
        assert_eq!(Unpack::<u32>::unpack(&out_point.index()), 1);
        assert_eq!(config.log, Some(log::LevelFilter::Debug));
    }

    #[test]
    fn bad_values_are_named_and_keys_never_quoted() {
        let error = parse(&["--data-dir", "d", "--wallet-key", "0xdeadbeef"], &[]).unwrap_err();
        assert!(
            error.0.contains("--wallet-key") && !error.0.contains("deadbeef"),
            "{error}"
        );
        let zero = format!("0x{}", "00".repeat(32));
        assert!(parse(&["--data-dir", "d", "--wallet-key", &zero], &[]).is_err());
        let error = parse(&["--wallet-key", KEY], &[]).unwrap_err();
        assert!(error.0.contains("--data-dir"), "{error}");
        let error = parse(
            &["--data-dir", "d", "--wallet-key", KEY, "--settle-confirmations", "0"],
            &[],
        )
        .unwrap_err();
        assert!(error.0.contains("--settle-confirmations"), "{error}");
        let error = parse(&["--data-dir", "d", "--wallet-key", KEY, "--log", "loud"], &[]).unwrap_err();
        assert!(error.0.contains("--log"), "{error}");
        let error = parse(
            &["--data-dir", "d", "--wallet-key", KEY, "--wallet-cell-dep", "0x12"],
            &[],
        )
        .unwrap_err();
        assert!(error.0.contains("<tx_hash>:<index>"), "{error}");
        let error = parse(&["--data-dir", "d", "--wallet-key", KEY, "--listen"], &[]).unwrap_err();
        assert!(error.0.contains("needs a value"), "{error}");
        let error = parse(&["--data-dir", "d", "--wallet-key", KEY, "--confirmations", "0"], &[]).unwrap_err();
        assert!(error.0.contains("--confirmations"), "{error}");
    }

    #[test]
    fn misbehaving_is_off_unless_named_and_an_unknown_kind_is_refused() {
        let honest = parse(&["--data-dir", "d", "--wallet-key", KEY], &[]).unwrap();
        assert_eq!(honest.misbehave, None);
        let hostile = parse(
            &["--data-dir", "d", "--wallet-key", KEY],
            &[("FIBER_COUNTERPARTY_MISBEHAVE", "withhold-funding")],
        )
        .unwrap();
        assert_eq!(hostile.misbehave, Some(Misbehaviour::WithholdFunding));
        let error = parse(&["--data-dir", "d", "--wallet-key", KEY, "--misbehave", "lie"], &[]).unwrap_err();
        assert!(
            error.0.contains("--misbehave") && error.0.contains("\"lie\""),
            "{error}"
        );
    }

    #[test]
    fn a_wallet_key_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("fiber-wallet-key-{}", std::process::id()));
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let path_text = path.to_str().unwrap();
        let config = parse(&["--data-dir", "d", "--wallet-key-file", path_text], &[]).unwrap();
        assert_eq!(crate::primitives::encode_hex(&config.wallet_key), KEY);
        let both = parse(
            &["--data-dir", "d", "--wallet-key-file", path_text, "--wallet-key", KEY],
            &[],
        );
        assert!(both.is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_contracts_file_names_both_locks_with_their_deps_and_excludes_the_code_hash_flags() {
        let path = std::env::temp_dir().join(format!("fiber-contracts-{}.json", std::process::id()));
        let contracts = crate::native::deploy::contracts_json(Hash256([0xcd; 32]));
        std::fs::write(&path, contracts.to_string()).unwrap();
        let file = path.to_str().unwrap();
        let config = parse(&["--data-dir", "d", "--wallet-key", KEY, "--contracts", file], &[]).unwrap();
        let funding = config.funding_lock.unwrap();
        assert_eq!(funding.cell_deps.len(), 2, "its code and ckb-auth");
        assert_eq!(config.commitment_lock.unwrap().cell_deps.len(), 2);
        let hash = format!("0x{}", "11".repeat(32));
        let both = parse(
            &[
                "--data-dir",
                "d",
                "--wallet-key",
                KEY,
                "--contracts",
                file,
                "--funding-lock-code-hash",
                &hash,
            ],
            &[],
        )
        .unwrap_err();
        assert!(both.0.contains("not both"), "{both}");
        std::fs::write(&path, r#"{ "fundingLock": {} }"#).unwrap();
        let bad = parse(&["--data-dir", "d", "--wallet-key", KEY, "--contracts", file], &[]).unwrap_err();
        assert!(bad.0.contains(file) && bad.0.contains("fundingLock"), "{bad}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn force_close_after_seconds_is_off_unless_given_and_never_zero() {
        let base = ["--data-dir", "d", "--wallet-key", KEY];
        assert_eq!(parse(&base, &[]).unwrap().force_close_after_seconds, None);
        let config = parse(&[&base[..], &["--force-close-after-seconds", "3600"]].concat(), &[]).unwrap();
        assert_eq!(config.force_close_after_seconds, Some(3_600));
        let error = parse(&[&base[..], &["--force-close-after-seconds", "0"]].concat(), &[]).unwrap_err();
        assert!(error.0.contains("--force-close-after-seconds"), "{error}");
    }

    #[test]
    fn log_timestamps_are_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_timestamp(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }
}
