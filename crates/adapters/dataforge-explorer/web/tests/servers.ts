// Starts the servers the tests browse, each on a free loopback port with a database in a new
// temporary directory: one open (as on loopback by default), one that requires a credential.
// Records are loaded through the API. The binary is $DATAFORGE_BIN (scripts/test-explorer).

import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const binary = process.env.DATAFORGE_BIN ?? "dataforge";
export const SCHEMAS = resolve(fileURLToPath(new URL("../../../../../schemas", import.meta.url)));
const schemas = SCHEMAS;
export const PRODUCTION_ROWS = 3000;

/** With DATAFORGE_TEST_ENGINE=postgres (scripts/test-postgres), the settings of a database of
 *  its own on DATAFORGE_TEST_POSTGRES for the server of `db`; none on DuckDB (the file). */
function engineEnv(db: string): Record<string, string> {
  if (process.env.DATAFORGE_TEST_ENGINE !== "postgres") return {};
  const server = process.env.DATAFORGE_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432";
  const name = `dataforge_test_explorer_${basename(db, ".duckdb")}_${process.pid}`;
  execFileSync("psql", [`${server}/postgres`, "-qc", `CREATE DATABASE ${name}`]);
  return { DATAFORGE_DATABASE__ENGINE: "postgres", DATAFORGE_DATABASE__URL: `${server}/${name}` };
}

function start(db: string, env: Record<string, string>): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--db", db, "--schemas", schemas], {
    env: { ...process.env, RUST_LOG: "info", ...engineEnv(db), ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((done, fail) => {
    let log = "";
    const timer = setTimeout(() => fail(new Error(`dataforge did not start in 60 s:\n${log}`)), 60_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      const found = log.match(/listening on (http:\/\/\S+)/);
      if (found) {
        clearTimeout(timer);
        done({ child, base: found[1] });
      }
    });
    child.on("exit", (code) => fail(new Error(`dataforge exited (${code}):\n${log}`)));
  });
}

async function post(base: string, path: string, type: string, body: string | Buffer, key?: string) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": type, ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: typeof body === "string" ? body : new Uint8Array(body),
  });
  if (response.status !== 201) throw new Error(`seeding ${path}: ${response.status} ${await response.text()}`);
}

const wells = Array.from({ length: 12 }, (_, i) => ({
  well_code: i + 1,
  well_name: `Well ${String.fromCharCode(65 + i)}`,
  field_code: 10 * (1 + (i % 3)),
  depth_m: 1000 + 100 * i,
  status: i % 4 === 0 ? "shut_in" : "producing",
}));

async function seed(base: string, dir: string, key?: string) {
  await post(base, "/v1/datasets/well_registry/records", "application/json", JSON.stringify(wells), key);
  const csv = join(dir, "production.csv");
  execFileSync(binary, ["generate", "--schemas", schemas, "--dataset", "well_production", "--rows", String(PRODUCTION_ROWS), "--format", "csv", "-o", csv]);
  await post(base, "/v1/datasets/well_production/records", "text/csv", readFileSync(csv), key);
}

export default async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "dataforge-explorer-"));
  const open = await start(join(dir, "open.duckdb"), {});
  await seed(open.base, dir);
  const lockedDb = join(dir, "locked.duckdb");
  const grant = (name: string, ...grants: string[]) =>
    execFileSync(binary, ["keys", "--db", lockedDb, "create", "--name", name, ...grants.flatMap((g) => ["--grant", g])], { encoding: "utf8" })
      .trim()
      .split("\n")
      .pop()!;
  const admin = grant("admin", "*:read,write,update,delete,admin");
  const reader = grant("reader", "well_registry:read");
  const locked = await start(lockedDb, { DATAFORGE_AUTH__REQUIRED: "true" });
  await post(locked.base, "/v1/datasets/well_registry/records", "application/json", JSON.stringify(wells), admin);
  Object.assign(process.env, {
    EXPLORER_OPEN: open.base,
    EXPLORER_LOCKED: locked.base,
    EXPLORER_ADMIN_KEY: admin,
    EXPLORER_READER_KEY: reader,
  });
  return async () => {
    for (const { child } of [open, locked]) child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  };
}
