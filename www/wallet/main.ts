// The demo wallet: opens a Fiber channel funded from this wallet's cells,
// signs the funding transaction with JoyID by full-page redirect, and picks
// up where it left off after the reload the redirect causes.
import init, {
  channelReserve,
  FundingNode,
  type CellDep,
  type Channel,
  type FundingEvent,
  type FundingNodeOptions,
  type PendingFunding,
  type Backup,
  type ImportBackupResult,
  type Script,
  type Transaction,
} from "fiber-funding";
import { WorkerFundingNode } from "fiber-funding/worker";
import { Address } from "@ckb-ccc/core";
import { liveCells, outPointKey, RpcError } from "./ckb";
import {
  buildSigningUrl,
  forgetSentRequest,
  readRedirect,
  sentRequest,
  stripRedirectParams,
  walletInputIndexes,
  type Redirect,
  type SigningPurpose,
} from "./joyid";
import {
  describeClose,
  describeConfirmations,
  describeError,
  describeState,
  formatCkb,
  needsSignature,
  parseCkb,
  short,
  timeLeft,
  type ErrorTopic,
} from "./text";

// ---- Configuration (config.json next to the page, written by the launcher).

interface ContractRef {
  code_hash: string;
  hash_type: "type" | "data" | "data1" | "data2";
}

interface WalletConfig {
  ckbRpcUrl: string;
  peerUrl: string;
  peerPubkey: string;
  chainHash?: string;
  fundingLock?: ContractRef;
  commitmentLock?: ContractRef;
  fundingConfirmations?: number;
  externalFundingTimeoutSeconds?: number;
  signerUrl: string;
  /** `address` may be null: it is then derived from `lockScript` (prefix ckb on mainnet, else ckt). */
  wallet: { lockScript: Script; cellDeps: CellDep[]; address: string | null };
  fundingAmountCkb?: number | string;
  /** Run the channel node in a Web Worker (fiber-funding/worker) instead of on the page's thread. */
  worker?: boolean;
}

/** The node on this page's thread, or in a Web Worker: the same API. */
type ChannelNode = FundingNode | WorkerFundingNode;

function openNode(options: FundingNodeOptions): Promise<ChannelNode> {
  return config.worker ? WorkerFundingNode.open(options) : FundingNode.open(options);
}

async function loadConfig(): Promise<WalletConfig> {
  const response = await fetch(new URL("config.json", location.href), { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = (await response.json()) as WalletConfig;
  const missing = [
    ["ckbRpcUrl", config.ckbRpcUrl],
    ["peerUrl", config.peerUrl],
    ["peerPubkey", config.peerPubkey],
    ["signerUrl", config.signerUrl],
    ["wallet.lockScript", config.wallet?.lockScript],
  ].filter(([, value]) => !value);
  if (missing.length > 0) throw new Error(`config.json lacks ${missing.map(([name]) => name).join(", ")}`);
  config.wallet.cellDeps ??= [];
  config.wallet.address ||= addressOf(config.wallet.lockScript, config.chainHash);
  return config;
}

const MAINNET_GENESIS = "0x92b197aa1fba0f63633922c61c92375c9c074a93e85963554f5499fe1450d0e5";

/** The CKB full address of a lock script. */
function addressOf(lock: Script, chainHash: string | undefined): string {
  const prefix = chainHash?.toLowerCase() === MAINNET_GENESIS ? "ckb" : "ckt";
  return Address.from({
    prefix,
    script: { codeHash: lock.code_hash, hashType: lock.hash_type as "type" | "data" | "data1" | "data2", args: lock.args },
  }).toString();
}

function nodeOptions(config: WalletConfig, waitForLock: boolean): FundingNodeOptions {
  const options: FundingNodeOptions = { ckbRpcUrl: config.ckbRpcUrl, peerUrl: config.peerUrl, peerPubkey: config.peerPubkey };
  if (config.chainHash) options.chainHash = config.chainHash;
  if (config.fundingLock) options.fundingLock = config.fundingLock;
  if (config.commitmentLock) options.commitmentLock = config.commitmentLock;
  if (config.fundingConfirmations !== undefined) options.fundingConfirmations = config.fundingConfirmations;
  if (config.externalFundingTimeoutSeconds !== undefined) options.externalFundingTimeoutSeconds = config.externalFundingTimeoutSeconds;
  if (waitForLock) options.waitForLock = true;
  return options;
}

// ---- The page.

function byTestId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!element) throw new Error(`missing element ${id}`);
  return element;
}

const ui = {
  banner: byTestId("readonly-banner"),
  address: byTestId("wallet-address"),
  balance: byTestId("wallet-balance"),
  available: byTestId("wallet-available"),
  held: byTestId("wallet-held"),
  reserveNote: byTestId("reserve-note"),
  peer: byTestId("peer-status"),
  chain: byTestId("chain-status"),
  form: byTestId<HTMLFormElement>("open-form"),
  amount: byTestId<HTMLInputElement>("amount-input"),
  openButton: byTestId<HTMLButtonElement>("open-button"),
  backupButton: byTestId<HTMLButtonElement>("backup-button"),
  restoreInput: byTestId<HTMLInputElement>("restore-input"),
  status: byTestId("status"),
  error: byTestId("error"),
  restored: byTestId("restored"),
  pendingList: byTestId("pending-list"),
  channelsBody: byTestId("channels-body"),
  channelsEmpty: byTestId("channels-empty"),
  activity: byTestId("activity-log"),
};

let config: WalletConfig;
let node: ChannelNode | null = null;
let mode: "starting" | "owner" | "follower" = "starting";
/** The channel the status line follows (the one being opened or signed). */
let activeChannelId: string | null = null;
let errorTopic: ErrorTopic | null = null;
/** Keys of the wallet's live cells, from the last balance refresh. */
let walletOutPoints: Set<string> | null = null;
/** The wallet's live cells (key, capacity), from the last balance refresh. */
let walletCells: { key: string; capacity: bigint }[] | null = null;
/** The funding tx's confirmations so far, by channel (from `funding_confirmations`). */
const confirmations = new Map<string, { confirmations: number; required: number }>();
let pending: PendingFunding[] = [];
/** Channels as seen through another tab's events (read-only mode). */
const followed = new Map<string, Row>();

function setStatus(text: string, channelId: string | null = null, state: string | null = null): void {
  ui.status.textContent = text;
  if (channelId) ui.status.dataset.channelId = channelId;
  else delete ui.status.dataset.channelId;
  if (state) ui.status.dataset.state = state;
  else delete ui.status.dataset.state;
}

/**
 * Shows an error in words. A `background` one (the peer or chain being down,
 * which the status fields already show) does not replace a different error
 * the user has not seen the end of.
 */
