import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { BudgetInput, BudgetResponse } from "../api";
import { DEFAULT_THRESHOLDS, parseThresholds, plainDecimal } from "../components/BudgetSettings";
import { BUDGET, costControlRoutes, installFetch, MODELS, NO_BUDGET, SETTINGS } from "../test/fakeApi";
import LLMConfiguration from "./LLMConfiguration";

const WEBHOOK = "https://hooks.slack.com/services/T0001/B0001/abcdefSECRETxyz";

/** The settings page with a fake budget API that answers a PUT the way the contract says. */
function routes(initial: BudgetResponse, overrides: Parameters<typeof installFetch>[0] = {}) {
  let stored = initial;
  return installFetch({
    ...costControlRoutes(initial),
    "GET /api/llm-settings/test": () => ({ body: SETTINGS }),
    "GET /api/llm-models": () => ({ body: MODELS }),
    "GET /api/llm-settings/test/budget": () => ({ body: stored }),
    "PUT /api/llm-settings/test/budget": (_url, body) => {
      const sent = body as BudgetInput;
      stored = {
        budget: {
          monthlyLimitUsd: Number(sent.monthlyLimitUsd),
          timezone: sent.timezone,
          thresholds: sent.thresholds ?? DEFAULT_THRESHOLDS,
          action: sent.action,
          switchTo: sent.switchTo ?? null,
          strict: sent.strict ?? false,
          updatedAt: "2026-11-29T10:00:00.000Z",
        },
        hasSlackWebhook: sent.removeSlackWebhook ? false : Boolean(sent.slackWebhookUrl) || stored.hasSlackWebhook,
        status: BUDGET.status,
      };
      return { body: stored };
    },
    "DELETE /api/llm-settings/test/budget": () => {
      stored = { ...NO_BUDGET, hasSlackWebhook: stored.hasSlackWebhook };
      return { body: { deleted: true } };
    },
    ...overrides,
  });
}

/** A long URL is pasted, as a user would (typing it key by key only slows the test down). */
async function paste(user: ReturnType<typeof userEvent.setup>, field: HTMLElement, text: string) {
  await user.click(field);
  await user.paste(text);
}

async function budgetForm() {
  return within(await screen.findByTestId("budget-form"));
}

