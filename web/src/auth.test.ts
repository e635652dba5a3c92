import { afterEach, describe, expect, it, vi } from "vitest";
import { codeChallenge, jwtClaims, redirectToSignIn, signIn, signOut, SignInError, storedSession, type CognitoAuth } from "./auth";

const AUTH: CognitoAuth = {
  type: "cognito",
  domain: "https://llmtally-test.auth.eu-west-1.amazoncognito.com/",
  clientId: "4tq1client",
};

function fakeLocation(path = "/settings/usage", search = "") {
  return { origin: "https://d111.cloudfront.net", pathname: path, search, hash: "", assign: vi.fn() } as unknown as Location & {
    assign: ReturnType<typeof vi.fn>;
  };
}

const b64url = (value: object) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(value))))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const jwt = (claims: object) => `${b64url({ alg: "RS256", kid: "k1" })}.${b64url(claims)}.c2lnbmF0dXJl`;

afterEach(() => {
  window.sessionStorage.clear();
});

describe("sign-in with Cognito's hosted UI (authorization code + PKCE)", () => {
  it("sends the browser to the hosted UI with an S256 challenge of a verifier it keeps", async () => {
    const location = fakeLocation("/settings/llm", "?tab=keys");
    await redirectToSignIn(AUTH, location);

    const target = new URL(location.assign.mock.calls[0]![0] as string);
    expect(target.origin + target.pathname).toBe("https://llmtally-test.auth.eu-west-1.amazoncognito.com/oauth2/authorize");
    const pending = JSON.parse(window.sessionStorage.getItem("llmtally.signin")!) as Record<string, string>;
    expect(Object.fromEntries(target.searchParams)).toEqual({
      response_type: "code",
      client_id: "4tq1client",
      redirect_uri: "https://d111.cloudfront.net/",
      scope: "openid email",
      state: pending.state,
      code_challenge: await codeChallenge(pending.verifier!),
      code_challenge_method: "S256",
    });
    expect(pending.verifier!.length).toBeGreaterThanOrEqual(43); // RFC 7636: 43–128 characters
    expect(pending.returnTo).toBe("/settings/llm?tab=keys");
  });

  it("computes the RFC 7636 example challenge", async () => {
    expect(await codeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).toBe(
      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
  });

  it("exchanges the code it comes back with, keeps the session and returns to the page", async () => {
    await redirectToSignIn(AUTH, fakeLocation("/settings/llm"));
    const pending = JSON.parse(window.sessionStorage.getItem("llmtally.signin")!) as Record<string, string>;
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const fetchMock = vi.fn(async () =>
      Response.json({
        access_token: jwt({ sub: "8f1c-user", exp, client_id: "4tq1client" }),
        id_token: jwt({ sub: "8f1c-user", email: "ada@example.com" }),
        expires_in: 3600,
        token_type: "Bearer",
      }),
    );
    vi.stubGlobal("fetch", fetchMock);
    const back = fakeLocation("/", `?code=the-code&state=${pending.state}`);

    const session = await signIn(AUTH, back);

    expect(session).toMatchObject({ sub: "8f1c-user", email: "ada@example.com", expiresAt: exp * 1000 });
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("https://llmtally-test.auth.eu-west-1.amazoncognito.com/oauth2/token");
    expect(Object.fromEntries(new URLSearchParams(init.body as string))).toEqual({
      grant_type: "authorization_code",
      client_id: "4tq1client",
      code: "the-code",
      redirect_uri: "https://d111.cloudfront.net/",
      code_verifier: pending.verifier,
    });
    expect(storedSession()?.sub).toBe("8f1c-user");
    expect(window.location.pathname).toBe("/settings/llm");
    expect(window.sessionStorage.getItem("llmtally.signin")).toBeNull();
    expect(back.assign).not.toHaveBeenCalled();
  });

  it("refuses a code whose state this tab did not start, without calling the token endpoint", async () => {
    await redirectToSignIn(AUTH, fakeLocation());
    const fetchMock = vi.fn();
    vi.stubGlobal("fetch", fetchMock);
    await expect(signIn(AUTH, fakeLocation("/", "?code=stolen&state=forged"))).rejects.toThrow(SignInError);
    expect(fetchMock).not.toHaveBeenCalled();
    expect(storedSession()).toBeNull();
  });

  it("says why when the hosted UI or the token endpoint refuses", async () => {
    await expect(signIn(AUTH, fakeLocation("/", "?error=access_denied&error_description=User+is+disabled"))).rejects.toThrow(
      "Sign-in was refused: User is disabled",
    );
    await redirectToSignIn(AUTH, fakeLocation());
    const pending = JSON.parse(window.sessionStorage.getItem("llmtally.signin")!) as Record<string, string>;
    vi.stubGlobal("fetch", vi.fn(async () => Response.json({ error: "invalid_grant" }, { status: 400 })));
    await expect(signIn(AUTH, fakeLocation("/", `?code=used-code&state=${pending.state}`))).rejects.toThrow(
      "Sign-in failed (invalid_grant)",
    );
  });

  it("reuses a live session and signs in again when it is about to expire", async () => {
    const live = { accessToken: "a.b.c", sub: "u1", expiresAt: Date.now() + 30 * 60_000 };
    window.sessionStorage.setItem("llmtally.session", JSON.stringify(live));
    const here = fakeLocation();
    expect(await signIn(AUTH, here)).toEqual(live);
    expect(here.assign).not.toHaveBeenCalled();

    window.sessionStorage.setItem("llmtally.session", JSON.stringify({ ...live, expiresAt: Date.now() + 30_000 }));
    expect(await signIn(AUTH, here)).toBeNull();
    expect(here.assign).toHaveBeenCalledOnce();
    expect(storedSession()).toBeNull();
  });

  it("signs out here and at the hosted UI", () => {
    window.sessionStorage.setItem("llmtally.session", JSON.stringify({ accessToken: "a.b.c", sub: "u1", expiresAt: Date.now() + 3.6e6 }));
    const here = fakeLocation();
    signOut(AUTH, here);
    expect(storedSession()).toBeNull();
    expect(here.assign).toHaveBeenCalledWith(
      "https://llmtally-test.auth.eu-west-1.amazoncognito.com/logout?client_id=4tq1client&logout_uri=https%3A%2F%2Fd111.cloudfront.net%2F",
    );
  });

  it("reads a token's claims (base64url, UTF-8)", () => {
    expect(jwtClaims(jwt({ sub: "ü-1", exp: 5 }))).toEqual({ sub: "ü-1", exp: 5 });
    expect(() => jwtClaims("not-a-jwt")).toThrow(SignInError);
  });
});
