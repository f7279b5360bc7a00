// Every call the explorer makes goes through here: the credential (kept for the browser session
// only), problem+json answers turned into `Problem`s, and the URLs and curl commands shown.

export interface Field {
  name: string;
  type: string;
  required: boolean;
  description?: string;
  default?: unknown;
  min?: unknown;
  max?: unknown;
  one_of?: unknown[];
  pattern?: string;
  max_length?: number;
  operators: string[];
  metrics: string[];
  buckets: string[];
}

export interface Dataset {
  name: string;
  description: string;
  version: number | null;
  primary_key: string[];
  indexes: string[][];
  cluster_by: string[];
  partition_by: { field: string; interval: string } | null;
  permissions: string[];
  fields: Field[];
}

export interface Violation {
  row: number;
  field?: string | null;
  code: string;
  message: string;
}

/** An RFC 9457 answer of the API (or a network failure, as status 0). */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(`${title}: ${detail}`);
  }
  get parameter(): string | undefined {
    return typeof this.body.parameter === "string" ? this.body.parameter : undefined;
  }
  get errors(): Violation[] {
    return Array.isArray(this.body.errors) ? (this.body.errors as Violation[]) : [];
  }
}

const KEY = "dataforge.credential";

export const credential = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (secret: string) => sessionStorage.setItem(KEY, secret),
  clear: () => sessionStorage.removeItem(KEY),
};

/** Called when the API answers 401, so that the page asks for a credential. */
let onUnauthorized: (p: Problem) => void = () => {};
export function whenUnauthorized(handler: (p: Problem) => void) {
  onUnauthorized = handler;
}

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const secret = credential.get();
  return secret ? { ...extra, Authorization: `Bearer ${secret}` } : extra;
}

/** Any failure as a `Problem` (a thrown non-problem is a client-side failure, status 0). */
export const asProblem = (e: unknown): Problem => (e instanceof Problem ? e : new Problem(0, "Failed", String(e)));

/** A refusal for want of a credential opens the prompt, wherever it came from. */
export function noticeRefusal(problem: Problem) {
  if (problem.status === 401) onUnauthorized(problem);
}

export async function problemOf(response: Response): Promise<Problem> {
  let body: Record<string, unknown> = {};
  try {
    body = await response.json();
  } catch {
    // not a problem document: the status says what there is to say
  }
  const title = typeof body.title === "string" ? body.title : response.statusText;
  const detail = typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
  const problem = new Problem(response.status, title, detail, body);
  noticeRefusal(problem);
  return problem;
}

/** JSON with integers past 2^53 kept exact as their text (JSON.parse alone would round them,
 *  and a rounded key would open another record). */
export function parseExact(text: string): unknown {
  const exact = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context?.source ?? "") ? context?.source : value;
  return JSON.parse(text, exact as (key: string, value: unknown) => unknown);
}

/** Sends a request to the API; a JSON answer is returned, any error thrown as a `Problem`. */
export async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      ...init,
      headers: headers((init.headers as Record<string, string>) ?? {}),
    });
  } catch (e) {
    throw new Problem(0, "The server did not answer", String(e));
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return undefined as T;
  return parseExact(await response.text()) as T;
}

export const datasetPath = (dataset: string) => `/v1/datasets/${encodeURIComponent(dataset)}`;

/** A record's API path: its key values as path segments, in key order. */
export function recordPath(dataset: Dataset, record: Record<string, unknown>): string {
  const segments = dataset.primary_key.map((k) => encodeURIComponent(String(record[k])));
  return `${datasetPath(dataset.name)}/records/${segments.join("/")}`;
}

/** The curl command that makes the same GET request. */
export function curlOf(path: string): string {
  const url = new URL(path, location.origin).toString();
  const auth = credential.get() ? ` -H "Authorization: Bearer $DATAFORGE_KEY"` : "";
  return `curl${auth} '${url.replaceAll("'", "'\\''")}'`;
}
