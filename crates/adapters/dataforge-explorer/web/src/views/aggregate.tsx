import { useEffect, useState } from "preact/hooks";
import { asProblem, call, Dataset, datasetPath, Problem } from "../api";
import { Filter, filterParams, readBrowse, withQuery } from "../query";
import { datasetUrl, navigate } from "../route";
import { show, Equivalent } from "./browse";
import { Chart } from "./chart";
import { Exports } from "./exports";
import { FilterBuilder } from "./filters";
import { ShowProblem } from "./problem";

interface Groups {
  items: Record<string, unknown>[];
  truncated: boolean;
}

/** An aggregate as the page URL holds it: the API's `group_by`, `bucket`, `metrics` and `limit`
 *  (groups at most, so that a view never loads more than a page of them), and filters. */
interface Aggregate {
  groupBy: string[];
  bucket: string;
  metrics: string[];
  limit: number;
}

const GROUPS_SHOWN = 500;

function readAggregate(search: string): Aggregate {
  const params = new URLSearchParams(search);
  const list = (name: string) => (params.get(name) ?? "").split(",").filter(Boolean);
  return {
    groupBy: list("group_by"),
    bucket: params.get("bucket") ?? "",
    metrics: splitMetrics(params.get("metrics") ?? ""),
    limit: Number(params.get("limit")) || GROUPS_SHOWN,
  };
}

/** The aggregate's query parameters, the page URL's and the API's alike. */
function aggregateParams(spec: Aggregate, filters: Filter[]): URLSearchParams {
  const params = filterParams(filters);
  if (spec.groupBy.length) params.set("group_by", spec.groupBy.join(","));
  if (spec.bucket) params.set("bucket", spec.bucket);
  if (spec.metrics.length) params.set("metrics", spec.metrics.join(","));
  params.set("limit", String(spec.limit));
  return params;
}

/** `percentile(f,0.9)` holds a comma: split on commas outside parentheses. */
function splitMetrics(text: string): string[] {
  return text.match(/[^,(]+(\([^)]*\))?/g)?.map((m) => m.trim()).filter(Boolean) ?? [];
}

