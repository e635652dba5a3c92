import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { costControlRoutes, installFetch, MODELS, SETTINGS } from "../test/fakeApi";
import LLMConfiguration from "./LLMConfiguration";

function routes(overrides: Parameters<typeof installFetch>[0] = {}) {
  return installFetch({
    ...costControlRoutes(),
    "GET /api/llm-settings/test": () => ({ body: SETTINGS }),
    "GET /api/llm-models": () => ({ body: MODELS }),
    "GET /api/llm-settings/test/ingest-keys": () => ({ body: { keys: [], max_keys: 20 } }),
    "PUT /api/llm-settings/test": (_url, body) => {
      const sent = body as { preferences: typeof SETTINGS.preferences; apiKeys?: Record<string, string> };
      return {
        body: {
          message: "Settings updated successfully",
          preferences: sent.preferences,
          hasApiKeys: { ...SETTINGS.hasApiKeys, ...Object.fromEntries(Object.keys(sent.apiKeys ?? {}).map((k) => [k, true])) },
        },
      };
    },
    ...overrides,
  });
}

describe("LLMConfiguration", () => {
  // The seed's first frontend test, in spirit.
  it("renders the four provider cards", async () => {
    routes();
    render(<LLMConfiguration userId="test" />);
    const group = await screen.findByRole("group", { name: "Default provider" });
    for (const name of [/Anthropic/, /OpenAI/, /Google Gemini/, /AWS Bedrock/]) {
      expect(within(group).getByRole("button", { name })).toBeInTheDocument();
    }
    // Bedrock is the default and is shown selected; it needs no key, the deployment can call it.
    expect(within(group).getByRole("button", { name: /AWS Bedrock/ })).toHaveAttribute("aria-pressed", "true");
    expect(within(screen.getByTestId("provider-card-bedrock")).getByText("Configured")).toBeInTheDocument();
  });

  // The seed's second frontend test, in spirit.
  it("selecting Anthropic, typing a key and saving sends PUT /api/llm-settings/test", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMConfiguration userId="test" />);

    await user.click(await screen.findByRole("button", { name: /Anthropic/, pressed: false }));
    const field = screen.getByPlaceholderText(/Enter Anthropic/);
    expect(field).toHaveAttribute("type", "password");
    await user.type(field, "sk-ant-test-key-123456");
    await user.click(screen.getByRole("button", { name: "Save Settings" }));

    await screen.findByText("Settings saved successfully");
    const put = calls.find((c) => c.method === "PUT");
    expect(put?.url).toBe("/api/llm-settings/test");
    expect(put?.body).toMatchObject({
      preferences: { defaultProvider: "anthropic", queryModel: "claude-sonnet-4-6", detectionModel: "claude-sonnet-4-6" },
      apiKeys: { anthropic: "sk-ant-test-key-123456" },
    });
    // The key is cleared from the page once sent, and the card says it is stored.
    expect(screen.getByLabelText("Anthropic API key")).toHaveValue("");
    expect(document.body.innerHTML).not.toContain("sk-ant-test-key-123456");
    expect(within(screen.getByTestId("provider-card-anthropic")).getByText("Configured")).toBeInTheDocument();
    expect(window.localStorage.length).toBe(0);
    expect(window.sessionStorage.length).toBe(0);
  });

  it("sends no apiKeys when no key was typed", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMConfiguration userId="test" />);
    await user.click(await screen.findByRole("button", { name: "Save Settings" }));
    await screen.findByText("Settings saved successfully");
    expect(calls.find((c) => c.method === "PUT")?.body).not.toHaveProperty("apiKeys");
  });

  it("updates the cost preview as models are chosen", async () => {
    const user = userEvent.setup();
    routes();
    render(<LLMConfiguration userId="test" />);
    await user.click(await screen.findByRole("button", { name: /Anthropic/, pressed: false }));
    expect(screen.getByTestId("cost-preview-query")).toHaveTextContent("$18.00");
    await user.selectOptions(screen.getByLabelText("Query Generation Model"), "claude-haiku-4-5-20251001");
    expect(screen.getByTestId("cost-preview-query")).toHaveTextContent("$6.00");
    expect(screen.getByTestId("cost-preview-detection")).toHaveTextContent("$18.00");
    // Dropdown labels carry the catalog's prices per 1M tokens.
    const models = screen.getByRole("region", { name: "Model Selection" });
    expect(within(models).getAllByRole("option", { name: /Claude Haiku 4.5 — \$1 \/ \$5 per 1M tokens/ })).toHaveLength(2);
  });

  it("shows the API's validation error when saving fails", async () => {
    const user = userEvent.setup();
    routes({
      "PUT /api/llm-settings/test": () => ({
        status: 400,
        body: { error: "validation failed", details: [{ loc: ["body", "apiKeys", "anthropic"], msg: "an API key has at least 8 characters" }] },
      }),
    });
    render(<LLMConfiguration userId="test" />);
    await user.type(await screen.findByPlaceholderText(/Enter Anthropic/), "short");
    await user.click(screen.getByRole("button", { name: "Save Settings" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not save: validation failed");
    expect(alert).toHaveTextContent("apiKeys.anthropic: an API key has at least 8 characters");
  });

  it("shows a successful connection test with its latency", async () => {
    const user = userEvent.setup();
    const { calls } = routes({
      "GET /api/llm-settings/test": () => ({ body: { ...SETTINGS, hasApiKeys: { ...SETTINGS.hasApiKeys, openai: true } } }),
      "POST /api/llm-settings/test/test": () => ({
        body: { success: true, provider: "openai", message: "ok", model: "gpt-5", latency_ms: 341.6, error: null },
      }),
    });
    render(<LLMConfiguration userId="test" />);
    await user.click(await screen.findByRole("button", { name: "Test OpenAI connection" }));
    expect(await screen.findByTestId("test-result-openai")).toHaveTextContent("Connection successful (342ms)");
    // The stored key is used: nothing but the provider is sent.
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ provider: "openai" });
  });

  it("shows a clear error when the API cannot be reached during a test", async () => {
    const user = userEvent.setup();
    routes({
      "GET /api/llm-settings/test": () => ({ body: { ...SETTINGS, hasApiKeys: { ...SETTINGS.hasApiKeys, google: true } } }),
    });
    render(<LLMConfiguration userId="test" />);
    await screen.findByRole("button", { name: "Test Google Gemini connection" });
    // From here on the network is gone.
    globalThis.fetch = (() => Promise.reject(new TypeError("Failed to fetch"))) as typeof fetch;
    await user.click(screen.getByRole("button", { name: "Test Google Gemini connection" }));
    expect(await screen.findByTestId("test-result-google")).toHaveTextContent(
      /Connection failed: .*(offline|Could not reach the API)/,
    );
  });

  it("disables Test until a key is typed or stored", async () => {
    const user = userEvent.setup();
    routes();
    render(<LLMConfiguration userId="test" />);
    const button = await screen.findByRole("button", { name: "Test Anthropic connection" });
    expect(button).toBeDisabled();
    await user.type(screen.getByPlaceholderText(/Enter Anthropic/), "sk-ant-abcdefgh");
    expect(button).toBeEnabled();
  });

  it("removes a stored key after confirmation", async () => {
    const user = userEvent.setup();
    const { calls } = routes({
      "GET /api/llm-settings/test": () => ({ body: { ...SETTINGS, hasApiKeys: { ...SETTINGS.hasApiKeys, anthropic: true } } }),
      "DELETE /api/llm-settings/test/keys/anthropic": () => ({
        body: { provider: "anthropic", deleted: true, hasApiKeys: SETTINGS.hasApiKeys },
      }),
    });
    render(<LLMConfiguration userId="test" />);
    await user.click(await screen.findByRole("button", { name: "Remove the stored Anthropic key" }));
    await user.click(within(screen.getByRole("group", { name: "Confirm key removal" })).getByRole("button", { name: "Remove" }));
    await screen.findByText("Anthropic API key removed");
    expect(calls.some((c) => c.method === "DELETE" && c.url === "/api/llm-settings/test/keys/anthropic")).toBe(true);
    expect(within(screen.getByTestId("provider-card-anthropic")).queryByText("Configured")).not.toBeInTheDocument();
  });

  it("refuses an out-of-range temperature before calling the API", async () => {
    const user = userEvent.setup();
    const { calls } = routes();
    render(<LLMConfiguration userId="test" />);
    const temperature = await screen.findByLabelText("Temperature");
    await user.clear(temperature);
    await user.type(temperature, "1.5");
    await user.click(screen.getByRole("button", { name: "Save Settings" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Temperature for AWS Bedrock must be between 0 and 1.");
    expect(calls.some((c) => c.method === "PUT")).toBe(false);
  });
});
