import { useEffect, useState } from "preact/hooks";
import { asProblem, call, curlOf, Dataset, datasetPath, Problem, recordPath } from "../api";
import { Browse, browseParams, filterParams, PAGE_SIZE, readBrowse, withQuery } from "../query";
import { datasetUrl, navigate } from "../route";
import { Exports } from "./exports";
import { FilterBuilder } from "./filters";
import { ShowProblem } from "./problem";

interface Page {
  items: Record<string, unknown>[];
  next_cursor: string | null;
}

/** A page as shown: the request it answers, its place in the paging (0 when opened at a
 *  cursor without the trail to it) and how long it took, from request to answer. */
interface Shown extends Page {
  url: string;
  number: number;
  took: number;
}

/** Earlier pages' cursors, kept in the history entry so that "previous" and the browser's back
 *  button both work ("" stands for the first page). */
const trailOf = (state: unknown): string[] =>
  Array.isArray((state as { trail?: unknown })?.trail) ? (state as { trail: string[] }).trail : [];

export function BrowseView({ dataset, search, state }: { dataset: Dataset; search: string; state: unknown }) {
  const browse = readBrowse(dataset, search);
  const apiUrl = withQuery(`${datasetPath(dataset.name)}/records`, browseParams(browse));
  const trail = trailOf(state);
  const [page, setPage] = useState<Shown | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    const started = performance.now();
    const number = browse.cursor && trail.length === 0 ? 0 : trail.length + 1;
    setProblem(null);
    call<Page>(apiUrl, { signal: abort.signal }).then(
      (p) => abort.signal.aborted || setPage({ ...p, url: apiUrl, number, took: performance.now() - started }),
      (e) => abort.signal.aborted || setProblem(asProblem(e)),
    );
    return () => abort.abort();
  }, [apiUrl]);

  const go = (next: Browse, trail: string[] = []) =>
    navigate(withQuery(datasetUrl(dataset.name), browseParams(next)), { trail });
  const columns = browse.select.length ? browse.select : dataset.fields.map((f) => f.name);
  const sortBy = (field: string) => {
    const order = browse.order === `${field}.asc` || browse.order === field ? `${field}.desc` : `${field}.asc`;
    go({ ...browse, order, cursor: "" });
  };

  return (
    <section class="browse">
      <FilterBuilder
        dataset={dataset}
        filters={browse.filters}
        onApply={(filters) => go({ ...browse, filters, cursor: "" })}
      />
      <div class="toolbar">
        <Columns dataset={dataset} selected={browse.select} onChange={(select) => go({ ...browse, select, cursor: "" })} />
        <label>
          rows per page{" "}
          <select
            name="limit"
            value={String(browse.limit)}
            onChange={(e) => go({ ...browse, limit: Number((e.target as HTMLSelectElement).value), cursor: "" })}
          >
            {[PAGE_SIZE, 100, 500].map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
        <Count dataset={dataset} filters={filterParams(browse.filters)} />
        <Exports dataset={dataset} path="records" params={browseParams(browse, false)} />
      </div>
      <Equivalent url={apiUrl} />
      <ShowProblem problem={problem} />
      {/* only the answer to this view's request: never an earlier one, whose cursor is not this order's */}
      {page && page.url === apiUrl && (
        <>
          <div class="table-wrap">
            <table class="records" data-rows={page.items.length} data-page={page.number} data-took-ms={page.took.toFixed(1)}>
              <thead>
                <tr>
                  {columns.map((c) => (
                    <th key={c}>
                      <button type="button" class="sort" data-field={c} onClick={() => sortBy(c)}>
                        {c}
                        {sortMark(browse.order, c)}
                      </button>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {page.items.map((record, i) => (
                  <tr key={i}>
                    {columns.map((c, j) => (
                      <td key={c} class={typeof record[c] === "number" ? "number" : ""}>
                        {j === 0 && keyed(dataset, record) ? (
                          <a href={recordPage(dataset, record)}>{show(record[c])}</a>
                        ) : (
                          show(record[c])
                        )}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav class="pager">
            <button type="button" name="previous" disabled={!browse.cursor} onClick={() => go({ ...browse, cursor: trail[trail.length - 1] ?? "" }, trail.slice(0, -1))}>
              ← previous
            </button>
            <span>{page.number ? `page ${page.number}` : "a later page"} · {page.items.length} rows · {page.took.toFixed(0)} ms</span>
            <button type="button" name="next" disabled={!page.next_cursor} onClick={() => go({ ...browse, cursor: page.next_cursor ?? "" }, [...trail, browse.cursor])}>
              next →
            </button>
          </nav>
        </>
      )}
    </section>
  );
}

const sortMark = (order: string, field: string) =>
  order === `${field}.desc` ? " ▼" : order === field || order === `${field}.asc` ? " ▲" : "";

export const show = (value: unknown) =>
  value === null || value === undefined ? "∅" : typeof value === "object" ? JSON.stringify(value) : String(value);

/** Whether the row holds its key (a projection may leave key fields out). */
const keyed = (dataset: Dataset, record: Record<string, unknown>) => dataset.primary_key.every((k) => k in record);

const recordPage = (dataset: Dataset, record: Record<string, unknown>) =>
  recordPath(dataset, record).replace(/^\/v1/, "");

function Columns({ dataset, selected, onChange }: { dataset: Dataset; selected: string[]; onChange: (s: string[]) => void }) {
  const shown = new Set(selected.length ? selected : dataset.fields.map((f) => f.name));
  const toggle = (name: string) => {
    const next = dataset.fields.map((f) => f.name).filter((n) => (n === name ? !shown.has(n) : shown.has(n)));
    onChange(next.length === dataset.fields.length ? [] : next);
  };
  return (
    <details class="columns">
      <summary>columns ({shown.size}/{dataset.fields.length})</summary>
      {dataset.fields.map((f) => (
        <label key={f.name}>
          <input type="checkbox" name={`column-${f.name}`} checked={shown.has(f.name)} onChange={() => toggle(f.name)} /> {f.name}
        </label>
      ))}
    </details>
  );
}

/** The matching records' count, asked for on demand (exact counts of big filtered sets take time). */
function Count({ dataset, filters }: { dataset: Dataset; filters: URLSearchParams }) {
  const url = withQuery(`${datasetPath(dataset.name)}/count`, filters);
  const [count, setCount] = useState<{ url: string; text: string } | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    setCount(null);
    setProblem(null);
  }, [url]);
  const ask = () => {
    setCount({ url, text: "counting…" });
    call<{ count: number }>(url).then(
      (c) => setCount({ url, text: `${c.count.toLocaleString("en")} records` }),
      (e) => setProblem(asProblem(e)),
    );
  };
  return (
    <span class="count">
      <button type="button" name="count" onClick={ask}>count</button>{" "}
      {/* a count asked for an earlier filter is not shown under this one */}
      <output data-testid="count">{count?.url === url ? count.text : ""}</output>
      <ShowProblem problem={problem} />
    </span>
  );
}

/** The API request behind the view, as a URL and as a curl command, each copyable. */
export function Equivalent({ url }: { url: string }) {
  return (
    <details class="equivalent">
      <summary>the API request</summary>
      <Copyable label="URL" text={new URL(url, location.origin).toString()} />
      <Copyable label="curl" text={curlOf(url)} />
    </details>
  );
}

function Copyable({ label, text }: { label: string; text: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="copyable">
      <span>{label}</span>
      <code data-testid={`equivalent-${label}`}>{text}</code>
      <button type="button" onClick={() => navigator.clipboard?.writeText(text).then(() => setCopied(true))}>
        {copied ? "copied" : "copy"}
      </button>
    </div>
  );
}
