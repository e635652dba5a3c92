import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import type { BudgetAlert, ReconciliationResponse, UsageEntry } from "../api";
import { ALERTS, costControlRoutes, dailyFor, installFetch, summaryFor, whereOf, type Recorded } from "../test/fakeApi";
import LLMUsageAnalytics, { forWhere } from "./LLMUsageAnalytics";

/** Every widget follows the filter chip (docs/dashboard.md, "Breakdowns, the filter chip and tag budgets"). */

function entry(id: string, tags: Record<string, string>): UsageEntry {
  return {
    timestamp: "2026-12-06T09:15:02.250Z",
    event_id: id,
    provider: "openai",
    model: "gpt-5",
    operation_type: "query_generation",
    status: "ok",
    input_tokens: 412,
    cache_read_tokens: 0,
    cache_write_tokens: 0,
    output_tokens: 88,
    reasoning_tokens: 0,
    total_tokens: 500,
    latency_ms: 1200,
    cost_usd: 0.002556,
    cost_source: "catalog",
    tags,
    usage_source: "reported",
    cache_hit: false,
  };
}

function reconciliation(url: URL): ReconciliationResponse {
  const where = whereOf(url.searchParams.get("where"));
  const narrowed = where?.dimension === "provider";
  return {
    user_id: "test",
    start: "2026-11-08",
    end: "2026-12-07",
    rows: [],
    totals: { billed_cost_usd: 0, metered_cost_usd: 0, drift_usd: 0, drift_percent: null, unmetered_usd: 0 },
    alerts: [],
    sources: [{ provider: "openai", last_run_at: "2026-12-07T03:00:00Z", window_start: "2026-11-08", window_end: "2026-12-08", error: null }],
    where,
    scope: narrowed ? "provider" : "account",
    note: where && !narrowed ? "Reconciliation is account-level under this filter: the providers' invoices carry no tags" : null,
  };
}

/** The page's routes; the entries answer acme's calls only under the chip (first page empty, then a match). */
function routes() {
  return installFetch({
    ...costControlRoutes(),
    "GET /api/llm-usage/test/summary": (url) => ({ body: summaryFor(url.searchParams.get("where") ? 1 : 2) }),
    "GET /api/llm-usage/test/daily": (url) => ({ body: dailyFor(Number(url.searchParams.get("days"))) }),
    "GET /api/llm-usage/test": (url) =>
      !url.searchParams.get("where")
        ? { body: { entries: [entry("all-1", { customer: "globex" })], count: 1, next_cursor: null } }
        : url.searchParams.get("cursor") === "sparse"
          ? { body: { entries: [entry("acme-1", { customer: "acme" })], count: 1, next_cursor: null } }
          : { body: { entries: [], count: 0, next_cursor: "sparse" } },
    "GET /api/llm-usage/test/export": (url) => ({
      body: `timestamp,event_id\r\n2026-12-06T09:15:02.250Z,${url.searchParams.get("where") ? "acme-1" : "all-1"}\r\n`,
    }),
    "GET /api/llm-usage/test/reconciliation": (url) => ({ body: reconciliation(url) }),
    "GET /api/llm-settings/test/budget/tags/alerts": () => ({ body: { alerts: TAG_ALERTS } }),
  });
}

const TAG_ALERTS: BudgetAlert[] = [
  { ...ALERTS[0]!, alertId: "test:customer=globex:2026-11:80", limitUsd: 5, spentUsd: 4.1, tagKey: "customer", tagValue: "globex" },
  { ...ALERTS[1]!, alertId: "test:customer=acme:2026-11:50", limitUsd: 50, spentUsd: 25.5, tagKey: "customer", tagValue: "acme" },
];

async function pick(user: ReturnType<typeof userEvent.setup>, by: string, value: string) {
  const select = await screen.findByLabelText("Breakdown by");
  await waitFor(() => expect(within(select).getAllByRole("option")).toHaveLength(5));
  await user.selectOptions(select, by);
  await waitFor(() => expect(screen.getByTestId("breakdown-table")).toHaveAttribute("data-by", by));
  await user.click(screen.getByRole("button", { name: value }));
  await screen.findByTestId("filter-chip");
}

