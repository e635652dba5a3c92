import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import App from "./App";
import { costControlRoutes, dailyFor, installFetch, MODELS, SETTINGS, summaryFor } from "./test/fakeApi";

function allRoutes() {
  return installFetch({
    ...costControlRoutes(),
    "GET /config.json": () => ({ body: { apiBaseUrl: "", userId: "test", mode: "local" } }),
    "GET /api/llm-settings/test": () => ({ body: SETTINGS }),
    "GET /api/llm-models": () => ({ body: MODELS }),
    "GET /api/llm-usage/test/summary": () => ({ body: summaryFor(1) }),
    "GET /api/llm-usage/test/daily": () => ({ body: dailyFor(30) }),
  });
}

describe("App", () => {
  it("navigates between the two settings pages", async () => {
    const user = userEvent.setup();
    allRoutes();
    render(<App />);
    const nav = await screen.findByRole("navigation", { name: "Settings" });
    expect(await screen.findByRole("heading", { level: 1, name: "LLM Usage Analytics" })).toBeInTheDocument();

    await user.click(screen.getByRole("link", { name: "LLM Configuration" }));
    expect(await screen.findByRole("heading", { level: 1, name: "LLM Configuration" })).toBeInTheDocument();
    expect(window.location.pathname).toBe("/settings/llm");
    expect(screen.getByRole("link", { name: "LLM Configuration" })).toHaveAttribute("aria-current", "page");
    expect(nav).toBeInTheDocument();

    await user.click(screen.getByRole("link", { name: "Usage Analytics" }));
    expect(await screen.findByRole("heading", { level: 1, name: "LLM Usage Analytics" })).toBeInTheDocument();
    expect(window.location.pathname).toBe("/settings/usage");
  });

  it("toggles dark mode and remembers only the choice", async () => {
    const user = userEvent.setup();
    allRoutes();
    render(<App />);
    const toggle = await screen.findByRole("button", { name: "Switch to dark mode" });
    await user.click(toggle);
    expect(document.documentElement).toHaveClass("dark");
    expect(window.localStorage.getItem("llmtally.theme")).toBe("dark");
    await user.click(screen.getByRole("button", { name: "Switch to light mode" }));
    expect(document.documentElement).not.toHaveClass("dark");
    expect(Object.keys(window.localStorage)).toEqual(["llmtally.theme"]);
  });

  it("follows the system preference until the user chooses", async () => {
    const original = window.matchMedia;
    window.matchMedia = ((query: string) => ({ ...original(query), matches: query.includes("dark") })) as typeof window.matchMedia;
    try {
      allRoutes();
      render(<App />);
      expect(await screen.findByRole("button", { name: "Switch to light mode" })).toBeInTheDocument();
      expect(document.documentElement).toHaveClass("dark");
    } finally {
      window.matchMedia = original;
    }
  });

  it("says why when the runtime config cannot be loaded", async () => {
    installFetch({});
    render(<App />);
    expect(await screen.findByRole("alert")).toHaveTextContent("Could not load /config.json (HTTP 404)");
  });

  it("deployed: signs in with Cognito, shows the user and sends the token on every request", async () => {
    const sub = "8f1c2a9e-user";
    window.sessionStorage.setItem(
      "llmtally.session",
      JSON.stringify({ accessToken: "header.payload.sig", sub, email: "ada@example.com", expiresAt: Date.now() + 3.6e6 }),
    );
    const { fetchMock } = installFetch({
      "GET /config.json": () => ({
        body: {
          apiBaseUrl: "https://api.example.com",
          mode: "aws",
          auth: { type: "cognito", domain: "https://x.auth.us-east-1.amazoncognito.com", clientId: "c1" },
        },
      }),
      [`GET /api/llm-settings/${sub}`]: () => ({ body: SETTINGS }),
      "GET /api/llm-models": () => ({ body: MODELS }),
      [`GET /api/llm-usage/${sub}/summary`]: () => ({ body: summaryFor(1) }),
      [`GET /api/llm-usage/${sub}/daily`]: () => ({ body: dailyFor(30) }),
    });
    render(<App />);
    expect(await screen.findByRole("heading", { level: 1, name: "LLM Usage Analytics" })).toBeInTheDocument();
    expect(screen.getByTitle("Signed-in user")).toHaveTextContent("ada@example.com");
    expect(screen.getByRole("button", { name: "Sign out" })).toBeInTheDocument();

    // The heading renders before the data: wait for the page to have asked the API.
    await screen.findByTestId("total-cost");
    const apiCalls = fetchMock.mock.calls.filter(([url]) => String(url).startsWith("https://api.example.com/"));
    expect(apiCalls.length).toBeGreaterThan(0);
    for (const [, init] of apiCalls) {
      expect((init?.headers as Record<string, string>).Authorization).toBe("Bearer header.payload.sig");
    }
    const configCall = fetchMock.mock.calls.find(([url]) => String(url) === "/config.json");
    expect((configCall?.[1]?.headers as Record<string, string>).Authorization).toBeUndefined();
  });

  it("local: no sign-in and no Authorization header", async () => {
    const { fetchMock } = allRoutes();
    render(<App />);
    expect(await screen.findByRole("heading", { level: 1, name: "LLM Usage Analytics" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Sign out" })).toBeNull();
    for (const [, init] of fetchMock.mock.calls) {
      expect((init?.headers as Record<string, string> | undefined)?.Authorization).toBeUndefined();
    }
  });
});
