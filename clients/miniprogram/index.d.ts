// Type declarations for @formid-ledger/miniprogram (src/index.mjs and its
// CommonJS build dist/index.cjs). Written by hand; keep them in step with
// the source.

/** The formId WeChat's developer tools hand out; it can never be sent. */
export declare const MOCK_FORM_ID: 'the formId is a mock one';

/** Most items the service takes in one request (100). */
export declare const MAX_BATCH: number;

/** True for ids that are never real: the dev-tools string, `undefined`,
 * `null`, empty, a failed `requestFormId`, or anything but a string. */
export declare function isMockFormId(id: unknown): boolean;

export interface Backoff {
  /** First retry step in ms (default 1000). */
  baseMs: number;
  /** Largest step in ms (default 30000). */
  maxMs: number;
}

/** Delay before retry `attempt` (0-based): `c = min(maxMs, baseMs * 2^attempt)`
 * jittered into `[c/2, c)` by `random()`. */
export declare function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number;

/** Why `onError` was called.
 * - `rejected`: the service refused a batch as bad (400, 413, 422); its items were dropped.
 * - `unavailable`: no answer, 408, 429 or 5xx after every retry; the items stay queued.
 * - `unauthorized`: 401 again after a new login; the items stay queued.
 * - `refused`: another 4xx (403, 404...); not retried now, the items stay queued.
 * - `login`: wx.login or POST /v1/sessions failed; the items stay queued.
 * - `storage`: the storage refused a write. */
export type LedgerErrorKind = 'rejected' | 'unavailable' | 'unauthorized' | 'refused' | 'login' | 'storage';

export declare class LedgerError extends Error {
  constructor(kind: LedgerErrorKind, message: string, extra?: object);
  readonly name: 'LedgerError';
  readonly kind: LedgerErrorKind;
  /** HTTP status of the last answer; 0 when there was none. */
  readonly status: number;
  /** The service's error code (`invalid_request`, `unauthorized`...), if it sent one. */
  readonly code: string | null;
  /** True when the items involved left the queue for good (`rejected`). */
  readonly dropped: boolean;
  /** The formIds of the batch, or the subscribe answer, when a post failed. */
  readonly items?: string[] | SubscribeAnswer;
}

/** The subset of the mini-program `wx` object the client uses. */
export interface WxLike {
  request(options: {
    url: string;
    method: 'POST' | 'GET';
    data?: unknown;
    header?: Record<string, string>;
    timeout?: number;
    success(res: { statusCode: number; data: any; header?: Record<string, string> }): void;
    fail(err: { errMsg: string }): void;
  }): unknown;
  login(options: { success(res: { code: string }): void; fail(err: { errMsg: string }): void }): unknown;
  requestSubscribeMessage?(options: {
    tmplIds: string[];
    success(res: SubscribeAnswer): void;
    fail(err: { errMsg: string; errCode?: number }): void;
  }): unknown;
  getStorageSync?(key: string): any;
  setStorageSync?(key: string, value: any): void;
  removeStorageSync?(key: string): void;
  onAppHide?(handler: () => void): void;
  offAppHide?(handler: () => void): void;
}

/** Synchronous key-value storage for the queue and the session. */
export interface Storage {
  /** The stored value, or undefined. */
  get(key: string): any;
  set(key: string, value: any): void;
  /** Optional; without it a removal is `set(key, undefined)`. */
  remove?(key: string): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): any;
  clearTimeout(id: any): void;
  setInterval(fn: () => void, ms: number): any;
  clearInterval(id: any): void;
}

export interface ClientOptions {
  /** Where formid-ledger is served, e.g. `https://ledger.example.com`. */
  baseUrl: string;
  /** The mini-program's `wx` (or a fake of it). */
  wx: WxLike;
  /** Default: wx.getStorageSync/setStorageSync/removeStorageSync, or memory. */
  storage?: Storage;
  /** Prefix of the storage keys (default `formid-ledger`: `:queue`, `:session`). */
  storageKey?: string;
  /** formIds per request, 1 to 100 (default 100); a full batch flushes at once. */
  batchSize?: number;
  /** Flush this often while anything is queued; 0 turns it off (default 10000). */
  flushIntervalMs?: number;
  /** Retries of one request after transient failures (default 5). */
  maxRetries?: number;
  /** Retry steps (default `{ baseMs: 1000, maxMs: 30000 }`). */
  backoff?: Partial<Backoff>;
  /** wx.request's timeout in ms (default 10000). */
  requestTimeoutMs?: number;
  /** Called for failed posts and logins; never throws into the client. */
  onError?(error: LedgerError): void;
  /** Injectable for tests. */
  timers?: Partial<Timers>;
  random?(): number;
  now?(): number;
}

export interface Session {
  token: string;
  openid: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface Pending {
  formIds: number;
  subscriptions: number;
}

export interface FlushResult {
  /** False when something stayed queued because of a failure (or after destroy()). */
  ok: boolean;
  /** Items the service acknowledged in this flush. */
  acknowledged: number;
  /** Items dropped because the service refused their batch. */
  dropped: number;
  /** What is still queued. */
  pending: Pending;
}

/** What `wx.requestSubscribeMessage` answers: `errMsg` and one entry per template. */
export interface SubscribeAnswer {
  errMsg?: string;
  [templateId: string]: 'accept' | 'reject' | 'ban' | 'filter' | string | undefined;
}

/** POST /v1/subscriptions's answer. */
export interface SubscriptionsResponse {
  granted: Record<string, number>;
  ignored: Array<{ template_id: string; result: string }>;
  source: 'client' | 'push';
}

export interface SubscribeResult {
  /** What the user answered, as WeChat returned it. */
  answer: SubscribeAnswer;
  /** The service's answer, or null when nothing was acknowledged (yet). */
  service: SubscriptionsResponse | null;
  /** True when the answer is still queued (it is retried with the next flushes). */
  queued: boolean;
  /** Set when the service refused the answer (it was dropped). */
  error?: LedgerError;
}

export interface Client {
  /** The current session, logging in (wx.login → POST /v1/sessions) when
   * there is none or it is about to expire. */
  login(): Promise<Session>;
  /** Queues the formId of a `<form report-submit>` submit event (or a bare
   * id). False when it was a mock id, already queued, or after destroy(). */
  collectFormId(event: { detail?: { formId?: unknown } } | string | null | undefined): boolean;
  /** Opens the subscribe popup (call it from a tap handler), then posts the
   * answer. Rejects only when the popup fails (wx's error object). */
  requestSubscribe(tmplIds: string[]): Promise<SubscribeResult>;
  /** Posts everything queued; one flush runs at a time. Never rejects. */
  flush(): Promise<FlushResult>;
  pending(): Pending;
  /** Stops the interval and the app-hide handler; what is queued stays in storage. */
  destroy(): void;
}

export declare function createClient(options: ClientOptions): Client;
