// The explorer in Debian's Chromium against real servers (tests/servers.ts): every view is checked
// against the API's own answer to the same request.

import { expect, Page, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SCHEMAS } from "./servers";

const open = () => process.env.EXPLORER_OPEN!;
const locked = () => process.env.EXPLORER_LOCKED!;
const shots = process.env.SCREENSHOTS ?? "test-results/screenshots";

type Row = Record<string, unknown>;

async function api<T = Row>(path: string, base = open(), key?: string): Promise<{ status: number; body: T }> {
  const response = await fetch(base + path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : (undefined as T) };
}

const show = (v: unknown) => (v === null || v === undefined ? "∅" : typeof v === "object" ? JSON.stringify(v) : String(v));

/** The records table as text, row by row. */
async function shownRows(page: Page): Promise<string[][]> {
  return page.locator("table.records tbody tr").evaluateAll((rows) =>
    rows.map((r) => Array.from(r.querySelectorAll("td"), (td) => td.textContent ?? "")),
  );
}

async function fields(dataset: string): Promise<string[]> {
  const { body } = await api<{ fields: { name: string }[] }>(`/v1/datasets/${dataset}`);
  return body.fields.map((f) => f.name);
}

const asRows = (items: Row[], columns: string[]) => items.map((r) => columns.map((c) => show(r[c])));

async function screenshot(page: Page, name: string) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

// every page must run without script errors or refused content (the page's security policy)
let consoleErrors: string[] = [];
test.beforeEach(({ page }) => {
  consoleErrors = [];
  page.on("console", (m) => {
    // the browser logs every 4xx answer as a failed load: those are the API's answers under test
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
});
test.afterEach(() => expect(consoleErrors).toEqual([]));

test("the list shows each dataset with its record count, version and permissions", async ({ page }) => {
  const counts = await Promise.all(
    ["well_registry", "well_production"].map(async (d) => (await api<{ count: number }>(`/v1/datasets/${d}/count`)).body.count.toLocaleString("en")),
  );
  await page.goto(open());
  await expect(page.locator("table.datasets tbody tr")).toHaveCount(2);
  const registry = page.locator('tr[data-dataset="well_registry"]');
  await expect(registry.getByTestId("estimate")).toHaveText(new RegExp(`^(≈ )?${counts[0]}$`));
  await expect(page.locator('tr[data-dataset="well_production"]').getByTestId("estimate")).toHaveText(new RegExp(`^(≈ )?${counts[1]}$`));
  await expect(registry).toContainText("read, write, update, delete, admin");
  await screenshot(page, "datasets");
  await registry.getByRole("link", { name: "well_registry" }).click();
  await expect(page).toHaveURL(/\/datasets\/well_registry$/);
  await page.locator('a[data-tab="schema"]').click();
  await expect(page.locator(".schema")).toContainText("one of drilling, producing, shut_in, abandoned");
  // the API's own pages load as pages, not as views of the explorer
  await page.getByRole("link", { name: "API docs" }).click();
  await expect(page).toHaveURL(/\/docs$/);
});

test("pages forward and back by keyset, as the API pages", async ({ page }) => {
  const columns = await fields("well_production");
  const first = (await api<{ items: Row[]; next_cursor: string }>("/v1/datasets/well_production/records?limit=50")).body;
  const second = (await api<{ items: Row[] }>(`/v1/datasets/well_production/records?limit=50&cursor=${encodeURIComponent(first.next_cursor)}`)).body;
  // nothing but an export asks for more than a page of rows
  const asked: string[] = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith("/v1/") && url.pathname.endsWith("/records") && !url.searchParams.has("format")) asked.push(url.search);
  });
  await page.goto(`${open()}/datasets/well_production`);
  const table = page.locator("table.records");
  await expect(table).toHaveAttribute("data-page", "1");
  await expect.poll(() => shownRows(page)).toEqual(asRows(first.items, columns));
  const took: number[] = [];
  for (let round = 0; round < 5; round++) {
    await page.getByRole("button", { name: "next →" }).click();
    await expect(table).toHaveAttribute("data-page", "2");
    await expect.poll(() => shownRows(page)).toEqual(asRows(second.items, columns));
    took.push(Number(await table.getAttribute("data-took-ms")));
    await page.getByRole("button", { name: "← previous" }).click();
    await expect(table).toHaveAttribute("data-page", "1");
    await expect.poll(() => shownRows(page)).toEqual(asRows(first.items, columns));
    took.push(Number(await table.getAttribute("data-took-ms")));
  }
  // the browser's own back button returns to the page before, too
  await page.getByRole("button", { name: "next →" }).click();
  await expect(table).toHaveAttribute("data-page", "2");
  await page.goBack();
  await expect(table).toHaveAttribute("data-page", "1");
  await expect.poll(() => shownRows(page)).toEqual(asRows(first.items, columns));
  expect(asked.length).toBeGreaterThanOrEqual(11);
  expect(asked.filter((q) => !/[?&]limit=50(&|$)/.test(q))).toEqual([]);
  mkdirSync("test-results", { recursive: true });
  writeFileSync("test-results/paging.json", JSON.stringify({ rows: 3000, took_ms: took }));
  console.log(`page loads in the browser (ms, request to answer): ${took.join(", ")}`);
});

