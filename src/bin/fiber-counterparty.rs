//! `fiber-counterparty`: accepts Fiber channels funded externally from
//! browsers, over WebSocket. See `fiber_funding::native::counterparty` and
//! `--help`.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use fiber_funding::native::counterparty::{
        init_logging, run, usage, Command, CounterpartyConfig, EXIT_BAD_CONFIG, EXIT_DRIVER_STOPPED,
    };

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
    // A panic in any task is a bug: say where, before tokio swallows it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("panic: {info}");
        default_hook(info);
    }));
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
    let listening = std::rc::Rc::new(std::cell::Cell::new(false));
    if let Err(error) = local.block_on(&runtime, run(*config, listening.clone())) {
        eprintln!("fiber-counterparty: {error}");
        std::process::exit(if listening.get() {
            EXIT_DRIVER_STOPPED
        } else {
            EXIT_BAD_CONFIG
        });
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
