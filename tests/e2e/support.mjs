// Shared pieces of the browser tests: Debian's Chromium driven by
// playwright-core, and static origins on 127.0.0.1.
import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "../../www/serve.mjs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

/** A browser whose storage lives in memory (a reload keeps it, a new context does not). */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * A browser on a persistent profile in a fresh directory: IndexedDB is on
 * disk, as for a real user. Returns { context, dir, close }.
 */
export async function launchPersistent(dir) {
  dir ??= await mkdtemp(join(tmpdir(), "fiber-funding-profile-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
  });
  return {
    context,
    dir,
    close: async ({ keepProfile = false } = {}) => {
      await context.close();
      if (!keepProfile) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Serves `dir` on a free port of 127.0.0.1; resolves to { url, close }. */
export async function origin(dir, options) {
  const server = await serve(dir, 0, options);
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, port, close: () => new Promise((ok) => server.close(ok)) };
}
