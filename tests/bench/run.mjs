// The benchmark: real Chromium on a persistent profile (IndexedDB on disk),
// each figure the median of 20 page loads. Prints figures and ratios.
// Run with `scripts/bench`.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { launchPersistent, origin } from "../e2e/support.mjs";

const RUNS = Number(process.env.BENCH_RUNS ?? 20);

mkdirSync("target/bench", { recursive: true });
const fixture = execFileSync("cargo", ["run", "--quiet", "--example", "bench_fixture"], { encoding: "utf8" });
writeFileSync("target/bench/fixture.json", fixture);
const { options } = JSON.parse(fixture);

// Cacheable, as a deployed wallet serves it: the page a JoyID redirect reloads
// was just visited, so Chromium reuses its compiled wasm (streaming compile,
// application/wasm). The demo and tests serve no-store.
const site = await origin(".", { headers: { "cache-control": "max-age=3600" } });
const browser = await launchPersistent();
const page = await browser.context.newPage();

async function measure(mode, db, extra = {}) {
  const query = new URLSearchParams({ mode, db, options: JSON.stringify(options), ...extra });
  await page.goto(`${site.url}/www/bench/index.html?${query}`);
  const result = await page.evaluate(() => window.benchResult);
  if (result.error) throw new Error(`${mode} on ${db}: ${result.error} (${result.code})`);
  return result;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

try {
  await measure("seed", "bench-1", { count: 1 });
  await measure("seed", "bench-1000", { count: 1000 });
  await measure("seed", "bench-1-closed-1000", { count: 1, tombstones: 1000 });
  const { ids } = await measure("seed", "bench-write", { count: RUNS });
  const samples = { one: [], thousand: [], closed: [], baseline: [], submit: [], put: [], sign: [] };
  let bytes = 0;
  for (let run = 0; run < RUNS; run++) {
    const one = await measure("load", "bench-1");
    const thousand = await measure("load", "bench-1000");
    const closed = await measure("load", "bench-1-closed-1000");
    if (one.count !== 1 || thousand.count !== 1000 || closed.count !== 1 || closed.known !== 1001) {
      throw new Error(`restored ${one.count}, ${thousand.count} and ${closed.count} flows (${closed.known} channels)`);
    }
    samples.one.push(one.ms);
    samples.thousand.push(thousand.ms);
    samples.closed.push(closed.ms);
    samples.baseline.push((await measure("baseline", "bench-1")).ms);
    const write = await measure("write", "bench-write", { channel: ids[run] });
    samples.submit.push(write.submit);
    samples.put.push(write.put);
    samples.sign.push(write.sign);
    bytes = write.bytes;
  }
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  const wasm = readFileSync("pkg/fiber_funding_bg.wasm");
  const chromium = execFileSync(process.env.CHROMIUM ?? "/usr/bin/chromium", ["--version"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  }).trim();
  const ms = (x) => `${x.toFixed(1).padStart(7)} ms`;
  const ratio = (x, y) => `${(x / y).toFixed(2)}×`;
  console.log(`fiber-funding benchmark — ${chromium}, headless, persistent profile, cacheable files, median of ${RUNS} page loads`);
  console.log(`(a) page load → pendingFundings() resolved, 1 flow       ${ms(m.one)}   ${ratio(m.one, m.baseline)} the baseline`);
  console.log(`(a) page load → pendingFundings() resolved, 1,000 flows  ${ms(m.thousand)}   ${ratio(m.thousand, m.baseline)} the baseline, ${ratio(m.thousand, m.one)} one flow`);
  console.log(`(a) the same, 1 flow and 1,000 closed flows' tombstones ${ms(m.closed)}   ${ratio(m.closed, m.one)} one flow alone`);
  console.log(`(b) baseline: empty wasm module + IndexedDB open + get   ${ms(m.baseline)}`);
  // The bench's counterparty is unreachable, so the submit is queued: our
  // commitment signature is held (record schema 4) and made on reconnection.
  console.log(`(c) submitSignedFundingTx, counterparty away (queued): checks,`);
  console.log(`    1 strict record write (${bytes} bytes)                ${ms(m.submit)}   ${ratio(m.submit, m.put)} the bare put`);
  console.log(`    bare strict IndexedDB put of the same bytes           ${ms(m.put)}`);
  console.log(`    MuSig2 partial signature alone (the signing floor)    ${ms(m.sign)}`);
  console.log(`    connected, estimated: queued + the signature          ${ms(m.submit + m.sign)}   ${ratio(m.submit + m.sign, m.put)} the bare put`);
  console.log(`(d) .wasm ${wasm.length.toLocaleString("en")} bytes, ${gzipSync(wasm, { level: 9 }).length.toLocaleString("en")} gzipped`);
  console.log(`(e) record per flow: ${bytes.toLocaleString("en")} bytes as stored (the flow of (c), tx handed out)`);
} finally {
  await browser.close();
  await site.close();
}
