/**
 * The dashboard's only way to the backend: the HTTP API (docs/api.md) at the same origin, or at
 * `apiBaseUrl` from /config.json. Nothing here stores, caches or logs a request body: an API key
 * typed by the user travels in exactly one request body and is never kept.
 */

import type { CognitoAuth } from "./auth";

export type Provider = "anthropic" | "openai" | "google" | "bedrock";
export const PROVIDERS: readonly Provider[] = ["anthropic", "openai", "google", "bedrock"];
export const KEYED_PROVIDERS: readonly Provider[] = ["anthropic", "openai", "google"];

export interface RuntimeConfig {
  apiBaseUrl: string;
  /** Locally, the user /config.json names; deployed, the signed-in user's id (the token's `sub`). */
  userId: string;
  mode?: string;
  /** Deployed: sign in through Cognito's hosted UI (src/auth.ts) and send its access token. */
  auth?: CognitoAuth;
  /** What the header shows for the user (their e-mail when signed in). */
  userLabel?: string;
}

export interface Preferences {
  defaultProvider: Provider;
  queryModel: string;
  detectionModel: string;
  maxTokens: number;
  temperature: number;
  enableCaching: boolean;
  trackUsage: boolean;
}

export type HasApiKeys = Record<Provider, boolean>;

export interface SettingsResponse {
  preferences: Preferences;
  hasApiKeys: HasApiKeys;
  message?: string;
}

export interface KeyDeletedResponse {
  provider: Provider;
  deleted: boolean;
  hasApiKeys: HasApiKeys;
}

export interface ConnectionTestResult {
  success: boolean;
  provider: Provider;
  message: string;
  model?: string | null;
  latency_ms?: number | null;
  error?: string | null;
}

export interface CatalogModel {
  id: string;
  name: string;
  status: "current" | "legacy";
  pricing: { input: number | null; output: number | null; cacheRead?: number | null; cacheWrite?: number | null };
  costPreviewUsd: number | null;
  priceSource: "catalog" | "override" | "unpriced";
}

export interface CatalogProvider {
  id: Provider;
  name: string;
  requiresKey: boolean;
  models: CatalogModel[];
}

export interface ModelsResponse {
  providers: CatalogProvider[];
}

export interface Breakdown {
  requests: number;
  tokens: number;
  cost_usd: number;
  billed_cost_usd?: number;
  errors?: number;
  unpriced_requests?: number;
  /** Calls whose provider never reported usage: counted, their tokens and cost are lower bounds. */
  usage_missing?: number;
  provider?: string | null;
}

export interface UsageSummary {
  total_requests: number;
  total_tokens: number;
  total_cost_usd: number;
  avg_cost_per_request_usd?: number;
  input_tokens?: number;
  cache_read_tokens?: number;
  cache_write_tokens?: number;
  output_tokens?: number;
  reasoning_tokens?: number;
  errors?: number;
  unpriced_requests?: number;
  /** Calls whose provider never reported usage (stream closed early or ended without it). */
  usage_missing?: number;
  avg_latency_ms?: number;
  /** Calls answered from the response cache (cost nothing), and what they would have cost. */
  cache_hits?: number;
  saved_cost_usd?: number;
  timezone?: string;
  start?: string;
  end?: string;
  by_provider: Record<string, Breakdown>;
  by_operation: Record<string, Breakdown>;
  by_model: Record<string, Breakdown>;
}

export interface DailyRow {
  date: string;
  requests: number;
  tokens: number;
  cost_usd: number;
  errors?: number;
  unpriced_requests?: number;
  usage_missing?: number;
}

/** One raw usage entry (GET /api/llm-usage/{userId}); money in USD. */
export interface UsageEntry {
  timestamp: string;
  event_id: string;
  request_id?: string | null;
  provider: Provider;
  model: string;
  operation_type: string;
  status: "ok" | "error";
  error_type?: string | null;
  input_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
  latency_ms: number;
  cost_usd: number;
  cost_source: "catalog" | "override" | "reported" | "unpriced";
  /** Attribution dimensions the producer sent ({} when none). */
  tags?: Record<string, string>;
  /** "missing": the provider never reported this call's usage; tokens and cost are lower bounds. */
  usage_source?: "reported" | "missing";
  cache_hit?: boolean;
}

export interface EntriesPage {
  entries: UsageEntry[];
  count: number;
  next_cursor: string | null;
}

