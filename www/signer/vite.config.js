import { defineConfig } from "vite";

// The stand-in JoyID signer, on its own origin. JoyID's redirect URL is
// `<origin>/sign-ckb-raw-tx?type=redirect&_data_=…` (no trailing slash), so
// the page is built as sign-ckb-raw-tx/index.html (www/serve.mjs serves a
// directory's index.html) and its assets are referenced from the origin's
// root (`base: "/"`), which resolves the same with or without the slash.
// The root index.html only points there. config.json is not part of the build: the demo launcher
// writes it into the output directory.
export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  publicDir: false,
  build: {
    outDir: "../../target/www/signer",
    emptyOutDir: true,
    target: "es2022",
    rollupOptions: {
      input: {
        index: new URL("./index.html", import.meta.url).pathname,
        sign: new URL("./sign-ckb-raw-tx/index.html", import.meta.url).pathname,
      },
    },
  },
  logLevel: "warn",
});
