//! `fiber-simchain` and `fiber-counterparty` as child processes, and the
//! browser's side natively: the real driver over the WebSocket client and the
//! HTTP transport. Shared by `tests/counterparty.rs` and the hub benchmark
//! (`examples/bench_hub.rs`), which pass the binaries' paths in: a test knows
//! them from `CARGO_BIN_EXE_*`, an example does not.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::api::options::known_deployments;
use fiber_funding::chain::client::ChainClient;
use fiber_funding::chain::rpc::RpcChainClient;
use fiber_funding::flow::{ChannelState, NodeConfig, OpenChannelParams};
use fiber_funding::native::http_rpc::{genesis_default_lock_dep_group, HttpTransport};
use fiber_funding::native::platform::{generate_node_secret, OsEntropy, TokioPlatform};
use fiber_funding::native::simchain::DEV_ACCOUNTS;
use fiber_funding::native::ws_client::{ClientSettings, WsClientLink};
use fiber_funding::primitives::{decode_hex, ChannelId, Hash256, NodeId, Pubkey};
use fiber_funding::runtime::{inbox, start, DriverEvent, DriverHandle, DriverParts, DriverSettings};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::script::ScriptTemplate;
use k256::ecdsa::SigningKey;

pub const CKB: u64 = 100_000_000;
pub const CONFIRMATIONS: &str = "2";
pub const POLL_MS: u64 = 100;
/// The user funds with dev account 0; the counterparty's wallet is dev account 1.
pub const USER: usize = 0;
pub const COUNTERPARTY_WALLET: usize = 1;

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("fiber-counterparty-{name}-{}-{nanos}", std::process::id()))
}

pub fn dev_key(index: usize) -> SigningKey {
    SigningKey::from_slice(&decode_hex(DEV_ACCOUNTS[index].secret_key).unwrap()).unwrap()
}

/// Where the two binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub simchain: PathBuf,
    pub counterparty: PathBuf,
}

