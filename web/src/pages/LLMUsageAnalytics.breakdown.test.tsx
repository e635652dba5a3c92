import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { breakdownCsv, csvField } from "../components/BreakdownPanel";
import { breakdownFor, costControlRoutes, dailyFor, installFetch, summaryFor } from "../test/fakeApi";
import LLMUsageAnalytics from "./LLMUsageAnalytics";

function routes() {
  return installFetch({
    ...costControlRoutes(),
    "GET /api/llm-usage/test/summary": (url) => ({ body: summaryFor(url.searchParams.get("where") ? 1 : 2) }),
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

describe("Breakdown by", () => {
  it("offers the tenant's tag keys beside provider, model and operation", async () => {
    // Given a tenant whose events carry the tag keys customer and feature
    routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    // When the selector has loaded the keys
    const select = await screen.findByLabelText("Breakdown by");
    await waitFor(() => expect(within(select).getAllByRole("option")).toHaveLength(5));
    // Then it lists the three base dimensions and one entry per tag key
    expect(within(select).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "Provider",
      "Model",
      "Operation",
      "Tag: customer",
      "Tag: feature",
    ]);
  });

  it("shows the top 10 values by cost with (other), (rest), the total and the folded count", async () => {
    // Given the page
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const select = await screen.findByLabelText("Breakdown by");
    await waitFor(() => expect(within(select).getAllByRole("option")).toHaveLength(5));
    // When the breakdown is by customer
    await user.selectOptions(select, "tag:customer");
    const table = await screen.findByTestId("breakdown-table");
    await waitFor(() => expect(screen.getByTestId("breakdown-table")).toHaveAttribute("data-by", "tag:customer"));
    // Then the API was asked for the customer tag, 10 rows at most, in the page's period and zone
    const asked = calls.filter((c) => c.url.startsWith("/api/llm-usage/test/breakdown")).at(-1)!;
    const query = new URL(asked.url, "http://x").searchParams;
    expect(query.get("by")).toBe("tag:customer");
    expect(query.get("limit")).toBe("10");
    expect(query.get("tz")).toBe("UTC");
    expect(query.get("where")).toBeNull();
    // And the rows are the costliest ten, then the rest summed
    const rows = within(screen.getByTestId("breakdown-table")).getAllByTestId("breakdown-row");
    expect(rows.map((r) => r.getAttribute("data-value"))).toEqual([
      "acme",
      "globex",
      "c-01",
      "c-02",
      "c-03",
      "c-04",
      "c-05",
      "c-06",
      "c-07",
      "c-08",
      "(rest)",
    ]);
    expect(rows[0]).toHaveTextContent("$4.50");
    expect(rows[0]).toHaveTextContent("39.8%");
    expect(screen.getByTestId("breakdown-total")).toHaveTextContent("Total");
    expect(screen.getByTestId("folded-note")).toHaveTextContent("3 values were past the tenant's bound");
    expect(table).toBeInTheDocument();
  });

  it("filters the whole page by a row and drops the filter with the chip", async () => {
    // Given the breakdown by customer
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    expect(await screen.findByTestId("total-cost")).toHaveTextContent("$24.69");
    const select = await screen.findByLabelText("Breakdown by");
    await waitFor(() => expect(within(select).getAllByRole("option")).toHaveLength(5));
    await user.selectOptions(select, "tag:customer");
    await waitFor(() => expect(screen.getByTestId("breakdown-table")).toHaveAttribute("data-by", "tag:customer"));
    const before = calls.length;
    // When acme is picked
    await user.click(screen.getByRole("button", { name: "acme" }));
    // Then the chip says customer: acme and the summary, daily series and breakdown ask under that filter
    expect(await screen.findByTestId("filter-chip")).toHaveTextContent("customer: acme");
    await waitFor(() => expect(screen.getByTestId("total-cost")).toHaveTextContent("$12.35"));
    const after = calls.slice(before);
    for (const route of ["summary", "daily", "breakdown"]) {
      const asked = after.filter((c) => c.url.startsWith(`/api/llm-usage/test/${route}?`));
      expect(asked.length, route).toBeGreaterThan(0);
      expect(new URL(asked.at(-1)!.url, "http://x").searchParams.get("where"), route).toBe("tag:customer:acme");
    }
    // When the breakdown moves to model, the filter stays
    await user.selectOptions(screen.getByLabelText("Breakdown by"), "model");
    await waitFor(() => expect(screen.getByTestId("breakdown-table")).toHaveAttribute("data-by", "model"));
    const byModel = calls.filter((c) => c.url.includes("/breakdown?") && c.url.includes("by=model")).at(-1)!;
    expect(new URL(byModel.url, "http://x").searchParams.get("where")).toBe("tag:customer:acme");
    // When the chip is removed
    await user.click(screen.getByRole("button", { name: "Remove the filter customer: acme" }));
    // Then the page asks without a filter again
    await waitFor(() => expect(screen.getByTestId("total-cost")).toHaveTextContent("$24.69"));
    expect(screen.queryByTestId("filter-chip")).toBeNull();
    const last = calls.filter((c) => c.url.startsWith("/api/llm-usage/test/summary?")).at(-1)!;
    expect(new URL(last.url, "http://x").searchParams.get("where")).toBeNull();
  });

  it("downloads the breakdown as CSV with the (rest) and total rows", async () => {
    // Given the breakdown by customer
    const user = userEvent.setup();
    routes();
    const created: Blob[] = [];
    vi.spyOn(URL, "createObjectURL").mockImplementation((blob) => {
      created.push(blob as Blob);
      return "blob:csv";
    });
    vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    render(<LLMUsageAnalytics userId="test" initialTz="UTC" />);
    const select = await screen.findByLabelText("Breakdown by");
    await waitFor(() => expect(within(select).getAllByRole("option")).toHaveLength(5));
    await user.selectOptions(select, "tag:customer");
    await waitFor(() => expect(screen.getByTestId("breakdown-table")).toHaveAttribute("data-by", "tag:customer"));
    // When the CSV is downloaded
    await user.click(screen.getByRole("button", { name: "Breakdown CSV" }));
    // Then it is the JSON answer's rows, the rest and the total, one line each
    expect(click).toHaveBeenCalled();
    const lines = (await readBlob(created[0]!)).trimEnd().split("\r\n");
    expect(lines[0]).toBe(
      "dimension,value,provider,requests,input_tokens,cache_read_tokens,cache_write_tokens,output_tokens," +
        "reasoning_tokens,total_tokens,cost_usd,billed_cost_usd,share_percent,errors,unpriced_requests,usage_missing",
    );
    expect(lines).toHaveLength(1 + 10 + 1 + 1);
    expect(lines[1]).toMatch(/^tag:customer,acme,,30,3000,0,0,300,0,3300,4.5,4.5,/);
    expect(lines.at(-2)).toMatch(/^tag:customer,\(rest\),/);
    expect(lines.at(-1)).toMatch(/^tag:customer,\(total\),/);
  });
});

describe("breakdown CSV", () => {
  it("keeps a tag value from being read as a spreadsheet formula, and quotes what needs it", () => {
    expect(csvField("=cmd|' /C calc'!A0")).toBe("'=cmd|' /C calc'!A0");
    expect(csvField("+1")).toBe("'+1");
    expect(csvField("-x")).toBe("'-x");
    expect(csvField("@sum")).toBe("'@sum");
    expect(csvField('a,"b"')).toBe('"a,""b"""');
    expect(csvField("acme")).toBe("acme");
    expect(csvField(null)).toBe("");
    expect(csvField(0.000000001)).toBe("0.000000001");
    expect(csvField(12.345678901)).toBe("12.345678901");
  });

  it("writes every row of the answer, (other) included, with exact amounts as the JSON had them", () => {
    const answer = breakdownFor("tag:customer", null, 20);
    const lines = breakdownCsv(answer).trimEnd().split("\r\n");
    expect(lines).toHaveLength(1 + 14 + 1);
    expect(lines.some((line) => line.startsWith("tag:customer,(other),,3,"))).toBe(true);
    expect(lines.some((line) => line.startsWith("tag:customer,'=cmd|' /C calc'!A0,"))).toBe(true);
  });
});
