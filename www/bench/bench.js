// One measurement per page load, chosen by the query string; the result is
// left in window.benchResult for the runner (tests/bench/run.mjs).
import init, { FundingNode, benchPartialSignature } from "../../pkg/fiber_funding.js";

const query = new URLSearchParams(location.search);
const db = query.get("db");
const options = JSON.parse(query.get("options") ?? "{}");

// Nothing listens on port 9: the node opens and keeps retrying in the background.
const nodeOptions = () => ({
  ckbRpcUrl: "http://127.0.0.1:9/",
  peerUrl: "ws://127.0.0.1:9/",
  dbName: db,
  // The seeded flows must not expire while the benchmark runs (the fixture
  // dates them in the future); the longest timeout the options allow.
  externalFundingTimeoutSeconds: 86400,
  ...options,
});

function request(idbRequest) {
  return new Promise((resolve, reject) => {
    idbRequest.onsuccess = () => resolve(idbRequest.result);
    idbRequest.onerror = () => reject(idbRequest.error);
  });
}

function bytesOfHex(hex) {
  return Uint8Array.from(hex.slice(2).match(/../g), (byte) => parseInt(byte, 16));
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = resolve;
    transaction.onabort = transaction.onerror = () => reject(transaction.error);
  });
}

const modes = {
  // Page load until the restored flows are listed; then, untimed, how many
  // channels the node knows once the closed flows' records are in too.
  async load() {
    await init();
    const node = await FundingNode.open(nodeOptions());
    const pending = await node.pendingFundings();
    const ms = performance.now();
    const known = (await node.listChannels()).length;
    await node.close();
    return { ms, count: pending.length, known };
  },

  // The floor any IndexedDB-backed wasm page pays: an empty module, one open, one get.
  async baseline() {
    await WebAssembly.instantiate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    const database = await request(indexedDB.open(db));
    await request(database.transaction("channels").objectStore("channels").get("0x00"));
    const ms = performance.now();
    database.close();
    return { ms };
  },

  // Copies of one real record under fresh ids, in the module's own layout:
  // its stored bytes (record schema 5) with both ids replaced where the
  // fixture says they are: `count` flows waiting for the user's signature,
  // and `tombstones` closed flows (the same flow once it closed unfunded),
  // filed as the module files them (the tombstones in their own store).
  async seed() {
    await init();
    (await FundingNode.open(nodeOptions())).close();
    const fixture = await (await fetch("/target/bench/fixture.json")).json();
    const database = await request(indexedDB.open(db));
    const transaction = database.transaction(["channels", "tombstones"], "readwrite", { durability: "strict" });
    const put = (hex, offsets, prefix, i, store) => {
      const id = "0x" + (prefix + i).toString(16).padStart(8, "0") + fixture.channel_id.slice(10);
      const temporary = "0xffffffff" + id.slice(10);
      const copy = bytesOfHex(hex);
      copy.set(bytesOfHex(id), offsets.channel_id);
      copy.set(bytesOfHex(temporary), offsets.temporary_channel_id);
      transaction.objectStore(store).put({ channel_id: id, temporary_channel_id: temporary, record: copy });
      return id;
    };
    const ids = [];
    for (let i = 0; i < Number(query.get("count")); i++) {
      ids.push(put(fixture.record, fixture.record_id_offsets, 0, i, "channels"));
    }
    for (let i = 0; i < Number(query.get("tombstones") ?? 0); i++) {
      put(fixture.tombstone, fixture.tombstone_id_offsets, 0x80000000, i, "tombstones");
    }
    await done(transaction);
    database.close();
    return { ids };
  },

  // submitSignedFundingTx (its checks, a MuSig2 partial signature and one
  // strict write) against a bare strict put of the same bytes.
  async write() {
    await init();
    const { signed_funding_tx } = await (await fetch("/target/bench/fixture.json")).json();
    const channel_id = query.get("channel");
    const node = await FundingNode.open(nodeOptions());
    const start = performance.now();
    await node.submitSignedFundingTx({ channel_id, signed_funding_tx });
    const submit = performance.now() - start;
    await node.close();

    const database = await request(indexedDB.open(db));
    const entry = await request(database.transaction("channels").objectStore("channels").get(channel_id));
    database.close();
    const bare = await request(
      Object.assign(indexedDB.open("bench-bare-put", 1), {
        onupgradeneeded: (event) => event.target.result.createObjectStore("channels", { keyPath: "channel_id" }),
      }),
    );
    const putStart = performance.now();
    const transaction = bare.transaction("channels", "readwrite", { durability: "strict" });
    transaction.objectStore("channels").put(entry);
    await done(transaction);
    const put = performance.now() - putStart;
    bare.close();

    // The floor under a submit: the MuSig2 partial signature alone (keys
    // aggregated, nonces derived, one signature), averaged over 20.
    const signStart = performance.now();
    for (let i = 0; i < 20; i++) {
      if (!benchPartialSignature(i)) throw new Error("the benchmark signature failed");
    }
    const sign = (performance.now() - signStart) / 20;
    return { submit, put, sign, bytes: entry.record.length };
  },
};

window.benchResult = modes[query.get("mode")]().catch((error) => ({ error: String(error), code: error.code }));
