import { useCallback, useEffect, useId, useMemo, useState } from "react";
import {
  ApiError,
  deleteKey,
  getModels,
  getSettings,
  KEYED_PROVIDERS,
  PROVIDERS,
  saveSettings,
  testConnection,
  type CatalogModel,
  type CatalogProvider,
  type ConnectionTestResult,
  type HasApiKeys,
  type Preferences,
  type Provider,
} from "../api";
import { CheckIcon, CloudIcon, KeyIcon, SpinnerIcon, TrashIcon, XIcon, ZapIcon } from "../components/icons";
import BillingKeys from "../components/BillingKeys";
import BudgetSettings from "../components/BudgetSettings";
import TagBudgets from "../components/TagBudgets";
import IngestKeys from "../components/IngestKeys";
import { Banner, LoadErrorBanner, type Notice, NoticeBanner, Section } from "../components/ui";
import { formatPrice, formatUsd, providerName } from "../format";

/** What the API accepts (docs/api.md): Anthropic and Bedrock 0–1, OpenAI and Gemini 0–2. */
const MAX_TEMPERATURE: Record<Provider, number> = { anthropic: 1, bedrock: 1, openai: 2, google: 2 };
const MAX_TOKENS_LIMIT = 128_000;

const DEFAULT_PREFERENCES: Preferences = {
  defaultProvider: "bedrock",
  queryModel: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
  detectionModel: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
  maxTokens: 2000,
  temperature: 0,
  // The response cache is opt-in (issue #9): off until the user turns it on.
  enableCaching: false,
  trackUsage: true,
};
const NO_KEYS: HasApiKeys = { anthropic: false, openai: false, google: false, bedrock: false };
const EMPTY_KEYS: Record<Provider, string> = { anthropic: "", openai: "", google: "", bedrock: "" };

type TestState = { running: boolean; result: ConnectionTestResult | null };

function describeError(err: unknown): { title: string; lines: string[] } {
  if (err instanceof ApiError) {
    return { title: err.message, lines: err.details.map((d) => `${d.loc.filter((p) => p !== "body").join(".")}: ${d.msg}`) };
  }
  return { title: err instanceof Error ? err.message : String(err), lines: [] };
}

function modelLabel(model: CatalogModel): string {
  const price =
    model.priceSource === "unpriced"
      ? "unpriced"
      : `${formatPrice(model.pricing.input)} / ${formatPrice(model.pricing.output)} per 1M tokens`;
  return `${model.name} — ${price}`;
}

function firstModel(catalog: CatalogProvider | undefined): string | undefined {
  return (catalog?.models.find((m) => m.status === "current") ?? catalog?.models[0])?.id;
}

