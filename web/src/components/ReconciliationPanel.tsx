/**
 * "Metered vs billed": what the providers billed against what llmtally metered, per UTC day and
 * model (docs/reconciliation.md). Discrepancies first — the drift, the unmetered spend, and where
 * the difference comes from (tokens no event explains, or a price) — with the billed unit price and
 * a ready-to-paste price override where the price is the cause. Money is only formatted, never
 * computed: the API's figures are exact.
 */
import { useCallback, useState } from "react";
import {
  getReconciliation,
  whereLabel,
  type ReconciliationCause,
  type ReconciliationResponse,
  type ReconciliationRow,
  type Where,
} from "../api";
import { formatUsd, providerName } from "../format";
import { ROUTES } from "../router";
import { useResource } from "../useResource";
import { InlineError } from "./CostInsights";
import { SpinnerIcon } from "./icons";
import { Section } from "./ui";

const KIND_LABELS: Record<string, string> = {
  input: "input",
  cache_read: "cache reads",
  cache_write: "cache writes",
  output: "output",
};

export function causeText(row: ReconciliationRow): string {
  const labels: Record<ReconciliationCause, string> = {
    match: "Matches the bill",
    price: `Price: ${row.price_feedback.map((f) => KIND_LABELS[f.kind] ?? f.kind).join(", ") || "cost differs at equal tokens"}`,
    unmetered: "Tokens no event explains",
    missing_day: "No events metered this day",
    overmetered: "Metered more than billed",
  };
  return labels[row.cause];
}

function percent(value: number | null): string {
  return value === null ? "—" : `${value > 0 ? "+" : ""}${value}%`;
}

function RowDetails({ row }: { row: ReconciliationRow }) {
  const feedback = row.price_feedback;
  const keys = row.cause === "unmetered" && row.api_key_ids.length > 0 ? row.api_key_ids : [];
  if (feedback.length === 0 && keys.length === 0) return null;
  return (
    <div className="mt-1 space-y-1 text-xs text-mono-600 dark:text-mono-400">
      {keys.length > 0 ? <p data-testid="billed-keys">Billed under keys: {keys.join(", ")}</p> : null}
      {feedback.map((f) => (
        <div key={f.kind} data-testid="price-feedback" data-kind={f.kind}>
          <p>
            Billed {formatUsd(f.billed_mtok_usd)}/MTok {KIND_LABELS[f.kind] ?? f.kind}; llmtally used{" "}
            {f.metered_mtok_usd === null ? "no price" : `${formatUsd(f.metered_mtok_usd)}/MTok`}.
          </p>
          {f.suggested_override ? (
            <details>
              <summary className="cursor-pointer">Suggested price override</summary>
              <pre className="mt-1 overflow-x-auto rounded bg-mono-100 p-2 text-[11px] dark:bg-mono-900" data-testid="override">
                {JSON.stringify(f.suggested_override, null, 2)}
              </pre>
            </details>
          ) : null}
        </div>
      ))}
    </div>
  );
}

function Figures({ data }: { data: ReconciliationResponse }) {
  const t = data.totals;
  const items: [string, string, string][] = [
    ["Billed", formatUsd(t.billed_cost_usd), "billed"],
    ["Metered", formatUsd(t.metered_cost_usd), "metered"],
    ["Drift", `${formatUsd(t.drift_usd)} (${percent(t.drift_percent)})`, "drift"],
    ["Unmetered", formatUsd(t.unmetered_usd), "unmetered"],
  ];
  return (
    <dl className="grid grid-cols-2 gap-3 sm:grid-cols-4">
      {items.map(([label, value, id]) => (
        <div key={id}>
          <dt className="text-xs text-mono-600 dark:text-mono-400">{label}</dt>
          <dd className="font-mono text-lg font-semibold text-mono-950 dark:text-mono-50" data-testid={`reconciliation-${id}`}>
            {value}
          </dd>
        </div>
      ))}
    </dl>
  );
}

