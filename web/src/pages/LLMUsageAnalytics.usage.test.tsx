import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { UsageEntry } from "../api";
import { costControlRoutes, dailyFor, installFetch, summaryFor } from "../test/fakeApi";
import LLMUsageAnalytics from "./LLMUsageAnalytics";

function entry(id: string, overrides: Partial<UsageEntry> = {}): UsageEntry {
  return {
    timestamp: "2026-12-06T09:15:02.250Z",
    event_id: id,
    provider: "anthropic",
    model: "claude-sonnet-4-6",
    operation_type: "detection_rule",
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
    tags: {},
    usage_source: "reported",
    cache_hit: false,
    ...overrides,
  };
}

const FIRST_PAGE = [
  entry("e1", { tags: { customer: "acme-corp", feature: "search" } }),
  entry("e2", {
    usage_source: "missing",
    status: "error",
    error_type: "cancelled",
    total_tokens: 412,
    cost_usd: 0.001236,
    tags: { team: "detections" },
  }),
  entry("e3", { usage_source: "missing", total_tokens: 0, cost_usd: 0 }),
];

function routes(summary = { ...summaryFor(1), usage_missing: 2 }) {
  return installFetch({
    ...costControlRoutes(),
    "GET /api/llm-usage/test/summary": () => ({ body: summary }),
    "GET /api/llm-usage/test/daily": () => ({ body: dailyFor(30) }),
    "GET /api/llm-usage/test": (url) =>
      url.searchParams.get("cursor") === "c1"
        ? { body: { entries: [entry("e4", { model: "gpt-5", provider: "openai" })], count: 1, next_cursor: null } }
        : { body: { entries: FIRST_PAGE, count: 3, next_cursor: "c1" } },
  });
}

describe("LLMUsageAnalytics: recent calls, tags and missing usage", () => {
  it("shows the usage-missing count as a card when some calls' usage never arrived", async () => {
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const card = await screen.findByTestId("usage-missing");
    expect(card).toHaveTextContent("2");
    expect(card).toHaveAttribute("data-value", "2");
    expect(screen.getByText("Usage missing")).toBeInTheDocument();
  });

  it("shows no usage-missing card when every call's usage was reported", async () => {
    routes({ ...summaryFor(1), usage_missing: 0 });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await screen.findByTestId("total-cost");
    expect(screen.queryByTestId("usage-missing")).not.toBeInTheDocument();
  });

  it("lists the period's recent calls with tags as chips and marks the usage-missing ones", async () => {
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="Asia/Kolkata" />);
    const table = await screen.findByTestId("recent-calls");
    const rows = within(table).getAllByTestId("entry-row");
    expect(rows).toHaveLength(3);
    // tags, sorted by key, as chips
    const chips = within(rows[0]!).getAllByTestId("tag-chip");
    expect(chips.map((chip) => chip.textContent)).toEqual(["customer: acme-corp", "feature: search"]);
    expect(within(rows[0]!).getByRole("list", { name: "Tags" })).toBeInTheDocument();
    // the first call's usage was reported: no mark, exact figures
    expect(rows[0]).not.toHaveAttribute("data-usage-missing");
    expect(within(rows[0]!).queryByTestId("usage-missing-badge")).not.toBeInTheDocument();
    expect(rows[0]).toHaveTextContent("$0.0026");
    // the cancelled stream and the stream without usage are marked, their figures lower bounds
    for (const row of [rows[1]!, rows[2]!]) {
      expect(row).toHaveAttribute("data-usage-missing", "true");
      expect(within(row).getByTestId("usage-missing-badge")).toHaveTextContent("usage missing");
    }
    expect(rows[1]).toHaveTextContent("Cancelled");
    expect(rows[1]).toHaveTextContent("≥ 412");
    expect(rows[2]).toHaveTextContent("≥ $0.0000");
    expect(within(rows[2]!).queryByTestId("tag-chip")).not.toBeInTheDocument();
    // times in the page's timezone (09:15 UTC is 14:45 in Kolkata)
    expect(rows[0]).toHaveTextContent("14:45:02");
    // asked for the period, in its timezone, one page at a time
    const asked = calls.find((c) => c.url.startsWith("/api/llm-usage/test?"))!;
    expect(asked.url).toContain("tz=Asia%2FKolkata");
    expect(asked.url).toContain("limit=25");
    expect(asked.url).not.toContain("format=csv");
  });

  it("loads more calls with the cursor the API returned", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await screen.findByTestId("recent-calls");
    await user.click(screen.getByRole("button", { name: "Load more" }));
    await waitFor(() => expect(screen.getAllByTestId("entry-row")).toHaveLength(4));
    expect(calls.some((c) => c.url.includes("cursor=c1") && !c.url.includes("format=csv"))).toBe(true);
    expect(screen.queryByRole("button", { name: "Load more" })).not.toBeInTheDocument();
  });

  it("shows its own error with a retry when the entries cannot be read, and the rest of the page stays", async () => {
    const user = userEvent.setup();
    let fail = true;
    installFetch({
      ...costControlRoutes(),
      "GET /api/llm-usage/test/summary": () => ({ body: summaryFor(1) }),
      "GET /api/llm-usage/test/daily": () => ({ body: dailyFor(30) }),
      "GET /api/llm-usage/test": () =>
        fail ? { status: 503, body: { error: "the store is unavailable" } } : { body: { entries: FIRST_PAGE, count: 3, next_cursor: null } },
    });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByText(/Could not load recent calls: the store is unavailable/)).toBeInTheDocument();
    expect(screen.getByTestId("total-cost")).toHaveTextContent("$12.35");
    fail = false;
    await user.click(screen.getByRole("button", { name: "Retry loading recent calls" }));
    expect(await screen.findAllByTestId("entry-row")).toHaveLength(3);
  });
});