export default function LLMConfiguration({ userId }: { userId: string }) {
  const [prefs, setPrefs] = useState<Preferences>(DEFAULT_PREFERENCES);
  const [hasApiKeys, setHasApiKeys] = useState<HasApiKeys>(NO_KEYS);
  const [catalog, setCatalog] = useState<CatalogProvider[]>([]);
  const [loading, setLoading] = useState(true);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [catalogError, setCatalogError] = useState<string | null>(null);
  // Typed keys live only in this component's memory until the one request that sends them.
  const [keys, setKeys] = useState<Record<Provider, string>>(EMPTY_KEYS);
  const [tests, setTests] = useState<Partial<Record<Provider, TestState>>>({});
  const [saving, setSaving] = useState(false);
  const [notice, setNotice] = useState<Notice>(null);
  const [confirmRemove, setConfirmRemove] = useState<Provider | null>(null);
  const [removing, setRemoving] = useState<Provider | null>(null);
  const ids = useId();

  const load = useCallback(async () => {
    setLoading(true);
    setLoadError(null);
    const [settings, models] = await Promise.allSettled([getSettings(userId), getModels()]);
    if (settings.status === "fulfilled") {
      setPrefs(settings.value.preferences);
      setHasApiKeys(settings.value.hasApiKeys);
    } else {
      setLoadError(describeError(settings.reason).title);
    }
    if (models.status === "fulfilled") {
      setCatalog(models.value.providers);
      setCatalogError(null);
    } else {
      setCatalogError(describeError(models.reason).title);
    }
    setLoading(false);
  }, [userId]);

  useEffect(() => {
    void load();
  }, [load]);

  const byId = useMemo(() => new Map(catalog.map((p) => [p.id, p])), [catalog]);
  const providerCatalog = byId.get(prefs.defaultProvider);
  const models = providerCatalog?.models ?? [];
  const modelById = useMemo(() => new Map(models.map((m) => [m.id, m])), [models]);

  const selectProvider = (provider: Provider) => {
    setPrefs((current) => {
      if (current.defaultProvider === provider) return current;
      const offered = new Set(byId.get(provider)?.models.map((m) => m.id));
      const fallback = firstModel(byId.get(provider)) ?? current.queryModel;
      return {
        ...current,
        defaultProvider: provider,
        queryModel: offered.has(current.queryModel) ? current.queryModel : fallback,
        detectionModel: offered.has(current.detectionModel) ? current.detectionModel : fallback,
        temperature: Math.min(current.temperature, MAX_TEMPERATURE[provider]),
      };
    });
  };

  const runTest = async (provider: Provider) => {
    const typed = keys[provider].trim();
    setTests((t) => ({ ...t, [provider]: { running: true, result: null } }));
    let result: ConnectionTestResult;
    try {
      result = await testConnection(userId, provider, {
        apiKey: typed || undefined,
        model: provider === prefs.defaultProvider ? prefs.queryModel : undefined,
      });
    } catch (err) {
      const { title } = describeError(err);
      result = { success: false, provider, message: title, error: title };
    }
    setTests((t) => ({ ...t, [provider]: { running: false, result } }));
  };

  const validationProblem = (): string | null => {
    if (!Number.isInteger(prefs.maxTokens) || prefs.maxTokens < 1 || prefs.maxTokens > MAX_TOKENS_LIMIT) {
      return `Max tokens must be a whole number between 1 and ${MAX_TOKENS_LIMIT.toLocaleString("en-US")}.`;
    }
    const limit = MAX_TEMPERATURE[prefs.defaultProvider];
    if (Number.isNaN(prefs.temperature) || prefs.temperature < 0 || prefs.temperature > limit) {
      return `Temperature for ${providerName(prefs.defaultProvider)} must be between 0 and ${limit}.`;
    }
    return null;
  };

  const save = async () => {
    setNotice(null);
    const problem = validationProblem();
    if (problem) {
      setNotice({ kind: "error", title: problem });
      return;
    }
    const apiKeys: Partial<Record<Provider, string>> = {};
    for (const provider of KEYED_PROVIDERS) {
      const typed = keys[provider].trim();
      if (typed) apiKeys[provider] = typed;
    }
    setSaving(true);
    try {
      const saved = await saveSettings(userId, prefs, apiKeys);
      setPrefs(saved.preferences);
      setHasApiKeys(saved.hasApiKeys);
      setKeys(EMPTY_KEYS);
      const stored = Object.keys(apiKeys).map(providerName);
      setNotice({
        kind: "success",
        title: "Settings saved successfully",
        lines: stored.length ? [`API key stored for ${stored.join(", ")}. It will not be shown again.`] : [],
      });
    } catch (err) {
      const { title, lines } = describeError(err);
      setNotice({ kind: "error", title: `Could not save: ${title}`, lines });
    } finally {
      setSaving(false);
    }
  };

  const removeKey = async (provider: Provider) => {
    setRemoving(provider);
    setNotice(null);
    try {
      const answer = await deleteKey(userId, provider);
      setHasApiKeys(answer.hasApiKeys);
      setTests((t) => ({ ...t, [provider]: { running: false, result: null } }));
      setNotice({ kind: "success", title: `${providerName(provider)} API key removed` });
    } catch (err) {
      setNotice({ kind: "error", title: `Could not remove the key: ${describeError(err).title}` });
    } finally {
      setRemoving(null);
      setConfirmRemove(null);
    }
  };

  if (loading) {
    return (
      <div className="card flex items-center justify-center py-12" role="status" aria-live="polite">
        <SpinnerIcon className="h-6 w-6 text-mono-500" />
        <span className="sr-only">Loading settings…</span>
      </div>
    );
  }

  const preview = (id: string) => modelById.get(id)?.costPreviewUsd ?? null;
  const tempLimit = MAX_TEMPERATURE[prefs.defaultProvider];

  return (
    <div className="space-y-6">
      <div>
        <h1 className="mb-1 text-2xl font-bold text-mono-950 dark:text-mono-50">LLM Configuration</h1>
        <p className="muted">
          Choose a provider, bring your own API key, pick the models per operation and see what they cost.
        </p>
      </div>

      <LoadErrorBanner title="Could not load your settings" error={loadError} onRetry={() => void load()} />
      <NoticeBanner notice={notice} />

      <Section id="provider" title="Default Provider" description="The provider llmtally calls for your requests.">
        <div className="grid grid-cols-1 gap-3 min-[420px]:grid-cols-2 md:grid-cols-4" role="group" aria-label="Default provider">
          {PROVIDERS.map((provider) => {
            const selected = prefs.defaultProvider === provider;
            const result = tests[provider]?.result;
            return (
              <button
                key={provider}
                type="button"
                aria-pressed={selected}
                data-testid={`provider-card-${provider}`}
                onClick={() => selectProvider(provider)}
                className={`rounded-lg border-2 p-4 text-left transition-colors ${
                  selected
                    ? "border-mono-950 bg-mono-100 dark:border-mono-50 dark:bg-mono-850"
                    : "border-mono-200 hover:border-mono-400 dark:border-mono-800 dark:hover:border-mono-600"
                }`}
              >
                <span className="mb-1 flex items-center justify-between gap-2">
                  <span className="font-medium text-mono-900 dark:text-mono-100">{providerName(provider)}</span>
                  {selected ? <CheckIcon className="h-4 w-4" title="Selected" /> : null}
                </span>
                <span className="muted block text-xs">
                  {provider === "bedrock" ? "Uses AWS credentials" : "Bring your own API key"}
                </span>
                <span className="mt-2 flex flex-wrap items-center gap-2 text-xs">
                  {hasApiKeys[provider] ? (
                    <span className="inline-flex items-center gap-1 rounded bg-mono-900 px-2 py-0.5 text-mono-50 dark:bg-mono-100 dark:text-mono-950">
                      <KeyIcon className="h-3 w-3" />
                      Configured
                    </span>
                  ) : null}
                  {result ? (
                    <span className="inline-flex items-center gap-1 text-mono-700 dark:text-mono-300">
                      {result.success ? <CheckIcon className="h-3 w-3" /> : <XIcon className="h-3 w-3" />}
                      {result.success ? "Connected" : "Test failed"}
                    </span>
                  ) : null}
                </span>
              </button>
            );
          })}
        </div>
      </Section>

      <Section
        id="keys"
        title="API Keys"
        description="Keys are stored encrypted in AWS Secrets Manager and never shown again — not even to you. AWS Bedrock uses the deployment's AWS credentials."
      >
        <div className="space-y-4">
          {PROVIDERS.map((provider) => {
            const inputId = `${ids}-key-${provider}`;
            const test = tests[provider];
            const keyed = KEYED_PROVIDERS.includes(provider);
            const canTest = keyed ? Boolean(keys[provider].trim()) || hasApiKeys[provider] : hasApiKeys[provider];
            return (
              <div
                key={provider}
                className="rounded-lg border border-mono-200 p-4 dark:border-mono-800"
                data-testid={`key-panel-${provider}`}
              >
                <div className="mb-3 flex flex-wrap items-center justify-between gap-2">
                  <div className="flex items-center gap-2">
                    <span className="font-medium text-mono-900 dark:text-mono-100">{providerName(provider)}</span>
                    {hasApiKeys[provider] ? (
                      <span className="inline-flex items-center gap-1 rounded bg-mono-900 px-2 py-0.5 text-xs text-mono-50 dark:bg-mono-100 dark:text-mono-950">
                        <KeyIcon className="h-3 w-3" />
                        Configured
                      </span>
                    ) : null}
                  </div>
                  <div className="flex items-center gap-2">
                    {keyed && hasApiKeys[provider] && confirmRemove !== provider ? (
                      <button
                        type="button"
                        className="btn-secondary"
                        onClick={() => setConfirmRemove(provider)}
                        aria-label={`Remove the stored ${providerName(provider)} key`}
                      >
                        <TrashIcon className="h-4 w-4" />
                        Remove key
                      </button>
                    ) : null}
                    <button
                      type="button"
                      className="btn-secondary"
                      onClick={() => void runTest(provider)}
                      disabled={!canTest || test?.running}
                      aria-label={`Test ${providerName(provider)} connection`}
                      title={canTest ? undefined : "Enter or store a key first"}
                    >
                      {test?.running ? <SpinnerIcon className="h-4 w-4" /> : <ZapIcon className="h-4 w-4" />}
                      {test?.running ? "Testing…" : "Test"}
                    </button>
                  </div>
                </div>

                {confirmRemove === provider ? (
                  <div
                    className="mb-3 flex flex-wrap items-center gap-2 rounded-md border border-mono-300 bg-mono-100 p-3 text-sm dark:border-mono-700 dark:bg-mono-850"
                    role="group"
                    aria-label="Confirm key removal"
                  >
                    <span className="mr-auto">Remove the stored {providerName(provider)} key? This cannot be undone.</span>
                    <button
                      type="button"
                      className="btn-primary !py-1.5"
                      onClick={() => void removeKey(provider)}
                      disabled={removing === provider}
                    >
                      {removing === provider ? <SpinnerIcon className="h-4 w-4" /> : null}
                      Remove
                    </button>
                    <button type="button" className="btn-secondary" onClick={() => setConfirmRemove(null)}>
                      Cancel
                    </button>
                  </div>
                ) : null}

                {keyed ? (
                  <div>
                    <label htmlFor={inputId} className="label">
                      {providerName(provider)} API key
                    </label>
                    <input
                      id={inputId}
                      type="password"
                      name={`${provider}-api-key`}
                      autoComplete="off"
                      autoCapitalize="off"
                      autoCorrect="off"
                      spellCheck={false}
                      value={keys[provider]}
                      onChange={(event) => setKeys((k) => ({ ...k, [provider]: event.target.value }))}
                      placeholder={
                        hasApiKeys[provider]
                          ? "•••••••••••••••• stored — type a new key to replace it"
                          : `Enter ${providerName(provider)} API key…`
                      }
                      className="input font-mono"
                      aria-describedby={`${inputId}-help`}
                    />
                    <p id={`${inputId}-help`} className="muted mt-1 text-xs">
                      Sent once when you save (or test it), then cleared from this page.
                    </p>
                  </div>
                ) : (
                  <p className="muted flex items-start gap-2 text-sm">
                    <CloudIcon className="mt-0.5 h-4 w-4 shrink-0" />
                    No key to enter: Bedrock is called with the deployment's AWS credentials (its IAM role).
                    {hasApiKeys.bedrock ? "" : " This deployment cannot call Bedrock."}
                  </p>
                )}

                {test?.result ? (
                  <div
                    role="status"
                    data-testid={`test-result-${provider}`}
                    className="mt-3 flex items-start gap-2 rounded border border-mono-300 bg-mono-100 p-2 text-sm dark:border-mono-700 dark:bg-mono-850"
                  >
                    {test.result.success ? (
                      <>
                        <CheckIcon className="mt-0.5 h-4 w-4 shrink-0 text-mono-900 dark:text-mono-100" />
                        <span className="text-mono-900 dark:text-mono-100">
                          Connection successful
                          {test.result.latency_ms != null ? ` (${Math.round(test.result.latency_ms)}ms)` : ""}
                        </span>
                      </>
                    ) : (
                      <>
                        <XIcon className="mt-0.5 h-4 w-4 shrink-0 text-mono-700 dark:text-mono-300" />
                        <span className="break-words text-mono-700 dark:text-mono-300">
                          Connection failed: {test.result.error || test.result.message}
                        </span>
                      </>
                    )}
                  </div>
                ) : null}
              </div>
            );
          })}
        </div>
      </Section>

      <Section
        id="models"
        title="Model Selection"
        description={`Models offered by ${providerName(prefs.defaultProvider)}, with prices per 1M tokens from the price book.`}
      >
        {catalogError ? (
          <Banner kind="error" title="Could not load the model catalog">
            {catalogError}
          </Banner>
        ) : null}
        <div className="grid grid-cols-1 gap-4 md:grid-cols-2">
          {(
            [
              ["queryModel", "Query Generation Model"],
              ["detectionModel", "Detection Rule Model"],
            ] as const
          ).map(([field, label]) => {
            const selectId = `${ids}-${field}`;
            const value = prefs[field];
            const known = modelById.has(value);
            return (
              <div key={field}>
                <label htmlFor={selectId} className="label">
                  {label}
                </label>
                <select
                  id={selectId}
                  className="input"
                  value={value}
                  onChange={(event) => setPrefs((p) => ({ ...p, [field]: event.target.value }))}
                >
                  {!known ? <option value={value}>{value}</option> : null}
                  <optgroup label="Current">
                    {models
                      .filter((m) => m.status === "current")
                      .map((m) => (
                        <option key={m.id} value={m.id}>
                          {modelLabel(m)}
                        </option>
                      ))}
                  </optgroup>
                  {models.some((m) => m.status === "legacy") ? (
                    <optgroup label="Legacy">
                      {models
                        .filter((m) => m.status === "legacy")
                        .map((m) => (
                          <option key={m.id} value={m.id}>
                            {modelLabel(m)}
                          </option>
                        ))}
                    </optgroup>
                  ) : null}
                </select>
              </div>
            );
          })}
        </div>

        <div
          className="mt-4 rounded-lg border border-mono-200 bg-mono-50 p-3 dark:border-mono-800 dark:bg-mono-850"
          aria-live="polite"
          data-testid="cost-preview"
        >
          <p className="muted mb-2 text-xs">Estimated cost (1M input + 1M output tokens)</p>
          <dl className="grid grid-cols-2 gap-3">
            <div>
              <dt className="text-xs text-mono-600 dark:text-mono-400">Query Model</dt>
              <dd className="text-lg font-bold text-mono-950 dark:text-mono-50" data-testid="cost-preview-query">
                {preview(prefs.queryModel) === null ? "unpriced" : formatUsd(preview(prefs.queryModel))}
              </dd>
            </div>
            <div>
              <dt className="text-xs text-mono-600 dark:text-mono-400">Detection Model</dt>
              <dd className="text-lg font-bold text-mono-950 dark:text-mono-50" data-testid="cost-preview-detection">
                {preview(prefs.detectionModel) === null ? "unpriced" : formatUsd(preview(prefs.detectionModel))}
              </dd>
            </div>
          </dl>
        </div>
      </Section>

      <Section id="advanced" title="Advanced Settings">
        <div className="grid grid-cols-1 gap-4 md:grid-cols-2">
          <div>
            <label htmlFor={`${ids}-max-tokens`} className="label">
              Max Tokens
            </label>
            <input
              id={`${ids}-max-tokens`}
              type="number"
              inputMode="numeric"
              className="input"
              min={1}
              max={MAX_TOKENS_LIMIT}
              step={100}
              value={Number.isNaN(prefs.maxTokens) ? "" : prefs.maxTokens}
              onChange={(event) => setPrefs((p) => ({ ...p, maxTokens: event.target.valueAsNumber }))}
              aria-describedby={`${ids}-max-tokens-help`}
            />
            <p id={`${ids}-max-tokens-help`} className="muted mt-1 text-xs">
              Most tokens a response may use (1–{MAX_TOKENS_LIMIT.toLocaleString("en-US")}).
            </p>
          </div>
          <div>
            <label htmlFor={`${ids}-temperature`} className="label">
              Temperature
            </label>
            <input
              id={`${ids}-temperature`}
              type="number"
              inputMode="decimal"
              className="input"
              min={0}
              max={tempLimit}
              step={0.1}
              value={Number.isNaN(prefs.temperature) ? "" : prefs.temperature}
              onChange={(event) => setPrefs((p) => ({ ...p, temperature: event.target.valueAsNumber }))}
              aria-describedby={`${ids}-temperature-help`}
            />
            <p id={`${ids}-temperature-help`} className="muted mt-1 text-xs">
              Randomness, 0 (deterministic) to {tempLimit} for {providerName(prefs.defaultProvider)}.
            </p>
          </div>
        </div>
        <div className="mt-4 space-y-2">
          <label className="flex items-start gap-3 text-sm">
            <input
              type="checkbox"
              className="mt-0.5 h-4 w-4 accent-mono-900 dark:accent-mono-100"
              checked={prefs.enableCaching}
              onChange={(event) => setPrefs((p) => ({ ...p, enableCaching: event.target.checked }))}
              aria-describedby={`${ids}-caching-help`}
            />
            <span>
              Enable response cache
              <span id={`${ids}-caching-help`} className="muted block text-xs">
                Identical temperature-0 requests are answered from a cache for 1 hour; hits cost nothing and are shown
                on the analytics page.
              </span>
            </span>
          </label>
          <label className="flex items-center gap-3 text-sm">
            <input
              type="checkbox"
              className="h-4 w-4 accent-mono-900 dark:accent-mono-100"
              checked={prefs.trackUsage}
              onChange={(event) => setPrefs((p) => ({ ...p, trackUsage: event.target.checked }))}
            />
            Track usage and costs
          </label>
        </div>
      </Section>

      <div className="flex justify-end">
        <button type="button" className="btn-primary w-full sm:w-auto" onClick={() => void save()} disabled={saving}>
          {saving ? <SpinnerIcon className="h-4 w-4" /> : <CheckIcon className="h-4 w-4" />}
          {saving ? "Saving…" : "Save Settings"}
        </button>
      </div>

      <BudgetSettings userId={userId} catalog={catalog} />

      <TagBudgets userId={userId} catalog={catalog} />

      <IngestKeys userId={userId} />

      <BillingKeys userId={userId} />
    </div>
  );
}
