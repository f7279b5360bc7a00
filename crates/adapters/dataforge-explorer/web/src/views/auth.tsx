import { useEffect, useState } from "preact/hooks";
import { call, credential, Problem } from "../api";
import { ShowProblem } from "./problem";

interface Grant {
  dataset: string;
  permissions: string[];
  rule: string | null;
}
interface Credential {
  name: string;
  grants: Grant[];
}

/** Asks for an API key or token when the server refuses without one; it is kept in this tab's
 *  session storage only. */
export function KeyPrompt({ refused, onSaved }: { refused: Problem; onSaved: () => void }) {
  const [secret, setSecret] = useState("");
  return (
    <form
      class="key-prompt"
      onSubmit={(e) => {
        e.preventDefault();
        credential.set(secret.trim());
        onSaved();
      }}
    >
      <h2>This server needs a credential</h2>
      <ShowProblem problem={refused} />
      <label>
        API key or token
        <input
          name="credential"
          type="password"
          autocomplete="off"
          value={secret}
          onInput={(e) => setSecret((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit" disabled={!secret.trim()}>Use it</button>
      <p class="hint">Kept for this browser tab's session only (cleared when the tab closes).</p>
    </form>
  );
}

/** Who the page acts for and what the credential may do. */
export function CredentialBadge({ version, onSignOut }: { version: number; onSignOut: () => void }) {
  const [who, setWho] = useState<Credential | null>(null);
  useEffect(() => {
    call<Credential>("/v1/credential").then(setWho, () => setWho(null));
  }, [version]);
  if (!who) return null;
  return (
    <details class="credential">
      <summary>
        acting as <strong data-testid="credential-name">{who.name}</strong>
      </summary>
      <ul>
        {who.grants.map((g, i) => (
          <li key={i}>
            <code>{g.dataset}</code>: {g.permissions.join(", ")}
            {g.rule && <> (rows where <code>{g.rule}</code>)</>}
          </li>
        ))}
      </ul>
      {credential.get() && (
        <button type="button" onClick={onSignOut}>Forget the credential</button>
      )}
    </details>
  );
}