/** An error the API answered (4xx/5xx, with its message), or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly details: { loc: (string | number)[]; msg: string }[];

  constructor(status: number, message: string, details: { loc: (string | number)[]; msg: string }[] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.details = details;
  }
}

let baseUrl = "";

/** Set once from /config.json (empty: the API is at this page's origin). */
export function setApiBaseUrl(url: string): void {
  baseUrl = url.replace(/\/+$/, "");
}

export async function loadRuntimeConfig(): Promise<RuntimeConfig> {
  const response = await fetch("/config.json", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(response.status, `Could not load /config.json (HTTP ${response.status})`);
  const config = (await response.json()) as Partial<RuntimeConfig>;
  if (config.auth) {
    if (config.auth.type !== "cognito" || !config.auth.domain || !config.auth.clientId) {
      throw new ApiError(500, "/config.json: auth needs type cognito, a domain and a clientId");
    }
    return { apiBaseUrl: config.apiBaseUrl ?? "", userId: "", mode: config.mode, auth: config.auth };
  }
  if (!config.userId) throw new ApiError(500, "/config.json names no userId");
  return { apiBaseUrl: config.apiBaseUrl ?? "", userId: config.userId, mode: config.mode };
}

let bearer: (() => string | null) | null = null;
let onUnauthorized: (() => void) | null = null;

/** Deployed: every request carries the signed-in user's access token; a 401 starts a new sign-in. */
export function setAuthorization(token: (() => string | null) | null, unauthorized: (() => void) | null): void {
  bearer = token;
  onUnauthorized = unauthorized;
}

function offlineMessage(): string {
  return typeof navigator !== "undefined" && navigator.onLine === false
    ? "You are offline: check your network connection and try again."
    : "Could not reach the API: check your network connection and try again.";
}

async function send(path: string, init: RequestInit & { accept?: string } = {}): Promise<Response> {
  const { accept = "application/json", ...rest } = init;
  const token = bearer?.() ?? null;
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      ...rest,
      headers: {
        Accept: accept,
        ...(rest.body ? { "Content-Type": "application/json" } : {}),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, offlineMessage());
  }
  if (response.status === 401 && onUnauthorized) onUnauthorized();
  if (!response.ok) {
    let message = `The API answered HTTP ${response.status}`;
    let details: { loc: (string | number)[]; msg: string }[] = [];
    try {
      const body = (await response.json()) as {
        error?: string | { message?: string };
        message?: string;
        details?: typeof details;
      };
      // `{"error": "…"}` (docs/api.md) or `{"error": {"message": "…"}}`; never show an object.
      const said = typeof body.error === "string" ? body.error : body.error?.message;
      message = said ?? body.message ?? message;
      details = body.details ?? [];
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 429) {
      const retry = response.headers.get("Retry-After");
      if (retry) message = `${message} (try again in ${retry} s)`;
    }
    throw new ApiError(response.status, message, details);
  }
  return response;
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await send(path, init)).json()) as T;
}

const user = (userId: string) => encodeURIComponent(userId);

export function getSettings(userId: string): Promise<SettingsResponse> {
  return json(`/api/llm-settings/${user(userId)}`);
}

export function saveSettings(
  userId: string,
  preferences: Preferences,
  apiKeys: Partial<Record<Provider, string>>,
): Promise<SettingsResponse> {
  const body: { preferences: Preferences; apiKeys?: Partial<Record<Provider, string>> } = { preferences };
  if (Object.keys(apiKeys).length > 0) body.apiKeys = apiKeys;
  return json(`/api/llm-settings/${user(userId)}`, { method: "PUT", body: JSON.stringify(body) });
}

export function deleteKey(userId: string, provider: Provider): Promise<KeyDeletedResponse> {
  return json(`/api/llm-settings/${user(userId)}/keys/${provider}`, { method: "DELETE" });
}

export function testConnection(
  userId: string,
  provider: Provider,
  options: { apiKey?: string; model?: string } = {},
): Promise<ConnectionTestResult> {
  const body: Record<string, string> = { provider };
  if (options.apiKey) body.apiKey = options.apiKey;
  if (options.model) body.model = options.model;
  return json(`/api/llm-settings/${user(userId)}/test`, { method: "POST", body: JSON.stringify(body) });
}

export function getModels(): Promise<ModelsResponse> {
  return json("/api/llm-models");
}

