// A stand-in for JoyID's raw-transaction signing page, for the demo and the
// tests: reads a request the way JoyID does (`_data_`, @joyid/common's
// encoding), shows in words what would be signed, signs the wallet's inputs
// with a development key (@ckb-ccc/core), and sends the user back to the
// wallet with JoyID's response shape.
import { ccc } from "@ckb-ccc/core";
import { DappErrorName, decodeSearch, encodeSearch, type CKBTransaction, type SignCkbRawTxRequest } from "@joyid/common";

/** `config.json` next to the page. */
interface SignerConfig {
  privateKey: string;
  ckbRpcUrl: string;
}

type SignRequest = SignCkbRawTxRequest & { state?: unknown };
type Tamper = "none" | "output" | "unsigned";

/** The `type` of the response, as the redirect answer names the request it answers. */
const RESPONSE_TYPE = "sign-ckb-raw-tx";
const SHANNONS_PER_CKB = 100_000_000n;

function byTestId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!element) throw new Error(`missing element ${id}`);
  return element;
}

const ui = {
  status: byTestId("signer-status"),
  error: byTestId("signer-error"),
  request: byTestId("signer-request"),
  origin: byTestId("signer-origin"),
  address: byTestId("signer-address"),
  lockArgs: byTestId("signer-lock-args"),
  summary: byTestId("signer-summary"),
  total: byTestId("signer-total"),
  fee: byTestId("signer-fee"),
  ownInputs: byTestId("signer-own-inputs"),
  warning: byTestId("signer-warning"),
  inputs: byTestId<HTMLTableElement>("signer-inputs"),
  outputs: byTestId<HTMLTableElement>("signer-outputs"),
  actions: byTestId("signer-actions"),
  approve: byTestId<HTMLButtonElement>("approve-button"),
  reject: byTestId<HTMLButtonElement>("reject-button"),
  tools: byTestId("signer-test-tools"),
  approveTampered: byTestId<HTMLButtonElement>("approve-tampered-button"),
  approveUnsigned: byTestId<HTMLButtonElement>("approve-unsigned-button"),
};

function formatCkb(shannons: bigint): string {
  const sign = shannons < 0n ? "-" : "";
  const abs = shannons < 0n ? -shannons : shannons;
  const fraction = (abs % SHANNONS_PER_CKB).toString().padStart(8, "0").replace(/0+$/, "");
  return `${sign}${(abs / SHANNONS_PER_CKB).toLocaleString("en-US")}${fraction ? "." + fraction : ""} CKB`;
}

