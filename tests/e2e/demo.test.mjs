// The product as a wallet team first meets it: the demo wallet, the stand-in
// JoyID signer on another origin, the counterparty and a chain, all real
// processes, driven in Debian's Chromium. Every flow goes through the
// full-page redirect; reloads, browser kills and counterparty kills happen at
// each step, and each flow must still end in ChannelReady with the funding tx
// committed and the recovery record gone. Then the way out: a cooperative
// and a unilateral close, each also through a reload and a counterparty
// kill, must give the wallet its money back on chain, less fees; and so must
// "Cancel funding" against a counterparty that keeps the funding to itself.
//
// E2E_CHAIN=ckb runs against a real CKB dev node (scripts/test-real-chain);
// the default is the simulated chain served over the same JSON-RPC.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEV_ACCOUNTS, SIGHASH_ALL, launch, rpc } from "../../www/launch.mjs";
import { launchKillable, launchPersistent } from "./support.mjs";
import { initSync, inspectStoredRecord } from "../../pkg/fiber_funding.js";

// The package decodes stored records here in Node, as in the page.
initSync({ module: readFileSync(new URL("../../pkg/fiber_funding_bg.wasm", import.meta.url)) });

const CHAIN = process.env.E2E_CHAIN ?? "simulated";
// E2E_PORT_OFFSET moves every port, so two checkouts can run the suite at once.
const OFFSET = Number(process.env.E2E_PORT_OFFSET ?? 0);
const PORTS = Object.fromEntries(
  Object.entries({ rpc: 18114, p2p: 18115, peer: 18230, wallet: 18240, signer: 18241 }).map(([k, port]) => [k, port + OFFSET]),
);
// A test run leaves the tracked tree as it was: screenshots go under target/,
// and refresh the committed ones in docs/ only when asked
// (UPDATE_SCREENSHOTS=1 scripts/test).
const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === "1" ? "docs/screenshots" : "target/screenshots";
mkdirSync(SCREENSHOTS, { recursive: true });
const READY_TIMEOUT = CHAIN === "ckb" ? 120_000 : 60_000;

let env;
let dataDir;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "fiber-funding-e2e-"));
  env = await launch({ chain: CHAIN, dataDir, ports: PORTS, fresh: true, blockIntervalMs: 300, confirmations: 2 });
  mkdirSync(SCREENSHOTS, { recursive: true });
  console.log(
    `# e2e chain: ${CHAIN === "ckb" ? "a real CKB dev node (ckb 0.210.0)" : "the simulated chain (fiber-simchain, CKB JSON-RPC)"} at ${env.rpcUrl}`,
  );
});

after(async () => {
  await env?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const testid = (id) => `[data-testid="${id}"]`;

/** The wallet in a page, connected to the counterparty. */
async function openWallet(page) {
  await page.goto(env.walletUrl);
  await page.locator(`${testid("peer-status")}[data-status="ok"]`).waitFor({ timeout: 30_000 });
  return page;
}

/** Opens a 1,000 CKB channel; returns its id once it awaits the signature. */
async function openChannel(page) {
  await page.fill(testid("amount-input"), "1000");
  await page.click(testid("open-button"));
  const sign = page.locator(testid("sign-button")).first();
  await sign.waitFor({ timeout: 30_000 });
  return sign.getAttribute("data-channel-id");
}

/** "Sign with JoyID": the full-page redirect to the signer's origin. */
async function goToSigner(page, channelId) {
  await page.click(`${testid("sign-button")}[data-channel-id="${channelId}"]`);
  await page.waitForURL((url) => url.href.startsWith(env.signerUrl), { timeout: 30_000 });
  await page.locator(testid("approve-button")).waitFor();
}

/** Approves at the signer; resolves when the redirect back has started. */
async function approve(page, { tampered = false } = {}) {
  const back = page.waitForURL((url) => url.href.startsWith(env.walletUrl), { waitUntil: "commit", timeout: 30_000 });
  if (tampered) {
    await page.click(`${testid("signer-test-tools")} summary`);
    await page.click(testid("approve-tampered-button"));
  } else {
    await page.click(testid("approve-button"));
  }
  await back;
}

/** The wallet has handed the signed tx to the module (it strips the redirect parameters). */
async function submitted(page) {
  await page.waitForURL((url) => url.href.startsWith(env.walletUrl) && !url.search.includes("_data_"), {
    timeout: 30_000,
  });
  await page.locator(testid("channels-body")).waitFor();
}

function row(page, channelId) {
  return page.locator(`${testid("channel-row")}[data-channel-id="${channelId}"]`);
}

async function waitForState(page, channelId, states, timeout = READY_TIMEOUT) {
  const wanted = [states].flat();
  const selector = wanted.map((s) => `${testid("channel-row")}[data-channel-id="${channelId}"][data-state="${s}"]`).join(", ");
  await page.locator(selector).first().waitFor({ timeout });
}

/** The module's record of a channel, read straight from IndexedDB and
 * decoded by the package itself (`inspectStoredRecord`). */
async function storedRecord(page, channelId) {
  const bytes = await page.evaluate(
    (id) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("fiber-funding");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          // A closed flow's record is filed in `tombstones` (IndexedDB schema 3).
          const transaction = open.result.transaction(["channels", "tombstones"]);
          const live = transaction.objectStore("channels").get(id);
          const tombstone = transaction.objectStore("tombstones").get(id);
          transaction.oncomplete = () => {
            open.result.close();
            const record = (live.result ?? tombstone.result)?.record;
            // Schema 3 stores bytes; schemas 1 and 2 stored JSON text.
            resolve(record == null ? null : Array.from(typeof record === "string" ? new TextEncoder().encode(record) : record));
          };
          transaction.onerror = () => reject(transaction.error);
        };
      }),
    channelId,
  );
  return bytes && inspectStoredRecord(Uint8Array.from(bytes));
}

