/**
 * Ingest keys (docs/ingest.md): bearer keys that let services in any language post usage events
 * (`POST /api/usage-events`) or export OpenTelemetry GenAI spans (`POST /api/otel/v1/traces`).
 * A new key is shown once, right after it is created; the list shows each key's name, hint,
 * creation and last use, and revokes it (immediately: its next request is refused).
 */
import { useCallback, useEffect, useId, useState } from "react";
import {
  ApiError,
  createIngestKey,
  getIngestKeys,
  revokeIngestKey,
  type IngestKeyCreated,
  type IngestKeysResponse,
} from "../api";
import { KeyIcon, SpinnerIcon, TrashIcon } from "./icons";
import { LoadErrorBanner, type Notice, NoticeBanner, Section } from "./ui";

/** What the API accepts as a key's name (docs/ingest.md). */
const NAME = /^[A-Za-z0-9_.:@/+=#()-](?:[A-Za-z0-9 _.:@/+=#()-]{0,62}[A-Za-z0-9_.:@/+=#()-])?$/;

export function nameProblem(name: string): string | null {
  if (!name.trim()) return "Give the key a name, like the service that will use it.";
  if (!NAME.test(name.trim())) return "Use 1–64 letters, digits, spaces or _ . : @ / + = # ( ) -.";
  return null;
}

function when(iso: string | null): string {
  if (!iso) return "Never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export default function IngestKeys({ userId }: { userId: string }) {
  const ids = useId();
  const [keys, setKeys] = useState<IngestKeysResponse | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<Notice>(null);
  const [created, setCreated] = useState<IngestKeyCreated | null>(null);
  const [copied, setCopied] = useState(false);

  const load = useCallback(async () => {
    setLoadError(null);
    try {
      setKeys(await getIngestKeys(userId));
    } catch (err) {
      setLoadError(err instanceof ApiError || err instanceof Error ? err.message : String(err));
    }
  }, [userId]);

  useEffect(() => {
    void load();
  }, [load]);

  async function create(event: React.FormEvent) {
    event.preventDefault();
    const problem = nameProblem(name);
    if (problem) {
      setNotice({ kind: "error", title: "Could not create the key", lines: [problem] });
      return;
    }
    setBusy(true);
    setNotice(null);
    setCopied(false);
    try {
      const key = await createIngestKey(userId, name.trim());
      setCreated(key);
      setName("");
      await load();
    } catch (err) {
      setNotice({ kind: "error", title: "Could not create the key", lines: [err instanceof Error ? err.message : String(err)] });
    } finally {
      setBusy(false);
    }
  }

  async function revoke(keyId: string, keyName: string) {
    if (!window.confirm(`Revoke "${keyName}"? Services using it will be refused from their next request.`)) return;
    setBusy(true);
    setNotice(null);
    try {
      await revokeIngestKey(userId, keyId);
      if (created?.key_id === keyId) setCreated(null);
      setNotice({ kind: "success", title: `Revoked "${keyName}"` });
      await load();
    } catch (err) {
      setNotice({ kind: "error", title: "Could not revoke the key", lines: [err instanceof Error ? err.message : String(err)] });
    } finally {
      setBusy(false);
    }
  }

  async function copy() {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  }

  const full = keys !== null && keys.keys.length >= keys.max_keys;
  return (
    <Section
      id="ingest-keys"
      title="Ingest Keys"
      description="Keys for services that post usage over HTTP or export OpenTelemetry GenAI spans (see docs/ingest.md). A key is shown once."
    >
      <div className="space-y-4">
        {loadError ? <LoadErrorBanner title="Could not load your ingest keys" error={loadError} onRetry={() => void load()} /> : null}
        <NoticeBanner notice={notice} />
        {created ? (
          <div role="status" className="rounded-lg border border-mono-300 p-4 dark:border-mono-700">
            <p className="font-medium">Copy “{created.name}” now: it will not be shown again.</p>
            <div className="mt-2 flex flex-wrap items-center gap-2">
              <code data-testid="new-ingest-key" className="break-all rounded bg-mono-100 px-2 py-1 text-sm dark:bg-mono-850">
                {created.key}
              </code>
              <button type="button" className="btn-secondary" onClick={() => void copy()}>
                {copied ? "Copied" : "Copy"}
              </button>
              <button type="button" className="btn-secondary" onClick={() => setCreated(null)}>
                Done
              </button>
            </div>
          </div>
        ) : null}
        <form className="flex flex-wrap items-end gap-2" onSubmit={(event) => void create(event)}>
          <div className="min-w-64 grow">
            <label htmlFor={`${ids}-name`} className="label">
              New key name
            </label>
            <input
              id={`${ids}-name`}
              className="input"
              value={name}
              maxLength={64}
              placeholder="checkout-service"
              onChange={(event) => setName(event.target.value)}
            />
          </div>
          <button type="submit" className="btn-primary" disabled={busy || full}>
            {busy ? <SpinnerIcon className="h-4 w-4 animate-spin" /> : <KeyIcon className="h-4 w-4" />}
            Create key
          </button>
        </form>
        {full ? <p className="muted text-sm">At most {keys?.max_keys} keys: revoke one to create another.</p> : null}
        {keys && keys.keys.length === 0 ? <p className="muted text-sm">No ingest keys yet.</p> : null}
        {keys && keys.keys.length > 0 ? (
          <table className="w-full text-left text-sm">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.keys.map((key) => (
                <tr key={key.key_id}>
                  <td>
                    {key.name}
                    {key.all_tenants ? <span className="muted"> (all tenants)</span> : null}
                  </td>
                  <td>
                    <code>{key.hint}</code>
                  </td>
                  <td>{when(key.created_at)}</td>
                  <td>{when(key.last_used_at)}</td>
                  <td className="text-right">
                    <button
                      type="button"
                      className="btn-secondary"
                      disabled={busy}
                      aria-label={`Revoke ${key.name}`}
                      onClick={() => void revoke(key.key_id, key.name)}
                    >
                      <TrashIcon className="h-4 w-4" />
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </div>
    </Section>
  );
}
