// Generated from src/index.mjs by build.mjs: edit the source, then run `node build.mjs`.
'use strict';

// The formid-ledger client for mini-program frontends: the user's session
// token (wx.login → POST /v1/sessions), the queue of collected formIds and
// subscribe answers (kept in wx storage until the service acknowledged
// them), and their delivery (batched, one flush at a time, retried with
// capped exponential backoff). It talks HTTP through wx.request only and
// has no dependencies.
//
// Written in a plain subset of ES2017 (no `??`, no `?.`, no imports) so the
// same text runs on old mini-program runtimes and build.mjs can turn it
// into CommonJS by rewriting the `export` keywords.

/** The formId WeChat's developer tools hand out; it can never be sent. */
const MOCK_FORM_ID = 'the formId is a mock one';

/** Most items the service takes in one request. */
const MAX_BATCH = 100;

// A formId is good for 7 days after the submit; older ones are not worth
// posting (the service would take them as collected now).
const FORM_ID_TTL_MS = 7 * 24 * 3600 * 1000;
// A session token this close to its expiry is replaced before use.
const SESSION_MARGIN_MS = 60 * 1000;

/** True for ids that are never real: the dev-tools string, `undefined`,
 * `null`, empty, a failed `requestFormId`, or anything but a string. */
function isMockFormId(id) {
  return (
    typeof id !== 'string' ||
    id === '' ||
    id === MOCK_FORM_ID ||
    id === 'undefined' ||
    id === 'null' ||
    id.indexOf('requestFormId:fail') === 0
  );
}

/** What `onError` receives. `kind` says what happened; `dropped` whether
 * the items involved left the queue for good. */
class LedgerError extends Error {
  constructor(kind, message, extra) {
    super(message);
    this.name = 'LedgerError';
    this.kind = kind;
    this.status = 0;
    this.code = null;
    this.dropped = false;
    if (extra) Object.assign(this, extra);
  }
}

/** Delay before retry number `attempt` (0-based): the capped exponential
 * step `c = min(maxMs, baseMs * 2^attempt)`, jittered into [c/2, c). */
function backoffDelay(attempt, backoff, random) {
  const step = Math.min(backoff.maxMs, backoff.baseMs * Math.pow(2, attempt));
  return Math.round(step / 2 + random() * (step / 2));
}

// Retry-After in milliseconds (delta-seconds or an HTTP date), or null.
function retryAfterMs(header, now) {
  let raw = null;
  for (const name in header || {}) {
    if (name.toLowerCase() === 'retry-after') raw = String(header[name]).trim();
  }
  if (raw === null || raw === '') return null;
  if (/^\d+$/.test(raw)) return Number(raw) * 1000;
  const at = Date.parse(raw);
  return isNaN(at) ? null : Math.max(0, at - now);
}

// Answers worth retrying: no answer at all, a timeout, rate limiting, or
// the service (or a proxy in front of it) failing.
function isTransient(res) {
  return res.status === 0 || res.status === 408 || res.status === 429 || res.status >= 500;
}

// Answers that say the request's content is bad: resending it can only
// fail again, so its items are dropped.
function isBadBatch(res) {
  return res.status === 400 || res.status === 413 || res.status === 422;
}

function describe(res) {
  if (res.status === 0) return 'no answer: ' + ((res.error && res.error.errMsg) || 'request failed');
  const body = res.data && typeof res.data === 'object' ? res.data : {};
  return (
    'HTTP ' + res.status + (body.code ? ' ' + body.code : '') + (body.message ? ': ' + body.message : '')
  );
}

function errorFields(res, extra) {
  const body = res.data && typeof res.data === 'object' ? res.data : {};
  return Object.assign({ status: res.status, code: body.code || null }, extra);
}

// What of a wx.requestSubscribeMessage answer is posted: errMsg and the
// per-template answers (strings). Anything else WeChat may add (a numeric
// errCode) would make the service refuse the whole object. Null when the
// answer names no template.
function postableResults(answer) {
  if (!answer || typeof answer !== 'object') return null;
  const results = {};
  let templates = 0;
  for (const key in answer) {
    if (typeof answer[key] !== 'string') continue;
    results[key] = answer[key];
    if (key !== 'errMsg') templates++;
  }
  return templates > 0 ? results : null;
}

