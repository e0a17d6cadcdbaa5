// Builds dist/ (served by `ekyc serve`, compiled into the binary by crates/ekyc-web) from
// src/: the script bundled and minified by esbuild, the style and the HTML template copied.
// Deterministic: the same sources and lockfile give the same bytes (the test suite checks
// the committed dist/ against a fresh build).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = process.argv[2] ?? "dist";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/app.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome100", "safari16", "firefox110"],
  outfile: `${out}/app.js`,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync("src/app.css", `${out}/app.css`);
copyFileSync("src/index.html", `${out}/index.html`);