function showError(text: string, code: string, topic: ErrorTopic, background = false): void {
  if (background && errorTopic !== null && errorTopic !== topic) return;
  errorTopic = topic;
  ui.error.textContent = text;
  ui.error.dataset.code = code;
  ui.error.dataset.topic = topic;
  ui.error.hidden = false;
}

function clearError(topic?: ErrorTopic): void {
  if (topic !== undefined && errorTopic !== topic) return;
  errorTopic = null;
  ui.error.textContent = "";
  delete ui.error.dataset.code;
  delete ui.error.dataset.topic;
  ui.error.hidden = true;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function reportError(error: unknown): void {
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const { text, topic } = describeError(code, message);
  showError(text, code ?? "ERROR", topic);
  log(`Error${code ? ` ${code}` : ""}: ${message}`);
}

/** Adds a line to the activity log; `channelId` tags it, so a channel's
 * lines follow it when its temporary id gives way to its final one. */
function log(text: string, channelId?: string): void {
  const now = new Date();
  const time = document.createElement("time");
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString("en-GB");
  // The same line again (a retry): count it instead of repeating it.
  const last = ui.activity.firstElementChild as HTMLElement | null;
  if (last && last.dataset.text === text) {
    const count = Number(last.dataset.count ?? "1") + 1;
    last.dataset.count = String(count);
    last.replaceChildren(time, `${text} (×${count})`);
    return;
  }
  const item = document.createElement("li");
  item.dataset.text = text;
  if (channelId) item.dataset.channelId = channelId;
  item.append(time, text);
  ui.activity.prepend(item);
  while (ui.activity.children.length > 60) ui.activity.lastElementChild?.remove();
}

/** The lines of a channel logged under its temporary id now name its final id. */
function renameInLog(temporaryId: string, channelId: string): void {
  for (const item of ui.activity.querySelectorAll<HTMLElement>(`li[data-channel-id="${temporaryId}"]`)) {
    item.dataset.channelId = channelId;
    const text = (item.dataset.text ?? "").split(short(temporaryId)).join(short(channelId));
    item.dataset.text = text;
    const count = Number(item.dataset.count ?? "1");
    item.replaceChildren(item.querySelector("time") ?? "", count > 1 ? `${text} (×${count})` : text);
  }
}

function setField(element: HTMLElement, text: string, status: "ok" | "warn" | "bad" | "unknown"): void {
  element.textContent = text;
  element.dataset.status = status;
}

const setPeer = (text: string, status: "ok" | "warn" | "bad" | "unknown") => setField(ui.peer, text, status);
const setChain = (text: string, status: "ok" | "warn" | "bad" | "unknown") => setField(ui.chain, text, status);

function setControlsEnabled(enabled: boolean): void {
  ui.openButton.disabled = !enabled;
  ui.amount.disabled = !enabled;
  ui.backupButton.disabled = !enabled;
  ui.restoreInput.disabled = !enabled;
}

// ---- Balance (CKB's indexer, every few seconds).

/**
 * What a new channel can use: the wallet's live cells less those pending
 * fundings hold (their `reserved_cells`), which no other open spends.
 */
function renderAvailable(): void {
  if (walletCells === null) return;
  const held = new Set(pending.flatMap((flow) => flow.reserved_cells.map(outPointKey)));
  let available = 0n;
  let heldCkb = 0n;
  for (const cell of walletCells) {
    if (held.has(cell.key)) heldCkb += cell.capacity;
    else available += cell.capacity;
  }
  ui.available.textContent = formatCkb(available);
  ui.available.dataset.shannons = available.toString();
  const holders = pending.filter((flow) => flow.reserved_cells.some((c) => walletOutPoints?.has(outPointKey(c))));
  ui.held.textContent =
    heldCkb > 0n
      ? `(${formatCkb(heldCkb)} held by the funding in progress of ${holders.map((flow) => `channel ${short(flow.channel_id)}`).join(", ")})`
      : "";
  ui.held.dataset.shannons = heldCkb.toString();
}

async function refreshBalance(): Promise<void> {
  try {
    const cells = await liveCells(config.ckbRpcUrl, config.wallet.lockScript);
    walletOutPoints = new Set(cells.map((cell) => outPointKey(cell.out_point)));
    walletCells = cells.map((cell) => ({ key: outPointKey(cell.out_point), capacity: BigInt(cell.output.capacity) }));
    const total = cells.reduce((sum, cell) => sum + BigInt(cell.output.capacity), 0n);
    ui.balance.textContent = `${formatCkb(total)} (${cells.length} cell${cells.length === 1 ? "" : "s"})`;
    ui.balance.dataset.shannons = total.toString();
    renderAvailable();
    if (ui.chain.dataset.status !== "ok") log("The CKB node answers.");
    setChain(`reachable (${config.ckbRpcUrl})`, "ok");
    clearError("chain");
  } catch (error) {
    const message = (error as Error).message;
    const unreachable = !(error instanceof RpcError) || error.unreachable;
    const code = unreachable ? "CHAIN_UNREACHABLE" : "CHAIN_REJECTED";
    ui.balance.textContent = unreachable ? "unknown: CKB node unreachable" : "unknown: the CKB node refused the query";
    delete ui.balance.dataset.shannons;
    walletCells = null;
    ui.available.textContent = "unknown";
    ui.held.textContent = "";
    delete ui.available.dataset.shannons;
    if (ui.chain.dataset.status !== "bad") log(`CKB node ${unreachable ? "unreachable" : "error"}: ${message}`);
    setChain(`${unreachable ? "unreachable" : "error"}: ${message}`, "bad");
    showError(describeError(code, message).text, code, "chain", true);
  }
}

// ---- Channels table.

interface Row {
  channel_id: string;
  state: string;
  flags: string[];
  amount: string | null;
  /** What this side gets back at close, once funded. */
  balance: string | null;
  funding_tx_hash: string | null;
  close_reason: string | null;
  close: Channel["close"];
  /** Whether the user's signed funding tx was submitted (null: not known, as when following another tab). */
  signed_submitted: boolean | null;
  /** Restored from a backup before its close was agreed: closes only with force. */
  restored_from_backup: boolean;
}

function rowFromChannel(channel: Channel): Row {
  return {
    channel_id: channel.channel_id,
    state: channel.state,
    flags: channel.flags,
    amount: channel.local_funding_amount,
    balance: channel.local_balance,
    funding_tx_hash: channel.funding_tx_hash,
    close_reason: channel.close_reason,
    close: channel.close,
    signed_submitted: channel.signed_submitted,
    restored_from_backup: channel.restored_from_backup,
  };
}

/** Where a channel stands, in words; with its confirmations while they accrue. */
function statusWords(row: Pick<Row, "channel_id" | "state" | "flags" | "close_reason" | "signed_submitted">): string {
  const words = describeState(row.state, row.flags, row.signed_submitted ?? undefined, row.close_reason);
  const seen = confirmations.get(row.channel_id);
  if (row.state === "AwaitingChannelReady" && seen) return `${words} (${describeConfirmations(seen.confirmations, seen.required)})`;
  return words;
}

/** The status cell: the user's words, Fiber's state and flags one click away. */
function statusCell(row: Row): HTMLTableCellElement {
  const td = document.createElement("td");
  td.dataset.testid = "channel-status";
  const words = document.createElement("span");
  words.textContent = statusWords(row);
  const details = document.createElement("details");
  details.className = "fiber-state";
  details.dataset.testid = "fiber-state";
  const summary = document.createElement("summary");
  summary.textContent = "details";
  const code = document.createElement("code");
  code.textContent = row.flags.length ? `${row.state} (${row.flags.join(", ")})` : row.state;
  details.append(summary, "Fiber state: ", code);
  td.append(words, details);
  return td;
}

/** The close actions a row offers: a funded channel can always be force-closed. */
function closeActions(row: Row): HTMLTableCellElement {
  const td = document.createElement("td");
  const closing = row.state === "ShuttingDown";
  const forceClosing = row.flags.includes("WAITING_COMMITMENT_CONFIRMATION");
  const button = (label: string, testid: string, title: string, action: () => Promise<void>) => {
    const element = document.createElement("button");
    element.type = "button";
    element.className = "secondary";
    element.textContent = label;
    element.title = title;
    element.dataset.testid = testid;
    element.dataset.channelId = row.channel_id;
    element.setAttribute("aria-label", `${label} channel ${short(row.channel_id)}`);
    element.addEventListener("click", () => void action());
    return element;
  };
  if (mode !== "follower" && row.balance !== null && (row.state === "ChannelReady" || (closing && !forceClosing))) {
    // A channel restored from a backup closes only with force (docs/api.md, Backup).
    if (row.state === "ChannelReady" && !row.restored_from_backup) {
      td.append(
        button("Close", "close-button", "Close with the counterparty: your balance comes back at once, less a small fee", () =>
          closeChannel(row.channel_id, false),
        ),
      );
    }
    td.append(
      button("Force close", "force-close-button", "Close without the counterparty: your balance comes back after the delay (an epoch, about 4 hours)", () =>
        closeChannel(row.channel_id, true),
      ),
    );
  }
  if (!td.childElementCount) td.textContent = "—";
  return td;
}

function cell(content: string, title?: string, code = false): HTMLTableCellElement {
  const td = document.createElement("td");
  if (code) {
    const element = document.createElement("code");
    element.textContent = content;
    td.append(element);
  } else {
    td.textContent = content;
  }
  if (title) td.title = title;
  return td;
}

function renderRows(rows: Row[]): void {
  ui.channelsBody.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "channel-row";
      tr.dataset.channelId = row.channel_id;
      tr.dataset.state = row.state;
      tr.dataset.flags = row.flags.join(" ");
      const closeStatus = cell(describeClose(row.close) ?? row.close_reason ?? "—");
      closeStatus.dataset.testid = "close-status";
      const fundingTx = cell(short(row.funding_tx_hash), row.funding_tx_hash ?? undefined, true);
      fundingTx.dataset.testid = "funding-tx";
      tr.append(
        cell(short(row.channel_id), row.channel_id, true),
        statusCell(row),
        cell(row.amount ? formatCkb(row.amount) : "—"),
        cell(row.balance ? formatCkb(row.balance) : "—"),
        fundingTx,
        closeStatus,
        closeActions(row),
      );
      return tr;
    }),
  );
  ui.channelsEmpty.hidden = rows.length > 0;
}

