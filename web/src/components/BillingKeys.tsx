/**
 * Billing keys (docs/reconciliation.md): the provider admin keys the daily reconciliation reads the
 * organization's usage and cost reports with, to compare each day's bill with the metered usage
 * ("Metered vs billed" on the analytics page). Write-only like the provider keys: a typed key is
 * sent once, then cleared; the page only ever learns whether one is stored. Bedrock's bill comes
 * from the deployment's Cost Explorer and needs no key.
 */
import { useCallback, useEffect, useId, useState } from "react";
import {
  ApiError,
  BILLING_PROVIDERS,
  deleteBillingKey,
  getBillingKeys,
  putBillingKey,
  type BillingKeysResponse,
  type BillingProvider,
} from "../api";
import { providerName } from "../format";
import { CheckIcon, CloudIcon, KeyIcon, SpinnerIcon, TrashIcon } from "./icons";
import { LoadErrorBanner, type Notice, NoticeBanner, Section } from "./ui";

/** What each provider's admin key starts with (the API refuses any other: a project key cannot read the bill). */
const PREFIXES: Record<BillingProvider, string> = { openai: "sk-admin-", anthropic: "sk-ant-admin" };
const EMPTY: Record<BillingProvider, string> = { openai: "", anthropic: "" };

/** Why `key` cannot be an admin key of `provider`, or null. Never quotes the key. */
export function adminKeyProblem(provider: BillingProvider, key: string): string | null {
  if (/\s/.test(key)) return "An admin key has no spaces or line breaks.";
  if (!key.startsWith(PREFIXES[provider])) {
    return `A ${providerName(provider)} admin key starts with ${PREFIXES[provider]}… (a project or API key cannot read the bill).`;
  }
  if (key.length < 16 || key.length > 512) return "An admin key has 16 to 512 characters.";
  return null;
}

function errorLines(err: unknown): string[] {
  if (err instanceof ApiError) {
    return [err.message, ...err.details.map((d) => `${d.loc.filter((p) => p !== "body").join(".")}: ${d.msg}`)];
  }
  return [err instanceof Error ? err.message : String(err)];
}