export function ReconciliationTable({ data, showMatches }: { data: ReconciliationResponse; showMatches: boolean }) {
  const rows = data.rows
    .filter((r) => showMatches || r.cause !== "match")
    .sort((a, b) => (a.date === b.date ? Math.abs(b.drift_usd) - Math.abs(a.drift_usd) : a.date < b.date ? 1 : -1));
  if (rows.length === 0) {
    return (
      <p className="muted text-sm" data-testid="reconciliation-clean">
        Every reconciled day and model matches the bill.
      </p>
    );
  }
  return (
    <div className="-mx-4 overflow-x-auto px-4 sm:mx-0 sm:px-0">
      <table className="w-full min-w-[640px] text-sm" data-testid="reconciliation-rows">
        <caption className="sr-only">Billed against metered cost per day and model</caption>
        <thead>
          <tr className="border-b border-mono-200 dark:border-mono-800">
            {["Day (UTC)", "Model", "Billed", "Metered", "Drift", "Unmetered", "Where from"].map((head, i) => (
              <th
                key={head}
                scope="col"
                className={`py-2 text-xs font-medium text-mono-600 uppercase dark:text-mono-400 ${i < 2 || i === 6 ? "text-left" : "text-right"}`}
              >
                {head}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr
              key={`${row.date}-${row.provider}-${row.model}`}
              className="border-b border-mono-100 align-top last:border-b-0 dark:border-mono-850"
              data-testid="reconciliation-row"
              data-cause={row.cause}
            >
              <td className="py-2 pr-3 font-mono whitespace-nowrap">
                {row.date}
                {row.provisional ? (
                  <span className="ml-1 text-xs text-mono-500" title="The provider's figures for this day may still change">
                    (provisional)
                  </span>
                ) : null}
              </td>
              <th scope="row" className="py-2 pr-3 text-left font-mono font-normal break-all">
                {row.model}
                <span className="block text-xs text-mono-500">{providerName(row.provider)}</span>
              </th>
              <td className="py-2 text-right font-mono">{formatUsd(row.billed_cost_usd)}</td>
              <td className="py-2 text-right font-mono">{formatUsd(row.metered_cost_usd)}</td>
              <td className="py-2 text-right font-mono" data-testid="row-drift">
                {formatUsd(row.drift_usd)}
                <span className="block text-xs text-mono-500">{percent(row.drift_percent)}</span>
              </td>
              <td className="py-2 text-right font-mono" data-testid="row-unmetered">
                {formatUsd(row.unmetered_usd)}
              </td>
              <td className="py-2 pl-3">
                <span data-testid="row-cause">{causeText(row)}</span>
                <RowDetails row={row} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * Under the page's filter chip the API narrows the bill to a provider filter's provider; any other
 * filter (a tag, model or operation) leaves it account-level — invoices carry no tags or operations —
 * and the panel says so above the figures (the API's `scope` and `note`).
 */
export default function ReconciliationPanel({ userId, days, where = null }: { userId: string; days: number; where?: Where | null }) {
  const fetcher = useCallback(() => getReconciliation(userId, days, new Date(), where), [userId, days, where]);
  const { resource, retry } = useResource(fetcher);
  const [showMatches, setShowMatches] = useState(false);
  const description = "What the providers billed against what llmtally metered, per UTC day and model (reconciled daily).";
  return (
    <Section
      id="reconciliation"
      title="Metered vs billed"
      description={description}
      actions={
        resource.state === "ok" && resource.value.rows.length > 0 ? (
          <label className="flex items-center gap-2 text-sm">
            <input type="checkbox" checked={showMatches} onChange={(e) => setShowMatches(e.target.checked)} />
            Show matching rows
          </label>
        ) : undefined
      }
    >
      {resource.state === "loading" ? (
        <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
          <SpinnerIcon className="h-4 w-4" />
          <span className="sr-only">Loading the reconciliation…</span>
        </div>
      ) : resource.state === "error" ? (
        <InlineError what="the reconciliation" message={resource.message} onRetry={retry} />
      ) : resource.value.rows.length === 0 && resource.value.sources.length === 0 ? (
        <p className="muted text-sm" data-testid="reconciliation-unconfigured">
          No bill has been read yet. Store an OpenAI or Anthropic admin key under Billing Keys on the{" "}
          <a href={ROUTES.configuration} className="underline">
            LLM Configuration
          </a>{" "}
          page, or turn on Bedrock's Cost Explorer source (docs/reconciliation.md); the daily job then compares each
          day's bill with the metered usage.
        </p>
      ) : (
        <div className="space-y-4">
          {where ? (
            <p
              className="rounded-md border border-mono-300 px-3 py-2 text-sm text-mono-800 dark:border-mono-700 dark:text-mono-200"
              data-testid="reconciliation-scope"
              data-scope={resource.value.scope ?? "account"}
            >
              {resource.value.scope === "provider"
                ? `Only ${providerName(where.value)}'s bill (${whereLabel(where)}).`
                : `Whole account, not ${whereLabel(where)}: ${resource.value.note ?? "the providers' invoices cannot be cut by this filter."}`}
            </p>
          ) : null}
          <Figures data={resource.value} />
          {resource.value.sources
            .filter((s) => s.error)
            .map((s) => (
              <p key={s.provider} role="status" className="text-sm text-mono-700 dark:text-mono-300" data-testid="source-error">
                {providerName(s.provider)}: the last run could not read the bill — {s.error}
              </p>
            ))}
          <ReconciliationTable data={resource.value} showMatches={showMatches} />
        </div>
      )}
    </Section>
  );
}