// ---- Fundings in progress.

function renderPending(): void {
  ui.pendingList.replaceChildren(
    ...pending.map((flow) => {
      const item = document.createElement("li");
      item.dataset.testid = "pending-item";
      item.dataset.channelId = flow.channel_id;
      item.dataset.state = flow.state;
      const text = document.createElement("span");
      text.textContent = `Channel ${short(flow.channel_id)}: ${statusWords({ ...flow, close_reason: null })}`;
      text.title = flow.channel_id;
      item.append(text);
      if (flow.deadline_ms !== null && !flow.signed_submitted) {
        const deadline = document.createElement("span");
        deadline.className = "hint";
        deadline.dataset.deadline = String(flow.deadline_ms);
        deadline.textContent = `expires in ${timeLeft(flow.deadline_ms)}`;
        item.append(deadline);
      }
      if (mode === "owner" && flow.unsigned_funding_tx && needsSignature(flow.state, flow.flags, flow.signed_submitted)) {
        const actions = document.createElement("span");
        actions.className = "actions";
        const sign = document.createElement("button");
        sign.type = "button";
        sign.textContent = "Sign with JoyID";
        sign.dataset.testid = "sign-button";
        sign.dataset.channelId = flow.channel_id;
        sign.setAttribute("aria-label", `Sign the funding transaction of channel ${short(flow.channel_id)} with JoyID`);
        sign.addEventListener("click", () => void startSigning(flow.channel_id, sign));
        const abandon = document.createElement("button");
        abandon.type = "button";
        abandon.className = "secondary";
        abandon.textContent = "Abandon";
        abandon.dataset.testid = "abandon-button";
        abandon.dataset.channelId = flow.channel_id;
        abandon.setAttribute("aria-label", `Abandon channel ${short(flow.channel_id)}`);
        abandon.addEventListener("click", () => void abandonChannel(flow.channel_id));
        actions.append(sign, abandon);
        item.append(actions);
      } else if (mode === "owner" && mayBeCancelled(flow)) {
        // Past the point of abandoning: the way back out is a tx that
        // spends the flow's inputs back to this wallet.
        const actions = document.createElement("span");
        actions.className = "actions";
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.className = "secondary";
        cancel.textContent = "Cancel funding";
        cancel.title = "Sign a transaction that returns this funding's cells to your wallet, so the channel can never be funded";
        cancel.dataset.testid = "cancel-button";
        cancel.dataset.channelId = flow.channel_id;
        cancel.setAttribute("aria-label", `Cancel the funding of channel ${short(flow.channel_id)}`);
        cancel.addEventListener("click", () => void startCancel(flow.channel_id, cancel));
        actions.append(cancel);
        item.append(actions);
      }
      return item;
    }),
  );
}

function tickDeadlines(): void {
  for (const element of ui.pendingList.querySelectorAll<HTMLElement>("[data-deadline]")) {
    element.textContent = `expires in ${timeLeft(Number(element.dataset.deadline))}`;
  }
}

let refreshTimer: number | undefined;
function scheduleRefresh(): void {
  if (mode !== "owner") return;
  clearTimeout(refreshTimer);
  refreshTimer = window.setTimeout(() => void refresh(), 150);
}