export interface Period {
  /** Inclusive local days, YYYY-MM-DD. */
  start: string;
  end: string;
  days: number;
  tz: string;
}

/** One `where` filter (`tag:customer` = `acme`): the analytics page's filter chip. */
export interface Where {
  /** provider, model, operation or tag:<key> */
  dimension: string;
  value: string;
}

/** `tag:customer:acme`, as the API's `where` parameter reads it. */
export function whereParam(where: Where): string {
  return `${where.dimension}:${where.value}`;
}

/** `customer: acme` (a tag) or `model: gpt-5`: what the chip shows. */
export function whereLabel(where: Where): string {
  return `${where.dimension.replace(/^tag:/, "")}: ${where.value}`;
}

export function getSummary(userId: string, period: Period, where: Where | null = null): Promise<UsageSummary> {
  const query = new URLSearchParams({ start: period.start, end: period.end, tz: period.tz });
  if (where) query.set("where", whereParam(where));
  return json(`/api/llm-usage/${user(userId)}/summary?${query}`);
}

/** One row of a breakdown (GET /api/llm-usage/{userId}/breakdown); money in USD. */
export interface BreakdownRow {
  value: string;
  provider?: string | null;
  requests: number;
  input_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
  cost_usd: number;
  billed_cost_usd: number;
  share_percent: number;
  errors: number;
  unpriced_requests: number;
  usage_missing: number;
}

export interface BreakdownResponse {
  user_id: string;
  timezone: string;
  start: string;
  end: string;
  by: string;
  where: Where | null;
  rows: BreakdownRow[];
  /** The rows past `limit`, summed (value "(rest)"). */
  other: BreakdownRow | null;
  /** Tag dimensions: distinct values folded into "(other)" in the range's months. */
  folded_values: number;
  total: BreakdownRow;
  items_read: number;
  queries: number;
}

export interface TagKey {
  key: string;
  values: number;
  folded_values: number;
}

export interface TagKeysResponse {
  user_id: string;
  period: string;
  keys: TagKey[];
}

export function getBreakdown(
  userId: string,
  period: Period,
  by: string,
  options: { where?: Where | null; limit?: number } = {},
): Promise<BreakdownResponse> {
  const query = new URLSearchParams({ by, start: period.start, end: period.end, tz: period.tz });
  if (options.where) query.set("where", whereParam(options.where));
  if (options.limit) query.set("limit", String(options.limit));
  return json(`/api/llm-usage/${user(userId)}/breakdown?${query}`);
}

export function getTagKeys(userId: string): Promise<TagKeysResponse> {
  return json(`/api/llm-usage/${user(userId)}/tags`);
}

export async function getDaily(userId: string, period: Period, where: Where | null = null): Promise<DailyRow[]> {
  const query = new URLSearchParams({ days: String(period.days), tz: period.tz });
  if (where) query.set("where", whereParam(where));
  const body = await json<DailyRow[] | { daily_usage?: DailyRow[]; days?: DailyRow[] }>(
    `/api/llm-usage/${user(userId)}/daily?${query}`,
  );
  if (Array.isArray(body)) return body;
  return body.daily_usage ?? body.days ?? [];
}

/** One page of the period's raw entries, newest first; pass `next_cursor` back for the next. */
export function getEntries(
  userId: string,
  period: Period,
  options: { limit?: number; cursor?: string | null; where?: Where | null } = {},
): Promise<EntriesPage> {
  const query = new URLSearchParams({
    start: period.start,
    end: period.end,
    tz: period.tz,
    limit: String(options.limit ?? 25),
  });
  if (options.where) query.set("where", whereParam(options.where));
  if (options.cursor) query.set("cursor", options.cursor);
  return json(`/api/llm-usage/${user(userId)}?${query}`);
}

/** Most CSV pages fetched for one export (a page holds up to 10,000 rows or 4 MiB; docs/api.md). */
export const CSV_MAX_PAGES = 50;

/**
 * The period's raw entries as CSV (every ledger column, as the API renders them). The API pages a
 * large export with the `X-Next-Cursor` header; the pages are joined under one header line.
 */
