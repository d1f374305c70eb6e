//! The counterparty as a hub under load: N simulated browsers — each the
//! real initiator driver over the real WebSocket client (BOLT 8) and the
//! HTTP chain client, each with a wallet of its own — open a channel with one
//! `fiber-counterparty` process at once, sign with the default lock, submit
//! and wait for `ChannelReady` on `fiber-simchain`, which the bench mines on
//! a fixed interval. The counterparty's redb store fsyncs every write.
//! With `--kill` the counterparty is `kill -9`ed once half the unsigned txs
//! have been handed out and restarted on the same data dir.
//!
//! Run by `scripts/bench-hub`, which builds this and the binaries with
//! `--release` and passes their paths:
//!
//! ```text
//! bench_hub --simchain PATH --counterparty PATH --browsers N [--kill]
//!           [--block-ms 200] [--poll-ms 500] [--ramp-ms 0] [--sign-ms 0]
//! ```
//!
//! `--ramp-ms R` starts the browsers evenly over R ms instead of all at once
//! (a hub's steady load rather than a burst), and `--sign-ms S` has each
//! user take S ms at the wallet between the unsigned tx and signing it (the
//! JoyID redirect and a person; not counted in the "sign" column). The
//! table's "peak in flight" says how many browsers were between their start
//! and their end at once.
//!
//! Every browser is a task on one current-thread runtime (its driver is
//! `!Send`): the browsers are the load generator, the counterparty process is
//! what is measured, and on two cores a generator spread over threads would
//! only take more of the hub's CPU. HTTP calls run on tokio's blocking pool.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use fiber_funding::chain::rpc::RpcChainClient;
use fiber_funding::flow::{ChannelState, Event};
use fiber_funding::native::http_rpc::HttpTransport;
use fiber_funding::native::platform::random_32;
use fiber_funding::native::redb_store::RedbStore;
use fiber_funding::primitives::NodeId;
use fiber_funding::runtime::DriverEvent;
use fiber_funding::store::Store;
use fiber_funding::tx::default_lock;
use k256::ecdsa::SigningKey;
use tokio::sync::Notify;

#[path = "../tests/common/processes.rs"]
mod processes;
use processes::{
    counterparty_command_polling, fund_users, run_local, temp_dir, Binaries, ChainFacts, Counterparty, Initiator,
    InitiatorSettings, Lines, SimChain, CKB,
};

/// How long a browser waits for its channel to end ready or closed.
const GIVE_UP: Duration = Duration::from_secs(240);

struct Options {
    binaries: Binaries,
    browsers: usize,
    kill: bool,
    block_ms: u64,
    poll_ms: u64,
    ramp_ms: u64,
    sign_ms: u64,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let (mut simchain, mut counterparty) = (None, None);
    let mut options = Options {
        binaries: Binaries {
            simchain: PathBuf::new(),
            counterparty: PathBuf::new(),
        },
        browsers: 10,
        kill: false,
        block_ms: 200,
        poll_ms: 500,
        ramp_ms: 0,
        sign_ms: 0,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--simchain" => simchain = Some(PathBuf::from(value())),
            "--counterparty" => counterparty = Some(PathBuf::from(value())),
            "--browsers" => options.browsers = value().parse().expect("--browsers N"),
            "--block-ms" => options.block_ms = value().parse().expect("--block-ms MS"),
            "--poll-ms" => options.poll_ms = value().parse().expect("--poll-ms MS"),
            "--ramp-ms" => options.ramp_ms = value().parse().expect("--ramp-ms MS"),
            "--sign-ms" => options.sign_ms = value().parse().expect("--sign-ms MS"),
            "--kill" => options.kill = true,
            other => panic!("unknown flag {other}; see examples/bench_hub.rs"),
        }
    }
    options.binaries.simchain = simchain.expect("--simchain PATH");
    options.binaries.counterparty = counterparty.expect("--counterparty PATH");
    options
}