async function refresh(): Promise<void> {
  if (!node || mode !== "owner") return;
  try {
    const [channels, flows] = await Promise.all([node.listChannels(), node.pendingFundings()]);
    channels.sort((a, b) => b.created_at_ms - a.created_at_ms);
    renderRows(channels.map(rowFromChannel));
    pending = flows;
    renderPending();
    renderAvailable();
    updateRestored();
  } catch (error) {
    reportError(error);
  }
}

/** Ids of the flows the restored-flows line names (as the page loaded). */
let restoredIds: string[] = [];

/**
 * The restored-flows line describes the page load; it says nothing once it
 * would contradict the list below it: a new funding after "none was in
 * progress", or flows it names that have since moved on.
 */
function updateRestored(): void {
  const stale =
    restoredIds.length === 0
      ? pending.length > 0
      : restoredIds.some((id) => !pending.some((flow) => flow.channel_id === id));
  if (stale) ui.restored.textContent = "";
}

function describeRestored(flows: PendingFunding[]): string {
  if (flows.length === 0) return "When this page loaded, no funding was in progress.";
  const parts = flows.map(
    (flow) => `channel ${short(flow.channel_id)} ${describeState(flow.state, flow.flags, flow.signed_submitted)}`,
  );
  return `When this page loaded: restored ${flows.length} pending funding${flows.length === 1 ? "" : "s"}: ${parts.join("; ")}.`;
}

// ---- Events.

function isActive(...ids: (string | null | undefined)[]): boolean {
  return activeChannelId !== null && ids.includes(activeChannelId);
}

/** The status line for the channel being followed. */
function showProgress(channelId: string, state: string, flags: readonly string[], closeReason: string | null, signedSubmitted?: boolean): void {
  const what = describeState(state, flags, signedSubmitted, closeReason);
  const name = `Channel ${short(channelId)}`;
  let text: string;
  switch (what) {
    case "waiting for your signature":
      text =
        mode === "follower"
          ? `${name} is waiting for your signature in the other tab.`
          : `${name} is waiting for your signature: press “Sign with JoyID”.`;
      break;
    case "exchanging signatures":
      text = `${name}: exchanging signatures with the counterparty…`;
      break;
    case "waiting for the funding transaction to confirm": {
      const seen = confirmations.get(channelId);
      const required = seen?.required ?? config.fundingConfirmations ?? 3;
      text = seen
        ? `${name}: funding transaction ${describeConfirmations(seen.confirmations, required)}…`
        : `${name}: funding transaction sent, waiting for ${required} confirmation${required === 1 ? "" : "s"}…`;
      break;
    }
    case "ready":
      // Its keys are in this site's storage only until a backup is saved.
      text = `${name} is ready. Save a backup now: clearing this site's data would lose this channel's keys, and its money with them.`;
      break;
    default:
      text = `${name}: ${what}.`;
  }
  // A funding the user cancelled ending is what they asked for, not a failure.
  if (state === "Closed" && cancelledByUser().includes(channelId)) {
    setStatus(`${name}: cancelled, its cells are back in this wallet.`, channelId, state);
    clearError("funding");
    return;
  }
  setStatus(text, channelId, state);
  // A close before funding is a failure to show; a close after it is the user's money coming back.
  if (state === "Closed" && (flags.includes("FUNDING_ABORTED") || flags.includes("ABANDONED"))) {
    showError(describeError("CHANNEL_CLOSED", closeReason ?? "closed before funding").text, "CHANNEL_CLOSED", "funding");
  } else if (state === "Closed" || state === "ShuttingDown") {
    clearError("funding");
  }
}

function onEvent(event: FundingEvent): void {
  switch (event.type) {
    case "state_changed": {
      // A channel has one name: once its final id is known, earlier lines
      // under its temporary id are shown under the final one too.
      if (event.temporary_channel_id !== event.channel_id) renameInLog(event.temporary_channel_id, event.channel_id);
      log(`Channel ${short(event.channel_id)}: ${describeState(event.state, event.flags, undefined, event.close_reason)}.`, event.channel_id);
      // Ready: the funding tx spent the wallet's cells and returned the change.
      if (event.state === "ChannelReady" || event.state === "Closed") void refreshBalance();
      if (mode === "follower") {
        if (event.temporary_channel_id !== event.channel_id) followed.delete(event.temporary_channel_id);
        const known = followed.get(event.channel_id);
        followed.set(event.channel_id, {
          channel_id: event.channel_id,
          state: event.state,
          flags: event.flags,
          amount: known?.amount ?? null,
          balance: known?.balance ?? null,
          funding_tx_hash: known?.funding_tx_hash ?? null,
          close_reason: event.close_reason,
          close: known?.close ?? null,
          signed_submitted: known?.signed_submitted ?? null,
          restored_from_backup: known?.restored_from_backup ?? false,
        });
        renderRows([...followed.values()]);
      }
      if (mode === "follower" || isActive(event.channel_id, event.temporary_channel_id)) {
        activeChannelId = event.channel_id;
        showProgress(event.channel_id, event.state, event.flags, event.close_reason);
      }
      scheduleRefresh();
      break;
    }
    case "peer_connected":
      setPeer("connected", "ok");
      clearError("peer");
      log("Connected to the counterparty.");
      break;
    case "peer_disconnected":
      setPeer(`disconnected (${event.reason}); reconnecting…`, "warn");
      log(`Counterparty disconnected: ${event.reason}`);
      break;
    case "peer_unavailable": {
      setPeer(`unreachable: ${event.reason}`, "bad");
      const { text } = describeError(event.code, event.reason);
      showError(text, event.code, "peer", true);
      log(`Counterparty unreachable (${event.code}): ${event.reason}`);
      break;
    }
    case "chain_error":
      setChain(`unreachable: ${event.reason}`, "bad");
      showError(describeError("CHAIN_UNREACHABLE", event.reason).text, "CHAIN_UNREACHABLE", "chain", true);
      log(`CKB node error: ${event.reason}`);
      break;
    case "commitment_on_chain": {
      const { number, index, length } = event.claimable_at_epoch;
      log(
        `Channel ${short(event.channel_id)}: ${event.by === "us" ? "our" : "the counterparty's"} commitment ${short(event.tx_hash)} is on chain; ` +
          `your share is withdrawn from epoch ${index === 0 ? number : `${number} ${index}/${length}`}.`,
      );
      scheduleRefresh();
      break;
    }
    case "cancel_tx_rejected":
      showError(
        `The CKB node refused the cancel transaction: ${event.reason}. The funding transaction got there first, so the channel is being funded instead.`,
        "CANCEL_TX_REJECTED",
        "funding",
      );
      log(`Cancel transaction of ${short(event.channel_id)} refused: ${event.reason}`, event.channel_id);
      break;
    case "funding_confirmed_after_abort":
      log(`Channel ${short(event.channel_id)}: its funding transaction ${short(event.funding_tx_hash)} confirmed after the flow was aborted; the channel goes on.`, event.channel_id);
      scheduleRefresh();
      break;
    case "abort_settled":
      log(`Channel ${short(event.channel_id)}: its funding can no longer confirm; its cells are this wallet's again.`, event.channel_id);
      scheduleRefresh();
      break;
    case "close_tx_rejected":
      log(`A closing transaction of ${short(event.channel_id)} was refused by the CKB node (it is sent again): ${event.reason}`);
      break;
    case "funding_confirmations": {
      confirmations.set(event.channel_id, { confirmations: event.confirmations, required: event.required });
      log(`Channel ${short(event.channel_id)}: funding transaction ${describeConfirmations(event.confirmations, event.required)}.`, event.channel_id);
      if (mode === "follower" || isActive(event.channel_id)) {
        showProgress(event.channel_id, "AwaitingChannelReady", [], null, true);
      }
      scheduleRefresh();
      break;
    }
    case "funding_tx_rejected":
      showError(`The funding transaction was rejected: ${event.reason}`, "FUNDING_TX_REJECTED", "funding");
      log(`Funding transaction of ${short(event.channel_id)} rejected: ${event.reason}`);
      break;
    case "peer_message_rejected":
      log(`Ignored a message from the counterparty (${event.message}): ${event.reason}`);
      break;
    case "storage_error":
      showError(`The browser's storage failed: ${event.reason}`, "STORAGE_ERROR", "storage");
      log(`Storage error: ${event.reason}`);
      break;
    case "unreadable_records":
      // Closed flows' records are read just after open: one found unreadable then.
      log(
        `${event.records.length} stored record${event.records.length === 1 ? "" : "s"} could not be read (kept): ${event.records
          .map((r) => `${short(r.channel_id)} (${r.reason})`)
          .join(", ")}; ${node?.unreadableRecords.length ?? 0} unreadable in all.`,
      );
      break;
  }
}

