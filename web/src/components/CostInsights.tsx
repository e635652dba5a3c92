/**
 * The analytics page's cost-control widgets: the budget and forecast card, the cheaper-model
 * recommendations and the budget alerts. Each gets its own request's state, so one failing shows a
 * small inline error and the rest of the page is untouched. Money is only formatted here, never
 * computed: the API's figures are exact and shown as they come.
 */
import type { MouseEvent, ReactNode } from "react";
import {
  whereLabel,
  type Budget,
  type BudgetAlert,
  type BudgetResponse,
  type BudgetStatus,
  type Forecast,
  type InsightScope,
  type RecommendationsResponse,
  type TagBudget,
  type TagBudgetsResponse,
  type Where,
} from "../api";
import { BUDGET_STATE_LABELS, formatNumber, formatUsd, humanize, monthName, providerName } from "../format";
import { ROUTES } from "../router";
import type { Resource } from "../useResource";
import { AlertIcon, SpinnerIcon } from "./icons";
import { Section } from "./ui";

export function InlineError({ what, message, onRetry }: { what: string; message: string; onRetry: () => void }) {
  return (
    <div role="alert" className="flex flex-wrap items-center gap-2 text-sm text-mono-700 dark:text-mono-300">
      <AlertIcon className="h-4 w-4 shrink-0" />
      <span className="min-w-0 break-words">
        Could not load {what}: {message}
      </span>
      <button type="button" className="btn-secondary !py-0.5" onClick={onRetry} aria-label={`Retry loading ${what}`}>
        Retry
      </button>
    </div>
  );
}

function Loading({ what }: { what: string }) {
  return (
    <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
      <SpinnerIcon className="h-4 w-4" />
      <span className="sr-only">Loading {what}…</span>
    </div>
  );
}

/** Same-tab navigation through the page's history router (it listens to popstate). */
function goToConfiguration(event: MouseEvent<HTMLAnchorElement>) {
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  window.history.pushState(null, "", ROUTES.configuration);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

function BudgetMeter({ percent, thresholds }: { percent: number; thresholds: number[] }) {
  const shown = Math.max(0, Math.min(100, percent));
  return (
    <div
      className="relative mt-2 h-2"
      role="meter"
      aria-label="Budget used"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(shown)}
      aria-valuetext={`${percent}% of the budget`}
    >
      <div className="h-full overflow-hidden rounded-full bg-mono-150 dark:bg-mono-800">
        <div className="h-full rounded-full bg-mono-900 dark:bg-mono-100" style={{ width: `${shown}%` }} />
      </div>
      {thresholds
        .filter((t) => t <= 100)
        .map((t) => (
          <span
            key={t}
            className="absolute -top-1 h-4 w-0.5 -translate-x-1/2 bg-mono-500 dark:bg-mono-400"
            style={{ left: `${t}%` }}
            data-testid="threshold-tick"
            data-threshold={t}
            aria-hidden="true"
          />
        ))}
    </div>
  );
}

function ForecastFigures({ forecast, limitUsd }: { forecast: Forecast; limitUsd: number | null }) {
  // Comparisons only (no arithmetic on money): is the forecast, or its upper bound, above the limit?
  const verdict =
    limitUsd === null
      ? null
      : forecast.forecast_usd > limitUsd
        ? `Forecast is above the ${formatUsd(limitUsd)} budget.`
        : forecast.high_usd > limitUsd
          ? `Within the ${formatUsd(limitUsd)} budget, but the upper range is above it.`
          : `Forecast is within the ${formatUsd(limitUsd)} budget.`;
  return (
    <div data-testid="forecast">
      <p className="text-xs text-mono-600 dark:text-mono-400">
        Forecast for the end of {monthName(forecast.period)} (day {forecast.days_elapsed} of {forecast.days_in_period})
      </p>
      <p className="flex flex-wrap items-baseline gap-x-2">
        <span
          className="text-2xl font-bold text-mono-950 dark:text-mono-50"
          data-testid="forecast-usd"
          data-value={String(forecast.forecast_usd)}
        >
          {formatUsd(forecast.forecast_usd)}
        </span>
        <span className="muted text-sm" data-testid="forecast-range">
          likely {formatUsd(forecast.low_usd)} – {formatUsd(forecast.high_usd)}
        </span>
      </p>
      <p className="muted text-xs">
        {formatUsd(forecast.month_to_date_usd)} so far this month · {forecast.timezone}
      </p>
      {verdict ? (
        <p
          className="mt-1 text-sm font-medium text-mono-900 dark:text-mono-100"
          data-testid="forecast-verdict"
          data-exceeds={String(limitUsd !== null && forecast.forecast_usd > limitUsd)}
        >
          {verdict}
        </p>
      ) : null}
    </div>
  );
}

