// `fiber-funding/worker`: drive a FundingNode that runs in a dedicated Web
// Worker, with the same API as FundingNode (every call returns a promise;
// events arrive through onEvent). The node's work (signatures, IndexedDB,
// the peer link) stays off the page's main thread.

/** The longest message a follower reads (the module's `MAX_MESSAGE_CHARS`). */
const MAX_MESSAGE_CHARS = 4_194_304;

/** A FundingNode in a Web Worker. */
export class WorkerFundingNode {
  #worker;
  #calls = new Map();
  #nextId = 1;
  #listeners = new Set();
  #backlog = [];
  #closed = false;
  /** The one close under way: a second close() waits for it. */
  #closing = null;
  #unreadableAtOpen = [];
  /** Found after open (closed flows' records are read then), from `unreadable_records` events. */
  #unreadableLater = [];

  /**
   * Starts a worker, opens the node in it (the same options as
   * FundingNode.open) and resolves once it is open. Pass `worker` to use
   * one you made (e.g. with your bundler's worker syntax).
   */
  static async open(options, { worker } = {}) {
    const node = new WorkerFundingNode(
      worker ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "fiber-funding" }),
    );
    try {
      const opened = await node.#call("open", [options]);
      node.nodeId = opened.nodeId;
      node.persistenceGranted = opened.persistenceGranted;
      node.#unreadableAtOpen = opened.unreadableRecords;
      return node;
    } catch (error) {
      node.#worker.terminate();
      throw error;
    }
  }

  /**
   * As FundingNode.submitToOwner, from a page that runs its node in a
   * worker: a short-lived worker hands the signed tx to the tab that owns
   * `dbName` (its node may run in a worker too) and ends with the answer.
   */
  static async submitToOwner(dbName, params, timeoutMs, { worker } = {}) {
    const helper = new WorkerFundingNode(
      worker ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "fiber-funding-forward" }),
    );
    try {
      return await helper.#call("submitToOwner", [dbName, params, timeoutMs]);
    } finally {
      helper.#closed = true;
      helper.#worker.terminate();
    }
  }

  /**
   * As FundingNode.follow, without the module's wasm on the page: calls
   * `callback(event)` for each event of the node another tab owns on
   * `dbName` (its page or worker posts them on a BroadcastChannel).
   * Returns a function that stops.
   */
  static follow(dbName, callback) {
    if (typeof callback !== "function") {
      throw Object.assign(new Error("invalid callback: expected a function"), { code: "INVALID_PARAMS" });
    }
    const channel = new BroadcastChannel(`fiber-funding:${dbName ?? "fiber-funding"}`);
    channel.onmessage = ({ data }) => {
      // As the module's own follower: JSON text within its bound, else ignored
      // (any script of the origin can post here).
      if (typeof data !== "string" || data.length > MAX_MESSAGE_CHARS) return;
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return;
      }
      deliver(callback, event);
    };
    return () => channel.close();
  }

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => this.#receive(data);
    // A worker that fails to load, or throws where nothing catches it, is
    // not trusted further: every call fails, and the page opens a node again
    // (what was stored is what pendingFundings() then lists).
    worker.onerror = (event) => {
      event.preventDefault?.();
      this.#closed = true;
      this.#worker.terminate();
      this.#failAll(
        Object.assign(new Error(`the fiber-funding worker failed: ${event.message ?? "it could not start"}`), {
          code: "INTERNAL",
        }),
      );
    };
  }

  /** As FundingNode.unreadableRecords: found at open, then as they are found. */
  get unreadableRecords() {
    return [...this.#unreadableAtOpen, ...this.#unreadableLater];
  }

  pendingFundings() {
    return this.#call("pendingFundings", []);
  }
  openChannelWithExternalFunding(params) {
    return this.#call("openChannelWithExternalFunding", [params]);
  }
  submitSignedFundingTx(params) {
    return this.#call("submitSignedFundingTx", [params]);
  }
  getChannel(channelId) {
    return this.#call("getChannel", [channelId]);
  }
  listChannels() {
    return this.#call("listChannels", []);
  }
  abandonChannel(channelId) {
    return this.#call("abandonChannel", [channelId]);
  }
  cancelFundingTx(params) {
    return this.#call("cancelFundingTx", [params]);
  }
  submitSignedCancelTx(params) {
    return this.#call("submitSignedCancelTx", [params]);
  }
  shutdownChannel(params) {
    return this.#call("shutdownChannel", [params]);
  }
  forceCloseChannel(channelId) {
    return this.#call("forceCloseChannel", [channelId]);
  }
  exportBackup() {
    return this.#call("exportBackup", []);
  }
  importBackup(backup, options) {
    return this.#call("importBackup", [backup, options]);
  }

  /** As FundingNode.onEvent: the first listener also gets what happened since open. */
  onEvent(callback) {
    this.#listeners.add(callback);
    const backlog = this.#backlog;
    this.#backlog = null;
    for (const event of backlog ?? []) deliver(callback, event);
    return () => this.#listeners.delete(callback);
  }

  /** Closes the node (releasing the database to other tabs) and ends the worker. */
  close() {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close() {
    if (this.#closed) return;
    try {
      await this.#call("close", []);
    } finally {
      this.#closed = true;
      this.#worker.terminate();
      this.#failAll(Object.assign(new Error("the node was closed; open it again"), { code: "NODE_CLOSED" }));
    }
  }

  #call(method, args) {
    if (this.#closed) {
      return Promise.reject(Object.assign(new Error("the node was closed; open it again"), { code: "NODE_CLOSED" }));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#worker.postMessage({ id, method, args });
    });
  }

  #receive(data) {
    if (data && "event" in data) {
      if (data.event?.type === "unreadable_records") this.#unreadableLater.push(...data.event.records);
      if (this.#backlog) this.#backlog.push(data.event);
      else for (const listener of this.#listeners) deliver(listener, data.event);
      return;
    }
    const call = this.#calls.get(data?.id);
    if (!call) return;
    this.#calls.delete(data.id);
    if (data.error) {
      const error = new Error(data.error.message);
      error.name = data.error.name;
      if (data.error.code !== undefined) error.code = data.error.code;
      call.reject(error);
    } else {
      call.resolve(data.result);
    }
  }

  #failAll(error) {
    for (const { reject } of this.#calls.values()) reject(error);
    this.#calls.clear();
  }
}

/** Hands `event` to `listener`; a listener that throws is reported, and
 * keeps neither the other listeners nor the backlog from their events. */
function deliver(listener, event) {
  try {
    listener(event);
  } catch (error) {
    (globalThis.reportError ?? console.error)(error);
  }
}