// ---- Actions.

async function openChannel(): Promise<void> {
  if (!node) return;
  const shannons = parseCkb(ui.amount.value);
  if (shannons === null) {
    showError("Enter an amount in CKB, for example 1000 (at most 8 decimals).", "INVALID_AMOUNT", "funding");
    ui.amount.setAttribute("aria-invalid", "true");
    ui.amount.focus();
    return;
  }
  ui.amount.removeAttribute("aria-invalid");
  clearError();
  setControlsEnabled(false);
  setStatus(`Opening a channel of ${formatCkb(shannons)}: reaching the counterparty and building the funding transaction…`);
  log(`Opening a channel of ${formatCkb(shannons)}.`);
  try {
    const lock = config.wallet.lockScript;
    const result = await node.openChannelWithExternalFunding({
      pubkey: config.peerPubkey,
      funding_amount: "0x" + shannons.toString(16),
      shutdown_script: lock,
      funding_lock_script: lock,
      funding_lock_script_cell_deps: config.wallet.cellDeps,
    });
    activeChannelId = result.channel_id;
    log(`Channel ${short(result.channel_id)} opened; its funding transaction awaits your signature.`, result.channel_id);
    await refresh();
    const flow = pending.find((p) => p.channel_id === result.channel_id);
    showProgress(result.channel_id, flow?.state ?? "NegotiatingFunding", flow?.flags ?? ["AWAITING_EXTERNAL_FUNDING"], null, false);
    ui.pendingList.querySelector<HTMLButtonElement>(`[data-testid="sign-button"][data-channel-id="${result.channel_id}"]`)?.focus();
  } catch (error) {
    reportError(error);
    setStatus("The channel was not opened.");
  } finally {
    setControlsEnabled(mode === "owner");
  }
}

async function startSigning(channelId: string, button: HTMLButtonElement): Promise<void> {
  if (!node) return;
  button.disabled = true;
  try {
    const flows = await node.pendingFundings();
    const flow = flows.find((p) => p.channel_id === channelId);
    if (!flow || !flow.unsigned_funding_tx || !needsSignature(flow.state, flow.flags, flow.signed_submitted)) {
      showError(`Channel ${short(channelId)} no longer waits for a signature.`, "NOT_WAITING", "funding");
      await refresh();
      return;
    }
    await sendToSigner(channelId, flow.unsigned_funding_tx, "funding", flow.state);
  } catch (error) {
    reportError(error);
    button.disabled = false;
  }
}

/** The full-page redirect to JoyID to sign `tx`, remembered for the way back. */
async function sendToSigner(channelId: string, tx: Transaction, purpose: SigningPurpose, state: string | null): Promise<void> {
  // The wallet's input positions: from its live cells when the indexer answers.
  let outPoints = walletOutPoints;
  try {
    const cells = await liveCells(config.ckbRpcUrl, config.wallet.lockScript);
    outPoints = new Set(cells.map((c) => outPointKey(c.out_point)));
  } catch {
    // The tx's own layout decides (see walletInputIndexes).
  }
  const witnessIndexes = walletInputIndexes(tx, outPoints, outPointKey);
  const url = buildSigningUrl({
    signerUrl: config.signerUrl,
    channelId,
    purpose,
    tx,
    signerAddress: config.wallet.address ?? "",
    witnessIndexes,
  });
  activeChannelId = channelId;
  const what = purpose === "cancel" ? "the cancel transaction" : "the funding transaction";
  setStatus(`Opening JoyID to sign ${what} of channel ${short(channelId)}…`, channelId, state);
  log(`Sent to JoyID to sign ${what} of channel ${short(channelId)} (inputs ${witnessIndexes.join(", ")}).`);
  location.assign(url);
}

/** sessionStorage key of the channels whose funding the user cancelled (a redirect away and back included). */
const CANCELLED_KEY = "fiber-demo-wallet:cancelled";

function cancelledByUser(): string[] {
  try {
    const ids: unknown = JSON.parse(sessionStorage.getItem(CANCELLED_KEY) ?? "[]");
    return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [];
  } catch {
    return [];
  }
}

function rememberCancelled(channelId: string): void {
  sessionStorage.setItem(CANCELLED_KEY, JSON.stringify([...cancelledByUser().filter((id) => id !== channelId), channelId].slice(-20)));
}

/** Whether the flow is past abandoning but not funded: a cancel tx is its way out. */
function mayBeCancelled(flow: PendingFunding): boolean {
  return flow.signed_submitted && flow.state !== "ChannelReady" && flow.state !== "Closed";
}

/**
 * "Cancel funding": where the module still can, it ends the flow without a
 * tx (the counterparty never got the wallet's signature); past that point it
 * builds the tx that spends the flow's inputs back to this wallet, which
 * goes to JoyID to be signed. The module refuses both (NOT_CANCELLABLE) once
 * the funding tx is confirmed.
 */
