import { useState } from "react";
import type { DailyRow } from "../api";
import { formatNumber, formatUsd, longDay, shortDay } from "../format";

/**
 * One bar per day, scaled to the most expensive day; each bar carries its cost label and request
 * count (printed when there is room, else in the day's tooltip and the readout below). Plain
 * elements, not a charting library: see docs/dashboard.md for why.
 */
export default function DailyTrendChart({ days }: { days: DailyRow[] }) {
  const [focused, setFocused] = useState<number | null>(null);
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
            const label = `${longDay(day.date)}: ${formatUsd(day.cost_usd)}, ${formatNumber(day.requests)} requests`;
            const active = index === shown;
            return (
              <li
                key={day.date}
                className="group relative flex h-full min-w-0 flex-1 flex-col items-center justify-end"
                data-testid="daily-bar"
                data-date={day.date}
                data-cost={day.cost_usd}
                data-requests={day.requests}
              >
                {roomy ? (
                  <span className="mb-1 text-center text-[10px] leading-tight font-medium text-mono-800 sm:text-xs dark:text-mono-200">
                    <span className="block">{formatUsd(day.cost_usd)}</span>
                    <span className="block font-normal text-mono-500 dark:text-mono-400">
                      {formatNumber(day.requests)} req
                    </span>
                  </span>
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
          </>
        ) : null}
      </figcaption>
    </figure>
  );
}