test("two filters, as the API filters them, kept in a URL that reopens the view", async ({ page }) => {
  const columns = await fields("well_production");
  const sample = (await api<{ items: Row[] }>("/v1/datasets/well_production/records?limit=1")).body.items[0];
  const field = sample.field_code as number;
  const expected = (await api<{ items: Row[] }>(`/v1/datasets/well_production/records?field_code=eq.${field}&oil_production_kbd=gte.1&limit=50`)).body.items;
  await page.goto(`${open()}/datasets/well_production`);
  await page.getByRole("button", { name: "+ filter" }).click();
  await page.getByRole("button", { name: "+ filter" }).click();
  const [one, two] = [page.locator('[data-filter="0"]'), page.locator('[data-filter="1"]')];
  await one.locator('select[name="field"]').selectOption("field_code");
  await one.locator('select[name="operator"]').selectOption("eq");
  await one.locator('input[name="value"]').fill(String(field));
  await two.locator('select[name="field"]').selectOption("oil_production_kbd");
  // the operators offered are those of the field's type
  await expect(two.locator('select[name="operator"] option')).toHaveText(["eq", "ne", "gt", "gte", "lt", "lte", "in", "between", "is", "is_null"]);
  await two.locator('select[name="operator"]').selectOption("gte");
  await two.locator('input[name="value"]').fill("1");
  await page.getByRole("button", { name: "apply" }).click();
  await expect(page).toHaveURL(new RegExp(`field_code=eq.${field}&oil_production_kbd=gte.1&limit=50`));
  expect(expected.length).toBeGreaterThan(0);
  await expect(page.locator("table.records")).toHaveAttribute("data-rows", String(expected.length));
  await expect.poll(() => shownRows(page)).toEqual(asRows(expected, columns));
  await page.getByText("the API request").click();
  await expect(page.getByTestId("equivalent-curl")).toContainText(`/v1/datasets/well_production/records?field_code=eq.${field}&oil_production_kbd=gte.1`);
  await screenshot(page, "browse");
  await page.reload();
  await expect(page.locator("table.records")).toHaveAttribute("data-rows", String(expected.length));
  await expect.poll(() => shownRows(page)).toEqual(asRows(expected, columns));
  // a filter the API refuses shows its problem next to the filters
  await page.goto(`${open()}/datasets/well_production?oil_production_kbd=gte.lots`);
  await expect(page.locator(".problem")).toContainText("oil_production_kbd");
});

