//! `fiber-deploy-contracts`: puts Fiber's contracts on a dev chain and
//! writes the contracts file the wallet and `fiber-counterparty --contracts`
//! read. See `fiber_funding::native::deploy` and `--help`.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(native::main());
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use fiber_funding::chain::rpc::RpcChainClient;
    use fiber_funding::flow::config::DEFAULT_FEE_RATE;
    use fiber_funding::native::deploy::{contracts_json, deploy, still_deployed};
    use fiber_funding::native::http_rpc::{genesis_default_lock_dep_group, HttpTransport};
    use fiber_funding::primitives::decode_hex;
    use k256::ecdsa::SigningKey;

    const USAGE: &str = "\
fiber-deploy-contracts: deploys Fiber's funding-lock, commitment-lock and ckb-auth on a
chain without them (a CKB dev node, fiber-simchain), one cell each under a lock no one
can spend, and writes the contracts file: { fundingLock, commitmentLock }, each
{ code_hash, hash_type: data2, cell_deps }, as the wallet's options and
fiber-counterparty --contracts take it.

Usage: fiber-deploy-contracts --wallet-key HEX --out FILE [--ckb-rpc URL]

  --wallet-key HEX   0x-hex secret key of the default-lock wallet that pays (about 430,000 CKB)
  --out FILE         the contracts file; if it names cells still live on this chain, nothing is deployed
  --ckb-rpc URL      CKB JSON-RPC with the indexer [default: http://127.0.0.1:8114]

The chain must produce blocks. Prints contracts=FILE and deploy_tx=0x… (or reused) on stdout.
";
    const RPC_TIMEOUT_MS: u64 = 10_000;

    pub fn main() -> i32 {
        let mut args = std::env::args().skip(1);
        let (mut key, mut out, mut rpc) = (None, None, "http://127.0.0.1:8114".to_owned());
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            let result = match arg.as_str() {
                "--help" | "-h" => {
                    print!("{USAGE}");
                    return 0;
                }
                "--wallet-key" => value().map(|v| key = Some(v)),
                "--out" => value().map(|v| out = Some(v)),
                "--ckb-rpc" => value().map(|v| rpc = v),
                other => Err(format!("unknown argument {other:?}; see --help")),
            };
            if let Err(error) = result {
                eprintln!("fiber-deploy-contracts: {error}");
                return 2;
            }
        }
        let (Some(key), Some(out)) = (key, out) else {
            eprintln!("fiber-deploy-contracts: --wallet-key and --out are required; see --help");
            return 2;
        };
        let Some(key) = decode_hex(&key)
            .ok()
            .and_then(|bytes| SigningKey::from_slice(&bytes).ok())
        else {
            eprintln!("fiber-deploy-contracts: --wallet-key is not a 0x-hex secp256k1 secret key");
            return 2;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let local = tokio::task::LocalSet::new();
        match local.block_on(&runtime, run(key, out.clone(), rpc)) {
            Ok(outcome) => {
                println!("contracts={out}");
                println!("deploy_tx={outcome}");
                0
            }
            Err(error) => {
                eprintln!("fiber-deploy-contracts: {error}");
                1
            }
        }
    }

    async fn run(key: SigningKey, out: String, rpc: String) -> Result<String, String> {
        let transport = HttpTransport::new(rpc.clone());
        let client = RpcChainClient::new(transport.clone());
        if let Ok(text) = std::fs::read_to_string(&out) {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{out} is not JSON: {e}"))?;
            if still_deployed(&client, &value).await? {
                return Ok("reused".into());
            }
        }
        let dep = genesis_default_lock_dep_group(&transport, RPC_TIMEOUT_MS)
            .await
            .map_err(|e| format!("cannot find the default lock's dep group at {rpc}: {e}"))?;
        let hash = deploy(&client, &key, &dep, DEFAULT_FEE_RATE).await?;
        let text = serde_json::to_string_pretty(&contracts_json(hash)).expect("JSON");
        std::fs::write(&out, text).map_err(|e| format!("cannot write {out}: {e}"))?;
        Ok(hash.to_string())
    }
}
