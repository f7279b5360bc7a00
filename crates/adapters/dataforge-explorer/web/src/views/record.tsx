import { useEffect, useState } from "preact/hooks";
import { asProblem, call, Dataset, datasetPath, Field, Problem } from "../api";
import { datasetUrl, navigate } from "../route";
import { Equivalent } from "./browse";
import { ShowProblem } from "./problem";

type Record_ = Record<string, unknown>;

/** The text an input shows for a stored value: a json field's as JSON (a string in quotes), the
 *  others' as text. */
const asText = (field: Field, value: unknown) =>
  value === null || value === undefined ? "" : field.type === "json" || typeof value === "object" ? JSON.stringify(value) : String(value);

const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

const isJson = (text: string) => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

/** The JSON text of an input for its field: "" is null; a number as written (a large integer
 *  stays exact), `true`/`false` for a boolean, a json field's text as it is; anything else as a
 *  string, for the API to judge (it refuses a wrong type naming the field). */
function asJson(field: Field, text: string): string {
  const trimmed = text.trim();
  if (text === "") return "null";
  if ((field.type === "integer" || field.type === "float") && NUMBER.test(trimmed)) return trimmed;
  if (field.type === "boolean" && (trimmed === "true" || trimmed === "false")) return trimmed;
  if (field.type === "json") return text;
  return JSON.stringify(text);
}

export function RecordView({ dataset, keyValues }: { dataset: Dataset; keyValues: string[] }) {
  const path = `${datasetPath(dataset.name)}/records/${keyValues.map(encodeURIComponent).join("/")}`;
  const [stored, setStored] = useState<Record_ | null>(null);
  const [draft, setDraft] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const show = (r: Record_) => {
    setStored(r);
    setDraft(Object.fromEntries(dataset.fields.map((f) => [f.name, asText(f, r[f.name])])));
  };
  useEffect(() => {
    setStored(null);
    setProblem(null);
    const abort = new AbortController();
    call<Record_>(path, { signal: abort.signal }).then(
      (r) => abort.signal.aborted || show(r),
      (e) => abort.signal.aborted || setProblem(asProblem(e)),
    );
    return () => abort.abort();
  }, [path]);
  const mayUpdate = dataset.permissions.includes("update");
  const mayDelete = dataset.permissions.includes("delete");
  const changed = dataset.fields.filter((f) => stored && draft[f.name] !== asText(f, stored[f.name]));
  const save = async () => {
    setProblem(null);
    setNotice("");
    // a json field's text must be JSON: anything else would be stored as a string without a word
    const notJson = changed.filter((f) => f.type === "json" && draft[f.name] !== "" && !isJson(draft[f.name]));
    if (notJson.length) {
      const errors = notJson.map((f) => ({ row: 1, field: f.name, code: "type", message: `${f.name} is not JSON` }));
      return setProblem(new Problem(0, "Not JSON", "a json field holds JSON text (a string in double quotes)", { errors }));
    }
    const body = `{${changed.map((f) => `${JSON.stringify(f.name)}:${asJson(f, draft[f.name])}`).join(",")}}`;
    try {
      show(await call<Record_>(path, { method: "PATCH", headers: { "Content-Type": "application/json" }, body }));
      setNotice(`saved ${changed.length} field${changed.length === 1 ? "" : "s"}`);
    } catch (e) {
      setProblem(asProblem(e));
    }
  };
  const remove = async () => {
    if (!confirm(`Delete the record ${keyValues.join(" / ")} of ${dataset.name}? This cannot be undone.`)) return;
    try {
      await call(path, { method: "DELETE" });
      navigate(datasetUrl(dataset.name), { notice: `deleted ${keyValues.join(" / ")}` });
    } catch (e) {
      setProblem(asProblem(e));
    }
  };
  return (
    <section class="record">
      <h2>{keyValues.join(" / ")}</h2>
      <Equivalent url={path} />
      <ShowProblem problem={problem} />
      {notice && <p class="notice" role="status">{notice}</p>}
      {stored && (
        <form onSubmit={(e) => { e.preventDefault(); save(); }}>
          <table class="fields">
            <tbody>
              {dataset.fields.map((f) => {
                const key = dataset.primary_key.includes(f.name);
                return (
                  <tr key={f.name} class={problem?.errors.some((x) => x.field === f.name) ? "at-fault" : ""}>
                    <th><label for={`field-${f.name}`}>{f.name}</label></th>
                    <td class="type">{f.type}{f.required ? " · required" : ""}{key ? " · key" : ""}</td>
                    <td>
                      <input
                        id={`field-${f.name}`}
                        name={f.name}
                        value={draft[f.name]}
                        readOnly={key || !mayUpdate}
                        onInput={(e) => setDraft({ ...draft, [f.name]: (e.target as HTMLInputElement).value })}
                      />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <div class="actions">
            {mayUpdate && <button type="submit" name="save" disabled={changed.length === 0}>save changes</button>}
            {mayDelete && <button type="button" name="delete" class="danger" onClick={remove}>delete…</button>}
            {!mayUpdate && !mayDelete && <span class="hint">this credential may only read this dataset</span>}
          </div>
        </form>
      )}
    </section>
  );
}
