import { useEffect, useState } from "preact/hooks";
import { Dataset } from "../api";
import { Filter, operandHint } from "../query";

/** Rows of field, operator and value; each field offers the operators its type takes (as the API
 *  says in the dataset's description). Applying them moves to the filtered first page. */
export function FilterBuilder({ dataset, filters, onApply }: { dataset: Dataset; filters: Filter[]; onApply: (f: Filter[]) => void }) {
  const [rows, setRows] = useState<Filter[]>(filters);
  const shown = JSON.stringify(filters);
  useEffect(() => setRows(filters), [shown]);
  const operatorsOf = (field: string) => dataset.fields.find((f) => f.name === field)?.operators ?? [];
  const change = (i: number, patch: Partial<Filter>) =>
    setRows(rows.map((row, j) => {
      if (j !== i) return row;
      const next = { ...row, ...patch };
      if (!operatorsOf(next.field).includes(next.operator)) next.operator = operatorsOf(next.field)[0] ?? "eq";
      return next;
    }));
  const first = dataset.fields[0]?.name ?? "";
  return (
    <form
      class="filters"
      onSubmit={(e) => {
        e.preventDefault();
        onApply(rows.filter((r) => r.field));
      }}
    >
      {rows.map((row, i) => (
        <div class="filter" key={i} data-filter={i}>
          <select name="field" value={row.field} onChange={(e) => change(i, { field: (e.target as HTMLSelectElement).value })}>
            {dataset.fields.map((f) => <option key={f.name} value={f.name}>{f.name} ({f.type})</option>)}
          </select>
          <select name="operator" value={row.operator} onChange={(e) => change(i, { operator: (e.target as HTMLSelectElement).value })}>
            {operatorsOf(row.field).map((op) => <option key={op} value={op}>{op}</option>)}
          </select>
          <input
            name="value"
            value={row.value}
            placeholder={operandHint(row.operator)}
            onInput={(e) => change(i, { value: (e.target as HTMLInputElement).value })}
          />
          <button type="button" class="remove" title="remove this filter" onClick={() => setRows(rows.filter((_, j) => j !== i))}>✕</button>
        </div>
      ))}
      <div class="filter-actions">
        <button type="button" name="add-filter" onClick={() => setRows([...rows, { field: first, operator: operatorsOf(first)[0] ?? "eq", value: "" }])}>
          + filter
        </button>
        <button type="submit" name="apply">apply</button>
      </div>
    </form>
  );
}
