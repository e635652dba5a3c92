import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { TagBudget, TagBudgetInput } from "../api";
import { MODELS, TAG_BUDGETS, TAG_KEYS, installFetch } from "../test/fakeApi";
import TagBudgets from "./TagBudgets";

function saved(input: TagBudgetInput): TagBudget {
  return {
    tagKey: input.tagKey,
    tagValue: input.tagValue,
    budget: {
      monthlyLimitUsd: Number(input.monthlyLimitUsd),
      timezone: input.timezone,
      thresholds: input.thresholds ?? [50, 80, 100],
      action: input.action,
      switchTo: input.switchTo ?? null,
      strict: input.strict ?? false,
    },
    status: {
      period: "2026-11",
      periodStart: "2026-11-01T00:00:00+00:00",
      periodEnd: "2026-12-01T00:00:00+00:00",
      spentUsd: 0,
      reservedUsd: 0,
      remainingUsd: Number(input.monthlyLimitUsd),
      percentUsed: 0,
      state: "ok",
      crossedThresholds: [],
    },
  };
}

function routes(overrides: Record<string, Parameters<typeof installFetch>[0][string]> = {}) {
  return installFetch({
    "GET /api/llm-settings/test/budget/tags": () => ({ body: TAG_BUDGETS }),
    "GET /api/llm-usage/test/tags": () => ({ body: TAG_KEYS }),
    "PUT /api/llm-settings/test/budget/tags": (_url, body) => ({ body: saved(body as TagBudgetInput) }),
    "DELETE /api/llm-settings/test/budget/tag": () => ({ body: { deleted: true } }),
    ...overrides,
  });
}

