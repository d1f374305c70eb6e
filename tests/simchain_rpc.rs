//! `fiber-simchain` as a CKB node: the crate's own JSON-RPC client, over the
//! native HTTP transport, against the running binary.

#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ckb_types::core::EpochNumberWithFraction;
use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::client::{ChainClient, ChainErrorKind};
use fiber_funding::chain::rpc::{RpcChainClient, RpcTransport, TransportError};
use fiber_funding::chain::TxStatus;
use fiber_funding::native::http_rpc::{
    call_json, genesis_default_lock_dep_group, HttpTransport, MAX_NATIVE_ANSWER_BYTES,
};
use fiber_funding::native::simchain::DEV_ACCOUNTS;
use fiber_funding::primitives::{decode_hex, encode_hex, Hash256};
use fiber_funding::tx::default_lock;
use k256::ecdsa::SigningKey;
use serde_json::json;

const CKB: u64 = 100_000_000;

/// A running `fiber-simchain`, killed when dropped.
struct SimChain {
    child: Child,
    rpc: String,
    chain_hash: String,
}

impl SimChain {
    fn start(extra: &[&str]) -> SimChain {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fiber-simchain"))
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fiber-simchain");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut value = |key: &str| {
            let line = lines.next().expect("a start-up line").unwrap();
            line.strip_prefix(&format!("{key}="))
                .unwrap_or_else(|| panic!("expected {key}=…, got {line:?}"))
                .to_owned()
        };
        let rpc = value("rpc");
        let chain_hash = value("chain_hash");
        SimChain { child, rpc, chain_hash }
    }

    fn client(&self) -> RpcChainClient<HttpTransport> {
        RpcChainClient::new(HttpTransport::new(self.rpc.clone()))
    }
}

impl Drop for SimChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn dev_key(index: usize) -> SigningKey {
    SigningKey::from_slice(&decode_hex(DEV_ACCOUNTS[index].secret_key).unwrap()).unwrap()
}

fn dev_lock(index: usize) -> packed::Script {
    default_lock::lock_script_for_key(dev_key(index).verifying_key())
}

/// Spends `input` (a dev account 0 cell of `capacity`) to dev account 1, less a 1 CKB fee.
fn transfer(input: packed::OutPoint, capacity: u64, dep: packed::CellDep) -> packed::Transaction {
    packed::Transaction::new_builder()
        .raw(
            packed::RawTransaction::new_builder()
                .cell_deps(vec![dep].pack())
                .inputs(vec![packed::CellInput::new_builder().previous_output(input).build()].pack())
                .outputs(
                    vec![packed::CellOutput::new_builder()
                        .capacity(capacity - CKB)
                        .lock(dev_lock(1))
                        .build()]
                    .pack(),
                )
                .outputs_data(vec![packed::Bytes::default()].pack())
                .build(),
        )
        .witnesses(vec![default_lock::placeholder_witness().as_bytes().pack()].pack())
        .build()
}

#[test]
fn the_dev_account_keys_own_the_funded_locks() {
    for (index, account) in DEV_ACCOUNTS.iter().enumerate() {
        assert_eq!(encode_hex(&dev_lock(index).args().raw_data()), account.lock_args);
    }
}

#[test]
fn get_cells_pages_through_every_cell_of_a_dev_account() {
    let sim = SimChain::start(&["--cells-per-account", "20"]);
    let client = sim.client().with_page_size(7);
    let cells = run(client.live_cells(dev_lock(1))).unwrap();
    assert_eq!(cells.len(), 21, "20 split cells and the remainder");
    let capacities: Vec<u64> = cells.iter().map(|c| c.output.capacity().unpack()).collect();
    assert!(capacities[..20].iter().all(|c| *c == 10_000 * CKB), "{capacities:?}");
    assert_eq!(capacities.iter().sum::<u64>(), DEV_ACCOUNTS[1].capacity_ckb * CKB);
    let mut out_points: Vec<_> = cells.iter().map(|c| c.out_point.as_slice().to_vec()).collect();
    out_points.sort();
    out_points.dedup();
    assert_eq!(out_points.len(), 21, "no cell listed twice across pages");
    // A page size that divides the cells exactly ends on an empty page.
    let exact = sim.client().with_page_size(3);
    assert_eq!(run(exact.live_cells(dev_lock(1))).unwrap().len(), 21);
    // Another lock's cells are not listed.
    let stranger = default_lock::lock_script([9; 20]);
    assert!(run(client.live_cells(stranger)).unwrap().is_empty());
}

