import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { costControlRoutes, dailyFor, installFetch, summaryFor } from "../test/fakeApi";
import LLMUsageAnalytics, { periodFor } from "./LLMUsageAnalytics";

function usageRoutes() {
  return installFetch({
    ...costControlRoutes(),
    "GET /api/llm-usage/test/summary": (url) => {
      const start = url.searchParams.get("start")!;
      const end = url.searchParams.get("end")!;
      const days = (Date.parse(end) - Date.parse(start)) / 86_400_000 + 1;
      return { body: summaryFor(days === 7 ? 1 : days === 30 ? 2 : 3) };
    },
    "GET /api/llm-usage/test/daily": (url) => ({ body: dailyFor(Number(url.searchParams.get("days"))) }),
  });
}

function readBlob(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsText(blob);
  });
}

describe("LLMUsageAnalytics", () => {
  it("shows the four overview cards from the summary", async () => {
    usageRoutes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByTestId("total-cost")).toHaveTextContent("$24.69");
    expect(screen.getByTestId("total-cost")).toHaveAttribute("data-value", String(12.345678901 * 2));
    expect(screen.getByTestId("total-requests")).toHaveTextContent("240");
    expect(screen.getByTestId("total-tokens")).toHaveTextContent("691,356");
    expect(screen.getByTestId("avg-cost")).toHaveTextContent("$0.1029");
    for (const label of ["Total Cost", "Total Requests", "Total Tokens", "Avg Cost/Request"]) {
      expect(screen.getByText(label)).toBeInTheDocument();
    }
  });

  it("shows provider and operation breakdowns with progress bars, and the model table", async () => {
    usageRoutes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const providers = await screen.findByTestId("by-provider");
    expect(within(providers).getByText("Anthropic")).toBeInTheDocument();
    const meter = within(providers).getByRole("meter", { name: "Anthropic share of cost" });
    expect(Number(meter.getAttribute("aria-valuenow"))).toBe(76);
    expect(within(screen.getByTestId("by-operation")).getByText("Query generation")).toBeInTheDocument();
    const table = screen.getByTestId("by-model");
    expect(within(table).getByRole("rowheader", { name: "claude-sonnet-4-6" })).toBeInTheDocument();
  });

  it("asks the API for the chosen period and timezone, and every widget follows it", async () => {
    const user = userEvent.setup();
    const { calls } = usageRoutes();
    render(<LLMUsageAnalytics userId="test" initialTz="Asia/Kolkata" />);
    await screen.findByTestId("total-cost");
    expect(screen.getAllByTestId("daily-bar")).toHaveLength(30);

    await user.click(screen.getByRole("button", { name: "7 days" }));
    await waitFor(() => expect(screen.getAllByTestId("daily-bar")).toHaveLength(7));
    expect(screen.getByTestId("total-requests")).toHaveTextContent("120");
    expect(screen.getByRole("button", { name: "7 days" })).toHaveAttribute("aria-pressed", "true");

    await user.click(screen.getByRole("button", { name: "90 days" }));
    await waitFor(() => expect(screen.getAllByTestId("daily-bar")).toHaveLength(90));
    expect(screen.getByTestId("total-requests")).toHaveTextContent("360");

    const period = periodFor(90, "Asia/Kolkata");
    const summary = calls.filter((c) => c.url.includes("/summary")).at(-1)!;
    expect(summary.url).toBe(
      `/api/llm-usage/test/summary?start=${period.start}&end=${period.end}&tz=Asia%2FKolkata`,
    );
    expect(calls.filter((c) => c.url.includes("/daily")).at(-1)!.url).toBe(
      "/api/llm-usage/test/daily?days=90&tz=Asia%2FKolkata",
    );

    await user.selectOptions(screen.getByLabelText("Timezone"), "UTC");
    await waitFor(() => expect(calls.at(-1)!.url).toContain("tz=UTC"));
  });

  it("scales bars to the most expensive day and labels each with cost and requests", async () => {
    const user = userEvent.setup();
    usageRoutes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await screen.findByTestId("total-cost");
    await user.click(screen.getByRole("button", { name: "7 days" }));
    await waitFor(() => expect(screen.getAllByTestId("daily-bar")).toHaveLength(7));
    const bars = screen.getAllByTestId("daily-bar");
    const last = within(bars[6]!).getByRole("button");
    expect(last).toHaveStyle({ height: "100%" });
    expect(last).toHaveAccessibleName(/\$1\.50, 6 requests/);
    expect(within(bars[3]!).getByRole("button")).toHaveStyle({ height: "50%" });
    expect(bars[6]).toHaveTextContent("$1.50");
    expect(bars[6]).toHaveTextContent("6 req");
  });

  it("shows an empty state when there is no usage", async () => {
    installFetch({
      ...costControlRoutes(),
      "GET /api/llm-usage/test/summary": () => ({
        body: { total_requests: 0, total_tokens: 0, total_cost_usd: 0, avg_cost_per_request_usd: 0, by_provider: {}, by_operation: {}, by_model: {} },
      }),
      "GET /api/llm-usage/test/daily": () => ({ body: { daily_usage: dailyFor(30).daily_usage.map((d) => ({ ...d, requests: 0, cost_usd: 0, tokens: 0 })) } }),
    });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByTestId("empty-state")).toHaveTextContent("No usage in the last 30 days");
    expect(screen.getByRole("button", { name: "Export CSV" })).toBeDisabled();
  });

  it("shows an error state with a retry", async () => {
    const user = userEvent.setup();
    let fail = true;
    installFetch({
      ...costControlRoutes(),
      "GET /api/llm-usage/test/summary": () => (fail ? { status: 503, body: { error: "the store is unavailable" } } : { body: summaryFor(1) }),
      "GET /api/llm-usage/test/daily": () => ({ body: dailyFor(30) }),
    });
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByRole("alert")).toHaveTextContent("the store is unavailable");
    fail = false;
    await user.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("total-cost")).toBeInTheDocument();
  });

  it("shows a loading state first", async () => {
    usageRoutes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(screen.getByRole("status")).toHaveTextContent("Loading usage…");
    await screen.findByTestId("total-cost");
  });

  it("exports the period's entries as CSV, following the cursor header", async () => {
    const user = userEvent.setup();
    const { calls } = installFetch({
      ...costControlRoutes(),
      "GET /api/llm-usage/test/summary": () => ({ body: summaryFor(1) }),
      "GET /api/llm-usage/test/daily": () => ({ body: dailyFor(30) }),
      "GET /api/llm-usage/test/export": (url) =>
        url.searchParams.get("cursor")
          ? { body: "timestamp,event_id\r\n2026-11-02T00:00:00Z,b\r\n" }
          : { body: "timestamp,event_id\r\n2026-11-01T00:00:00Z,a\r\n", headers: { "X-Next-Cursor": "c1" } },
    });
    const created: Blob[] = [];
    vi.spyOn(URL, "createObjectURL").mockImplementation((blob) => {
      created.push(blob as Blob);
      return "blob:csv";
    });
    vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    await user.click(await screen.findByRole("button", { name: "Export CSV" }));
    expect(await screen.findByText("Exported 2 entries.")).toBeInTheDocument();
    expect(click).toHaveBeenCalled();
    expect(await readBlob(created[0]!)).toBe("timestamp,event_id\r\n2026-11-01T00:00:00Z,a\r\n2026-11-02T00:00:00Z,b\r\n");
    // (the export has its own path, which the deployed API throttles apart from the entries)
    const exports = calls.filter((c) => c.url.startsWith("/api/llm-usage/test/export?"));
    expect(exports).toHaveLength(2);
    expect(exports[0]!.url).not.toContain("format=csv");
    expect(exports[1]!.url).toContain("cursor=c1");
  });
});