async function startCancel(channelId: string, button: HTMLButtonElement): Promise<void> {
  if (!node) return;
  const question =
    `Cancel the funding of channel ${short(channelId)}? If your signature has not reached the counterparty, the channel just ends. ` +
    `Otherwise you sign a transaction that returns its cells to this wallet, less a small fee; once it confirms, the channel can never be funded ` +
    `(should the funding transaction confirm first, the channel opens instead).`;
  if (!confirm(question)) return;
  button.disabled = true;
  rememberCancelled(channelId);
  try {
    try {
      await node.abandonChannel(channelId);
      log(`Channel ${short(channelId)} cancelled: your signature never reached the counterparty, so no transaction was needed.`, channelId);
      setStatus(`Channel ${short(channelId)} cancelled; its cells are free again.`, channelId, "Closed");
      await refresh();
      return;
    } catch (error) {
      if (codeOf(error) !== "TOO_LATE_TO_ABANDON") throw error;
    }
    const { unsigned_cancel_tx } = await node.cancelFundingTx({ channel_id: channelId });
    await sendToSigner(channelId, unsigned_cancel_tx, "cancel", null);
  } catch (error) {
    reportError(error);
    button.disabled = false;
  }
}

async function closeChannel(channelId: string, force: boolean): Promise<void> {
  if (!node) return;
  const question = force
    ? `Force-close channel ${short(channelId)}? Your balance comes back after the delay (an epoch, about 4 hours), without the counterparty.`
    : `Close channel ${short(channelId)} with the counterparty? Your balance comes back to this wallet, less a small fee.`;
  if (!confirm(question)) return;
  try {
    await node.shutdownChannel({ channel_id: channelId, force });
    log(force ? `Channel ${short(channelId)}: commitment broadcast.` : `Channel ${short(channelId)}: shutdown sent to the counterparty.`);
  } catch (error) {
    reportError(error);
  }
  await refresh();
}

async function abandonChannel(channelId: string): Promise<void> {
  if (!node) return;
  if (!confirm(`Abandon channel ${short(channelId)}? Its funding will not be signed.`)) return;
  try {
    await node.abandonChannel(channelId);
    log(`Channel ${short(channelId)} abandoned.`);
    setStatus(`Channel ${short(channelId)} abandoned.`, channelId, "Closed");
  } catch (error) {
    reportError(error);
  }
  await refresh();
}

/** Back from JoyID with a signed tx: check the nonce, submit, tidy the URL. */
async function submitSigned(redirect: Extract<Redirect, { kind: "signed" }>): Promise<void> {
  if (!node) return;
  const sent = sentRequest();
  if (!sent || sent.state !== redirect.state) {
    showError(
      "Refused the signed transaction: it does not answer the signing request this tab sent (its state does not match). Nothing was submitted.",
      "STATE_MISMATCH",
      "signature",
    );
    setStatus("The signed transaction was refused.");
    log("Refused a JoyID response whose state does not match this tab's request.");
    stripRedirectParams();
    return;
  }
  activeChannelId = sent.channelId;
  if (sent.purpose === "cancel") {
    await submitSignedCancel(sent.channelId, redirect);
    return;
  }
  setStatus(`Submitting the signed funding transaction of channel ${short(sent.channelId)}…`, sent.channelId);
  try {
    const result = await node.submitSignedFundingTx({
      channel_id: sent.channelId,
      signed_funding_tx: redirect.tx as unknown as Record<string, unknown>,
    });
    forgetSentRequest();
    log(`Signed funding transaction ${short(result.funding_tx_hash)} accepted.`);
    ui.status.dataset.submit = result.status;
    const channel = await node.getChannel(sent.channelId);
    if (result.status === "queued") {
      // Stored; the module finishes the exchange by itself once the counterparty is back.
      setStatus(
        `Signed funding transaction saved (${short(result.funding_tx_hash)}). The counterparty is offline: the channel opens by itself when it is back, before the deadline. You can close this page meanwhile.`,
        sent.channelId,
        channel?.state ?? null,
      );
    } else if (channel && channel.state !== "SigningCommitment" && channel.state !== "NegotiatingFunding") {
      showProgress(channel.channel_id, channel.state, channel.flags, channel.close_reason, true);
    } else {
      setStatus(
        `Signed funding transaction accepted (${short(result.funding_tx_hash)}); exchanging signatures with the counterparty…`,
        sent.channelId,
        channel?.state ?? null,
      );
    }
  } catch (error) {
    reportError(error);
    setStatus(`The signed funding transaction of channel ${short(sent.channelId)} was not accepted.`, sent.channelId);
    const code = codeOf(error);
    // A refused signature can be retried from the flow's button; keep nothing that could be replayed.
    if (code !== "STORAGE_UNAVAILABLE" && code !== "NODE_CLOSED") forgetSentRequest();
  } finally {
    stripRedirectParams();
    await refresh();
  }
}

/** Back from JoyID with the signed cancel tx: the module checks and sends it. */
async function submitSignedCancel(channelId: string, redirect: Extract<Redirect, { kind: "signed" }>): Promise<void> {
  if (!node) return;
  setStatus(`Sending the signed cancel transaction of channel ${short(channelId)}…`, channelId);
  try {
    const result = await node.submitSignedCancelTx({
      channel_id: channelId,
      signed_cancel_tx: redirect.tx as unknown as Record<string, unknown>,
    });
    forgetSentRequest();
    ui.status.dataset.cancel = "sent";
    log(`Cancel transaction ${short(result.cancel_tx_hash)} sent for channel ${short(channelId)}.`, channelId);
    setStatus(
      `Cancel transaction sent (${short(result.cancel_tx_hash)}): the channel ends once it confirms, and its cells are back in this wallet.`,
      channelId,
    );
  } catch (error) {
    reportError(error);
    setStatus(`The signed cancel transaction of channel ${short(channelId)} was not sent.`, channelId);
    const code = codeOf(error);
    if (code !== "STORAGE_UNAVAILABLE" && code !== "NODE_CLOSED") forgetSentRequest();
  } finally {
    stripRedirectParams();
    await refresh();
  }
}

/** A JoyID answer that carries no signature: say so, tidy the URL. */
function handleUnsignedRedirect(redirect: Exclude<Redirect, { kind: "signed" }>): void {
  const sent = sentRequest();
  if (redirect.kind === "rejected") {
    const byUser = /reject|cancel/i.test(redirect.message);
    const text = byUser
      ? "You rejected the signature. The channel still waits for it until its deadline: sign again or abandon it."
      : `JoyID did not sign: ${redirect.message}. The channel still waits for your signature.`;
    showError(text, byUser ? "USER_REJECTED" : "JOYID_ERROR", "signature");
    log(`JoyID: ${redirect.message}`);
    if (sent && sent.state === redirect.state) {
      activeChannelId = sent.channelId;
      forgetSentRequest();
    }
  } else {
    showError(`The answer from JoyID could not be read: ${redirect.message}. Nothing was submitted.`, "JOYID_UNREADABLE", "signature");
    log(`Unreadable JoyID answer: ${redirect.message}`);
  }
  stripRedirectParams();
}

