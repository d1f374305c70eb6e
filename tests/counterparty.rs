//! `fiber-counterparty` as a process: a native initiator (the driver the
//! browser runs, over the native WebSocket client and HTTP transport) opens
//! a channel with it on `fiber-simchain`, the user signs, and both sides
//! reach `ChannelReady` with the funding tx committed. The counterparty is
//! also `kill -9`ed between open and submit and restarted on its data dir,
//! and refuses bad configuration with exit code 2.

#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use fiber_funding::chain::client::ChainClient;
use fiber_funding::chain::rpc::RpcChainClient;
use fiber_funding::chain::TxStatus;
use fiber_funding::flow::{ChannelState, NodeConfig};
use fiber_funding::native::http_rpc::{genesis_default_lock_dep_group, HttpTransport};
use fiber_funding::native::platform::{generate_node_secret, OsEntropy, TokioPlatform};
use fiber_funding::native::redb_store::RedbStore;
use fiber_funding::native::simchain::DEV_ACCOUNTS;
use fiber_funding::native::ws_client::{ClientSettings, WsClientLink};
use fiber_funding::primitives::{encode_hex, Hash256};
use fiber_funding::runtime::{inbox, start, DriverParts, DriverSettings};
use fiber_funding::store::memory::MemoryStore;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::script::ScriptTemplate;
use k256::ecdsa::SigningKey;

#[path = "common/processes.rs"]
mod processes;
use processes::*;

fn bins() -> Binaries {
    Binaries {
        simchain: env!("CARGO_BIN_EXE_fiber-simchain").into(),
        counterparty: env!("CARGO_BIN_EXE_fiber-counterparty").into(),
    }
}

fn assert_committed(sim: &SimChain, funding_tx: Hash256) {
    let client = sim.client();
    let status = run_local(async move { client.transaction_status(funding_tx).await.unwrap() }).status;
    assert!(matches!(status, TxStatus::Committed { .. }), "{status:?}");
}

