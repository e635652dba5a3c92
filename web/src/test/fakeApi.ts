/** A fake of the HTTP API for component tests: routes by method + path, records every request. */
import { vi } from "vitest";
import type {
  AnomaliesResponse,
  BillingKeysResponse,
  BudgetAlert,
  BudgetResponse,
  BreakdownResponse,
  BreakdownRow,
  Forecast,
  ModelsResponse,
  RecommendationsResponse,
  SettingsResponse,
  TagBudgetsResponse,
  TagKeysResponse,
  UsageSummary,
} from "../api";

export type Recorded = { method: string; url: string; body: unknown };
type Handler = (url: URL, body: unknown) => { status?: number; body: unknown; headers?: Record<string, string> };

export function installFetch(routes: Record<string, Handler>) {
  const calls: Recorded[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://localhost");
    const method = (init?.method ?? "GET").toUpperCase();
    const body = typeof init?.body === "string" ? JSON.parse(init.body) : undefined;
    calls.push({ method, url: url.pathname + url.search, body });
    const key = Object.keys(routes).find((pattern) => {
      const [m, p] = pattern.split(" ");
      return m === method && new RegExp(`^${p}$`).test(url.pathname);
    });
    if (!key) return new Response(JSON.stringify({ error: "no such route" }), { status: 404 });
    const answer = routes[key]!(url, body);
    const isText = typeof answer.body === "string";
    return new Response(isText ? (answer.body as string) : JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { "Content-Type": isText ? "text/csv" : "application/json", ...(answer.headers ?? {}) },
    });
  });
  vi.stubGlobal("fetch", fetchMock);
  return { calls, fetchMock };
}

export const SETTINGS: SettingsResponse = {
  preferences: {
    defaultProvider: "bedrock",
    queryModel: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    detectionModel: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    maxTokens: 2000,
    temperature: 0,
    enableCaching: false,
    trackUsage: true,
  },
  hasApiKeys: { anthropic: false, openai: false, google: false, bedrock: true },
};

const model = (id: string, name: string, input: number, output: number, status: "current" | "legacy" = "current") => ({
  id,
  name,
  status,
  pricing: { input, output },
  costPreviewUsd: input + output,
  priceSource: "catalog" as const,
});

export const MODELS: ModelsResponse = {
  providers: [
    {
      id: "anthropic",
      name: "Anthropic",
      requiresKey: true,
      models: [
        model("claude-sonnet-4-6", "Claude Sonnet 4.6", 3, 15),
        model("claude-haiku-4-5-20251001", "Claude Haiku 4.5", 1, 5),
        model("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet", 3, 15, "legacy"),
      ],
    },
    { id: "openai", name: "OpenAI", requiresKey: true, models: [model("gpt-5", "GPT-5", 1.25, 10)] },
    { id: "google", name: "Google", requiresKey: true, models: [model("gemini-2.5-flash", "Gemini 2.5 Flash", 0.3, 2.5)] },
    {
      id: "bedrock",
      name: "AWS Bedrock",
      requiresKey: false,
      models: [model("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet 4.5", 3, 15)],
    },
  ],
};

const breakdown = (requests: number, tokens: number, cost: number, provider?: string) => ({
  requests,
  tokens,
  cost_usd: cost,
  billed_cost_usd: cost,
  errors: 0,
  unpriced_requests: 0,
  ...(provider ? { provider } : {}),
});

export function summaryFor(scale: number): UsageSummary {
  return {
    total_requests: 120 * scale,
    total_tokens: 345_678 * scale,
    total_cost_usd: 12.345678901 * scale,
    avg_cost_per_request_usd: 0.102880658,
    errors: 2,
    unpriced_requests: 0,
    cache_hits: 17 * scale,
    saved_cost_usd: 1.234567891 * scale,
    by_provider: {
      anthropic: breakdown(80 * scale, 200_000 * scale, 9.345678901 * scale),
      openai: breakdown(40 * scale, 145_678 * scale, 3 * scale),
    },
    by_operation: {
      query_generation: breakdown(100 * scale, 300_000 * scale, 10 * scale),
      detection_rule: breakdown(20 * scale, 45_678 * scale, 2.345678901 * scale),
    },
    by_model: {
      "claude-sonnet-4-6": breakdown(80 * scale, 200_000 * scale, 9.345678901 * scale, "anthropic"),
      "gpt-5": breakdown(40 * scale, 145_678 * scale, 3 * scale, "openai"),
    },
  };
}

export function dailyFor(days: number) {
  const rows = [];
  const start = Date.UTC(2026, 10, 29) - (days - 1) * 86_400_000;
  for (let i = 0; i < days; i += 1) {
    const date = new Date(start + i * 86_400_000).toISOString().slice(0, 10);
    rows.push({ date, requests: i, tokens: i * 100, cost_usd: i * 0.25, errors: 0, unpriced_requests: 0 });
  }
  return { user_id: "test", timezone: "UTC", days, daily_usage: rows };
}

