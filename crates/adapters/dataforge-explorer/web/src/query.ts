// The browse state, read from and written to the page's query string: filters as the API takes
// them (`field=operator.value`), and the API's own `select`, `order`, `limit` and `cursor`.

import { Dataset } from "./api";

export interface Filter {
  field: string;
  operator: string;
  value: string;
}

export interface Browse {
  filters: Filter[];
  select: string[];
  order: string;
  limit: number;
  cursor: string;
}

export const PAGE_SIZE = 50;

export function readBrowse(dataset: Dataset, search: string): Browse {
  const params = new URLSearchParams(search);
  const fields = new Set(dataset.fields.map((f) => f.name));
  const filters: Filter[] = [];
  for (const [name, raw] of params) {
    if (!fields.has(name)) continue;
    const dot = raw.indexOf(".");
    filters.push({
      field: name,
      operator: dot < 0 ? raw : raw.slice(0, dot),
      value: dot < 0 ? "" : raw.slice(dot + 1),
    });
  }
  const select = params.get("select");
  return {
    filters,
    select: select ? select.split(",").filter(Boolean) : [],
    order: params.get("order") ?? "",
    limit: Number(params.get("limit")) || PAGE_SIZE,
    cursor: params.get("cursor") ?? "",
  };
}

/** The filters as query parameters (shared by pages, counts, aggregates and exports). */
export function filterParams(filters: Filter[]): URLSearchParams {
  const params = new URLSearchParams();
  for (const f of filters) params.append(f.field, `${f.operator}.${f.value}`);
  return params;
}

/** The query string of a browse: the page URL's and the API's alike. */
export function browseParams(browse: Browse, page = true): URLSearchParams {
  const params = filterParams(browse.filters);
  if (browse.select.length) params.set("select", browse.select.join(","));
  if (browse.order) params.set("order", browse.order);
  if (page) {
    params.set("limit", String(browse.limit));
    if (browse.cursor) params.set("cursor", browse.cursor);
  }
  return params;
}

export const withQuery = (path: string, params: URLSearchParams) => {
  const text = params.toString();
  return text ? `${path}?${text}` : path;
};

/** The value hint of an operator, as the API spells its operand. */
export function operandHint(operator: string): string {
  switch (operator) {
    case "in":
      return "(a,b,c)";
    case "between":
      return "(low,high)";
    case "is":
      return "null or notnull";
    case "is_null":
      return "true or false";
    case "like":
    case "ilike":
      return "pattern, * or %";
    default:
      return "value";
  }
}
