// Brings up the whole demo on 127.0.0.1: a CKB chain (a real `ckb` dev node,
// or the simulated chain served over the same JSON-RPC), blocks every
// `blockIntervalMs`, Fiber's contracts deployed on it (fiber-deploy-contracts),
// the counterparty, and the two static origins (the wallet and the stand-in
// JoyID signer), with their config.json written.
//
// As a command: `node www/launch.mjs [--chain ckb|simulated] [--fresh]` prints
// the URL to open and runs until Ctrl-C. The end-to-end tests import launch().
import { spawn, execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join, resolve } from "node:path";
import { serve } from "./serve.mjs";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "debug");

/** CKB's published dev-chain accounts (`ckb init --chain dev`). */
export const DEV_ACCOUNTS = {
  counterparty: {
    privateKey: "0xd00c06bfd800d27397002dca6fb0993d5ba6399b4238b2f29ee9deb97593d2bc",
    lockArgs: "0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7",
  },
  wallet: {
    privateKey: "0x63d86723e08f0f813a36ce6aa123bb2289d90680ae1e99d4de8cdb334553f24d",
    lockArgs: "0x470dcdc5e44064909650113a274b3b36aecb6dc7",
  },
};
export const SIGHASH_ALL = "0x9bd7e06f3ecf4be0f2fcd2188b23f1b9fcc88e5d4b65a8637b17723bbda3cce8";
export const DEFAULT_PORTS = { rpc: 8114, p2p: 8115, peer: 8230, wallet: 8240, signer: 8241 };

/** One JSON-RPC call. */
export async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: 1, jsonrpc: "2.0", method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

