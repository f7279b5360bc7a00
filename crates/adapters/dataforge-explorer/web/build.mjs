// Bundles the explorer into OUT (argument 1, default ./dist): app.js, app.css and index.html,
// minified, with no source maps; build.rs embeds them in the binary.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const out = process.argv[2] ?? "dist";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: "src/main.tsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: out,
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync("src/style.css", join(out, "app.css"));
copyFileSync("src/index.html", join(out, "index.html"));
