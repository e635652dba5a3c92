import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { IngestKeyInfo } from "../api";
import { installFetch } from "../test/fakeApi";
import IngestKeys, { nameProblem } from "./IngestKeys";

const KEY = "llt_abcdefghijklmnop_" + "S".repeat(43);

function info(overrides: Partial<IngestKeyInfo> = {}): IngestKeyInfo {
  return {
    key_id: "abcdefghijklmnop",
    name: "checkout",
    hint: "llt_abcdefghijklmnop_…",
    created_at: "2026-12-01T10:00:00.000Z",
    created_by: "test",
    all_tenants: false,
    last_used_at: null,
    ...overrides,
  };
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("IngestKeys", () => {
  it("creates a key, shows it once, and lists it without the secret", async () => {
    // Given no keys yet
    let stored: IngestKeyInfo[] = [];
    const { calls } = installFetch({
      "GET /api/llm-settings/test/ingest-keys": () => ({ body: { keys: stored, max_keys: 20 } }),
      "POST /api/llm-settings/test/ingest-keys": (_url, body) => {
        stored = [info({ name: (body as { name: string }).name })];
        return { status: 201, body: { ...stored[0], key: KEY } };
      },
    });
    render(<IngestKeys userId="test" />);
    expect(await screen.findByText("No ingest keys yet.")).toBeInTheDocument();

    // When the user names and creates a key
    await userEvent.type(screen.getByLabelText("New key name"), "checkout");
    await userEvent.click(screen.getByRole("button", { name: /create key/i }));

    // Then the key is shown once, and the list shows its hint, never the secret
    expect(await screen.findByTestId("new-ingest-key")).toHaveTextContent(KEY);
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ name: "checkout" });
    const table = await screen.findByRole("table");
    expect(within(table).getByText("llt_abcdefghijklmnop_…")).toBeInTheDocument();
    expect(table).not.toHaveTextContent("S".repeat(43));

    // And after "Done" the key is gone from the page
    await userEvent.click(screen.getByRole("button", { name: "Done" }));
    expect(screen.queryByTestId("new-ingest-key")).toBeNull();
    expect(document.body).not.toHaveTextContent(KEY);
  });

  it("revokes a key after confirmation and shows last use", async () => {
    let stored = [info({ last_used_at: "2026-12-02T08:30:00.000Z" })];
    const { calls } = installFetch({
      "GET /api/llm-settings/test/ingest-keys": () => ({ body: { keys: stored, max_keys: 20 } }),
      "DELETE /api/llm-settings/test/ingest-keys/abcdefghijklmnop": () => {
        stored = [];
        return { body: { key_id: "abcdefghijklmnop", revoked: true } };
      },
    });
    vi.spyOn(window, "confirm").mockReturnValue(true);
    render(<IngestKeys userId="test" />);
    const table = await screen.findByRole("table");
    expect(within(table).queryByText("Never")).toBeNull();

    await userEvent.click(within(table).getByRole("button", { name: "Revoke checkout" }));

    expect(await screen.findByText('Revoked "checkout"')).toBeInTheDocument();
    expect(calls.some((c) => c.method === "DELETE")).toBe(true);
    await waitFor(() => expect(screen.getByText("No ingest keys yet.")).toBeInTheDocument());
  });

  it("refuses a bad name before asking the API, and shows the API's refusal", async () => {
    const { calls } = installFetch({
      "GET /api/llm-settings/test/ingest-keys": () => ({ body: { keys: [], max_keys: 20 } }),
      "POST /api/llm-settings/test/ingest-keys": () => ({ status: 400, body: { error: "at most 20 ingest keys per tenant" } }),
    });
    render(<IngestKeys userId="test" />);
    await screen.findByText("No ingest keys yet.");
    await userEvent.click(screen.getByRole("button", { name: /create key/i }));
    expect(await screen.findByText(/Give the key a name/)).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST")).toBe(false);

    await userEvent.type(screen.getByLabelText("New key name"), "svc");
    await userEvent.click(screen.getByRole("button", { name: /create key/i }));
    expect(await screen.findByText("at most 20 ingest keys per tenant")).toBeInTheDocument();
  });

  it("names are checked like the API checks them", () => {
    expect(nameProblem("checkout service")).toBeNull();
    expect(nameProblem(" ")).not.toBeNull();
    expect(nameProblem("x".repeat(65))).not.toBeNull();
    expect(nameProblem("bad\nname")).not.toBeNull();
  });
});
