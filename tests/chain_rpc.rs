#![cfg(not(target_arch = "wasm32"))]
//! `RpcChainClient` against a scripted node: every request is checked (method,
//! params, and that CKB's own server-side types accept it) and answered from
//! `tests/fixtures/rpc/`, which hold a CKB 0.210 node's answers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ckb_jsonrpc_types as node;
use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::client::{ChainClient, ChainError, ChainErrorKind};
use fiber_funding::chain::rpc::{
    RpcChainClient, RpcTransport, TransportError, DEFAULT_TIMEOUT_MS, MAX_LIVE_CELLS, MAX_SPENDER_ENTRIES,
};
use fiber_funding::chain::{ChainTip, LiveCell, ResolvedCell, TxReport, TxStatus};
use fiber_funding::primitives::Hash256;
use futures::executor::block_on;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

/// The hash of `get_transaction_source_tx.json`'s transaction (made the wallet's first two cells).
const SOURCE_TX: &str = "0xdf687aefb9cc38151615e9db0fe32b46324c3afb1e15d2e9e661ada3bcb3e802";
/// The hash of `funding_tx.json`.
const FUNDING_TX: &str = "0x8975a80de73e56270f3c81883b03f2c83ddee83808099591e70694e46dcb871f";
/// The block `get_header.json` describes.
const COMMIT_BLOCK: &str = "0x98a6b4ce868b4bc86bffc9e31da18813a258e2c6b0498a52f964ee8925607254";
/// The tip `get_tip_header.json` describes, and the epoch of `get_header.json`'s block.
const TIP: ChainTip = ChainTip {
    block_number: 0x5b1010,
    epoch: 0x7_0803_f600_02c3,
};
const COMMIT_EPOCH: u64 = 0x7_0803_e800_02c3;

