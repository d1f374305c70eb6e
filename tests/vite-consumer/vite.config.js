import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  build: { outDir: "../../target/vite-consumer", emptyOutDir: true, target: "es2022" },
  logLevel: "warn",
});
