//! `fiber-simchain`: a simulated CKB chain served over CKB's JSON-RPC, for
//! machines without a CKB node. See `fiber_funding::native::simchain` and
//! `--help`.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(native::main());
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::Write;
    use std::time::Duration;

    use fiber_funding::native::simchain::{SimChainNode, SimChainServer, SimChainSettings, DEV_ACCOUNTS};
    use fiber_funding::primitives::encode_hex;

    const USAGE: &str = "\
fiber-simchain: a simulated CKB chain (with indexer) over CKB JSON-RPC, for tests and demos.

Usage: fiber-simchain [options]

  --listen ADDR              listen address [default: 127.0.0.1:8114]     env FIBER_SIMCHAIN_LISTEN
  --cells-per-account N      10,000-CKB cells per dev account [default: 50] env FIBER_SIMCHAIN_CELLS_PER_ACCOUNT
  --block-interval-ms MS     mine a block every MS ms [default: 0, only on generate_block]
                                                                          env FIBER_SIMCHAIN_BLOCK_INTERVAL_MS
  --log LEVEL                error, warn, info or debug [default: info]   env FIBER_SIMCHAIN_LOG

Genesis holds CKB's real secp256k1 default lock (code, data, dep group) and
funds CKB's dev accounts (ckb init --chain dev) with split cells.
Every transaction's scripts run in ckb-vm, always, as on a CKB node (cycle
limit 70,000,000): a tx the scripts refuse gets CKB's -302 Script error.
Mining: generate_block, generate_epochs (as CKB's IntegrationTest RPC), or
--block-interval-ms.
On start it prints rpc=http://… and chain_hash=0x… on stdout.
";

    pub fn main() -> i32 {
        let options = match Options::parse(std::env::args().skip(1)) {
            Ok(Some(options)) => options,
            Ok(None) => {
                print!("{USAGE}");
                return 0;
            }
            Err(error) => {
                eprintln!("fiber-simchain: {error}");
                return 2;
            }
        };
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Warn)
            .filter_module("fiber_funding", options.log)
            .filter_module("fiber_simchain", options.log)
            .format(|out, record| writeln!(out, "{:<5} {}", record.level(), record.args()))
            .init();
        let settings = SimChainSettings {
            cells_per_account: options.cells_per_account,
            ..SimChainSettings::default()
        };
        let node = match SimChainNode::new(&settings) {
            Ok(node) => node,
            Err(error) => {
                eprintln!("fiber-simchain: {error}");
                return 2;
            }
        };
        let interval = (options.block_interval_ms > 0).then(|| Duration::from_millis(options.block_interval_ms));
        let server = match SimChainServer::bind(&options.listen, node, interval) {
            Ok(server) => server,
            Err(error) => {
                eprintln!("fiber-simchain: {error}");
                return 2;
            }
        };
        {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "rpc=http://{}", server.local_addr());
            let _ = writeln!(stdout, "chain_hash={}", encode_hex(&server.node().genesis_hash()));
            let _ = stdout.flush();
        }
        for account in DEV_ACCOUNTS {
            log::info!(
                "funded dev account {} ({} CKB)",
                account.lock_args,
                account.capacity_ckb
            );
        }
        server.run();
        0
    }

    struct Options {
        listen: String,
        cells_per_account: usize,
        block_interval_ms: u64,
        log: log::LevelFilter,
    }

    impl Options {
        /// `None` when help was asked for.
        fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let mut listen = env("FIBER_SIMCHAIN_LISTEN").unwrap_or_else(|| "127.0.0.1:8114".into());
            let mut cells = env("FIBER_SIMCHAIN_CELLS_PER_ACCOUNT");
            let mut interval = env("FIBER_SIMCHAIN_BLOCK_INTERVAL_MS");
            let mut log = env("FIBER_SIMCHAIN_LOG");
            let mut args = args;
            while let Some(arg) = args.next() {
                let (name, inline) = match arg.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (arg, None),
                };
                if name == "--help" || name == "-h" {
                    return Ok(None);
                }
                let mut value = || {
                    inline
                        .clone()
                        .or_else(|| args.next())
                        .ok_or(format!("{name} needs a value"))
                };
                match name.as_str() {
                    "--listen" => listen = value()?,
                    "--cells-per-account" => cells = Some(value()?),
                    "--block-interval-ms" => interval = Some(value()?),
                    "--log" => log = Some(value()?),
                    _ => return Err(format!("unknown argument {name:?}; see --help")),
                }
            }
            let number = |text: Option<String>, name: &str, default: u64| match text {
                None => Ok(default),
                Some(text) => text
                    .parse::<u64>()
                    .map_err(|_| format!("{name} must be a whole number, got {text:?}")),
            };
            let log = match log.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("info") => log::LevelFilter::Info,
                Some("error") => log::LevelFilter::Error,
                Some("warn") => log::LevelFilter::Warn,
                Some("debug") => log::LevelFilter::Debug,
                Some(other) => return Err(format!("--log must be error, warn, info or debug, got {other:?}")),
            };
            Ok(Some(Options {
                listen,
                cells_per_account: number(cells, "--cells-per-account", 50)? as usize,
                block_interval_ms: number(interval, "--block-interval-ms", 0)?,
                log,
            }))
        }
    }
}