/** Which budget the card shows under the page's filter chip. */
type BudgetView =
  | { kind: "account"; limit: Budget | null; status: BudgetStatus | null; note: string | null }
  | { kind: "tag"; label: string; limit: Budget; status: BudgetStatus }
  | { kind: "no-tag-budget"; label: string };

/** The note under a provider/model/operation filter: budgets exist for the account and per tag value only. */
export const ACCOUNT_BUDGET_NOTE =
  "The budget is the account's: budgets are set for the whole account and per tag value, not per provider, model or operation.";

/** A tag filter's key (`tag:customer` → `customer`), else null. */
export function tagKeyOf(where: Where | null): string | null {
  return where && where.dimension.startsWith("tag:") ? where.dimension.slice(4) : null;
}

/** The tag budget of the chip's tag value, if any (`undefined` while the list is not loaded). */
export function tagBudgetFor(where: Where | null, tagBudgets: Resource<TagBudgetsResponse> | null): TagBudget | null | undefined {
  const key = tagKeyOf(where);
  if (!where || key === null || !tagBudgets || tagBudgets.state !== "ok") return undefined;
  return tagBudgets.value.budgets.find((b) => b.tagKey === key && b.tagValue === where.value) ?? null;
}

function ScopeNote({ children, testId }: { children: ReactNode; testId: string }) {
  return (
    <p className="muted text-xs" data-testid={testId}>
      {children}
    </p>
  );
}

/**
 * The budget (limit, spend, a bar with threshold ticks, state) and the month-end forecast. With
 * no budget it is the forecast alone, titled so, with a link to set one.
 *
 * Under the page's filter chip: a tag filter (`customer: acme`) shows that tag value's budget, or
 * says there is none with a link to set one; a provider, model or operation filter shows the
 * account's budget and says so. The forecast is the filter's (the page asks it with `where`), and
 * is compared with a limit only when the limit is the same filter's.
 */