test("sorting by a column asks the API for that order", async ({ page }) => {
  const columns = await fields("well_production");
  const descending = (await api<{ items: Row[] }>("/v1/datasets/well_production/records?order=oil_production_kbd.desc&limit=50")).body.items;
  await page.goto(`${open()}/datasets/well_production`);
  await page.locator('button.sort[data-field="oil_production_kbd"]').click();
  await expect(page).toHaveURL(/order=oil_production_kbd.asc/);
  await page.locator('button.sort[data-field="oil_production_kbd"]').click();
  await expect(page).toHaveURL(/order=oil_production_kbd.desc/);
  await expect(page.locator("table.records")).toHaveAttribute("data-rows", "50");
  await expect.poll(() => shownRows(page)).toEqual(asRows(descending, columns));
  // a column chosen away is asked away
  await page.getByText(/^columns/).click();
  await page.locator('input[name="column-field_name"]').uncheck();
  await expect(page).toHaveURL(/select=/);
  await expect(page.locator("table.records thead th")).toHaveCount(columns.length - 1);
  // a row opens its record's page, by its key (a timestamp among the key fields)
  const top = descending[0];
  await page.locator("table.records tbody tr").first().getByRole("link").click();
  await expect(page).toHaveURL(new RegExp(`/datasets/well_production/records/${top.field_code}/${top.well_code}/`));
  await expect(page.locator('input[name="production_period"]')).toHaveValue(String(top.production_period));
  await expect(page.locator('input[name="oil_production_kbd"]')).toHaveValue(String(top.oil_production_kbd));
});

test("an aggregate over time buckets is a line chart with a point per bucket; over groups, bars", async ({ page }) => {
  const years = (await api<{ items: Row[] }>("/v1/datasets/well_production/aggregate?bucket=production_period:year&metrics=sum(oil_production_kbd)")).body.items;
  await page.goto(`${open()}/datasets/well_production/aggregate`);
  await page.locator('select[name="bucket-field"]').selectOption("production_period");
  await page.locator('select[name="bucket-unit"]').selectOption("year");
  await page.locator('select[name="metric"]').selectOption("sum(oil_production_kbd)");
  await page.getByRole("button", { name: "run" }).click();
  const line = page.locator('svg[data-kind="line"]');
  await expect(line).toHaveAttribute("data-points", String(years.length));
  await expect(line.locator("circle.point")).toHaveCount(years.length);
  await expect(page.locator("table.groups")).toHaveAttribute("data-rows", String(years.length));
  await screenshot(page, "aggregate");
  const fields = (await api<{ items: Row[] }>("/v1/datasets/well_production/aggregate?group_by=field_code&metrics=count()")).body.items;
  await page.goto(`${open()}/datasets/well_production/aggregate?group_by=field_code&metrics=count()`);
  await expect(page.locator('svg[data-kind="bar"] rect.point')).toHaveCount(Math.min(fields.length, 100));
  // the aggregate exports as itself: a row per group
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator('a.export[data-format="csv"]').click()]);
  const lines = readFileSync(await download.path(), "utf8").split(/\r?\n/).filter(Boolean);
  expect(lines[0]).toBe("field_code,count");
  expect(lines.length).toBe(fields.length + 1);
});

test("integers past 2^53 are shown and followed exactly", async ({ page }) => {
  const big = "9007199254740993"; // 2^53 + 1: a double would make it ...992
  const created = await fetch(`${open()}/v1/datasets/well_registry/records`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: `{"well_code": ${big}, "well_name": "Deep", "field_code": ${big}}`,
  });
  expect(created.status).toBe(201);
  await page.goto(`${open()}/datasets/well_registry?well_code=eq.${big}`);
  await expect(page.locator("table.records")).toHaveAttribute("data-rows", "1");
  await expect(page.locator("table.records tbody tr").first()).toContainText(`${big}Deep${big}`);
  await page.locator("table.records tbody tr").first().getByRole("link").click();
  await expect(page.locator('input[name="field_code"]')).toHaveValue(big);
  await page.locator('input[name="well_name"]').fill("Deeper");
  await page.getByRole("button", { name: "save changes" }).click();
  await expect(page.locator(".notice")).toHaveText("saved 1 field");
  const stored = await (await fetch(`${open()}/v1/datasets/well_registry/records/${big}`)).text();
  expect(stored).toContain(`"well_code":${big}`);
  expect(stored).toContain(`"field_code":${big}`);
  expect(stored).toContain('"well_name":"Deeper"');
});