export async function getEntriesCsv(
  userId: string,
  period: Period,
  where: Where | null = null,
): Promise<{ csv: string; complete: boolean }> {
  const parts: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < CSV_MAX_PAGES; page += 1) {
    const query = new URLSearchParams({ start: period.start, end: period.end, tz: period.tz });
    if (where) query.set("where", whereParam(where));
    if (cursor) query.set("cursor", cursor);
    // The export's own path (its own throttle when deployed; `?format=csv` would be redirected here).
    const response = await send(`/api/llm-usage/${user(userId)}/export?${query}`, { accept: "text/csv" });
    const text = await response.text();
    parts.push(page === 0 ? text : text.slice(text.indexOf("\n") + 1));
    cursor = response.headers.get("X-Next-Cursor");
    if (!cursor) return { csv: parts.join(""), complete: true };
  }
  return { csv: parts.join(""), complete: false };
}

// ---- Cost control (issue #9): budgets and alerts (camelCase, settings area) ----

export type BudgetAction = "notify" | "block" | "switch";
export const BUDGET_ACTIONS: readonly BudgetAction[] = ["notify", "block", "switch"];

export interface Budget {
  /** USD, an exact JSON number: displayed, never used for arithmetic here. */
  monthlyLimitUsd: number;
  timezone: string;
  thresholds: number[];
  action: BudgetAction;
  switchTo: { provider: Provider; model: string } | null;
  strict: boolean;
  updatedAt?: string;
}

export interface BudgetStatus {
  period: string;
  periodStart: string;
  periodEnd: string;
  spentUsd: number;
  reservedUsd: number;
  remainingUsd: number;
  percentUsed: number;
  state: "ok" | "warning" | "exhausted";
  crossedThresholds: number[];
}

export interface BudgetResponse {
  budget: Budget | null;
  /** Whether a Slack webhook is stored; the URL itself is write-only and never comes back. */
  hasSlackWebhook: boolean;
  status: BudgetStatus | null;
  /** Where this user's own alert e-mails go; SNS asks the address to confirm first. */
  alertEmail?: AlertEmail | null;
  /** Whether this deployment can e-mail users their alerts. */
  alertEmailAvailable?: boolean;
}

export interface AlertEmail {
  address: string;
  status: "pending_confirmation" | "confirmed" | "unknown";
  subscribedAt: string;
}

/** A budget on the calls tagged with one value (customer c-42 at $50 a month). */
export interface TagBudget {
  tagKey: string;
  tagValue: string;
  budget: Budget;
  status: BudgetStatus;
}

export interface TagBudgetsResponse {
  budgets: TagBudget[];
  maxTagBudgets: number;
}

export interface TagBudgetInput {
  tagKey: string;
  tagValue: string;
  monthlyLimitUsd: string;
  timezone: string;
  thresholds?: number[];
  action: BudgetAction;
  switchTo?: { provider: Provider; model: string };
  /** Reserve each tagged call's worst case before it runs (block or switch only). */
  strict?: boolean;
}

export interface BudgetInput {
  /** Sent as the typed decimal string, so the server parses it exactly. */
  monthlyLimitUsd: string;
  timezone: string;
  thresholds?: number[];
  action: BudgetAction;
  switchTo?: { provider: Provider; model: string };
  strict?: boolean;
  slackWebhookUrl?: string;
  removeSlackWebhook?: boolean;
  alertEmail?: string;
  removeAlertEmail?: boolean;
}

export interface BudgetAlert {
  alertId: string;
  period: string;
  thresholdPercent: number;
  limitUsd: number;
  spentUsd: number;
  percentUsed: number;
  action: BudgetAction;
  crossedAt: string;
  /** A tag budget's alert: its tag. */
  tagKey?: string | null;
  tagValue?: string | null;
}

export function getBudget(userId: string): Promise<BudgetResponse> {
  return json(`/api/llm-settings/${user(userId)}/budget`);
}

/** The one request that may carry a Slack webhook URL; the page clears its field afterwards. */
export function saveBudget(userId: string, input: BudgetInput): Promise<BudgetResponse> {
  return json(`/api/llm-settings/${user(userId)}/budget`, { method: "PUT", body: JSON.stringify(input) });
}

export function deleteBudget(userId: string): Promise<{ deleted: boolean }> {
  return json(`/api/llm-settings/${user(userId)}/budget`, { method: "DELETE" });
}

export async function getBudgetAlerts(userId: string, limit = 20): Promise<BudgetAlert[]> {
  const query = new URLSearchParams({ limit: String(limit) });
  const body = await json<{ alerts?: BudgetAlert[] }>(`/api/llm-settings/${user(userId)}/budget/alerts?${query}`);
  return body.alerts ?? [];
}

