import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { BudgetInput, BudgetResponse } from "../api";
import LLMConfiguration from "../pages/LLMConfiguration";
import { BUDGET, costControlRoutes, installFetch, MODELS, SETTINGS } from "../test/fakeApi";

function routes(initial: BudgetResponse) {
  let stored = initial;
  return installFetch({
    ...costControlRoutes(initial),
    "GET /api/llm-settings/test": () => ({ body: SETTINGS }),
    "GET /api/llm-models": () => ({ body: MODELS }),
    "GET /api/llm-settings/test/budget": () => ({ body: stored }),
    "PUT /api/llm-settings/test/budget": (_url, body) => {
      const sent = body as BudgetInput;
      const alertEmail = sent.removeAlertEmail
        ? null
        : sent.alertEmail
          ? { address: sent.alertEmail, status: "pending_confirmation" as const, subscribedAt: "2026-11-29T10:00:00Z" }
          : (stored.alertEmail ?? null);
      stored = { ...stored, alertEmail };
      return { body: stored };
    },
  });
}

async function budgetForm() {
  return within(await screen.findByTestId("budget-form"));
}

describe("Budget form: alert e-mail", () => {
  it("sends a new address once and says the confirmation link must be followed", async () => {
    // Given a deployment that can e-mail users, and no address yet
    const user = userEvent.setup();
    const { calls } = routes({ ...BUDGET, alertEmailAvailable: true, alertEmail: null });
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    // When an address is typed and the budget saved
    await user.type(form.getByLabelText("Alert e-mail"), "ops@example.com");
    await user.click(form.getByRole("button", { name: "Save budget" }));
    // Then the PUT carries it, and the page says a confirmation e-mail is on its way
    expect(await screen.findByText(/AWS is e-mailing ops@example.com a confirmation link/)).toBeInTheDocument();
    const put = calls.find((c) => c.method === "PUT")!;
    expect((put.body as BudgetInput).alertEmail).toBe("ops@example.com");
    expect(await screen.findByTestId("alert-email-status")).toHaveAttribute("data-status", "pending_confirmation");
    expect(screen.getByTestId("alert-email-status")).toHaveTextContent("Waiting for confirmation");
    // When the budget is saved again without a new address: the address is not re-sent
    await user.click(form.getByRole("button", { name: "Save budget" }));
    const puts = calls.filter((c) => c.method === "PUT");
    expect(puts).toHaveLength(2);
    expect((puts[1]!.body as BudgetInput).alertEmail).toBeUndefined();
  });

  it("shows a confirmed address and removes it on request", async () => {
    const user = userEvent.setup();
    const confirmed = { address: "ops@example.com", status: "confirmed" as const, subscribedAt: "2026-11-20T10:00:00Z" };
    const { calls } = routes({ ...BUDGET, alertEmailAvailable: true, alertEmail: confirmed });
    render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    expect(await form.findByTestId("alert-email-status")).toHaveTextContent("ops@example.com · Confirmed");
    await user.click(form.getByRole("button", { name: "Remove address" }));
    await user.click(form.getByRole("button", { name: "Save budget" }));
    expect(await screen.findByText("Alert e-mail address removed.")).toBeInTheDocument();
    expect((calls.find((c) => c.method === "PUT")!.body as BudgetInput).removeAlertEmail).toBe(true);
  });

  it("refuses a malformed address before calling the API, and is hidden where e-mail is not set up", async () => {
    const user = userEvent.setup();
    const { calls } = routes({ ...BUDGET, alertEmailAvailable: true, alertEmail: null });
    const { unmount } = render(<LLMConfiguration userId="test" />);
    const form = await budgetForm();
    await user.type(form.getByLabelText("Alert e-mail"), "ops@example");
    await user.click(form.getByRole("button", { name: "Save budget" }));
    expect(await screen.findByText("Enter one e-mail address, like ops@example.com.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT")).toHaveLength(0);
    unmount();

    routes({ ...BUDGET, alertEmailAvailable: false });
    render(<LLMConfiguration userId="test" />);
    await budgetForm();
    expect(screen.queryByLabelText("Alert e-mail")).toBeNull();
  });
});
