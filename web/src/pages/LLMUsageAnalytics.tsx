import { useCallback, useEffect, useId, useMemo, useState, type ComponentType } from "react";
import {
  ApiError,
  getAnomalies,
  getBudget,
  getBudgetAlerts,
  getDaily,
  getEntriesCsv,
  getForecast,
  getRecommendations,
  getSummary,
  getTagBudgetAlerts,
  getTagBudgets,
  whereLabel,
  whereParam,
  type Breakdown,
  type DailyRow,
  type Period,
  type BudgetAlert,
  type InsightScope,
  type UsageSummary,
  type Where,
} from "../api";
import BreakdownPanel, { FilterChip } from "../components/BreakdownPanel";
import {
  BudgetAlertsList,
  BudgetCard,
  InlineError,
  RecommendationsPanel,
  tagBudgetFor,
  tagKeyOf,
} from "../components/CostInsights";
import DailyTrendChart from "../components/DailyTrendChart";
import ReconciliationPanel from "../components/ReconciliationPanel";
import RecentCalls from "../components/RecentCalls";
import {
  ActivityIcon,
  AlertIcon,
  CacheIcon,
  DollarIcon,
  DownloadIcon,
  SpinnerIcon,
  TrendingUpIcon,
  ZapIcon,
} from "../components/icons";
import { Banner, ProgressBar, Section } from "../components/ui";
import {
  addDays,
  browserTimezone,
  formatCompact,
  formatNumber,
  formatUsd,
  humanize,
  localDate,
  longDay,
  providerName,
  timezones,
} from "../format";
import { useResource, type Resource } from "../useResource";

export const PERIODS = [7, 30, 90] as const;

export function periodFor(days: number, tz: string, now: Date = new Date()): Period {
  const end = localDate(tz, now);
  return { start: addDays(end, -(days - 1)), end, days, tz };
}

type Loaded = { summary: UsageSummary; daily: DailyRow[]; period: Period };

/** Alerts as loading while those on screen belong to another budget (the account's, or another tag value's). */
export function alertsFor(resource: Resource<BudgetAlert[]>, key: string | null, value: string | null): Resource<BudgetAlert[]> {
  if (resource.state !== "ok") return resource;
  const mine = resource.value.every((a) => (key === null ? !a.tagKey : a.tagKey === key && a.tagValue === value));
  return mine ? resource : { state: "loading" };
}

/**
 * An insight as loading while the answer on screen is for another filter (useResource keeps the last
 * value during a new request): a whole-account figure never shows under a filter chip, even briefly.
 */
export function forWhere<T extends InsightScope>(resource: Resource<T>, where: Where | null): Resource<T> {
  if (resource.state !== "ok") return resource;
  const shown = resource.value.where ?? null;
  const same = shown === null ? where === null : where !== null && shown.dimension === where.dimension && shown.value === where.value;
  return same ? resource : { state: "loading" };
}

function StatCard({
  label,
  value,
  exact,
  icon: Icon,
  testId,
  note,
}: {
  label: string;
  value: string;
  exact: string;
  icon: ComponentType<{ className?: string }>;
  testId: string;
  note?: string;
}) {
  return (
    <div className="card flex items-center gap-3">
      <div className="rounded-lg bg-mono-100 p-3 dark:bg-mono-850" aria-hidden="true">
        <Icon className="h-6 w-6 text-mono-900 dark:text-mono-100" />
      </div>
      <div className="min-w-0">
        <p className="text-xs text-mono-600 dark:text-mono-400">{label}</p>
        <p
          className="truncate text-2xl font-bold text-mono-950 dark:text-mono-50"
          data-testid={testId}
          data-value={exact}
          title={exact}
        >
          {value}
        </p>
        {note ? <p className="muted text-xs">{note}</p> : null}
      </div>
    </div>
  );
}

