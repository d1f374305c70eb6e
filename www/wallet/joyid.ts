// Signing with JoyID by full-page redirect, with @joyid/common's own
// encoding: the request goes to `<signerUrl>/sign-ckb-raw-tx?type=redirect&_data_=…`
// and the answer comes back on our URL as `?joyid-redirect=true&_data_=…`.
import {
  buildJoyIDURL,
  getRedirectResponse,
  isRedirectFromJoyID,
  RedirectErrorWithState,
  type CKBTransaction,
  type SignCkbRawTxRequest,
  type SignCkbRawTxResponseData,
} from "@joyid/common";
import type { CellDep, Script, Transaction } from "fiber-funding";

const SIGN_PATH = "/sign-ckb-raw-tx";
/** sessionStorage key of the signing request this tab sent. */
const PENDING_KEY = "fiber-demo-wallet:joyid-request";

/** What this tab remembers about the signing request it sent, across the redirect. */
export interface SentRequest {
  state: string;
  channelId: string;
  /** What the signed tx is for: the channel's funding, or the cancel tx that takes its cells back. */
  purpose: SigningPurpose;
  sentAtMs: number;
}

export type SigningPurpose = "funding" | "cancel";

/** What the URL says after JoyID sent the user back. */
export type Redirect =
  | { kind: "signed"; tx: CKBTransaction; state: unknown }
  | { kind: "rejected"; message: string; state: unknown }
  | { kind: "unreadable"; message: string };

// ---- Fiber's snake_case transaction -> JoyID's camelCase `CKBTransaction`.

function joyIdScript(script: Script): CKBTransaction["outputs"][number]["lock"] {
  return {
    codeHash: script.code_hash,
    hashType: script.hash_type as "type" | "data" | "data1",
    args: script.args,
  };
}

function joyIdCellDep(dep: CellDep): CKBTransaction["cellDeps"][number] {
  return {
    outPoint: { txHash: dep.out_point.tx_hash, index: dep.out_point.index },
    depType: dep.dep_type === "dep_group" ? "depGroup" : "code",
  };
}

export function toJoyIdTransaction(tx: Transaction): CKBTransaction {
  return {
    version: tx.version,
    cellDeps: tx.cell_deps.map(joyIdCellDep),
    headerDeps: [...tx.header_deps],
    inputs: tx.inputs.map((input) => ({
      previousOutput: { txHash: input.previous_output.tx_hash, index: input.previous_output.index },
      since: input.since,
    })),
    outputs: tx.outputs.map((output) => ({
      capacity: output.capacity,
      lock: joyIdScript(output.lock),
      ...(output.type ? { type: joyIdScript(output.type) } : {}),
    })),
    outputsData: [...tx.outputs_data],
    witnesses: [...tx.witnesses],
  };
}

// ---- Which inputs are the wallet's.

/** The placeholder each side puts in its first input's witness: WitnessArgs { lock: 65 zero bytes }. */
const PLACEHOLDER_WITNESS = "0x5500000010000000550000005500000041000000" + "00".repeat(65);

/**
 * The positions of the wallet's inputs. `walletOutPoints` (keys of the
 * wallet's live cells) decides when known; otherwise the protocol's layout
 * does: the wallet's inputs come first, up to the counterparty's first input,
 * the second one carrying the placeholder witness.
 */
export function walletInputIndexes(tx: Transaction, walletOutPoints: Set<string> | null, key: (o: { tx_hash: string; index: string }) => string): number[] {
  if (walletOutPoints) {
    const found = tx.inputs.flatMap((input, index) => (walletOutPoints.has(key(input.previous_output)) ? [index] : []));
    if (found.length > 0) return found;
  }
  const placeholders = tx.witnesses.flatMap((w, index) => (w.toLowerCase() === PLACEHOLDER_WITNESS ? [index] : []));
  const end = placeholders.length >= 2 ? placeholders[1] : tx.inputs.length;
  return Array.from({ length: Math.max(1, end) }, (_, index) => index);
}

// ---- The request, out.

function randomState(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "s" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** This page without any query or fragment: where JoyID sends the user back. */
export function returnUrl(): string {
  return location.origin + location.pathname;
}

/**
 * Builds the signing URL and remembers (sessionStorage) the state nonce and
 * channel id. The caller navigates to the URL.
 */
export function buildSigningUrl(options: {
  signerUrl: string;
  channelId: string;
  purpose: SigningPurpose;
  tx: Transaction;
  signerAddress: string;
  witnessIndexes: number[];
}): string {
  const state = randomState();
  const request: SignCkbRawTxRequest & { state: string } = {
    joyidAppURL: options.signerUrl,
    name: "Fiber demo wallet",
    tx: toJoyIdTransaction(options.tx),
    signerAddress: options.signerAddress,
    witnessIndexes: options.witnessIndexes,
    redirectURL: returnUrl(),
    state,
  };
  const url = buildJoyIDURL(request, "redirect", SIGN_PATH);
  const sent: SentRequest = { state, channelId: options.channelId, purpose: options.purpose, sentAtMs: Date.now() };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(sent));
  return url;
}

export function sentRequest(): SentRequest | null {
  try {
    const value = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "null") as Partial<SentRequest> | null;
    if (!value || typeof value.state !== "string" || typeof value.channelId !== "string") return null;
    // A request sent by an earlier version of this page had no purpose: it was a funding.
    const purpose: SigningPurpose = value.purpose === "cancel" ? "cancel" : "funding";
    return { state: value.state, channelId: value.channelId, purpose, sentAtMs: value.sentAtMs ?? 0 };
  } catch {
    return null;
  }
}

export function forgetSentRequest(): void {
  sessionStorage.removeItem(PENDING_KEY);
}

// ---- The response, back.

/** Reads JoyID's answer from the URL, or null when this load is not a JoyID redirect. */
export function readRedirect(href: string = location.href): Redirect | null {
  if (!isRedirectFromJoyID(href)) return null;
  try {
    const data = getRedirectResponse<SignCkbRawTxResponseData>(href);
    if (!data || typeof data !== "object" || !data.tx || typeof data.tx !== "object") {
      return { kind: "unreadable", message: "the response carries no signed transaction" };
    }
    return { kind: "signed", tx: data.tx, state: data.state };
  } catch (error) {
    if (error instanceof RedirectErrorWithState) {
      return { kind: "rejected", message: error.message, state: error.state };
    }
    return { kind: "unreadable", message: (error as Error).message };
  }
}

/** Removes JoyID's parameters from the address bar (no reload, no history entry). */
export function stripRedirectParams(): void {
  const url = new URL(location.href);
  url.searchParams.delete("_data_");
  url.searchParams.delete("joyid-redirect");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}
