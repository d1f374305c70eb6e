//! What reading the peer's inputs keeps in memory. In the browser that
//! memory is wasm memory, which never shrinks: what a lookup holds at its
//! peak, the page holds for the rest of its life.
//!
//! Its own test binary: the counting allocator below sees every allocation
//! of the process, so nothing else may run beside the one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::client::ChainClient;
use fiber_funding::chain::rpc::{RpcChainClient, RpcTransport, TransportError};
use fiber_funding::tx::json::transaction_json_text;
use futures::executor::block_on;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::Value;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters only add and subtract sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at most, beyond what was live before, while `run` ran.
fn peak_of<T>(run: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = run();
    (value, PEAK.load(Ordering::Relaxed) - before)
}

/// A large tx (250 outputs of 1 KiB data each), one per seed.
fn large_tx(seed: u32) -> packed::Transaction {
    let output = packed::CellOutput::new_builder().capacity(6_100_000_000u64).build();
    let raw = packed::RawTransaction::new_builder()
        .version(seed)
        .outputs((0..250).map(|_| output.clone()).collect::<Vec<_>>().pack())
        .outputs_data(
            (0..250)
                .map(|_| vec![7u8; 1024].pack())
                .collect::<Vec<packed::Bytes>>()
                .pack(),
        )
        .build();
    packed::Transaction::new_builder().raw(raw).build()
}

/// A node holding the large txs, built again for each request.
#[derive(Clone)]
struct NodeOfLargeTxs {
    seeds: std::rc::Rc<HashMap<String, u32>>,
}

impl RpcTransport for NodeOfLargeTxs {
    fn post(&self, body: String, _timeout_ms: u64) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let request: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(request["method"], "get_transaction");
        let seed = self.seeds[request["params"][0].as_str().unwrap()];
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"transaction":{},"tx_status":{{"status":"committed","block_number":"0x1","block_hash":"0x{}","reason":null}}}}}}"#,
            request["id"],
            transaction_json_text(&large_tx(seed)),
            "11".repeat(32)
        );
        futures::future::ready(Ok(answer)).boxed_local()
    }
}

/// The peer names up to 100 inputs, each the first output of another large
/// tx already on chain (anyone's: a big airdrop's, say). Every tx's outputs
/// and their data were kept until the last lookup was done, so 100 such
/// txs held tens of times what one does (the first run: 225 MB against
/// 8 MB, with 1,000 outputs each). Only the outputs asked for are kept.
#[test]
fn reading_a_hundred_inputs_in_large_txs_holds_about_what_reading_one_does() {
    let count = 100u32;
    let hashes: Vec<[u8; 32]> = (0..count).map(|seed| large_tx(seed).calc_tx_hash().unpack()).collect();
    let seeds = hashes
        .iter()
        .zip(0..)
        .map(|(hash, seed)| (format!("0x{}", hex(hash)), seed))
        .collect();
    let client = RpcChainClient::new(NodeOfLargeTxs {
        seeds: std::rc::Rc::new(seeds),
    });
    let first_outputs = |n: usize| -> Vec<packed::OutPoint> {
        hashes[..n]
            .iter()
            .map(|hash| packed::OutPoint::new_builder().tx_hash(hash.pack()).index(0u32).build())
            .collect()
    };

    let (one, peak_one) = peak_of(|| block_on(client.resolve_out_points(first_outputs(1))).unwrap());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].as_ref().unwrap().data, vec![7u8; 1024]);
    let (all, peak_all) = peak_of(|| block_on(client.resolve_out_points(first_outputs(count as usize))).unwrap());
    assert!(all
        .iter()
        .all(|cell| cell.as_ref().is_some_and(|c| c.data.len() == 1024)));
    println!("resolving 1 input: {peak_one} bytes at the peak; {count} inputs: {peak_all}");
    assert!(
        peak_all < 2 * peak_one,
        "{count} inputs held {peak_all} bytes at the peak, one {peak_one}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
