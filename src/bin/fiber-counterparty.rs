//! `fiber-counterparty`: accepts Fiber channels funded externally from
//! browsers, over WebSocket. See `fiber_funding::native::counterparty` and
//! `--help`.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use fiber_funding::native::counterparty::{init_logging, run, usage, Command, CounterpartyConfig, EXIT_BAD_CONFIG};

    let config = match CounterpartyConfig::from_args(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", usage());
            return;
        }
        Err(error) => {
            eprintln!("fiber-counterparty: {error}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    init_logging(config.log);
    // One thread: the driver, the store and the links are single-threaded;
    // blocking file and HTTP work goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fiber-counterparty: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    if let Err(error) = local.block_on(&runtime, run(*config)) {
        eprintln!("fiber-counterparty: {error}");
        std::process::exit(EXIT_BAD_CONFIG);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
