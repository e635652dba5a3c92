import { memo, useState } from "react";
import type { Anomaly, DailyRow } from "../api";
import { formatNumber, formatUsd, longDay, shortDay } from "../format";

/** "unusual: $6.75 vs expected $1.20" — the words a marked day carries (name, tooltip, readout). */
export function anomalyText(anomaly: Anomaly): string {
  return `unusual: ${formatUsd(anomaly.cost_usd)} vs expected ${formatUsd(anomaly.expected_usd)}`;
}

/**
 * One bar per day, scaled to the most expensive day; each bar carries its cost label and request
 * count (printed when there is room, else in the day's tooltip and the readout below). Plain
 * elements, not a charting library: see docs/dashboard.md for why. Days the anomaly detector
 * flagged get a marker above the bar (filled: unusually high, hollow: unusually low) and say so
 * in their accessible name.
 */
const NONE: Anomaly[] = [];

function DailyTrendChart({ days, anomalies = NONE }: { days: DailyRow[]; anomalies?: Anomaly[] }) {
  const [focused, setFocused] = useState<number | null>(null);
  const unusual = new Map(anomalies.map((a) => [a.date, a]));
  const marked = days.filter((d) => unusual.has(d.date));
  const max = Math.max(0, ...days.map((d) => d.cost_usd));
  const peak = days.findIndex((d) => d.cost_usd === max && max > 0);
  const roomy = days.length <= 14;
  const shown = focused ?? (peak >= 0 ? peak : days.length - 1);
  const readout = days[shown];
  const everyNth = days.length <= 14 ? 1 : days.length <= 31 ? 5 : 15;

  return (
    <figure className="m-0" data-testid="daily-chart" data-days={days.length}>
      <div className="flex items-stretch gap-2">
        <div
          className="flex w-16 shrink-0 flex-col justify-between pb-6 text-right text-[11px] text-mono-500 dark:text-mono-400"
          aria-hidden="true"
        >
          <span>{formatUsd(max)}</span>
          <span>{formatUsd(max / 2)}</span>
          <span>{formatUsd(0)}</span>
        </div>
        <ol
          className={`relative flex h-56 min-w-0 flex-1 items-end border-b border-l border-mono-300 pl-1 dark:border-mono-700 ${
            days.length > 60 ? "gap-px" : "gap-0.5 sm:gap-1"
          }`}
          aria-label={`Daily cost, ${days.length} days`}
          onMouseLeave={() => setFocused(null)}
        >
          {days.map((day, index) => {
            const height = max > 0 ? (day.cost_usd / max) * 100 : 0;
            const anomaly = unusual.get(day.date);
            const label = `${longDay(day.date)}: ${formatUsd(day.cost_usd)}, ${formatNumber(day.requests)} requests${
              anomaly ? `; ${anomalyText(anomaly)}` : ""
            }`;
            const active = index === shown;
            return (
              <li
                key={day.date}
                className="group relative flex h-full min-w-0 flex-1 flex-col items-center justify-end"
                data-testid="daily-bar"
                data-date={day.date}
                data-cost={day.cost_usd}
                data-requests={day.requests}
                data-anomaly={anomaly?.direction}
              >
                {roomy ? (
                  <span className="mb-1 text-center text-[10px] leading-tight font-medium text-mono-800 sm:text-xs dark:text-mono-200">
                    <span className="block">{formatUsd(day.cost_usd)}</span>
                    <span className="block font-normal text-mono-500 dark:text-mono-400">
                      {formatNumber(day.requests)} req
                    </span>
                  </span>
                ) : null}
                {anomaly ? (
                  <span
                    className={`mb-0.5 h-2 w-2 shrink-0 rounded-full border-2 border-mono-950 dark:border-mono-50 ${
                      anomaly.direction === "high" ? "bg-mono-950 dark:bg-mono-50" : "bg-white dark:bg-mono-900"
                    }`}
                    data-testid="anomaly-marker"
                    aria-hidden="true"
                  />
                ) : null}
                <button
                  type="button"
                  className={`w-full rounded-t-sm ${
                    active ? "bg-mono-950 dark:bg-mono-50" : "bg-mono-700 hover:bg-mono-950 dark:bg-mono-300 dark:hover:bg-mono-50"
                  } ${height === 0 ? "bg-mono-200! dark:bg-mono-800!" : ""}`}
                  style={{ height: `${Math.max(height, 0.8)}%` }}
                  aria-label={label}
                  title={label}
                  onFocus={() => setFocused(index)}
                  onMouseEnter={() => setFocused(index)}
                  onBlur={() => setFocused(null)}
                />
                <span
                  className="absolute -bottom-6 text-[10px] whitespace-nowrap text-mono-500 dark:text-mono-400"
                  aria-hidden="true"
                >
                  {index % everyNth === 0 || index === days.length - 1 ? shortDay(day.date) : ""}
                </span>
              </li>
            );
          })}
        </ol>
      </div>
      <figcaption className="mt-8 flex flex-wrap items-baseline gap-x-4 gap-y-1 text-sm" aria-live="polite">
        {readout ? (
          <>
            <span className="font-medium text-mono-900 dark:text-mono-100">
              {longDay(readout.date)}
              {focused === null && peak >= 0 ? " (busiest day)" : ""}
            </span>
            <span className="font-mono text-mono-900 dark:text-mono-100">{formatUsd(readout.cost_usd)}</span>
            <span className="muted">{formatNumber(readout.requests)} requests</span>
            <span className="muted">{formatNumber(readout.tokens)} tokens</span>
            {unusual.has(readout.date) ? (
              <span className="font-medium text-mono-900 dark:text-mono-100">{anomalyText(unusual.get(readout.date)!)}</span>
            ) : null}
          </>
        ) : null}
      </figcaption>
      {marked.length > 0 ? (
        <p className="muted mt-2 flex flex-wrap items-center gap-x-4 gap-y-1 text-xs" data-testid="anomaly-legend">
          <span className="inline-flex items-center gap-1.5">
            <span className="h-2 w-2 rounded-full border-2 border-mono-950 bg-mono-950 dark:border-mono-50 dark:bg-mono-50" aria-hidden="true" />
            unusually high
          </span>
          <span className="inline-flex items-center gap-1.5">
            <span className="h-2 w-2 rounded-full border-2 border-mono-950 bg-white dark:border-mono-50 dark:bg-mono-900" aria-hidden="true" />
            unusually low
          </span>
          <span>
            {marked.length} unusual {marked.length === 1 ? "day" : "days"} in this period
          </span>
        </p>
      ) : null}
    </figure>
  );
}

/** Memoized: the page re-renders as each insight arrives; the bars only when their data changes. */
export default memo(DailyTrendChart);