describe("LLMConfiguration: monthly budget", () => {
  it("starts empty with the browser's timezone and 50/80/100 when no budget is set", async () => {
    routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    expect(form.getByLabelText("Monthly budget (USD)")).toHaveValue("");
    expect(form.getByLabelText("Timezone")).toHaveValue(Intl.DateTimeFormat().resolvedOptions().timeZone);
    expect(form.getByLabelText("Alert thresholds (%)")).toHaveValue("50, 80, 100");
    expect(form.getByLabelText("Action at 100%")).toHaveValue("notify");
    expect(form.queryByRole("button", { name: "Remove budget" })).not.toBeInTheDocument();
  });

  it("saves a budget: the PUT body carries the typed limit as a string and the chosen fields", async () => {
    const user = userEvent.setup();
    const { calls } = routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.type(form.getByLabelText("Monthly budget (USD)"), "30.00");
    await user.selectOptions(form.getByLabelText("Timezone"), "Europe/Paris");
    await user.clear(form.getByLabelText("Alert thresholds (%)"));
    await user.type(form.getByLabelText("Alert thresholds (%)"), "90, 50%");
    await user.selectOptions(form.getByLabelText("Action at 100%"), "block");
    await user.click(form.getByRole("checkbox", { name: /Strict mode/ }));
    await paste(user, form.getByLabelText("Slack webhook URL"), WEBHOOK);
    await user.click(form.getByRole("button", { name: "Save budget" }));

    await screen.findByText("Budget saved");
    const put = calls.find((c) => c.method === "PUT" && c.url === "/api/llm-settings/test/budget");
    expect(put?.body).toEqual({
      monthlyLimitUsd: "30.00",
      timezone: "Europe/Paris",
      thresholds: [50, 90],
      action: "block",
      strict: true,
      slackWebhookUrl: WEBHOOK,
    });
    // Only the budget request was sent: the preferences form is saved on its own.
    expect(calls.some((c) => c.method === "PUT" && c.url === "/api/llm-settings/test")).toBe(false);
    expect(form.getByTestId("budget-status-line")).toHaveTextContent("November 2026 so far: $12.50 of $30.00 (41.7%) — On track");
    expect(form.getByRole("button", { name: "Remove budget" })).toBeInTheDocument();
  });

  it("offers strict mode only with block or switch, so the form never sends what the API refuses", async () => {
    // Given the form with notify chosen (the default): strict cannot be ticked, and the help says why
    const user = userEvent.setup();
    const { calls } = routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    const strict = form.getByRole("checkbox", { name: /Strict mode/ });
    expect(strict).toBeDisabled();
    expect(form.getByText("Choose block or switch to enforce the limit strictly.")).toBeInTheDocument();
    // When block is chosen, strict ticked, then notify chosen again and the budget saved
    await user.type(form.getByLabelText("Monthly budget (USD)"), "30");
    await user.selectOptions(form.getByLabelText("Action at 100%"), "block");
    expect(strict).toBeEnabled();
    await user.click(strict);
    await user.selectOptions(form.getByLabelText("Action at 100%"), "notify");
    expect(strict).not.toBeChecked();
    await user.click(form.getByRole("button", { name: "Save budget" }));
    // Then the budget was saved as notify without strict (the API refuses strict with notify)
    await screen.findByText("Budget saved");
    const put = calls.find((c) => c.method === "PUT" && c.url === "/api/llm-settings/test/budget");
    expect(put?.body).toMatchObject({ action: "notify", strict: false });
  });

  it("never renders the Slack webhook URL back: the field is cleared and only 'Stored' is shown", async () => {
    const user = userEvent.setup();
    routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.type(form.getByLabelText("Monthly budget (USD)"), "12.5");
    const field = form.getByLabelText("Slack webhook URL");
    expect(field).toHaveAttribute("type", "password");
    expect(field).toHaveAttribute("autocomplete", "off");
    await paste(user, field, WEBHOOK);
    await user.click(form.getByRole("button", { name: "Save budget" }));
    await screen.findByText("Slack webhook stored. It will not be shown again.");

    expect(form.getByLabelText("Slack webhook URL")).toHaveValue("");
    expect(form.getByTestId("webhook-stored")).toHaveTextContent("Stored");
    expect(document.body.innerHTML).not.toContain("abcdefSECRETxyz");
    expect(document.body.innerHTML).not.toContain("hooks.slack.com/services/T0001");
    expect(window.localStorage.length).toBe(0);
    expect(window.sessionStorage.length).toBe(0);
  });

  it("removes a stored webhook on save when asked, without sending a URL", async () => {
    const user = userEvent.setup();
    const { calls } = routes({ ...BUDGET, hasSlackWebhook: true });
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    expect(form.getByTestId("webhook-stored")).toBeInTheDocument();
    expect(form.getByLabelText("Slack webhook URL")).toHaveValue("");
    const remove = form.getByRole("button", { name: "Remove webhook" });
    await user.click(remove);
    expect(remove).toHaveAttribute("aria-pressed", "true");
    await user.click(form.getByRole("button", { name: "Save budget" }));
    await screen.findByText("Slack webhook removed.");
    const put = calls.find((c) => c.method === "PUT")!;
    expect(put.body).toMatchObject({ monthlyLimitUsd: "30", timezone: "America/Los_Angeles", removeSlackWebhook: true });
    expect(put.body).not.toHaveProperty("slackWebhookUrl");
    expect(form.queryByTestId("webhook-stored")).not.toBeInTheDocument();
  });

  it("requires a model when the action is switch, then sends switchTo", async () => {
    const user = userEvent.setup();
    const { calls } = routes(BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    expect(form.getByLabelText("Monthly budget (USD)")).toHaveValue("30");
    await user.selectOptions(form.getByLabelText("Action at 100%"), "switch");
    await user.click(form.getByRole("button", { name: "Save budget" }));

    expect(await form.findByText("Choose the provider and model to switch to.")).toBeInTheDocument();
    expect(form.getByLabelText("Switch to model")).toBeDisabled();
    expect(calls.some((c) => c.method === "PUT")).toBe(false);

    await user.selectOptions(form.getByLabelText("Switch to provider"), "anthropic");
    // Models come from the catalog the page already loaded.
    await user.selectOptions(form.getByLabelText("Switch to model"), "claude-haiku-4-5-20251001");
    await user.click(form.getByRole("button", { name: "Save budget" }));
    await screen.findByText("Budget saved");
    expect(calls.find((c) => c.method === "PUT")?.body).toMatchObject({
      action: "switch",
      switchTo: { provider: "anthropic", model: "claude-haiku-4-5-20251001" },
    });
    expect(form.queryByText("Choose the provider and model to switch to.")).not.toBeInTheDocument();
  });

  it("explains bad input next to the fields and sends nothing", async () => {
    const user = userEvent.setup();
    const { calls } = routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.type(form.getByLabelText("Monthly budget (USD)"), "0.00");
    await user.clear(form.getByLabelText("Alert thresholds (%)"));
    await user.type(form.getByLabelText("Alert thresholds (%)"), "50, 50");
    await paste(user, form.getByLabelText("Slack webhook URL"), "http://example.com/hook-secret-part");
    await user.click(form.getByRole("button", { name: "Save budget" }));

    expect(await form.findByRole("alert")).toHaveTextContent("Check the budget");
    expect(form.getByLabelText("Monthly budget (USD)")).toHaveAttribute("aria-invalid", "true");
    expect(form.getByLabelText("Monthly budget (USD)")).toHaveAccessibleDescription(/amount in USD above 0/);
    expect(form.getByLabelText("Alert thresholds (%)")).toHaveAccessibleDescription(/50% is listed twice/);
    expect(form.getByLabelText("Slack webhook URL")).toHaveAccessibleDescription(/starts with https:\/\//);
    expect(form.getByRole("alert").textContent).not.toContain("hook-secret-part");
    expect(calls.some((c) => c.method === "PUT")).toBe(false);
  });

  it("shows the API's message when the budget is refused", async () => {
    const user = userEvent.setup();
    routes(NO_BUDGET, {
      "PUT /api/llm-settings/test/budget": () => ({
        status: 400,
        body: { error: "validation failed", details: [{ loc: ["body", "timezone"], msg: "unknown timezone" }] },
      }),
    });
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.type(form.getByLabelText("Monthly budget (USD)"), "30");
    await user.click(form.getByRole("button", { name: "Save budget" }));
    const alert = await form.findByRole("alert");
    expect(alert).toHaveTextContent("Could not save the budget: validation failed");
    expect(alert).toHaveTextContent("timezone: unknown timezone");
  });

  it("removes the budget after confirmation", async () => {
    const user = userEvent.setup();
    const { calls } = routes(BUDGET);
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.click(form.getByRole("button", { name: "Remove budget" }));
    await user.click(within(form.getByRole("group", { name: "Confirm budget removal" })).getByRole("button", { name: "Remove" }));
    await screen.findByText("Budget removed");
    expect(calls.some((c) => c.method === "DELETE" && c.url === "/api/llm-settings/test/budget")).toBe(true);
    expect(form.getByLabelText("Monthly budget (USD)")).toHaveValue("");
    expect(form.queryByRole("button", { name: "Remove budget" })).not.toBeInTheDocument();
  });

  it("keeps the rest of the page working when the budget cannot be loaded", async () => {
    routes(NO_BUDGET, { "GET /api/llm-settings/test/budget": () => ({ status: 503, body: { error: "the store is unavailable" } }) });
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    expect(form.getByRole("alert")).toHaveTextContent("Could not load your budget");
    expect(screen.getByRole("group", { name: "Default provider" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Save Settings" })).toBeEnabled();
  });

  it("explains the response cache, which is off by default", async () => {
    routes(NO_BUDGET);
    render(<LLMConfiguration userId="test" />);
    const toggle = await screen.findByRole("checkbox", { name: /Enable response cache/ });
    expect(toggle).not.toBeChecked();
    expect(toggle).toHaveAccessibleDescription(/identical temperature-0 requests are answered from a cache for 1 hour/i);
  });
});

describe("parseThresholds", () => {
  it("accepts what the API accepts: 1–10 distinct whole percents in 1..1000, sorted", () => {
    // Property-style without a dependency: 500 lists from a seeded generator (mulberry32), so a
    // failure reproduces. Separators vary as a user would type them.
    let seed = 9;
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const separators = [",", ", ", " ", "; ", "%, "];
    for (let run = 0; run < 500; run += 1) {
      const values = new Set<number>();
      const size = 1 + Math.floor(random() * 10);
      while (values.size < size) values.add(1 + Math.floor(random() * 1000));
      const text = [...values].join(separators[Math.floor(random() * separators.length)]);
      expect(parseThresholds(text)).toEqual([...values].sort((a, b) => a - b));
    }
  });

  it("refuses the rest with a reason", () => {
    for (const text of ["", "0", "1001", "50, 50", "12.5", "abc", Array.from({ length: 11 }, (_, i) => i + 1).join(",")]) {
      expect(typeof parseThresholds(text)).toBe("string");
    }
  });
});

describe("plainDecimal", () => {
  it("writes a stored limit back without exponent notation", () => {
    expect(plainDecimal(30)).toBe("30");
    expect(plainDecimal(12.5)).toBe("12.5");
    expect(plainDecimal(1e-7)).toBe("0.0000001");
    expect(plainDecimal(0.000000001)).toBe("0.000000001");
  });
});