export function BudgetCard({
  budget,
  forecast,
  retryBudget,
  retryForecast,
  where = null,
  tagBudgets = null,
  retryTagBudgets,
}: {
  budget: Resource<BudgetResponse>;
  forecast: Resource<Forecast & InsightScope>;
  retryBudget: () => void;
  retryForecast: () => void;
  where?: Where | null;
  tagBudgets?: Resource<TagBudgetsResponse> | null;
  retryTagBudgets?: () => void;
}) {
  const tagKey = tagKeyOf(where);
  const label = where ? whereLabel(where) : "";
  // The resource whose loading/error the card shows: the tag budgets under a tag filter, else the account's.
  const source: Resource<unknown> = tagKey !== null && tagBudgets ? tagBudgets : budget;
  const retrySource = tagKey !== null && tagBudgets ? (retryTagBudgets ?? retryBudget) : retryBudget;
  let view: BudgetView | null = null;
  if (tagKey !== null) {
    const match = tagBudgetFor(where, tagBudgets);
    if (match) view = { kind: "tag", label, limit: match.budget, status: match.status };
    else if (match === null) view = { kind: "no-tag-budget", label };
  } else if (budget.state === "ok") {
    view = {
      kind: "account",
      limit: budget.value.budget,
      status: budget.value.status,
      note: where && budget.value.budget ? ACCOUNT_BUDGET_NOTE : null,
    };
  }
  const limit = view && view.kind !== "no-tag-budget" ? view.limit : null;
  const status = view && view.kind !== "no-tag-budget" ? view.status : null;
  // A forecast under a non-tag filter is a part of the account's spend: not compared with its limit.
  const comparable = !where || view?.kind === "tag";
  const forecastPart =
    forecast.state === "ok" ? (
      <>
        {where ? (
          <ScopeNote testId="forecast-scope">
            Forecast of {label} only{forecast.value.note ? ` — ${forecast.value.note}` : ""}.
          </ScopeNote>
        ) : null}
        <ForecastFigures
          forecast={forecast.value}
          limitUsd={comparable && limit && (!status || status.period === forecast.value.period) ? limit.monthlyLimitUsd : null}
        />
      </>
    ) : forecast.state === "error" ? (
      <InlineError what="the forecast" message={forecast.message} onRetry={retryForecast} />
    ) : (
      <Loading what="the forecast" />
    );

  const title = view?.kind === "tag" ? `Budget · ${label}` : limit ? "Budget" : where ? `Month-end forecast · ${label}` : "Month-end forecast";
  return (
    <Section
      id="budget-card"
      title={title}
      description={
        limit ? `${status ? monthName(status.period) : "This month"} · ${limit.timezone}` : "What this month will likely cost."
      }
      actions={
        status ? (
          <span
            className={`rounded px-2 py-0.5 text-xs font-medium ${
              status.state === "ok"
                ? "border border-mono-400 text-mono-800 dark:border-mono-600 dark:text-mono-200"
                : "bg-mono-900 text-mono-50 dark:bg-mono-100 dark:text-mono-950"
            }`}
            data-testid="budget-state"
            data-state={status.state}
          >
            {BUDGET_STATE_LABELS[status.state]}
          </span>
        ) : null
      }
    >
      <div className="space-y-4">
        {source.state === "error" ? (
          <InlineError what={tagKey !== null ? "the tag budgets" : "the budget"} message={source.message} onRetry={retrySource} />
        ) : null}
        {source.state === "loading" ? <Loading what="the budget" /> : null}
        {limit ? (
          <div data-testid="budget-card" data-scope={view?.kind}>
            <dl className="grid grid-cols-3 gap-2">
              <div>
                <dt className="text-xs text-mono-600 dark:text-mono-400">Limit</dt>
                <dd className="font-mono font-semibold text-mono-950 dark:text-mono-50" data-testid="budget-limit">
                  {formatUsd(limit.monthlyLimitUsd)}
                </dd>
              </div>
              <div>
                <dt className="text-xs text-mono-600 dark:text-mono-400">Spent</dt>
                <dd className="font-mono font-semibold text-mono-950 dark:text-mono-50" data-testid="budget-spent">
                  {status ? formatUsd(status.spentUsd) : "—"}
                </dd>
              </div>
              <div>
                <dt className="text-xs text-mono-600 dark:text-mono-400">Remaining</dt>
                <dd className="font-mono font-semibold text-mono-950 dark:text-mono-50" data-testid="budget-remaining">
                  {status ? formatUsd(status.remainingUsd) : "—"}
                </dd>
              </div>
            </dl>
            {status ? (
              <>
                <BudgetMeter percent={status.percentUsed} thresholds={limit.thresholds} />
                <p className="muted mt-2 text-xs" data-testid="budget-percent">
                  {status.percentUsed}% used
                  {status.reservedUsd > 0 ? ` (incl. ${formatUsd(status.reservedUsd)} reserved by calls in flight)` : ""} ·
                  alerts at {limit.thresholds.map((t) => `${t}%`).join(", ")} · at 100%:{" "}
                  {limit.action === "switch" && limit.switchTo
                    ? `switch to ${limit.switchTo.model}`
                    : limit.action === "block"
                      ? "block"
                      : "notify"}
                  {limit.strict ? " · strict" : ""}
                </p>
              </>
            ) : null}
            {view?.kind === "account" && view.note ? <ScopeNote testId="budget-scope">{view.note}</ScopeNote> : null}
          </div>
        ) : view?.kind === "no-tag-budget" ? (
          <p className="muted text-sm" data-testid="no-tag-budget">
            No budget for {view.label}.{" "}
            <a href={ROUTES.configuration} onClick={goToConfiguration} className="font-medium text-mono-900 underline dark:text-mono-100">
              Set a tag budget
            </a>{" "}
            to get alerts and a limit for it.
          </p>
        ) : view?.kind === "account" ? (
          <p className="muted text-sm" data-testid="no-budget">
            No monthly budget set.{" "}
            <a href={ROUTES.configuration} onClick={goToConfiguration} className="font-medium text-mono-900 underline dark:text-mono-100">
              Set a budget
            </a>{" "}
            to get alerts and a limit.
          </p>
        ) : null}
        {forecastPart}
      </div>
    </Section>
  );
}