export const BUDGET: BudgetResponse = {
  budget: {
    monthlyLimitUsd: 30,
    timezone: "America/Los_Angeles",
    thresholds: [50, 80, 100],
    action: "notify",
    switchTo: null,
    strict: false,
    updatedAt: "2026-11-29T10:00:00.000Z",
  },
  hasSlackWebhook: false,
  status: {
    period: "2026-11",
    periodStart: "2026-11-01T00:00:00-07:00",
    periodEnd: "2026-12-01T00:00:00-08:00",
    spentUsd: 12.5,
    reservedUsd: 0,
    remainingUsd: 17.5,
    percentUsed: 41.7,
    state: "ok",
    crossedThresholds: [],
  },
};

export const NO_BUDGET: BudgetResponse = { budget: null, hasSlackWebhook: false, status: null };

export const NO_BILLING_KEYS: BillingKeysResponse = { hasAdminKeys: { openai: false, anthropic: false }, bedrock: "deployment" };

export const ALERTS: BudgetAlert[] = [
  {
    alertId: "test:2026-11:80",
    period: "2026-11",
    thresholdPercent: 80,
    limitUsd: 30,
    spentUsd: 24.3,
    percentUsed: 81,
    action: "notify",
    crossedAt: "2026-11-28T18:30:00.000Z",
  },
  {
    alertId: "test:2026-11:50",
    period: "2026-11",
    thresholdPercent: 50,
    limitUsd: 30,
    spentUsd: 15.2,
    percentUsed: 50.7,
    action: "notify",
    crossedAt: "2026-11-20T10:00:00.000Z",
  },
];

export function forecastFor(tz: string): Forecast {
  return {
    user_id: "test",
    timezone: tz,
    period: "2026-11",
    period_start: "2026-11-01",
    period_end: "2026-11-30",
    days_elapsed: 29,
    days_in_period: 30,
    month_to_date_usd: 12.5,
    forecast_usd: 38.75,
    low_usd: 30.1,
    high_usd: 47.2,
    method: "linear",
  };
}

export function anomaliesFor(days: number, tz: string): AnomaliesResponse {
  return {
    user_id: "test",
    timezone: tz,
    days,
    method: "robust_zscore",
    anomalies: [{ date: "2026-11-27", cost_usd: 6.75, expected_usd: 1.2, score: 4.2, direction: "high" }],
  };
}

export function recommendationsFor(days: number): RecommendationsResponse {
  return {
    user_id: "test",
    days,
    operations: [
      {
        operation_type: "query_generation",
        requests: 100,
        cost_usd: 10,
        input_tokens: 250_000,
        cache_read_tokens: 20_000,
        cache_write_tokens: 0,
        output_tokens: 30_000,
        reasoning_tokens: 0,
        cache_hit_rate: 0.074,
        candidates: [
          { provider: "anthropic", model: "claude-haiku-4-5-20251001", cost_usd: 3.3333, saving_usd: 6.6667, saving_percent: 66.7 },
          { provider: "google", model: "gemini-2.5-flash", cost_usd: 1.5, saving_usd: 8.5, saving_percent: 85 },
        ],
      },
      {
        operation_type: "detection_rule",
        requests: 20,
        cost_usd: 0.5,
        input_tokens: 40_000,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        output_tokens: 5_678,
        reasoning_tokens: 0,
        cache_hit_rate: 0,
        candidates: [],
      },
    ],
  };
}

/** The API's echo of a `where` parameter (`tag:customer:acme` → {dimension: "tag:customer", value: "acme"}). */
export function whereOf(where: string | null): { dimension: string; value: string } | null {
  if (!where) return null;
  const [dimension, ...value] = where.split(":");
  return dimension === "tag"
    ? { dimension: `tag:${value[0]}`, value: value.slice(1).join(":") }
    : { dimension: dimension!, value: value.join(":") };
}

/** The scope fields every insight answer carries (the filter echoed; no folded month, no note). */
function scopeOf(url: URL) {
  return { where: whereOf(url.searchParams.get("where")), folded_months: [], note: null };
}

/** The cost-control routes (budget, alerts, forecast, anomalies, recommendations) for user "test". */
export function costControlRoutes(budget: BudgetResponse = BUDGET, alerts: BudgetAlert[] = ALERTS) {
  return {
    "GET /api/llm-settings/test/budget": () => ({ body: budget }),
    "GET /api/llm-settings/test/budget/alerts": () => ({ body: { alerts } }),
    "GET /api/llm-usage/test/forecast": (url: URL) => ({
      body: { ...forecastFor(url.searchParams.get("tz") ?? "UTC"), ...scopeOf(url) },
    }),
    "GET /api/llm-usage/test/anomalies": (url: URL) => ({
      body: { ...anomaliesFor(Number(url.searchParams.get("days")), url.searchParams.get("tz") ?? "UTC"), ...scopeOf(url) },
    }),
    "GET /api/llm-usage/test/recommendations": (url: URL) => ({
      body: { ...recommendationsFor(Number(url.searchParams.get("days"))), ...scopeOf(url) },
    }),
    ...breakdownRoutes(),
    // The configuration page's tag-budget section (components/TagBudgets.tsx) reads this on load.
    "GET /api/llm-settings/test/budget/tags": () => ({ body: TAG_BUDGETS }),
    // The configuration page's billing-key section (components/BillingKeys.tsx) reads this on load.
    "GET /api/llm-settings/test/billing-keys": () => ({ body: NO_BILLING_KEYS }),
  };
}

