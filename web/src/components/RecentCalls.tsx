/**
 * The period's most recent calls (raw entries, newest first): model, operation, status, tokens,
 * cost and tags as chips. A call whose provider never reported usage (a stream closed early or
 * that ended without it) is marked "usage missing" and its figures shown as lower bounds ("≥"),
 * so it never reads as a $0 success. "Load more" follows the API's cursor. Under the page's filter
 * chip the API filters the calls (`where`); a tag matches the value the call was rolled up under, so
 * the list is exactly the calls the filtered totals count (a page may then be short: the cursor says
 * whether more follow).
 */
import { useCallback, useEffect, useState } from "react";
import { ApiError, getEntries, whereLabel, type Period, type UsageEntry, type Where } from "../api";
import { formatNumber, formatUsd, humanize, providerName } from "../format";
import { InlineError } from "./CostInsights";
import { AlertIcon, SpinnerIcon } from "./icons";
import { Section } from "./ui";

export const RECENT_PAGE = 25;

const MISSING_HELP =
  "The provider never reported this call's usage (the stream was closed early, ended without usage, or failed after partial output): its tokens and cost are lower bounds.";

type State =
  | { state: "loading" }
  | { state: "error"; message: string }
  | { state: "ok"; entries: UsageEntry[]; cursor: string | null; more: "idle" | "loading" | { error: string } };