/**
 * One tag value's budget alerts, newest first: the tag budgets' alerts (`…/budget/tags/alerts`, at
 * most 200, every tag value's) kept to `key`=`value`, at most `limit`.
 */
export async function getTagBudgetAlerts(userId: string, key: string, value: string, limit = 20): Promise<BudgetAlert[]> {
  const query = new URLSearchParams({ limit: "200" });
  const body = await json<{ alerts?: BudgetAlert[] }>(`/api/llm-settings/${user(userId)}/budget/tags/alerts?${query}`);
  return (body.alerts ?? []).filter((a) => a.tagKey === key && a.tagValue === value).slice(0, limit);
}

export function getTagBudgets(userId: string): Promise<TagBudgetsResponse> {
  return json(`/api/llm-settings/${user(userId)}/budget/tags`);
}

export function saveTagBudget(userId: string, input: TagBudgetInput): Promise<TagBudget> {
  return json(`/api/llm-settings/${user(userId)}/budget/tags`, { method: "PUT", body: JSON.stringify(input) });
}

export function deleteTagBudget(userId: string, key: string, value: string): Promise<{ deleted: boolean }> {
  const query = new URLSearchParams({ key, value });
  return json(`/api/llm-settings/${user(userId)}/budget/tag?${query}`, { method: "DELETE" });
}

// ---- Cost insights (snake_case like the summary, usage area) ----

/** What an insight under the filter chip covers (null / [] without one; docs/dashboard.md). */
export interface InsightScope {
  where?: Where | null;
  /** Under a tag value: UTC months it was past the tag's bound (its calls then are in (other)). */
  folded_months?: string[];
  /** Why a figure under the filter is partial or means something else. */
  note?: string | null;
}

export interface Forecast {
  user_id: string;
  timezone: string;
  period: string;
  period_start: string;
  period_end: string;
  days_elapsed: number;
  days_in_period: number;
  month_to_date_usd: number;
  forecast_usd: number;
  low_usd: number;
  high_usd: number;
  method: string;
}

export type ScopedForecast = Forecast & InsightScope;

export interface Anomaly {
  date: string;
  cost_usd: number;
  expected_usd: number;
  score: number;
  direction: "high" | "low";
}

export interface AnomaliesResponse extends InsightScope {
  user_id: string;
  timezone: string;
  days: number;
  method: string;
  anomalies: Anomaly[];
}

export interface RecommendationCandidate {
  provider: string;
  model: string;
  cost_usd: number;
  saving_usd: number;
  saving_percent: number;
}

export interface OperationRecommendation {
  operation_type: string;
  requests: number;
  cost_usd: number;
  input_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  cache_hit_rate: number;
  candidates: RecommendationCandidate[];
}

export interface RecommendationsResponse extends InsightScope {
  user_id: string;
  days: number;
  operations: OperationRecommendation[];
}

export function getForecast(userId: string, tz: string, where: Where | null = null): Promise<ScopedForecast> {
  const query = new URLSearchParams({ tz });
  if (where) query.set("where", whereParam(where));
  return json(`/api/llm-usage/${user(userId)}/forecast?${query}`);
}

export function getAnomalies(userId: string, period: Period, where: Where | null = null): Promise<AnomaliesResponse> {
  const query = new URLSearchParams({ days: String(period.days), tz: period.tz });
  if (where) query.set("where", whereParam(where));
  return json(`/api/llm-usage/${user(userId)}/anomalies?${query}`);
}

export function getRecommendations(userId: string, days: number, where: Where | null = null): Promise<RecommendationsResponse> {
  const query = new URLSearchParams({ days: String(days) });
  if (where) query.set("where", whereParam(where));
  return json(`/api/llm-usage/${user(userId)}/recommendations?${query}`);
}

// -- reconciliation (docs/reconciliation.md) ------------------------------------------------------

export type TokenKind = "input" | "cache_read" | "cache_write" | "output";
export type ReconciliationCause = "match" | "price" | "unmetered" | "missing_day" | "overmetered";

export interface PriceFeedback {
  kind: TokenKind;
  tokens: number;
  billed_mtok_usd: number;
  metered_mtok_usd: number | null;
  suggested_override: Record<string, unknown> | null;
}

