import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { BillingKeysResponse } from "../api";
import LLMConfiguration from "../pages/LLMConfiguration";
import { costControlRoutes, installFetch, MODELS, NO_BILLING_KEYS, SETTINGS } from "../test/fakeApi";
import BillingKeys, { adminKeyProblem } from "./BillingKeys";

const OPENAI_ADMIN = "sk-admin-" + "Q".repeat(40);
const ANTHROPIC_ADMIN = "sk-ant-admin01-" + "Z".repeat(40);

/** A fake of the billing-key routes that answers the way docs/api.md says (booleans only). */
function billingRoutes(initial: BillingKeysResponse = NO_BILLING_KEYS) {
  let state = initial;
  return installFetch({
    "GET /api/llm-settings/test/billing-keys": () => ({ body: state }),
    "PUT /api/llm-settings/test/billing-keys": (_url, body) => {
      const { provider } = body as { provider: "openai" | "anthropic" };
      state = { ...state, hasAdminKeys: { ...state.hasAdminKeys, [provider]: true } };
      return { body: state };
    },
    "DELETE /api/llm-settings/test/billing-keys/(openai|anthropic)": (url) => {
      const provider = url.pathname.split("/").pop() as "openai" | "anthropic";
      const deleted = state.hasAdminKeys[provider];
      state = { ...state, hasAdminKeys: { ...state.hasAdminKeys, [provider]: false } };
      return { body: { ...state, deleted } };
    },
  });
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("BillingKeys", () => {
  it("stores an admin key write-only: sent once, cleared, and shown only as stored", async () => {
    // Given no admin key stored
    const user = userEvent.setup();
    const { calls } = billingRoutes();
    render(<BillingKeys userId="test" />);
    const openai = await screen.findByTestId("billing-key-openai");
    expect(within(openai).getByText("Not stored")).toBeInTheDocument();
    expect(screen.getByText(/No key for AWS Bedrock/)).toBeInTheDocument();

    // When the user pastes an OpenAI admin key and stores it
    const input = within(openai).getByLabelText("OpenAI admin key");
    expect(input).toHaveAttribute("type", "password");
    await user.click(input);
    await user.paste(OPENAI_ADMIN);
    await user.click(within(openai).getByRole("button", { name: "Store" }));

    // Then one PUT carries it, the field is cleared and the page says only that a key is stored
    expect(await screen.findByText("OpenAI admin key stored")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT")).toEqual([
      { method: "PUT", url: "/api/llm-settings/test/billing-keys", body: { provider: "openai", adminKey: OPENAI_ADMIN } },
    ]);
    expect(input).toHaveValue("");
    expect(within(openai).getByText("Stored")).toBeInTheDocument();
    expect(within(openai).getByRole("button", { name: "Replace" })).toBeDisabled();
    expect(within(screen.getByTestId("billing-key-anthropic")).getByText("Not stored")).toBeInTheDocument();
    expect(document.body.innerHTML).not.toContain(OPENAI_ADMIN);
  });

  it("refuses a project key before asking the API, and shows the API's refusal without the key", async () => {
    const user = userEvent.setup();
    const { calls } = installFetch({
      "GET /api/llm-settings/test/billing-keys": () => ({ body: NO_BILLING_KEYS }),
      "PUT /api/llm-settings/test/billing-keys": () => ({
        status: 400,
        body: { error: "validation failed", details: [{ loc: ["body", "adminKey"], msg: "not an Anthropic admin key" }] },
      }),
    });
    render(<BillingKeys userId="test" />);
    const anthropic = await screen.findByTestId("billing-key-anthropic");
    const input = within(anthropic).getByLabelText("Anthropic admin key");

    // When a project key (not an admin key) is pasted
    const project = "sk-ant-api03-" + "P".repeat(40);
    await user.click(input);
    await user.paste(project);
    await user.click(within(anthropic).getByRole("button", { name: "Store" }));
    // Then nothing is sent; the reason names the expected prefix, not the key
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("starts with sk-ant-admin");
    expect(alert.textContent).not.toContain("P".repeat(40));
    expect(calls.some((c) => c.method === "PUT")).toBe(false);
    expect(input).toHaveValue(project);

    // When the API refuses a well-shaped key
    await user.clear(input);
    await user.paste(ANTHROPIC_ADMIN);
    await user.click(within(anthropic).getByRole("button", { name: "Store" }));
    // Then its reason is shown, the field cleared, and the key is nowhere on the page
    await waitFor(() => expect(screen.getByRole("alert")).toHaveTextContent("adminKey: not an Anthropic admin key"));
    expect(calls.filter((c) => c.method === "PUT")).toHaveLength(1);
    expect(input).toHaveValue("");
    expect(document.body.innerHTML).not.toContain(ANTHROPIC_ADMIN);
    expect(within(anthropic).getByText("Not stored")).toBeInTheDocument();
  });

  it("removes a stored key after confirmation, and keeps it when the user cancels", async () => {
    const user = userEvent.setup();
    const { calls } = billingRoutes({ hasAdminKeys: { openai: false, anthropic: true }, bedrock: "deployment" });
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    render(<BillingKeys userId="test" />);
    const anthropic = await screen.findByTestId("billing-key-anthropic");
    expect(within(anthropic).getByText("Stored")).toBeInTheDocument();
    expect(within(screen.getByTestId("billing-key-openai")).queryByRole("button", { name: /Remove/ })).toBeNull();

    const remove = within(anthropic).getByRole("button", { name: "Remove the stored Anthropic admin key" });
    await user.click(remove);
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);

    await user.click(remove);
    expect(await screen.findByText("Anthropic admin key removed")).toBeInTheDocument();
    expect(confirm).toHaveBeenCalledTimes(2);
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.url)).toEqual([
      "/api/llm-settings/test/billing-keys/anthropic",
    ]);
    expect(within(anthropic).getByText("Not stored")).toBeInTheDocument();
  });

  it("shows a load error with a retry", async () => {
    let fail = true;
    installFetch({
      "GET /api/llm-settings/test/billing-keys": () =>
        fail ? { status: 503, body: { error: "storage unavailable" } } : { body: NO_BILLING_KEYS },
    });
    render(<BillingKeys userId="test" />);
    expect(await screen.findByRole("alert")).toHaveTextContent("storage unavailable");
    fail = false;
    await userEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByTestId("billing-key-openai")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("is a section of the configuration page", async () => {
    installFetch({
      ...costControlRoutes(),
      "GET /api/llm-settings/test": () => ({ body: SETTINGS }),
      "GET /api/llm-models": () => ({ body: MODELS }),
      "GET /api/llm-settings/test/ingest-keys": () => ({ body: { keys: [], max_keys: 20 } }),
    });
    render(<LLMConfiguration userId="test" />);
    expect(await screen.findByRole("heading", { name: "Billing Keys" })).toBeInTheDocument();
    expect(await screen.findByTestId("billing-key-openai")).toBeInTheDocument();
  });
});

describe("adminKeyProblem", () => {
  it("accepts each provider's admin key shape only", () => {
    expect(adminKeyProblem("openai", OPENAI_ADMIN)).toBeNull();
    expect(adminKeyProblem("anthropic", ANTHROPIC_ADMIN)).toBeNull();
    expect(adminKeyProblem("openai", ANTHROPIC_ADMIN)).toMatch(/starts with sk-admin-/);
    expect(adminKeyProblem("openai", "sk-proj-" + "x".repeat(40))).toMatch(/project or API key/);
    expect(adminKeyProblem("openai", "sk-admin-short")).toMatch(/16 to 512/);
    expect(adminKeyProblem("openai", "sk-admin-" + "x".repeat(600))).toMatch(/16 to 512/);
    expect(adminKeyProblem("anthropic", "sk-ant-admin01 " + "x".repeat(20))).toMatch(/no spaces/);
  });
});