export function AggregateView({ dataset, search }: { dataset: Dataset; search: string }) {
  const spec = readAggregate(search);
  const filters = readBrowse(dataset, search).filters;
  const params = aggregateParams(spec, filters);
  const apiUrl = withQuery(`${datasetPath(dataset.name)}/aggregate`, params);
  const [groups, setGroups] = useState<Groups | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const ready = spec.metrics.length > 0 || spec.groupBy.length > 0 || spec.bucket !== "";
  useEffect(() => {
    setGroups(null);
    setProblem(null);
    if (!ready) return;
    const abort = new AbortController();
    call<Groups>(apiUrl, { signal: abort.signal }).then(
      (g) => abort.signal.aborted || setGroups(g),
      (e) => abort.signal.aborted || setProblem(asProblem(e)),
    );
    return () => abort.abort();
  }, [apiUrl]);
  const go = (next: Aggregate, nextFilters = filters) =>
    navigate(withQuery(datasetUrl(dataset.name, "aggregate"), aggregateParams(next, nextFilters)));
  const bucketField = spec.bucket.split(":")[0];
  const keys = [...spec.groupBy.filter((g) => g !== bucketField), ...(bucketField ? [bucketField] : [])];
  return (
    <section class="aggregate">
      <FilterBuilder dataset={dataset} filters={filters} onApply={(f) => go(spec, f)} />
      {/* keyed by the URL: back and forward show the form of the aggregate shown */}
      <AggregateForm key={search} dataset={dataset} spec={spec} onRun={go} />
      {ready && <Equivalent url={apiUrl} />}
      <ShowProblem problem={problem} />
      {groups && (
        <>
          <Chart items={groups.items} bucket={bucketField} groups={keys.filter((k) => k !== bucketField)} metric={metricColumn(groups.items, keys)} />
          <div class="toolbar">
            {groups.truncated && <span class="hint">more groups than shown: narrow the filter or set a limit</span>}
            <Exports dataset={dataset} path="aggregate" params={withoutLimit(params)} />
          </div>
          <table class="groups" data-rows={groups.items.length}>
            <thead>
              <tr>{groups.items[0] && Object.keys(groups.items[0]).map((k) => <th key={k}>{k}</th>)}</tr>
            </thead>
            <tbody>
              {groups.items.map((g, i) => (
                <tr key={i}>{Object.values(g).map((v, j) => <td key={j}>{show(v)}</td>)}</tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

/** A streamed export holds every group. */
function withoutLimit(params: URLSearchParams): URLSearchParams {
  const all = new URLSearchParams(params);
  all.delete("limit");
  return all;
}

/** The first metric's column: the first of the answer's columns that is not a group key (the
 *  API names it; the page does not guess how). */
function metricColumn(items: Record<string, unknown>[], keys: string[]): string {
  return Object.keys(items[0] ?? {}).find((column) => !keys.includes(column)) ?? "count";
}

function AggregateForm({ dataset, spec, onRun }: { dataset: Dataset; spec: Aggregate; onRun: (a: Aggregate) => void }) {
  const [draft, setDraft] = useState<Aggregate>(spec.metrics.length ? spec : { ...spec, metrics: ["count()"] });
  const [bucketField, bucketUnit] = draft.bucket ? draft.bucket.split(":") : ["", ""];
  const temporal = dataset.fields.filter((f) => f.buckets.length > 0);
  const unitsOf = (name: string) => dataset.fields.find((f) => f.name === name)?.buckets ?? [];
  const metricChoices = [
    "count()",
    ...dataset.fields.flatMap((f) => f.metrics.map((fn) => (fn === "percentile" ? `percentile(${f.name},0.9)` : `${fn}(${f.name})`))),
  ];
  const toggleGroup = (name: string) =>
    setDraft({ ...draft, groupBy: draft.groupBy.includes(name) ? draft.groupBy.filter((g) => g !== name) : [...draft.groupBy, name] });
  return (
    <form class="aggregate-form" onSubmit={(e) => { e.preventDefault(); onRun(draft); }}>
      <fieldset>
        <legend>group by</legend>
        {dataset.fields.filter((f) => f.type !== "json").map((f) => (
          <label key={f.name}>
            <input type="checkbox" name={`group-${f.name}`} checked={draft.groupBy.includes(f.name)} onChange={() => toggleGroup(f.name)} /> {f.name}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>time bucket</legend>
        <select name="bucket-field" value={bucketField} onChange={(e) => {
          const field = (e.target as HTMLSelectElement).value;
          setDraft({ ...draft, bucket: field ? `${field}:${unitsOf(field).includes("month") ? "month" : unitsOf(field)[0]}` : "" });
        }}>
          <option value="">none</option>
          {temporal.map((f) => <option key={f.name} value={f.name}>{f.name}</option>)}
        </select>
        {bucketField && (
          <select name="bucket-unit" value={bucketUnit} onChange={(e) => setDraft({ ...draft, bucket: `${bucketField}:${(e.target as HTMLSelectElement).value}` })}>
            {unitsOf(bucketField).map((u) => <option key={u} value={u}>{u}</option>)}
          </select>
        )}
      </fieldset>
      <fieldset>
        <legend>metrics</legend>
        {draft.metrics.map((m, i) => (
          <span class="metric" key={i}>
            <select name="metric" value={m} onChange={(e) => setDraft({ ...draft, metrics: draft.metrics.map((x, j) => (j === i ? (e.target as HTMLSelectElement).value : x)) })}>
              {metricChoices.map((c) => <option key={c} value={c}>{c}</option>)}
            </select>
            {draft.metrics.length > 1 && (
              <button type="button" class="remove" onClick={() => setDraft({ ...draft, metrics: draft.metrics.filter((_, j) => j !== i) })}>✕</button>
            )}
          </span>
        ))}
        <button type="button" name="add-metric" onClick={() => setDraft({ ...draft, metrics: [...draft.metrics, "count()"] })}>+ metric</button>
      </fieldset>
      <button type="submit" name="run">run</button>
    </form>
  );
}