/** Per operation, the cheapest models for the same token mix: saving in $ and %. */
export function RecommendationsPanel({
  recommendations,
  retry,
  top = 3,
  where = null,
}: {
  recommendations: Resource<RecommendationsResponse>;
  retry: () => void;
  top?: number;
  where?: Where | null;
}) {
  return (
    <Section
      id="recommendations"
      title={where ? `Recommendations · ${whereLabel(where)}` : "Recommendations"}
      description={`What the same requests${where ? ` of ${whereLabel(where)}` : ""} would have cost on other models, at the price book's prices.`}
    >
      {where && recommendations.state === "ok" && recommendations.value.note ? (
        <ScopeNote testId="recommendations-note">{recommendations.value.note}.</ScopeNote>
      ) : null}
      {recommendations.state === "error" ? (
        <InlineError what="recommendations" message={recommendations.message} onRetry={retry} />
      ) : recommendations.state === "loading" ? (
        <Loading what="recommendations" />
      ) : recommendations.value.operations.length === 0 ? (
        <p className="muted py-4 text-center text-sm">No usage to compare in this period.</p>
      ) : (
        <ul className="space-y-4" data-testid="recommendations">
          {recommendations.value.operations.map((op) => {
            const best = [...op.candidates].sort((a, b) => b.saving_usd - a.saving_usd).slice(0, top);
            return (
              <li
                key={op.operation_type}
                className="border-b border-mono-200 pb-4 last:border-b-0 last:pb-0 dark:border-mono-800"
                data-testid="recommendation"
                data-operation={op.operation_type}
                data-cost={String(op.cost_usd)}
              >
                <div className="flex flex-wrap items-baseline justify-between gap-2">
                  <h3 className="font-medium text-mono-900 dark:text-mono-100">{humanize(op.operation_type)}</h3>
                  <span className="font-mono text-sm text-mono-700 dark:text-mono-300">{formatUsd(op.cost_usd)}</span>
                </div>
                <p className="muted text-xs">
                  {formatNumber(op.requests)} requests · cache hit rate {(op.cache_hit_rate * 100).toFixed(1)}%
                </p>
                {best.length === 0 ? (
                  <p className="muted mt-2 text-sm">No cheaper model in the price book.</p>
                ) : (
                  <ol className="mt-2 space-y-1 text-sm" aria-label={`Cheaper models for ${humanize(op.operation_type)}`}>
                    {best.map((c) => (
                      <li key={`${c.provider}:${c.model}`} className="flex flex-wrap items-baseline justify-between gap-x-3">
                        <span className="min-w-0 break-all">
                          <span className="font-mono text-mono-900 dark:text-mono-100">{c.model}</span>{" "}
                          <span className="muted">({providerName(c.provider)})</span>
                        </span>
                        <span className="font-mono text-mono-900 dark:text-mono-100" data-testid="saving">
                          {formatUsd(c.cost_usd)} · saves {formatUsd(c.saving_usd)} ({c.saving_percent}%)
                        </span>
                      </li>
                    ))}
                  </ol>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </Section>
  );
}

function when(instant: string): string {
  const date = new Date(instant);
  if (Number.isNaN(date.getTime())) return instant;
  return date.toLocaleString("en-US", { month: "short", day: "numeric", year: "numeric", hour: "numeric", minute: "2-digit" });
}

/**
 * The thresholds crossed, newest first, as the API returns them. Under a tag filter the page passes
 * that tag value's budget's alerts; under another filter the account budget's, and says so.
 */
export function BudgetAlertsList({
  alerts,
  retry,
  where = null,
}: {
  alerts: Resource<BudgetAlert[]>;
  retry: () => void;
  where?: Where | null;
}) {
  const tag = tagKeyOf(where) !== null;
  return (
    <Section
      id="budget-alerts"
      title={where && tag ? `Budget alerts · ${whereLabel(where)}` : "Budget alerts"}
      description={
        where && !tag
          ? "The account budget's thresholds crossed, newest first (budgets are per account and per tag value)."
          : "Thresholds crossed, newest first."
      }
    >
      {alerts.state === "error" ? (
        <InlineError what="budget alerts" message={alerts.message} onRetry={retry} />
      ) : alerts.state === "loading" ? (
        <Loading what="budget alerts" />
      ) : alerts.value.length === 0 ? (
        <p className="muted py-4 text-center text-sm" data-testid="no-alerts">
          {where && tag ? `No alerts for ${whereLabel(where)}'s budget yet.` : "No budget alerts yet."}
        </p>
      ) : (
        <ul className="space-y-3" data-testid="budget-alerts">
          {alerts.value.map((alert) => (
            <li
              key={alert.alertId}
              className="flex flex-wrap items-baseline justify-between gap-x-3 border-b border-mono-200 pb-3 text-sm last:border-b-0 last:pb-0 dark:border-mono-800"
            >
              <span className="font-medium text-mono-900 dark:text-mono-100">
                {alert.thresholdPercent}% of {formatUsd(alert.limitUsd)} reached
              </span>
              <span className="font-mono text-mono-700 dark:text-mono-300">
                {formatUsd(alert.spentUsd)} spent ({alert.percentUsed}%)
              </span>
              <time className="muted w-full text-xs" dateTime={alert.crossedAt}>
                {when(alert.crossedAt)} · {monthName(alert.period)}
                {alert.action !== "notify" ? ` · ${alert.action}` : ""}
              </time>
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}