// Default storage: wx's synchronous storage (which answers '' for a missing
// key), or memory when the runtime has none.
function wxStorage(wx) {
  if (typeof wx.getStorageSync !== 'function' || typeof wx.setStorageSync !== 'function') {
    const memory = new Map();
    return {
      get: (key) => memory.get(key),
      set: (key, value) => memory.set(key, value),
      remove: (key) => memory.delete(key),
    };
  }
  return {
    get: (key) => {
      const value = wx.getStorageSync(key);
      return value === '' ? undefined : value;
    },
    set: (key, value) => wx.setStorageSync(key, value),
    remove: (key) =>
      typeof wx.removeStorageSync === 'function' ? wx.removeStorageSync(key) : wx.setStorageSync(key, ''),
  };
}

function validSession(s) {
  return s && typeof s.token === 'string' && typeof s.expiresAt === 'number' ? s : null;
}

function option(value, fallback) {
  return value === undefined || value === null ? fallback : value;
}

/** Creates a client; see README.md for every option. */
function createClient(options) {
  const opts = options || {};
  const wx = opts.wx;
  if (!wx || typeof wx.request !== 'function' || typeof wx.login !== 'function') {
    throw new TypeError('createClient: options.wx must have request() and login()');
  }
  if (!opts.baseUrl) throw new TypeError('createClient: options.baseUrl is required');
  const baseUrl = String(opts.baseUrl).replace(/\/+$/, '');
  const batchSize = Math.max(1, Math.min(MAX_BATCH, option(opts.batchSize, MAX_BATCH)));
  const flushIntervalMs = option(opts.flushIntervalMs, 10000);
  const maxRetries = Math.max(0, option(opts.maxRetries, 5));
  const requestTimeoutMs = option(opts.requestTimeoutMs, 10000);
  const backoff = Object.assign({ baseMs: 1000, maxMs: 30000 }, opts.backoff);
  // Wrapped, not passed as is: some runtimes refuse a timer function called
  // as a method of another object.
  const timers = Object.assign(
    {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (id) => clearTimeout(id),
      setInterval: (fn, ms) => setInterval(fn, ms),
      clearInterval: (id) => clearInterval(id),
    },
    opts.timers,
  );
  const random = opts.random || Math.random;
  const now = opts.now || Date.now;
  const storage = opts.storage || wxStorage(wx);
  const prefix = opts.storageKey || 'formid-ledger';
  const QUEUE_KEY = prefix + ':queue';
  const SESSION_KEY = prefix + ':session';

  let destroyed = false;
  let session = validSession(read(SESSION_KEY)); // { token, openid, expiresAt }
  let loggingIn = null; // the login in progress, shared by its callers
  let running = null; // the flush in flight
  let next = null; // the flush queued behind it (at most one)
  const sleeping = new Set(); // backoff waits, ended early by destroy()

  // The queue: formIds as { id, at }, subscribe answers as { key, results, at }.
  // Items are removed only once the service acknowledged (or refused) them.
  const saved = read(QUEUE_KEY) || {};
  let formIds = Array.isArray(saved.formIds)
    ? saved.formIds.filter((f) => f && typeof f.id === 'string')
    : [];
  let subscriptions = Array.isArray(saved.subscriptions)
    ? saved.subscriptions.filter((s) => s && s.results && typeof s.key === 'string')
    : [];
  let seq = 0;

  function report(error) {
    if (typeof opts.onError !== 'function') return;
    try {
      opts.onError(error);
    } catch (ignored) {
      // A faulty handler must not break the queue.
    }
  }

  function read(key) {
    try {
      return storage.get(key);
    } catch (error) {
      return undefined;
    }
  }

  function write(key, value) {
    try {
      if (value !== undefined) storage.set(key, value);
      else if (typeof storage.remove === 'function') storage.remove(key);
      else storage.set(key, undefined);
    } catch (error) {
      const reason = error && (error.errMsg || error.message);
      report(new LedgerError('storage', 'storage refused ' + key + ': ' + reason));
    }
  }

  function saveQueue() {
    write(QUEUE_KEY, {
      formIds: formIds.map((f) => ({ id: f.id, at: f.at })),
      subscriptions: subscriptions.map((s) => ({ key: s.key, results: s.results, at: s.at })),
    });
  }

  function sleep(ms) {
    return new Promise((resolve) => {
      const wait = { resolve: resolve, id: null };
      sleeping.add(wait);
      wait.id = timers.setTimeout(() => {
        sleeping.delete(wait);
        resolve();
      }, ms);
    });
  }

  // One HTTP call; resolves { status, data, header }, status 0 when
  // wx.request failed (no answer).
  function request(method, path, data, token) {
    return new Promise((resolve) => {
      const header = { 'content-type': 'application/json' };
      if (token) header.Authorization = 'Bearer ' + token;
      try {
        wx.request({
          url: baseUrl + path,
          method: method,
          data: data,
          header: header,
          timeout: requestTimeoutMs,
          success: (res) => resolve({ status: res.statusCode, data: res.data, header: res.header || {} }),
          fail: (error) => resolve({ status: 0, error: error, header: {} }),
        });
      } catch (error) {
        resolve({ status: 0, error: { errMsg: String(error && error.message) }, header: {} });
      }
    });
  }

  // Runs `attempt` again after transient answers, at most maxRetries times.
  async function withRetry(attempt) {
    for (let n = 0; ; n++) {
      const res = await attempt();
      if (!isTransient(res) || n >= maxRetries || destroyed) return res;
      const hinted = retryAfterMs(res.header, now());
      await sleep(hinted === null ? backoffDelay(n, backoff, random) : hinted);
      if (destroyed) return res;
    }
  }

  function wxLoginCode() {
    return new Promise((resolve) => {
      try {
        wx.login({
          success: (res) => resolve(res && res.code ? { code: res.code } : { error: res }),
          fail: (error) => resolve({ error: error }),
        });
      } catch (error) {
        resolve({ error: { errMsg: String(error && error.message) } });
      }
    });
  }

  // wx.login and POST /v1/sessions, retried as one unit: a code is
  // single-use, so every attempt asks for a new one.
  async function doLogin() {
    const res = await withRetry(async () => {
      const got = await wxLoginCode();
      if (!got.code) return { status: 0, error: got.error, header: {} };
      return request('POST', '/v1/sessions', { code: got.code });
    });
    const body = res.data || {};
    if (res.status === 201 && typeof body.token === 'string') {
      session = {
        token: body.token,
        openid: body.openid,
        expiresAt: now() + Number(body.expires_in || 0) * 1000,
      };
      write(SESSION_KEY, session);
      return session;
    }
    throw new LedgerError('login', 'login failed: ' + describe(res), errorFields(res));
  }

  function login() {
    if (session && session.expiresAt - SESSION_MARGIN_MS > now()) return Promise.resolve(session);
    if (!loggingIn) {
      loggingIn = doLogin().then(
        (s) => {
          loggingIn = null;
          return s;
        },
        (error) => {
          loggingIn = null;
          throw error;
        },
      );
    }
    return loggingIn;
  }

  // POST with the session token; a 401 means the token is gone (expired,
  // or the service's secret changed): log in again once and resend.
  async function post(path, body) {
    let current = await login();
    const send = () => request('POST', path, body, current.token);
    let res = await withRetry(send);
    if (res.status === 401) {
      if (session === current) {
        session = null;
        write(SESSION_KEY, undefined);
      }
      current = await login();
      res = await withRetry(send);
    }
    return res;
  }

  function removeItems(list, items) {
    return list.filter((item) => items.indexOf(item) < 0);
  }

  // Posts one batch and settles its items. True when the flush may go on.
  async function deliver(kind, items, path, body, result) {
    const res = await post(path, body);
    const payload = kind === 'form' ? items.map((f) => f.id) : items[0].results;
    const drop = () => {
      if (kind === 'form') formIds = removeItems(formIds, items);
      else subscriptions = removeItems(subscriptions, items);
      saveQueue();
    };
    if (res.status >= 200 && res.status < 300) {
      drop();
      result.acknowledged += items.length;
      items.forEach((item) => (item.response = res.data));
      return true;
    }
    if (isBadBatch(res)) {
      drop();
      result.dropped += items.length;
      const fields = errorFields(res, { dropped: true, items: payload });
      const error = new LedgerError('rejected', 'dropped: ' + describe(res), fields);
      items.forEach((item) => (item.error = error));
      report(error);
      return true;
    }
    // Kept for a later flush: unreachable, still failing after the retries,
    // refusing the token again, or some other refusal (403, 404: a
    // configuration problem the batch cannot fix).
    result.ok = false;
    if (destroyed) return false; // the flush was cut short on purpose
    const kindOfError = isTransient(res) ? 'unavailable' : res.status === 401 ? 'unauthorized' : 'refused';
    const message = 'kept for a later flush: ' + describe(res);
    report(new LedgerError(kindOfError, message, errorFields(res, { items: payload })));
    return false;
  }

  async function runFlush() {
    const result = { ok: !destroyed, acknowledged: 0, dropped: 0, pending: null };
    const oldest = now() - FORM_ID_TTL_MS;
    if (formIds.some((f) => f.at < oldest)) {
      formIds = formIds.filter((f) => f.at >= oldest);
      saveQueue();
    }
    try {
      // Subscribe answers first: one request each (two answers for one
      // template are two grants, so they are never merged).
      let goOn = true;
      while (goOn && !destroyed && subscriptions.length) {
        const item = subscriptions[0];
        goOn = await deliver('subscription', [item], '/v1/subscriptions', { results: item.results }, result);
      }
      while (goOn && !destroyed && formIds.length) {
        const batch = formIds.slice(0, batchSize);
        goOn = await deliver('form', batch, '/v1/credentials', { form_ids: batch.map((f) => f.id) }, result);
      }
    } catch (error) {
      result.ok = false;
      const unexpected = error instanceof LedgerError ? null : String(error && error.message);
      report(unexpected === null ? error : new LedgerError('unavailable', unexpected));
    }
    if (destroyed) result.ok = false;
    result.pending = pending();
    return result;
  }

  // One flush in flight at a time; a call meanwhile gets the one flush
  // queued behind it, which sees everything queued by then.
  function flush() {
    if (!running) {
      running = runFlush().then((result) => {
        running = null;
        return result;
      });
      return running;
    }
    if (!next) {
      next = running.then(() => {
        next = null;
        return flush();
      });
    }
    return next;
  }

  function pending() {
    return { formIds: formIds.length, subscriptions: subscriptions.length };
  }

  function collectFormId(e) {
    const id = typeof e === 'string' ? e : e && e.detail ? e.detail.formId : undefined;
    if (destroyed || isMockFormId(id)) return false;
    if (formIds.some((f) => f.id === id)) return false;
    formIds.push({ id: id, at: now() });
    saveQueue();
    if (formIds.length >= batchSize) flush();
    return true;
  }

  function requestSubscribe(tmplIds) {
    // WeChat shows the popup only inside the tap's own turn, so it is
    // asked for before anything else (no await before this line).
    const asked = new Promise((resolve, reject) => {
      wx.requestSubscribeMessage({ tmplIds: tmplIds, success: resolve, fail: reject });
    });
    return asked.then((answer) => {
      const results = postableResults(answer);
      if (!results) return { answer: answer, service: null, queued: false };
      const item = {
        key: now().toString(36) + '-' + (seq++).toString(36) + '-' + random().toString(36).slice(2, 8),
        results: results,
        at: now(),
      };
      subscriptions.push(item);
      saveQueue();
      return flush().then(() => {
        const out = {
          answer: answer,
          service: item.response || null,
          queued: subscriptions.indexOf(item) >= 0,
        };
        if (item.error) out.error = item.error;
        return out;
      });
    });
  }

  function destroy() {
    if (destroyed) return;
    destroyed = true;
    if (intervalId !== null) timers.clearInterval(intervalId);
    if (hideHandler && typeof wx.offAppHide === 'function') wx.offAppHide(hideHandler);
    sleeping.forEach((wait) => {
      timers.clearTimeout(wait.id);
      wait.resolve();
    });
    sleeping.clear();
  }

  const intervalId =
    flushIntervalMs > 0
      ? timers.setInterval(() => {
          if (!running && (formIds.length || subscriptions.length)) flush();
        }, flushIntervalMs)
      : null;
  const hideHandler =
    typeof wx.onAppHide === 'function'
      ? () => {
          flush();
        }
      : null;
  if (hideHandler) wx.onAppHide(hideHandler);

  return {
    login: () => login().then((s) => ({ token: s.token, openid: s.openid, expiresAt: s.expiresAt })),
    collectFormId: collectFormId,
    requestSubscribe: requestSubscribe,
    flush: flush,
    pending: pending,
    destroy: destroy,
  };
}

module.exports = { MOCK_FORM_ID, MAX_BATCH, isMockFormId, LedgerError, backoffDelay, createClient };
