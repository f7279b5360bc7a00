// The aggregate drawn in SVG: a line per group over time buckets, or a bar per group.

const WIDTH = 960;
const HEIGHT = 320;
const PAD = { left: 70, right: 16, top: 16, bottom: 48 };
const MAX_SERIES = 8;
const MAX_BARS = 100;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

interface Props {
  items: Record<string, unknown>[];
  /** The bucketed field: a line chart over it; none: bars. */
  bucket: string;
  groups: string[];
  metric: string;
}

const label = (item: Record<string, unknown>, keys: string[]) => keys.map((k) => String(item[k] ?? "∅")).join(" · ");

export function Chart({ items, bucket, groups, metric }: Props) {
  const valued = items.filter((i) => typeof i[metric] === "number");
  if (valued.length === 0) return <p class="hint">Nothing to chart: no numeric `{metric}` in the answer.</p>;
  const values = valued.map((i) => i[metric] as number);
  const low = Math.min(0, ...values);
  const high = Math.max(...values) || 1;
  const y = (v: number) => PAD.top + (HEIGHT - PAD.top - PAD.bottom) * (1 - (v - low) / (high - low || 1));
  const axis = (
    <g class="axis">
      <line x1={PAD.left} y1={y(low)} x2={WIDTH - PAD.right} y2={y(low)} />
      <text x={PAD.left - 6} y={y(high) + 4} text-anchor="end">{format(high)}</text>
      <text x={PAD.left - 6} y={y(low) + 4} text-anchor="end">{format(low)}</text>
      <text x={PAD.left} y={HEIGHT - 4}>{metric}</text>
    </g>
  );
  // a group whose bucket is null (a null date) has no place on a time axis
  const timed = valued.filter((i) => !Number.isNaN(Date.parse(String(i[bucket]))));
  return bucket ? lines(timed, bucket, groups, metric, y, axis) : bars(valued.slice(0, MAX_BARS), groups, metric, y, axis, valued.length);
}

function lines(items: Record<string, unknown>[], bucket: string, groups: string[], metric: string, y: (v: number) => number, axis: preact.JSX.Element) {
  if (items.length === 0) return <p class="hint">Nothing to chart: every bucket is null.</p>;
  const times = items.map((i) => Date.parse(String(i[bucket])));
  const first = Math.min(...times);
  const last = Math.max(...times);
  const x = (t: number) => PAD.left + (WIDTH - PAD.left - PAD.right) * (last === first ? 0.5 : (t - first) / (last - first));
  const series = new Map<string, Record<string, unknown>[]>();
  for (const item of items) {
    const name = label(item, groups);
    if (!series.has(name) && series.size >= MAX_SERIES) continue;
    series.set(name, [...(series.get(name) ?? []), item]);
  }
  const points = [...series.values()].reduce((n, s) => n + s.length, 0);
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} data-kind="line" data-points={points} role="img" aria-label={`${metric} over ${bucket}`}>
        {axis}
        <text x={WIDTH - PAD.right} y={HEIGHT - 4} text-anchor="end">{`${new Date(first).toISOString().slice(0, 10)} … ${new Date(last).toISOString().slice(0, 10)}`}</text>
        {[...series.entries()].map(([name, s], k) => {
          const sorted = [...s].sort((a, b) => Date.parse(String(a[bucket])) - Date.parse(String(b[bucket])));
          const path = sorted.map((i) => `${x(Date.parse(String(i[bucket]))).toFixed(1)},${y(i[metric] as number).toFixed(1)}`).join(" ");
          return (
            <g key={name} class="series" stroke={COLORS[k]} fill={COLORS[k]}>
              <polyline points={path} fill="none" />
              {sorted.map((i, j) => (
                <circle key={j} class="point" r="3" cx={x(Date.parse(String(i[bucket])))} cy={y(i[metric] as number)}>
                  <title>{`${name ? `${name} · ` : ""}${i[bucket]}: ${i[metric]}`}</title>
                </circle>
              ))}
            </g>
          );
        })}
      </svg>
      {series.size > 1 && (
        <figcaption>{[...series.keys()].map((name, k) => <span key={name} style={{ color: COLORS[k] }}>■ {name} </span>)}</figcaption>
      )}
    </figure>
  );
}

function bars(items: Record<string, unknown>[], groups: string[], metric: string, y: (v: number) => number, axis: preact.JSX.Element, total: number) {
  const step = (WIDTH - PAD.left - PAD.right) / items.length;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} data-kind="bar" data-points={items.length} role="img" aria-label={`${metric} per ${groups.join(", ") || "all"}`}>
        {axis}
        {items.map((item, i) => {
          const v = item[metric] as number;
          const top = Math.min(y(v), y(0));
          return (
            <g key={i}>
              <rect class="point" x={PAD.left + i * step + step * 0.1} width={step * 0.8} y={top} height={Math.abs(y(0) - y(v))} fill={COLORS[0]}>
                <title>{`${label(item, groups) || "all"}: ${v}`}</title>
              </rect>
              {items.length <= 24 && (
                <text x={PAD.left + (i + 0.5) * step} y={HEIGHT - PAD.bottom + 14} text-anchor="middle">{label(item, groups)}</text>
              )}
            </g>
          );
        })}
      </svg>
      {total > items.length && <figcaption>the first {items.length} of {total} groups</figcaption>}
    </figure>
  );
}

const format = (v: number) => (Math.abs(v) >= 1e6 ? v.toExponential(2) : Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(2));