// ---- Backup: the channels' keys live only in this site's storage.

/** "Save a backup": every channel's record (and the node key) to a file. */
async function saveBackup(): Promise<void> {
  if (!node) return;
  try {
    const backup = await node.exportBackup();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([JSON.stringify(backup, null, 2)], { type: "application/json" }));
    link.download = `fiber-wallet-backup-${new Date(backup.created_at_ms).toISOString().slice(0, 19).replace(/:/g, "-")}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    const count = backup.channels.length;
    log(`Backup of ${count} channel${count === 1 ? "" : "s"} saved. It holds their keys: keep it as safe as your wallet's own.`);
  } catch (error) {
    reportError(error);
  }
}

const UNAUTHENTICATED_QUESTION =
  "This backup was saved by an older version of the wallet, which could not protect it against changes: " +
  "someone who could edit the file could have made it pay your balance to them. Restore it only if you saved it yourself and kept it safe. Restore it?";

/**
 * Imports a backup; a version 1 backup (made before backups were
 * authenticated) only once the user says they kept it themselves.
 */
async function importBackup(target: ChannelNode, backup: Backup): Promise<ImportBackupResult> {
  try {
    return await target.importBackup(backup);
  } catch (error) {
    if (codeOf(error) !== "BACKUP_UNAUTHENTICATED" || !confirm(UNAUTHENTICATED_QUESTION)) throw error;
    return await target.importBackup(backup, { allowUnauthenticated: true });
  }
}

/**
 * "Restore a backup": the channels come back into this site's storage. A
 * backup of another node key (this site's data was cleared, so the node
 * made a new one) is imported by a node opened with the backup's key, which
 * the import stores; the page then boots again on it.
 */
async function restoreBackup(file: File): Promise<void> {
  if (!node) return;
  let backup: Backup;
  try {
    backup = JSON.parse(await file.text()) as Backup;
  } catch (error) {
    showError(`That file is not a wallet backup: ${(error as Error).message}`, "INVALID_BACKUP", "storage");
    return;
  }
  try {
    if (backup.node_id === node.nodeId) {
      const result = await importBackup(node, backup);
      log(`Backup restored: ${result.imported.length} channel(s) taken back, ${result.skipped.length} already here or left out.`);
      await refresh();
      return;
    }
    if (!backup.node_secret_key) {
      showError("This backup is of another channel node and does not carry its key: open this wallet with that key to restore it.", "BACKUP_OF_ANOTHER_NODE", "storage");
      return;
    }
    // Its key becomes this wallet's channel node: only the user's own backup belongs here.
    const question =
      `This backup is of channel node ${short(backup.node_id)}, not this wallet's (${short(node.nodeId)}): restoring it makes it ` +
      `this wallet's channel node, with its ${backup.channels.length} channel(s). Restore only a backup you saved yourself. Restore it?`;
    if (!confirm(question)) return;
    // Asked before this wallet's node closes: a "no" then leaves it running.
    const allowUnauthenticated = backup.version === 1 && confirm(UNAUTHENTICATED_QUESTION);
    if (backup.version === 1 && !allowUnauthenticated) return;
    setControlsEnabled(false);
    setStatus("Restoring the backup: opening the channel node with the backup's key…");
    const current = node;
    node = null;
    await current.close();
    let result: ImportBackupResult;
    try {
      const restorer = await openNode({ ...nodeOptions(config, false), nodeSecretKey: backup.node_secret_key });
      try {
        result = await restorer.importBackup(backup, { allowUnauthenticated });
      } finally {
        await restorer.close();
      }
    } catch (error) {
      // This wallet's own node is closed: boot again on it, saying why.
      sessionStorage.setItem(RESTORE_FAILED_KEY, String((error as Error).message ?? error));
      location.reload();
      return;
    }
    if (!result.node_key_stored) {
      showError(
        "The backup's channels were imported, but this wallet already holds channels of its own key, which stays: restore into a fresh browser profile instead.",
        "BACKUP_KEY_NOT_STORED",
        "storage",
      );
    }
    sessionStorage.setItem(RESTORED_KEY, String(result.imported.length));
    location.reload();
  } catch (error) {
    reportError(error);
    setControlsEnabled(true);
  }
}

/** sessionStorage key: how many channels the restore before this reload brought back. */
const RESTORED_KEY = "fiber-demo-wallet:restored-backup";
/** sessionStorage key: why the restore before this reload failed. */
const RESTORE_FAILED_KEY = "fiber-demo-wallet:restore-failed";

// ---- Start-up: own the database, or follow the tab that does.

/**
 * Back from JoyID while another tab runs the wallet (it took the database
 * while this page was away): hand that tab the signed transaction, so it
 * is submitted now rather than once the other tab closes, maybe past the
 * deadline. False when nothing was handed over (no such request from this
 * tab, or no tab answered): this tab then submits once it owns the wallet.
 */
async function forwardSigned(redirect: Extract<Redirect, { kind: "signed" }>): Promise<boolean> {
  const sent = sentRequest();
  // A cancel tx is sent by this tab once it runs the wallet (no owner call takes one).
  if (!sent || sent.state !== redirect.state || sent.purpose !== "funding") return false;
  setStatus(`Handing the signed funding transaction of channel ${short(sent.channelId)} to the tab that runs the wallet…`, sent.channelId);
  try {
    // In worker mode this page runs no wasm of its own: a worker hands it over.
    const forwarder = config.worker ? WorkerFundingNode : FundingNode;
    const result = await forwarder.submitToOwner(undefined, {
      channel_id: sent.channelId,
      signed_funding_tx: redirect.tx as unknown as Record<string, unknown>,
    });
    forgetSentRequest();
    ui.status.dataset.submit = result.status;
    ui.status.dataset.forwarded = "true";
    log(`Signed funding transaction ${short(result.funding_tx_hash)} accepted by the tab that runs the wallet.`);
    setStatus(
      `Signed funding transaction accepted (${short(result.funding_tx_hash)}) by the tab that runs the wallet; the channel's progress shows below.`,
      sent.channelId,
    );
  } catch (error) {
    if (codeOf(error) === "NO_OWNER_TAB") {
      log("No tab running the wallet answered; the signed transaction is submitted once this tab runs it.");
      return false;
    }
    reportError(error);
    setStatus(`The signed funding transaction of channel ${short(sent.channelId)} was not accepted.`, sent.channelId);
    forgetSentRequest();
  }
  stripRedirectParams();
  return true;
}