describe("Tag budgets", () => {
  it("lists each tag budget with where it stands this month", async () => {
    // Given customer acme's $50 budget, 85% used
    routes();
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    // Then it is listed with its spend, state and action
    const item = await screen.findByTestId("tag-budget");
    expect(item).toHaveAttribute("data-tag", "customer=acme");
    expect(item).toHaveTextContent("customer: acme");
    expect(item).toHaveTextContent("$42.50 of $50.00");
    expect(item).toHaveTextContent("Warning");
    expect(item).toHaveTextContent("Block calls with this tag");
    expect(within(item).getByRole("meter", { name: "customer: acme budget used" })).toHaveAttribute("aria-valuenow", "85");
    expect(screen.getByText("1 of 20 tag budgets.", { exact: false })).toBeInTheDocument();
  });

  it("adds a budget on a tag value, sending the typed amount as a decimal string", async () => {
    // Given the section
    const user = userEvent.setup();
    const { calls } = routes();
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await screen.findByTestId("tag-budget");
    // When a $12.5 block budget on customer c-42 is added
    await user.type(screen.getByLabelText("Tag value"), "c-42");
    await user.type(screen.getByLabelText("Tag monthly limit (USD)"), "12.5");
    await user.selectOptions(screen.getByLabelText("At 100%"), "block");
    await user.click(screen.getByRole("button", { name: "Add tag budget" }));
    // Then the API got exactly that, and the list shows it
    expect(await screen.findByText("Budget for customer: c-42 saved")).toBeInTheDocument();
    const put = calls.find((c) => c.method === "PUT")!;
    expect(put.url).toBe("/api/llm-settings/test/budget/tags");
    expect(put.body).toMatchObject({
      tagKey: "customer",
      tagValue: "c-42",
      monthlyLimitUsd: "12.5",
      thresholds: [50, 80, 100],
      action: "block",
    });
    await waitFor(() => expect(screen.getAllByTestId("tag-budget")).toHaveLength(2));
    expect(screen.getAllByTestId("tag-budget").map((li) => li.getAttribute("data-tag"))).toEqual([
      "customer=acme",
      "customer=c-42",
    ]);
  });

  it("offers strict mode with block or switch, and shows what a strict budget has reserved", async () => {
    // Given the section, with notify chosen: strict cannot be ticked
    const user = userEvent.setup();
    const { calls } = routes();
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await screen.findByTestId("tag-budget");
    const strict = screen.getByLabelText(/Tag strict mode/);
    expect(strict).toBeDisabled();
    expect(screen.getByText("Choose block or switch to enforce the limit strictly.")).toBeInTheDocument();
    // When block is chosen and strict ticked, and the budget added
    await user.type(screen.getByLabelText("Tag value"), "c-42");
    await user.type(screen.getByLabelText("Tag monthly limit (USD)"), "50");
    await user.selectOptions(screen.getByLabelText("At 100%"), "block");
    expect(strict).toBeEnabled();
    await user.click(strict);
    await user.click(screen.getByRole("button", { name: "Add tag budget" }));
    // Then the API got strict with block, and the list says it is strict with what is reserved
    expect(await screen.findByText("Budget for customer: c-42 saved")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PUT")!.body).toMatchObject({ tagValue: "c-42", action: "block", strict: true });
    await waitFor(() => expect(screen.getAllByTestId("tag-budget")).toHaveLength(2));
    const added = screen.getAllByTestId("tag-budget").find((li) => li.getAttribute("data-tag") === "customer=c-42")!;
    expect(added).toHaveTextContent("Strict, $0.0000 reserved");
  });

  it("never sends strict with notify, even if it was ticked before switching back", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await screen.findByTestId("tag-budget");
    await user.type(screen.getByLabelText("Tag value"), "c-9");
    await user.type(screen.getByLabelText("Tag monthly limit (USD)"), "5");
    await user.selectOptions(screen.getByLabelText("At 100%"), "block");
    await user.click(screen.getByLabelText(/Tag strict mode/));
    await user.selectOptions(screen.getByLabelText("At 100%"), "notify");
    await user.click(screen.getByRole("button", { name: "Add tag budget" }));
    expect(await screen.findByText("Budget for customer: c-9 saved")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "PUT")!.body).toMatchObject({ action: "notify", strict: false });
  });

  it("explains bad input next to the fields and sends nothing", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await screen.findByTestId("tag-budget");
    // When the key is capitalised, the value empty, the limit zero and switch has no model
    await user.clear(screen.getByLabelText("Tag key"));
    await user.type(screen.getByLabelText("Tag key"), "Customer");
    await user.type(screen.getByLabelText("Tag monthly limit (USD)"), "0");
    await user.selectOptions(screen.getByLabelText("At 100%"), "switch");
    await user.click(screen.getByRole("button", { name: "Add tag budget" }));
    // Then each field says what is wrong, and no PUT was sent
    expect(await screen.findByText("Check the tag budget: some fields need a fix.")).toBeInTheDocument();
    expect(screen.getByText(/A tag key is lower case/)).toBeInTheDocument();
    expect(screen.getByText(/Enter the tag value/)).toBeInTheDocument();
    expect(screen.getByText(/Enter an amount in USD above 0/)).toBeInTheDocument();
    expect(screen.getByText("Choose the provider and model to switch to.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT")).toHaveLength(0);
  });

  it("removes a tag budget by key and value, a value with a slash included", async () => {
    const user = userEvent.setup();
    const withSlash = { ...TAG_BUDGETS.budgets[0]!, tagKey: "team", tagValue: "eu/west a" };
    const { calls } = routes({
      "GET /api/llm-settings/test/budget/tags": () => ({ body: { ...TAG_BUDGETS, budgets: [withSlash] } }),
    });
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await user.click(await screen.findByRole("button", { name: "Remove the budget for team: eu/west a" }));
    expect(await screen.findByText("Budget for team: eu/west a removed")).toBeInTheDocument();
    const deleted = calls.find((c) => c.method === "DELETE")!;
    const query = new URL(deleted.url, "http://x").searchParams;
    expect([query.get("key"), query.get("value")]).toEqual(["team", "eu/west a"]);
    expect(screen.queryByTestId("tag-budget")).toBeNull();
  });

  it("shows the API's refusal", async () => {
    const user = userEvent.setup();
    routes({
      "PUT /api/llm-settings/test/budget/tags": () => ({
        status: 400,
        body: { error: "at most 20 tag budgets per tenant: remove one first" },
      }),
    });
    render(<TagBudgets userId="test" catalog={MODELS.providers} />);
    await screen.findByTestId("tag-budget");
    await user.type(screen.getByLabelText("Tag value"), "c-43");
    await user.type(screen.getByLabelText("Tag monthly limit (USD)"), "5");
    await user.click(screen.getByRole("button", { name: "Add tag budget" }));
    expect(
      await screen.findByText("Could not save the tag budget: at most 20 tag budgets per tenant: remove one first"),
    ).toBeInTheDocument();
  });
});
