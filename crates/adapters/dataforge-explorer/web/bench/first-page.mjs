// Times the explorer in Chromium against a running server (argument 1: its base URL): the first
// page of records shown after opening a dataset's address (from the navigation's start), a
// filtered and ordered first page, and page to page forward and back (the page's own request to
// answer, and click to table shown, polled by Playwright), each ROUNDS times; with the
// reference of the same run: a `/health` fetch from the page. Prints one JSON object.
import { chromium } from "@playwright/test";

const base = process.argv[2];
const dataset = process.argv[3] ?? "well_production";
const filter = process.argv[4] ?? "field_code=eq.7&order=production_period.desc";
const rounds = Number(process.env.ROUNDS ?? 5);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium" });
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const max = (xs) => Math.max(...xs);

/** Milliseconds from the start of navigating to `url` until the records table is shown. */
async function open(url) {
  await page.goto(url);
  await page.waitForSelector("table.records[data-rows]");
  return page.evaluate(() => performance.now());
}

const first = [];
const filtered = [];
const paging = [];
const shown = [];
const health = [];
for (let round = 0; round < rounds; round++) {
  first.push(await open(`${base}/datasets/${dataset}`));
  filtered.push(await open(`${base}/datasets/${dataset}?${filter}`));
  await open(`${base}/datasets/${dataset}`);
  const table = page.locator("table.records");
  const turn = async (button, n) => {
    await page.evaluate(() => (window.clicked = performance.now()));
    await page.getByRole("button", { name: button }).click();
    await page.waitForSelector(`table.records[data-page="${n}"]`);
    shown.push(await page.evaluate(() => performance.now() - window.clicked));
    paging.push(Number(await table.getAttribute("data-took-ms")));
  };
  for (let n = 2; n <= 11; n++) await turn("next →", n);
  for (let n = 10; n >= 1; n--) await turn("← previous", n);
  health.push(
    await page.evaluate(async () => {
      const started = performance.now();
      await (await fetch("/health")).text();
      return performance.now() - started;
    }),
  );
}
await browser.close();
const round1 = (x) => Math.round(x * 10) / 10;
console.log(
  JSON.stringify({
    first_page_ms: { median: round1(median(first)), max: round1(max(first)) },
    filtered_first_page_ms: { median: round1(median(filtered)), max: round1(max(filtered)) },
    page_request_ms: { median: round1(median(paging)), max: round1(max(paging)), pages: paging.length },
    page_click_to_shown_ms: { median: round1(median(shown)), max: round1(max(shown)) },
    health_fetch_ms: { median: round1(median(health)) },
  }),
);
