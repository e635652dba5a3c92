import { describe, expect, it } from "vitest";
import { addDays, formatPrice, formatUsd, humanize, localDate } from "./format";
import { periodFor } from "./pages/LLMUsageAnalytics";

describe("format", () => {
  it("shows money with cents, and 4 decimals under a dollar", () => {
    expect(formatUsd(1234.5)).toBe("$1,234.50");
    expect(formatUsd(0.0123456)).toBe("$0.0123");
    expect(formatUsd(0)).toBe("$0.0000");
    expect(formatUsd(null)).toBe("—");
    expect(formatPrice(0.075)).toBe("$0.075");
    expect(formatPrice(null)).toBe("unpriced");
  });

  it("computes local days in a timezone, including 30- and 45-minute offsets", () => {
    const instant = new Date("2026-11-28T19:00:00Z");
    expect(localDate("UTC", instant)).toBe("2026-11-28");
    expect(localDate("Asia/Kolkata", instant)).toBe("2026-11-29"); // +05:30
    expect(localDate("Asia/Kathmandu", instant)).toBe("2026-11-29"); // +05:45
    expect(localDate("America/Los_Angeles", instant)).toBe("2026-11-28");
  });

  it("builds inclusive periods of N local days", () => {
    expect(addDays("2026-03-01", -1)).toBe("2026-02-28");
    expect(periodFor(7, "UTC", new Date("2026-11-28T12:00:00Z"))).toEqual({
      start: "2026-11-22",
      end: "2026-11-28",
      days: 7,
      tz: "UTC",
    });
  });

  it("humanizes operation names", () => {
    expect(humanize("query_generation")).toBe("Query generation");
  });
});