/** ChannelReady, the funding tx committed on chain, the recovery record gone. */
async function assertOpened(page, channelId) {
  await waitForState(page, channelId, "ChannelReady");
  const hash = await row(page, channelId).locator(testid("funding-tx")).getAttribute("title");
  assert.match(hash ?? "", /^0x[0-9a-f]{64}$/);
  const tx = await rpc(env.rpcUrl, "get_transaction", [hash]);
  assert.equal(tx.tx_status.status, "committed", `funding tx ${hash}`);
  const record = await storedRecord(page, channelId);
  assert.ok(record, "the channel's record exists");
  assert.equal(record.external_funding, false, "the recovery state was cleared");
  assert.equal(await page.locator(`${testid("pending-item")}[data-channel-id="${channelId}"]`).count(), 0);
}

/** Signs, the counterparty frozen (connected, but it will not answer) as the
 * signed tx comes back: the flow waits in the signature exchange. The
 * caller resumes the counterparty. */
async function signedWithTheCounterpartySilent(page, channelId) {
  await goToSigner(page, channelId);
  env.counterparty.pause();
  await approve(page);
  await submitted(page);
  await waitForState(page, channelId, ["SigningCommitment", "AwaitingTxSignatures"]);
}

/** Signs at the stand-in JoyID and comes back: the signed tx is with the module. */
async function signAndSubmit(page, channelId) {
  await goToSigner(page, channelId);
  await approve(page);
  await submitted(page);
}

/** Signs at the stand-in JoyID, comes back, and checks the channel opened. */
async function signAndOpen(page, channelId) {
  await signAndSubmit(page, channelId);
  await assertOpened(page, channelId);
}

/** A fresh browser profile per test: a new user. */
async function withBrowser(run) {
  const browser = await launchPersistent();
  try {
    await run(browser.context);
  } finally {
    await browser.close();
  }
}

test("happy path: open, sign through the JoyID redirect, ChannelReady", async () => {
  await withBrowser(async (context) => {
    const page = await openWallet(await context.newPage());
    await page.screenshot({ path: `${SCREENSHOTS}/wallet.png`, fullPage: true });
    const channelId = await openChannel(page);
    await page.screenshot({ path: `${SCREENSHOTS}/wallet-awaiting-signature.png`, fullPage: true });
    await goToSigner(page, channelId);
    await page.screenshot({ path: `${SCREENSHOTS}/signer.png`, fullPage: true });
    await approve(page);
    await submitted(page);
    await assertOpened(page, channelId);
    await page.screenshot({ path: `${SCREENSHOTS}/wallet-channel-ready.png`, fullPage: true });
  });
});

