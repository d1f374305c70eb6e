import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// "fiber-funding" resolves to the package directory built in pkg/, through
// its package.json, as it would from node_modules.
export default defineConfig({
  root: import.meta.dirname,
  resolve: { alias: { "fiber-funding": fileURLToPath(new URL("../../pkg", import.meta.url)) } },
  build: { outDir: "../../target/vite-consumer", emptyOutDir: true, target: "es2022" },
  logLevel: "warn",
});