fn report_of(status: TxStatus) -> TxReport {
    let block_epoch = matches!(status, TxStatus::Committed { .. }).then_some(COMMIT_EPOCH);
    TxReport {
        status,
        block_epoch,
        tip: TIP,
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/rpc/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn wallet_lock_json() -> Value {
    json!({
        "code_hash": "0x9bd7e06f3ecf4be0f2fcd2188b23f1b9fcc88e5d4b65a8637b17723bbda3cce8",
        "hash_type": "type",
        "args": "0x36c329ed630d6ce750712a477543672adab57f4c"
    })
}

fn wallet_lock() -> packed::Script {
    serde_json::from_value::<node::Script>(wallet_lock_json())
        .unwrap()
        .into()
}

fn funding_tx() -> packed::Transaction {
    serde_json::from_value::<node::Transaction>(fixture("funding_tx.json"))
        .unwrap()
        .into()
}

fn source_tx() -> packed::Transaction {
    let answer = fixture("get_transaction_source_tx.json");
    let view: node::TransactionView = serde_json::from_value(answer["result"]["transaction"].clone()).unwrap();
    view.inner.into()
}

fn out_point(tx_hash: &str, index: u32) -> packed::OutPoint {
    packed::OutPoint::new_builder()
        .tx_hash(Hash256::from_hex(tx_hash).unwrap().0.pack())
        .index(index)
        .build()
}

fn hash(hex: &str) -> Hash256 {
    Hash256::from_hex(hex).unwrap()
}

/// What the scripted node does with one request.
enum Answer {
    /// The fixture, with its id set to the request's.
    Fixture(&'static str),
    /// The fixture as stored, id 42 whatever was asked.
    FixtureKeepingItsId(&'static str),
    /// This body as it is.
    Body(&'static str),
    /// This JSON answer, with its id set to the request's.
    Json(Value),
    Fail(TransportError),
}

struct Exchange {
    method: &'static str,
    params: Value,
    answer: Answer,
}

#[derive(Default)]
struct Script {
    exchanges: VecDeque<Exchange>,
    seen: Vec<(u64, u64)>,
}

/// An `RpcTransport` that plays a scripted node.
#[derive(Clone, Default)]
struct ScriptedNode(Rc<RefCell<Script>>);

impl ScriptedNode {
    fn expect(&self, method: &'static str, params: Value, answer: Answer) -> &Self {
        self.0
            .borrow_mut()
            .exchanges
            .push_back(Exchange { method, params, answer });
        self
    }

    /// Each request's (id, timeout_ms).
    fn seen(&self) -> Vec<(u64, u64)> {
        self.0.borrow().seen.clone()
    }

    fn assert_all_asked(&self) {
        let script = self.0.borrow();
        let left: Vec<_> = script.exchanges.iter().map(|e| e.method).collect();
        assert!(left.is_empty(), "requests never made: {left:?}");
    }
}

impl RpcTransport for ScriptedNode {
    fn post(&self, body: String, timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let request: Value = serde_json::from_str(&body).expect("the request is JSON");
        assert_eq!(request["jsonrpc"], "2.0", "{body}");
        let id = request["id"].as_u64().expect("a numeric id");
        let mut script = self.0.borrow_mut();
        if let Some((last, _)) = script.seen.last() {
            assert!(id > *last, "request ids increase: {id} after {last}");
        }
        script.seen.push((id, timeout_ms));
        let exchange = script
            .exchanges
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected request {body}"));
        assert_eq!(request["method"], exchange.method, "{body}");
        assert_eq!(request["params"], exchange.params, "params of {}", exchange.method);
        node_accepts(exchange.method, &request["params"]);
        let answer = match exchange.answer {
            Answer::Fixture(name) => {
                let mut answer = fixture(name);
                answer["id"] = json!(id);
                Ok(answer.to_string())
            }
            Answer::FixtureKeepingItsId(name) => Ok(fixture(name).to_string()),
            Answer::Body(body) => Ok(body.to_owned()),
            Answer::Json(mut answer) => {
                answer["id"] = json!(id);
                Ok(answer.to_string())
            }
            Answer::Fail(error) => Err(error),
        };
        futures::future::ready(answer).boxed_local()
    }
}

/// Reads the params with the node's own parameter types, as CKB 0.210's server does.
fn node_accepts(method: &str, params: &Value) {
    fn read<T: serde::de::DeserializeOwned>(method: &str, value: &Value) {
        if let Err(e) = serde_json::from_value::<T>(value.clone()) {
            panic!("a CKB node would refuse {method} params {value}: {e}");
        }
    }
    let params = params.as_array().expect("positional params");
    let at = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    match method {
        "get_cells" => {
            assert_eq!(params.len(), 4);
            read::<node::IndexerSearchKey>(method, &at(0));
            read::<node::IndexerOrder>(method, &at(1));
            read::<node::Uint32>(method, &at(2));
            read::<Option<node::JsonBytes>>(method, &at(3));
        }
        "get_transaction" => {
            read::<ckb_types::H256>(method, &at(0));
            read::<Option<node::Uint32>>(method, &at(1));
        }
        "get_header" => read::<ckb_types::H256>(method, &at(0)),
        "get_live_cell" => {
            read::<node::OutPoint>(method, &at(0));
            read::<Option<bool>>(method, &at(1));
        }
        "get_tip_block_number" | "get_tip_header" => assert!(params.is_empty()),
        "get_transactions" => {
            read::<node::IndexerSearchKey>(method, &at(0));
            read::<node::IndexerOrder>(method, &at(1));
            read::<node::Uint32>(method, &at(2));
            read::<Option<node::JsonBytes>>(method, &at(3));
        }
        "send_transaction" => {
            read::<node::Transaction>(method, &at(0));
            read::<Option<node::OutputsValidator>>(method, &at(1));
        }
        other => panic!("unexpected method {other}"),
    }
}

fn client(node: &ScriptedNode) -> RpcChainClient<ScriptedNode> {
    RpcChainClient::new(node.clone())
}

/// `get_cells` asks for plain cells only (no type script, no data): a
/// wallet's NFTs and tokens never fill the answer.
fn get_cells_params(limit: &str, after: Value) -> Value {
    json!([
        {
            "script": wallet_lock_json(),
            "script_type": "lock",
            "script_search_mode": "exact",
            "filter": { "script_len_range": ["0x0", "0x1"], "output_data_len_range": ["0x0", "0x1"] }
        },
        "asc",
        limit,
        after
    ])
}

fn last_cursor(page: &str) -> Value {
    fixture(page)["result"]["last_cursor"].clone()
}

fn status_params(tx_hash: &str) -> Value {
    json!([tx_hash, "0x1"])
}

fn assert_error(error: &ChainError, kind: ChainErrorKind, method: &str) {
    assert_eq!(error.kind, kind, "{error}");
    assert_eq!(error.method, method, "{error}");
    assert!(error.to_string().contains(method), "{error}");
}

#[test]
fn live_cells_follow_the_cursor_across_three_pages() {
    let node = ScriptedNode::default();
    node.expect(
        "get_cells",
        get_cells_params("0x2", Value::Null),
        Answer::Fixture("get_cells_page1.json"),
    )
    .expect(
        "get_cells",
        get_cells_params("0x2", last_cursor("get_cells_page1.json")),
        Answer::Fixture("get_cells_page2.json"),
    )
    .expect(
        "get_cells",
        get_cells_params("0x2", last_cursor("get_cells_page2.json")),
        Answer::Fixture("get_cells_page3.json"),
    );

    let cells = block_on(client(&node).with_page_size(2).live_cells(wallet_lock())).unwrap();

    node.assert_all_asked();
    let summary: Vec<(packed::OutPoint, u64, u64, Vec<u8>)> = cells
        .iter()
        .map(|c| {
            let capacity: u64 = c.output.capacity().unpack();
            (c.out_point.clone(), capacity, c.block_number, c.output_data.clone())
        })
        .collect();
    // The first page's second cell is a token (type script and data), which
    // a node honouring the plain-cells filter would not list: not kept.
    assert!(fixture("get_cells_page1.json")["result"]["objects"][1]["output"]["type"].is_object());
    assert_eq!(
        summary,
        vec![
            (out_point(SOURCE_TX, 0), 0x174876e800, 0x5b0e6d, vec![]),
            (
                out_point("0xece3a27409bde2914fb7a1555d6bfca453ee46af73e665149ef549fd46ec1fc6", 0),
                0x189640200,
                0x5b0e90,
                vec![]
            ),
            (
                out_point("0x5c48768f91e3795b418c53211c76fd038c464a24c4aa7e35bbbb6ac5b219f581", 2),
                0xe36dceec20,
                0x5b0ead,
                vec![]
            ),
            (
                out_point("0x9ea14510219ae97afa0275215fa77c3c015905281c953a3917a7fd036767429c", 0),
                0x2540be400,
                0x5b0f8c,
                vec![]
            ),
        ]
    );
    assert!(cells.iter().all(|c| c.output.lock() == wallet_lock()));
    // The same output as the transaction that made it.
    let outputs: Vec<packed::CellOutput> = source_tx().raw().outputs().into_iter().collect();
    assert_eq!(cells[0].output, outputs[0]);
}

#[test]
fn null_output_data_reads_as_empty_data() {
    let node = ScriptedNode::default();
    node.expect(
        "get_cells",
        get_cells_params("0x3", Value::Null),
        Answer::Fixture("get_cells_page2.json"),
    );

    let cells = block_on(client(&node).with_page_size(3).live_cells(wallet_lock())).unwrap();

    assert_eq!(
        fixture("get_cells_page2.json")["result"]["objects"][0]["output_data"],
        Value::Null
    );
    assert_eq!(cells.len(), 2, "a short page is the last one");
    assert_eq!(cells[0].output_data, Vec::<u8>::new());
    node.assert_all_asked();
}

#[test]
fn a_lock_without_cells_takes_one_request_of_the_default_page_size() {
    let node = ScriptedNode::default();
    node.expect(
        "get_cells",
        get_cells_params("0x64", Value::Null),
        Answer::Fixture("get_cells_empty.json"),
    );

    let cells = block_on(client(&node).live_cells(wallet_lock())).unwrap();

    assert!(cells.is_empty());
    node.assert_all_asked();
}

#[test]
fn a_full_page_that_does_not_move_the_cursor_is_a_bad_response() {
    let node = ScriptedNode::default();
    node.expect(
        "get_cells",
        get_cells_params("0x2", Value::Null),
        Answer::Fixture("get_cells_page1.json"),
    )
    .expect(
        "get_cells",
        get_cells_params("0x2", last_cursor("get_cells_page1.json")),
        Answer::Fixture("get_cells_page1.json"),
    );

    let error = block_on(client(&node).with_page_size(2).live_cells(wallet_lock())).unwrap_err();

    assert_error(&error, ChainErrorKind::BadResponse, "get_cells");
    assert!(error.reason.contains("cursor"), "{error}");
}

/// `get_cells` for the wallet's lock, answered with one page whose second
/// cell is changed by `change` (the page fixture's own cells are the
/// wallet's plain cells).
fn live_cells_with_the_second_changed(change: impl FnOnce(&mut Value)) -> Result<Vec<LiveCell>, ChainError> {
    let mut page = fixture("get_cells_page2.json");
    change(&mut page["result"]["objects"][1]);
    let node = ScriptedNode::default();
    node.expect("get_cells", get_cells_params("0x3", Value::Null), Answer::Json(page));
    block_on(client(&node).with_page_size(3).live_cells(wallet_lock()))
}

/// A cell under another lock answers another question: spent, it is one
/// the wallet cannot sign (and its owner, perhaps the peer, could complete
/// the funding tx whenever it chose). The answer is refused.
#[test]
fn a_get_cells_answer_with_a_cell_under_another_lock_is_a_bad_response() {
    let error = live_cells_with_the_second_changed(|cell| {
        cell["output"]["lock"]["args"] = json!("0x5555555555555555555555555555555555555555");
    })
    .unwrap_err();
    assert_error(&error, ChainErrorKind::BadResponse, "get_cells");
    assert!(error.reason.contains("another lock"), "{error}");
}

/// Asked for plain cells only, a node sends cells with data: they could
/// never fund a channel, and kept, 10,000 of them with up to 4 MiB of data
/// per page would fill the tab's memory. They are not kept.
#[test]
fn cells_with_data_or_a_type_script_in_a_get_cells_answer_are_not_kept() {
    let cells = live_cells_with_the_second_changed(|cell| {
        cell["output_data"] = json!(format!("0x{}", "ab".repeat(1_000)));
    })
    .unwrap();
    assert_eq!(cells.len(), 1);
    assert!(cells.iter().all(|c| c.output_data.is_empty()));
    let cells = live_cells_with_the_second_changed(|cell| {
        cell["output"]["type"] =
            json!({ "code_hash": format!("0x{}", "77".repeat(32)), "hash_type": "type", "args": "0x" });
    })
    .unwrap();
    assert_eq!(cells.len(), 1);
    assert!(cells.iter().all(|c| c.output.type_().is_none()));
}

#[test]
fn each_node_status_maps_to_a_tx_status_with_the_tip() {
    let cases = [
        ("get_transaction_pending.json", TxStatus::Pending),
        ("get_transaction_proposed.json", TxStatus::Pending),
        (
            "get_transaction_committed.json",
            TxStatus::Committed { block_number: 0x5b1002 },
        ),
        ("get_transaction_unknown.json", TxStatus::Unknown),
        ("get_transaction_rejected.json", TxStatus::Rejected),
    ];
    for (answer, expected) in cases {
        let node = ScriptedNode::default();
        node.expect("get_transaction", status_params(FUNDING_TX), Answer::Fixture(answer));
        if matches!(expected, TxStatus::Committed { .. }) {
            // The block's epoch, which relative-epoch `since` values count from.
            node.expect("get_header", json!([COMMIT_BLOCK]), Answer::Fixture("get_header.json"));
        }
        node.expect("get_tip_header", json!([]), Answer::Fixture("get_tip_header.json"));

        let status = block_on(client(&node).transaction_status(hash(FUNDING_TX))).unwrap();

        assert_eq!(status, report_of(expected), "{answer}");
        node.assert_all_asked();
    }
}

#[test]
fn an_unknown_transaction_is_a_status_not_an_error() {
    let node = ScriptedNode::default();
    let never_sent = "0x1111111111111111111111111111111111111111111111111111111111111111";
    node.expect(
        "get_transaction",
        status_params(never_sent),
        Answer::Fixture("get_transaction_unknown.json"),
    )
    .expect("get_tip_header", json!([]), Answer::Fixture("get_tip_header.json"));

    let status = block_on(client(&node).transaction_status(hash(never_sent))).unwrap();

    assert_eq!(status, report_of(TxStatus::Unknown));
}

#[test]
fn a_commit_without_block_number_is_looked_up_by_block_hash() {
    let node = ScriptedNode::default();
    node.expect(
        "get_transaction",
        status_params(FUNDING_TX),
        Answer::Fixture("get_transaction_committed_without_block_number.json"),
    )
    .expect("get_header", json!([COMMIT_BLOCK]), Answer::Fixture("get_header.json"))
    .expect("get_tip_header", json!([]), Answer::Fixture("get_tip_header.json"));

    let status = block_on(client(&node).transaction_status(hash(FUNDING_TX))).unwrap();

    assert_eq!(status, report_of(TxStatus::Committed { block_number: 0x5b1002 }));
    node.assert_all_asked();
}

#[test]
fn a_commit_in_a_block_the_node_does_not_know_is_a_bad_response() {
    let node = ScriptedNode::default();
    node.expect(
        "get_transaction",
        status_params(FUNDING_TX),
        Answer::Fixture("get_transaction_committed_without_block_number.json"),
    )
    .expect(
        "get_header",
        json!([COMMIT_BLOCK]),
        Answer::Fixture("get_header_unknown.json"),
    );

    let error = block_on(client(&node).transaction_status(hash(FUNDING_TX))).unwrap_err();

    assert_error(&error, ChainErrorKind::BadResponse, "get_header");
}

#[test]
fn resolve_reads_outputs_once_per_transaction_and_reports_what_is_missing() {
    let node = ScriptedNode::default();
    let missing_tx = "0x2222222222222222222222222222222222222222222222222222222222222222";
    node.expect(
        "get_transaction",
        json!([SOURCE_TX, "0x2"]),
        Answer::Fixture("get_transaction_source_tx.json"),
    )
    .expect(
        "get_transaction",
        json!([missing_tx, "0x2"]),
        Answer::Fixture("get_transaction_unknown.json"),
    );

    let outputs = block_on(client(&node).resolve_out_points(vec![
        out_point(SOURCE_TX, 1),
        out_point(missing_tx, 0),
        out_point(SOURCE_TX, 0),
        out_point(SOURCE_TX, 2),
    ]))
    .unwrap();

    let raw = source_tx().raw();
    let cell = |index: usize| ResolvedCell {
        output: raw.outputs().get(index).unwrap(),
        data: raw.outputs_data().get(index).unwrap().raw_data().to_vec(),
    };
    assert_eq!(outputs, vec![Some(cell(1)), None, Some(cell(0)), None]);
    node.assert_all_asked();
}

#[test]
fn live_cells_are_told_from_spent_and_unknown_ones_by_get_live_cell() {
    let node = ScriptedNode::default();
    let ask = |index: u32| json!([{ "tx_hash": SOURCE_TX, "index": format!("{index:#x}") }, false]);
    node.expect(
        "get_live_cell",
        ask(0),
        Answer::Body(r#"{"id":1,"jsonrpc":"2.0","result":{"cell":null,"status":"live"}}"#),
    )
    .expect(
        "get_live_cell",
        ask(1),
        Answer::Body(r#"{"id":2,"jsonrpc":"2.0","result":{"cell":null,"status":"dead"}}"#),
    )
    .expect(
        "get_live_cell",
        ask(2),
        Answer::Body(r#"{"id":3,"jsonrpc":"2.0","result":{"cell":null,"status":"unknown"}}"#),
    );
    let live = block_on(client(&node).cells_live(vec![
        out_point(SOURCE_TX, 0),
        out_point(SOURCE_TX, 1),
        out_point(SOURCE_TX, 2),
    ]))
    .unwrap();
    assert_eq!(live, vec![true, false, false]);
    node.assert_all_asked();

    let odd = ScriptedNode::default();
    odd.expect(
        "get_live_cell",
        ask(0),
        Answer::Body(r#"{"id":1,"jsonrpc":"2.0","result":{"cell":null,"status":"alive"}}"#),
    );
    let error = block_on(client(&odd).cells_live(vec![out_point(SOURCE_TX, 0)])).unwrap_err();
    assert_error(&error, ChainErrorKind::BadResponse, "get_live_cell");
}

#[test]
fn resolve_refuses_a_transaction_other_than_the_one_asked_for() {
    let node = ScriptedNode::default();
    node.expect(
        "get_transaction",
        json!([FUNDING_TX, "0x2"]),
        Answer::Fixture("get_transaction_source_tx.json"),
    );

    let error = block_on(client(&node).resolve_out_points(vec![out_point(FUNDING_TX, 0)])).unwrap_err();

    assert_error(&error, ChainErrorKind::BadResponse, "get_transaction");
    assert!(error.reason.contains(SOURCE_TX), "{error}");
}

#[test]
fn send_transaction_passes_the_tx_through_and_returns_its_hash() {
    let node = ScriptedNode::default();
    node.expect(
        "send_transaction",
        json!([fixture("funding_tx.json"), "passthrough"]),
        Answer::Fixture("send_transaction.json"),
    );

    let sent = block_on(client(&node).send_transaction(funding_tx())).unwrap();

    assert_eq!(sent, hash(FUNDING_TX));
    node.assert_all_asked();
}

#[test]
fn send_transaction_answered_with_another_hash_is_a_bad_response() {
    let node = ScriptedNode::default();
    let tx = source_tx();
    let tx_json = serde_json::to_value(node::Transaction::from(tx.clone())).unwrap();
    node.expect(
        "send_transaction",
        json!([tx_json, "passthrough"]),
        Answer::Fixture("send_transaction.json"),
    );

    let error = block_on(client(&node).send_transaction(tx)).unwrap_err();

    assert_error(&error, ChainErrorKind::BadResponse, "send_transaction");
    assert!(
        error.reason.contains(FUNDING_TX) && error.reason.contains(SOURCE_TX),
        "{error}"
    );
}

#[test]
fn a_node_refusing_the_tx_is_rejected_with_its_message() {
    let node = ScriptedNode::default();
    node.expect(
        "send_transaction",
        json!([fixture("funding_tx.json"), "passthrough"]),
        Answer::Json(json!({
            "jsonrpc": "2.0",
            "error": {
                "code": -301,
                "message": "TransactionFailedToResolve: Resolve failed Dead(OutPoint(0x8975a80de73e56270f3c81883b03f2c83ddee83808099591e70694e46dcb871f00000000))"
            }
        })),
    );

    let error = block_on(client(&node).send_transaction(funding_tx())).unwrap_err();

    assert_error(&error, ChainErrorKind::Rejected, "send_transaction");
    let message = error.to_string();
    assert!(message.contains("TransactionFailedToResolve"), "{message}");
    assert!(message.contains("-301"), "{message}");
}

/// A send that timed out may still have reached the node; sent again, CKB
/// answers -1107, "already exists in transaction_pool". That is the tx
/// sent, not refused: taken as a refusal, a claim of ours in the pool was
/// dropped as if the other side had spent its cell first.
#[test]
fn a_node_answering_the_tx_is_already_in_its_pool_counts_as_sent() {
    let node = ScriptedNode::default();
    node.expect(
        "send_transaction",
        json!([fixture("funding_tx.json"), "passthrough"]),
        Answer::Fixture("send_transaction_duplicated.json"),
    );

    let sent = block_on(client(&node).send_transaction(funding_tx())).unwrap();

    assert_eq!(sent, hash(FUNDING_TX));
    node.assert_all_asked();
}

#[test]
fn transport_failures_and_odd_answers_map_to_kinds_naming_the_method() {
    let http = |status: u16, body: &str| {
        Answer::Fail(TransportError::Http {
            status,
            body: body.to_owned(),
        })
    };
    let cases: Vec<(Answer, ChainErrorKind, &str)> = vec![
        (
            Answer::Fail(TransportError::Unreachable(
                "http://127.0.0.1:8114/: connection refused".into(),
            )),
            ChainErrorKind::Unreachable,
            "connection refused",
        ),
        (
            Answer::Fail(TransportError::Timeout),
            ChainErrorKind::Timeout,
            "10000 ms",
        ),
        (
            http(500, "Internal Server Error"),
            ChainErrorKind::Unreachable,
            "HTTP 500",
        ),
        (
            http(502, "<html>Bad Gateway</html>"),
            ChainErrorKind::Unreachable,
            "HTTP 502",
        ),
        (http(408, ""), ChainErrorKind::Timeout, "HTTP 408"),
        (
            Answer::Fail(TransportError::TooLarge { limit: 4_194_304 }),
            ChainErrorKind::BadResponse,
            "answer longer than 4194304 bytes",
        ),
        (
            http(405, "Used HTTP Method is not allowed. POST or OPTIONS is required"),
            ChainErrorKind::BadResponse,
            "HTTP 405",
        ),
        (
            Answer::Body("<!DOCTYPE html><html><body>not a node</body></html>"),
            ChainErrorKind::BadResponse,
            "not JSON",
        ),
        (
            Answer::Body("[1, 2]"),
            ChainErrorKind::BadResponse,
            "not a JSON-RPC object",
        ),
        (
            Answer::FixtureKeepingItsId("get_tip_block_number.json"),
            ChainErrorKind::BadResponse,
            "does not match request id",
        ),
        (
            Answer::Body(r#"{"jsonrpc":"2.0","id":1}"#),
            ChainErrorKind::BadResponse,
            "neither result nor error",
        ),
        (
            Answer::Fixture("get_tip_block_number.json"),
            ChainErrorKind::BadResponse,
            "unexpected result",
        ),
        (
            Answer::Body(r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#),
            ChainErrorKind::Rejected,
            "Parse error (code -32700)",
        ),
    ];
    for (answer, kind, detail) in cases {
        let node = ScriptedNode::default();
        node.expect("get_transaction", status_params(FUNDING_TX), answer);

        let error = block_on(client(&node).transaction_status(hash(FUNDING_TX))).unwrap_err();

        assert_error(&error, kind, "get_transaction");
        assert!(error.to_string().contains(detail), "{error} should mention {detail:?}");
    }
}

#[test]
fn every_method_names_itself_when_the_node_is_unreachable() {
    let unreachable = || Answer::Fail(TransportError::Unreachable("offline".into()));
    let node = ScriptedNode::default();
    node.expect("get_cells", get_cells_params("0x64", Value::Null), unreachable())
        .expect("get_transaction", json!([SOURCE_TX, "0x2"]), unreachable())
        .expect(
            "send_transaction",
            json!([fixture("funding_tx.json"), "passthrough"]),
            unreachable(),
        )
        .expect(
            "get_transaction",
            status_params(FUNDING_TX),
            Answer::Fixture("get_transaction_pending.json"),
        )
        .expect("get_tip_header", json!([]), unreachable());
    let client = client(&node);

    let errors = [
        block_on(client.live_cells(wallet_lock())).unwrap_err(),
        block_on(client.resolve_out_points(vec![out_point(SOURCE_TX, 0)])).unwrap_err(),
        block_on(client.send_transaction(funding_tx())).unwrap_err(),
        block_on(client.transaction_status(hash(FUNDING_TX))).unwrap_err(),
    ];

    let methods: Vec<&str> = errors.iter().map(|e| e.method).collect();
    assert_eq!(
        methods,
        ["get_cells", "get_transaction", "send_transaction", "get_tip_header"]
    );
    for error in &errors {
        assert_error(error, ChainErrorKind::Unreachable, error.method);
        assert!(error.is_transient());
    }
    node.assert_all_asked();
}

#[test]
fn requests_carry_increasing_ids_and_the_configured_timeout() {
    let node = ScriptedNode::default();
    for _ in 0..2 {
        node.expect(
            "get_transaction",
            status_params(FUNDING_TX),
            Answer::Fixture("get_transaction_pending.json"),
        )
        .expect("get_tip_header", json!([]), Answer::Fixture("get_tip_header.json"));
    }
    let default_client = client(&node);
    let quick_client = default_client.clone().with_timeout_ms(2_500);

    block_on(default_client.transaction_status(hash(FUNDING_TX))).unwrap();
    block_on(quick_client.transaction_status(hash(FUNDING_TX))).unwrap();

    assert_eq!(
        node.seen(),
        vec![(1, DEFAULT_TIMEOUT_MS), (2, DEFAULT_TIMEOUT_MS), (3, 2_500), (4, 2_500)]
    );
}

/// `get_transactions`' answer naming `(tx_hash, io_type)` pairs.
fn indexed_txs(entries: &[(&str, &str)]) -> Value {
    indexed_page(entries, "0x")
}

/// A page of `get_transactions`' answer, with the cursor of its last entry.
fn indexed_page(entries: &[(&str, &str)], last_cursor: &str) -> Value {
    let objects: Vec<Value> = entries
        .iter()
        .map(|(hash, io_type)| {
            json!({ "tx_hash": hash, "block_number": "0x5b1002", "tx_index": "0x2", "io_index": "0x0", "io_type": io_type })
        })
        .collect();
    json!({ "jsonrpc": "2.0", "result": { "objects": objects, "last_cursor": last_cursor } })
}

fn live_cell_status(status: &str) -> Value {
    json!({ "jsonrpc": "2.0", "result": { "cell": null, "status": status } })
}

fn spender_search() -> Value {
    spender_search_after(Value::Null)
}

fn spender_search_after(cursor: Value) -> Value {
    json!([
        { "script": wallet_lock_json(), "script_type": "lock", "script_search_mode": "exact" },
        "desc",
        "0x10",
        cursor
    ])
}

/// The funding tx (which spends `SOURCE_TX:0`) at verbosity 2, committed.
fn funding_tx_answer() -> Value {
    let mut tx = fixture("funding_tx.json");
    tx["hash"] = json!(FUNDING_TX);
    json!({
        "jsonrpc": "2.0",
        "result": {
            "transaction": tx,
            "cycles": null,
            "tx_status": { "status": "committed", "block_number": "0x5b1002", "block_hash": COMMIT_BLOCK, "reason": null }
        }
    })
}

/// `get_live_cell` of `cell`: dead.
fn expect_dead_cell(node: &ScriptedNode, cell: &packed::OutPoint) {
    node.expect(
        "get_live_cell",
        json!([node::OutPoint::from(cell.clone()), false]),
        Answer::Json(live_cell_status("dead")),
    );
}

/// The spender's reads once the indexer named it: the tx (hash-checked),
/// its status (committed), its block's header and the tip.
fn expect_the_committed_spender(node: &ScriptedNode) {
    node.expect(
        "get_transaction",
        json!([FUNDING_TX, "0x2"]),
        Answer::Json(funding_tx_answer()),
    )
    .expect(
        "get_transaction",
        status_params(FUNDING_TX),
        Answer::Fixture("get_transaction_committed.json"),
    )
    .expect("get_header", json!([COMMIT_BLOCK]), Answer::Fixture("get_header.json"))
    .expect("get_tip_header", json!([]), Answer::Fixture("get_tip_header.json"));
}

#[test]
fn the_spender_of_a_dead_cell_is_found_through_the_indexer_and_its_hash_checked() {
    let node = ScriptedNode::default();
    let spent = out_point(SOURCE_TX, 0);
    expect_dead_cell(&node, &spent);
    node.expect(
        "get_transactions",
        spender_search(),
        Answer::Json(indexed_txs(&[(FUNDING_TX, "input"), (SOURCE_TX, "output")])),
    );
    expect_the_committed_spender(&node);

    let (tx, report) = block_on(client(&node).spender(spent, wallet_lock()))
        .unwrap()
        .expect("a spender");

    assert_eq!(tx.as_slice(), funding_tx().as_slice());
    assert_eq!(report, report_of(TxStatus::Committed { block_number: 0x5b1002 }));
    node.assert_all_asked();
}

#[test]
fn a_live_cell_has_no_spender_and_an_indexer_naming_a_tx_that_does_not_spend_it_is_not_believed() {
    let node = ScriptedNode::default();
    let cell = out_point(SOURCE_TX, 1);
    node.expect(
        "get_live_cell",
        json!([node::OutPoint::from(cell.clone()), false]),
        Answer::Json(live_cell_status("live")),
    );
    assert!(block_on(client(&node).spender(cell.clone(), wallet_lock()))
        .unwrap()
        .is_none());
    node.assert_all_asked();

    // Dead, but the only tx the indexer names spends SOURCE_TX:0, not :1.
    let node = ScriptedNode::default();
    expect_dead_cell(&node, &cell);
    node.expect(
        "get_transactions",
        spender_search(),
        Answer::Json(indexed_txs(&[(FUNDING_TX, "input")])),
    )
    .expect(
        "get_transaction",
        json!([FUNDING_TX, "0x2"]),
        Answer::Json(funding_tx_answer()),
    );
    assert!(block_on(client(&node).spender(cell, wallet_lock())).unwrap().is_none());
    node.assert_all_asked();
}

/// Another committed tx than the funding tx, `n` apart (its version), that
/// spends `SOURCE_TX:7`: its hash and its answer at verbosity 2.
fn another_spend(n: u32) -> (String, Value) {
    let mut tx = fixture("funding_tx.json");
    tx["version"] = json!(format!("{n:#x}"));
    tx["inputs"][0]["previous_output"]["index"] = json!("0x7");
    let packed: packed::Transaction = serde_json::from_value::<node::Transaction>(tx.clone()).unwrap().into();
    let hash = Hash256(packed.calc_tx_hash().unpack()).to_string();
    tx["hash"] = json!(hash);
    let answer = json!({
        "jsonrpc": "2.0",
        "result": {
            "transaction": tx,
            "cycles": null,
            "tx_status": { "status": "committed", "block_number": "0x5b1002", "block_hash": COMMIT_BLOCK, "reason": null }
        }
    });
    (hash, answer)
}

#[test]
fn a_node_listing_endless_candidates_gets_no_more_lookups_than_were_asked_for() {
    let node = ScriptedNode::default();
    let cell = out_point(SOURCE_TX, 1);
    let spends: Vec<(String, Value)> = (0..40).map(another_spend).collect();
    let flood: Vec<(&str, &str)> = spends.iter().map(|(hash, _)| (hash.as_str(), "input")).collect();
    expect_dead_cell(&node, &cell);
    node.expect("get_transactions", spender_search(), Answer::Json(indexed_txs(&flood)));
    // 16 candidates asked for, 16 read (none spends the cell); a 17th read
    // would be an unexpected request.
    for (hash, answer) in &spends[..16] {
        node.expect("get_transaction", json!([hash, "0x2"]), Answer::Json(answer.clone()));
    }
    assert!(block_on(client(&node).spender(cell, wallet_lock())).unwrap().is_none());
    node.assert_all_asked();
}

/// A wallet's lock lists an `input` entry per cell a tx spends: one tx
/// gathering 20 of the wallet's cells is 20 entries. Counted as 20
/// candidates, it used up the search (16) before the spender, on an honest
/// node, and an aborted flow's watch never settled. A tx already read is
/// not read again, nor counted.
#[test]
fn a_tx_listed_once_per_input_it_spends_is_one_candidate() {
    let node = ScriptedNode::default();
    let cell = out_point(SOURCE_TX, 0);
    let (gathering, answer) = another_spend(1);
    let first: Vec<(&str, &str)> = (0..16).map(|_| (gathering.as_str(), "input")).collect();
    let mut second: Vec<(&str, &str)> = (0..4).map(|_| (gathering.as_str(), "input")).collect();
    second.push((FUNDING_TX, "input"));
    expect_dead_cell(&node, &cell);
    node.expect(
        "get_transactions",
        spender_search(),
        Answer::Json(indexed_page(&first, "0x01")),
    )
    .expect("get_transaction", json!([gathering, "0x2"]), Answer::Json(answer))
    .expect(
        "get_transactions",
        spender_search_after(json!("0x01")),
        Answer::Json(indexed_txs(&second)),
    );
    expect_the_committed_spender(&node);
    let (spender, _) = block_on(client(&node).spender(cell, wallet_lock()))
        .unwrap()
        .expect("found");
    assert_eq!(Hash256(spender.calc_tx_hash().unpack()).to_string(), FUNDING_TX);
    node.assert_all_asked();
}

/// A node whose full pages never end (its cursors cycle, each page longer
/// than asked) is read up to a bound, not until memory runs out.
#[test]
fn a_node_paging_forever_is_read_up_to_a_bound() {
    let node = ScriptedNode::default();
    let page = |cursor: &str| {
        let mut page = fixture("get_cells_page1.json");
        // Plain cells only (the fixture's second is a token, not kept).
        let extra = page["result"]["objects"][0].clone();
        page["result"]["objects"][1] = extra.clone();
        page["result"]["objects"].as_array_mut().unwrap().push(extra);
        page["result"]["last_cursor"] = json!(cursor);
        page
    };
    let cursors = ["0x01", "0x02"];
    let pages = MAX_LIVE_CELLS / 2;
    for at in 0..pages {
        let after = if at == 0 {
            Value::Null
        } else {
            json!(cursors[(at - 1) % 2])
        };
        node.expect(
            "get_cells",
            get_cells_params("0x2", after),
            Answer::Json(page(cursors[at % 2])),
        );
    }

    let cells = block_on(client(&node).with_page_size(2).live_cells(wallet_lock())).unwrap();

    assert_eq!(cells.len(), MAX_LIVE_CELLS);
    node.assert_all_asked();
}

/// Anyone can make cells under a funding lock (61 CKB each): a page of them
/// made after the spend comes first, newest first. The spend is found on
/// the page after.
#[test]
fn a_spend_buried_under_a_page_of_new_cells_is_found_on_the_next() {
    let node = ScriptedNode::default();
    let spent = out_point(SOURCE_TX, 0);
    let decoys: Vec<(&str, &str)> = (0..16).map(|_| (SOURCE_TX, "output")).collect();
    expect_dead_cell(&node, &spent);
    node.expect(
        "get_transactions",
        spender_search(),
        Answer::Json(indexed_page(&decoys, "0x01")),
    )
    .expect(
        "get_transactions",
        spender_search_after(json!("0x01")),
        Answer::Json(indexed_txs(&[(FUNDING_TX, "input")])),
    );
    expect_the_committed_spender(&node);

    let (tx, _) = block_on(client(&node).spender(spent, wallet_lock()))
        .unwrap()
        .expect("the spend under the decoys");

    assert_eq!(tx.as_slice(), funding_tx().as_slice());
    node.assert_all_asked();
}

/// A node whose pages of a lock's entries never end is read up to a bound.
#[test]
fn a_spender_search_that_pages_forever_stops_at_a_bound() {
    let node = ScriptedNode::default();
    let cell = out_point(SOURCE_TX, 1);
    let decoys: Vec<(&str, &str)> = (0..16).map(|_| (SOURCE_TX, "output")).collect();
    expect_dead_cell(&node, &cell);
    let cursors = ["0x01", "0x02"];
    for page in 0..MAX_SPENDER_ENTRIES / 16 {
        let after = if page == 0 {
            Value::Null
        } else {
            json!(cursors[(page - 1) % 2])
        };
        node.expect(
            "get_transactions",
            spender_search_after(after),
            Answer::Json(indexed_page(&decoys, cursors[page % 2])),
        );
    }

    assert!(block_on(client(&node).spender(cell, wallet_lock())).unwrap().is_none());
    node.assert_all_asked();
}

/// A published code cell is asked for by its type script alone, without
/// its data (the contract binary), in one page of two: one cell is what a
/// type id allows, a second says the answer cannot be trusted.
#[test]
fn cells_with_a_type_are_asked_for_exactly_and_without_data() {
    let type_script = json!({
        "code_hash": "0x00000000000000000000000000000000000000000000000000545950455f4944",
        "hash_type": "type",
        "args": "0x3cb7c0304fe53f75bb5727e2484d0beae4bd99d979813c6fc97c3cca569f10f6"
    });
    let node = ScriptedNode::default();
    node.expect(
        "get_cells",
        json!([
            { "script": type_script, "script_type": "type", "script_search_mode": "exact", "with_data": false },
            "asc",
            "0x2",
            null
        ]),
        Answer::Json(json!({
            "jsonrpc": "2.0",
            "result": {
                "last_cursor": "0x01",
                "objects": [{
                    "block_number": "0x10",
                    "out_point": { "tx_hash": SOURCE_TX, "index": "0x0" },
                    "output": { "capacity": "0x174876e800", "lock": wallet_lock_json(), "type": type_script },
                    "output_data": null,
                    "tx_index": "0x1"
                }]
            }
        })),
    );
    let script: packed::Script = serde_json::from_value::<node::Script>(type_script.clone())
        .unwrap()
        .into();

    let cells = block_on(client(&node).cells_with_type(script.clone(), 2)).unwrap();

    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].out_point, out_point(SOURCE_TX, 0));
    assert_eq!(cells[0].output.type_().to_opt(), Some(script));
    assert!(cells[0].output_data.is_empty());
    node.assert_all_asked();
}

/// A node that answers nothing at once: each request stays in flight for
/// one turn of the executor, then fails. It keeps the most requests it
/// ever had in flight together.
#[derive(Clone, Default)]
struct SlowNode {
    in_flight: Rc<std::cell::Cell<usize>>,
    most_in_flight: Rc<std::cell::Cell<usize>>,
}

impl RpcTransport for SlowNode {
    fn post(&self, _body: String, _timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let (in_flight, most) = (self.in_flight.clone(), self.most_in_flight.clone());
        let mut started = false;
        futures::future::poll_fn(move |cx| {
            if !started {
                started = true;
                in_flight.set(in_flight.get() + 1);
                most.set(most.get().max(in_flight.get()));
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            in_flight.set(in_flight.get() - 1);
            std::task::Poll::Ready(Err(TransportError::Timeout))
        })
        .boxed_local()
    }
}

/// The peer picks the inputs it adds (up to 100), each in another large tx:
/// their lookups all went out at once, with every answer (up to 4 MiB each)
/// held together in the page's memory, and on a slow link or a rate-limited
/// node the batch timed out every time. A few are in flight at a time.
#[test]
fn the_txs_of_a_hundred_inputs_are_looked_up_a_few_at_a_time() {
    let node = SlowNode::default();
    let out_points: Vec<packed::OutPoint> = (0..100u8)
        .map(|i| {
            packed::OutPoint::new_builder()
                .tx_hash([i; 32].pack())
                .index(0u32)
                .build()
        })
        .collect();
    let _ = block_on(RpcChainClient::new(node.clone()).resolve_out_points(out_points));
    assert!(
        (1..=fiber_funding::chain::rpc::MAX_LOOKUPS_IN_FLIGHT).contains(&node.most_in_flight.get()),
        "{} lookups in flight together",
        node.most_in_flight.get()
    );
}