describe("reload the wallet page at each step", () => {
  test("before the redirect", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await page.reload();
      await page.locator(`${testid("restored")}[data-count="1"]`).waitFor();
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-restored.png`, fullPage: true });
      await signAndOpen(page, channelId);
    });
  });

  test("on return, before submit", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      await approve(page);
      await page.reload(); // the signed tx is still in the URL
      await submitted(page);
      await assertOpened(page, channelId);
    });
  });

  test("right after submit", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      await approve(page);
      await submitted(page);
      await page.reload();
      await assertOpened(page, channelId);
    });
  });

  test("during the signature exchange", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      try {
        await signedWithTheCounterpartySilent(page, channelId);
        await page.reload();
      } finally {
        env.counterparty.resume();
      }
      await assertOpened(page, channelId);
    });
  });

  test("while waiting for confirmation", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      env.pauseBlocks();
      try {
        await approve(page);
        await submitted(page);
        await waitForState(page, channelId, "AwaitingChannelReady");
        await page.reload();
        await openWallet(page);
      } finally {
        env.resumeBlocks();
      }
      await assertOpened(page, channelId);
    });
  });
});

describe("SIGKILL the whole browser at each step, relaunch on the same profile", () => {
  /** Runs `until` in a killable browser, kills it, relaunches and resumes at the last URL. */
  async function killAndResume(until) {
    const profile = mkdtempSync(join(tmpdir(), "fiber-funding-profile-"));
    let browser = await launchKillable(profile);
    let page = await browser.context.newPage();
    const { channelId, url } = await until(page);
    await browser.kill();
    browser = await launchKillable(profile);
    try {
      page = await browser.context.newPage();
      await page.goto(url); // what session restore would reopen
      await page.locator(testid("channels-body")).waitFor();
      if (await page.locator(`${testid("sign-button")}[data-channel-id="${channelId}"]`).count()) {
        await goToSigner(page, channelId);
        await approve(page);
        await submitted(page);
      }
      await assertOpened(page, channelId);
    } finally {
      await browser.close();
    }
  }

  test("before the redirect", async () => {
    await killAndResume(async (page) => {
      await openWallet(page);
      const channelId = await openChannel(page);
      return { channelId, url: env.walletUrl };
    });
  });

  test("on return, before submit", async () => {
    await killAndResume(async (page) => {
      await openWallet(page);
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      await approve(page);
      return { channelId, url: page.url() };
    });
  });

  test("right after submit", async () => {
    await killAndResume(async (page) => {
      await openWallet(page);
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      await approve(page);
      await submitted(page);
      return { channelId, url: env.walletUrl };
    });
  });

  test("during the signature exchange", async () => {
    await killAndResume(async (page) => {
      await openWallet(page);
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      env.counterparty.pause();
      try {
        await approve(page);
        await submitted(page);
        await waitForState(page, channelId, ["SigningCommitment", "AwaitingTxSignatures"]);
      } finally {
        env.counterparty.resume();
      }
      return { channelId, url: env.walletUrl };
    });
  });

  test("while waiting for confirmation", async () => {
    env.pauseBlocks();
    try {
      await killAndResume(async (page) => {
        await openWallet(page);
        const channelId = await openChannel(page);
        await goToSigner(page, channelId);
        await approve(page);
        await submitted(page);
        await waitForState(page, channelId, "AwaitingChannelReady");
        env.resumeBlocks();
        return { channelId, url: env.walletUrl };
      });
    } finally {
      env.resumeBlocks();
    }
  });
});

describe("kill -9 the counterparty at each step of its side, restart it", () => {
  test("after it accepted, while the user has not signed", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await env.counterparty.kill();
      await env.counterparty.restart();
      await signAndOpen(page, channelId);
    });
  });

  test("during the signature exchange", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      env.counterparty.pause();
      await approve(page);
      await submitted(page);
      await waitForState(page, channelId, ["SigningCommitment", "AwaitingTxSignatures"]);
      await env.counterparty.kill(); // it never saw the browser's commitment signature
      await env.counterparty.restart();
      await assertOpened(page, channelId);
    });
  });

  test("while waiting for confirmation", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      env.pauseBlocks();
      try {
        await approve(page);
        await submitted(page);
        await waitForState(page, channelId, "AwaitingChannelReady");
        await env.counterparty.kill();
        await env.counterparty.restart();
      } finally {
        env.resumeBlocks();
      }
      await assertOpened(page, channelId);
    });
  });
});

// ---- The way out: close a funded channel, the money back on chain.

const WALLET_LOCK = { code_hash: SIGHASH_ALL, hash_type: "type", args: DEV_ACCOUNTS.wallet.lockArgs };
/** The funding, closing (or commitment) and claim fees together stay below this. */
const MAX_FEES = 1_000_000n; // 0.01 CKB

/** The wallet's balance on chain: every live cell of its lock, all pages. */
async function walletBalance() {
  let total = 0n;
  let after = null;
  for (;;) {
    const search = { script: WALLET_LOCK, script_type: "lock", script_search_mode: "exact" };
    const page = await rpc(env.rpcUrl, "get_cells", [search, "asc", "0x64", after]);
    for (const cell of page.objects) total += BigInt(cell.output.capacity);
    if (page.objects.length < 100) return total;
    after = page.last_cursor;
  }
}

/** Waits until the wallet holds what it held before the channel, less fees. */
async function assertMoneyBack(before) {
  const deadline = Date.now() + READY_TIMEOUT;
  let now;
  for (;;) {
    now = await walletBalance();
    if (now <= before && before - now < MAX_FEES) return before - now;
    if (Date.now() > deadline) break;
    await new Promise((ok) => setTimeout(ok, 500));
  }
  assert.fail(`the wallet holds ${now} shannons; before the channel ${before} (fees at most ${MAX_FEES})`);
}

/** A channel opened from a fresh page, ready; and the wallet's balance before it. */
async function readyChannel(page) {
  const before = await walletBalance();
  const channelId = await openChannel(page);
  await signAndOpen(page, channelId);
  return { channelId, before };
}

/** Clicks the row's Close (or Force close) and accepts the confirmation. */
async function clickClose(page, channelId, { force = false } = {}) {
  page.once("dialog", (dialog) => void dialog.accept());
  await page.click(`${testid(force ? "force-close-button" : "close-button")}[data-channel-id="${channelId}"]`);
}

/** The row shows `state` with exactly `flags`. */
async function waitForFlags(page, channelId, state, flags, timeout = READY_TIMEOUT) {
  await page
    .locator(`${testid("channel-row")}[data-channel-id="${channelId}"][data-state="${state}"][data-flags="${flags}"]`)
    .waitFor({ timeout });
}

/** Closed with `flags`, and the record a tombstone: the close's txs wiped, the seed kept (the chain's word could be false). */
async function assertClosed(page, channelId, flags) {
  await waitForFlags(page, channelId, "Closed", flags);
  const record = await storedRecord(page, channelId);
  assert.ok(record.closed, "a tombstone");
  assert.equal(record.close_in_progress, false, "the close progress is wiped");
  assert.equal(record.seed_wiped, false, "a settled channel keeps its seed");
}

/** Past the commitment's delay (one epoch): the dev node's generate_epochs. */
async function passTheDelay() {
  await rpc(env.rpcUrl, "generate_epochs", ["0x1"]);
}

describe("close a funded channel: the wallet's money comes back on chain", () => {
  test("cooperative close", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-close.png`, fullPage: true });
      await clickClose(page, channelId);
      await assertClosed(page, channelId, "COOPERATIVE");
      const fees = await assertMoneyBack(before);
      console.log(`# cooperative close: the wallet paid ${fees} shannons in fees (funding and closing)`);
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-closed.png`, fullPage: true });
    });
  });

  test("force close, the delay, the claim", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      await clickClose(page, channelId, { force: true });
      await waitForFlags(page, channelId, "Closed", "UNCOOPERATIVE_LOCAL WAITING_ONCHAIN_SETTLEMENT");
      await row(page, channelId).locator(testid("close-status")).filter({ hasText: "withdrawable from epoch" }).waitFor();
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-withdraw-pending.png`, fullPage: true });
      await passTheDelay();
      await assertClosed(page, channelId, "UNCOOPERATIVE_LOCAL");
      const fees = await assertMoneyBack(before);
      console.log(`# force close: the wallet paid ${fees} shannons in fees (funding, commitment, claim)`);
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-withdrawn.png`, fullPage: true });
    });
  });

  test("cooperative close with a reload right after asking", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      env.counterparty.pause(); // the Shutdown waits unanswered across the reload
      try {
        await clickClose(page, channelId);
        await waitForState(page, channelId, "ShuttingDown");
        await page.reload();
      } finally {
        env.counterparty.resume();
      }
      await openWallet(page);
      await assertClosed(page, channelId, "COOPERATIVE");
      await assertMoneyBack(before);
    });
  });

  test("force close with a reload while the delay runs", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      await clickClose(page, channelId, { force: true });
      await waitForFlags(page, channelId, "Closed", "UNCOOPERATIVE_LOCAL WAITING_ONCHAIN_SETTLEMENT");
      await page.reload();
      await openWallet(page);
      await passTheDelay();
      await assertClosed(page, channelId, "UNCOOPERATIVE_LOCAL");
      await assertMoneyBack(before);
    });
  });

  test("cooperative close with kill -9 of the counterparty before it answers", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      env.counterparty.pause();
      await clickClose(page, channelId);
      await waitForState(page, channelId, "ShuttingDown");
      await env.counterparty.kill();
      await env.counterparty.restart(); // the wallet sends its Shutdown again on reconnection
      await assertClosed(page, channelId, "COOPERATIVE");
      await assertMoneyBack(before);
    });
  });

  test("force close with kill -9 of the counterparty: no answer is needed", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const { channelId, before } = await readyChannel(page);
      await env.counterparty.kill();
      try {
        await clickClose(page, channelId, { force: true });
        await waitForFlags(page, channelId, "Closed", "UNCOOPERATIVE_LOCAL WAITING_ONCHAIN_SETTLEMENT");
        await passTheDelay();
        await assertClosed(page, channelId, "UNCOOPERATIVE_LOCAL");
        await assertMoneyBack(before);
      } finally {
        await env.counterparty.restart();
      }
    });
  });
});

test("the browser's storage is lost with a funded channel in it: the saved backup restores it, and a force close brings the money back", async () => {
  const backupFile = join(dataDir, "wallet-backup.json");
  let channelId;
  let before;
  await withBrowser(async (context) => {
    const page = await openWallet(await context.newPage());
    ({ channelId, before } = await readyChannel(page));
    const download = page.waitForEvent("download");
    await page.click(testid("backup-button"));
    await (await download).saveAs(backupFile);
  });
  const saved = JSON.parse(readFileSync(backupFile, "utf8"));
  assert.deepEqual(saved.channels.map((c) => c.channel_id), [channelId]);
  // A new profile: nothing of the first one's storage, a new node key.
  await withBrowser(async (context) => {
    const page = await openWallet(await context.newPage());
    assert.equal(await row(page, channelId).count(), 0, "a fresh profile holds nothing");
    // The page asks first: the backup's node key becomes this wallet's.
    page.once("dialog", (dialog) => void dialog.accept());
    await page.setInputFiles(testid("restore-input"), backupFile);
    await waitForState(page, channelId, "ChannelReady");
    await page.locator(testid("activity-log"), { hasText: "Backup restored: 1 channel(s)" }).waitFor();
    // The page booted again on the backup's key, kept by the database.
    await page.reload();
    await openWallet(page);
    await waitForState(page, channelId, "ChannelReady");
    // Restored before its close was agreed, it closes only with force: the
    // device the backup came from may have signed a closing tx already.
    const actions = row(page, channelId);
    await actions.locator(testid("force-close-button")).waitFor();
    assert.equal(await actions.locator(testid("close-button")).count(), 0, "no cooperative close for a restored channel");
    await page.screenshot({ path: `${SCREENSHOTS}/wallet-restored.png`, fullPage: true });
    // Without the peer, as after a real loss it may be gone too.
    env.counterparty.pause();
    try {
      await clickClose(page, channelId, { force: true });
      await waitForFlags(page, channelId, "Closed", "UNCOOPERATIVE_LOCAL WAITING_ONCHAIN_SETTLEMENT");
      await passTheDelay();
      await assertClosed(page, channelId, "UNCOOPERATIVE_LOCAL");
    } finally {
      env.counterparty.resume();
    }
    await assertMoneyBack(before);
  });
});

test("the browser loses a channel's stored record (its file is gone): the other entries still load, and the saved backup brings the channel back", async () => {
  // Chromium keeps a value over 64 KB (after compression) in a file of its
  // own beside the database; with that file gone, reading the value fails
  // with NotReadableError, and so does any getAll whose range holds it.
  // The channel's entry gets 300 KB of padding beside its record (read
  // only by name, so the record reads as before) to be kept so. 130
  // entries that are not records sort before it, so it falls in the boot's
  // second run of 128: the count below also says that nothing read before
  // the failed run is lost or read twice.
  const backupFile = join(dataDir, "wallet-backup-lost-record.json");
  const junk = Array.from({ length: 130 }, (_, i) => `0x0000${i.toString(16).padStart(60, "0")}`);
  const profile = await launchPersistent();
  let channelId;
  try {
    const page = await openWallet(await profile.context.newPage());
    ({ channelId } = await readyChannel(page));
    const download = page.waitForEvent("download");
    await page.click(testid("backup-button"));
    await (await download).saveAs(backupFile);
    await page.evaluate(
      async ([channelId, junk]) => {
        const padding = new Uint8Array(300_000);
        for (let at = 0; at < padding.length; at += 65_536) crypto.getRandomValues(padding.subarray(at, at + 65_536));
        const db = await new Promise((ok, fail) => {
          const open = indexedDB.open("fiber-funding");
          open.onsuccess = () => ok(open.result);
          open.onerror = () => fail(open.error);
        });
        await new Promise((ok, fail) => {
          const tx = db.transaction("channels", "readwrite", { durability: "strict" });
          const channels = tx.objectStore("channels");
          const read = channels.get(channelId);
          read.onsuccess = () => channels.put({ ...read.result, padding });
          for (const id of junk) channels.put({ channel_id: id, record: 7 });
          tx.oncomplete = ok;
          tx.onabort = () => fail(tx.error);
        });
        db.close();
      },
      [channelId, junk],
    );
    // Still readable: the channel is as it was.
    await page.reload();
    await openWallet(page);
    await waitForState(page, channelId, "ChannelReady");
  } finally {
    await profile.close({ keepProfile: true });
  }
  const idbDir = join(profile.dir, "Default", "IndexedDB");
  const blobDirs = readdirSync(idbDir).filter((name) => name.endsWith(".indexeddb.blob"));
  assert.ok(blobDirs.length > 0, "Chromium kept the large value in a file of its own");
  for (const name of blobDirs) rmSync(join(idbDir, name), { recursive: true, force: true });
  const relaunched = await launchPersistent(profile.dir);
  try {
    const page = await openWallet(await relaunched.context.newPage());
    await page.locator(testid("restored"), { hasText: "131 stored records could not be read (kept)" }).waitFor();
    const restored = await page.textContent(testid("restored"));
    assert.equal(restored.match(/Data lost due to missing file/g)?.length, 1, restored);
    assert.equal(restored.match(/neither record bytes nor record JSON/g)?.length, 130, restored);
    assert.equal(await row(page, channelId).count(), 0, "the lost channel is not listed");
    const keys = await page.evaluate(async () => {
      const db = await new Promise((ok) => {
        const open = indexedDB.open("fiber-funding");
        open.onsuccess = () => ok(open.result);
      });
      const request = db.transaction("channels").objectStore("channels").getAllKeys();
      return new Promise((ok) => (request.onsuccess = () => ok(request.result)));
    });
    assert.equal(keys.length, 131, "every entry is left in place");
    assert.ok(keys.includes(channelId));
    // A version 1 copy of it (no authentication codes, as the module made
    // before): the page asks whether the user kept it themselves; told no,
    // nothing is restored.
    const saved = JSON.parse(readFileSync(backupFile, "utf8"));
    assert.equal(saved.version, 2);
    assert.match(saved.channels[0].mac, /^0x[0-9a-f]{64}$/);
    const version1File = join(dataDir, "wallet-backup-version-1.json");
    const version1 = { ...saved, version: 1, channels: saved.channels.map(({ mac, ...rest }) => rest) };
    writeFileSync(version1File, JSON.stringify(version1));
    const asked = new Promise((resolve) =>
      page.once("dialog", (dialog) => {
        resolve(dialog.message());
        void dialog.dismiss();
      }),
    );
    await page.setInputFiles(testid("restore-input"), version1File);
    assert.match(await asked, /older version of the wallet/);
    await page.locator(`${testid("error")}[data-code="BACKUP_UNAUTHENTICATED"]`).waitFor();
    assert.equal(await row(page, channelId).count(), 0, "nothing restored");
    // The way back: the backup saved while the channel was ready.
    await page.setInputFiles(testid("restore-input"), backupFile);
    await page.locator(testid("activity-log"), { hasText: "Backup restored: 1 channel(s) taken back" }).waitFor();
    await waitForState(page, channelId, "ChannelReady");
    // Told yes, the version 1 copy is read (its channel is back already).
    page.once("dialog", (dialog) => void dialog.accept());
    await page.setInputFiles(testid("restore-input"), version1File);
    await page
      .locator(testid("activity-log"), { hasText: "Backup restored: 0 channel(s) taken back, 1 already here" })
      .waitFor();
    await page.reload();
    await openWallet(page);
    await waitForState(page, channelId, "ChannelReady");
    await page.locator(testid("restored"), { hasText: "130 stored records could not be read (kept)" }).waitFor();
  } finally {
    await relaunched.close();
  }
});

test("the deadline passes while the user is at the signer: aborted on both sides, cells free again", async () => {
  env.walletConfig({ externalFundingTimeoutSeconds: 8 });
  try {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      await goToSigner(page, channelId);
      await page.waitForTimeout(9_000);
      await approve(page);
      const error = page.locator(testid("error"));
      await error.waitFor({ state: "visible", timeout: 30_000 });
      assert.match(await error.getAttribute("data-code"), /^(CHANNEL_CLOSED|FUNDING_EXPIRED)$/);
      assert.match(await error.textContent(), /timed out|expired/i);
      await waitForState(page, channelId, "Closed");
      await page.screenshot({ path: `${SCREENSHOTS}/wallet-expired.png`, fullPage: true });
      // The counterparty aborted too (it logs every transition).
      const deadline = Date.now() + 30_000;
      while (!env.counterparty.lines.some((l) => l.includes(channelId) && l.includes("Closed"))) {
        assert.ok(Date.now() < deadline, `the counterparty did not close ${channelId}:\n${env.counterparty.lines.slice(-20).join("\n")}`);
        await page.waitForTimeout(200);
      }
      // The user's cells are free: a new open succeeds.
      env.walletConfig();
      await page.reload();
      await openWallet(page);
      const second = await openChannel(page);
      await signAndOpen(page, second);
    });
  } finally {
    env.walletConfig();
  }
});

test("a tampered signed tx is refused with the error shown; the genuine one is then accepted", async () => {
  await withBrowser(async (context) => {
    const page = await openWallet(await context.newPage());
    const channelId = await openChannel(page);
    await goToSigner(page, channelId);
    await approve(page, { tampered: true });
    const error = page.locator(`${testid("error")}[data-code="SIGNED_TX_MISMATCH"]`);
    await error.waitFor({ timeout: 30_000 });
    assert.match(await error.textContent(), /outputs\[\d+\]\.capacity/);
    await page.screenshot({ path: `${SCREENSHOTS}/wallet-tampered.png`, fullPage: true });
    await signAndOpen(page, channelId);
  });
});

describe("Cancel funding: the way out of a flow the counterparty leaves hanging after the wallet signed", () => {
  /** Waits for the channel's row in `state` with `flag` among its flags. */
  async function waitForFlag(page, channelId, state, flag, timeout = 30_000) {
    await page
      .locator(`${testid("channel-row")}[data-channel-id="${channelId}"][data-state="${state}"][data-flags~="${flag}"]`)
      .waitFor({ timeout });
  }

  /** What the user asked for, said as such: no error shown. */
  async function saysCancelled(page) {
    await page.locator(testid("status"), { hasText: "cancelled" }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator(testid("error")).isVisible(), false, await page.locator(testid("error")).textContent());
  }

  /** Clicks the flow's Cancel funding and accepts the confirmation. */
  async function clickCancel(page, channelId) {
    const cancel = page.locator(`${testid("cancel-button")}[data-channel-id="${channelId}"]`);
    await cancel.waitFor({ timeout: 30_000 });
    page.once("dialog", (dialog) => void dialog.accept());
    await cancel.click();
  }

  test("it went silent before the wallet's signature reached it: the flow ends without a tx", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      const channelId = await openChannel(page);
      try {
        await signedWithTheCounterpartySilent(page, channelId);
        await clickCancel(page, channelId);
        await waitForFlag(page, channelId, "Closed", "ABANDONED");
        await saysCancelled(page);
        assert.ok(page.url().startsWith(env.walletUrl), "no tx to sign: the page never left for the signer");
      } finally {
        env.counterparty.resume();
      }
      // The cells are free again: a new open takes them.
      await signAndOpen(page, await openChannel(page));
    });
  });

  test("it keeps its own signatures back after the wallet's went out: a signed cancel tx takes the cells back", async () => {
    // Adding more than the wallet puts the counterparty second to sign (Fiber's
    // rule: the smaller contribution signs first), so it holds the wallet's
    // witnesses while it withholds its own and the funding tx.
    await env.counterparty.kill();
    await env.counterparty.restart(["--misbehave", "withhold-funding", "--auto-accept-amount", String(1_500n * 100_000_000n)]);
    try {
      await withBrowser(async (context) => {
        const page = await openWallet(await context.newPage());
        const before = await walletBalance();
        const channelId = await openChannel(page);
        await signAndSubmit(page, channelId);
        await waitForFlag(page, channelId, "AwaitingTxSignatures", "OUR_TX_SIGNATURES_SENT");
        await clickCancel(page, channelId);
        await page.waitForURL((url) => url.href.startsWith(env.signerUrl), { timeout: 30_000 });
        await approve(page);
        await submitted(page);
        await page.locator(`${testid("status")}[data-cancel="sent"]`).waitFor({ timeout: 30_000 });
        await waitForFlag(page, channelId, "Closed", "FUNDING_ABORTED", READY_TIMEOUT);
        await saysCancelled(page);
        await page.screenshot({ path: `${SCREENSHOTS}/wallet-cancelled.png`, fullPage: true });
        assert.equal(await page.locator(`${testid("pending-item")}[data-channel-id="${channelId}"]`).count(), 0);
        // Every input of the funding tx is back, less the cancel tx's fee.
        await assertMoneyBack(before);
      });
    } finally {
      await env.counterparty.kill();
      await env.counterparty.restart();
    }
  });
});

describe("what the person at the wallet sees", () => {
  const CKB = 100_000_000n;
  const activity = (page) => page.locator(testid("activity-log")).textContent();
  const shortId = (id) => `${id.slice(0, 8)}…${id.slice(-4)}`;
  const shannonsOf = async (page, id) => BigInt((await page.locator(testid(id)).getAttribute("data-shannons")) ?? "-1");

  test("words, not Fiber's states; one name per channel; confirmations; a reload after ready refuses nothing", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      // Where the amount is chosen: what the channel keeps on top of it.
      assert.match(await page.locator(testid("reserve-note")).textContent(), /reserve of 99 CKB .*comes back when the channel closes/);
      await page.locator(`${testid("wallet-balance")}[data-shannons]`).waitFor();
      const balanceBefore = await shannonsOf(page, "wallet-balance");

      const channelId = await openChannel(page);
      const status = row(page, channelId).locator(testid("channel-status"));
      await status.filter({ hasText: "waiting for your signature" }).waitFor();
      assert.match(
        await row(page, channelId).locator(`${testid("fiber-state")} code`).textContent(),
        /^(NegotiatingFunding \(AWAITING_EXTERNAL_FUNDING\)|SigningCommitment \(THEIR_COMMITMENT_SIGNED_SENT\))$/,
      );
      // Nothing above the pending funding says there is none.
      assert.doesNotMatch(await page.locator(testid("restored")).textContent(), /no funding was in progress/);
      // The temporary id is not a second channel in the activity log.
      const { temporary_channel_id: temporaryId } = await storedRecord(page, channelId);
      assert.notEqual(temporaryId, channelId);
      const log = await activity(page);
      assert.ok(!log.includes(shortId(temporaryId)), `the log names the temporary id ${temporaryId}:\n${log}`);
      assert.ok(log.includes(shortId(channelId)), log);

      await signAndOpen(page, channelId);
      // The line about the page load (back from the signer) no longer says
      // the channel, ready now, waits for a signature.
      await page.locator(testid("restored")).filter({ hasText: "waiting for your signature" }).waitFor({ state: "detached", timeout: 5_000 });
      // The confirmations as they came, then ready in words.
      assert.match(await activity(page), /funding transaction confirmed [12] of 2 times/);
      await status.filter({ hasText: "ready" }).waitFor();
      // The balance is refreshed once the channel is ready: the funding left the wallet.
      await page.waitForFunction(
        (before) => BigInt(document.querySelector('[data-testid="wallet-balance"]').dataset.shannons ?? before) < BigInt(before),
        balanceBefore.toString(),
        { timeout: 3_000 },
      );

      // A reload after ChannelReady: nothing is re-sent, so nothing is refused.
      await page.reload();
      await openWallet(page);
      await waitForState(page, channelId, "ChannelReady");
      await page.waitForTimeout(3_000);
      assert.doesNotMatch(await activity(page), /Ignored a message/);
    });
  });

  test("an open short of funds says why, in CKB, naming the funding that holds the cells; the wallet shows what is free", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      await page.locator(`${testid("wallet-available")}[data-shannons]`).waitFor();
      const available = await shannonsOf(page, "wallet-available");
      // A channel that needs every cell of the wallet.
      const amount = available - 500n * CKB;
      await page.fill(testid("amount-input"), `${amount / CKB}.${(amount % CKB).toString().padStart(8, "0")}`);
      await page.click(testid("open-button"));
      const sign = page.locator(testid("sign-button")).first();
      await sign.waitFor({ timeout: 30_000 });
      const bigId = await sign.getAttribute("data-channel-id");
      // What is left for a new channel, next to the total, and who holds the rest.
      assert.ok((await shannonsOf(page, "wallet-available")) < 500n * CKB);
      assert.ok((await shannonsOf(page, "wallet-balance")) >= available);
      assert.match(await page.locator(testid("wallet-held")).textContent(), new RegExp(`held by the funding in progress of channel ${shortId(bigId)}`));

      await page.fill(testid("amount-input"), "1000");
      await page.click(testid("open-button"));
      const error = page.locator(`${testid("error")}[data-code="INSUFFICIENT_FUNDS"]`);
      await error.waitFor({ timeout: 30_000 });
      const text = await error.textContent();
      assert.match(text, /^Not enough CKB: this channel needs 1099\.\d+ CKB \(1000 CKB for the channel, 99 CKB reserve returned at close, 0\.\d+ CKB fee; \d+ shannons\)/);
      assert.match(text, /but only \d+(\.\d+)? CKB \(\d+ shannons\) in this wallet is free/);
      assert.ok(text.includes(`reserved by the pending funding of channel ${bigId}`), text);

      // Abandoning it frees the cells for the next channel.
      page.once("dialog", (dialog) => void dialog.accept());
      await page.click(`${testid("abandon-button")}[data-channel-id="${bigId}"]`);
      await waitForState(page, bigId, "Closed");
      await page.waitForFunction(
        (wanted) => BigInt(document.querySelector('[data-testid="wallet-available"]').dataset.shannons ?? "0") >= BigInt(wanted),
        (available - CKB).toString(),
        { timeout: 10_000 },
      );
    });
  });
});

/** Two tabs of the wallet: the first owns it and opened a channel, the second follows. */
async function twoTabsWithAChannel(context) {
  const first = await openWallet(await context.newPage());
  const second = await context.newPage();
  await second.goto(env.walletUrl);
  await second.locator(testid("readonly-banner")).waitFor({ state: "visible", timeout: 30_000 });
  const channelId = await openChannel(first);
  return { first, second, channelId };
}

test("two tabs: one owns the node, the other follows read-only and takes over when the first closes", async () => {
  await withBrowser(async (context) => {
    const { first, second, channelId } = await twoTabsWithAChannel(context);
    await second.locator(`${testid("channel-row")}[data-channel-id="${channelId}"]`).waitFor({ timeout: 30_000 });
    await second.screenshot({ path: `${SCREENSHOTS}/wallet-second-tab.png`, fullPage: true });
    await first.close();
    await second.locator(testid("readonly-banner")).waitFor({ state: "hidden", timeout: 30_000 });
    await signAndOpen(second, channelId);
  });
});

test("back from the signer while the other tab took the wallet: the signed tx is handed to that tab, ChannelReady", async () => {
  await withBrowser(async (context) => {
    const { first, second, channelId } = await twoTabsWithAChannel(context);
    // The redirect unloads the first tab: the second, waiting, takes the wallet.
    await goToSigner(first, channelId);
    await second.locator(testid("readonly-banner")).waitFor({ state: "hidden", timeout: 30_000 });
    await approve(first);
    await submitted(first);
    await first.locator(testid("readonly-banner")).waitFor({ state: "visible", timeout: 30_000 });
    await first.locator(`${testid("status")}[data-forwarded="true"]`).waitFor({ timeout: 30_000 });
    await assertOpened(second, channelId);
  });
});

describe("the counterparty is down when the page comes back from the signer", () => {
  for (const how of ["stopped (SIGSTOP)", "killed (kill -9)"]) {
    test(`${how}: the flow is listed at once, the submit is queued and survives a reload, ChannelReady once it is back`, async () => {
      const stopped = how.includes("SIGSTOP");
      await withBrowser(async (context) => {
        const page = await openWallet(await context.newPage());
        const channelId = await openChannel(page);
        await goToSigner(page, channelId);
        if (stopped) env.counterparty.pause();
        else await env.counterparty.kill();
        try {
          await approve(page);
          await submitted(page);
          // The page booted and submitted without waiting for the counterparty.
          await page.locator(`${testid("status")}[data-submit="queued"]`).waitFor({ timeout: 15_000 });
          assert.equal(await page.locator(`${testid("pending-item")}[data-channel-id="${channelId}"]`).count(), 1);
          // A reload while queued: the signed tx comes back from storage (the
          // redirect's copy is gone from the URL and the tab's memory).
          await page.reload();
          await page.locator(`${testid("pending-item")}[data-channel-id="${channelId}"]`).waitFor({ timeout: 15_000 });
          assert.equal((await storedRecord(page, channelId)).external_funding, true);
        } finally {
          if (stopped) env.counterparty.resume();
          else await env.counterparty.restart();
        }
        await assertOpened(page, channelId);
      });
    });
  }

  test("an open to a counterparty that is connected but silent fails with PEER_UNREACHABLE; the next one opens", async () => {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      env.counterparty.pause();
      try {
        await page.fill(testid("amount-input"), "1000");
        await page.click(testid("open-button"));
        const error = page.locator(testid("error"));
        await error.waitFor({ state: "visible", timeout: 30_000 });
        assert.equal(await error.getAttribute("data-code"), "PEER_UNREACHABLE");
      } finally {
        env.counterparty.resume();
      }
      // The aborted channel reserved nothing: the same cells fund the next open.
      await openWallet(page);
      const channelId = await openChannel(page);
      await signAndOpen(page, channelId);
    });
  });
});

/**
 * A TCP front for the counterparty at `target` (a ws:// URL): the first
 * connection is answered with the WebSocket upgrade and then nothing (a
 * node that hangs mid-handshake, or a proxy whose backend is gone); every
 * later one is piped to the counterparty. Resolves to { url, connections, close }.
 */
async function stallFirstHandshake(target) {
  const { createServer, connect } = await import("node:net");
  const { createHash } = await import("node:crypto");
  const { port: targetPort } = new URL(target);
  const sockets = new Set();
  const front = { connections: 0 };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    if (++front.connections > 1) {
      const upstream = connect(Number(targetPort), "127.0.0.1");
      upstream.on("error", () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
      return;
    }
    let head = "";
    socket.on("data", (chunk) => {
      if (head.includes("\r\n\r\n")) return; // act one and anything after: never answered
      head += chunk.toString("latin1");
      const key = head.match(/sec-websocket-key:\s*(\S+)/i)?.[1];
      if (!head.includes("\r\n\r\n") || !key) return;
      const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  front.url = `ws://127.0.0.1:${server.address().port}`;
  front.close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise((ok) => server.close(ok));
  };
  return front;
}