#[test]
fn a_signed_transfer_is_accepted_mined_and_committed() {
    let sim = SimChain::start(&[]);
    let client = sim.client();
    run(async {
        let chain_hash = client.genesis_hash().await.unwrap();
        assert_eq!(chain_hash.to_string(), sim.chain_hash);
        let dep = genesis_default_lock_dep_group(client.transport(), 5_000).await.unwrap();
        let cells = client.live_cells(dev_lock(0)).await.unwrap();
        assert_eq!(cells.len(), 51);
        let input = cells[0].clone();
        let tx = transfer(input.out_point.clone(), input.output.capacity().unpack(), dep);
        let tx = default_lock::sign_group(&tx, &[0], &dev_key(0)).unwrap();

        let hash = client.send_transaction(tx.clone()).await.unwrap();
        let pending = client.transaction_status(hash).await.unwrap();
        assert_eq!(
            (pending.status, pending.block_epoch, pending.tip.block_number),
            (TxStatus::Pending, None, 0)
        );
        // The simulated node answers CKB's -1107 (already in the pool),
        // which the client takes as the tx sent; any other refusal is an error.
        let again = client.send_transaction(tx.clone()).await.unwrap();
        assert_eq!(again, hash);

        let block_hash = client.generate_block().await.unwrap();
        let committed = client.transaction_status(hash).await.unwrap();
        // Block 1 is in epoch 0, at index 1 of the dev chain's 1000.
        let epoch_0_at_1 = EpochNumberWithFraction::new(0, 1, 1000).full_value();
        assert_eq!(
            (
                committed.status,
                committed.block_epoch,
                committed.tip.block_number,
                committed.tip.epoch
            ),
            (
                TxStatus::Committed { block_number: 1 },
                Some(epoch_0_at_1),
                1,
                epoch_0_at_1
            )
        );
        // The spent cell's spender, found through the indexer's get_transactions.
        let (spender, report) = client
            .spender(input.out_point.clone(), dev_lock(0))
            .await
            .unwrap()
            .expect("the transfer spent the cell");
        assert_eq!(spender.as_slice(), tx.as_slice());
        assert_eq!(report.status, TxStatus::Committed { block_number: 1 });
        let change = packed::OutPoint::new_builder()
            .tx_hash(hash.0.pack())
            .index(1u32)
            .build();
        assert!(
            client.spender(change, dev_lock(0)).await.unwrap().is_none(),
            "a live cell has no spender"
        );
        // The status names the block the header lookup knows.
        let answer = call_json(client.transport(), "get_transaction", json!([hash, "0x1"]), 5_000)
            .await
            .unwrap();
        assert_eq!(answer["tx_status"]["block_hash"], json!(block_hash.to_string()));
        let header = call_json(client.transport(), "get_header", json!([block_hash]), 5_000)
            .await
            .unwrap();
        assert_eq!(header["number"], json!("0x1"));
        assert_eq!(header["hash"], json!(block_hash.to_string()));
        // The scripts ran in ckb-vm: the real default lock costs cycles.
        let cycles = answer["cycles"].as_str().expect("cycles for a committed tx");
        let cycles = u64::from_str_radix(cycles.trim_start_matches("0x"), 16).unwrap();
        assert!(cycles > 100_000, "{cycles} cycles");
        let block = call_json(client.transport(), "get_block_by_number", json!(["0x1"]), 5_000)
            .await
            .unwrap();
        assert_eq!(block["transactions"][0]["hash"], json!(hash.to_string()));

        // The indexer moved: the input is gone, the output is listed.
        let spent = client.live_cells(dev_lock(0)).await.unwrap();
        assert!(spent
            .iter()
            .all(|c| c.out_point.as_slice() != input.out_point.as_slice()));
        let received = client.live_cells(dev_lock(1)).await.unwrap();
        let output = packed::OutPoint::new_builder()
            .tx_hash(hash.0.pack())
            .index(0u32)
            .build();
        assert!(received.iter().any(|c| c.out_point.as_slice() == output.as_slice()));
        let live = call_json(
            client.transport(),
            "get_live_cell",
            json!([input_json(&output), true]),
            5_000,
        )
        .await
        .unwrap();
        assert_eq!(live["status"], json!("live"));
        let dead = call_json(
            client.transport(),
            "get_live_cell",
            json!([input_json(&input.out_point), false]),
            5_000,
        )
        .await
        .unwrap();
        assert_eq!(dead["status"], json!("dead"));
        // The spent input still resolves (a peer's inputs are checked this way).
        let resolved = client.resolve_out_points(vec![input.out_point.clone()]).await.unwrap();
        assert_eq!(resolved[0].as_ref().unwrap().output.as_slice(), input.output.as_slice());
    });
}