function message(err: unknown): string {
  return err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

function time(timestamp: string, tz: string): string {
  const at = new Date(timestamp);
  if (Number.isNaN(at.getTime())) return timestamp;
  return new Intl.DateTimeFormat("en-GB", {
    timeZone: tz,
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).format(at);
}

export function TagChips({ tags }: { tags: Record<string, string> | undefined }) {
  const entries = Object.entries(tags ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return <span className="muted">—</span>;
  return (
    <ul className="flex flex-wrap gap-1" aria-label="Tags">
      {entries.map(([key, value]) => (
        <li
          key={key}
          className="rounded-full border border-mono-300 bg-mono-100 px-2 py-0.5 font-mono text-xs break-all text-mono-800 dark:border-mono-700 dark:bg-mono-850 dark:text-mono-200"
          data-testid="tag-chip"
        >
          <span className="text-mono-500 dark:text-mono-400">{key}:</span> {value}
        </li>
      ))}
    </ul>
  );
}

function EntryRow({ entry, tz }: { entry: UsageEntry; tz: string }) {
  const missing = entry.usage_source === "missing";
  const bound = missing ? "≥ " : "";
  return (
    <tr
      className="border-b border-mono-100 align-top last:border-b-0 dark:border-mono-850"
      data-testid="entry-row"
      data-event-id={entry.event_id}
      data-cost={String(entry.cost_usd)}
      data-usage-missing={missing ? "true" : undefined}
    >
      <td className="py-2 pr-3 whitespace-nowrap text-mono-700 dark:text-mono-300">
        <time dateTime={entry.timestamp}>{time(entry.timestamp, tz)}</time>
      </td>
      <th scope="row" className="py-2 pr-3 text-left font-normal">
        <span className="block font-mono break-all text-mono-900 dark:text-mono-100">{entry.model}</span>
        <span className="muted text-xs">{providerName(entry.provider)}</span>
      </th>
      <td className="py-2 pr-3 text-mono-700 dark:text-mono-300">{humanize(entry.operation_type)}</td>
      <td className="py-2 pr-3">
        {entry.status === "ok" ? (
          <span className="text-mono-700 dark:text-mono-300">{entry.cache_hit ? "ok · cache hit" : "ok"}</span>
        ) : (
          <span className="font-medium text-mono-900 dark:text-mono-100">{humanize(entry.error_type ?? "error")}</span>
        )}
        {missing ? (
          <span
            className="mt-1 flex w-fit items-center gap-1 rounded border border-mono-400 px-1.5 text-xs font-medium text-mono-900 dark:border-mono-600 dark:text-mono-100"
            title={MISSING_HELP}
            data-testid="usage-missing-badge"
          >
            <AlertIcon className="h-3 w-3" aria-hidden="true" />
            usage missing
          </span>
        ) : null}
      </td>
      <td className="py-2 pr-3 text-right font-mono text-mono-700 dark:text-mono-300" title={missing ? MISSING_HELP : undefined}>
        {bound}
        {formatNumber(entry.total_tokens)}
      </td>
      <td className="py-2 pr-3 text-right font-mono text-mono-900 dark:text-mono-100" title={missing ? MISSING_HELP : undefined}>
        {entry.cost_source === "unpriced" ? "unpriced" : `${bound}${formatUsd(entry.cost_usd)}`}
      </td>
      <td className="py-2">
        <TagChips tags={entry.tags} />
      </td>
    </tr>
  );
}

export default function RecentCalls({ userId, period, where = null }: { userId: string; period: Period; where?: Where | null }) {
  const [view, setView] = useState<State>({ state: "loading" });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    setView({ state: "loading" });
    getEntries(userId, period, { limit: RECENT_PAGE, where }).then(
      (page) => live && setView({ state: "ok", entries: page.entries, cursor: page.next_cursor, more: "idle" }),
      (err: unknown) => live && setView({ state: "error", message: message(err) }),
    );
    return () => {
      live = false;
    };
  }, [userId, period, where, attempt]);

  const loadMore = useCallback(async () => {
    if (view.state !== "ok" || !view.cursor) return;
    const { entries, cursor } = view;
    setView({ ...view, more: "loading" });
    try {
      const page = await getEntries(userId, period, { limit: RECENT_PAGE, cursor, where });
      setView({ state: "ok", entries: [...entries, ...page.entries], cursor: page.next_cursor, more: "idle" });
    } catch (err) {
      setView({ state: "ok", entries, cursor, more: { error: message(err) } });
    }
  }, [view, userId, period, where]);

  return (
    <Section
      id="recent-calls"
      title={where ? `Recent calls · ${whereLabel(where)}` : "Recent calls"}
      description={`${where ? `Only the calls of ${whereLabel(where)}. ` : ""}Newest first, times in ${period.tz}. Calls marked “usage missing” never had their usage reported: their tokens and cost are lower bounds.`}
    >
      {view.state === "loading" ? (
        <div className="flex items-center gap-2 py-2 text-sm text-mono-500" aria-busy="true">
          <SpinnerIcon className="h-4 w-4" />
          <span className="sr-only">Loading recent calls…</span>
        </div>
      ) : view.state === "error" ? (
        <InlineError what="recent calls" message={view.message} onRetry={() => setAttempt((n) => n + 1)} />
      ) : view.entries.length === 0 ? (
        view.cursor ? (
          <div className="py-4 text-center text-sm">
            <p className="muted" data-testid="sparse-page">
              No matching call in the newest calls read so far; older calls may match.
            </p>
            <button type="button" className="btn-secondary mt-2" onClick={() => void loadMore()} disabled={view.more === "loading"}>
              Look further back
            </button>
          </div>
        ) : (
          <p className="muted py-4 text-center text-sm">No calls in this period{where ? ` for ${whereLabel(where)}` : ""}.</p>
        )
      ) : (
        <>
          <div className="-mx-4 overflow-x-auto px-4 sm:mx-0 sm:px-0">
            <table className="w-full min-w-[720px] text-sm" data-testid="recent-calls">
              <caption className="sr-only">The period's most recent calls with their tokens, cost and tags</caption>
              <thead>
                <tr className="border-b border-mono-200 dark:border-mono-800">
                  {["Time", "Model", "Operation", "Status", "Tokens", "Cost", "Tags"].map((head) => (
                    <th
                      key={head}
                      scope="col"
                      className={`py-2 pr-3 text-xs font-medium text-mono-600 uppercase dark:text-mono-400 ${
                        head === "Tokens" || head === "Cost" ? "text-right" : "text-left"
                      }`}
                    >
                      {head}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {view.entries.map((entry) => (
                  <EntryRow key={entry.event_id} entry={entry} tz={period.tz} />
                ))}
              </tbody>
            </table>
          </div>
          {view.cursor ? (
            <div className="mt-3 flex flex-wrap items-center gap-3">
              <button
                type="button"
                className="btn-secondary"
                onClick={() => void loadMore()}
                disabled={view.more === "loading"}
              >
                {view.more === "loading" ? <SpinnerIcon className="h-4 w-4" /> : null}
                Load more
              </button>
              {typeof view.more === "object" ? (
                <span role="alert" className="text-sm text-mono-700 dark:text-mono-300">
                  Could not load more: {view.more.error}
                </span>
              ) : null}
            </div>
          ) : null}
        </>
      )}
    </Section>
  );
}
