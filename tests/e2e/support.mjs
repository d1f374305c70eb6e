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

/**
 * Chromium as a process we own, on a persistent profile, reached over the
 * DevTools protocol: `kill()` SIGKILLs the whole browser (every process of
 * it), as a crash or an OS kill would; launch again on the same `dir` to
 * relaunch. Returns { browser, context, dir, kill, close }.
 */
export async function launchKillable(dir) {
  const { spawn } = await import("node:child_process");
  dir ??= await mkdtemp(join(tmpdir(), "fiber-funding-profile-"));
  const child = spawn(
    CHROMIUM,
    [...CHROMIUM_ARGS, "--headless=new", "--remote-debugging-port=0", `--user-data-dir=${dir}`, "about:blank"],
    { detached: true, stdio: ["ignore", "ignore", "pipe"] },
  );
  const endpoint = await new Promise((ok, fail) => {
    let text = "";
    child.stderr.on("data", (chunk) => {
      text += chunk;
      const match = text.match(/DevTools listening on (ws:\/\/\S+)/);
      if (match) ok(match[1]);
    });
    child.once("exit", (code) => fail(new Error(`chromium exited (${code}): ${text}`)));
  });
  const browser = await chromium.connectOverCDP(endpoint);
  const context = browser.contexts()[0];
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {}
  };
  const exited = new Promise((ok) => child.once("exit", ok));
  return {
    browser,
    context,
    dir,
    /** SIGKILL the browser and all its processes; the profile stays. */
    kill: async () => {
      killGroup("SIGKILL");
      await exited;
    },
    close: async ({ keepProfile = false } = {}) => {
      await browser.close().catch(() => {});
      killGroup("SIGTERM");
      await exited;
      if (!keepProfile) await rm(dir, { recursive: true, force: true });
    },
  };
}
