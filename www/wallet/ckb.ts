// The little the wallet asks CKB directly: its live cells, from the
// indexer's `get_cells`, for the balance and to find its inputs in a
// funding transaction.
import type { Script } from "fiber-funding";

export interface LiveCell {
  out_point: { tx_hash: string; index: string };
  output: { capacity: string; lock: Script; type: Script | null };
}

/** A failed RPC, with the method name so the message says which call failed. */
export class RpcError extends Error {
  constructor(
    readonly method: string,
    message: string,
    /** True when the node did not answer at all (network error, timeout). */
    readonly unreachable: boolean,
  ) {
    super(`${method}: ${message}`);
  }
}

let nextId = 1;

async function rpc<T>(url: string, method: string, params: unknown[]): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
      signal: AbortSignal.timeout(8000),
    });
  } catch (error) {
    throw new RpcError(method, `no answer from ${url} (${(error as Error).message})`, true);
  }
  if (!response.ok) throw new RpcError(method, `HTTP ${response.status} from ${url}`, false);
  const body = (await response.json()) as { result?: T; error?: { message?: string } };
  if (body.error) throw new RpcError(method, body.error.message ?? JSON.stringify(body.error), false);
  return body.result as T;
}

/** Every live cell locked by `lock` (all pages, at most 100 pages of 100). */
export async function liveCells(url: string, lock: Script): Promise<LiveCell[]> {
  const cells: LiveCell[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const result: { objects: LiveCell[]; last_cursor: string } = await rpc(url, "get_cells", [
      { script: lock, script_type: "lock", script_search_mode: "exact" },
      "asc",
      "0x64",
      cursor,
    ]);
    cells.push(...result.objects);
    if (result.objects.length < 100) break;
    cursor = result.last_cursor;
  }
  return cells;
}

export function outPointKey(outPoint: { tx_hash: string; index: string }): string {
  return `${outPoint.tx_hash.toLowerCase()}:${BigInt(outPoint.index)}`;
}
