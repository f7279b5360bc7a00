import { useState } from "preact/hooks";
import { credential, Dataset, datasetPath, headers, Problem, problemOf } from "../api";
import { withQuery } from "../query";
import { ShowProblem } from "./problem";

const FORMATS = [
  ["csv", "csv"],
  ["ndjson", "ndjson"],
  ["arrow", "arrows"],
  ["parquet", "parquet"],
] as const;

/** The current filter, order and projection as a file. Without a credential the browser's own
 *  download streams it; a credential cannot ride on a plain link, so then the answer is read with
 *  it and handed to the download as a whole. */
export function Exports({ dataset, path, params }: { dataset: Dataset; path: "records" | "aggregate"; params: URLSearchParams }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const urlOf = (format: string) => {
    const p = new URLSearchParams(params);
    p.set("format", format);
    return withQuery(`${datasetPath(dataset.name)}/${path}`, p);
  };
  const withCredential = async (event: MouseEvent, url: string, file: string) => {
    if (!credential.get()) return;
    event.preventDefault();
    setProblem(null);
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) return setProblem(await problemOf(response));
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = file;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  };
  return (
    <span class="exports">
      export:{" "}
      {FORMATS.map(([format, extension]) => {
        const file = `${dataset.name}${path === "aggregate" ? "-aggregate" : ""}.${extension}`;
        return (
          <a key={format} class="export" data-format={format} href={urlOf(format)} download={file} onClick={(e) => withCredential(e, urlOf(format), file)}>
            {format}
          </a>
        );
      })}
      <ShowProblem problem={problem} />
    </span>
  );
}
