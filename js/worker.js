// The worker side of `fiber-funding/worker`: runs a FundingNode inside a
// dedicated Web Worker (IndexedDB, Web Locks, WebSocket and fetch all exist
// there) and answers the page's calls over postMessage. Messages:
//   page -> worker  { id, method, args }
//   worker -> page  { id, result } | { id, error: { name, message, code } } | { event }
import init, { FundingNode } from "./fiber_funding.js";

// The calls a page may make: FundingNode's methods, nothing else.
const METHODS = new Set([
  "pendingFundings",
  "openChannelWithExternalFunding",
  "submitSignedFundingTx",
  "getChannel",
  "listChannels",
  "abandonChannel",
  "cancelFundingTx",
  "submitSignedCancelTx",
  "shutdownChannel",
  "forceCloseChannel",
  "exportBackup",
  "importBackup",
]);

let node = null;
/** The close under way: a second "close" waits for it, not answers at once. */
let closing = null;

async function call(method, args) {
  if (method === "open") {
    if (node) throw Object.assign(new Error("this worker already runs a node"), { code: "INVALID_PARAMS" });
    await init();
    node = await FundingNode.open(args[0]);
    // Subscribed at once: the node replays what happened since open to its
    // first listener, and the page buffers until it subscribes itself.
    node.onEvent((event) => self.postMessage({ event }));
    return {
      nodeId: node.nodeId,
      persistenceGranted: node.persistenceGranted,
      unreadableRecords: node.unreadableRecords,
    };
  }
  // The one static call: hands a signed tx to the tab that owns a database.
  if (method === "submitToOwner") {
    await init();
    return FundingNode.submitToOwner(...args);
  }
  if (method === "close") {
    const open = node;
    node = null;
    if (open) closing = open.close();
    await closing;
    return null;
  }
  if (!METHODS.has(method)) throw Object.assign(new Error(`no method ${method}`), { code: "INVALID_PARAMS" });
  if (!node) throw Object.assign(new Error("the node was closed; open it again"), { code: "NODE_CLOSED" });
  return node[method](...args);
}

self.onmessage = async ({ data }) => {
  const { id, method, args } = data ?? {};
  try {
    const result = await call(method, Array.isArray(args) ? args : []);
    self.postMessage({ id, result });
  } catch (error) {
    const { name = "Error", message = String(error), code } = error ?? {};
    self.postMessage({ id, error: { name, message, code } });
  }
};