function short(hex: string): string {
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

function setStatus(text: string): void {
  ui.status.textContent = text;
}

function showError(text: string): void {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function warn(text: string): void {
  ui.warning.textContent = ui.warning.textContent ? `${ui.warning.textContent} ${text}` : text;
  ui.warning.hidden = false;
}

// ---- The request.

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The request from `_data_`, checked enough to show and sign it; throws a readable error. */
function readRequest(): SignRequest | null {
  const data = new URL(location.href).searchParams.get("_data_");
  if (data === null) return null;
  const request: unknown = decodeSearch(data);
  if (!isRecord(request)) throw new Error("the request is not an object");
  const { tx, redirectURL } = request;
  if (typeof redirectURL !== "string") throw new Error("the request has no redirectURL");
  const back = new URL(redirectURL);
  if (back.protocol !== "http:" && back.protocol !== "https:") throw new Error(`redirectURL is not a web address: ${redirectURL}`);
  if (!isRecord(tx)) throw new Error("the request has no transaction (tx)");
  for (const field of ["cellDeps", "headerDeps", "inputs", "outputs", "outputsData", "witnesses"]) {
    if (!Array.isArray(tx[field])) throw new Error(`tx.${field} is missing (expected JoyID's camelCase transaction)`);
  }
  return request as unknown as SignRequest;
}

async function loadConfig(): Promise<SignerConfig> {
  const response = await fetch(`${import.meta.env.BASE_URL}config.json`, { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = (await response.json()) as SignerConfig;
  if (!config.privateKey || !config.ckbRpcUrl) throw new Error("config.json needs privateKey and ckbRpcUrl");
  return config;
}

/** Rejects after `ms` with a message naming what timed out. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s`)), ms)),
  ]);
}

// ---- The response.

/** Back to the wallet with `payload` in `_data_` (JoyID's encoding) and the redirect marker. */
function redirectBack(request: SignRequest, payload: Record<string, unknown>): void {
  const url = new URL(request.redirectURL);
  url.searchParams.set("joyid-redirect", "true");
  url.searchParams.set("_data_", encodeSearch(payload));
  location.assign(url.href);
}

function reject(request: SignRequest): void {
  setStatus("Rejected. Returning to the wallet…");
  disableButtons();
  redirectBack(request, { type: RESPONSE_TYPE, error: DappErrorName.UserRejected, state: request.state });
}

function disableButtons(): void {
  for (const button of [ui.approve, ui.reject, ui.approveTampered, ui.approveUnsigned]) button.disabled = true;
}

/** Signs the inputs locked by `signer`'s key; nothing else in the tx changes. */
async function approve(request: SignRequest, signer: ccc.SignerCkbPrivateKey, ownLock: ccc.Script, tamper: Tamper): Promise<void> {
  disableButtons();
  setStatus("Signing…");
  try {
    const original = request.tx;
    let witnesses = [...original.witnesses];
    if (tamper !== "unsigned") {
      const tx = ccc.Transaction.from(original as unknown as ccc.TransactionLike);
      const rawHash = tx.hash();
      // Only the signature: no prepareTransaction (it would add cell deps or
      // reshape witnesses); the placeholder WitnessArgs is already there.
      const signed = await withTimeout(signer.signOnlyTransaction(tx), 20_000, "signing (looking up the inputs)");
      if (signed.hash() !== rawHash) throw new Error("signing changed the transaction itself; refusing to return it");
      witnesses = signed.witnesses.map((w) => ccc.hexFrom(w));
      if (witnesses.length !== original.witnesses.length || witnesses.every((w, i) => w === original.witnesses[i].toLowerCase())) {
        throw new Error(`none of the inputs is locked by this signer's key (lock args ${ownLock.args}); nothing to sign`);
      }
    }
    const tx: CKBTransaction = { ...original, witnesses };
    if (tamper === "output") tamperWithOutput(tx, ownLock);
    setStatus(tamper === "none" ? "Signed. Returning to the wallet…" : `Signed (test: ${tamper}). Returning to the wallet…`);
    redirectBack(request, { type: RESPONSE_TYPE, data: { tx, state: request.state }, state: request.state });
  } catch (error) {
    showError(`Could not sign: ${(error as Error).message}`);
    setStatus("Not signed. You can reject the request to return to the wallet.");
    ui.reject.disabled = false;
  }
}

/** For the tests: after signing, add 1 CKB to the wallet's change output (or output 0). */
function tamperWithOutput(tx: CKBTransaction, ownLock: ccc.Script): void {
  const index = Math.max(
    0,
    tx.outputs.findIndex((output) => ccc.Script.from(output.lock).eq(ownLock)),
  );
  const output = tx.outputs[index];
  tx.outputs = tx.outputs.map((o, i) => (i === index ? { ...o, capacity: ccc.numToHex(BigInt(output.capacity) + SHANNONS_PER_CKB) } : o));
}

// ---- Showing the transaction.

function row(cells: (string | { code: string; title?: string })[], own: boolean, testId: string): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset.testid = testId;
  if (own) tr.className = "own";
  for (const content of cells) {
    const td = document.createElement("td");
    if (typeof content === "string") {
      td.textContent = content;
    } else {
      const code = document.createElement("code");
      code.textContent = content.code;
      if (content.title) code.title = content.title;
      td.append(code);
    }
    tr.append(td);
  }
  return tr;
}

async function show(request: SignRequest, client: ccc.Client, ownLock: ccc.Script, rpcUrl: string): Promise<boolean> {
  const tx = request.tx;
  ui.origin.textContent = new URL(request.redirectURL).origin;
  ui.address.textContent = request.signerAddress ?? "(none given)";
  ui.lockArgs.textContent = ownLock.args;
  ui.request.hidden = false;

  try {
    const requested = await ccc.Address.fromString(request.signerAddress, client);
    if (!requested.script.eq(ownLock)) {
      warn(`The request names a different address than this signer's key (lock args ${requested.script.args}); only this key's inputs would be signed.`);
    }
  } catch {
    warn("The request's signing address could not be read.");
  }

  // Look up every cell being spent.
  const inputs = await Promise.all(
    tx.inputs.map(async (input) => {
      try {
        const cell = await withTimeout(client.getCell(input.previousOutput), 10_000, "get_transaction");
        return cell ? { capacity: cell.cellOutput.capacity, lock: cell.cellOutput.lock, error: null } : { capacity: null, lock: null, error: "not found" };
      } catch (error) {
        return { capacity: null, lock: null, error: (error as Error).message };
      }
    }),
  );

  const inputBody = ui.inputs.tBodies[0];
  inputBody.replaceChildren(
    ...tx.inputs.map((input, i) => {
      const found = inputs[i];
      const own = found.lock?.eq(ownLock) ?? false;
      const outPoint = `${input.previousOutput.txHash}:${BigInt(input.previousOutput.index)}`;
      return row(
        [
          String(i),
          { code: `${short(input.previousOutput.txHash)}:${BigInt(input.previousOutput.index)}`, title: outPoint },
          found.capacity !== null ? formatCkb(found.capacity) : `unknown (${found.error})`,
          found.lock ? { code: found.lock.args } : "unknown",
          own ? "you" : found.lock ? "someone else" : "unknown",
        ],
        own,
        "signer-input",
      );
    }),
  );

  const outputBody = ui.outputs.tBodies[0];
  outputBody.replaceChildren(
    ...tx.outputs.map((output, i) => {
      const lock = ccc.Script.from(output.lock);
      const own = lock.eq(ownLock);
      const what = own ? "back to you (change)" : i === 0 ? "the channel's funding cell (2-of-2)" : "to the counterparty";
      return row([String(i), formatCkb(BigInt(output.capacity)), { code: lock.args }, what], own, "signer-output");
    }),
  );

  const unresolved = inputs.filter((input) => input.capacity === null);
  const ownIndexes = inputs.flatMap((input, i) => (input.lock?.eq(ownLock) ? [i] : []));
  const totalOut = tx.outputs.reduce((sum, output) => sum + BigInt(output.capacity), 0n);
  const ownOut = tx.outputs.reduce((sum, output) => sum + (ccc.Script.from(output.lock).eq(ownLock) ? BigInt(output.capacity) : 0n), 0n);
  ui.summary.hidden = false;

  if (unresolved.length > 0) {
    ui.total.textContent = "unknown";
    ui.fee.textContent = "unknown";
    ui.ownInputs.textContent = "unknown";
    showError(
      `The CKB node at ${rpcUrl} is unreachable or does not know ${unresolved.length} of the cells being spent (${unresolved[0].error}). The transaction cannot be checked or signed; you can reject it.`,
    );
    return false;
  }
  const totalIn = inputs.reduce((sum, input) => sum + (input.capacity ?? 0n), 0n);
  const ownIn = inputs.reduce((sum, input, i) => sum + (ownIndexes.includes(i) ? (input.capacity ?? 0n) : 0n), 0n);
  ui.total.textContent = formatCkb(ownIn - ownOut);
  ui.total.dataset.shannons = (ownIn - ownOut).toString();
  ui.fee.textContent = formatCkb(totalIn - totalOut);
  ui.fee.dataset.shannons = (totalIn - totalOut).toString();
  ui.ownInputs.textContent = ownIndexes.length > 0 ? `#${ownIndexes.join(", #")}` : "none";

  const requested = request.witnessIndexes ?? [];
  if (requested.length > 0 && requested.join(",") !== ownIndexes.join(",")) {
    warn(`The wallet asked to sign inputs #${requested.join(", #")}, but this key owns #${ownIndexes.join(", #") || "none"}.`);
  }
  if (ownIndexes.length === 0) {
    showError(`None of the inputs belongs to this signer's key (lock args ${ownLock.args}); there is nothing to sign.`);
    return false;
  }
  return true;
}

// ---- Start.

function tamperFlag(): Tamper {
  const value = new URL(location.href).searchParams.get("tamper");
  return value === "output" || value === "unsigned" ? value : "none";
}

async function main(): Promise<void> {
  let request: SignRequest | null;
  try {
    request = readRequest();
  } catch (error) {
    setStatus("This signing request cannot be read.");
    showError(`Unreadable request: ${(error as Error).message}`);
    return;
  }
  if (!request) {
    setStatus("No signing request. A wallet sends you here with a transaction to sign (JoyID's /sign-ckb-raw-tx).");
    return;
  }
  const current = request;
  ui.actions.hidden = false;
  ui.tools.hidden = false;
  ui.reject.disabled = false;
  ui.reject.addEventListener("click", () => reject(current));

  const tamper = tamperFlag();
  if (tamper !== "none") warn(`Test mode (tamper=${tamper}): Approve will ${tamper === "output" ? "change an output's capacity after signing" : "return the transaction unsigned"}.`);

  let config: SignerConfig;
  try {
    config = await loadConfig();
  } catch (error) {
    setStatus("This signer has no key configured.");
    showError(`The signer could not read its settings: ${(error as Error).message}. You can reject the request.`);
    return;
  }
  // Only the configured node: no public fallbacks.
  const client = new ccc.ClientPublicTestnet({ url: config.ckbRpcUrl, fallbacks: [], timeout: 10_000 });
  let signer: ccc.SignerCkbPrivateKey;
  let ownLock: ccc.Script;
  try {
    signer = new ccc.SignerCkbPrivateKey(client, config.privateKey);
    ownLock = (await signer.getAddressObjSecp256k1()).script;
  } catch (error) {
    showError(`The signer's key is unusable: ${(error as Error).message}`);
    return;
  }

  setStatus("Looking up the cells being spent…");
  const signable = await show(current, client, ownLock, config.ckbRpcUrl);
  if (!signable) {
    setStatus("This transaction cannot be signed here.");
    return;
  }
  setStatus("Check the transaction, then approve or reject it.");
  ui.approve.disabled = false;
  ui.approveTampered.disabled = false;
  ui.approveUnsigned.disabled = false;
  ui.approve.addEventListener("click", () => void approve(current, signer, ownLock, tamper));
  ui.approveTampered.addEventListener("click", () => void approve(current, signer, ownLock, "output"));
  ui.approveUnsigned.addEventListener("click", () => void approve(current, signer, ownLock, "unsigned"));
  ui.approve.focus();
}

void main();