function BreakdownList({
  entries,
  total,
  name,
  testId,
}: {
  entries: [string, Breakdown][];
  total: number;
  name: (key: string) => string;
  testId: string;
}) {
  if (entries.length === 0) return <p className="muted py-4 text-center text-sm">No usage in this period.</p>;
  return (
    <ul className="space-y-3" data-testid={testId}>
      {entries.map(([key, data]) => (
        <li key={key} className="border-b border-mono-200 pb-3 last:border-b-0 last:pb-0 dark:border-mono-800">
          <div className="mb-1 flex items-center justify-between gap-2">
            <span className="font-medium text-mono-900 dark:text-mono-100">{name(key)}</span>
            <span className="font-mono text-sm text-mono-700 dark:text-mono-300">{formatUsd(data.cost_usd)}</span>
          </div>
          <div className="grid grid-cols-2 gap-2 text-xs text-mono-600 dark:text-mono-400">
            <span>{formatNumber(data.requests)} requests</span>
            <span>{formatNumber(data.tokens)} tokens</span>
          </div>
          <ProgressBar share={total > 0 ? data.cost_usd / total : 0} label={`${name(key)} share of cost`} />
        </li>
      ))}
    </ul>
  );
}

function byCost(record: Record<string, Breakdown>): [string, Breakdown][] {
  return Object.entries(record).sort((a, b) => b[1].cost_usd - a[1].cost_usd || b[1].requests - a[1].requests);
}

/** A filter as a file name part (`tag:customer:acme` → `tag-customer-acme`). */
function fileSafe(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 80);
}

