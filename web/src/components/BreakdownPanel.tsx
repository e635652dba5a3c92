/**
 * "Breakdown by": cost by provider, model, operation or one of the tenant's tag keys, as a top-N
 * table with the rows past N summed as "(rest)" and the tag values past the tenant's bound as
 * "(other)"; a row's value becomes the page's filter chip; the table downloads as CSV (built here
 * from the JSON answer: the same figures, no second request).
 */
import { useCallback, useId, useMemo, useState } from "react";
import {
  getBreakdown,
  getTagKeys,
  type BreakdownResponse,
  type BreakdownRow,
  type Period,
  type TagKeysResponse,
  type Where,
} from "../api";
import { formatNumber, formatUsd, humanize, providerName } from "../format";
import { useResource } from "../useResource";
import { InlineError } from "./CostInsights";
import { DownloadIcon, SpinnerIcon } from "./icons";
import { ProgressBar, Section } from "./ui";

export const TOP_N = 10;
export const BASE_DIMENSIONS = ["provider", "model", "operation"] as const;
export const OTHER_VALUE = "(other)";
export const REST_VALUE = "(rest)";
/** By a tag: the calls that carry no value for that key. */
export const NONE_VALUE = "(none)";

const CSV_COLUMNS: (keyof BreakdownRow)[] = [
  "value",
  "provider",
  "requests",
  "input_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "output_tokens",
  "reasoning_tokens",
  "total_tokens",
  "cost_usd",
  "billed_cost_usd",
  "share_percent",
  "errors",
  "unpriced_requests",
  "usage_missing",
];

/** A JSON number as a spreadsheet reads it: never exponent notation (nano-dollar amounts are 1e-9). */
export function plainNumber(value: number): string {
  const text = String(value);
  if (!/e/i.test(text)) return text;
  return value.toFixed(9).replace(/\.?0+$/, "");
}

/**
 * One CSV field: quoted when it holds a comma, quote or line break; a text starting with = + - @
 * (a tag value may) is prefixed with ' so a spreadsheet never reads it as a formula.
 */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return plainNumber(value);
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The breakdown as CSV: a header, the rows costliest first, then "(rest)" and "(total)". */
export function breakdownCsv(answer: BreakdownResponse): string {
  const lines = [["dimension", ...CSV_COLUMNS].join(",")];
  const rows = [...answer.rows, ...(answer.other ? [answer.other] : []), answer.total];
  for (const row of rows) lines.push([answer.by, ...CSV_COLUMNS.map((column) => row[column])].map(csvField).join(","));
  return `${lines.join("\r\n")}\r\n`;
}

export function dimensionLabel(dimension: string): string {
  return dimension.startsWith("tag:") ? dimension.slice(4) : humanize(dimension);
}

function valueLabel(by: string, value: string): string {
  if (value === OTHER_VALUE) return "(other: values past the bound)";
  if (value === REST_VALUE) return `(rest: past the top ${TOP_N})`;
  if (value === NONE_VALUE) return `(no ${dimensionLabel(by)} tag)`;
  if (by === "provider") return providerName(value);
  if (by === "operation") return humanize(value);
  return value;
}

