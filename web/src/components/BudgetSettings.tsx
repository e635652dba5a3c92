import { memo, useCallback, useEffect, useId, useMemo, useState } from "react";
import {
  ApiError,
  BUDGET_ACTIONS,
  deleteBudget,
  getBudget,
  PROVIDERS,
  saveBudget,
  type Budget,
  type BudgetAction,
  type BudgetInput,
  type BudgetResponse,
  type CatalogProvider,
  type Provider,
} from "../api";
import { BUDGET_STATE_LABELS, browserTimezone, formatUsd, monthName, providerName, timezones } from "../format";
import AlertEmailField from "./AlertEmailField";
import { CheckIcon, KeyIcon, SpinnerIcon, TrashIcon } from "./icons";
import StrictModeField, { strictWith } from "./StrictModeField";
import { LoadErrorBanner, type Notice, NoticeBanner, Section } from "./ui";

/** What the API accepts (docs/api.md): 1–10 distinct whole percents, 1..1000. */
export const DEFAULT_THRESHOLDS = [50, 80, 100];
const MAX_THRESHOLDS = 10;
const MAX_THRESHOLD = 1000;
/** Storage is integer nano-USD, so a limit has at most 9 decimals. */
const AMOUNT = /^\d+(\.\d{1,9})?$/;

const ACTION_LABELS: Record<BudgetAction, string> = {
  notify: "Notify only",
  block: "Block further calls",
  switch: "Switch to another model",
};


type Form = {
  limit: string;
  timezone: string;
  thresholds: string;
  action: BudgetAction;
  switchProvider: Provider | "";
  switchModel: string;
  strict: boolean;
  /** Write-only: typed here, sent once in the PUT, then cleared; never filled from the API. */
  webhook: string;
  removeWebhook: boolean;
  /** A new alert address (the stored one is shown beside the field, not in it). */
  email: string;
  removeEmail: boolean;
};
type Field = "limit" | "thresholds" | "switchModel" | "webhook" | "email";

/** 30 → "30", 1e-7 → "0.0000001": the limit as the user would type it (never exponent notation). */
export function plainDecimal(value: number): string {
  const text = String(value);
  return /e/i.test(text) ? value.toFixed(9).replace(/\.?0+$/, "") : text;
}

function formFrom(budget: Budget | null): Form {
  return {
    limit: budget ? plainDecimal(budget.monthlyLimitUsd) : "",
    timezone: budget?.timezone ?? browserTimezone(),
    thresholds: (budget?.thresholds ?? DEFAULT_THRESHOLDS).join(", "),
    action: budget?.action ?? "notify",
    switchProvider: budget?.switchTo?.provider ?? "",
    switchModel: budget?.switchTo?.model ?? "",
    strict: budget?.strict ?? false,
    webhook: "",
    removeWebhook: false,
    email: "",
    removeEmail: false,
  };
}

/** "50, 80 100" → [50, 80, 100], or the reason it is not a valid threshold list. */
export function parseThresholds(text: string): number[] | string {
  const parts = text
    .split(/[\s,;]+/)
    .map((p) => p.replace(/%$/, ""))
    .filter(Boolean);
  if (parts.length === 0) return "Enter at least one threshold, like 50, 80, 100.";
  if (parts.length > MAX_THRESHOLDS) return `Enter at most ${MAX_THRESHOLDS} thresholds.`;
  const values: number[] = [];
  for (const part of parts) {
    if (!/^\d+$/.test(part)) return "Thresholds are whole percents, like 50, 80, 100.";
    const value = Number(part);
    if (value < 1 || value > MAX_THRESHOLD) return `Each threshold is between 1 and ${MAX_THRESHOLD} percent.`;
    if (values.includes(value)) return `${value}% is listed twice.`;
    values.push(value);
  }
  return values.sort((a, b) => a - b);
}

function describeError(err: unknown): { title: string; lines: string[] } {
  if (err instanceof ApiError) {
    return { title: err.message, lines: err.details.map((d) => `${d.loc.filter((p) => p !== "body").join(".")}: ${d.msg}`) };
  }
  return { title: err instanceof Error ? err.message : String(err), lines: [] };
}

/**
 * The "Monthly budget" section of the configuration page: its own load, Save and Remove, apart
 * from the preferences form. A Slack webhook URL is handled like an API key: typed, sent once in
 * the PUT, cleared, and afterwards only "stored" is shown (the API never returns it).
 */