function saveFile(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export default function LLMUsageAnalytics({ userId, initialTz }: { userId: string; initialTz?: string }) {
  const [days, setDays] = useState<number>(30);
  const [tz, setTz] = useState<string>(() => initialTz ?? browserTimezone());
  const [data, setData] = useState<Loaded | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);
  const [exportNote, setExportNote] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  // The filter chip (`customer: acme`): every widget follows it (docs/dashboard.md): the totals, the
  // trend, the breakdown, recent calls and the CSV export are the filter's calls; the insights are
  // computed from the filter's rollups; the budget card shows the tag value's budget (or the account's,
  // saying so); the reconciliation is narrowed to a provider or says it is account-level.
  const [where, setWhere] = useState<Where | null>(null);
  // ~400 zones: the <option> elements are built once per zone change, not on every render.
  const zoneOptions = useMemo(
    () =>
      timezones(tz).map((zone) => (
        <option key={zone} value={zone}>
          {zone}
        </option>
      )),
    [tz],
  );
  const ids = useId();

  // Cost control: independent requests, each with its own inline error (one failing breaks nothing).
  const fetchBudget = useCallback(() => getBudget(userId), [userId]);
  // Under a tag filter, that tag value's budget's alerts; otherwise the account budget's.
  const alertTag = tagKeyOf(where);
  const alertValue = alertTag !== null && where ? where.value : null;
  const fetchAlerts = useCallback(
    () => (alertTag !== null && alertValue !== null ? getTagBudgetAlerts(userId, alertTag, alertValue, 20) : getBudgetAlerts(userId, 20)),
    [userId, alertTag, alertValue],
  );
  const fetchAnomalies = useCallback(() => getAnomalies(userId, periodFor(days, tz), where), [userId, days, tz, where]);
  const fetchRecommendations = useCallback(() => getRecommendations(userId, days, where), [userId, days, where]);
  const tagFilter = tagKeyOf(where) !== null;
  const fetchTagBudgets = useCallback(() => getTagBudgets(userId), [userId]);
  const budget = useResource(fetchBudget);
  const tagBudgets = useResource(tagFilter ? fetchTagBudgets : null);
  const alerts = useResource(fetchAlerts);
  const anomalies = useResource(fetchAnomalies);
  const recommendations = useResource(fetchRecommendations);
  // The forecast describes the budget's month, so it is asked in the budget's timezone (under a tag
  // filter, that tag value's budget's); without a budget (or when it cannot be read), in the page's.
  const tagBudget = tagFilter ? tagBudgetFor(where, tagBudgets.resource) : undefined;
  const forecastTz = tagFilter
    ? tagBudgets.resource.state === "loading"
      ? null
      : (tagBudget?.budget.timezone ?? tz)
    : budget.resource.state === "loading"
      ? null
      : budget.resource.state === "ok"
        ? (budget.resource.value.budget?.timezone ?? tz)
        : tz;
  const fetchForecast = useCallback(() => getForecast(userId, forecastTz ?? "UTC", where), [userId, forecastTz, where]);
  const forecast = useResource(forecastTz === null ? null : fetchForecast);
  const scopedForecast = forWhere(forecast.resource, where);
  const scopedAnomalies = forWhere(anomalies.resource, where);
  const scopedRecommendations = forWhere(recommendations.resource, where);

  const load = useCallback(
    async (signal: { live: boolean }) => {
      const period = periodFor(days, tz);
      setLoading(true);
      setError(null);
      try {
        const [summary, daily] = await Promise.all([getSummary(userId, period, where), getDaily(userId, period, where)]);
        if (signal.live) setData({ summary, daily, period });
      } catch (err) {
        if (signal.live) setError(err instanceof ApiError || err instanceof Error ? err.message : String(err));
      } finally {
        if (signal.live) setLoading(false);
      }
    },
    [userId, days, tz, where],
  );

  useEffect(() => {
    const signal = { live: true };
    void load(signal);
    return () => {
      signal.live = false;
    };
  }, [load]);

  const exportCsv = async () => {
    const period = data?.period ?? periodFor(days, tz);
    setExporting(true);
    setExportNote(null);
    try {
      const { csv, complete } = await getEntriesCsv(userId, period, where);
      const suffix = where ? `-${fileSafe(whereParam(where))}` : "";
      saveFile(`llm-usage-${userId}-${period.start}-to-${period.end}${suffix}.csv`, csv);
      const rows = Math.max(0, csv.split("\n").filter((line) => line.trim()).length - 1);
      setExportNote({
        kind: "success",
        text: `Exported ${formatNumber(rows)} entries${where ? ` of ${whereLabel(where)}` : ""}${complete ? "" : " (the first pages only: narrow the period for the rest)"}.`,
      });
    } catch (err) {
      setExportNote({ kind: "error", text: `Export failed: ${err instanceof Error ? err.message : String(err)}` });
    } finally {
      setExporting(false);
    }
  };

  const summary = data?.summary;
  const empty = summary !== undefined && summary.total_requests === 0;
  const avg =
    summary?.avg_cost_per_request_usd ?? (summary && summary.total_requests ? summary.total_cost_usd / summary.total_requests : 0);

  return (
    <div className="space-y-6" aria-busy={loading}>
      <div className="flex flex-col gap-4 md:flex-row md:items-end md:justify-between">
        <div>
          <h1 className="mb-1 text-2xl font-bold text-mono-950 dark:text-mono-50">LLM Usage Analytics</h1>
          <p className="muted">
            {data ? (
              <>
                {longDay(data.period.start)} – {longDay(data.period.end)} <span aria-hidden="true">·</span>{" "}
                <span data-testid="period-timezone">{data.period.tz}</span>
              </>
            ) : (
              "Where the money goes: providers, operations, models and days."
            )}
          </p>
        </div>
        <div className="flex flex-wrap items-end gap-3">
          <div role="group" aria-label="Period" className="inline-flex rounded-md border border-mono-300 p-0.5 dark:border-mono-700">
            {PERIODS.map((option) => (
              <button
                key={option}
                type="button"
                aria-pressed={days === option}
                onClick={() => setDays(option)}
                className={`rounded px-3 py-1.5 text-sm font-medium ${
                  days === option
                    ? "bg-mono-900 text-mono-50 dark:bg-mono-100 dark:text-mono-950"
                    : "text-mono-700 hover:bg-mono-150 dark:text-mono-300 dark:hover:bg-mono-850"
                }`}
              >
                {option} days
              </button>
            ))}
          </div>
          <div>
            <label htmlFor={`${ids}-tz`} className="label text-xs!">
              Timezone
            </label>
            <select id={`${ids}-tz`} className="input w-48 py-1.5!" value={tz} onChange={(e) => setTz(e.target.value)}>
              {zoneOptions}
            </select>
          </div>
          <button
            type="button"
            className="btn-secondary h-[38px]"
            onClick={() => void exportCsv()}
            disabled={exporting || !data || empty}
          >
            {exporting ? <SpinnerIcon className="h-4 w-4" /> : <DownloadIcon className="h-4 w-4" />}
            Export CSV
          </button>
        </div>
      </div>

      {where ? (
        <div className="flex flex-wrap items-center gap-2 text-sm" data-testid="filter-bar">
          <span className="muted">Filtered by</span>
          <FilterChip where={where} onClear={() => setWhere(null)} />
          <span className="muted text-xs" data-testid="filter-scope">
            Every figure below is {whereLabel(where)}'s: totals, trend, breakdown, forecast, unusual days,
            recommendations, recent calls and the CSV export.{" "}
            {tagKeyOf(where) !== null
              ? "The budget card shows this tag value's budget; the reconciliation stays account-level (invoices carry no tags)."
              : where.dimension === "provider"
                ? "The budget card shows the account's budget; the reconciliation is this provider's bill."
                : "The budget card shows the account's budget; the reconciliation stays account-level (invoices carry no operations or per-call detail)."}
          </span>
        </div>
      ) : null}

      {exportNote ? (
        <Banner kind={exportNote.kind} title={exportNote.kind === "success" ? "CSV exported" : "CSV export failed"}>
          {exportNote.text}
        </Banner>
      ) : null}

      {error ? (
        <Banner kind="error" title="Could not load usage">
          <p>{error}</p>
          <button type="button" className="btn-secondary mt-2" onClick={() => void load({ live: true })}>
            Retry
          </button>
        </Banner>
      ) : null}

      {loading && !data ? (
        <div className="card flex items-center justify-center py-16" role="status" aria-live="polite">
          <SpinnerIcon className="h-6 w-6 text-mono-500" />
          <span className="sr-only">Loading usage…</span>
        </div>
      ) : null}

      {summary && data ? (
        <div className={`space-y-6 transition-opacity ${loading ? "opacity-60" : ""}`} data-testid="analytics">
          {loading ? (
            <p role="status" className="sr-only">
              Updating…
            </p>
          ) : null}
          <div className="grid grid-cols-1 gap-4 sm:grid-cols-2 xl:grid-cols-4">
            <StatCard
              label="Total Cost"
              value={formatUsd(summary.total_cost_usd)}
              exact={String(summary.total_cost_usd)}
              icon={DollarIcon}
              testId="total-cost"
            />
            <StatCard
              label="Total Requests"
              value={formatNumber(summary.total_requests)}
              exact={String(summary.total_requests)}
              icon={ZapIcon}
              testId="total-requests"
            />
            <StatCard
              label="Total Tokens"
              value={formatNumber(summary.total_tokens)}
              exact={String(summary.total_tokens)}
              icon={ActivityIcon}
              testId="total-tokens"
            />
            <StatCard
              label="Avg Cost/Request"
              value={formatUsd(avg)}
              exact={String(avg)}
              icon={TrendingUpIcon}
              testId="avg-cost"
            />
          </div>

          <div className="grid grid-cols-1 gap-4 lg:grid-cols-3">
            <div className="lg:col-span-2">
              <BudgetCard
                budget={budget.resource}
                forecast={scopedForecast}
                retryBudget={budget.retry}
                retryForecast={forecast.retry}
                where={where}
                tagBudgets={tagFilter ? tagBudgets.resource : null}
                retryTagBudgets={tagBudgets.retry}
              />
            </div>
            <div className="space-y-4 self-start">
              <StatCard
                label="Cache hits"
                value={formatNumber(summary.cache_hits ?? 0)}
                exact={String(summary.cache_hits ?? 0)}
                icon={CacheIcon}
                testId="cache-hits"
                note={`${formatUsd(summary.saved_cost_usd ?? 0)} saved by the response cache`}
              />
              {(summary.usage_missing ?? 0) > 0 ? (
                <StatCard
                  label="Usage missing"
                  value={formatNumber(summary.usage_missing ?? 0)}
                  exact={String(summary.usage_missing ?? 0)}
                  icon={AlertIcon}
                  testId="usage-missing"
                  note="calls whose usage the provider never reported: the totals are lower bounds"
                />
              ) : null}
            </div>
          </div>

          {empty ? (
            <div className="card py-12 text-center" data-testid="empty-state">
              <p className="font-medium text-mono-900 dark:text-mono-100">No usage in the last {data.period.days} days</p>
              <p className="muted mt-1 text-sm">
                Calls made through llmtally's providers appear here within seconds. Try a longer period.
              </p>
            </div>
          ) : (
            <>
              {(summary.errors ?? 0) > 0 || (summary.unpriced_requests ?? 0) > 0 ? (
                <p className="muted flex items-center gap-2 text-sm" data-testid="quality-note">
                  <AlertIcon className="h-4 w-4" />
                  {formatNumber(summary.errors ?? 0)} failed {summary.errors === 1 ? "request" : "requests"}
                  {summary.unpriced_requests ? `, ${formatNumber(summary.unpriced_requests)} unpriced (no price known; not counted as $0)` : ""}
                  {summary.cache_read_tokens ? ` · ${formatCompact(summary.cache_read_tokens)} cache-read tokens` : ""}
                  {summary.reasoning_tokens ? ` · ${formatCompact(summary.reasoning_tokens)} reasoning tokens` : ""}
                </p>
              ) : null}
              <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
                <Section id="by-provider" title="Usage by Provider">
                  <BreakdownList
                    entries={byCost(summary.by_provider)}
                    total={summary.total_cost_usd}
                    name={providerName}
                    testId="by-provider"
                  />
                </Section>
                <Section id="by-operation" title="Usage by Operation">
                  <BreakdownList
                    entries={byCost(summary.by_operation)}
                    total={summary.total_cost_usd}
                    name={humanize}
                    testId="by-operation"
                  />
                </Section>
              </div>
            </>
          )}

          <Section
            id="daily"
            title="Daily Usage Trend"
            description={`Cost per day, scaled to the most expensive day (${data.period.tz}).`}
          >
            {data.daily.length === 0 ? (
              <p className="muted py-8 text-center">No usage data available for this period</p>
            ) : (
              <DailyTrendChart
                days={data.daily}
                // (under a filter, the filter's own unusual days: the API scores the filtered series)
                anomalies={scopedAnomalies.state === "ok" ? scopedAnomalies.value.anomalies : undefined}
              />
            )}
            {where && scopedAnomalies.state === "ok" && scopedAnomalies.value.note ? (
              <p className="muted mt-2 text-xs" data-testid="anomalies-note">
                Unusual days of {whereLabel(where)}: {scopedAnomalies.value.note}
                {scopedAnomalies.value.folded_months?.length ? " (days of those months are not judged)" : ""}.
              </p>
            ) : null}
            {anomalies.resource.state === "error" ? (
              <div className="mt-3">
                <InlineError what="unusual days" message={anomalies.resource.message} onRetry={anomalies.retry} />
              </div>
            ) : null}
          </Section>

          <BreakdownPanel userId={userId} period={data.period} where={where} onFilter={setWhere} />

          <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
            <RecommendationsPanel recommendations={scopedRecommendations} retry={recommendations.retry} where={where} />
            <BudgetAlertsList alerts={alertsFor(alerts.resource, alertTag, alertValue)} retry={alerts.retry} where={where} />
          </div>

          <ReconciliationPanel userId={userId} days={days} where={where} />

          {!empty ? (
            <Section id="by-model" title="Usage by Model">
              <div className="-mx-4 overflow-x-auto px-4 sm:mx-0 sm:px-0">
                <table className="w-full min-w-[520px] text-sm" data-testid="by-model">
                  <caption className="sr-only">Requests, tokens and cost per model</caption>
                  <thead>
                    <tr className="border-b border-mono-200 dark:border-mono-800">
                      {["Model", "Provider", "Requests", "Tokens", "Cost"].map((head, i) => (
                        <th
                          key={head}
                          scope="col"
                          className={`py-2 text-xs font-medium text-mono-600 uppercase dark:text-mono-400 ${i < 2 ? "text-left" : "text-right"}`}
                        >
                          {head}
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {byCost(summary.by_model).map(([model, row]) => (
                      <tr key={model} className="border-b border-mono-100 last:border-b-0 dark:border-mono-850">
                        <th scope="row" className="py-3 pr-3 text-left font-mono font-normal break-all text-mono-900 dark:text-mono-100">
                          {model}
                        </th>
                        <td className="py-3 pr-3 text-mono-700 dark:text-mono-300">{row.provider ? providerName(row.provider) : "—"}</td>
                        <td className="py-3 text-right font-mono text-mono-700 dark:text-mono-300">{formatNumber(row.requests)}</td>
                        <td className="py-3 text-right font-mono text-mono-700 dark:text-mono-300">{formatNumber(row.tokens)}</td>
                        <td className="py-3 text-right font-mono font-medium text-mono-900 dark:text-mono-100">
                          {formatUsd(row.cost_usd)}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </Section>
          ) : null}

          {!empty ? <RecentCalls userId={userId} period={data.period} where={where} /> : null}
        </div>
      ) : null}
    </div>
  );
}