function lastWhere(calls: Recorded[], path: string): string | null | undefined {
  const asked = calls.filter((c) => c.url.startsWith(`${path}?`)).at(-1);
  return asked ? new URL(asked.url, "http://x").searchParams.get("where") : undefined;
}

describe("The filter chip: every widget follows it", () => {
  it("asks every widget's route with the chip's where", async () => {
    // Given the page filtered by customer: acme
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await pick(user, "tag:customer", "acme");
    // Then the forecast, unusual days, recommendations, recent calls and reconciliation are asked under it
    for (const route of ["/forecast", "/anomalies", "/recommendations", "", "/reconciliation"].map((r) => `/api/llm-usage/test${r}`)) {
      await waitFor(() => expect(lastWhere(calls, route), route).toBe("tag:customer:acme"));
    }
    // And the chip's line says every figure is acme's, and the reconciliation's limit
    expect(screen.getByTestId("filter-scope")).toHaveTextContent("Every figure below is customer: acme's");
    expect(screen.getByTestId("filter-scope")).toHaveTextContent("reconciliation stays account-level");
  });

  it("shows the tag value's budget, its forecast and says the reconciliation is account-level", async () => {
    // Given acme has a tag budget ($50, $42.50 spent, warning)
    const user = userEvent.setup();
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByTestId("budget-limit")).toHaveTextContent("$30.00");
    // When the page is filtered by customer: acme
    await pick(user, "tag:customer", "acme");
    // Then the budget card is acme's budget, not the account's
    await waitFor(() => expect(screen.getByTestId("budget-card")).toHaveAttribute("data-scope", "tag"));
    expect(screen.getByRole("heading", { name: "Budget · customer: acme" })).toBeInTheDocument();
    expect(screen.getByTestId("budget-limit")).toHaveTextContent("$50.00");
    expect(screen.getByTestId("budget-spent")).toHaveTextContent("$42.50");
    expect(screen.getByTestId("budget-state")).toHaveAttribute("data-state", "warning");
    // And the forecast says it is acme's and is compared with acme's limit
    expect(await screen.findByTestId("forecast-scope")).toHaveTextContent("Forecast of customer: acme only");
    expect(screen.getByTestId("forecast-verdict")).toHaveTextContent("Forecast is within the $50.00 budget.");
    // And the recommendations and recent calls are titled for acme
    expect(screen.getByRole("heading", { name: "Recommendations · customer: acme" })).toBeInTheDocument();
    // And the reconciliation says it is the whole account's, with the API's reason
    const scope = await screen.findByTestId("reconciliation-scope");
    expect(scope).toHaveAttribute("data-scope", "account");
    expect(scope).toHaveTextContent("Whole account, not customer: acme");
    expect(scope).toHaveTextContent("invoices carry no tags");
  });

  it("lists the tag value's budget alerts under a tag filter, the account's (said so) under another", async () => {
    // Given the account's alerts and two tag budgets' alerts (acme's and globex's)
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    // When the page is filtered by customer: acme
    await pick(user, "tag:customer", "acme");
    // Then the alerts are acme's budget's only
    const region = await screen.findByRole("region", { name: "Budget alerts · customer: acme" });
    await waitFor(() => expect(within(region).getAllByRole("listitem")).toHaveLength(1));
    expect(region).toHaveTextContent("50% of $50.00 reached");
    expect(calls.some((c) => c.url.startsWith("/api/llm-settings/test/budget/tags/alerts?"))).toBe(true);
    // When the chip is replaced by a provider filter
    await user.click(screen.getByRole("button", { name: "Remove the filter customer: acme" }));
    await pick(user, "provider", "OpenAI");
    // Then the account budget's alerts are listed, and the section says whose they are
    const account = await screen.findByRole("region", { name: "Budget alerts" });
    await waitFor(() => expect(within(account).getAllByRole("listitem")).toHaveLength(2));
    expect(account).toHaveTextContent("The account budget's thresholds crossed");
  });

  it("says a tag value has no budget and links to set one", async () => {
    // When the page is filtered by a customer without a tag budget
    const user = userEvent.setup();
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await pick(user, "tag:customer", "globex");
    // Then the card says so, with a link to the configuration page, and shows no account limit
    const none = await screen.findByTestId("no-tag-budget");
    expect(none).toHaveTextContent("No budget for customer: globex.");
    expect(within(none).getByRole("link", { name: "Set a tag budget" })).toHaveAttribute("href", "/settings/llm");
    expect(screen.queryByTestId("budget-limit")).toBeNull();
    // And the forecast is globex's, compared with no limit
    expect(await screen.findByTestId("forecast-scope")).toHaveTextContent("Forecast of customer: globex only");
    expect(screen.queryByTestId("forecast-verdict")).toBeNull();
  });

  it("keeps the account's budget under a provider filter, says so, and narrows the reconciliation", async () => {
    // When the page is filtered by the openai provider
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await pick(user, "provider", "OpenAI");
    // Then the budget card is the account's and says why, without judging openai's forecast against it
    await waitFor(() => expect(lastWhere(calls, "/api/llm-usage/test/forecast")).toBe("provider:openai"));
    expect(await screen.findByTestId("budget-scope")).toHaveTextContent("The budget is the account's");
    expect(screen.getByTestId("budget-limit")).toHaveTextContent("$30.00");
    expect(await screen.findByTestId("forecast-scope")).toHaveTextContent("Forecast of provider: openai only");
    expect(screen.queryByTestId("forecast-verdict")).toBeNull();
    // And the reconciliation is openai's bill only
    const scope = await screen.findByTestId("reconciliation-scope");
    expect(scope).toHaveAttribute("data-scope", "provider");
    expect(scope).toHaveTextContent("Only OpenAI's bill (provider: openai).");
  });

  it("lists only the filter's recent calls, reading on past a sparse page", async () => {
    // Given the page filtered by acme, whose calls are not among the newest read first
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await screen.findByTestId("total-cost");
    await pick(user, "tag:customer", "acme");
    // Then the recent calls say the page held no match yet and offer to look further back
    expect(await screen.findByTestId("sparse-page")).toHaveTextContent("No matching call in the newest calls read so far");
    expect(screen.getByRole("heading", { name: "Recent calls · customer: acme" })).toBeInTheDocument();
    // When the user looks further back
    await user.click(screen.getByRole("button", { name: "Look further back" }));
    // Then the next page is asked with the cursor and the same filter, and acme's call is listed
    const row = await screen.findByTestId("entry-row");
    expect(within(row).getByTestId("tag-chip")).toHaveTextContent("customer: acme");
    const last = calls.filter((c) => c.url.startsWith("/api/llm-usage/test?")).at(-1)!;
    const query = new URL(last.url, "http://x").searchParams;
    expect([query.get("cursor"), query.get("where")]).toEqual(["sparse", "tag:customer:acme"]);
  });

  it("exports only the filter's entries, named for it", async () => {
    // Given the page filtered by acme
    const user = userEvent.setup();
    const { calls } = routes();
    vi.spyOn(URL, "createObjectURL").mockImplementation(() => "blob:csv");
    vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    const names: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      names.push(this.download);
    });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await pick(user, "tag:customer", "acme");
    // When the CSV is exported
    await user.click(screen.getByRole("button", { name: "Export CSV" }));
    // Then the export path is asked under the filter, and the file and the note say whose it is
    expect(await screen.findByText("Exported 1 entries of customer: acme.")).toBeInTheDocument();
    expect(lastWhere(calls, "/api/llm-usage/test/export")).toBe("tag:customer:acme");
    expect(names.at(-1)).toMatch(/^llm-usage-test-\d{4}-\d{2}-\d{2}-to-\d{4}-\d{2}-\d{2}-tag-customer-acme\.csv$/);
  });

  it("never shows an insight answered for another filter (the previous value while the new one loads)", () => {
    // Given a forecast answered for the whole account
    const account = { state: "ok" as const, value: { where: null, note: null } };
    const acme = { dimension: "tag:customer", value: "acme" };
    // Then under acme's chip it counts as loading, and it is shown again without a chip
    expect(forWhere(account, acme)).toEqual({ state: "loading" });
    expect(forWhere(account, null)).toBe(account);
    const answered = { state: "ok" as const, value: { where: acme, note: null } };
    expect(forWhere(answered, acme)).toBe(answered);
    expect(forWhere(answered, { dimension: "tag:customer", value: "globex" })).toEqual({ state: "loading" });
  });
});