/// Output lines of a child, gathered by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn gather(self, stream: impl std::io::Read + Send + 'static) -> Self {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.0.lock().unwrap().push(line);
            }
        });
        self
    }

    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// Calls `each` on every line gathered so far.
    pub fn for_each(&self, mut each: impl FnMut(&str)) {
        for line in self.0.lock().unwrap().iter() {
            each(line);
        }
    }

    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.0.lock().unwrap().iter().any(|line| line.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A running `fiber-simchain`, killed when dropped.
pub struct SimChain {
    pub child: Child,
    pub rpc: String,
}

impl SimChain {
    /// Each dev account starts with `cells_per_account` cells of 10,000 CKB.
    pub fn start(binaries: &Binaries, cells_per_account: usize) -> SimChain {
        let mut child = Command::new(&binaries.simchain)
            .args(["--listen", "127.0.0.1:0", "--log", "warn", "--cells-per-account"])
            .arg(cells_per_account.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fiber-simchain");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let rpc = lines.next().unwrap().unwrap();
        let rpc = rpc.strip_prefix("rpc=").expect("rpc=…").to_owned();
        SimChain { child, rpc }
    }

    pub fn client(&self) -> RpcChainClient<HttpTransport> {
        RpcChainClient::new(HttpTransport::new(self.rpc.clone()))
    }
}

impl Drop for SimChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The contracts both sides name on the simulated chain: Fiber's testnet
/// deployment's code hashes (nothing here spends a funding cell, so no lock
/// script of theirs runs).
pub fn testnet_contracts() -> (ScriptTemplate, ScriptTemplate) {
    let [testnet, _] = known_deployments();
    (testnet.funding_lock, testnet.commitment_lock)
}

pub fn counterparty_command(binaries: &Binaries, data_dir: &Path, ckb_rpc: &str, listen: &str) -> Command {
    counterparty_command_polling(binaries, data_dir, ckb_rpc, listen, POLL_MS)
}

/// [`counterparty_command`] looking funding txs up every `poll_ms`.
pub fn counterparty_command_polling(
    binaries: &Binaries,
    data_dir: &Path,
    ckb_rpc: &str,
    listen: &str,
    poll_ms: u64,
) -> Command {
    let (funding_lock, commitment_lock) = testnet_contracts();
    let mut command = Command::new(&binaries.counterparty);
    command
        .args([
            "--listen",
            listen,
            "--ckb-rpc",
            ckb_rpc,
            "--confirmations",
            CONFIRMATIONS,
            "--funding-lock-code-hash",
            &funding_lock.code_hash.to_string(),
            "--commitment-lock-code-hash",
            &commitment_lock.code_hash.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--poll-interval-ms", &poll_ms.to_string(), "--log", "info"])
        // The key from the environment, as an operator would keep it out of `ps`.
        .env(
            "FIBER_COUNTERPARTY_WALLET_KEY",
            DEV_ACCOUNTS[COUNTERPARTY_WALLET].secret_key,
        )
        .env_remove("RUST_LOG");
    command
}

/// A running `fiber-counterparty`, killed when dropped.
pub struct Counterparty {
    pub child: Child,
    pub node_id: NodeId,
    pub url: String,
    pub log: Lines,
}

impl Counterparty {
    pub fn start(binaries: &Binaries, data_dir: &Path, ckb_rpc: &str, listen: &str) -> Counterparty {
        Self::spawn(counterparty_command(binaries, data_dir, ckb_rpc, listen))
    }

    /// Runs `command` (see [`counterparty_command`]) and reads what it prints.
    pub fn spawn(mut command: Command) -> Counterparty {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fiber-counterparty");
        let log = Lines::default().gather(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut value = |key: &str| match stdout.next() {
            Some(Ok(line)) => line
                .strip_prefix(&format!("{key}="))
                .unwrap_or_else(|| panic!("expected {key}=…, got {line:?}"))
                .to_owned(),
            _ => panic!("the counterparty printed no {key}=…; its log:\n{}", log.all()),
        };
        let node_id = Pubkey::from_hex(&value("node_id")).unwrap();
        let url = value("listening");
        Counterparty {
            child,
            node_id,
            url,
            log,
        }
    }

    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 5 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Counterparty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a native initiator runs: the test's defaults poll fast.
#[derive(Clone, Copy, Debug)]
pub struct InitiatorSettings {
    pub poll_interval_ms: u64,
}

impl Default for InitiatorSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: POLL_MS,
        }
    }
}

/// What every initiator asks the chain once at boot.
#[derive(Clone)]
pub struct ChainFacts {
    pub chain_hash: Hash256,
    pub default_lock_dep: packed::CellDep,
}

impl ChainFacts {
    pub async fn ask(chain: &RpcChainClient<HttpTransport>) -> ChainFacts {
        ChainFacts {
            chain_hash: chain.genesis_hash().await.unwrap(),
            default_lock_dep: genesis_default_lock_dep_group(chain.transport(), 5_000).await.unwrap(),
        }
    }
}

/// The browser's side, natively: the same driver over the WebSocket client.
pub struct Initiator {
    pub handle: DriverHandle,
    pub chain: RpcChainClient<HttpTransport>,
    pub user_key: SigningKey,
    pub user_lock: packed::Script,
    pub dep: packed::CellDep,
}

impl Initiator {
    pub async fn start(sim: &SimChain, counterparty: &Counterparty) -> Initiator {
        Self::start_for(sim, counterparty, dev_key(USER)).await
    }

    pub async fn start_for(sim: &SimChain, counterparty: &Counterparty, user_key: SigningKey) -> Initiator {
        let facts = ChainFacts::ask(&sim.client()).await;
        Self::start_with(
            sim.client(),
            &facts,
            &counterparty.url,
            counterparty.node_id,
            user_key,
            InitiatorSettings::default(),
            Box::new(|_| {}),
        )
        .await
    }

    /// An initiator on `chain` whose driver events go to `on_event`.
    pub async fn start_with(
        chain: RpcChainClient<HttpTransport>,
        facts: &ChainFacts,
        peer_url: &str,
        peer: NodeId,
        user_key: SigningKey,
        settings: InitiatorSettings,
        on_event: Box<dyn FnMut(DriverEvent)>,
    ) -> Initiator {
        let (chain_hash, dep) = (facts.chain_hash, facts.default_lock_dep.clone());
        let secret = generate_node_secret();
        let (funding_lock, commitment_lock) = testnet_contracts();
        let config = NodeConfig {
            node_secret: secret.clone(),
            chain_hash,
            funding_lock,
            commitment_lock,
            external_funding_timeout_ms: 300_000,
            funding_confirmations: CONFIRMATIONS.parse().unwrap(),
            settle_confirmations: fiber_funding::flow::config::DEFAULT_SETTLE_CONFIRMATIONS,
            acceptor: None,
        };
        let (sender, receiver) = inbox();
        let client_settings = ClientSettings {
            first_backoff_ms: 100,
            max_backoff_ms: 500,
            ..ClientSettings::default()
        };
        let link = WsClientLink::connect_with(peer_url, secret, peer, sender.clone(), client_settings);
        let parts = DriverParts {
            config,
            entropy: Box::new(OsEntropy),
            store: Rc::new(MemoryStore::new()),
            link,
            chain: Rc::new(chain.clone()),
            platform: Rc::new(TokioPlatform),
            settings: DriverSettings {
                poll_interval_ms: settings.poll_interval_ms,
                chain_retry_ms: 200,
                ..DriverSettings::default()
            },
            on_event,
        };
        let (handle, unreadable) = start(parts, sender, receiver).await.unwrap();
        assert!(unreadable.is_empty());
        Initiator {
            handle,
            chain,
            user_lock: default_lock::lock_script_for_key(user_key.verifying_key()),
            user_key,
            dep,
        }
    }

    pub fn open_params(&self, counterparty: NodeId) -> OpenChannelParams {
        OpenChannelParams::new(
            counterparty,
            1_000 * CKB,
            self.user_lock.clone(),
            vec![self.dep.clone()],
        )
    }

    pub async fn open(&self, counterparty: NodeId) -> (ChannelId, packed::Transaction) {
        let params = self.open_params(counterparty);
        self.handle.open_channel(params).await.expect("open")
    }

    /// What the user's wallet does: signs every input that is the user's.
    pub async fn sign(&self, unsigned: &packed::Transaction) -> packed::Transaction {
        let own: Vec<Vec<u8>> = self
            .chain
            .live_cells(self.user_lock.clone())
            .await
            .unwrap()
            .into_iter()
            .map(|cell| cell.out_point.as_slice().to_vec())
            .collect();
        let group: Vec<usize> = unsigned
            .raw()
            .inputs()
            .into_iter()
            .enumerate()
            .filter(|(_, input)| own.contains(&input.previous_output().as_slice().to_vec()))
            .map(|(index, _)| index)
            .collect();
        assert!(!group.is_empty(), "the funding tx spends none of the user's cells");
        default_lock::sign_group(unsigned, &group, &self.user_key).unwrap()
    }

    /// Mines blocks until the channel is ready here; returns the funding tx hash.
    pub async fn mine_until_ready(&self, channel_id: ChannelId) -> Hash256 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.handle.channel(channel_id).await.unwrap().unwrap();
            if view.state == ChannelState::ChannelReady {
                return view.funding_tx_hash.unwrap();
            }
            assert!(
                !matches!(view.state, ChannelState::Closed(_)),
                "the channel closed: {:?}",
                view.close_reason
            );
            assert!(Instant::now() < deadline, "not ready within 30 s: {}", view.state);
            self.chain.generate_block().await.unwrap();
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
}

pub fn run_local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// Pays `each` shannons from dev account 0's largest cell to each of
/// `users`, in one tx, and mines it.
pub async fn fund_users(
    chain: &RpcChainClient<HttpTransport>,
    dep: &packed::CellDep,
    users: &[packed::Script],
    each: u64,
) {
    let source = chain.live_cells(default_lock::lock_script_for_key(dev_key(USER).verifying_key()));
    let source = source
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|cell| Unpack::<u64>::unpack(&cell.output.capacity()))
        .expect("dev account 0 has cells");
    let capacity: u64 = source.output.capacity().unpack();
    let mut outputs: Vec<packed::CellOutput> = users
        .iter()
        .map(|lock| {
            packed::CellOutput::new_builder()
                .capacity(each)
                .lock(lock.clone())
                .build()
        })
        .collect();
    let change = capacity - each * users.len() as u64 - CKB;
    outputs.push(
        packed::CellOutput::new_builder()
            .capacity(change)
            .lock(source.output.lock())
            .build(),
    );
    let tx = packed::Transaction::new_builder()
        .raw(
            packed::RawTransaction::new_builder()
                .cell_deps(vec![dep.clone()].pack())
                .inputs(
                    vec![packed::CellInput::new_builder()
                        .previous_output(source.out_point)
                        .build()]
                    .pack(),
                )
                .outputs_data(vec![packed::Bytes::default(); outputs.len()].pack())
                .outputs(outputs.pack())
                .build(),
        )
        .witnesses(vec![default_lock::placeholder_witness().as_bytes().pack()].pack())
        .build();
    let tx = default_lock::sign_group(&tx, &[0], &dev_key(USER)).unwrap();
    chain.send_transaction(tx).await.unwrap();
    chain.generate_block().await.unwrap();
}
