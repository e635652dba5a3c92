import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import App from "./App";
import { dailyFor, installFetch, MODELS, SETTINGS, summaryFor } from "./test/fakeApi";

function allRoutes() {
  return installFetch({
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
});
