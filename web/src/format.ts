/** Display formatting: money, counts, days, timezones. Money arrives as exact JSON numbers (USD). */

const counts = new Intl.NumberFormat("en-US");

export function formatNumber(value: number): string {
  return counts.format(value);
}

/** Large token counts as 1.2M / 345.6K in tight places; the exact count goes in a title. */
export function formatCompact(value: number): string {
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

/**
 * USD with cents, and with 4 decimals below $1 so a small figure is never shown as $0.00
 * (the seed showed 4 decimals everywhere).
 */
export function formatUsd(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const digits = Math.abs(value) < 1 ? 4 : 2;
  return new Intl.NumberFormat("en-US", {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}

/** A price per 1M tokens: as the catalog gives it, up to 4 decimals ($3, $0.075, $1.25). */
export function formatPrice(value: number | null | undefined): string {
  if (value === null || value === undefined) return "unpriced";
  return `$${new Intl.NumberFormat("en-US", { maximumFractionDigits: 4 }).format(value)}`;
}

/** `YYYY-MM-DD` of `now` in `tz` (en-CA formats dates as ISO). */
export function localDate(tz: string, now: Date = new Date()): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(
    now,
  );
}

/** `day` (YYYY-MM-DD) moved by `delta` days, calendar arithmetic only (no timezone involved). */
export function addDays(day: string, delta: number): string {
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  const moved = new Date(Date.UTC(y, m - 1, d + delta));
  return moved.toISOString().slice(0, 10);
}

/** "Nov 3" for a YYYY-MM-DD day (read as a calendar day, not an instant). */
export function shortDay(day: string): string {
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

export function longDay(day: string): string {
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString("en-US", {
    weekday: "short",
    month: "short",
    day: "numeric",
    year: "numeric",
    timeZone: "UTC",
  });
}

/** A budget period ("2026-11") → "November 2026". */
export function monthName(period: string): string {
  const [y, m] = period.split("-").map(Number) as [number, number];
  if (!y || !m) return period;
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleDateString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
}

export const BUDGET_STATE_LABELS = { ok: "On track", warning: "Warning", exhausted: "Exhausted" } as const;

export function browserTimezone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Every IANA zone the browser knows (UTC first), with `current` included even if it is not listed. */
export function timezones(current: string): string[] {
  let zones: string[] = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  const all = new Set(["UTC", current, ...zones]);
  return [...all];
}

/** `query_generation` → "Query generation". */
export function humanize(name: string): string {
  const text = name.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export const PROVIDER_NAMES: Record<string, string> = {
  anthropic: "Anthropic",
  openai: "OpenAI",
  google: "Google Gemini",
  bedrock: "AWS Bedrock",
};

export function providerName(id: string): string {
  return PROVIDER_NAMES[id] ?? humanize(id);
}