async function followThenTakeOver(redirect: Redirect | null): Promise<{ opened: ChannelNode; forwarded: boolean }> {
  mode = "follower";
  setControlsEnabled(false);
  ui.banner.textContent =
    "This wallet is open in another tab; showing its progress read-only. This tab takes over when the other one closes.";
  ui.banner.hidden = false;
  setStatus("Read-only: the other tab runs the wallet.");
  ui.restored.textContent = "The other tab holds the fundings in progress; their changes appear below as they happen.";
  setPeer("as the other tab reports it", "unknown");
  ui.channelsEmpty.textContent = "Channels appear here as the other tab reports changes.";
  log("This wallet is open in another tab: following it read-only.");
  const stop = (config.worker ? WorkerFundingNode : FundingNode).follow(undefined, onEvent);
  try {
    const forwarding = redirect?.kind === "signed" ? forwardSigned(redirect) : Promise.resolve(false);
    const opened = await openNode(nodeOptions(config, true));
    return { opened, forwarded: await forwarding };
  } finally {
    stop();
    ui.banner.hidden = true;
    ui.banner.textContent = "";
  }
}

async function becomeOwner(opened: ChannelNode, redirect: Redirect | null, tookOver: boolean): Promise<void> {
  node = opened;
  mode = "owner";
  followed.clear();
  ui.channelsEmpty.textContent = "No channels yet.";
  if (ui.peer.dataset.status === "unknown") setPeer(`connecting to ${config.peerUrl}…`, "unknown");
  opened.onEvent(onEvent);
  if (tookOver) {
    log("The other tab closed: this tab now runs the wallet.");
    clearError("tab");
  }
  log(`Channel node ${short(opened.nodeId)} opened.`);
  const restoredFromBackup = sessionStorage.getItem(RESTORED_KEY);
  if (restoredFromBackup !== null) {
    sessionStorage.removeItem(RESTORED_KEY);
    log(`Backup restored: ${restoredFromBackup} channel(s) taken back.`);
  }
  const restoreFailed = sessionStorage.getItem(RESTORE_FAILED_KEY);
  if (restoreFailed !== null) {
    sessionStorage.removeItem(RESTORE_FAILED_KEY);
    showError(`The backup could not be restored: ${restoreFailed}`, "RESTORE_FAILED", "storage");
  }
  pending = await opened.pendingFundings();
  let restored = describeRestored(pending);
  const unreadable = opened.unreadableRecords;
  if (unreadable.length > 0) {
    restored += ` ${unreadable.length} stored record${unreadable.length === 1 ? "" : "s"} could not be read (kept): ${unreadable
      .map((r) => `${short(r.channel_id)} (${r.reason})`)
      .join(", ")}.`;
  }
  // Back from JoyID for a flow that ended meanwhile (expired, aborted): say so.
  const sent = sentRequest();
  if (sent && !pending.some((p) => p.channel_id === sent.channelId)) {
    const channel = await opened.getChannel(sent.channelId).catch(() => null);
    if (channel?.state === "Closed") {
      restored += ` Channel ${short(channel.channel_id)}, which you were signing, closed meanwhile: ${channel.close_reason ?? "no reason given"}.`;
    }
  }
  ui.restored.textContent = restored;
  ui.restored.dataset.count = String(pending.length);
  restoredIds = pending.map((flow) => flow.channel_id);
  if (pending.length > 0) log(restored);
  await refresh();
  setControlsEnabled(true);
  if (redirect?.kind === "signed") {
    await submitSigned(redirect);
  } else if (activeChannelId) {
    const flow = pending.find((p) => p.channel_id === activeChannelId);
    if (flow) showProgress(flow.channel_id, flow.state, flow.flags, null, flow.signed_submitted);
    else setStatus("Ready.");
  } else {
    setStatus(pending.length > 0 ? "Ready. Fundings in progress are listed below." : "Ready.");
  }
}

/** Where the amount is chosen: what a channel takes on top of it. */
function showReserve(): void {
  try {
    const reserve = formatCkb(channelReserve(config.wallet.lockScript));
    ui.reserveNote.textContent =
      `On top of the amount, the channel keeps a reserve of ${reserve} from this wallet ` +
      `(it comes back when the channel closes) and the funding transaction pays a small fee.`;
    ui.reserveNote.dataset.reserve = reserve;
  } catch (error) {
    ui.reserveNote.textContent = `The channel also keeps a reserve from this wallet (it could not be computed: ${(error as Error).message}).`;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function startNode(redirect: Redirect | null): Promise<void> {
  for (;;) {
    try {
      await becomeOwner(await openNode(nodeOptions(config, false)), redirect, false);
      return;
    } catch (error) {
      const code = codeOf(error);
      if (code === "OPEN_IN_ANOTHER_TAB" && mode !== "follower") {
        try {
          const { opened, forwarded } = await followThenTakeOver(redirect);
          await becomeOwner(opened, forwarded ? null : redirect, true);
          return;
        } catch (takeoverError) {
          error = takeoverError;
        }
      }
      reportError(error);
      if (codeOf(error) === "CHAIN_UNREACHABLE") {
        setStatus("Waiting for the CKB node; retrying in 5 seconds…");
        mode = "starting";
        await sleep(5000);
        continue;
      }
      setStatus("The wallet could not start its channel node.");
      return;
    }
  }
}

async function main(): Promise<void> {
  try {
    config = await loadConfig();
  } catch (error) {
    showError(`The wallet could not read its settings: ${(error as Error).message}`, "CONFIG", "config");
    setStatus("The wallet could not start.");
    return;
  }
  ui.address.textContent = config.wallet.address ?? "";
  ui.reserveNote.textContent = "";
  if (config.fundingAmountCkb !== undefined) ui.amount.value = String(config.fundingAmountCkb);
  setPeer(`connecting to ${config.peerUrl}…`, "unknown");
  setChain(`checking ${config.ckbRpcUrl}…`, "unknown");
  ui.backupButton.addEventListener("click", () => void saveBackup());
  ui.restoreInput.addEventListener("change", () => {
    const file = ui.restoreInput.files?.[0];
    ui.restoreInput.value = "";
    if (file) void restoreBackup(file);
  });
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    void openChannel();
  });
  void refreshBalance();
  setInterval(() => void refreshBalance(), 5000);
  setInterval(tickDeadlines, 1000);

  // JoyID's answer, if this load is one: read it before anything else.
  const redirect = readRedirect();
  if (redirect && redirect.kind !== "signed") handleUnsignedRedirect(redirect);
  if (redirect?.kind === "signed") setStatus("Back from JoyID with a signed transaction; starting the channel node…");
  else setStatus("Starting the channel node…");

  try {
    await init();
  } catch (error) {
    showError(`The channel module could not be loaded: ${(error as Error).message}`, "WASM", "config");
    setStatus("The wallet could not start.");
    return;
  }
  showReserve();
  await startNode(redirect);
}

void main();