async function waitFor(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${error.message}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/** Starts a child process; resolves once `ready(line)` matched a stdout line. */
function start(command, args, { name, ready, log }) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT });
  const lines = [];
  const remember = (stream) =>
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      if (log) console.log(`[${name}] ${line}`);
    });
  remember(child.stdout);
  remember(child.stderr);
  const started = new Promise((ok, fail) => {
    const onLine = (line) => {
      const match = ready(line);
      if (match) ok(match);
    };
    createInterface({ input: child.stdout }).on("line", onLine);
    child.once("exit", (code, signal) =>
      fail(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${lines.join("\n")}`)),
    );
  });
  return { child, started, lines };
}

function stop(child, signal = "SIGTERM") {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    child.once("exit", ok);
    child.kill(signal);
  });
}

/** A real CKB dev node in `dir` (initialised on first use). */
async function startCkb(dir, ports, { fresh, log }) {
  if (fresh) rmSync(dir, { recursive: true, force: true });
  if (!existsSync(join(dir, "ckb.toml"))) {
    mkdirSync(dir, { recursive: true });
    execFileSync("ckb", [
      "init", "--chain", "dev", "-C", dir, "--force",
      "--ba-arg", DEV_ACCOUNTS.counterparty.lockArgs, "--ba-code-hash", SIGHASH_ALL,
      "--ba-hash-type", "type", "--ba-message", "0x",
    ], { stdio: "ignore" });
    let toml = readFileSync(join(dir, "ckb.toml"), "utf8");
    toml = toml
      .replace(/^modules = \[(.*)\]$/m, (_, list) => `modules = [${list}, "IntegrationTest", "Indexer"]`)
      .replace(/\/ip4\/0\.0\.0\.0\/tcp\/\d+/g, `/ip4/127.0.0.1/tcp/${ports.p2p}`)
      .replace(/^listen_address = "127\.0\.0\.1:\d+"$/m, `listen_address = "127.0.0.1:${ports.rpc}"`);
    writeFileSync(join(dir, "ckb.toml"), toml);
  }
  const child = spawn("ckb", ["run", "-C", dir, "--indexer"], { stdio: log ? "inherit" : "ignore", cwd: ROOT });
  const url = `http://127.0.0.1:${ports.rpc}`;
  await waitFor("the CKB node's RPC", () => rpc(url, "get_tip_block_number"));
  return { child, url };
}

/** The simulated chain over CKB's JSON-RPC. */
async function startSimulated(ports, { log }) {
  const { child, started } = start(join(BIN, "fiber-simchain"), ["--listen", `127.0.0.1:${ports.rpc}`], {
    name: "simchain",
    ready: (line) => line.match(/^rpc=(\S+)/)?.[1],
    log,
  });
  const url = await started;
  return { child, url };
}

export async function launch({
  chain = "simulated",
  dataDir = join(ROOT, "target", "demo"),
  ports = DEFAULT_PORTS,
  fresh = false,
  blockIntervalMs = 500,
  timeoutSeconds = 300,
  confirmations = 3,
  fundingAmountCkb = 1000,
  log = false,
} = {}) {
  mkdirSync(dataDir, { recursive: true });
  const chainNode =
    chain === "ckb"
      ? await startCkb(join(dataDir, "ckb"), ports, { fresh, log })
      : await startSimulated(ports, { log });
  const rpcUrl = chainNode.url;
  const genesis = await rpc(rpcUrl, "get_block_by_number", ["0x0"]);
  const chainHash = genesis.header.hash;
  const depGroup = { out_point: { tx_hash: genesis.transactions[1].hash, index: "0x0" }, dep_type: "dep_group" };

  let miner = setInterval(() => rpc(rpcUrl, "generate_block").catch(() => {}), blockIntervalMs);

  // Fiber's real contracts, one cell each; both sides lock channels with them.
  const contractsFile = join(dataDir, "contracts.json");
  if (fresh) rmSync(contractsFile, { force: true });
  const deployed = await new Promise((ok, fail) =>
    execFile(join(BIN, "fiber-deploy-contracts"), [
      "--ckb-rpc", rpcUrl, "--wallet-key", DEV_ACCOUNTS.counterparty.privateKey, "--out", contractsFile,
    ], { cwd: ROOT }, (error, stdout, stderr) => (error ? fail(new Error(`deploying the contracts: ${stderr}`)) : ok(stdout))),
  );
  if (log) console.log(`[deploy] ${deployed.trim()}`);
  const contracts = JSON.parse(readFileSync(contractsFile, "utf8"));

  const counterpartyDir = join(dataDir, "counterparty");
  if (fresh) rmSync(counterpartyDir, { recursive: true, force: true });
  const counterpartyArgs = [
    "--listen", `127.0.0.1:${ports.peer}`,
    "--data-dir", counterpartyDir,
    "--ckb-rpc", rpcUrl,
    "--wallet-key", DEV_ACCOUNTS.counterparty.privateKey,
    "--wallet-cell-dep", `${depGroup.out_point.tx_hash}:0`,
    "--chain-hash", chainHash,
    "--contracts", contractsFile,
    "--confirmations", String(confirmations),
    "--timeout-seconds", String(timeoutSeconds),
    // A dev chain's genesis gives it one big cell: enough for one pending
    // channel at a time. The simulated chain starts with many already.
    ...(chain === "ckb" ? ["--min-free-cells", "10"] : []),
  ];
  const counterparty = { process: null, nodeId: null, lines: [] };
  async function startCounterparty(extraArgs = []) {
    const { child, started, lines } = start(join(BIN, "fiber-counterparty"), [...counterpartyArgs, ...extraArgs], {
      name: "counterparty",
      ready: (line) => line.match(/^node_id=(0x[0-9a-f]+)/)?.[1],
      log,
    });
    counterparty.process = child;
    counterparty.lines = lines;
    counterparty.nodeId = await started;
    await waitFor("the counterparty's port", async () => {
      const { createConnection } = await import("node:net");
      return new Promise((ok, fail) => {
        const socket = createConnection(ports.peer, "127.0.0.1", () => {
          socket.end();
          ok(true);
        });
        socket.once("error", fail);
      });
    });
  }
  await startCounterparty();

  const walletDir = join(ROOT, "target", "www", "wallet");
  const signerDir = join(ROOT, "target", "www", "signer");
  for (const dir of [walletDir, signerDir]) {
    if (!existsSync(join(dir, "index.html"))) throw new Error(`${dir} is not built: run npm run build:www`);
  }
  const walletUrl = `http://127.0.0.1:${ports.wallet}/`;
  const signerUrl = `http://127.0.0.1:${ports.signer}/`;
  const walletLock = { code_hash: SIGHASH_ALL, hash_type: "type", args: DEV_ACCOUNTS.wallet.lockArgs };
  const walletConfig = (overrides = {}) =>
    writeFileSync(
      join(walletDir, "config.json"),
      JSON.stringify(
        {
        ckbRpcUrl: rpcUrl,
        peerUrl: `ws://127.0.0.1:${ports.peer}`,
        peerPubkey: counterparty.nodeId,
        chainHash,
        fundingLock: contracts.fundingLock,
        commitmentLock: contracts.commitmentLock,
        fundingConfirmations: confirmations,
        externalFundingTimeoutSeconds: timeoutSeconds,
        signerUrl,
        wallet: { lockScript: walletLock, cellDeps: [depGroup], address: null },
        fundingAmountCkb,
        ...overrides,
      },
      null,
      2,
    ),
  );
  walletConfig();
  writeFileSync(
    join(signerDir, "config.json"),
    JSON.stringify({ privateKey: DEV_ACCOUNTS.wallet.privateKey, ckbRpcUrl: rpcUrl }, null, 2),
  );
  const walletServer = await serve(walletDir, ports.wallet);
  const signerServer = await serve(signerDir, ports.signer);

  return {
    chain,
    rpcUrl,
    contracts,
    chainHash,
    walletUrl,
    signerUrl,
    peerUrl: `ws://127.0.0.1:${ports.peer}`,
    counterparty: {
      get nodeId() {
        return counterparty.nodeId;
      },
      get lines() {
        return counterparty.lines;
      },
      /** kill -9, as a crash would. */
      kill: () => stop(counterparty.process, "SIGKILL"),
      /** Freezes it (SIGSTOP): connected but silent, mid-handshake. */
      pause: () => counterparty.process.kill("SIGSTOP"),
      resume: () => counterparty.process.kill("SIGCONT"),
      /** Starts it again on the same data; `extraArgs` (e.g. `--misbehave …`) for this run only. */
      restart: (extraArgs) => startCounterparty(extraArgs),
    },
    /** Rewrites the wallet's config.json (e.g. a shorter timeout) for pages loaded from now on. */
    walletConfig,
    pauseBlocks: () => clearInterval(miner),
    resumeBlocks: () => {
      clearInterval(miner);
      miner = setInterval(() => rpc(rpcUrl, "generate_block").catch(() => {}), blockIntervalMs);
    },
    async stop() {
      clearInterval(miner);
      walletServer.close();
      signerServer.close();
      await stop(counterparty.process);
      await stop(chainNode.child);
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const chain = args.includes("--chain") ? args[args.indexOf("--chain") + 1] : "ckb";
  const env = await launch({ chain, fresh: args.includes("--fresh"), log: args.includes("--log") });
  console.log(`\nchain: ${chain === "ckb" ? "CKB dev node" : "simulated chain"} at ${env.rpcUrl}`);
  console.log(`counterparty: ${env.counterparty.nodeId} at ${env.peerUrl}`);
  console.log(`stand-in JoyID signer: ${env.signerUrl}`);
  console.log(`\nOpen the demo wallet: ${env.walletUrl}\n(Ctrl-C stops everything)`);
  const shutdown = async () => {
    await env.stop();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}
