import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// The demo wallet. "fiber-funding" resolves to the package built in pkg/
// (through its package.json, as from node_modules); Vite emits its .wasm as
// an asset from the `new URL("fiber_funding_bg.wasm", import.meta.url)` in
// the package's init(). `base: "./"` keeps every URL relative, so the page
// works wherever the directory is served. config.json is not part of the
// build: the demo launcher writes it into the output directory.
export default defineConfig({
  root: import.meta.dirname,
  base: "./",
  publicDir: false,
  resolve: {
    alias: {
      "fiber-funding/worker": fileURLToPath(new URL("../../pkg/worker_client.js", import.meta.url)),
      "fiber-funding": fileURLToPath(new URL("../../pkg", import.meta.url)),
    },
  },
  build: { outDir: "../../target/www/wallet", emptyOutDir: true, target: "es2022" },
  // fiber-funding/worker starts its worker as an ES module (it imports the package).
  worker: { format: "es" },
  logLevel: "warn",
});
