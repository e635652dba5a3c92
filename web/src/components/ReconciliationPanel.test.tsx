import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { ReconciliationResponse, ReconciliationRow } from "../api";
import { installFetch } from "../test/fakeApi";
import ReconciliationPanel from "./ReconciliationPanel";

const tokens = (input: number, output: number) => ({ input, cache_read: 0, cache_write: 0, output });

function row(overrides: Partial<ReconciliationRow>): ReconciliationRow {
  return {
    date: "2026-11-10",
    provider: "openai",
    model: "gpt-4o-mini-2024-07-18",
    billed_tokens: tokens(1000, 100),
    billed_cost_usd: 1,
    metered_tokens: tokens(1000, 100),
    metered_cost_usd: 1,
    metered_requests: 10,
    drift_usd: 0,
    drift_percent: 0,
    unmetered_usd: 0,
    price_drift_usd: 0,
    cause: "match",
    provisional: false,
    api_key_ids: ["key_service"],
    price_feedback: [],
    ...overrides,
  };
}

const MONTH: ReconciliationResponse = {
  user_id: "test",
  start: "2026-11-01",
  end: "2026-11-30",
  rows: [
    row({}),
    row({
      date: "2026-11-12",
      provider: "anthropic",
      model: "claude-opus-4-1-20250805",
      billed_cost_usd: 4.5,
      metered_cost_usd: 3.75,
      drift_usd: 0.75,
      drift_percent: 16.67,
      price_drift_usd: 0.75,
      cause: "price",
      price_feedback: [
        {
          kind: "output",
          tokens: 50000,
          billed_mtok_usd: 90,
          metered_mtok_usd: 75,
          suggested_override: { provider: "anthropic", model: "claude-opus-4-1-20250805", input_mtok: "15", output_mtok: "90" },
        },
      ],
    }),
    row({
      date: "2026-11-20",
      billed_cost_usd: 3.28,
      metered_cost_usd: 0.58,
      drift_usd: 2.7,
      drift_percent: 82.32,
      unmetered_usd: 2.7,
      cause: "unmetered",
      api_key_ids: ["key_notebook", "key_service"],
    }),
  ],
  totals: { billed_cost_usd: 8.78, metered_cost_usd: 5.33, drift_usd: 3.45, drift_percent: 39.29, unmetered_usd: 2.7 },
  alerts: [],
  sources: [{ provider: "openai", last_run_at: "2026-12-01T06:00:00Z", window_start: "2026-11-27", window_end: "2026-12-01", error: null }],
};

describe("ReconciliationPanel", () => {
  it("shows the mispriced model and the unmetered spend, with where each difference comes from", async () => {
    const { calls } = installFetch({ "GET /api/llm-usage/test/reconciliation": () => ({ body: MONTH }) });
    render(<ReconciliationPanel userId="test" days={30} />);
    const panel = await screen.findByRole("region", { name: "Metered vs billed" });
    expect(await within(panel).findByTestId("reconciliation-unmetered")).toHaveTextContent("$2.70");
    expect(within(panel).getByTestId("reconciliation-drift")).toHaveTextContent("$3.45 (+39.29%)");
    // Discrepancies only by default, newest day first
    const rows = within(panel).getAllByTestId("reconciliation-row");
    expect(rows.map((r) => r.dataset.cause)).toEqual(["unmetered", "price"]);
    expect(within(rows[0]!).getByTestId("row-unmetered")).toHaveTextContent("$2.70");
    expect(within(rows[0]!).getByTestId("row-cause")).toHaveTextContent("Tokens no event explains");
    expect(within(rows[0]!).getByTestId("billed-keys")).toHaveTextContent("key_notebook");
    expect(within(rows[1]!).getByTestId("row-cause")).toHaveTextContent("Price: output");
    expect(within(rows[1]!).getByTestId("price-feedback")).toHaveTextContent("Billed $90.00/MTok output; llmtally used $75.00/MTok.");
    expect(within(rows[1]!).getByTestId("override")).toHaveTextContent('"output_mtok": "90"');
    // The request asks the last 30 UTC days
    expect(calls[0]!.url).toMatch(/^\/api\/llm-usage\/test\/reconciliation\?start=\d{4}-\d\d-\d\d&end=\d{4}-\d\d-\d\d$/);
  });

  it("shows matching rows on request", async () => {
    const user = userEvent.setup();
    installFetch({ "GET /api/llm-usage/test/reconciliation": () => ({ body: MONTH }) });
    render(<ReconciliationPanel userId="test" days={30} />);
    await user.click(await screen.findByRole("checkbox", { name: "Show matching rows" }));
    expect(screen.getAllByTestId("reconciliation-row")).toHaveLength(3);
  });

  it("explains how to start when no bill was read, and shows an error inline", async () => {
    installFetch({
      "GET /api/llm-usage/test/reconciliation": () => ({ body: { ...MONTH, rows: [], sources: [] } }),
    });
    const { unmount } = render(<ReconciliationPanel userId="test" days={7} />);
    const hint = await screen.findByTestId("reconciliation-unconfigured");
    expect(hint).toHaveTextContent("admin key under Billing Keys");
    // The key is stored on the configuration page now, not by hand through the API
    expect(within(hint).getByRole("link", { name: "LLM Configuration" })).toHaveAttribute("href", "/settings/llm");
    expect(hint).not.toHaveTextContent("PUT /api");
    unmount();
    installFetch({ "GET /api/llm-usage/test/reconciliation": () => ({ status: 503, body: { error: "a backing store is unavailable" } }) });
    render(<ReconciliationPanel userId="test" days={7} />);
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load the reconciliation: a backing store is unavailable");
  });
});
