import { useEffect, useState } from "preact/hooks";
import { call, Dataset, datasetPath, Field, Problem } from "../api";
import { datasetUrl, navigate } from "../route";
import { Equivalent } from "./browse";
import { ShowProblem } from "./problem";

type Record_ = Record<string, unknown>;

/** The text an input shows for a stored value. */
const asText = (value: unknown) =>
  value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);

/** The JSON value of an input's text for the field's type ("" is null); the API checks the rest. */
function asValue(field: Field, text: string): unknown {
  if (text === "") return null;
  switch (field.type) {
    case "integer":
    case "float":
      return Number.isNaN(Number(text)) ? text : Number(text);
    case "boolean":
      return text === "true";
    case "json":
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    default:
      return text;
  }
}

export function RecordView({ dataset, keyValues }: { dataset: Dataset; keyValues: string[] }) {
  const path = `${datasetPath(dataset.name)}/records/${keyValues.map(encodeURIComponent).join("/")}`;
  const [stored, setStored] = useState<Record_ | null>(null);
  const [draft, setDraft] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState("");
  const load = () =>
    call<Record_>(path).then(
      (r) => {
        setStored(r);
        setDraft(Object.fromEntries(dataset.fields.map((f) => [f.name, asText(r[f.name])])));
      },
      (e: Problem) => setProblem(e),
    );
  useEffect(() => {
    setStored(null);
    setProblem(null);
    load();
  }, [path]);
  const mayUpdate = dataset.permissions.includes("update");
  const mayDelete = dataset.permissions.includes("delete");
  const changed = dataset.fields.filter((f) => stored && draft[f.name] !== asText(stored[f.name]));
  const save = async () => {
    setProblem(null);
    setNotice("");
    const changes = Object.fromEntries(changed.map((f) => [f.name, asValue(f, draft[f.name])]));
    try {
      const answer = await call<Record_>(path, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(changes),
      });
      setStored(answer);
      setDraft(Object.fromEntries(dataset.fields.map((f) => [f.name, asText(answer[f.name])])));
      setNotice(`saved ${changed.length} field${changed.length === 1 ? "" : "s"}`);
    } catch (e) {
      setProblem(e as Problem);
    }
  };
  const remove = async () => {
    if (!confirm(`Delete the record ${keyValues.join(" / ")} of ${dataset.name}? This cannot be undone.`)) return;
    try {
      await call(path, { method: "DELETE" });
      navigate(datasetUrl(dataset.name), { notice: `deleted ${keyValues.join(" / ")}` });
    } catch (e) {
      setProblem(e as Problem);
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