// ---- breakdowns (issue 17): a tenant with tag keys customer (12 values, one folded) and feature ----

export const TAG_KEYS: TagKeysResponse = {
  user_id: "test",
  period: "2026-11",
  keys: [
    { key: "customer", values: 12, folded_values: 3 },
    { key: "feature", values: 2, folded_values: 0 },
  ],
};

export function breakdownRow(value: string, requests: number, cost: number, total: number, provider?: string): BreakdownRow {
  return {
    value,
    provider: provider ?? null,
    requests,
    input_tokens: requests * 100,
    cache_read_tokens: 0,
    cache_write_tokens: 0,
    output_tokens: requests * 10,
    reasoning_tokens: 0,
    total_tokens: requests * 110,
    cost_usd: cost,
    billed_cost_usd: cost,
    share_percent: total > 0 ? Math.round((cost / total) * 10_000) / 100 : 0,
    errors: 0,
    unpriced_requests: 0,
    usage_missing: 0,
  };
}

/** Values and costs per dimension; customer has 13 values (12 + (other)), more than the top 10. */
const BREAKDOWN_VALUES: Record<string, [string, number, number, string?][]> = {
  provider: [
    ["anthropic", 80, 9.345678901],
    ["openai", 40, 3],
  ],
  model: [
    ["claude-sonnet-4-6", 80, 9.345678901, "anthropic"],
    ["gpt-5", 40, 3, "openai"],
  ],
  operation: [
    ["query_generation", 100, 10],
    ["detection_rule", 20, 2.345678901],
  ],
  "tag:customer": [
    ["acme", 30, 4.5],
    ["globex", 20, 2.25],
    ...Array.from({ length: 10 }, (_, i) => [`c-${String(i + 1).padStart(2, "0")}`, 5, 0.5 - i * 0.01] as [string, number, number]),
    ["(other)", 3, 0.015],
    ["=cmd|' /C calc'!A0", 1, 0.001],
  ],
  "tag:feature": [
    ["chat", 70, 8],
    ["search", 50, 4.345678901],
  ],
};

export function breakdownFor(by: string, where: string | null, limit = 10): BreakdownResponse {
  // A filter scales everything down (a fake: acme's share of each value).
  const scale = where ? 0.5 : 1;
  const values = (BREAKDOWN_VALUES[by] ?? []).map(([v, n, c, p]) => [v, Math.round(n * scale), c * scale, p] as const);
  const totalCost = values.reduce((sum, [, , c]) => sum + c, 0);
  const totalRequests = values.reduce((sum, [, n]) => sum + n, 0);
  const sorted = [...values].sort((a, b) => b[2] - a[2]);
  const rows = sorted.slice(0, limit).map(([v, n, c, p]) => breakdownRow(v, n, c, totalCost, p));
  const rest = sorted.slice(limit);
  const restCost = rest.reduce((sum, [, , c]) => sum + c, 0);
  const restRequests = rest.reduce((sum, [, n]) => sum + n, 0);
  const whereOut = whereOf(where);
  return {
    user_id: "test",
    timezone: "UTC",
    start: "2026-10-31T00:00:00Z",
    end: "2026-11-30T00:00:00Z",
    by,
    where: whereOut,
    rows,
    other: rest.length ? breakdownRow("(rest)", restRequests, restCost, totalCost) : null,
    folded_values: by === "tag:customer" ? 3 : 0,
    total: breakdownRow("(total)", totalRequests, totalCost, totalCost),
    items_read: 42,
    queries: 3,
  };
}

export const TAG_BUDGETS: TagBudgetsResponse = {
  maxTagBudgets: 20,
  budgets: [
    {
      tagKey: "customer",
      tagValue: "acme",
      budget: {
        monthlyLimitUsd: 50,
        timezone: "UTC",
        thresholds: [50, 80, 100],
        action: "block",
        switchTo: null,
        strict: false,
        updatedAt: "2026-11-20T10:00:00.000Z",
      },
      status: {
        period: "2026-11",
        periodStart: "2026-11-01T00:00:00+00:00",
        periodEnd: "2026-12-01T00:00:00+00:00",
        spentUsd: 42.5,
        reservedUsd: 0,
        remainingUsd: 7.5,
        percentUsed: 85,
        state: "warning",
        crossedThresholds: [50, 80],
      },
    },
  ],
};

/** The breakdown and tag-key routes for user "test". */
export function breakdownRoutes() {
  return {
    "GET /api/llm-usage/test/tags": () => ({ body: TAG_KEYS }),
    "GET /api/llm-usage/test/breakdown": (url: URL) => ({
      body: breakdownFor(
        url.searchParams.get("by") ?? "provider",
        url.searchParams.get("where"),
        Number(url.searchParams.get("limit") ?? "10"),
      ),
    }),
  };
}
