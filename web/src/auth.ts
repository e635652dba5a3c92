/**
 * Sign-in for the deployed dashboard: Cognito's hosted UI with the OAuth 2.0 authorization code
 * flow and PKCE (a public client: no secret in the page). Locally (`llmtally local`) there is no
 * sign-in: /config.json names the user and the local API trusts it.
 *
 * Only the access token, its expiry and the user's id (`sub`) are kept, in sessionStorage (gone
 * with the tab); the API's JWT authorizer checks the token on every request. When it expires,
 * the page goes back through the hosted UI, whose own session usually makes that a redirect
 * without a prompt.
 */

export interface CognitoAuth {
  type: "cognito";
  /** The hosted UI's origin, e.g. https://llmtally-123.auth.us-east-1.amazoncognito.com */
  domain: string;
  clientId: string;
  scopes?: string[];
}

export interface Session {
  accessToken: string;
  /** The user's id: the token's `sub`, the `userId` of every API path. */
  sub: string;
  /** For display only (from the ID token). */
  email?: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

interface Pending {
  state: string;
  verifier: string;
  returnTo: string;
}

const SESSION_KEY = "llmtally.session";
const PENDING_KEY = "llmtally.signin";
/** A token this close to its expiry is not used: a request could outlive it. */
const EXPIRY_MARGIN_MS = 60_000;
const DEFAULT_SCOPES = ["openid", "email"];

export class SignInError extends Error {}

/** Code exchanges in flight or done, by code: a code is good for one exchange only. */
const exchanges = new Map<string, Promise<Session>>();

function base64Url(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32): string {
  return base64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

export async function codeChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64Url(new Uint8Array(digest));
}

/** The claims of a JWT, unverified (the API verifies; the page only reads `sub`, `exp`, `email`). */
export function jwtClaims(token: string): Record<string, unknown> {
  const payload = token.split(".")[1];
  if (!payload) throw new SignInError("The sign-in service returned a malformed token");
  const padded = payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "=");
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
}

function redirectUri(location: Location): string {
  return `${location.origin}/`;
}

export function storedSession(now = Date.now()): Session | null {
  const raw = window.sessionStorage.getItem(SESSION_KEY);
  if (!raw) return null;
  try {
    const session = JSON.parse(raw) as Session;
    if (session.accessToken && session.sub && session.expiresAt - EXPIRY_MARGIN_MS > now) return session;
  } catch {
    // unreadable: start again
  }
  window.sessionStorage.removeItem(SESSION_KEY);
  return null;
}

/** Send the browser to the hosted UI; it comes back to this origin with `?code=…&state=…`. */
export async function redirectToSignIn(auth: CognitoAuth, location: Location = window.location): Promise<void> {
  const pending: Pending = {
    state: randomString(16),
    verifier: randomString(48),
    returnTo: `${location.pathname}${location.search}${location.hash}`,
  };
  window.sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: auth.clientId,
    redirect_uri: redirectUri(location),
    scope: (auth.scopes ?? DEFAULT_SCOPES).join(" "),
    state: pending.state,
    code_challenge: await codeChallenge(pending.verifier),
    code_challenge_method: "S256",
  });
  location.assign(`${auth.domain.replace(/\/+$/, "")}/oauth2/authorize?${query.toString()}`);
}

async function exchangeCode(auth: CognitoAuth, code: string, pending: Pending, location: Location): Promise<Session> {
  let response: Response;
  try {
    response = await fetch(`${auth.domain.replace(/\/+$/, "")}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: auth.clientId,
        code,
        redirect_uri: redirectUri(location),
        code_verifier: pending.verifier,
      }).toString(),
    });
  } catch {
    throw new SignInError("Could not reach the sign-in service: check your network connection and try again.");
  }
  if (!response.ok) {
    let reason = `HTTP ${response.status}`;
    try {
      const body = (await response.json()) as { error?: string };
      if (body.error) reason = body.error;
    } catch {
      // not JSON
    }
    throw new SignInError(`Sign-in failed (${reason}). Reload the page to try again.`);
  }
  const tokens = (await response.json()) as { access_token?: string; id_token?: string; expires_in?: number };
  if (!tokens.access_token) throw new SignInError("The sign-in service returned no access token");
  const claims = jwtClaims(tokens.access_token);
  const sub = typeof claims.sub === "string" ? claims.sub : "";
  if (!sub) throw new SignInError("The access token names no user (sub)");
  const exp = typeof claims.exp === "number" ? claims.exp * 1000 : Date.now() + (tokens.expires_in ?? 3600) * 1000;
  let email: string | undefined;
  if (tokens.id_token) {
    const idClaims = jwtClaims(tokens.id_token);
    if (typeof idClaims.email === "string") email = idClaims.email;
  }
  return { accessToken: tokens.access_token, sub, email, expiresAt: exp };
}

/**
 * The signed-in session, finishing a sign-in the hosted UI just sent back; `null` while the
 * browser is being sent to sign in (the page is about to unload).
 */
export async function signIn(auth: CognitoAuth, location: Location = window.location): Promise<Session | null> {
  const params = new URLSearchParams(location.search);
  const error = params.get("error");
  const code = params.get("code");
  const state = params.get("state");
  if (code && exchanges.has(code)) return exchanges.get(code) as Promise<Session>; // React's double effect
  if (error || code) {
    const pendingRaw = window.sessionStorage.getItem(PENDING_KEY);
    window.sessionStorage.removeItem(PENDING_KEY);
    if (error) {
      const description = params.get("error_description");
      throw new SignInError(`Sign-in was refused: ${description ?? error}`);
    }
    const pending = pendingRaw ? (JSON.parse(pendingRaw) as Pending) : null;
    if (!pending || pending.state !== state) {
      throw new SignInError("This sign-in link is not the one this tab started: reload the page to sign in again.");
    }
    const exchange = exchangeCode(auth, code as string, pending, location).then((session) => {
      window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      window.history.replaceState(null, "", pending.returnTo || "/");
      return session;
    });
    exchanges.set(code as string, exchange);
    return exchange;
  }
  const session = storedSession();
  if (session) return session;
  await redirectToSignIn(auth, location);
  return null;
}

/** Forget the session here and end the hosted UI's, coming back to this origin. */
export function signOut(auth: CognitoAuth, location: Location = window.location): void {
  window.sessionStorage.removeItem(SESSION_KEY);
  const query = new URLSearchParams({ client_id: auth.clientId, logout_uri: redirectUri(location) });
  location.assign(`${auth.domain.replace(/\/+$/, "")}/logout?${query.toString()}`);
}