/// The client asks the indexer for plain cells only: a cell holding data
/// (an NFT, a token) is never listed, however large. Other filters are
/// refused by name rather than ignored.
#[test]
fn live_cells_lists_plain_cells_only() {
    let sim = SimChain::start(&[]);
    let client = sim.client();
    run(async {
        let dep = genesis_default_lock_dep_group(client.transport(), 5_000).await.unwrap();
        let input = client.live_cells(dev_lock(0)).await.unwrap()[0].clone();
        let capacity: u64 = input.output.capacity().unpack();
        let to_dev_1 = |capacity: u64| {
            packed::CellOutput::new_builder()
                .capacity(capacity)
                .lock(dev_lock(1))
                .build()
        };
        let tx = transfer(input.out_point.clone(), capacity, dep);
        let raw = tx
            .raw()
            .as_builder()
            .outputs(vec![to_dev_1(capacity - 2_000 * CKB), to_dev_1(1_000 * CKB)].pack())
            .outputs_data(vec![packed::Bytes::default(), vec![7u8; 500].pack()].pack())
            .build();
        let tx = tx.as_builder().raw(raw).build();
        let tx = default_lock::sign_group(&tx, &[0], &dev_key(0)).unwrap();
        let hash = client.send_transaction(tx).await.unwrap();
        client.generate_block().await.unwrap();

        let cells = client.live_cells(dev_lock(1)).await.unwrap();
        let from_tx: Vec<_> = cells
            .iter()
            .filter(|c| c.out_point.tx_hash().as_slice() == hash.0)
            .collect();
        assert_eq!(from_tx.len(), 1, "only the plain output is listed");
        assert_eq!(Unpack::<u32>::unpack(&from_tx[0].out_point.index()), 0);
        assert!(cells
            .iter()
            .all(|c| c.output_data.is_empty() && c.output.type_().is_none()));

        let search_key = |filter: serde_json::Value| json!([{ "script": dev_lock_json(1), "script_type": "lock", "script_search_mode": "exact", "filter": filter }, "asc", "0x64"]);
        let unfiltered = call_json(client.transport(), "get_cells", search_key(json!(null)), 5_000)
            .await
            .unwrap();
        let with_data = unfiltered["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["output_data"] != json!("0x"));
        assert_eq!(with_data.count(), 1, "the data cell is there, unfiltered");
        let refused = call_json(
            client.transport(),
            "get_cells",
            search_key(json!({ "output_capacity_range": ["0x0", "0x1"] })),
            5_000,
        )
        .await
        .unwrap_err();
        assert!(refused.reason.contains("filter.output_capacity_range"), "{refused}");
    });
}

fn dev_lock_json(index: usize) -> serde_json::Value {
    json!(ckb_jsonrpc_types::Script::from(dev_lock(index)))
}

fn input_json(out_point: &packed::OutPoint) -> serde_json::Value {
    json!(ckb_jsonrpc_types::OutPoint::from(out_point.clone()))
}

#[test]
fn a_bad_signature_is_rejected_with_ckbs_error() {
    let sim = SimChain::start(&[]);
    let client = sim.client();
    run(async {
        let dep = genesis_default_lock_dep_group(client.transport(), 5_000).await.unwrap();
        let input = client.live_cells(dev_lock(0)).await.unwrap()[0].clone();
        let tx = transfer(input.out_point, input.output.capacity().unpack(), dep);
        // Signed by the other dev account's key.
        let forged = default_lock::sign_group(&tx, &[0], &dev_key(1)).unwrap();
        let error = client.send_transaction(forged.clone()).await.unwrap_err();
        assert_eq!(error.kind, ChainErrorKind::Rejected);
        assert_eq!(error.method, "send_transaction");
        for expected in [
            "TransactionFailedToVerify",
            "Inputs[0].Lock",
            "error code -31",
            "(code -302)",
        ] {
            assert!(error.reason.contains(expected), "{expected} missing from {error}");
        }
        let hash = Hash256(forged.calc_tx_hash().unpack());
        assert_eq!(
            client.transaction_status(hash).await.unwrap().status,
            TxStatus::Rejected
        );
        let answer = call_json(client.transport(), "get_transaction", json!([hash]), 5_000)
            .await
            .unwrap();
        let reason = answer["tx_status"]["reason"].as_str().unwrap();
        assert!(reason.contains("\"type\":\"Verification\""), "{reason}");
    });
}

fn hex_u64(value: &serde_json::Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a hex number: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// A transfer whose output names a type script no cell dep provides: every
/// Rust-side check passes (the signature is good), but ckb-vm cannot find the
/// type script's code, as a CKB node would not.
#[test]
fn a_tx_the_scripts_refuse_is_rejected_with_ckbs_script_error() {
    let sim = SimChain::start(&[]);
    let client = sim.client();
    run(async {
        let dep = genesis_default_lock_dep_group(client.transport(), 5_000).await.unwrap();
        let input = client.live_cells(dev_lock(0)).await.unwrap()[0].clone();
        let tx = transfer(input.out_point, input.output.capacity().unpack(), dep);
        let orphan_type = packed::Script::new_builder()
            .code_hash([0x42; 32].pack())
            .hash_type(ckb_types::core::ScriptHashType::Type)
            .build();
        let output = tx
            .raw()
            .outputs()
            .get(0)
            .unwrap()
            .as_builder()
            .type_(Some(orphan_type).pack())
            .build();
        let raw = tx.raw().as_builder().outputs(vec![output].pack()).build();
        let tx = tx.as_builder().raw(raw).build();
        let tx = default_lock::sign_group(&tx, &[0], &dev_key(0)).unwrap();

        let error = client.send_transaction(tx.clone()).await.unwrap_err();
        assert_eq!(error.kind, ChainErrorKind::Rejected);
        for expected in [
            "(code -302)",
            "TransactionFailedToVerify: Verification failed Script(TransactionScriptError",
            "Outputs[0].Type",
            "ScriptNotFound",
        ] {
            assert!(error.reason.contains(expected), "{expected} missing from {error}");
        }
        let hash = Hash256(tx.calc_tx_hash().unpack());
        assert_eq!(
            client.transaction_status(hash).await.unwrap().status,
            TxStatus::Rejected
        );
    });
}

#[test]
fn generate_epochs_mines_whole_and_fractional_epochs_and_headers_follow() {
    let sim = SimChain::start(&[]);
    let transport = HttpTransport::new(sim.rpc.clone());
    run(async {
        let call = |method: &'static str, params: serde_json::Value| call_json(&transport, method, params, 30_000);
        let epoch = |number, index, length| EpochNumberWithFraction::new(number, index, length).full_value();
        let tip_header = call("get_tip_header", json!([])).await.unwrap();
        assert_eq!(hex_u64(&tip_header["epoch"]), epoch(0, 0, 1000));

        // A bare number is whole epochs; the answer is the new tip's epoch, as CKB's.
        let answer = call("generate_epochs", json!(["0x2"])).await.unwrap();
        assert_eq!(hex_u64(&answer), epoch(2, 0, 1000));
        let tip = call("get_tip_block_number", json!([])).await.unwrap();
        assert_eq!(hex_u64(&tip), 2_000);

        // Half an epoch: 500 blocks of 1000.
        let half = format!("{:#x}", epoch(0, 1, 2));
        let answer = call("generate_epochs", json!([half])).await.unwrap();
        assert_eq!(hex_u64(&answer), epoch(2, 500, 1000));
        let tip_header = call("get_tip_header", json!([])).await.unwrap();
        assert_eq!(hex_u64(&tip_header["number"]), 2_500);
        assert_eq!(hex_u64(&tip_header["epoch"]), epoch(2, 500, 1000));
        let header = call("get_header", json!([tip_header["hash"]])).await.unwrap();
        assert_eq!(header["epoch"], tip_header["epoch"]);
        let earlier = call("get_header_by_number", json!(["0x3e7"])).await.unwrap();
        assert_eq!(hex_u64(&earlier["epoch"]), epoch(0, 999, 1000));

        // The client's view of the tip moves too.
        let tip = RpcChainClient::new(transport.clone())
            .transaction_status(Hash256([0; 32]))
            .await
            .unwrap()
            .tip;
        assert_eq!((tip.block_number, tip.epoch), (2_500, epoch(2, 500, 1000)));

        let too_many = call("generate_epochs", json!(["0x100000"])).await.unwrap_err();
        assert!(too_many.reason.contains("-32602"), "{too_many}");
    });
}

#[test]
fn browsers_can_call_it_cors_preflight_and_headers() {
    let sim = SimChain::start(&[]);
    let address = sim.rpc.trim_start_matches("http://").to_owned();
    let exchange = |request: String| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.to_ascii_lowercase()
    };
    let preflight = exchange(format!(
        "OPTIONS / HTTP/1.1\r\nHost: {address}\r\nOrigin: http://localhost:5173\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
         Connection: close\r\n\r\n"
    ));
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(preflight.contains("access-control-allow-origin: *"), "{preflight}");
    assert!(preflight.contains("access-control-allow-methods: post"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-headers: content-type"),
        "{preflight}"
    );

    let body = r#"{"id":7,"jsonrpc":"2.0","method":"get_tip_block_number","params":[]}"#;
    let answer = exchange(format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nOrigin: http://localhost:5173\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("access-control-allow-origin: *"), "{answer}");
    assert!(answer.contains(r#""result":"0x0""#), "{answer}");
}

#[test]
fn an_unknown_method_and_bad_params_get_json_rpc_errors() {
    let sim = SimChain::start(&[]);
    let transport = HttpTransport::new(sim.rpc.clone());
    run(async {
        let unknown = call_json(&transport, "no_such_method", json!([]), 5_000)
            .await
            .unwrap_err();
        assert!(unknown.reason.contains("-32601"), "{unknown}");
        let bad = call_json(&transport, "get_cells", json!([{"script": null}]), 5_000)
            .await
            .unwrap_err();
        assert!(bad.reason.contains("-32602"), "{bad}");
    });
}

#[test]
fn a_refused_connection_is_unreachable_and_names_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let error = run(HttpTransport::new(url.clone()).post("{}".into(), 2_000)).unwrap_err();
    assert!(
        matches!(&error, TransportError::Unreachable(m) if m.contains(&url)),
        "{error:?}"
    );
}

#[test]
fn a_node_that_never_answers_times_out_on_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts and then says nothing.
    let _silent = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    let started = Instant::now();
    let error = run(HttpTransport::new(url).post("{}".into(), 300)).unwrap_err();
    assert_eq!(error, TransportError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// A node that streams an answer without end is cut off at the limit, with
/// an error that says so (not held until memory runs out).
#[test]
fn an_answer_streaming_without_end_is_cut_off_at_the_limit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _endless = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
        let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
        while stream.write_all(chunk.as_bytes()).is_ok() {}
    });
    let error = run(HttpTransport::new(url).post("{}".into(), 30_000)).unwrap_err();
    assert_eq!(
        error,
        TransportError::TooLarge {
            limit: MAX_NATIVE_ANSWER_BYTES as usize
        }
    );
}

#[test]
fn blocks_are_mined_on_a_timer_when_asked() {
    let sim = SimChain::start(&["--block-interval-ms", "50"]);
    let transport = HttpTransport::new(sim.rpc.clone());
    std::thread::sleep(Duration::from_millis(400));
    let tip = run(call_json(&transport, "get_tip_block_number", json!([]), 5_000)).unwrap();
    let tip = u64::from_str_radix(tip.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(tip >= 3, "tip {tip} after 400 ms at one block per 50 ms");
    // Each block links to the one before it.
    let one = run(call_json(&transport, "get_header_by_number", json!(["0x1"]), 5_000)).unwrap();
    let two = run(call_json(&transport, "get_header_by_number", json!(["0x2"]), 5_000)).unwrap();
    assert_eq!(two["parent_hash"], one["hash"]);
}

#[test]
fn an_https_url_is_refused_plainly_since_this_build_has_no_tls() {
    let error = run(HttpTransport::new("https://testnet.ckb.dev/").post("{}".into(), 1_000)).unwrap_err();
    assert!(
        matches!(&error, TransportError::Unreachable(m) if m.contains("https")),
        "{error:?}"
    );
}
