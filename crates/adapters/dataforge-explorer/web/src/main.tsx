// The explorer: a page over the public HTTP API, served by `dataforge serve` at `/`.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { call, credential, Dataset, Problem, whenUnauthorized } from "./api";
import { datasetUrl, onLinkClick, parseRoute, useLocation } from "./route";
import { AggregateView } from "./views/aggregate";
import { CredentialBadge, KeyPrompt } from "./views/auth";
import { BrowseView } from "./views/browse";
import { DatasetList, SchemaView } from "./views/datasets";
import { ShowProblem } from "./views/problem";
import { RecordView } from "./views/record";
import { UploadView } from "./views/upload";

function App() {
  const { pathname, search, state } = useLocation();
  const route = parseRoute(pathname);
  const [datasets, setDatasets] = useState<Dataset[] | null>(null);
  const [refused, setRefused] = useState<Problem | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  // bumped when the credential changes, so that everything is asked again with it
  const [signedIn, setSignedIn] = useState(0);
  useEffect(() => whenUnauthorized(setRefused), []);
  useEffect(() => {
    setProblem(null);
    call<{ datasets: Dataset[] }>("/v1/datasets").then(
      (d) => {
        setRefused(null);
        setDatasets(d.datasets);
      },
      (e: Problem) => (e.status === 401 ? setRefused(e) : setProblem(e)),
    );
  }, [signedIn]);
  const signOut = () => {
    credential.clear();
    setDatasets(null);
    setSignedIn(signedIn + 1);
  };
  const dataset = "dataset" in route ? datasets?.find((d) => d.name === route.dataset) : undefined;
  return (
    <div onClick={(e) => onLinkClick(e as unknown as MouseEvent)}>
      <header>
        <a class="brand" href="/">dataforge</a>
        {dataset && <Tabs dataset={dataset.name} current={route.view} />}
        <span class="spacer" />
        <CredentialBadge version={signedIn} onSignOut={signOut} />
        <a href="/docs">API docs</a>
      </header>
      <main>
        {refused ? (
          <KeyPrompt refused={refused} onSaved={() => { setRefused(null); setSignedIn(signedIn + 1); }} />
        ) : (
          <>
            <ShowProblem problem={problem} />
            {datasets && <Page route={route} datasets={datasets} dataset={dataset} search={search} state={state} />}
          </>
        )}
      </main>
    </div>
  );
}

function Page({ route, datasets, dataset, search, state }: { route: ReturnType<typeof parseRoute>; datasets: Dataset[]; dataset?: Dataset; search: string; state: unknown }) {
  if (route.view === "datasets") return <DatasetList datasets={datasets} />;
  if (route.view === "missing") return <p>No such page. <a href="/">The datasets</a>.</p>;
  if (!dataset) return <p>No dataset <code>{route.dataset}</code> is visible to this credential. <a href="/">The datasets</a>.</p>;
  const notice = (state as { notice?: string } | null)?.notice;
  return (
    <>
      <h1>{dataset.name}</h1>
      {dataset.description && <p class="description">{dataset.description}</p>}
      {notice && <p class="notice" role="status">{notice}</p>}
      {/* keyed by the dataset: no view's state outlives a move to another dataset */}
      {route.view === "browse" && <BrowseView key={dataset.name} dataset={dataset} search={search} state={state} />}
      {route.view === "aggregate" && <AggregateView key={dataset.name} dataset={dataset} search={search} />}
      {route.view === "schema" && <SchemaView dataset={dataset} />}
      {route.view === "upload" && <UploadView key={dataset.name} dataset={dataset} />}
      {route.view === "record" && <RecordView key={dataset.name} dataset={dataset} keyValues={route.key} />}
    </>
  );
}

function Tabs({ dataset, current }: { dataset: string; current: string }) {
  const tabs = [["browse", ""], ["aggregate", "aggregate"], ["schema", "schema"], ["upload", "upload"]] as const;
  return (
    <nav class="tabs">
      {tabs.map(([name, tab]) => (
        <a key={name} href={datasetUrl(dataset, tab)} class={current === name ? "current" : ""} data-tab={name}>
          {name}
        </a>
      ))}
    </nav>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