#[test]
fn a_browser_opens_a_channel_and_both_sides_reach_channel_ready() {
    let sim = SimChain::start(&bins(), 10);
    let data_dir = temp_dir("happy");
    let mut counterparty = Counterparty::start(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    assert!(counterparty.url.starts_with("ws://127.0.0.1:"), "{}", counterparty.url);
    let node_id_file = std::fs::read_to_string(data_dir.join("node_id")).unwrap();
    assert_eq!(node_id_file.trim(), counterparty.node_id.to_string());

    let funding_tx = run_local(async {
        let initiator = Initiator::start(&sim, &counterparty).await;
        let (channel_id, unsigned) = initiator.open(counterparty.node_id).await;
        let signed = initiator.sign(&unsigned).await;
        initiator
            .handle
            .submit_signed_funding_tx(channel_id, signed)
            .await
            .expect("submit");
        let funding_tx = initiator.mine_until_ready(channel_id).await;
        let needle = format!("channel={channel_id} state=ChannelReady");
        assert!(
            counterparty.log.wait_for(&needle, Duration::from_secs(10)),
            "the counterparty never logged {needle}; its log:\n{}",
            counterparty.log.all()
        );
        funding_tx
    });
    assert_committed(&sim, funding_tx);

    let status = counterparty.terminate();
    assert!(status.success(), "SIGTERM exit: {status:?}\n{}", counterparty.log.all());
    assert!(counterparty.log.wait_for("SIGTERM: closing", Duration::from_secs(1)));
    // The node key is in the database, readable by its owner only, and never logged.
    let store = RedbStore::open(data_dir.join("channels.redb")).unwrap();
    let secret = store.get_meta("node_secret").unwrap().expect("the node key is stored");
    let log = counterparty.log.all();
    assert!(!log.contains(&encode_hex(&secret)[2..]), "the node key was logged");
    assert!(
        !log.contains(&DEV_ACCOUNTS[COUNTERPARTY_WALLET].secret_key[2..]),
        "the wallet key was logged"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join("channels.redb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "database mode {mode:o}");
    }
}

#[test]
fn a_counterparty_killed_between_open_and_submit_restarts_and_the_flow_completes() {
    let sim = SimChain::start(&bins(), 10);
    let data_dir = temp_dir("kill9");
    let mut counterparty = Counterparty::start(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    let first_node_id = counterparty.node_id;

    run_local(async {
        let initiator = Initiator::start(&sim, &counterparty).await;
        let (channel_id, unsigned) = initiator.open(counterparty.node_id).await;
        assert!(
            counterparty
                .log
                .wait_for(&format!("channel={channel_id} state="), Duration::from_secs(5)),
            "{}",
            counterparty.log.all()
        );

        // Gone without a chance to flush anything: only what redb committed survives.
        counterparty.kill_9();
        let listen = counterparty.url.trim_start_matches("ws://").to_owned();
        let restarted = Counterparty::start(&bins(), &data_dir, &sim.rpc, &listen);
        assert_eq!(restarted.node_id, first_node_id, "the node key survived");
        assert_eq!(restarted.url, counterparty.url);

        // The user signs meanwhile and submits; the browser reconnects by itself.
        let signed = initiator.sign(&unsigned).await;
        initiator
            .handle
            .submit_signed_funding_tx(channel_id, signed)
            .await
            .expect("submit");
        let funding_tx = initiator.mine_until_ready(channel_id).await;
        let needle = format!("channel={channel_id} state=ChannelReady");
        assert!(
            restarted.log.wait_for(&needle, Duration::from_secs(10)),
            "the restarted counterparty never logged {needle}; its log:\n{}",
            restarted.log.all()
        );
        assert_committed_async(&initiator.chain, funding_tx).await;
        // Restored from its database, nothing left behind.
        assert!(
            !restarted.log.all().contains("kept but not restored"),
            "{}",
            restarted.log.all()
        );
    });
}

async fn assert_committed_async(chain: &RpcChainClient<HttpTransport>, funding_tx: Hash256) {
    let status = chain.transaction_status(funding_tx).await.unwrap().status;
    assert!(matches!(status, TxStatus::Committed { .. }), "{status:?}");
}

/// Runs the counterparty expecting it to refuse to start.
fn refused(command: &mut Command) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fiber-counterparty");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after 15 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit {:?}, stderr:\n{stderr}",
        output.status
    );
    assert!(
        output.stdout.is_empty(),
        "printed {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("fiber-counterparty:"))
        .collect();
    assert_eq!(lines.len(), 1, "one clear line, got:\n{stderr}");
    lines[0].to_owned()
}

#[test]
fn bad_configuration_exits_2_with_one_clear_line() {
    let sim = SimChain::start(&bins(), 10);
    let data_dir = temp_dir("bad-config");

    let mut no_data_dir = Command::new(env!("CARGO_BIN_EXE_fiber-counterparty"));
    no_data_dir
        .args(["--listen", "127.0.0.1:0", "--ckb-rpc", &sim.rpc])
        .env(
            "FIBER_COUNTERPARTY_WALLET_KEY",
            DEV_ACCOUNTS[COUNTERPARTY_WALLET].secret_key,
        )
        .env_remove("FIBER_COUNTERPARTY_DATA_DIR");
    let message = refused(&mut no_data_dir);
    assert!(message.contains("--data-dir"), "{message}");

    let mut bad_key = counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    bad_key.args(["--wallet-key", "0x1234abcd"]);
    let message = refused(&mut bad_key);
    assert!(
        message.contains("--wallet-key") && message.contains("secret key"),
        "{message}"
    );
    assert!(!message.contains("1234abcd"), "the key text was echoed: {message}");

    let mut no_key = counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    no_key.env_remove("FIBER_COUNTERPARTY_WALLET_KEY");
    let message = refused(&mut no_key);
    assert!(message.contains("--wallet-key"), "{message}");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_rpc = format!("http://127.0.0.1:{closed_port}");
    let untouched = temp_dir("dead-rpc");
    let message = refused(&mut counterparty_command(&bins(), &untouched, &dead_rpc, "127.0.0.1:0"));
    assert!(message.contains(&dead_rpc), "{message}");
    assert!(!untouched.exists(), "nothing is written before the chain answers");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let message = refused(&mut counterparty_command(&bins(), &data_dir, &sim.rpc, &taken_addr));
    assert!(
        message.contains("cannot listen on") && message.contains(&taken_addr),
        "{message}"
    );

    let mut bad_number = counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    bad_number.args(["--confirmations", "three"]);
    let message = refused(&mut bad_number);
    assert!(message.contains("--confirmations"), "{message}");

    let mut unknown = counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    unknown.arg("--frobnicate");
    let message = refused(&mut unknown);
    assert!(message.contains("--frobnicate"), "{message}");

    // A second counterparty on a data dir in use.
    let _running = Counterparty::start(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    let message = refused(&mut counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0"));
    assert!(message.contains("in use"), "{message}");
}

#[test]
fn several_browsers_fund_channels_with_the_counterparty_at_once() {
    const BROWSERS: usize = 3;
    let sim = SimChain::start(&bins(), 10);
    let data_dir = temp_dir("several");
    let counterparty = Counterparty::start(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0");
    run_local(async {
        let chain = sim.client();
        let dep = genesis_default_lock_dep_group(chain.transport(), 5_000).await.unwrap();
        let keys: Vec<SigningKey> = (0..BROWSERS)
            .map(|_| SigningKey::from_slice(&fiber_funding::native::platform::random_32()).unwrap())
            .collect();
        let locks: Vec<_> = keys
            .iter()
            .map(|key| default_lock::lock_script_for_key(key.verifying_key()))
            .collect();
        fund_users(&chain, &dep, &locks, 2_000 * CKB).await;

        let mut initiators = Vec::new();
        for key in keys {
            initiators.push(Initiator::start_for(&sim, &counterparty, key).await);
        }
        // Every browser opens, signs and submits at the same time.
        let channels = futures::future::join_all(initiators.iter().map(|initiator| async move {
            let (channel_id, unsigned) = initiator.open(counterparty.node_id).await;
            let signed = initiator.sign(&unsigned).await;
            initiator
                .handle
                .submit_signed_funding_tx(channel_id, signed)
                .await
                .expect("submit");
            channel_id
        }))
        .await;
        let mut distinct = channels.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), BROWSERS);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = 0;
            for (initiator, channel_id) in initiators.iter().zip(&channels) {
                let view = initiator.handle.channel(*channel_id).await.unwrap().unwrap();
                assert!(
                    !matches!(view.state, ChannelState::Closed(_)),
                    "{:?}",
                    view.close_reason
                );
                ready += usize::from(view.state == ChannelState::ChannelReady);
            }
            if ready == BROWSERS {
                break;
            }
            assert!(Instant::now() < deadline, "{ready} of {BROWSERS} ready within 30 s");
            chain.generate_block().await.unwrap();
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        for channel_id in &channels {
            let needle = format!("channel={channel_id} state=ChannelReady");
            assert!(
                counterparty.log.wait_for(&needle, Duration::from_secs(10)),
                "{}",
                counterparty.log.all()
            );
        }
    });
}

mod driver_end {
    //! A driver ended by a bug is noticed: the counterparty exits instead of
    //! listening with nothing behind it.

    use super::*;
    use fiber_funding::api::{ApiError, ErrorCode};
    use fiber_funding::runtime::loopback::LoopbackLink;
    use fiber_funding::runtime::Platform;
    use futures::future::LocalBoxFuture;
    use std::cell::Cell;

    /// A clock adapter with a bug: it panics on its `n`-th reading.
    struct FailingClock {
        readings_left: Cell<u32>,
    }

    impl Platform for FailingClock {
        fn now_ms(&self) -> u64 {
            let left = self.readings_left.get();
            assert!(left > 0, "the clock adapter broke");
            self.readings_left.set(left - 1);
            TokioPlatform.now_ms()
        }
        fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
            TokioPlatform.spawn(task)
        }
        fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
            TokioPlatform.sleep(ms)
        }
    }

    #[test]
    fn a_driver_that_panics_ends_and_its_handle_says_so() {
        run_local(async {
            let secret = generate_node_secret();
            let (sender, receiver) = inbox();
            let (link, _) = LoopbackLink::pair(
                (secret.node_id(), sender.clone()),
                (generate_node_secret().node_id(), inbox().0),
            );
            let config = NodeConfig {
                node_secret: secret,
                chain_hash: Hash256([1; 32]),
                funding_lock: ScriptTemplate::type_hash([0xf1; 32]),
                commitment_lock: ScriptTemplate::type_hash([0xc1; 32]),
                external_funding_timeout_ms: 300_000,
                funding_confirmations: 1,
                settle_confirmations: 1,
                acceptor: None,
            };
            let parts = DriverParts {
                config,
                entropy: Box::new(OsEntropy),
                store: MemoryStore::new(),
                link,
                chain: Rc::new(fiber_funding::chain::simulated_client::SimulatedChainClient::default()),
                // Readings for the start; the first command's step breaks it.
                platform: Rc::new(FailingClock {
                    readings_left: Cell::new(1),
                }),
                settings: DriverSettings::default(),
                on_event: Box::new(|_| {}),
            };
            let (handle, _) = start(parts, sender, receiver).await.unwrap();
            let answer = handle.channels().await;
            assert_eq!(ApiError::from(answer.unwrap_err()).code, ErrorCode::NodeClosed);
            tokio::time::timeout(Duration::from_secs(2), handle.ended())
                .await
                .expect("ended() resolves once the driver is gone");
        });
    }
}

mod link {
    //! The WebSocket links in-process: who counts as connected, who is
    //! turned away, and what a man in the middle can do (nothing).

    use super::*;
    use fiber_funding::api::error::peer_trouble_code;
    use fiber_funding::api::ErrorCode;
    use fiber_funding::crypto::keys::NodeSecret;
    use fiber_funding::native::platform::random_32;
    use fiber_funding::native::ws_connection::ConnectionTimings;
    use fiber_funding::native::ws_server::WsServer;
    use fiber_funding::peer::{PeerSession, SessionStep, CLOSE_NOT_THIS_NODE};
    use fiber_funding::primitives::NodeId;
    use fiber_funding::runtime::{Input, InputReceiver, PeerLink};
    use fiber_funding::wire::{ChannelReady, FiberMessage};
    use futures::{SinkExt, StreamExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn server() -> (Rc<WsServer>, String, InputReceiver, NodeId) {
        let (sender, receiver) = inbox();
        let secret = generate_node_secret();
        let id = secret.node_id();
        let server = WsServer::bind("127.0.0.1:0", secret, sender, ConnectionTimings::default())
            .await
            .unwrap();
        let url = format!("ws://{}", server.local_addr());
        (server, url, receiver, id)
    }

    /// Connects as `secret` and runs the BOLT 8 handshake with `server_id`,
    /// as a browser does.
    async fn authenticate(url: &str, secret: &NodeSecret, server_id: &NodeId) -> (Socket, PeerSession) {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (mut session, act_one) = PeerSession::initiator(secret, server_id, random_32()).unwrap();
        ws.send(Message::Binary(act_one.into())).await.unwrap();
        let Some(Ok(Message::Binary(act_two))) = ws.next().await else {
            panic!("the server closed during the handshake")
        };
        let SessionStep::Authenticated {
            peer,
            reply: Some(act_three),
        } = session.on_packet(&act_two).unwrap()
        else {
            panic!("act two authenticates the server")
        };
        assert_eq!(peer, *server_id);
        ws.send(Message::Binary(act_three.into())).await.unwrap();
        (ws, session)
    }

    async fn next_input(receiver: &mut InputReceiver, within_ms: u64) -> Option<Input> {
        tokio::time::timeout(Duration::from_millis(within_ms), receiver.next())
            .await
            .ok()
            .flatten()
    }

    /// Whether the server closes `ws` (pings aside) within a second; with the
    /// close code it gave, if any.
    async fn closed_by_server(ws: &mut Socket) -> Option<Option<u16>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return Some(frame.map(|f| u16::from(f.code))),
                Ok(None | Some(Err(_))) => return Some(None),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    fn ready_message() -> FiberMessage {
        FiberMessage::ChannelReady(ChannelReady {
            channel_id: Hash256([5; 32]),
        })
    }

    #[test]
    fn a_node_that_reconnects_replaces_its_previous_connection() {
        run_local(async {
            let (server, url, mut inputs, server_id) = server().await;
            let browser = generate_node_secret();
            let id = browser.node_id();
            let (mut first, _) = authenticate(&url, &browser, &server_id).await;
            assert!(matches!(next_input(&mut inputs, 2_000).await, Some(Input::PeerConnected(p)) if p == id));
            let (mut second, mut session) = authenticate(&url, &browser, &server_id).await;
            assert!(matches!(next_input(&mut inputs, 2_000).await, Some(Input::PeerConnected(p)) if p == id));
            assert_eq!(server.connected_peers(), vec![id]);

            server.send(&id, &ready_message());
            let Some(Ok(Message::Binary(bytes))) = second.next().await else {
                panic!("the newest connection gets the message")
            };
            assert_eq!(
                session.on_packet(&bytes).unwrap(),
                SessionStep::Message(ready_message())
            );
            assert!(
                closed_by_server(&mut first).await.is_some(),
                "the replaced connection is closed"
            );
            // Replacing is not a disconnection.
            assert!(next_input(&mut inputs, 300).await.is_none());

            // A message from the peer reaches the driver under its node id.
            let packet = session.seal(&ready_message()).unwrap();
            second.send(Message::Binary(packet.into())).await.unwrap();
            assert!(matches!(
                next_input(&mut inputs, 2_000).await,
                Some(Input::PeerMessage(p, m)) if p == id && m == ready_message()
            ));
            drop(second);
            assert!(matches!(
                next_input(&mut inputs, 2_000).await,
                Some(Input::PeerDisconnected { peer, .. }) if peer == id
            ));
            assert!(server.connected_peers().is_empty());
        });
    }

    #[test]
    fn a_peer_that_fails_the_handshake_is_dropped_and_never_connected() {
        run_local(async {
            let (server, url, mut inputs, _) = server().await;

            // Calls another node's key: act one does not decrypt here.
            let (mut misdialled, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let elsewhere = generate_node_secret().node_id();
            let (_, act_one) = PeerSession::initiator(&generate_node_secret(), &elsewhere, random_32()).unwrap();
            misdialled.send(Message::Binary(act_one.into())).await.unwrap();
            assert_eq!(closed_by_server(&mut misdialled).await, Some(Some(CLOSE_NOT_THIS_NODE)));

            // Sends a Fiber message in the clear instead of a handshake.
            let (mut eager, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            eager
                .send(Message::Binary(ready_message().encode().into()))
                .await
                .unwrap();
            assert!(closed_by_server(&mut eager).await.is_some());

            // Speaks text.
            let (mut chatty, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            chatty.send(Message::text("hello")).await.unwrap();
            assert!(closed_by_server(&mut chatty).await.is_some());

            assert!(next_input(&mut inputs, 300).await.is_none(), "nobody connected");
            assert!(server.connected_peers().is_empty());
        });
    }

    #[test]
    fn a_tampered_or_replayed_packet_ends_the_session_and_reaches_nobody() {
        run_local(async {
            let (server, url, mut inputs, server_id) = server().await;
            let browser = generate_node_secret();
            let id = browser.node_id();

            // One bit flipped by whoever sits on the path.
            let (mut tampered, mut session) = authenticate(&url, &browser, &server_id).await;
            assert!(matches!(next_input(&mut inputs, 2_000).await, Some(Input::PeerConnected(p)) if p == id));
            let mut packet = session.seal(&ready_message()).unwrap();
            let last = packet.len() - 1;
            packet[last] ^= 1;
            tampered.send(Message::Binary(packet.into())).await.unwrap();
            assert!(closed_by_server(&mut tampered).await.is_some());
            assert!(matches!(
                next_input(&mut inputs, 2_000).await,
                Some(Input::PeerDisconnected { peer, .. }) if peer == id
            ));

            // The same packet sent twice: the second is out of sequence.
            let (mut replayed, mut session) = authenticate(&url, &browser, &server_id).await;
            assert!(matches!(next_input(&mut inputs, 2_000).await, Some(Input::PeerConnected(p)) if p == id));
            let packet = session.seal(&ready_message()).unwrap();
            replayed.send(Message::Binary(packet.clone().into())).await.unwrap();
            assert!(matches!(
                next_input(&mut inputs, 2_000).await,
                Some(Input::PeerMessage(p, m)) if p == id && m == ready_message()
            ));
            replayed.send(Message::Binary(packet.into())).await.unwrap();
            assert!(closed_by_server(&mut replayed).await.is_some());
            assert!(matches!(
                next_input(&mut inputs, 2_000).await,
                Some(Input::PeerDisconnected { peer, .. }) if peer == id
            ));
            assert!(server.connected_peers().is_empty());
        });
    }

    #[test]
    fn a_client_refuses_a_counterparty_with_another_key_and_waits_long_before_calling_again() {
        run_local(async {
            let (_server, url, _inputs, _) = server().await;
            let (sender, mut inputs) = inbox();
            let expected = generate_node_secret().node_id();
            let settings = ClientSettings {
                first_backoff_ms: 50,
                ..ClientSettings::default()
            };
            let link = WsClientLink::connect_with(&url, generate_node_secret(), expected, sender, settings);
            match next_input(&mut inputs, 2_000).await {
                Some(Input::PeerUnavailable { trouble, reason }) => {
                    assert_eq!(peer_trouble_code(trouble), ErrorCode::PeerMismatch, "{reason}");
                    assert!(reason.contains(&url), "{reason}");
                }
                _ => panic!("expected PeerUnavailable"),
            }
            // Not retried soon: another try would most likely find the same node.
            assert!(next_input(&mut inputs, 400).await.is_none());
            link.close();
        });
    }

    /// One act two that fails its tag (what another node's answer looks
    /// like, and what anyone on the path can forge) is reported as the
    /// wrong node, but must not end the link for good: with funds in a
    /// channel, the next try at the right node has to happen, later.
    #[test]
    fn one_forged_act_two_delays_the_client_and_the_right_node_is_reached_after() {
        run_local(async {
            let forger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = forger.local_addr().unwrap();
            let url = format!("ws://{address}");
            let (sender, mut inputs) = inbox();
            let secret = generate_node_secret();
            let (server_sender, _server_inputs) = inbox();
            let server_secret = generate_node_secret();
            let server_id = server_secret.node_id();
            let settings = ClientSettings {
                first_backoff_ms: 50,
                wrong_node_retry_ms: 300,
                ..ClientSettings::default()
            };
            let link = WsClientLink::connect_with(&url, secret, server_id, sender, settings);

            // The forger answers act one with a well-formed act two under a bad tag.
            let (tcp, _) = forger.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let Some(Ok(Message::Binary(_act_one))) = ws.next().await else {
                panic!("expected act one")
            };
            let mut act_two = vec![0u8];
            act_two.extend_from_slice(generate_node_secret().node_id().as_bytes());
            act_two.extend_from_slice(&[0u8; 16]);
            ws.send(Message::Binary(act_two.into())).await.unwrap();
            match next_input(&mut inputs, 2_000).await {
                Some(Input::PeerUnavailable { trouble, .. }) => {
                    assert_eq!(peer_trouble_code(trouble), ErrorCode::PeerMismatch)
                }
                _ => panic!("expected PeerUnavailable"),
            }
            drop(ws);
            drop(forger);

            // The right node now answers at the same address.
            let _server = WsServer::bind(
                &address.to_string(),
                server_secret,
                server_sender,
                ConnectionTimings::default(),
            )
            .await
            .unwrap();
            loop {
                match next_input(&mut inputs, 3_000).await {
                    Some(Input::PeerConnected(peer)) => {
                        assert_eq!(peer, server_id);
                        break;
                    }
                    Some(Input::PeerUnavailable { .. }) => continue,
                    _ => panic!("the client never tried again"),
                }
            }
            link.close();
        });
    }

    #[test]
    fn a_client_reports_an_unreachable_counterparty_and_keeps_trying() {
        run_local(async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let url = format!("ws://127.0.0.1:{port}");
            let (sender, mut inputs) = inbox();
            let settings = ClientSettings {
                first_backoff_ms: 50,
                max_backoff_ms: 100,
                ..ClientSettings::default()
            };
            let peer = generate_node_secret().node_id();
            let link = WsClientLink::connect_with(&url, generate_node_secret(), peer, sender, settings);
            for _ in 0..2 {
                match next_input(&mut inputs, 2_000).await {
                    Some(Input::PeerUnavailable { trouble, reason }) => {
                        assert_eq!(peer_trouble_code(trouble), ErrorCode::PeerUnreachable);
                        assert!(reason.contains(&url), "{reason}");
                    }
                    _ => panic!("expected PeerUnavailable"),
                }
            }
            link.close();
        });
    }
}

#[test]
fn min_free_cells_splits_the_wallet_before_listening() {
    let sim = SimChain::start(&bins(), 10);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The chain keeps producing blocks, as the demo's miner does.
    let miner = {
        let stop = stop.clone();
        let rpc = sim.rpc.clone();
        std::thread::spawn(move || {
            let chain = RpcChainClient::new(HttpTransport::new(rpc));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = run_local(chain.generate_block());
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let data_dir = temp_dir("min-free-cells");
    let wallet = default_lock::lock_script_for_key(dev_key(COUNTERPARTY_WALLET).verifying_key());
    let before = run_local(sim.client().live_cells(wallet.clone())).unwrap().len();
    let mut child = counterparty_command(&bins(), &data_dir, &sim.rpc, "127.0.0.1:0")
        .args(["--min-free-cells", &(before + 5).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next().unwrap().unwrap();
    assert!(first.starts_with("node_id="), "{first}");
    let after = run_local(sim.client().live_cells(wallet)).unwrap().len();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    miner.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(after >= before + 5, "{before} cells before, {after} after");
}
