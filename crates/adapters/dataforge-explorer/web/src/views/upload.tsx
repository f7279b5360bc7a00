import { useState } from "preact/hooks";
import { Dataset, datasetPath, headers, noticeRefusal, Problem } from "../api";
import { ShowProblem } from "./problem";

/** The body format of a file, by its extension (the API takes these content types). */
const TYPES: Record<string, string> = {
  csv: "text/csv",
  ndjson: "application/x-ndjson",
  jsonl: "application/x-ndjson",
  json: "application/json",
  parquet: "application/vnd.apache.parquet",
  arrow: "application/vnd.apache.arrow.stream",
  arrows: "application/vnd.apache.arrow.stream",
};

interface Summary {
  inserted: number;
  updated: number;
  skipped: number;
  rejected: number;
}

/** Sends a file as one write (XMLHttpRequest, for its upload progress), all or nothing unless
 *  `on_error=skip`; a refusal lists its errors. */
export function UploadView({ dataset }: { dataset: Dataset }) {
  const [file, setFile] = useState<File | null>(null);
  const [onConflict, setOnConflict] = useState("error");
  const [onError, setOnError] = useState("reject");
  const [progress, setProgress] = useState<number | null>(null);
  const [summary, setSummary] = useState<Summary | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const type = file ? TYPES[file.name.split(".").pop()?.toLowerCase() ?? ""] : undefined;
  const send = () => {
    if (!file || !type) return;
    setSummary(null);
    setProblem(null);
    const request = new XMLHttpRequest();
    request.open("POST", `${datasetPath(dataset.name)}/records?on_conflict=${onConflict}&on_error=${onError}`);
    for (const [name, value] of Object.entries(headers({ "Content-Type": type }))) request.setRequestHeader(name, value);
    request.upload.onprogress = (e) => e.lengthComputable && setProgress(e.loaded / e.total);
    request.onload = () => {
      setProgress(null);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(request.responseText);
      } catch {
        // the status speaks
      }
      if (request.status >= 200 && request.status < 300) setSummary(body as unknown as Summary);
      else {
        const problem = new Problem(request.status, String(body.title ?? request.statusText), String(body.detail ?? `HTTP ${request.status}`), body);
        setProblem(problem);
        noticeRefusal(problem);
      }
    };
    request.onerror = () => {
      setProgress(null);
      setProblem(new Problem(0, "The upload failed", "the connection was closed before an answer came"));
    };
    request.send(file);
  };
  if (!dataset.permissions.includes("write")) return <p class="hint">This credential may not write to {dataset.name}.</p>;
  return (
    <section class="upload">
      <form onSubmit={(e) => { e.preventDefault(); send(); }}>
        <label>
          file (CSV, NDJSON, JSON, Parquet or Arrow){" "}
          <input type="file" name="file" accept=".csv,.ndjson,.jsonl,.json,.parquet,.arrow,.arrows" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} />
        </label>
        {file && !type && <p class="problem">The file's extension names no format the API takes.</p>}
        <label>
          existing keys{" "}
          <select name="on_conflict" value={onConflict} onChange={(e) => setOnConflict((e.target as HTMLSelectElement).value)}>
            <option value="error">refuse the upload</option>
            <option value="ignore">keep the stored record</option>
            <option value="upsert">replace it</option>
            <option value="merge">merge the given fields</option>
          </select>
        </label>
        <label>
          invalid records{" "}
          <select name="on_error" value={onError} onChange={(e) => setOnError((e.target as HTMLSelectElement).value)}>
            <option value="reject">refuse the upload</option>
            <option value="skip">skip them</option>
          </select>
        </label>
        <button type="submit" name="upload" disabled={!type || progress !== null}>upload</button>
      </form>
      {progress !== null && <progress value={progress} max={1} />}
      {summary && (
        <p class="notice" role="status" data-testid="upload-summary">
          inserted {summary.inserted}, updated {summary.updated}, skipped {summary.skipped}, rejected {summary.rejected}
        </p>
      )}
      <ShowProblem problem={problem} />
    </section>
  );
}