test("an export downloads the filtered records, which read back as the API's", async ({ page }) => {
  const sample = (await api<{ items: Row[] }>("/v1/datasets/well_production/records?limit=1")).body.items[0];
  const filter = `field_code=eq.${sample.field_code}`;
  const { count } = (await api<{ count: number }>(`/v1/datasets/well_production/count?${filter}`)).body;
  await page.goto(`${open()}/datasets/well_production?${filter}`);
  for (const [format, lines] of [["csv", count + 1], ["ndjson", count]] as const) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator(`a.export[data-format="${format}"]`).click()]);
    const text = readFileSync(await download.path(), "utf8");
    const rows = text.split(/\r?\n/).filter(Boolean);
    expect(rows.length).toBe(lines);
    if (format === "ndjson") expect(rows.every((r) => JSON.parse(r).field_code === sample.field_code)).toBe(true);
  }
  const [parquet] = await Promise.all([page.waitForEvent("download"), page.locator('a.export[data-format="parquet"]').click()]);
  expect(readFileSync(await parquet.path()).subarray(0, 4).toString()).toBe("PAR1");
});

/** A key no other test (nor an earlier try of this one) has used. */
const freshKey = () => 10_000 + Math.floor(Math.random() * 1_000_000);

test("a record is edited and deleted from its page, and the API sees both", async ({ page }) => {
  const code = freshKey();
  const created = await fetch(`${open()}/v1/datasets/well_registry/records`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ well_code: code, well_name: "Well C", field_code: 30, status: "producing", metadata: { rig: "7" } }),
  });
  expect(created.status).toBe(201);
  const path = `/v1/datasets/well_registry/records/${code}`;
  await page.goto(`${open()}/datasets/well_registry/records/${code}`);
  const name = page.locator('input[name="well_name"]');
  await expect(name).toHaveValue("Well C");
  // a json field shows JSON: its string values in quotes
  await expect(page.locator('input[name="metadata"]')).toHaveValue('{"rig":"7"}');
  await expect(page.locator('input[name="well_code"]')).toHaveAttribute("readonly", "");
  await name.fill("Renamed C");
  await page.locator('input[name="depth_m"]').fill("1234.5");
  await page.getByRole("button", { name: "save changes" }).click();
  await expect(page.locator(".notice")).toHaveText("saved 2 fields");
  const stored = (await api(path)).body;
  expect([stored.well_name, stored.depth_m]).toEqual(["Renamed C", 1234.5]);
  // a value the schema refuses shows the problem and changes nothing
  await page.locator('input[name="status"]').fill("flying");
  await page.getByRole("button", { name: "save changes" }).click();
  await expect(page.locator(".problem")).toContainText("status");
  expect((await api(path)).body.status).toBe("producing");
  // a boolean that is not true or false goes to the API as text, and is refused naming the field
  await page.locator('input[name="status"]').fill("producing");
  await page.locator('input[name="onshore"]').fill("yes please");
  await page.getByRole("button", { name: "save changes" }).click();
  await expect(page.locator(".problem-errors")).toContainText("onshore");
  expect((await api(path)).body.onshore).toBe(null);
  await page.locator('input[name="onshore"]').fill("true");
  await page.getByRole("button", { name: "save changes" }).click();
  await expect(page.locator(".notice")).toHaveText("saved 1 field");
  expect((await api(path)).body.onshore).toBe(true);
  await screenshot(page, "record");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "delete…" }).click();
  await expect(page).toHaveURL(/\/datasets\/well_registry$/);
  await expect(page.locator(".notice")).toContainText(`deleted ${code}`);
  expect((await api(path)).status).toBe(404);
});

