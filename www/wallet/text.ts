// What the wallet says: amounts, states and errors in words.

const SHANNONS_PER_CKB = 100_000_000n;

/** "1,234.5 CKB" from shannons. */
export function formatCkb(shannons: bigint | string): string {
  const value = typeof shannons === "string" ? BigInt(shannons) : shannons;
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  const whole = (abs / SHANNONS_PER_CKB).toLocaleString("en-US");
  const fraction = (abs % SHANNONS_PER_CKB).toString().padStart(8, "0").replace(/0+$/, "");
  return `${sign}${whole}${fraction ? "." + fraction : ""} CKB`;
}

/** Shannons from a decimal CKB amount typed by a person; null when it is not one. */
export function parseCkb(text: string): bigint | null {
  const match = /^\s*(\d{1,12})(?:\.(\d{1,8}))?\s*$/.exec(text.replace(/,/g, ""));
  if (!match) return null;
  const shannons = BigInt(match[1]) * SHANNONS_PER_CKB + BigInt((match[2] ?? "").padEnd(8, "0"));
  return shannons > 0n ? shannons : null;
}

/** "0x1234…cdef" */
export function short(hex: string | null | undefined): string {
  if (!hex) return "—";
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

/** Where a flow stands, in words ("waiting for your signature", …). */
export function describeState(state: string, flags: readonly string[], signedSubmitted?: boolean, closeReason?: string | null): string {
  switch (state) {
    case "NegotiatingFunding":
      if (flags.includes("AWAITING_EXTERNAL_FUNDING")) return "waiting for your signature";
      return "waiting for the counterparty to accept";
    case "CollaboratingFundingTx":
      return "building the funding transaction with the counterparty";
    case "SigningCommitment":
      // Neither commitment signed yet: the counterparty signs ours before
      // the wallet is asked to sign the funding tx.
      if (!flags.includes("THEIR_COMMITMENT_SIGNED_SENT") && !flags.includes("OUR_COMMITMENT_SIGNED_SENT")) {
        return "waiting for the counterparty's signature";
      }
      if (signedSubmitted === false || (signedSubmitted === undefined && !flags.includes("OUR_COMMITMENT_SIGNED_SENT"))) {
        return "waiting for your signature";
      }
      return "exchanging signatures";
    case "AwaitingTxSignatures":
      return "exchanging signatures";
    case "AwaitingChannelReady":
      return "waiting for the funding transaction to confirm";
    case "ChannelReady":
      return "ready";
    case "ShuttingDown":
      if (flags.includes("WAITING_COMMITMENT_CONFIRMATION")) return "force-closing: waiting for the commitment to confirm";
      return "closing with the counterparty";
    case "Closed":
      if (flags.includes("WAITING_ONCHAIN_SETTLEMENT")) return "closed on chain: your share is withdrawn once the delay passes";
      if (flags.includes("COOPERATIVE")) return "closed: your balance is back in this wallet";
      if (flags.includes("UNCOOPERATIVE_LOCAL") || flags.includes("UNCOOPERATIVE_REMOTE")) return "closed: your share was withdrawn to this wallet";
      return closeReason ? `closed: ${closeReason}` : "closed";
    default:
      return state;
  }
}

/** "confirmed 1 of 3 times" */
export function describeConfirmations(confirmations: number, required: number): string {
  return `confirmed ${confirmations} of ${required} time${required === 1 ? "" : "s"}`;
}

/** Where a funded channel's close stands, in words; null when it is not closing. */
export function describeClose(close: {
  closing_tx_hash: string | null;
  force_closed_at_ms: number | null;
  commitment: { tx_hash: string; by: "us" | "peer"; claimable_at_epoch: { number: number; index: number; length: number } } | null;
  claim_tx_hash: string | null;
} | null): string | null {
  if (!close) return null;
  if (close.claim_tx_hash) return `withdrawing: claim ${short(close.claim_tx_hash)} sent`;
  if (close.commitment) {
    const { number, index, length } = close.commitment.claimable_at_epoch;
    const epoch = index === 0 ? `${number}` : `${number} ${index}/${length}`;
    const who = close.commitment.by === "us" ? "our" : "the counterparty's";
    return `${who} commitment is on chain; withdrawable from epoch ${epoch}`;
  }
  if (close.force_closed_at_ms !== null) return "commitment broadcast";
  if (close.closing_tx_hash) return `closing tx ${short(close.closing_tx_hash)}`;
  return "shutdown sent";
}

/** Whether a flow in this state still needs the user's signature. */
export function needsSignature(state: string, flags: readonly string[], signedSubmitted: boolean): boolean {
  if (signedSubmitted) return false;
  return (state === "NegotiatingFunding" && flags.includes("AWAITING_EXTERNAL_FUNDING")) || state === "SigningCommitment";
}

/** "4:05" until `deadlineMs`, or "expired". */
export function timeLeft(deadlineMs: number, nowMs = Date.now()): string {
  const seconds = Math.floor((deadlineMs - nowMs) / 1000);
  if (seconds <= 0) return "expired";
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/** Which part of the world an error is about: lets a recovery clear it. */
export type ErrorTopic = "peer" | "chain" | "funding" | "storage" | "tab" | "config" | "signature";

/** An error a person can act on, from an error `code` (see docs/api.md) and its message. */
export function describeError(code: string | undefined, message: string): { text: string; topic: ErrorTopic } {
  switch (code) {
    case "FUNDING_EXPIRED":
      return { topic: "funding", text: `The funding expired: the signed transaction did not arrive before the deadline, so the channel was aborted. Open a new channel. (${message})` };
    case "CHANNEL_CLOSED":
      return { topic: "funding", text: `The channel is closed: ${message}` };
    case "SIGNED_TX_MISMATCH":
      return { topic: "signature", text: `The signed transaction was refused because it was tampered with: ${message}. Nothing was sent; your funds have not moved.` };
    case "SIGNED_TX_INVALID":
      return { topic: "signature", text: `The signed transaction was refused because it is not properly signed: ${message}. Nothing was sent; you can sign again.` };
    case "ALREADY_SUBMITTED":
      return { topic: "signature", text: `A different signed transaction was already submitted for this channel: ${message}` };
    case "PEER_UNREACHABLE":
      return { topic: "peer", text: `The counterparty is unreachable: ${message}. The wallet keeps retrying.` };
    case "PEER_MISMATCH":
      return { topic: "peer", text: `The node at the counterparty's address is not the expected counterparty: ${message}` };
    case "PEER_REFUSED":
      return { topic: "funding", text: `The counterparty refused the channel: ${message}` };
    case "CHAIN_UNREACHABLE":
      return { topic: "chain", text: `The CKB node is unreachable: ${message}` };
    case "CHAIN_REJECTED":
      return { topic: "chain", text: `The CKB node refused a request: ${message}` };
    case "INSUFFICIENT_FUNDS":
      // The module's message says it all, in CKB: what the channel needs, what is free, who holds the rest.
      return { topic: "funding", text: `${message.charAt(0).toUpperCase()}${message.slice(1)}.` };
    case "UNSPENDABLE_CHANGE":
      return { topic: "funding", text: `That amount would leave change too small to keep: ${message}. Try a slightly different amount.` };
    case "NOT_CLOSABLE":
      return { topic: "funding", text: `The channel cannot be closed that way now: ${message}` };
    case "TOO_LATE_TO_ABANDON":
      return { topic: "funding", text: `Too late to abandon: ${message}. "Cancel funding" takes its cells back instead.` };
    case "NOT_CANCELLABLE":
      return { topic: "funding", text: `This funding cannot be cancelled now: ${message}` };
    case "CANCEL_TX_INVALID":
      return { topic: "signature", text: `The signed cancel transaction was refused: ${message}. Nothing was sent; you can cancel again.` };
    case "OPEN_IN_ANOTHER_TAB":
      return { topic: "tab", text: "This wallet is open in another tab." };
    case "STORAGE_FULL":
      return { topic: "storage", text: `The browser's storage is full: ${message}. Free some space; nothing was lost.` };
    case "STORAGE_UNAVAILABLE":
      return { topic: "storage", text: `The browser's storage cannot be used: ${message}` };
    case "NODE_CLOSED":
      return { topic: "tab", text: "The wallet's channel node was closed; reload the page." };
    case "INVALID_PARAMS":
    case "INVALID_TX_JSON":
      return { topic: "funding", text: `Invalid request: ${message}` };
    default:
      return { topic: "funding", text: message || "Something went wrong." };
  }
}
