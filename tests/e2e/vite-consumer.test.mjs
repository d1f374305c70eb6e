// A page built by Vite from `import ... from "fiber-funding"` loads the
// package (ESM + wasm) in Chromium and uses it; its TypeScript type-checks
// against the generated declarations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { launchBrowser, origin } from "./support.mjs";

test("the package type-checks and runs in a Vite-bundled page", async () => {
  execFileSync("npx", ["tsc", "-p", "tests/vite-consumer/tsconfig.json"], { stdio: "inherit" });
  execFileSync("npx", ["vite", "build", "--config", "tests/vite-consumer/vite.config.js"], { stdio: "inherit" });
  const site = await origin("target/vite-consumer");
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => document.getElementById("result").textContent !== "loading");
    const result = JSON.parse(await page.textContent("#result"));
    assert.match(result.nodeId ?? "", /^0x0[23][0-9a-f]{64}$/, JSON.stringify(result));
    assert.equal(result.pending, 0);
    assert.equal(result.submitError, "INVALID_TX_JSON");
    // A backup of a node without channels; its key is the module's own here.
    assert.deepEqual(result.backup, { format: "fiber-funding-backup", channels: 0, ownKey: true });
    assert.deepEqual(result.misuse, {
      getChannel: "INVALID_PARAMS",
      abandonChannel: "INVALID_PARAMS",
      forceCloseChannel: "INVALID_PARAMS",
      cancelFundingTx: "INVALID_PARAMS",
      cancelUnknownChannel: "UNKNOWN_CHANNEL",
      submitSignedCancelTx: "INVALID_TX_JSON",
      onEvent: "INVALID_PARAMS",
      importBackup: "INVALID_PARAMS",
      unsubscribeTwice: "no error",
    });
    // fiber-funding/worker: a listener that throws keeps neither onEvent nor
    // the next listener from working, a second close() waits for the first,
    // and a worker that fails says so with a code. A signed tx handed over
    // from a worker reaches the owner (whose answer, here an unknown
    // channel, comes back), and no owner is NO_OWNER_TAB.
    assert.deepEqual(result.worker, {
      onEventThrew: false,
      heard: "peer_unavailable",
      closes: ["fulfilled", "fulfilled"],
      brokenWorker: "INTERNAL",
      forwardedToOwner: "UNKNOWN_CHANNEL",
      forwardedToNoOne: "NO_OWNER_TAB",
      backupChannels: 0,
      followedEvent: "peer_unavailable",
    });
  } finally {
    await browser.close();
    await site.close();
  }
});
