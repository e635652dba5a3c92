import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { ALERTS, BUDGET, costControlRoutes, dailyFor, installFetch, NO_BUDGET, recommendationsFor, summaryFor } from "../test/fakeApi";
import LLMUsageAnalytics from "./LLMUsageAnalytics";

function routes(overrides: Parameters<typeof installFetch>[0] = {}, budget = BUDGET, alerts = ALERTS) {
  return installFetch({
    ...costControlRoutes(budget, alerts),
    "GET /api/llm-usage/test/summary": () => ({ body: summaryFor(2) }),
    "GET /api/llm-usage/test/daily": (url) => ({ body: dailyFor(Number(url.searchParams.get("days"))) }),
    ...overrides,
  });
}

describe("LLMUsageAnalytics: cost control", () => {
  it("shows the budget card: limit, spend, a meter with threshold ticks, state and the forecast", async () => {
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const card = await screen.findByRole("region", { name: "Budget" });
    expect(within(card).getByTestId("budget-limit")).toHaveTextContent("$30.00");
    expect(within(card).getByTestId("budget-spent")).toHaveTextContent("$12.50");
    expect(within(card).getByTestId("budget-remaining")).toHaveTextContent("$17.50");
    expect(within(card).getByTestId("budget-state")).toHaveTextContent("On track");
    const meter = within(card).getByRole("meter", { name: "Budget used" });
    expect(meter).toHaveAttribute("aria-valuenow", "42");
    expect(meter).toHaveAttribute("aria-valuetext", "41.7% of the budget");
    expect(within(card).getAllByTestId("threshold-tick").map((t) => t.dataset.threshold)).toEqual(["50", "80", "100"]);
    expect(card).toHaveTextContent("November 2026 · America/Los_Angeles");

    expect(await within(card).findByTestId("forecast-usd")).toHaveTextContent("$38.75");
    expect(within(card).getByTestId("forecast-range")).toHaveTextContent("likely $30.10 – $47.20");
    expect(within(card).getByTestId("forecast-verdict")).toHaveTextContent("Forecast is above the $30.00 budget.");
    expect(within(card).getByTestId("forecast-verdict")).toHaveAttribute("data-exceeds", "true");
    // The forecast describes the budget's month: it is asked in the budget's timezone.
    expect(calls.find((c) => c.url.includes("/forecast"))?.url).toBe("/api/llm-usage/test/forecast?tz=America%2FLos_Angeles");
  });

  it("without a budget shows the forecast alone, in the page's timezone, with a way to set one", async () => {
    const user = userEvent.setup();
    const { calls } = routes({}, NO_BUDGET, []);
    render(<LLMUsageAnalytics userId="test" initialTz="Asia/Kolkata" />);
    const card = await screen.findByRole("region", { name: "Month-end forecast" });
    expect(screen.queryByRole("region", { name: "Budget" })).not.toBeInTheDocument();
    expect(await within(card).findByTestId("forecast-usd")).toHaveTextContent("$38.75");
    expect(within(card).queryByTestId("forecast-verdict")).not.toBeInTheDocument();
    expect(calls.find((c) => c.url.includes("/forecast"))?.url).toBe("/api/llm-usage/test/forecast?tz=Asia%2FKolkata");
    await user.click(within(card).getByRole("link", { name: "Set a budget" }));
    expect(window.location.pathname).toBe("/settings/llm");
  });

  it("marks unusual days on the daily chart, asked for the page's days and timezone", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await screen.findByTestId("total-cost");
    await waitFor(() => expect(screen.getAllByTestId("anomaly-marker")).toHaveLength(1));
    const bar = screen.getAllByTestId("daily-bar").find((b) => b.dataset.date === "2026-11-27")!;
    expect(bar).toHaveAttribute("data-anomaly", "high");
    const button = within(bar).getByRole("button");
    expect(button).toHaveAccessibleName(/unusual: \$6\.75 vs expected \$1\.20$/);
    expect(button).toHaveAttribute("title", expect.stringContaining("unusual: $6.75 vs expected $1.20"));
    expect(screen.getByTestId("anomaly-legend")).toHaveTextContent("1 unusual day in this period");
    expect(calls.find((c) => c.url.includes("/anomalies"))?.url).toBe("/api/llm-usage/test/anomalies?days=30&tz=UTC");

    // Focus shows it in the readout too.
    act(() => button.focus());
    expect(screen.getByTestId("daily-chart").querySelector("figcaption")).toHaveTextContent("unusual: $6.75 vs expected $1.20");

    await user.click(screen.getByRole("button", { name: "7 days" }));
    // (the recent-calls table asks last, by dates: the daily series says the period changed)
    await waitFor(() => expect(calls.some((c) => c.url === "/api/llm-usage/test/daily?days=7&tz=UTC")).toBe(true));
    await waitFor(() => expect(calls.some((c) => c.url === "/api/llm-usage/test/anomalies?days=7&tz=UTC")).toBe(true));
    expect(calls.some((c) => c.url === "/api/llm-usage/test/recommendations?days=7")).toBe(true);
  });

  it("lists cheaper models per operation with the saving in $ and %", async () => {
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const panel = await screen.findByRole("region", { name: "Recommendations" });
    const items = await within(panel).findAllByTestId("recommendation");
    expect(items.map((i) => i.dataset.operation)).toEqual(["query_generation", "detection_rule"]);
    const query = within(items[0]!);
    expect(query.getByRole("heading", { name: "Query generation" })).toBeInTheDocument();
    expect(items[0]).toHaveTextContent("100 requests · cache hit rate 7.4%");
    // The biggest saving first.
    const savings = query.getAllByTestId("saving").map((s) => s.textContent);
    expect(savings).toEqual(["$1.50 · saves $8.50 (85%)", "$3.33 · saves $6.67 (66.7%)"]);
    expect(query.getByRole("list", { name: "Cheaper models for Query generation" })).toHaveTextContent("gemini-2.5-flash (Google Gemini)");
    expect(items[1]).toHaveTextContent("No cheaper model in the price book.");
  });

  it("shows cache hits and the money they saved", async () => {
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const hits = await screen.findByTestId("cache-hits");
    expect(hits).toHaveTextContent("34");
    expect(hits.parentElement).toHaveTextContent("$2.47 saved by the response cache");
    expect(screen.getByText("Cache hits")).toBeInTheDocument();
  });

  it("lists budget alerts newest first, and has an empty state", async () => {
    routes();
    const { unmount } = render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const region = await screen.findByRole("region", { name: "Budget alerts" });
    const items = await within(region).findAllByRole("listitem");
    expect(items).toHaveLength(2);
    expect(items[0]).toHaveTextContent("80% of $30.00 reached");
    expect(items[0]).toHaveTextContent("$24.30 spent (81%)");
    expect(items[1]).toHaveTextContent("50% of $30.00 reached");
    expect(within(items[1]!).getByText(/Nov 20, 2026/)).toHaveAttribute("datetime", "2026-11-20T10:00:00.000Z");
    unmount();

    routes({}, BUDGET, []);
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const empty = await screen.findByRole("region", { name: "Budget alerts" });
    expect(await within(empty).findByText("No budget alerts yet.")).toBeInTheDocument();
  });

  it("a failing insight shows a small inline error, and the rest of the page renders", async () => {
    const user = userEvent.setup();
    let failRecommendations = true;
    routes({
      "GET /api/llm-usage/test/forecast": () => ({ status: 503, body: { error: "forecast store unavailable" } }),
      "GET /api/llm-usage/test/anomalies": () => ({ status: 500, body: { error: { message: "internal error" } } }),
      "GET /api/llm-usage/test/recommendations": (url) =>
        failRecommendations
          ? { status: 500, body: { error: "the price book is unavailable" } }
          : { body: recommendationsFor(Number(url.searchParams.get("days"))) },
    });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const card = await screen.findByRole("region", { name: "Budget" });
    expect(await within(card).findByRole("alert")).toHaveTextContent("Could not load the forecast: forecast store unavailable");
    expect(within(card).getByTestId("budget-limit")).toHaveTextContent("$30.00");
    const panel = screen.getByRole("region", { name: "Recommendations" });
    expect(await within(panel).findByRole("alert")).toHaveTextContent("Could not load recommendations: the price book is unavailable");
    const daily = screen.getByRole("region", { name: "Daily Usage Trend" });
    expect(await within(daily).findByRole("alert")).toHaveTextContent("Could not load unusual days: internal error");

    // Everything else is there.
    expect(screen.getByTestId("total-cost")).toHaveTextContent("$24.69");
    expect(screen.getAllByTestId("daily-bar")).toHaveLength(30);
    expect(within(screen.getByRole("region", { name: "Budget alerts" })).getAllByRole("listitem")).toHaveLength(2);
    expect(screen.getByTestId("by-model")).toBeInTheDocument();

    failRecommendations = false;
    await user.click(within(panel).getByRole("button", { name: "Retry loading recommendations" }));
    expect(await within(panel).findAllByTestId("recommendation")).toHaveLength(2);
    expect(within(panel).queryByRole("alert")).not.toBeInTheDocument();
  });
});