/// What one browser saw, as instants.
#[derive(Default)]
struct Progress {
    connected: Option<Instant>,
    ready: Option<Instant>,
    closed: Option<Instant>,
}

/// One browser's step latencies in ms, and how it ended.
#[derive(Default, Clone)]
struct Timings {
    start: Option<Instant>,
    connect: Option<f64>,
    open: Option<f64>,
    open_done: Option<Instant>,
    sign: Option<f64>,
    submit: Option<f64>,
    ready: Option<f64>,
    end: Option<Instant>,
    error: Option<String>,
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64() * 1_000.0
}

/// Peak resident memory of a process, in MB (`VmHWM`).
fn peak_rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1_024.0)
}

/// CPU time a process has used so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// (p50, p99) of `values`, nearest rank.
fn percentiles(mut values: Vec<f64>) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Some((rank(0.50), rank(0.99)))
}

fn cell(p: Option<(f64, f64)>) -> String {
    p.map_or("–".into(), |(p50, p99)| format!("{p50:.0} / {p99:.0}"))
}

/// The last state the counterparty logged for each channel, over its runs.
fn logged_states(logs: &[Lines]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for log in logs {
        log.for_each(|line| {
            let Some(at) = line.find("channel=") else { return };
            let rest = &line[at + "channel=".len()..];
            let Some((id, rest)) = rest.split_once(' ') else { return };
            if let Some(state) = rest.strip_prefix("state=") {
                let state = state.split(' ').next().unwrap_or_default();
                states.insert(id.to_owned(), state.to_owned());
            }
        });
    }
    states
}

fn terminal(state: &str) -> bool {
    state == "ChannelReady" || state.starts_with("Closed")
}

/// Who the browsers open with, and how they run.
struct Hub {
    chain: RpcChainClient<HttpTransport>,
    facts: ChainFacts,
    peer_url: String,
    peer: NodeId,
    settings: InitiatorSettings,
    /// How long each user takes at the wallet.
    user_ms: u64,
}

/// One browser: boot and connect, open, sign, submit, wait for ready.
async fn browser(hub: Rc<Hub>, key: SigningKey, opens_done: Rc<Cell<usize>>, delay: Duration) -> (Initiator, Timings) {
    tokio::time::sleep(delay).await;
    let progress = Rc::new(RefCell::new(Progress::default()));
    let notify = Rc::new(Notify::new());
    let on_event = {
        let (progress, notify) = (progress.clone(), notify.clone());
        Box::new(move |event: DriverEvent| {
            let now = Instant::now();
            let mut progress = progress.borrow_mut();
            match event {
                DriverEvent::PeerConnected(_) => {
                    progress.connected.get_or_insert(now);
                }
                DriverEvent::Flow(Event::StateChanged { state, .. }) => match state {
                    ChannelState::ChannelReady => {
                        progress.ready.get_or_insert(now);
                        notify.notify_one();
                    }
                    ChannelState::Closed(_) => {
                        progress.closed.get_or_insert(now);
                        notify.notify_one();
                    }
                    _ => {}
                },
                _ => {}
            }
        })
    };
    let started = Instant::now();
    let initiator = Initiator::start_with(
        hub.chain.clone(),
        &hub.facts,
        &hub.peer_url,
        hub.peer,
        key,
        hub.settings,
        on_event,
    )
    .await;
    let mut timings = Timings {
        start: Some(started),
        ..Timings::default()
    };

    let before = Instant::now();
    let opened = initiator.handle.open_channel(initiator.open_params(hub.peer)).await;
    let after = Instant::now();
    timings.connect = progress.borrow().connected.map(|at| ms(started, at));
    let (channel_id, unsigned) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            timings.error = Some(format!("open: {error}"));
            timings.end = Some(after);
            return (initiator, timings);
        }
    };
    timings.open = Some(ms(before, after));
    timings.open_done = Some(after);
    opens_done.set(opens_done.get() + 1);

    tokio::time::sleep(Duration::from_millis(hub.user_ms)).await;
    let before = Instant::now();
    let signed = initiator.sign(&unsigned).await;
    timings.sign = Some(ms(before, Instant::now()));

    let before = Instant::now();
    let submitted = initiator.handle.submit_signed_funding_tx(channel_id, signed).await;
    let submitted_at = Instant::now();
    if let Err(error) = submitted {
        timings.error = Some(format!("submit: {error}"));
        timings.end = Some(submitted_at);
        return (initiator, timings);
    }
    timings.submit = Some(ms(before, submitted_at));

    loop {
        {
            let progress = progress.borrow();
            if let Some(at) = progress.ready {
                timings.ready = Some(ms(submitted_at, at));
                timings.end = Some(at);
                break;
            }
            if let Some(at) = progress.closed {
                timings.error = Some("closed after submit".into());
                timings.end = Some(at);
                break;
            }
        }
        let left = GIVE_UP.saturating_sub(started.elapsed());
        if left.is_zero() || tokio::time::timeout(left, notify.notified()).await.is_err() {
            timings.error = Some("neither ready nor closed in time".into());
            break;
        }
    }
    (initiator, timings)
}

