import { Problem } from "../api";

/** An API error next to what caused it: its title and detail, the parameter at fault and the
 *  listed violations. */
export function ShowProblem({ problem }: { problem: Problem | null }) {
  if (!problem) return null;
  const errors = problem.errors;
  const total = typeof problem.body.total_errors === "number" ? problem.body.total_errors : errors.length;
  return (
    <div class="problem" role="alert" data-status={problem.status}>
      <strong class="problem-title">{problem.title}</strong>
      {problem.status > 0 && <span class="problem-status"> ({problem.status})</span>}
      <div class="problem-detail">{problem.detail}</div>
      {problem.parameter && (
        <div class="problem-parameter">
          parameter: <code>{problem.parameter}</code>
        </div>
      )}
      {errors.length > 0 && (
        <table class="problem-errors">
          <thead>
            <tr><th>row</th><th>field</th><th>code</th><th>message</th></tr>
          </thead>
          <tbody>
            {errors.map((e, i) => (
              <tr key={i}>
                <td>{e.row}</td><td>{e.field ?? ""}</td><td>{e.code}</td><td>{e.message}</td>
              </tr>
            ))}
          </tbody>
          {total > errors.length && <caption>{errors.length} of {total} errors shown</caption>}
        </table>
      )}
    </div>
  );
}
