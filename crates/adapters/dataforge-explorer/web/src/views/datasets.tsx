import { useEffect, useState } from "preact/hooks";
import { call, Dataset, datasetPath } from "../api";
import { datasetUrl } from "../route";

/** The planner's estimate of a dataset's records (cheap on any size). */
function Estimate({ dataset }: { dataset: string }) {
  const [count, setCount] = useState<string>("…");
  useEffect(() => {
    call<{ count: number; exact: boolean }>(`${datasetPath(dataset)}/count?exact=false`).then(
      (c) => setCount(`${c.exact ? "" : "≈ "}${c.count.toLocaleString("en")}`),
      () => setCount("?"),
    );
  }, [dataset]);
  return <span data-testid="estimate">{count}</span>;
}

export function DatasetList({ datasets }: { datasets: Dataset[] }) {
  if (datasets.length === 0) return <p>No dataset is visible to this credential.</p>;
  return (
    <section>
      <h1>Datasets</h1>
      <table class="datasets">
        <thead>
          <tr><th>dataset</th><th>records</th><th>version</th><th>fields</th><th>you may</th><th>description</th></tr>
        </thead>
        <tbody>
          {datasets.map((d) => (
            <tr key={d.name} data-dataset={d.name}>
              <td><a href={datasetUrl(d.name)}>{d.name}</a></td>
              <td class="number"><Estimate dataset={d.name} /></td>
              <td class="number">{d.version ?? ""}</td>
              <td class="number">{d.fields.length}</td>
              <td>{d.permissions.join(", ")}</td>
              <td>{d.description}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** A dataset's schema: fields, types, rules, key and indexes. */
export function SchemaView({ dataset }: { dataset: Dataset }) {
  const rules = (f: Dataset["fields"][number]) =>
    [
      f.min !== undefined && `min ${f.min}`,
      f.max !== undefined && `max ${f.max}`,
      f.one_of && `one of ${f.one_of.join(", ")}`,
      f.pattern && `pattern ${f.pattern}`,
      f.max_length !== undefined && `at most ${f.max_length} characters`,
      f.default !== undefined && `default ${JSON.stringify(f.default)}`,
    ]
      .filter(Boolean)
      .join("; ");
  const list = (names: string[]) => names.map((n) => <code key={n}>{n}</code>);
  return (
    <section class="schema">
      <dl>
        <dt>primary key</dt>
        <dd>{list(dataset.primary_key)}</dd>
        <dt>indexes</dt>
        <dd>{dataset.indexes.length ? dataset.indexes.map((i) => <span key={i.join()}>({list(i)}) </span>) : "none"}</dd>
        <dt>cluster by</dt>
        <dd>{dataset.cluster_by.length ? list(dataset.cluster_by) : "none"}</dd>
        {dataset.partition_by && (
          <>
            <dt>partitioned by</dt>
            <dd><code>{dataset.partition_by.field}</code> per {dataset.partition_by.interval}</dd>
          </>
        )}
        <dt>schema version</dt>
        <dd>{dataset.version ?? "not applied"}</dd>
      </dl>
      <table>
        <thead>
          <tr><th>field</th><th>type</th><th>required</th><th>rules</th><th>description</th></tr>
        </thead>
        <tbody>
          {dataset.fields.map((f) => (
            <tr key={f.name}>
              <td><code>{f.name}</code>{dataset.primary_key.includes(f.name) && " 🔑"}</td>
              <td>{f.type}</td>
              <td>{f.required ? "yes" : ""}</td>
              <td>{rules(f)}</td>
              <td>{f.description ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
