// The page's URL is its state: a view is opened, bookmarked and shared by its address. Browse and
// aggregate views keep the API's own query parameters, so the page URL and the API URL agree.

import { useEffect, useState } from "preact/hooks";

export type Route =
  | { view: "datasets" }
  | { view: "browse" | "aggregate" | "schema" | "upload"; dataset: string }
  | { view: "record"; dataset: string; key: string[] }
  | { view: "missing" };

export function parseRoute(pathname: string): Route {
  let parts: string[];
  try {
    parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    return { view: "missing" };
  }
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "datasets")) return { view: "datasets" };
  if (parts[0] !== "datasets" || parts.length < 2) return { view: "missing" };
  const dataset = parts[1];
  if (parts.length === 2) return { view: "browse", dataset };
  const tab = parts[2];
  if (tab === "records" && parts.length > 3) return { view: "record", dataset, key: parts.slice(3) };
  if ((tab === "aggregate" || tab === "schema" || tab === "upload") && parts.length === 3) {
    return { view: tab, dataset };
  }
  return { view: "missing" };
}

/** Moves to `url` in the page (no reload); `state` rides along in the history entry. */
export function navigate(url: string, state: unknown = null, replace = false) {
  if (replace) history.replaceState(state, "", url);
  else history.pushState(state, "", url);
  dispatchEvent(new Event("dataforge:navigate"));
}

/** The current location, re-rendered when it changes (links, back and forward). */
export function useLocation(): { pathname: string; search: string; state: unknown } {
  const read = () => ({ pathname: location.pathname, search: location.search, state: history.state });
  const [current, setCurrent] = useState(read);
  useEffect(() => {
    const update = () => setCurrent(read());
    addEventListener("popstate", update);
    addEventListener("dataforge:navigate", update);
    return () => {
      removeEventListener("popstate", update);
      removeEventListener("dataforge:navigate", update);
    };
  }, []);
  return current;
}

/** Follows in-page links without reloading (a modified click keeps the browser's behaviour). */
export function onLinkClick(event: MouseEvent) {
  const link = (event.target as Element | null)?.closest?.("a");
  if (!link || link.target || link.hasAttribute("download")) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  // only the explorer's own addresses; the API, /docs and the rest load as pages of their own
  const ours = url.pathname === "/" || url.pathname === "/datasets" || url.pathname.startsWith("/datasets/");
  if (url.origin !== location.origin || !ours) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

export const datasetUrl = (dataset: string, tab = "") =>
  `/datasets/${encodeURIComponent(dataset)}${tab ? `/${tab}` : ""}`;