test("an upload that fails lists its errors and writes nothing; a good one says what it wrote", async ({ page }) => {
  const before = (await api<{ count: number }>("/v1/datasets/well_registry/count")).body.count;
  await page.goto(`${open()}/datasets/well_registry/upload`);
  const [one, two] = [freshKey(), freshKey() + 1];
  const bad = `well_code,well_name,field_code\n${one},Fine,10\nx,Broken,10\n${two},,10\n`;
  await page.locator('input[name="file"]').setInputFiles({ name: "wells.csv", mimeType: "text/csv", buffer: Buffer.from(bad) });
  await page.getByRole("button", { name: "upload" }).click();
  const problem = page.locator(".problem");
  await expect(problem).toHaveAttribute("data-status", "422");
  await expect(problem.locator(".problem-errors tbody tr")).toHaveCount(2);
  await expect(problem).toContainText("well_code");
  await expect(problem).toContainText("well_name");
  await screenshot(page, "upload");
  expect((await api<{ count: number }>("/v1/datasets/well_registry/count")).body.count).toBe(before);
  const good = `{"well_code": ${one}, "well_name": "Fine", "field_code": 10}\n{"well_code": ${two}, "well_name": "Also", "field_code": 20}\n`;
  await page.locator('input[name="file"]').setInputFiles({ name: "wells.ndjson", mimeType: "application/x-ndjson", buffer: Buffer.from(good) });
  await page.getByRole("button", { name: "upload" }).click();
  await expect(page.getByTestId("upload-summary")).toHaveText("inserted 2, updated 0, skipped 0, rejected 0");
  expect((await api<{ count: number }>("/v1/datasets/well_registry/count")).body.count).toBe(before + 2);
  // a Parquet file, as `dataforge generate` writes one
  const parquet = join(mkdtempSync(join(tmpdir(), "explorer-upload-")), "wells.parquet");
  execFileSync(process.env.DATAFORGE_BIN ?? "dataforge", ["generate", "--schemas", SCHEMAS, "--dataset", "well_registry", "--rows", "5", "--start", String(freshKey() + 10), "--format", "parquet", "-o", parquet]);
  await page.locator('input[name="file"]').setInputFiles(parquet);
  await page.getByRole("button", { name: "upload" }).click();
  await expect(page.getByTestId("upload-summary")).toHaveText("inserted 5, updated 0, skipped 0, rejected 0");
  expect((await api<{ count: number }>("/v1/datasets/well_registry/count")).body.count).toBe(before + 7);
});

test("a server that requires a credential refuses without one and works with one", async ({ page }) => {
  await page.goto(locked());
  const prompt = page.locator(".key-prompt");
  await expect(prompt).toBeVisible();
  await expect(prompt.locator(".problem")).toHaveAttribute("data-status", "401");
  await expect(page.locator("table.datasets")).toHaveCount(0);
  await screenshot(page, "credential");
  await page.locator('input[name="credential"]').fill("not-a-key");
  await page.getByRole("button", { name: "Use it" }).click();
  await expect(prompt.locator(".problem")).toContainText("not an API key");
  await page.locator('input[name="credential"]').fill(process.env.EXPLORER_READER_KEY!);
  await page.getByRole("button", { name: "Use it" }).click();
  // the reader's key reads well_registry only, and the page says so
  await expect(page.locator("table.datasets tbody tr")).toHaveCount(1);
  await expect(page.getByTestId("credential-name")).toHaveText("reader");
  await expect(page.locator('tr[data-dataset="well_registry"]')).toContainText("read");
  await page.getByRole("link", { name: "well_registry" }).click();
  await expect(page.locator("table.records")).toHaveAttribute("data-rows", "12");
  // exports carry the credential
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator('a.export[data-format="csv"]').click()]);
  expect(readFileSync(await download.path(), "utf8").split(/\r?\n/).filter(Boolean).length).toBe(13);
  await page.goto(`${locked()}/datasets/well_registry/records/1`);
  await expect(page.locator(".hint")).toHaveText("this credential may only read this dataset");
  await expect(page.getByRole("button", { name: "save changes" })).toHaveCount(0);
  // the credential was kept for the session: a new tab of another session is asked again
  const other = await page.context().browser()!.newPage();
  await other.goto(locked());
  await expect(other.locator(".key-prompt")).toBeVisible();
  await other.close();
});