test("a counterparty that opens the WebSocket but never answers the handshake is called again", async () => {
  const front = await stallFirstHandshake(env.peerUrl);
  env.walletConfig({ peerUrl: front.url });
  try {
    await withBrowser(async (context) => {
      // The first call hangs after the upgrade; the page gives up on it and
      // calls again, and the second call reaches the counterparty.
      await openWallet(await context.newPage());
      assert.equal(front.connections, 2, "one stalled call, one that connected");
    });
  } finally {
    env.walletConfig();
    await front.close();
  }
});

test("the node in a Web Worker on a page without cross-origin isolation: open, reload, sign through the redirect, ChannelReady", async () => {
  env.walletConfig({ worker: true });
  try {
    await withBrowser(async (context) => {
      const page = await openWallet(await context.newPage());
      // No COOP/COEP: JoyID's popup flow needs a page that is not isolated.
      assert.equal(await page.evaluate(() => crossOriginIsolated), false);
      assert.equal(await page.evaluate(() => typeof SharedArrayBuffer), "undefined");
      const inWorker = async () => {
        const workers = page.workers();
        assert.equal(workers.length, 1, "one worker runs the node");
        return workers[0].evaluate(() => self.constructor.name);
      };
      assert.equal(await inWorker(), "DedicatedWorkerGlobalScope");
      const channelId = await openChannel(page);
      // The page reloads: its worker dies with it, and a new one resumes
      // the flow from IndexedDB.
      await page.reload();
      await page.locator(`${testid("peer-status")}[data-status="ok"]`).waitFor({ timeout: 30_000 });
      await page.locator(`${testid("pending-item")}[data-channel-id="${channelId}"]`).waitFor({ timeout: 15_000 });
      assert.equal(await inWorker(), "DedicatedWorkerGlobalScope");
      // The redirect to the signer and back: another page load, another worker.
      await signAndOpen(page, channelId);
      assert.equal(await inWorker(), "DedicatedWorkerGlobalScope");
      // A closed flow's record that cannot be read is found after open (the
      // closed flows' records are read then): the page hears of it, and the
      // worker's node lists it with those found at open.
      await page.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const open = indexedDB.open("fiber-funding");
            open.onsuccess = () => {
              const tx = open.result.transaction("tombstones", "readwrite");
              tx.objectStore("tombstones").put({ channel_id: "0x" + "0b".repeat(32), temporary_channel_id: null, record: new Uint8Array([1]) });
              tx.oncomplete = () => {
                open.result.close();
                resolve();
              };
              tx.onabort = () => reject(tx.error);
            };
            open.onerror = () => reject(open.error);
          }),
      );
      await page.reload();
      await page.locator(testid("activity-log")).getByText(/1 stored record could not be read \(kept\).*; 1 unreadable in all\./).waitFor({ timeout: 15_000 });
    });
  } finally {
    env.walletConfig();
  }
});
