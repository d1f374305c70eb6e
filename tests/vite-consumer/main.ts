// A bundler user of the npm package: imported by name, bundled by Vite, and
// type-checked against the package's declarations by `tsc --noEmit`.
import init, {
  FundingNode,
  type Backup,
  type Channel,
  type FundingError,
  type FundingEvent,
  type FundingNodeOptions,
  type PendingFunding,
} from "fiber-funding";
import { WorkerFundingNode } from "fiber-funding/worker";

const result = document.getElementById("result")!;

async function main(): Promise<Record<string, unknown>> {
  await init();
  const options = {
    // Nothing listens on port 9: the node opens anyway and keeps retrying.
    ckbRpcUrl: "http://127.0.0.1:9/",
    peerUrl: "ws://127.0.0.1:9/",
    dbName: "vite-consumer",
    // The counterparty's node id (here secp256k1's generator, as a stand-in).
    peerPubkey: "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    chainHash: "0x" + "cc".repeat(32),
    // Not testnet or mainnet: the contracts must be named.
    fundingLock: { code_hash: "0x" + "f1".repeat(32), hash_type: "type" },
    commitmentLock: { code_hash: "0x" + "c1".repeat(32), hash_type: "type" },
  } satisfies FundingNodeOptions;
  const node = await FundingNode.open(options);
  const events: FundingEvent[] = [];
  const stop = node.onEvent((event) => events.push(event));
  const pending: PendingFunding[] = await node.pendingFundings();
  const channels: Channel[] = await node.listChannels();
  // The event union narrows on `type` (declared from the Rust enum).
  const closes = events.flatMap((event) => (event.type === "state_changed" ? [event.close_reason ?? ""] : []));
  let submitError: string | null = null;
  try {
    await node.submitSignedFundingTx({ channel_id: "0x" + "00".repeat(32), signed_funding_tx: {} });
  } catch (error) {
    submitError = (error as FundingError).code;
  }
  stop();
  const backup: Backup = await node.exportBackup();
  const misuse = await misused(node);
  await node.close();
  const worker = await inWorker({ ...options, dbName: "vite-consumer-worker" });
  return {
    nodeId: node.nodeId,
    pending: pending.length,
    channels: channels.length,
    closes: closes.length,
    submitError,
    backup: { format: backup.format, channels: backup.channels.length, ownKey: backup.node_secret_key !== null },
    misuse,
    worker,
  };
}

/** What a page passing the wrong things gets: a coded error, or nothing broken. */
async function misused(node: FundingNode): Promise<Record<string, unknown>> {
  const code = async (call: () => unknown) => {
    try {
      await call();
      return "no error";
    } catch (error) {
      return (error as FundingError).code ?? "no code";
    }
  };
  const missing = undefined as unknown as string;
  return {
    getChannel: await code(() => node.getChannel(missing)),
    abandonChannel: await code(() => node.abandonChannel(missing)),
    forceCloseChannel: await code(() => node.forceCloseChannel(missing)),
    cancelFundingTx: await code(() => node.cancelFundingTx({ channel_id: missing })),
    cancelUnknownChannel: await code(() => node.cancelFundingTx({ channel_id: `0x${"11".repeat(32)}` })),
    submitSignedCancelTx: await code(() =>
      node.submitSignedCancelTx({ channel_id: `0x${"11".repeat(32)}`, signed_cancel_tx: {} }),
    ),
    onEvent: await code(() => node.onEvent("not a function" as unknown as () => void)),
    importBackup: await code(() => node.importBackup({} as unknown as Backup)),
    // React's StrictMode runs an effect's cleanup twice.
    unsubscribeTwice: await code(() => {
      const stop = node.onEvent(() => {});
      stop();
      stop();
    }),
  };
}

/** A well-formed tx with nothing in it. */
const EMPTY_TX = { version: "0x0", cell_deps: [], header_deps: [], inputs: [], outputs: [], outputs_data: [], witnesses: [] };

/** The same node in a Web Worker, used as a careless page would. */
async function inWorker(options: FundingNodeOptions): Promise<Record<string, unknown>> {
  const node = await WorkerFundingNode.open(options);
  // Long enough for the first failed call to the counterparty to be told:
  // the first listener is then handed it from the backlog.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  // A listener with a bug, first in line; the next one must still hear
  // every event (here the unreachable counterparty, called again).
  let onEventThrew = false;
  try {
    node.onEvent(() => {
      throw new Error("a listener's bug");
    });
  } catch {
    onEventThrew = true;
  }
  // A tab following this one, with no wasm of its own, hears its events too.
  const followed = new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve("nothing"), 15_000);
    const stopFollowing = WorkerFundingNode.follow(options.dbName, (event) => {
      clearTimeout(timer);
      stopFollowing();
      resolve(event.type);
    });
  });
  const heard = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve("nothing"), 10_000);
    node.onEvent((event) => {
      clearTimeout(timer);
      resolve(event.type);
    });
  });
  // A page back from the signer while this one owns the database hands the
  // signed tx over from a worker of its own: the owner's answer comes back.
  const forward = () =>
    WorkerFundingNode.submitToOwner(
      options.dbName,
      { channel_id: `0x${"11".repeat(32)}`, signed_funding_tx: EMPTY_TX },
      1_000,
    ).then(
      () => "no error",
      (error: FundingError) => error.code ?? "no code",
    );
  const followedEvent = await followed;
  const forwardedToOwner = await forward();
  const backupChannels = (await node.exportBackup()).channels.length;
  // Closed twice without waiting (an unmount and a pagehide, say): both
  // resolve once the node has stopped.
  const closes = await Promise.allSettled([node.close(), node.close()]);
  const forwardedToNoOne = await forward();
  // A worker that fails where nothing catches it (here at its start).
  let brokenWorker = "opened";
  try {
    const script = URL.createObjectURL(new Blob(["throw new Error('broken')"], { type: "text/javascript" }));
    await WorkerFundingNode.open(options, { worker: new Worker(script) });
  } catch (error) {
    brokenWorker = (error as FundingError).code ?? "no code";
  }
  return { onEventThrew, heard, closes: closes.map((c) => c.status), brokenWorker, forwardedToOwner, forwardedToNoOne, backupChannels, followedEvent };
}

main()
  .then((value) => (result.textContent = JSON.stringify(value)))
  .catch((error: FundingError) => (result.textContent = JSON.stringify({ error: error.code ?? String(error) })));
