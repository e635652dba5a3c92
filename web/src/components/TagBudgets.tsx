/**
 * "Tag budgets" on the configuration page: a monthly budget on the calls tagged with one value
 * (customer c-42 at $50), listed with where each stands this month, added or replaced by a small
 * form, and removed (docs/budgets.md, "Tag budgets").
 */
import { useCallback, useEffect, useId, useMemo, useState } from "react";
import {
  ApiError,
  deleteTagBudget,
  getTagBudgets,
  getTagKeys,
  PROVIDERS,
  saveTagBudget,
  type BudgetAction,
  type CatalogProvider,
  type Provider,
  type TagBudget,
  type TagBudgetInput,
  type TagBudgetsResponse,
} from "../api";
import { BUDGET_STATE_LABELS, browserTimezone, formatUsd, providerName, timezones } from "../format";
import { DEFAULT_THRESHOLDS, parseThresholds, plainDecimal } from "./BudgetSettings";
import { CheckIcon, SpinnerIcon, TrashIcon } from "./icons";
import StrictModeField, { strictWith } from "./StrictModeField";
import { LoadErrorBanner, type Notice, NoticeBanner, ProgressBar, Section } from "./ui";

/** What the API accepts for a tag (docs/api.md, the event's `tags`). */
const TAG_KEY = /^[a-z][a-z0-9_.-]{0,39}$/;
const TAG_VALUE = /^[A-Za-z0-9_.:@/+=#-](?:[A-Za-z0-9 _.:@/+=#-]{0,126}[A-Za-z0-9_.:@/+=#-])?$/;
const AMOUNT = /^\d+(\.\d{1,9})?$/;
const ACTIONS: { value: BudgetAction; label: string }[] = [
  { value: "notify", label: "Notify only" },
  { value: "block", label: "Block calls with this tag" },
  { value: "switch", label: "Switch calls with this tag" },
];

type Form = {
  key: string;
  value: string;
  limit: string;
  timezone: string;
  thresholds: string;
  action: BudgetAction;
  switchProvider: Provider | "";
  switchModel: string;
  strict: boolean;
};
type Field = "key" | "value" | "limit" | "thresholds" | "switchModel";

function emptyForm(): Form {
  return {
    key: "customer",
    value: "",
    limit: "",
    timezone: browserTimezone(),
    thresholds: DEFAULT_THRESHOLDS.join(", "),
    action: "notify",
    switchProvider: "",
    switchModel: "",
    strict: false,
  };
}

function formOf(item: TagBudget): Form {
  return {
    key: item.tagKey,
    value: item.tagValue,
    limit: plainDecimal(item.budget.monthlyLimitUsd),
    timezone: item.budget.timezone,
    thresholds: item.budget.thresholds.join(", "),
    action: item.budget.action,
    switchProvider: item.budget.switchTo?.provider ?? "",
    switchModel: item.budget.switchTo?.model ?? "",
    strict: item.budget.strict,
  };
}

function message(err: unknown): string {
  return err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

export default function TagBudgets({ userId, catalog }: { userId: string; catalog: CatalogProvider[] }) {
  const [server, setServer] = useState<TagBudgetsResponse | null>(null);
  const [keys, setKeys] = useState<string[]>([]);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [form, setForm] = useState<Form>(emptyForm);
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [notice, setNotice] = useState<Notice>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const ids = useId();
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
    setLoadError(null);
    try {
      setServer(await getTagBudgets(userId));
    } catch (err) {
      setLoadError(message(err));
    }
    // The tenant's tag keys only suggest keys: without them, any key can still be typed.
    getTagKeys(userId).then(
      (answer) => setKeys(answer.keys.map((k) => k.key)),
      () => setKeys([]),
    );
  }, [userId]);

  useEffect(() => {
    void load();
  }, [load]);

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((f) => ({ ...f, [key]: value }));
  const switchModels = catalog.find((p) => p.id === form.switchProvider)?.models ?? [];

  const validate = (): TagBudgetInput | null => {
    const problems: Partial<Record<Field, string>> = {};
    const key = form.key.trim();
    const value = form.value.trim();
    if (!TAG_KEY.test(key)) problems.key = "A tag key is lower case, like customer or feature (letters, digits, _ . -).";
    if (!TAG_VALUE.test(value)) problems.value = "Enter the tag value, like c-42 (letters, digits, spaces and _ . : @ / + = # -).";
    const limit = form.limit.trim().replace(/^\$/, "");
    if (!AMOUNT.test(limit) || !/[1-9]/.test(limit)) problems.limit = "Enter an amount in USD above 0, like 50 (at most 9 decimals).";
    const thresholds = parseThresholds(form.thresholds);
    if (typeof thresholds === "string") problems.thresholds = thresholds;
    if (form.action === "switch" && (!form.switchProvider || !form.switchModel)) {
      problems.switchModel = "Choose the provider and model to switch to.";
    }
    setErrors(problems);
    if (Object.keys(problems).length > 0 || typeof thresholds === "string") return null;
    const input: TagBudgetInput = {
      tagKey: key,
      tagValue: value,
      monthlyLimitUsd: limit,
      timezone: form.timezone,
      thresholds,
      action: form.action,
      strict: strictWith(form.action, form.strict),
    };
    if (form.action === "switch") input.switchTo = { provider: form.switchProvider as Provider, model: form.switchModel };
    return input;
  };

  const save = async () => {
    setNotice(null);
    const input = validate();
    if (!input) {
      setNotice({ kind: "error", title: "Check the tag budget: some fields need a fix." });
      return;
    }
    setBusy("save");
    try {
      const saved = await saveTagBudget(userId, input);
      setServer((current) => {
        const others = (current?.budgets ?? []).filter((b) => b.tagKey !== saved.tagKey || b.tagValue !== saved.tagValue);
        const budgets = [...others, saved].sort((a, b) => a.tagKey.localeCompare(b.tagKey) || a.tagValue.localeCompare(b.tagValue));
        return { maxTagBudgets: current?.maxTagBudgets ?? 20, budgets };
      });
      setNotice({ kind: "success", title: `Budget for ${saved.tagKey}: ${saved.tagValue} saved` });
      setForm(emptyForm());
    } catch (err) {
      setNotice({ kind: "error", title: `Could not save the tag budget: ${message(err)}` });
    } finally {
      setBusy(null);
    }
  };

  const remove = async (item: TagBudget) => {
    setNotice(null);
    setBusy(`remove:${item.tagKey}=${item.tagValue}`);
    try {
      await deleteTagBudget(userId, item.tagKey, item.tagValue);
      setServer((current) =>
        current
          ? { ...current, budgets: current.budgets.filter((b) => b.tagKey !== item.tagKey || b.tagValue !== item.tagValue) }
          : current,
      );
      setNotice({ kind: "success", title: `Budget for ${item.tagKey}: ${item.tagValue} removed` });
    } catch (err) {
      setNotice({ kind: "error", title: `Could not remove the tag budget: ${message(err)}` });
    } finally {
      setBusy(null);
    }
  };

  const budgets = server?.budgets ?? [];
  const full = server !== null && budgets.length >= server.maxTagBudgets;
  const replacing = budgets.some((b) => b.tagKey === form.key.trim() && b.tagValue === form.value.trim());

  return (
    <Section
      id="tag-budgets"
      title="Tag budgets"
      description={
        <>
          A monthly budget on the calls tagged with one value — a customer, a feature, a team — made under{" "}
          <code>llmtally.attribution(tags=…)</code> or sent with <code>tags</code>. Alerts go where the monthly budget's go;
          block and switch apply to the calls with that tag.
        </>
      }
    >
      <LoadErrorBanner title="Could not load the tag budgets" error={loadError} onRetry={() => void load()} />
      {server === null && !loadError ? (
        <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
          <SpinnerIcon className="h-4 w-4" />
          <span className="sr-only">Loading the tag budgets…</span>
        </div>
      ) : null}
      {server !== null ? (
        budgets.length === 0 ? (
          <p className="muted mb-4 text-sm">No tag budgets yet.</p>
        ) : (
          <ul className="mb-4 space-y-3" data-testid="tag-budgets">
            {budgets.map((item) => (
              <li
                key={`${item.tagKey}=${item.tagValue}`}
                className="border-b border-mono-200 pb-3 last:border-b-0 dark:border-mono-800"
                data-testid="tag-budget"
                data-tag={`${item.tagKey}=${item.tagValue}`}
              >
                <div className="flex flex-wrap items-center justify-between gap-2">
                  <div className="min-w-0">
                    <span className="font-medium break-all text-mono-900 dark:text-mono-100">
                      {item.tagKey}: {item.tagValue}
                    </span>
                    <span className="muted ml-2 text-sm">
                      {formatUsd(item.status.spentUsd)} of {formatUsd(item.budget.monthlyLimitUsd)} ·{" "}
                      {BUDGET_STATE_LABELS[item.status.state]} · {ACTIONS.find((a) => a.value === item.budget.action)?.label}
                      {item.budget.switchTo ? ` (${providerName(item.budget.switchTo.provider)} ${item.budget.switchTo.model})` : ""}
                      {item.budget.strict ? ` · Strict, ${formatUsd(item.status.reservedUsd)} reserved` : ""}
                    </span>
                  </div>
                  <div className="flex gap-2">
                    <button type="button" className="btn-secondary py-1!" onClick={() => setForm(formOf(item))}>
                      Edit
                    </button>
                    <button
                      type="button"
                      className="btn-secondary py-1!"
                      aria-label={`Remove the budget for ${item.tagKey}: ${item.tagValue}`}
                      disabled={busy !== null}
                      onClick={() => void remove(item)}
                    >
                      <TrashIcon className="h-4 w-4" />
                    </button>
                  </div>
                </div>
                <ProgressBar
                  share={Math.min(item.status.percentUsed, 100) / 100}
                  label={`${item.tagKey}: ${item.tagValue} budget used`}
                />
              </li>
            ))}
          </ul>
        )
      ) : null}

      <div className="grid grid-cols-1 gap-3 sm:grid-cols-2 lg:grid-cols-3">
        <div>
          <label htmlFor={`${ids}-key`} className="label">
            Tag key
          </label>
          <input
            id={`${ids}-key`}
            className="input"
            list={`${ids}-keys`}
            value={form.key}
            onChange={(e) => set("key", e.target.value)}
            aria-invalid={errors.key ? true : undefined}
          />
          <datalist id={`${ids}-keys`}>
            {keys.map((key) => (
              <option key={key} value={key} />
            ))}
          </datalist>
          {errors.key ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{errors.key}</p> : null}
        </div>
        <div>
          <label htmlFor={`${ids}-value`} className="label">
            Tag value
          </label>
          <input
            id={`${ids}-value`}
            className="input"
            placeholder="c-42"
            value={form.value}
            onChange={(e) => set("value", e.target.value)}
            aria-invalid={errors.value ? true : undefined}
          />
          {errors.value ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{errors.value}</p> : null}
        </div>
        <div>
          <label htmlFor={`${ids}-limit`} className="label">
            Tag monthly limit (USD)
          </label>
          <input
            id={`${ids}-limit`}
            className="input"
            inputMode="decimal"
            placeholder="50"
            value={form.limit}
            onChange={(e) => set("limit", e.target.value)}
            aria-invalid={errors.limit ? true : undefined}
          />
          {errors.limit ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{errors.limit}</p> : null}
        </div>
        <div>
          <label htmlFor={`${ids}-tz`} className="label">
            Tag budget zone
          </label>
          <select id={`${ids}-tz`} className="input" value={form.timezone} onChange={(e) => set("timezone", e.target.value)}>
            {zoneOptions}
          </select>
        </div>
        <div>
          <label htmlFor={`${ids}-thresholds`} className="label">
            Tag alert thresholds (%)
          </label>
          <input
            id={`${ids}-thresholds`}
            className="input"
            value={form.thresholds}
            onChange={(e) => set("thresholds", e.target.value)}
            aria-invalid={errors.thresholds ? true : undefined}
          />
          {errors.thresholds ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{errors.thresholds}</p> : null}
        </div>
        <div>
          <label htmlFor={`${ids}-action`} className="label">
            At 100%
          </label>
          <select
            id={`${ids}-action`}
            className="input"
            value={form.action}
            onChange={(e) => set("action", e.target.value as BudgetAction)}
          >
            {ACTIONS.map((action) => (
              <option key={action.value} value={action.value}>
                {action.label}
              </option>
            ))}
          </select>
        </div>
        <StrictModeField
          id={ids}
          label="Tag strict mode"
          calls="tagged call's"
          action={form.action}
          strict={form.strict}
          onChange={(strict) => set("strict", strict)}
          className="self-end"
        />
        {form.action === "switch" ? (
          <>
            <div>
              <label htmlFor={`${ids}-provider`} className="label">
                Tag switch provider
              </label>
              <select
                id={`${ids}-provider`}
                className="input"
                value={form.switchProvider}
                onChange={(e) => setForm((f) => ({ ...f, switchProvider: e.target.value as Provider | "", switchModel: "" }))}
              >
                <option value="">Choose…</option>
                {PROVIDERS.map((p) => (
                  <option key={p} value={p}>
                    {providerName(p)}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label htmlFor={`${ids}-model`} className="label">
                Tag switch model
              </label>
              <select
                id={`${ids}-model`}
                className="input"
                value={form.switchModel}
                onChange={(e) => set("switchModel", e.target.value)}
                aria-invalid={errors.switchModel ? true : undefined}
              >
                <option value="">Choose…</option>
                {switchModels.map((m) => (
                  <option key={m.id} value={m.id}>
                    {m.name}
                  </option>
                ))}
              </select>
              {errors.switchModel ? <p className="mt-1 text-xs text-mono-700 dark:text-mono-300">{errors.switchModel}</p> : null}
            </div>
          </>
        ) : null}
      </div>
      <div className="mt-4 flex flex-wrap items-center justify-between gap-3">
        <p className="muted text-xs">
          {server ? `${budgets.length} of ${server.maxTagBudgets} tag budgets.` : ""}
        </p>
        <button
          type="button"
          className="btn-primary"
          onClick={() => void save()}
          disabled={busy !== null || (full && !replacing)}
        >
          {busy === "save" ? <SpinnerIcon className="h-4 w-4" /> : <CheckIcon className="h-4 w-4" />}
          {replacing ? "Update tag budget" : "Add tag budget"}
        </button>
      </div>
      <div className="mt-3">
        <NoticeBanner notice={notice} />
      </div>
    </Section>
  );
}