export default function BillingKeys({ userId }: { userId: string }) {
  const ids = useId();
  const [stored, setStored] = useState<BillingKeysResponse | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  // Typed keys live only in this component's memory until the one request that sends them.
  const [typed, setTyped] = useState<Record<BillingProvider, string>>(EMPTY);
  const [busy, setBusy] = useState<BillingProvider | null>(null);
  const [notice, setNotice] = useState<Notice>(null);

  const load = useCallback(async () => {
    setLoadError(null);
    try {
      setStored(await getBillingKeys(userId));
    } catch (err) {
      setLoadError(errorLines(err)[0] ?? "unknown error");
    }
  }, [userId]);

  useEffect(() => {
    void load();
  }, [load]);

  async function save(event: React.FormEvent, provider: BillingProvider) {
    event.preventDefault();
    const key = typed[provider].trim();
    const problem = adminKeyProblem(provider, key);
    if (problem) {
      setNotice({ kind: "error", title: `Could not store the ${providerName(provider)} admin key`, lines: [problem] });
      return;
    }
    setBusy(provider);
    setNotice(null);
    try {
      setStored(await putBillingKey(userId, provider, key));
      setNotice({
        kind: "success",
        title: `${providerName(provider)} admin key stored`,
        lines: ["It will not be shown again. The next daily reconciliation reads the bill with it."],
      });
    } catch (err) {
      setNotice({ kind: "error", title: `Could not store the ${providerName(provider)} admin key`, lines: errorLines(err) });
    } finally {
      // Cleared whatever the answer: a key is typed again rather than kept in the page.
      setTyped((current) => ({ ...current, [provider]: "" }));
      setBusy(null);
    }
  }

  async function remove(provider: BillingProvider) {
    const name = providerName(provider);
    if (!window.confirm(`Remove the stored ${name} admin key? The reconciliation stops reading ${name}'s bill.`)) return;
    setBusy(provider);
    setNotice(null);
    try {
      const answer = await deleteBillingKey(userId, provider);
      setStored({ hasAdminKeys: answer.hasAdminKeys, bedrock: answer.bedrock });
      setNotice({ kind: "success", title: `${name} admin key removed`, lines: ["Reconciliation rows already stored are kept."] });
    } catch (err) {
      setNotice({ kind: "error", title: `Could not remove the ${name} admin key`, lines: errorLines(err) });
    } finally {
      setBusy(null);
    }
  }

  return (
    <Section
      id="billing-keys"
      title="Billing Keys"
      description="Admin keys that let the daily reconciliation read your organization's usage and cost reports and compare them with what llmtally metered (Metered vs billed, on the analytics page). Stored encrypted in AWS Secrets Manager, never shown again, and used for nothing else."
    >
      <div className="space-y-4">
        <LoadErrorBanner title="Could not load your billing keys" error={loadError} onRetry={() => void load()} />
        <NoticeBanner notice={notice} />
        {stored === null && !loadError ? (
          <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
            <SpinnerIcon className="h-4 w-4" />
            <span className="sr-only">Loading your billing keys…</span>
          </div>
        ) : null}
        {stored
          ? BILLING_PROVIDERS.map((provider) => {
              const inputId = `${ids}-${provider}`;
              const has = stored.hasAdminKeys[provider];
              const name = providerName(provider);
              return (
                <form
                  key={provider}
                  className="rounded-lg border border-mono-200 p-4 dark:border-mono-800"
                  data-testid={`billing-key-${provider}`}
                  onSubmit={(event) => void save(event, provider)}
                >
                  <div className="mb-3 flex flex-wrap items-center justify-between gap-2">
                    <span className="flex items-center gap-2">
                      <span className="font-medium text-mono-900 dark:text-mono-100">{name}</span>
                      {has ? (
                        <span className="inline-flex items-center gap-1 rounded bg-mono-900 px-2 py-0.5 text-xs text-mono-50 dark:bg-mono-100 dark:text-mono-950">
                          <KeyIcon className="h-3 w-3" />
                          Stored
                        </span>
                      ) : (
                        <span className="muted text-xs">Not stored</span>
                      )}
                    </span>
                    {has ? (
                      <button
                        type="button"
                        className="btn-secondary"
                        disabled={busy !== null}
                        aria-label={`Remove the stored ${name} admin key`}
                        onClick={() => void remove(provider)}
                      >
                        <TrashIcon className="h-4 w-4" />
                        Remove
                      </button>
                    ) : null}
                  </div>
                  <label htmlFor={inputId} className="label">
                    {name} admin key
                  </label>
                  <div className="flex flex-wrap gap-2">
                    <input
                      id={inputId}
                      type="password"
                      name={`${provider}-admin-key`}
                      autoComplete="off"
                      autoCapitalize="off"
                      autoCorrect="off"
                      spellCheck={false}
                      maxLength={512}
                      className="input min-w-64 grow font-mono"
                      value={typed[provider]}
                      onChange={(event) => setTyped((current) => ({ ...current, [provider]: event.target.value }))}
                      placeholder={
                        has ? "•••••••••••••••• stored — type a new key to replace it" : `${PREFIXES[provider]}…`
                      }
                      aria-describedby={`${inputId}-help`}
                    />
                    <button type="submit" className="btn-primary" disabled={busy !== null || !typed[provider].trim()}>
                      {busy === provider ? <SpinnerIcon className="h-4 w-4" /> : <CheckIcon className="h-4 w-4" />}
                      {has ? "Replace" : "Store"}
                    </button>
                  </div>
                  <p id={`${inputId}-help`} className="muted mt-1 text-xs">
                    {provider === "openai"
                      ? "An organization admin key (sk-admin-…), from the OpenAI platform's admin keys page."
                      : "An Admin API key (sk-ant-admin…), from the Anthropic Console's admin keys page."}{" "}
                    Sent once, then cleared from this page.
                  </p>
                </form>
              );
            })
          : null}
        {stored ? (
          <p className="muted flex items-start gap-2 text-sm">
            <CloudIcon className="mt-0.5 h-4 w-4 shrink-0" />
            No key for AWS Bedrock: its bill is read from the deployment's Cost Explorer when the deployment turns that
            source on.
          </p>
        ) : null}
      </div>
    </Section>
  );
}