fn main() {
    let options = options();
    let n = options.browsers;
    let binaries = options.binaries.clone();
    // One 10,000-CKB reserve cell per concurrent channel, and some to spare.
    let sim = SimChain::start(&binaries, n + 20);
    let data_dir = temp_dir("bench-hub");
    let command = |listen: &str| counterparty_command_polling(&binaries, &data_dir, &sim.rpc, listen, options.poll_ms);
    let first = Counterparty::spawn(command("127.0.0.1:0"));
    let listen = first.url.trim_start_matches("ws://").to_owned();
    let (peer, peer_url) = (first.node_id, first.url.clone());
    let slot = Rc::new(RefCell::new(Some(first)));
    let logs: Rc<RefCell<Vec<Lines>>> = Rc::new(RefCell::new(Vec::new()));
    let first_peak = Rc::new(Cell::new(f64::NAN));
    let kill_note = Rc::new(RefCell::new(String::new()));

    let (browser_states, no_channel, timings, t0) = run_local(async {
        let chain = sim.client();
        let facts = ChainFacts::ask(&chain).await;
        let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::from_slice(&random_32()).unwrap()).collect();
        let locks: Vec<_> = keys
            .iter()
            .map(|key| default_lock::lock_script_for_key(key.verifying_key()))
            .collect();
        fund_users(&chain, &facts.default_lock_dep, &locks, 2_000 * CKB).await;

        let mining = Rc::new(Cell::new(true));
        let miner = {
            let (chain, mining, block_ms) = (chain.clone(), mining.clone(), options.block_ms);
            tokio::task::spawn_local(async move {
                while mining.get() {
                    let _ = chain.generate_block().await;
                    tokio::time::sleep(Duration::from_millis(block_ms)).await;
                }
            })
        };

        let opens_done = Rc::new(Cell::new(0));
        let browsers_done = Rc::new(Cell::new(false));
        let killer = options.kill.then(|| {
            let (opens_done, slot, logs) = (opens_done.clone(), slot.clone(), logs.clone());
            let browsers_done = browsers_done.clone();
            let (first_peak, kill_note) = (first_peak.clone(), kill_note.clone());
            let restart = command(&listen);
            tokio::task::spawn_local(async move {
                while opens_done.get() < n / 2 {
                    if browsers_done.get() {
                        *kill_note.borrow_mut() = "never killed: fewer than half the opens succeeded".into();
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let mut old = slot.borrow_mut().take().unwrap();
                first_peak.set(peak_rss_mb(&old.child.id().to_string()));
                let killed_at = Instant::now();
                let handed_out = opens_done.get();
                let (old, new) = tokio::task::spawn_blocking(move || {
                    old.kill_9();
                    let new = Counterparty::spawn(restart);
                    (old, new)
                })
                .await
                .unwrap();
                *kill_note.borrow_mut() = format!(
                    "kill -9 after {handed_out} of {n} unsigned txs handed out; listening again {:.0} ms later",
                    ms(killed_at, Instant::now())
                );
                logs.borrow_mut().push(old.log.clone());
                *slot.borrow_mut() = Some(new);
            })
        });

        let t0 = Instant::now();
        let hub = Rc::new(Hub {
            chain: chain.clone(),
            facts,
            peer_url,
            peer,
            settings: InitiatorSettings {
                poll_interval_ms: options.poll_ms,
            },
            user_ms: options.sign_ms,
        });
        let tasks: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let delay = Duration::from_millis(options.ramp_ms * i as u64 / n.max(1) as u64);
                tokio::task::spawn_local(browser(hub.clone(), key, opens_done.clone(), delay))
            })
            .collect();
        let mut initiators = Vec::new();
        let mut timings = Vec::new();
        for task in tasks {
            let (initiator, timing) = task.await.unwrap();
            initiators.push(initiator);
            timings.push(timing);
        }
        browsers_done.set(true);
        if let Some(killer) = killer {
            killer.await.unwrap();
        }

        // The counterparty's side settles too (it logs each state once stored).
        let settle_until = Instant::now() + Duration::from_secs(60);
        loop {
            let mut all_logs = logs.borrow().clone();
            all_logs.push(slot.borrow().as_ref().unwrap().log.clone());
            let states = logged_states(&all_logs);
            let mut waiting = 0;
            for initiator in &initiators {
                for view in initiator.handle.channels().await.unwrap() {
                    let ours = view.state == ChannelState::ChannelReady;
                    let theirs = states.get(&view.channel_id.to_string()).map(String::as_str);
                    let settled = match theirs {
                        Some(state) => terminal(state) && (!ours || state == "ChannelReady"),
                        None => !ours,
                    };
                    waiting += usize::from(!settled);
                }
            }
            if waiting == 0 || Instant::now() > settle_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        mining.set(false);
        miner.await.unwrap();

        // What each browser ended with (its driver lives on this LocalSet).
        let mut browser_states: BTreeMap<String, String> = BTreeMap::new();
        let mut no_channel = 0;
        for initiator in &initiators {
            let views = initiator.handle.channels().await.unwrap();
            no_channel += usize::from(views.is_empty());
            for view in views {
                browser_states.insert(view.channel_id.to_string(), view.state.name().to_owned());
            }
        }
        (browser_states, no_channel, timings, t0)
    });

    // The counterparty's records, read from its redb file after it stopped.
    let mut counterparty = slot.borrow_mut().take().unwrap();
    let last_peak = peak_rss_mb(&counterparty.child.id().to_string());
    let hub_cpu = cpu_seconds(counterparty.child.id());
    let chain_cpu = cpu_seconds(sim.child.id());
    let status = counterparty.terminate();
    let store = RedbStore::open(data_dir.join("channels.redb")).expect("open the counterparty's store");
    let loaded = futures::executor::block_on(store.load_all()).expect("read the counterparty's store");
    let mut hub_states: BTreeMap<String, &'static str> = BTreeMap::new();
    for record in &loaded.records {
        let state = if record.closed.is_some() {
            "Closed"
        } else if record.funding_confirmed && record.peer_channel_ready {
            "ChannelReady"
        } else {
            "pending"
        };
        hub_states.insert(record.channel_id.to_string(), state);
        hub_states.insert(record.temporary_channel_id.to_string(), state);
    }

    // Every channel either side knows, matched.
    let (mut both_ready, mut both_closed, mut never_reached, mut lost) = (0, 0, 0, Vec::new());
    for (id, ours) in &browser_states {
        match (ours.as_str(), hub_states.get(id).copied()) {
            ("ChannelReady", Some("ChannelReady")) => both_ready += 1,
            ("Closed", Some("Closed")) => both_closed += 1,
            ("Closed", None) => never_reached += 1,
            (ours, theirs) => lost.push(format!("{id}: browser {ours}, counterparty {theirs:?}")),
        }
    }
    let known: std::collections::BTreeSet<&String> = browser_states.keys().collect();
    let hub_only: Vec<String> = loaded
        .records
        .iter()
        .filter(|r| !known.contains(&r.channel_id.to_string()) && !known.contains(&r.temporary_channel_id.to_string()))
        .map(|r| format!("{} ({})", r.channel_id, hub_states[&r.channel_id.to_string()]))
        .collect();

    let end = timings.iter().filter_map(|t| t.end).max().unwrap_or(t0);
    // Browsers between their start and their end at the same time.
    let mut edges: Vec<(Instant, i32)> = timings
        .iter()
        .flat_map(|t| [(t.start, 1), (t.end.or(Some(end)), -1)])
        .filter_map(|(at, step)| at.map(|at| (at, step)))
        .collect();
    edges.sort_by_key(|&(at, step)| (at, step));
    let peak_in_flight = edges
        .iter()
        .scan(0i32, |in_flight, &(_, step)| {
            *in_flight += step;
            Some(*in_flight)
        })
        .max()
        .unwrap_or(0);
    let last_open = timings.iter().filter_map(|t| t.open_done).max().unwrap_or(t0);
    let wall = end.duration_since(t0).as_secs_f64();
    let opened = timings.iter().filter(|t| t.open.is_some()).count();
    let step = |f: fn(&Timings) -> Option<f64>| percentiles(timings.iter().filter_map(f).collect());
    let peaks = if options.kill {
        format!("{:.0} → {:.0}", first_peak.get(), last_peak)
    } else {
        format!("{last_peak:.0}")
    };

    println!(
        "| N | ramp ms | user ms | peak in flight | wall s | opens/s | ready/s | connect p50/p99 ms | open | sign | submit | submit→ready | hub peak RSS MB | bench peak RSS MB | ready both | aborted both | aborted before reaching hub | no channel | lost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n}{} | {} | {} | {peak_in_flight} | {wall:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {peaks} | {:.0} | {both_ready} | {both_closed} | {never_reached} | {no_channel} | {} |",
        if options.kill { " (kill -9)" } else { "" },
        options.ramp_ms,
        options.sign_ms,
        opened as f64 / last_open.duration_since(t0).as_secs_f64().max(1e-9),
        both_ready as f64 / wall.max(1e-9),
        cell(step(|t| t.connect)),
        cell(step(|t| t.open)),
        cell(step(|t| t.sign)),
        cell(step(|t| t.submit)),
        cell(step(|t| t.ready)),
        peak_rss_mb("self"),
        lost.len() + hub_only.len(),
    );
    if !kill_note.borrow().is_empty() {
        println!("\n{}", kill_note.borrow());
    }
    println!(
        "counterparty exit on SIGTERM: {status}; records in its store: {}, unreadable: {}",
        loaded.records.len(),
        loaded.unreadable.len()
    );
    println!(
        "CPU used: counterparty {hub_cpu:.1} s{}, simchain {chain_cpu:.1} s (incl. setup), bench {:.1} s; wall {wall:.1} s",
        if options.kill { " (restarted process only)" } else { "" },
        cpu_seconds(std::process::id())
    );
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for t in &timings {
        if let Some(error) = &t.error {
            *errors.entry(error.clone()).or_default() += 1;
        }
    }
    for (error, count) in errors {
        println!("browsers that stopped with {error:?}: {count}");
    }
    for line in lost.iter().chain(&hub_only) {
        println!("LOST OR MISMATCHED: {line}");
    }
    if no_channel > 0 {
        println!("{no_channel} browser(s) whose open failed before a channel existed (nothing to lose)");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    if !lost.is_empty() || !hub_only.is_empty() {
        std::process::exit(1);
    }
}
