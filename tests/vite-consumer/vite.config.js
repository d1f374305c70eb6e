import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// "fiber-funding" resolves to the package directory built in pkg/, through
// its package.json, as it would from node_modules.
export default defineConfig({
  root: import.meta.dirname,
  resolve: {
    alias: {
      "fiber-funding/worker": fileURLToPath(new URL("../../pkg/worker_client.js", import.meta.url)),
      "fiber-funding": fileURLToPath(new URL("../../pkg", import.meta.url)),
    },
  },
  worker: { format: "es" },
  build: { outDir: "../../target/vite-consumer", emptyOutDir: true, target: "es2022" },
  logLevel: "warn",
});