function BudgetSettings({ userId, catalog }: { userId: string; catalog: CatalogProvider[] }) {
  const [server, setServer] = useState<BudgetResponse | null>(null);
  const [form, setForm] = useState<Form>(() => formFrom(null));
  const [loading, setLoading] = useState(true);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [notice, setNotice] = useState<Notice>(null);
  const [saving, setSaving] = useState(false);
  const [confirmRemove, setConfirmRemove] = useState(false);
  const [removing, setRemoving] = useState(false);
  const ids = useId();
  // ~400 zones: the <option> elements are built once per zone change, not on every render.
  const zoneOptions = useMemo(
    () =>
      timezones(form.timezone).map((zone) => (
        <option key={zone} value={zone}>
          {zone}
        </option>
      )),
    [form.timezone],
  );

  const load = useCallback(async () => {
    setLoading(true);
    setLoadError(null);
    try {
      const answer = await getBudget(userId);
      setServer(answer);
      setForm(formFrom(answer.budget));
    } catch (err) {
      setLoadError(describeError(err).title);
    } finally {
      setLoading(false);
    }
  }, [userId]);

  useEffect(() => {
    void load();
  }, [load]);

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((f) => ({ ...f, [key]: value }));
  const switchModels = catalog.find((p) => p.id === form.switchProvider)?.models ?? [];

  const validate = (): { input: BudgetInput | null; problems: Partial<Record<Field, string>> } => {
    const problems: Partial<Record<Field, string>> = {};
    const limit = form.limit.trim().replace(/^\$/, "");
    if (!AMOUNT.test(limit) || !/[1-9]/.test(limit)) {
      problems.limit = "Enter an amount in USD above 0, like 30 or 12.50 (at most 9 decimals).";
    }
    const thresholds = parseThresholds(form.thresholds);
    if (typeof thresholds === "string") problems.thresholds = thresholds;
    if (form.action === "switch" && (!form.switchProvider || !form.switchModel)) {
      problems.switchModel = "Choose the provider and model to switch to.";
    }
    const webhook = form.webhook.trim();
    // Never echo the URL in a message: it is a secret.
    if (webhook && !webhook.startsWith("https://")) problems.webhook = "A Slack webhook URL starts with https://.";
    const email = form.email.trim();
    if (email && !/^[^\s@<>,]+@[^\s@<>,]+\.[^\s@<>,]+$/.test(email)) problems.email = "Enter one e-mail address, like ops@example.com.";
    if (Object.keys(problems).length > 0 || typeof thresholds === "string") return { input: null, problems };
    const input: BudgetInput = {
      monthlyLimitUsd: limit,
      timezone: form.timezone,
      thresholds,
      action: form.action,
      strict: strictWith(form.action, form.strict),
    };
    if (form.action === "switch") input.switchTo = { provider: form.switchProvider as Provider, model: form.switchModel };
    if (webhook) input.slackWebhookUrl = webhook;
    else if (form.removeWebhook) input.removeSlackWebhook = true;
    if (email && email.toLowerCase() !== server?.alertEmail?.address.toLowerCase()) input.alertEmail = email;
    else if (form.removeEmail) input.removeAlertEmail = true;
    return { input, problems };
  };

  const save = async () => {
    setNotice(null);
    const { input, problems } = validate();
    setErrors(problems);
    if (!input) {
      setNotice({ kind: "error", title: "Check the budget: some fields need a fix." });
      return;
    }
    setSaving(true);
    try {
      const answer = await saveBudget(userId, input);
      setServer(answer);
      setForm(formFrom(answer.budget));
      const lines: string[] = [];
      if (input.slackWebhookUrl) lines.push("Slack webhook stored. It will not be shown again.");
      if (input.removeSlackWebhook) lines.push("Slack webhook removed.");
      if (input.alertEmail) {
        lines.push(`AWS is e-mailing ${input.alertEmail} a confirmation link: alerts are sent once it is followed.`);
      }
      if (input.removeAlertEmail) lines.push("Alert e-mail address removed.");
      setNotice({ kind: "success", title: "Budget saved", lines });
    } catch (err) {
      const { title, lines } = describeError(err);
      setNotice({ kind: "error", title: `Could not save the budget: ${title}`, lines });
    } finally {
      setSaving(false);
    }
  };

  const remove = async () => {
    setRemoving(true);
    setNotice(null);
    try {
      await deleteBudget(userId);
      setErrors({});
      let after: BudgetResponse = { budget: null, hasSlackWebhook: server?.hasSlackWebhook ?? false, status: null };
      try {
        after = await getBudget(userId);
      } catch {
        // the budget is gone either way; a stale webhook flag is corrected on the next load
      }
      setServer(after);
      setForm(formFrom(after.budget));
      setNotice({ kind: "success", title: "Budget removed" });
    } catch (err) {
      setNotice({ kind: "error", title: `Could not remove the budget: ${describeError(err).title}` });
    } finally {
      setRemoving(false);
      setConfirmRemove(false);
    }
  };

  const fieldProps = (field: Field, help?: string) => ({
    "aria-invalid": errors[field] ? true : undefined,
    "aria-describedby": [help, errors[field] ? `${ids}-${field}-error` : undefined].filter(Boolean).join(" ") || undefined,
  });
  const fieldError = (field: Field) =>
    errors[field] ? (
      <p id={`${ids}-${field}-error`} className="mt-1 text-xs font-medium text-mono-900 dark:text-mono-100">
        {errors[field]}
      </p>
    ) : null;

  const status = server?.status;
  const budget = server?.budget;

  return (
    <Section
      id="budget"
      title="Monthly budget"
      description="A spending limit per calendar month in your timezone, alerts as it fills up, and what happens at 100%. Saved on its own."
    >
      {loading ? (
        <div className="flex items-center justify-center py-6" aria-busy="true">
          <SpinnerIcon className="h-5 w-5 text-mono-500" />
          <span className="sr-only">Loading the budget…</span>
        </div>
      ) : (
        <div className="space-y-4" data-testid="budget-form">
          <LoadErrorBanner title="Could not load your budget" error={loadError} onRetry={() => void load()} />
          <NoticeBanner notice={notice} />

          {budget && status ? (
            <p className="text-sm text-mono-800 dark:text-mono-200" data-testid="budget-status-line">
              {monthName(status.period)} so far: <span className="font-mono">{formatUsd(status.spentUsd)}</span> of{" "}
              <span className="font-mono">{formatUsd(budget.monthlyLimitUsd)}</span> ({status.percentUsed}%) —{" "}
              {BUDGET_STATE_LABELS[status.state]}
            </p>
          ) : null}

          <div className="grid grid-cols-1 gap-4 md:grid-cols-2">
            <div>
              <label htmlFor={`${ids}-limit`} className="label">
                Monthly budget (USD)
              </label>
              <input
                id={`${ids}-limit`}
                type="text"
                inputMode="decimal"
                autoComplete="off"
                className="input font-mono"
                placeholder="30.00"
                value={form.limit}
                onChange={(e) => set("limit", e.target.value)}
                {...fieldProps("limit")}
              />
              {fieldError("limit")}
            </div>
            <div>
              <label htmlFor={`${ids}-tz`} className="label">
                Timezone
              </label>
              <select
                id={`${ids}-tz`}
                className="input"
                value={form.timezone}
                onChange={(e) => set("timezone", e.target.value)}
                aria-describedby={`${ids}-tz-help`}
              >
                {zoneOptions}
              </select>
              <p id={`${ids}-tz-help`} className="muted mt-1 text-xs">
                The month starts at midnight on the 1st in this zone.
              </p>
            </div>
            <div>
              <label htmlFor={`${ids}-thresholds`} className="label">
                Alert thresholds (%)
              </label>
              <input
                id={`${ids}-thresholds`}
                type="text"
                inputMode="numeric"
                autoComplete="off"
                className="input font-mono"
                value={form.thresholds}
                onChange={(e) => set("thresholds", e.target.value)}
                {...fieldProps("thresholds", `${ids}-thresholds-help`)}
              />
              <p id={`${ids}-thresholds-help`} className="muted mt-1 text-xs">
                Comma-separated percents of the budget (1–{MAX_THRESHOLD}); one alert each, once a month.
              </p>
              {fieldError("thresholds")}
            </div>
            <div>
              <label htmlFor={`${ids}-action`} className="label">
                Action at 100%
              </label>
              <select
                id={`${ids}-action`}
                className="input"
                value={form.action}
                onChange={(e) => set("action", e.target.value as BudgetAction)}
              >
                {BUDGET_ACTIONS.map((action) => (
                  <option key={action} value={action}>
                    {ACTION_LABELS[action]}
                  </option>
                ))}
              </select>
            </div>
          </div>

          {form.action === "switch" ? (
            <div
              className="grid grid-cols-1 gap-4 rounded-lg border border-mono-200 p-3 md:grid-cols-2 dark:border-mono-800"
              role="group"
              aria-label="Switch to"
            >
              <div>
                <label htmlFor={`${ids}-switch-provider`} className="label">
                  Switch to provider
                </label>
                <select
                  id={`${ids}-switch-provider`}
                  className="input"
                  value={form.switchProvider}
                  onChange={(e) => setForm((f) => ({ ...f, switchProvider: e.target.value as Provider, switchModel: "" }))}
                >
                  <option value="">Choose a provider…</option>
                  {PROVIDERS.map((p) => (
                    <option key={p} value={p}>
                      {providerName(p)}
                    </option>
                  ))}
                </select>
              </div>
              <div>
                <label htmlFor={`${ids}-switch-model`} className="label">
                  Switch to model
                </label>
                <select
                  id={`${ids}-switch-model`}
                  className="input"
                  value={form.switchModel}
                  onChange={(e) => set("switchModel", e.target.value)}
                  disabled={!form.switchProvider}
                  {...fieldProps("switchModel")}
                >
                  <option value="">Choose a model…</option>
                  {form.switchModel && !switchModels.some((m) => m.id === form.switchModel) ? (
                    <option value={form.switchModel}>{form.switchModel}</option>
                  ) : null}
                  {switchModels.map((m) => (
                    <option key={m.id} value={m.id}>
                      {m.name}
                    </option>
                  ))}
                </select>
                {fieldError("switchModel")}
              </div>
              <p className="muted text-xs md:col-span-2">
                Once the budget is used up, calls go to this model instead (its own key or credentials are needed).
              </p>
            </div>
          ) : null}

          <StrictModeField
            id={ids}
            label="Strict mode"
            calls="call's"
            action={form.action}
            strict={form.strict}
            onChange={(strict) => set("strict", strict)}
          />

          <div>
            <div className="mb-1 flex flex-wrap items-center gap-2">
              <label htmlFor={`${ids}-webhook`} className="label mb-0!">
                Slack webhook URL
              </label>
              {server?.hasSlackWebhook && !form.removeWebhook ? (
                <span
                  className="inline-flex items-center gap-1 rounded bg-mono-900 px-2 py-0.5 text-xs text-mono-50 dark:bg-mono-100 dark:text-mono-950"
                  data-testid="webhook-stored"
                >
                  <KeyIcon className="h-3 w-3" />
                  Stored
                </span>
              ) : null}
              {server?.hasSlackWebhook ? (
                <button
                  type="button"
                  className="btn-secondary ml-auto !py-1"
                  aria-pressed={form.removeWebhook}
                  onClick={() => set("removeWebhook", !form.removeWebhook)}
                >
                  <TrashIcon className="h-4 w-4" />
                  Remove webhook
                </button>
              ) : null}
            </div>
            <input
              id={`${ids}-webhook`}
              type="password"
              name="slack-webhook-url"
              autoComplete="off"
              autoCapitalize="off"
              autoCorrect="off"
              spellCheck={false}
              className="input font-mono"
              placeholder={
                server?.hasSlackWebhook
                  ? "•••••••••••••••• stored — type a new URL to replace it"
                  : "https://hooks.slack.com/services/…"
              }
              value={form.webhook}
              onChange={(e) => set("webhook", e.target.value)}
              {...fieldProps("webhook", `${ids}-webhook-help`)}
            />
            <p id={`${ids}-webhook-help`} className="muted mt-1 text-xs">
              Optional. Alerts are posted there. Stored as a secret and never shown again
              {form.removeWebhook ? "; the stored one is removed when you save" : ""}.
            </p>
            {fieldError("webhook")}
          </div>

          <AlertEmailField
            id={`${ids}-email`}
            stored={server?.alertEmail ?? null}
            available={server?.alertEmailAvailable ?? false}
            value={form.email}
            remove={form.removeEmail}
            error={errors.email}
            onChange={(value) => set("email", value)}
            onToggleRemove={() => set("removeEmail", !form.removeEmail)}
          />

          {confirmRemove ? (
            <div
              className="flex flex-wrap items-center gap-2 rounded-md border border-mono-300 bg-mono-100 p-3 text-sm dark:border-mono-700 dark:bg-mono-850"
              role="group"
              aria-label="Confirm budget removal"
            >
              <span className="mr-auto">Remove the budget? Alerts and enforcement stop.</span>
              <button type="button" className="btn-primary !py-1.5" onClick={() => void remove()} disabled={removing}>
                {removing ? <SpinnerIcon className="h-4 w-4" /> : null}
                Remove
              </button>
              <button type="button" className="btn-secondary" onClick={() => setConfirmRemove(false)}>
                Cancel
              </button>
            </div>
          ) : null}

          <div className="flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">
            {budget && !confirmRemove ? (
              <button type="button" className="btn-secondary" onClick={() => setConfirmRemove(true)}>
                <TrashIcon className="h-4 w-4" />
                Remove budget
              </button>
            ) : null}
            <button type="button" className="btn-primary" onClick={() => void save()} disabled={saving}>
              {saving ? <SpinnerIcon className="h-4 w-4" /> : <CheckIcon className="h-4 w-4" />}
              {saving ? "Saving…" : "Save budget"}
            </button>
          </div>
        </div>
      )}
    </Section>
  );
}

/** Memoized: typing in the preferences form above re-renders the page, not this section. */
export default memo(BudgetSettings);