function saveCsv(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export default function BreakdownPanel({
  userId,
  period,
  where,
  onFilter,
}: {
  userId: string;
  period: Period;
  where: Where | null;
  onFilter: (where: Where) => void;
}) {
  const [by, setBy] = useState<string>("provider");
  const ids = useId();
  const fetchKeys = useCallback(() => getTagKeys(userId), [userId]);
  const keys = useResource<TagKeysResponse>(fetchKeys);
  const fetchBreakdown = useCallback(
    () => getBreakdown(userId, period, by, { where, limit: TOP_N }),
    // the period and the filter are new objects per render of the page: depend on their fields
    [userId, by, period.start, period.end, period.tz, where?.dimension, where?.value],
  );
  const breakdown = useResource<BreakdownResponse>(fetchBreakdown);
  const dimensions = useMemo(() => {
    const tagKeys = keys.resource.state === "ok" ? keys.resource.value.keys.map((k) => `tag:${k.key}`) : [];
    const all: string[] = [...BASE_DIMENSIONS, ...tagKeys];
    return all.includes(by) ? all : [...all, by];
  }, [keys.resource, by]);

  const answer = breakdown.resource.state === "ok" ? breakdown.resource.value : null;
  const current = answer !== null && answer.by === by ? answer : null;

  return (
    <Section
      id="breakdown"
      title="Breakdown"
      description={`Top ${TOP_N} by cost; pick a row to filter the page by it.`}
      actions={
        <div className="flex flex-wrap items-end gap-2">
          <div>
            <label htmlFor={`${ids}-by`} className="label text-xs!">
              Breakdown by
            </label>
            <select id={`${ids}-by`} className="input w-44 py-1.5!" value={by} onChange={(e) => setBy(e.target.value)}>
              {dimensions.map((dimension) => (
                <option key={dimension} value={dimension}>
                  {dimension.startsWith("tag:") ? `Tag: ${dimension.slice(4)}` : dimensionLabel(dimension)}
                </option>
              ))}
            </select>
          </div>
          <button
            type="button"
            className="btn-secondary h-[38px]"
            disabled={current === null || current.total.requests === 0}
            onClick={() =>
              current &&
              saveCsv(
                `llm-breakdown-${userId}-${current.by.replace(/[^a-z0-9_.-]/gi, "_")}-${period.start}-to-${period.end}.csv`,
                breakdownCsv(current),
              )
            }
          >
            <DownloadIcon className="h-4 w-4" />
            Breakdown CSV
          </button>
        </div>
      }
    >
      {keys.resource.state === "error" ? (
        <div className="mb-3">
          <InlineError what="tag keys" message={keys.resource.message} onRetry={keys.retry} />
        </div>
      ) : null}
      {breakdown.resource.state === "error" ? (
        <InlineError what="the breakdown" message={breakdown.resource.message} onRetry={breakdown.retry} />
      ) : current === null ? (
        <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
          <SpinnerIcon className="h-4 w-4" />
          <span className="sr-only">Loading the breakdown…</span>
        </div>
      ) : current.total.requests === 0 ? (
        <p className="muted py-4 text-center text-sm">No usage in this period{where ? " under this filter" : ""}.</p>
      ) : (
        <BreakdownTable answer={current} onFilter={onFilter} />
      )}
    </Section>
  );
}

function BreakdownTable({ answer, onFilter }: { answer: BreakdownResponse; onFilter: (where: Where) => void }) {
  const heads = ["Value", "Requests", "Tokens", "Cost", "Share"];
  const rows = [...answer.rows, ...(answer.other ? [answer.other] : [])];
  return (
    <div className="-mx-4 overflow-x-auto px-4 sm:mx-0 sm:px-0">
      <table className="w-full min-w-[560px] text-sm" data-testid="breakdown-table" data-by={answer.by}>
        <caption className="sr-only">Cost by {dimensionLabel(answer.by)}, costliest first</caption>
        <thead>
          <tr className="border-b border-mono-200 dark:border-mono-800">
            {heads.map((head, i) => (
              <th
                key={head}
                scope="col"
                className={`py-2 text-xs font-medium text-mono-600 uppercase dark:text-mono-400 ${i === 0 ? "text-left" : "text-right"}`}
              >
                {i === 0 ? dimensionLabel(answer.by) : head}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => {
            const synthetic = row.value === REST_VALUE || row.value === OTHER_VALUE || row.value === NONE_VALUE;
            return (
              <tr
                key={row.value + (row.provider ?? "")}
                className="border-b border-mono-100 dark:border-mono-850"
                data-testid="breakdown-row"
                data-value={row.value}
                data-cost={String(row.cost_usd)}
              >
                <th scope="row" className="py-2 pr-3 text-left font-normal break-all text-mono-900 dark:text-mono-100">
                  {synthetic ? (
                    <span className="muted italic">{valueLabel(answer.by, row.value)}</span>
                  ) : (
                    <button
                      type="button"
                      className="text-left underline-offset-2 hover:underline"
                      title={`Filter the page by ${dimensionLabel(answer.by)}: ${row.value}`}
                      onClick={() => onFilter({ dimension: answer.by, value: row.value })}
                    >
                      {valueLabel(answer.by, row.value)}
                    </button>
                  )}
                  {row.provider ? <span className="muted ml-2 text-xs">{providerName(row.provider)}</span> : null}
                  <ProgressBar share={row.share_percent / 100} label={`${row.value} share of cost`} />
                </th>
                <td className="py-2 text-right font-mono text-mono-700 dark:text-mono-300">{formatNumber(row.requests)}</td>
                <td className="py-2 text-right font-mono text-mono-700 dark:text-mono-300">{formatNumber(row.total_tokens)}</td>
                <td className="py-2 text-right font-mono font-medium text-mono-900 dark:text-mono-100" title={String(row.cost_usd)}>
                  {formatUsd(row.cost_usd)}
                </td>
                <td className="py-2 text-right font-mono text-mono-700 dark:text-mono-300">{row.share_percent.toFixed(1)}%</td>
              </tr>
            );
          })}
        </tbody>
        <tfoot>
          <tr data-testid="breakdown-total" data-cost={String(answer.total.cost_usd)}>
            <th scope="row" className="py-2 pr-3 text-left font-medium text-mono-900 dark:text-mono-100">
              Total
            </th>
            <td className="py-2 text-right font-mono">{formatNumber(answer.total.requests)}</td>
            <td className="py-2 text-right font-mono">{formatNumber(answer.total.total_tokens)}</td>
            <td className="py-2 text-right font-mono font-medium">{formatUsd(answer.total.cost_usd)}</td>
            <td className="py-2 text-right font-mono">100%</td>
          </tr>
        </tfoot>
      </table>
      {answer.folded_values > 0 ? (
        <p className="muted mt-2 text-xs" data-testid="folded-note">
          {formatNumber(answer.folded_values)} {answer.folded_values === 1 ? "value was" : "values were"} past the
          tenant's bound for this tag and {answer.folded_values === 1 ? "is" : "are"} counted in (other).
        </p>
      ) : null}
      {answer.total.usage_missing > 0 ? (
        <p className="muted mt-1 text-xs">
          {formatNumber(answer.total.usage_missing)} calls without reported usage: their figures are lower bounds.
        </p>
      ) : null}
    </div>
  );
}

/** The page's filter: `customer: acme`, with a button that removes it. */
export function FilterChip({ where, onClear }: { where: Where; onClear: () => void }) {
  const label = `${dimensionLabel(where.dimension)}: ${where.dimension === "provider" ? providerName(where.value) : where.value}`;
  return (
    <span
      className="inline-flex items-center gap-1 rounded-full border border-mono-300 bg-mono-100 py-0.5 pr-1 pl-3 text-sm dark:border-mono-700 dark:bg-mono-850"
      data-testid="filter-chip"
    >
      <span className="text-mono-900 dark:text-mono-100">{label}</span>
      <button
        type="button"
        className="rounded-full px-1.5 text-mono-600 hover:bg-mono-200 dark:text-mono-400 dark:hover:bg-mono-800"
        aria-label={`Remove the filter ${label}`}
        onClick={onClear}
      >
        ×
      </button>
    </span>
  );
}