export interface ReconciliationRow {
  date: string;
  provider: Provider;
  model: string;
  billed_tokens: Record<TokenKind, number>;
  billed_cost_usd: number;
  metered_tokens: Record<TokenKind, number>;
  metered_cost_usd: number;
  metered_requests: number;
  drift_usd: number;
  drift_percent: number | null;
  unmetered_usd: number;
  price_drift_usd: number;
  cause: ReconciliationCause;
  provisional: boolean;
  api_key_ids: string[];
  price_feedback: PriceFeedback[];
}

export interface ReconciliationResponse {
  user_id: string;
  start: string;
  end: string;
  rows: ReconciliationRow[];
  totals: {
    billed_cost_usd: number;
    metered_cost_usd: number;
    drift_usd: number;
    drift_percent: number | null;
    unmetered_usd: number;
  };
  alerts: { alert_id: string; date: string; provider: Provider; kind: "drift" | "unmetered"; message: string }[];
  sources: { provider: Provider; last_run_at: string; window_start: string; window_end: string; error: string | null }[];
  /** The filter asked for; `scope` says whether it narrowed the bill (provider) or not (account, with `note`). */
  where?: Where | null;
  scope?: "account" | "provider";
  note?: string | null;
}

/** The last `days` UTC days (today included; at most 93, the API's limit). */
export function getReconciliation(
  userId: string,
  days: number,
  today: Date = new Date(),
  where: Where | null = null,
): Promise<ReconciliationResponse> {
  const end = today.toISOString().slice(0, 10);
  const span = Math.max(1, Math.min(93, days));
  const start = new Date(Date.parse(`${end}T00:00:00Z`) - (span - 1) * 86_400_000).toISOString().slice(0, 10);
  const query = new URLSearchParams({ start, end });
  if (where) query.set("where", whereParam(where));
  return json(`/api/llm-usage/${user(userId)}/reconciliation?${query}`);
}

// -- ingest keys (docs/ingest.md): bearer keys for POST /api/usage-events and the OTLP receiver ----

export interface IngestKeyInfo {
  key_id: string;
  name: string;
  /** The key's public prefix, to recognise it; never the secret. */
  hint: string;
  created_at: string;
  created_by: string;
  all_tenants: boolean;
  last_used_at: string | null;
}

export interface IngestKeysResponse {
  keys: IngestKeyInfo[];
  max_keys: number;
}

/** The create answer: the only time the key itself is shown. */
export interface IngestKeyCreated extends IngestKeyInfo {
  key: string;
}

export function getIngestKeys(userId: string): Promise<IngestKeysResponse> {
  return json(`/api/llm-settings/${user(userId)}/ingest-keys`);
}

export function createIngestKey(userId: string, name: string): Promise<IngestKeyCreated> {
  return json(`/api/llm-settings/${user(userId)}/ingest-keys`, { method: "POST", body: JSON.stringify({ name }) });
}

export function revokeIngestKey(userId: string, keyId: string): Promise<{ key_id: string; revoked: boolean }> {
  return json(`/api/llm-settings/${user(userId)}/ingest-keys/${encodeURIComponent(keyId)}`, { method: "DELETE" });
}

// -- billing keys (docs/reconciliation.md): provider admin keys the daily reconciliation reads the bill with ----

/** The providers whose bill is read with a stored admin key (Bedrock's comes from Cost Explorer). */
export const BILLING_PROVIDERS = ["openai", "anthropic"] as const;
export type BillingProvider = (typeof BILLING_PROVIDERS)[number];

/** Booleans only: an admin key is never returned. */
export interface BillingKeysResponse {
  hasAdminKeys: Record<BillingProvider, boolean>;
  bedrock: "deployment";
}

export function getBillingKeys(userId: string): Promise<BillingKeysResponse> {
  return json(`/api/llm-settings/${user(userId)}/billing-keys`);
}

/** Stores (or replaces) one provider's admin key; write-only, the answer says only that one is stored. */
export function putBillingKey(userId: string, provider: BillingProvider, adminKey: string): Promise<BillingKeysResponse> {
  return json(`/api/llm-settings/${user(userId)}/billing-keys`, { method: "PUT", body: JSON.stringify({ provider, adminKey }) });
}

export function deleteBillingKey(userId: string, provider: BillingProvider): Promise<BillingKeysResponse & { deleted: boolean }> {
  return json(`/api/llm-settings/${user(userId)}/billing-keys/${provider}`, { method: "DELETE" });
}
