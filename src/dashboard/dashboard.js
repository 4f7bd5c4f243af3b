// formid-ledger operator dashboard (docs/api.md, Operations).
//
// Plain ES2020, no build step, no framework; charts by the vendored uPlot
// (global `uPlot`). Served under `Content-Security-Policy: default-src 'self'`,
// so nothing here uses inline styles, inline handlers, eval or other origins.
// It talks to this service only: GET /v1/reports/summary,
// GET /v1/reports/usage and GET /v1/quota (each under /v1/apps/{app} once
// the apps are known), with `Authorization: Bearer <key>` (scope `report`).
//
// For the browser test:
//   body[data-state]      "loading" | "needs-key" | "ready" | "error"
//   body[data-key-error]  "unauthorized" (401) | "forbidden" (403), with the form shown
//   [data-chart=<name>]   one per chart, data-totals = JSON {row field path: 30-day sum},
//                         data-empty = "true" when every total is zero
//   #charts[data-from][data-to]  the report days shown
//   [data-summary=<path>] one per live summary number, text = formatted value,
//                         data-value = the raw number
//   tr[data-template=<id>][data-count=<n>]  grants held per subscribe template
//   tr[data-template=<id>][data-subscribers=<n>]  users subscribed per long-term template
//   tr[data-quota=<channel>][data-used=<n>][data-limit=<n>]  WeChat's count of
//                         the channel's send API today
//
// Nothing is logged to the console; every failure is shown on the page.
'use strict';

(() => {
  const STORAGE_KEY = 'formid-ledger.dashboard.key';
  const REFRESH_MS = 30000;
  const DAYS = 30;
  // Report days are in the service's REPORT_UTC_OFFSET (default +08:00). The
  // page asks the service for "today" (GET /v1/reports/usage without a range
  // answers today's row in the report time zone) and falls back to this.
  const DEFAULT_OFFSET_MINUTES = 8 * 60;
  const REQUEST_TIMEOUT_MS = 15000;

  const NUMBER = new Intl.NumberFormat('en-US');
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const PALETTE = ['blue', 'green', 'red', 'amber', 'purple', 'teal', 'orange', 'grey', 'darkred', 'pink', 'brown', 'navy'];

  // A series keeps its colour in every chart: by full path first, then by its last key.
  const COLOR_BY_PATH = {
    'official_account.sent': 'blue',
  };
  const COLOR_BY_KEY = {
    collected: 'blue', accepted: 'blue',
    spent: 'green', sent: 'green', delivered: 'green',
    burned: 'red', failed: 'red', wechat_rejected: 'red',
    expired_unspent: 'amber', no_valid_credential: 'amber', expired: 'amber',
    refunded: 'purple', wechat_quota_exceeded: 'purple', invalid_kind: 'purple',
    wechat_unavailable: 'grey', filtered: 'grey',
    wechat_outcome_unknown: 'brown', evicted: 'brown',
    not_subscribed: 'orange', rejected: 'orange', user_blocked: 'orange', invalid_id: 'orange',
    banned: 'darkred',
    invalid_data: 'pink', mock_form_id: 'pink',
    duplicates: 'navy',
  };
  const LABELS = {
    expired_unspent: 'expired unspent',
    no_valid_credential: 'no valid credential',
    wechat_rejected: 'WeChat rejected',
    wechat_quota_exceeded: 'quota exceeded',
    wechat_unavailable: 'WeChat unavailable',
    wechat_outcome_unknown: 'outcome unknown',
    not_subscribed: 'not subscribed',
    invalid_data: 'invalid data',
    mock_form_id: 'mock formId',
    invalid_id: 'invalid id',
    invalid_kind: 'invalid kind',
    user_blocked: 'user blocked',
    official_account: 'official account',
  };
  // Order of the per-kind sections in the credential charts; others follow.
  const KIND_SECTION_ORDER = ['collected', 'spent', 'burned', 'expired_unspent', 'refunded'];
  const KIND_NAMES = { form: 'formIds', prepay: 'prepay_ids' };
  // Row fields that are not charted.
  const NOT_CHARTED = new Set(['date', 'wechat_errcodes']);

  const SUMMARY_ORDER = ['users_with_credentials', 'available_sends.form', 'available_sends.prepay', 'expiring_within_24h'];
  const SUMMARY_TEXT = {
    users_with_credentials: ['Users with credentials', 'openids holding a valid formId or prepay_id'],
    'available_sends.form': ['Sends available · formId', 'uses left on unexpired formIds'],
    'available_sends.prepay': ['Sends available · prepay_id', 'uses left on unexpired prepay_ids'],
    expiring_within_24h: ['Expiring within 24 h', 'lost unless spent in the next 24 hours'],
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    keyPanel: $('key-panel'),
    keyForm: $('key-form'),
    keyInput: $('key-input'),
    keyError: $('key-error'),
    content: $('content'),
    emptyNote: $('empty-note'),
    summary: $('summary'),
    grants: $('grants'),
    grantsEmpty: $('grants-empty'),
    grantsTotal: $('grants-total'),
    subscribers: $('subscribers'),
    subscribersEmpty: $('subscribers-empty'),
    subscribersTotal: $('subscribers-total'),
    quota: $('quota'),
    quotaNote: $('quota-note'),
    charts: $('charts'),
    range: $('range'),
    updated: $('updated'),
    forget: $('forget-key'),
    appPicker: $('app-picker'),
    appSelect: $('app-select'),
  };

  const state = {
    key: null,
    gen: 0, // bumped when the key changes: answers for an older key are dropped
    timer: null,
    pending: false, // a refresh was due while the tab was hidden
    charts: new Map(), // name -> chart record
    lastOk: null,
    last: null, // last {usage, summary} rendered, to redraw on theme change
    app: null, // the app whose reports are shown (GET /v1/apps lists them)
  };

  // ---------------------------------------------------------------- helpers

  const fmt = (n) => NUMBER.format(n);
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const isDate = (s) => typeof s === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(s);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (name === 'class') node.className = value;
        else if (name === 'text') node.textContent = value;
        else node.setAttribute(name, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function setState(s) {
    document.body.dataset.state = s;
  }

  function dateToUTCDay(d) {
    return d.toISOString().slice(0, 10);
  }

  function todayAtOffset(minutes) {
    return dateToUTCDay(new Date(Date.now() + minutes * 60000));
  }

  function addDays(day, n) {
    const d = new Date(day + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + n);
    return dateToUTCDay(d);
  }

  function shortDay(day) {
    return MONTHS[Number(day.slice(5, 7)) - 1] + ' ' + Number(day.slice(8, 10));
  }

  function longDay(day) {
    return shortDay(day) + ', ' + day.slice(0, 4);
  }

  function clock(d) {
    const p = (n) => String(n).padStart(2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function humanKey(key) {
    return LABELS[key] || key.replace(/_/g, ' ');
  }

  function slug(s) {
    return s.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase() || 'x';
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // Numeric leaves of an object as [path, value], nested objects flattened.
  function leaves(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix ? prefix + '.' + k : k;
      if (isNum(v)) out.push([path, v]);
      else if (isObj(v)) leaves(v, path, out);
    }
    return out;
  }

  function getPath(obj, path) {
    let v = obj;
    for (const part of path.split('.')) {
      if (!isObj(v) || !(part in v)) return undefined;
      v = v[part];
    }
    return v;
  }

  function orderedUnion(lists) {
    const seen = new Set();
    const out = [];
    for (const list of lists) {
      for (const item of list) {
        if (!seen.has(item)) {
          seen.add(item);
          out.push(item);
        }
      }
    }
    return out;
  }

  function byPreferredOrder(items, order) {
    const rank = (x) => {
      const i = order.indexOf(x);
      return i === -1 ? order.length : i;
    };
    return items
      .map((x, i) => [x, i])
      .sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1])
      .map((p) => p[0]);
  }

  // --------------------------------------------------------------- the key

  function loadKey() {
    try {
      return sessionStorage.getItem(STORAGE_KEY);
    } catch (_) {
      return null;
    }
  }

  function saveKey(key) {
    try {
      sessionStorage.setItem(STORAGE_KEY, key);
    } catch (_) {
      /* storage disabled: the key lives in memory for this page */
    }
  }

  function dropKey() {
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch (_) {
      /* nothing stored */
    }
  }

  // `#key=...` in the address: take it, keep it, and remove it from the address bar.
  function takeKeyFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return null;
    const parts = hash.split('&');
    let key = null;
    const rest = [];
    for (const part of parts) {
      if (part.startsWith('key=')) {
        try {
          key = decodeURIComponent(part.slice(4));
        } catch (_) {
          key = part.slice(4);
        }
      } else if (part) {
        rest.push(part);
      }
    }
    if (key === null) return null;
    try {
      history.replaceState(history.state, '', location.pathname + location.search + (rest.length ? '#' + rest.join('&') : ''));
    } catch (_) {
      /* the key is still used; the address keeps it */
    }
    key = key.trim();
    return key || null;
  }

  // An Authorization header takes visible ASCII only; anything else cannot be a key.
  const plausibleKey = (key) => /^[\x21-\x7e]{1,512}$/.test(key);

  function useKey(key) {
    state.key = key;
    state.gen += 1;
    clearTimeout(state.timer);
    saveKey(key);
    ui.keyPanel.hidden = true;
    ui.keyError.hidden = true;
    delete document.body.dataset.keyError;
    ui.forget.hidden = false;
    ui.content.hidden = !state.lastOk; // shown with the first data
    if (!state.lastOk) showStatus('Loading the reports…', false);
    setState('loading');
    refresh();
  }

  function showKeyForm(message, code) {
    state.key = null;
    state.gen += 1;
    clearTimeout(state.timer);
    state.lastOk = null;
    state.last = null;
    clearData();
    ui.content.hidden = true;
    ui.forget.hidden = true;
    ui.updated.hidden = true;
    hideStatus();
    ui.keyPanel.hidden = false;
    if (message) {
      ui.keyError.textContent = message;
      ui.keyError.hidden = false;
    } else {
      ui.keyError.hidden = true;
    }
    if (code) document.body.dataset.keyError = code;
    else delete document.body.dataset.keyError;
    setState('needs-key');
    try {
      ui.keyInput.focus();
    } catch (_) {
      /* not focusable yet */
    }
  }

  function forgetKey() {
    dropKey();
    ui.keyInput.value = '';
    showKeyForm(null, null);
  }

  // ------------------------------------------------------------ status line

  function showStatus(text, isError) {
    ui.status.textContent = text;
    ui.status.classList.toggle('notice-error', Boolean(isError));
    ui.status.setAttribute('role', isError ? 'alert' : 'status');
    ui.status.hidden = false;
  }

  function hideStatus() {
    ui.status.hidden = true;
    ui.status.textContent = '';
  }

  function showUpdated(failed) {
    if (!state.lastOk) {
      ui.updated.hidden = true;
      return;
    }
    ui.updated.textContent = failed
      ? 'Refresh failed · showing ' + clock(state.lastOk)
      : 'Updated ' + clock(state.lastOk) + ' · every 30 s';
    ui.updated.classList.toggle('stale', Boolean(failed));
    ui.updated.hidden = false;
  }

  // -------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || 'HTTP ' + status);
      this.status = status;
      this.code = code || '';
      this.detail = message || '';
    }
  }

  async function getJSON(path, key) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(path, {
        headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'same-origin',
        signal: ctrl.signal,
      });
    } catch (e) {
      const timedOut = e && e.name === 'AbortError';
      throw new ApiError(0, 'network', timedOut ? 'the service did not answer within 15 s' : 'the service cannot be reached');
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      throw new ApiError(res.status, isObj(body) ? body.code : '', isObj(body) ? body.message : '');
    }
    if (!isObj(body)) throw new ApiError(res.status, 'bad_response', 'the service answered something other than a JSON object');
    return body;
  }

  // Where the shown app's routes are: /v1/apps/{app}/..., or the bare
  // routes (the default app) before the apps are known.
  function appRoute(path) {
    return (state.app ? '/v1/apps/' + encodeURIComponent(state.app) : '/v1') + '/' + path;
  }

  function reports(path) {
    return appRoute('reports/' + path);
  }

  // WeChat's quota comes from WeChat: when it cannot be had, the rest of the
  // page still shows, with the reason in the quota card.
  async function loadQuota(key) {
    try {
      return await getJSON(appRoute('quota'), key);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) throw err;
      return { error: describe(err) };
    }
  }

  // The apps this key may see, in the picker (shown when there are several).
  async function loadApps(key) {
    const body = await getJSON('/v1/apps', key);
    const names = (Array.isArray(body.apps) ? body.apps : [])
      .map((a) => (isObj(a) && typeof a.name === 'string' ? a.name : null))
      .filter((n) => n !== null);
    if (!names.includes(state.app)) state.app = names.includes('default') ? 'default' : names[0] || null;
    const shown = Array.from(ui.appSelect.options).map((o) => o.value);
    if (shown.join('\n') !== names.join('\n')) {
      ui.appSelect.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
    }
    ui.appSelect.value = state.app || '';
    ui.appPicker.hidden = names.length < 2;
  }

  async function loadUsage(key) {
    let to = null;
    const probe = await getJSON(reports('usage'), key);
    if (Array.isArray(probe.days) && probe.days.length && isObj(probe.days[probe.days.length - 1])) {
      const d = probe.days[probe.days.length - 1].date;
      if (isDate(d)) to = d;
    }
    if (!to) to = todayAtOffset(DEFAULT_OFFSET_MINUTES);
    const from = addDays(to, -(DAYS - 1));
    const body = await getJSON(reports('usage?from=' + from + '&to=' + to), key);
    if (!Array.isArray(body.days)) throw new ApiError(200, 'bad_response', 'the usage report has no "days" list');
    // Exactly DAYS rows, from..to; a day the service left out counts zero.
    const byDate = new Map();
    for (const row of body.days) {
      if (isObj(row) && isDate(row.date)) byDate.set(row.date, row);
    }
    const dates = [];
    const rows = [];
    for (let i = 0; i < DAYS; i++) {
      const day = addDays(from, i);
      dates.push(day);
      rows.push(byDate.get(day) || { date: day });
    }
    return { from, to, dates, rows };
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 0) return err.detail;
      let s = 'the service answered ' + err.status;
      if (err.code) s += ' ' + err.code;
      if (err.detail) s += ': ' + err.detail;
      return s;
    }
    return 'the page failed to draw the reports (' + String((err && err.message) || err) + ')';
  }

  // ---------------------------------------------------------------- refresh

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      if (document.hidden) state.pending = true;
      else refresh();
    }, REFRESH_MS);
  }

  async function refresh() {
    clearTimeout(state.timer);
    state.pending = false;
    const gen = state.gen;
    const key = state.key;
    if (!key) return;
    try {
      await loadApps(key);
      if (gen !== state.gen) return;
      const [summary, usage, quota] = await Promise.all([
        getJSON(reports('summary'), key),
        loadUsage(key),
        loadQuota(key),
      ]);
      if (gen !== state.gen) return;
      ui.content.hidden = false; // before drawing: the charts take the width they get
      await render(usage, summary);
      renderQuota(quota);
      if (gen !== state.gen) return;
      state.lastOk = new Date();
      hideStatus();
      showUpdated(false);
      setState('ready');
    } catch (err) {
      if (gen !== state.gen) return;
      if (err instanceof ApiError && err.status === 401) {
        dropKey();
        showKeyForm('The service says this key is not valid (401 unauthorized). Check it and enter it again.', 'unauthorized');
        return;
      }
      if (err instanceof ApiError && err.status === 403) {
        dropKey();
        showKeyForm(
          'The service says this key lacks the report scope (403 forbidden). Use a key with the report or admin scope.',
          'forbidden',
        );
        return;
      }
      showStatus('Could not load the reports: ' + describe(err) + '. Retrying in 30 s.', true);
      showUpdated(true);
      setState('error');
    } finally {
      if (gen === state.gen && state.key) schedule();
    }
  }

  async function render(usage, summary) {
    state.last = { usage, summary };
    const summaryZero = renderSummary(summary);
    const grantsZero = renderGrants(summary.subscribe_grants);
    const subscribersZero = renderSubscribers(summary.long_term_subscribers);
    const chartsZero = await renderCharts(usage);
    ui.emptyNote.hidden = !(summaryZero && grantsZero && subscribersZero && chartsZero);
  }

  function clearData() {
    for (const rec of state.charts.values()) destroyChart(rec);
    state.charts.clear();
    ui.charts.replaceChildren();
    ui.summary.replaceChildren();
    ui.grants.tBodies[0].replaceChildren();
    ui.grants.hidden = true;
    ui.grantsEmpty.hidden = true;
    ui.grantsTotal.textContent = '';
    ui.subscribers.tBodies[0].replaceChildren();
    ui.subscribers.hidden = true;
    ui.subscribersEmpty.hidden = true;
    ui.subscribersTotal.textContent = '';
    ui.quota.tBodies[0].replaceChildren();
    ui.quota.hidden = true;
    ui.quotaNote.hidden = true;
    ui.emptyNote.hidden = true;
    ui.range.textContent = '';
  }

  // ---------------------------------------------------------------- summary

  // Returns true when every number is zero.
  function renderSummary(summary) {
    const flat = [];
    for (const [k, v] of Object.entries(summary)) {
      if (k === 'subscribe_grants' || k === 'long_term_subscribers') continue;
      if (isNum(v)) flat.push([k, v]);
      else if (isObj(v)) leaves(v, k, flat);
    }
    const values = new Map(flat);
    const paths = byPreferredOrder(
      flat.map((p) => p[0]),
      SUMMARY_ORDER,
    );
    const existing = new Map();
    for (const node of ui.summary.querySelectorAll('[data-summary]')) existing.set(node.dataset.summary, node);
    const cards = [];
    let allZero = true;
    for (const path of paths) {
      const value = values.get(path);
      if (value !== 0) allZero = false;
      let valueEl = existing.get(path);
      if (!valueEl) {
        const text = SUMMARY_TEXT[path] || [path.split('.').map(humanKey).join(' · '), ''];
        valueEl = el('span', { class: 'stat-value', 'data-summary': path });
        el('div', { class: 'card stat' }, el('div', { class: 'stat-label', text: text[0] }), valueEl, text[1] ? el('div', { class: 'stat-note', text: text[1] }) : null);
      }
      valueEl.dataset.value = String(value);
      valueEl.textContent = fmt(value);
      cards.push(valueEl.parentElement);
    }
    ui.summary.replaceChildren(...cards);
    return allZero;
  }

  // Returns true when no grant is held.
  function renderGrants(grants) {
    return renderPerTemplate(ui.grants, ui.grantsEmpty, ui.grantsTotal, grants, 'held', 'count');
  }

  // Returns true when no user holds a long-term subscription.
  function renderSubscribers(subscribers) {
    return renderPerTemplate(ui.subscribers, ui.subscribersEmpty, ui.subscribersTotal, subscribers, 'subscribed', 'subscribers');
  }

  // A per-template table of counts, largest first, each row with a bar;
  // `attr` names the row's data attribute holding its count.
  function renderPerTemplate(table, emptyEl, totalEl, counts, noun, attr) {
    const entries = isObj(counts) ? Object.entries(counts).filter((e) => isNum(e[1])) : [];
    entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const total = entries.reduce((s, e) => s + e[1], 0);
    const max = entries.reduce((m, e) => Math.max(m, e[1]), 0);
    const body = table.tBodies[0];
    body.replaceChildren(
      ...entries.map(([id, n]) =>
        el(
          'tr',
          { 'data-template': id, ['data-' + attr]: n },
          el(
            'td',
            null,
            el('span', { class: 'tpl', text: id }),
            el('span', { class: 'bar-track' }, el('progress', { max: max || 1, value: n, 'aria-hidden': 'true' })),
          ),
          el('td', { class: 'num', text: fmt(n) }),
        ),
      ),
    );
    table.hidden = entries.length === 0;
    emptyEl.hidden = entries.length !== 0;
    totalEl.textContent = entries.length
      ? fmt(total) + ' ' + noun + ' · ' + fmt(entries.length) + (entries.length === 1 ? ' template' : ' templates')
      : '';
    totalEl.dataset.total = String(total);
    return total === 0;
  }

  // One row per send API: used of the daily limit, and when the day's first
  // 45009 came.
  function renderQuota(quota) {
    const apis = isObj(quota) && Array.isArray(quota.apis) ? quota.apis.filter(isObj) : [];
    const body = ui.quota.tBodies[0];
    body.replaceChildren(
      ...apis
        .filter((a) => typeof a.channel === 'string' && isNum(a.used) && isNum(a.daily_limit))
        .map((a) =>
          el(
            'tr',
            { 'data-quota': a.channel, 'data-used': a.used, 'data-limit': a.daily_limit },
            el(
              'td',
              null,
              el('span', { class: 'tpl', text: humanKey(a.channel) + (a.exhausted_at ? ' · 45009 at ' + clock(new Date(a.exhausted_at)) : '') }),
              el('span', { class: 'bar-track' }, el('progress', { max: a.daily_limit || 1, value: a.used, 'aria-hidden': 'true' })),
            ),
            el('td', { class: 'num', text: fmt(a.used) + ' / ' + fmt(a.daily_limit) }),
          ),
        ),
    );
    ui.quota.hidden = body.rows.length === 0;
    ui.quotaNote.hidden = body.rows.length !== 0;
    ui.quotaNote.textContent = isObj(quota) && quota.error ? 'Not available: ' + quota.error + '.' : 'No send API to show.';
  }

  // ------------------------------------------------------------ chart specs

  // Derives the charts from the row shapes, so a counter the service adds shows
  // up without a page change. Series are identified by their path in the row.
  function chartSpecs(rows) {
    const specs = [];
    const topKeys = orderedUnion(rows.map((r) => Object.keys(r)));
    const kinds = orderedUnion(rows.map((r) => (isObj(r.collected) ? Object.keys(r.collected).filter((k) => isNum(r.collected[k])) : [])));
    const isKindSection = (v) => {
      if (!isObj(v)) return false;
      const keys = Object.keys(v);
      return keys.length > 0 && keys.every((k) => kinds.includes(k) && isNum(v[k]));
    };
    const rowLeaves = (section) => orderedUnion(rows.map((r) => (isObj(r[section]) ? leaves(r[section], section, []).map((p) => p[0]) : [])));
    const directLeaves = (section) =>
      orderedUnion(rows.map((r) => (isObj(r[section]) ? Object.keys(r[section]).filter((k) => isNum(r[section][k])).map((k) => section + '.' + k) : [])));
    const nestedSections = (section) =>
      orderedUnion(rows.map((r) => (isObj(r[section]) ? Object.keys(r[section]).filter((k) => isObj(r[section][k])) : [])));

    // (1) credentials by kind: every per-kind section (collected, spent, burned, expired_unspent, refunded, ...)
    const kindSections = byPreferredOrder(
      topKeys.filter((k) => kinds.length && rows.some((r) => isKindSection(r[k]))),
      KIND_SECTION_ORDER,
    );
    const handled = new Set(kindSections);
    for (const kind of kinds) {
      const name = KIND_NAMES[kind] || kind;
      specs.push({
        name: 'credentials-' + slug(kind),
        title: name,
        sub:
          kind === 'prepay'
            ? 'prepay_ids collected, and their uses (3 each) spent, burned, refunded or expired unspent'
            : name + ' collected, and their uses spent, burned, refunded or expired unspent',
        base: '',
        paths: kindSections.map((s) => s + '.' + kind),
        label: (path) => humanKey(path.split('.')[0]),
      });
    }

    // (2) template sends by outcome
    if (rows.some((r) => isObj(r.sends)) && !handled.has('sends')) {
      handled.add('sends');
      specs.push({ name: 'sends', title: 'Template message sends', sub: 'POST /v1/messages by outcome', base: 'sends', paths: rowLeaves('sends') });
    }

    // (3) subscribe grants, and each nested group (sends by outcome, deliveries, ...)
    // (4) official-account deliveries, the same way, when the rows have them
    const grouped = [
      ['subscribe', 'subscribe-grants', 'Subscribe grants', 'popup answers (grants accepted, rejected, banned, filtered) and grants spent or burned', 'Subscribe message'],
      ['official_account', 'official-account', 'Official-account messages', 'template messages sent and their delivery receipts', 'Official-account messages'],
      ['official_account_subscribe', 'oa-subscribe-grants', 'Official-account subscribe grants', "followers' popup answers (grants accepted, rejected, banned, filtered) and grants spent or burned", 'Official-account notification'],
    ];
    for (const [section, name, title, sub, prefix] of grouped) {
      if (!rows.some((r) => isObj(r[section])) || handled.has(section)) continue;
      handled.add(section);
      const direct = directLeaves(section);
      if (direct.length) specs.push({ name, title, sub, base: section, paths: direct });
      for (const nested of nestedSections(section)) {
        const base = section + '.' + nested;
        const paths = orderedUnion(rows.map((r) => (isObj(getPath(r, base)) ? leaves(getPath(r, base), base, []).map((p) => p[0]) : [])));
        if (!paths.length) continue;
        const isSends = nested === 'sends';
        specs.push({
          name: name.replace(/-grants$/, '') + '-' + slug(nested),
          title: prefix + (isSends ? ' sends' : ' · ' + humanKey(nested)),
          sub: isSends && section === 'subscribe' ? 'POST /v1/subscribe-messages by outcome' : humanKey(nested) + ' per day',
          base,
          paths,
        });
      }
    }

    // anything else the service adds as a section of counters
    for (const key of topKeys) {
      if (handled.has(key) || NOT_CHARTED.has(key) || key === 'rejected') continue;
      if (!rows.some((r) => isObj(r[key]))) continue;
      const paths = rowLeaves(key);
      if (!paths.length) continue;
      handled.add(key);
      specs.push({ name: slug(key), title: humanKey(key).replace(/^./, (c) => c.toUpperCase()), sub: 'per day', base: key, paths });
    }

    // ingest: plain counters of the row (duplicates, evicted, ...) and rejections by reason
    const scalars = topKeys.filter((k) => !NOT_CHARTED.has(k) && !handled.has(k) && rows.some((r) => isNum(r[k])));
    const ingest = scalars.concat(rowLeaves('rejected'));
    if (ingest.length) {
      specs.push({
        name: 'ingest',
        title: 'Ingest',
        sub: 'items of POST /v1/credentials not added (duplicates, rejections by reason) and credentials evicted over the cap',
        base: '',
        paths: ingest,
      });
    }
    return specs;
  }

  function seriesLabel(spec, path) {
    if (spec.label) return spec.label(path);
    const rel = spec.base && path.startsWith(spec.base + '.') ? path.slice(spec.base.length + 1) : path;
    return rel.split('.').map(humanKey).join(' · ');
  }

  function seriesColors(paths) {
    const used = new Set();
    const names = paths.map((p) => {
      const key = p.split('.').pop();
      const c = COLOR_BY_PATH[p] || COLOR_BY_KEY[key] || null;
      if (c && !used.has(c)) {
        used.add(c);
        return c;
      }
      return null;
    });
    return names.map((c) => {
      if (c) return c;
      const free = PALETTE.find((x) => !used.has(x)) || PALETTE[used.size % PALETTE.length];
      used.add(free);
      return free;
    });
  }

  // ----------------------------------------------------------------- charts

  const Y_INCRS = (() => {
    const out = [];
    for (let mag = 1; mag <= 1e12; mag *= 10) out.push(mag, 2 * mag, 5 * mag);
    for (let mag = 10; mag <= 1e12; mag *= 10) out.push(2.5 * mag);
    return out.sort((a, b) => a - b);
  })();

  function niceMax(max) {
    if (!isNum(max) || max <= 0) return 4;
    const target = max * 1.08;
    const step = Y_INCRS.find((s) => s >= target / 4) || target;
    return Math.ceil(target / step) * step;
  }

  const narrow = () => window.matchMedia('(max-width: 520px)').matches;
  const plotHeight = () => (narrow() ? 180 : 210);

  function chartRecord(spec) {
    const legendHead = el('p', { class: 'legend-head' });
    const legend = el('ul', { class: 'legend' });
    const plotEl = el('div', { class: 'plot' });
    const section = el(
      'section',
      { class: 'card chart', 'data-chart': spec.name, 'aria-label': spec.title },
      el('h3', { text: spec.title }),
      el('p', { class: 'chart-sub', text: spec.sub }),
      legendHead,
      legend,
      plotEl,
    );
    const rec = {
      name: spec.name,
      spec,
      section,
      legendHead,
      legend,
      plotEl,
      plot: null,
      items: [],
      colors: seriesColors(spec.paths),
      userShow: new Map(), // path -> shown, once the operator toggled it
      dates: [],
      data: null,
      totals: [],
      width: 0,
    };
    rec.items = spec.paths.map((path, i) => {
      const valueEl = el('span', { class: 'value' });
      const button = el(
        'button',
        { type: 'button', 'data-series': path, 'aria-pressed': 'true', title: path },
        el('span', { class: 'swatch sw-' + rec.colors[i] }),
        el('span', { class: 'name', text: seriesLabel(spec, path) }),
        valueEl,
      );
      button.addEventListener('click', () => guard(() => toggleSeries(rec, i)));
      legend.append(el('li', null, button));
      return { path, button, valueEl };
    });
    return rec;
  }

  const sameSpec = (a, b) => a.title === b.title && a.paths.length === b.paths.length && a.paths.every((p, i) => p === b.paths[i]);

  function destroyChart(rec) {
    if (rec.plot) {
      try {
        rec.plot.destroy();
      } catch (_) {
        /* already gone */
      }
      rec.plot = null;
    }
    rec.section.remove();
  }

  // Returns true when every chart is all zero.
  async function renderCharts(usage) {
    ui.charts.dataset.from = usage.from;
    ui.charts.dataset.to = usage.to;
    ui.range.textContent = longDay(usage.from) + ' – ' + longDay(usage.to) + ' · report days';
    const specs = chartSpecs(usage.rows);
    const wanted = new Set(specs.map((s) => s.name));
    for (const [name, rec] of state.charts) {
      if (!wanted.has(name)) {
        destroyChart(rec);
        state.charts.delete(name);
      }
    }
    const records = [];
    for (const spec of specs) {
      let rec = state.charts.get(spec.name);
      if (rec && !sameSpec(rec.spec, spec)) {
        destroyChart(rec);
        rec = null;
      }
      if (!rec) {
        rec = chartRecord(spec);
        state.charts.set(spec.name, rec);
      }
      records.push(rec);
    }
    // keep the page order equal to the spec order
    const order = Array.from(ui.charts.children);
    if (order.length !== records.length || records.some((r, i) => order[i] !== r.section)) {
      ui.charts.append(...records.map((r) => r.section));
    }
    let allZero = true;
    const drawn = [];
    for (const rec of records) {
      const p = fillChart(rec, usage);
      if (p) drawn.push(p);
      if (rec.section.dataset.empty !== 'true') allZero = false;
    }
    if (drawn.length) await Promise.all(drawn);
    return allZero;
  }

  // Puts the data in one chart; returns a promise settled once it has drawn, if it draws.
  function fillChart(rec, usage) {
    const { dates, rows } = usage;
    const paths = rec.spec.paths;
    const series = paths.map((path) =>
      rows.map((r) => {
        const v = getPath(r, path);
        return isNum(v) ? v : 0;
      }),
    );
    const totals = series.map((s) => s.reduce((a, b) => a + b, 0));
    rec.dates = dates;
    rec.totals = totals;
    rec.data = [dates.map((_, i) => i), ...series];
    const totalsObj = {};
    paths.forEach((p, i) => {
      totalsObj[p] = totals[i];
    });
    rec.section.dataset.totals = JSON.stringify(totalsObj);
    const empty = totals.every((t) => t === 0);
    rec.section.dataset.empty = String(empty);
    rec.items.forEach((item, i) => {
      const shown = shownByDefault(rec, i);
      item.button.setAttribute('aria-pressed', String(shown));
      item.button.parentElement.classList.toggle('zero', totals[i] === 0);
    });
    showLegendValues(rec, null);

    if (empty) {
      if (rec.plot) {
        rec.plot.destroy();
        rec.plot = null;
      }
      rec.plotEl.replaceChildren(el('div', { class: 'plot-empty', text: 'No data yet' }));
      return null;
    }
    if (rec.plot) {
      rec.plot.batch(() => {
        rec.items.forEach((item, i) => {
          const show = shownByDefault(rec, i);
          if (rec.plot.series[i + 1].show !== show) rec.plot.setSeries(i + 1, { show });
        });
        rec.plot.setData(rec.data);
      });
      return null;
    }
    rec.plotEl.replaceChildren();
    return createPlot(rec);
  }

  function shownByDefault(rec, i) {
    const path = rec.spec.paths[i];
    if (rec.userShow.has(path)) return rec.userShow.get(path);
    return rec.totals[i] > 0; // an all-zero series would only hide the axis
  }

  function createPlot(rec) {
    const font = '11px ' + (cssVar('--font') || 'system-ui, sans-serif');
    const axis = cssVar('--axis') || '#6b7684';
    const grid = cssVar('--grid') || '#eceff3';
    const card = cssVar('--card') || '#ffffff';
    const colors = rec.colors.map((c) => cssVar('--c-' + c) || '#3867d6');
    const width = Math.max(160, Math.floor(rec.plotEl.clientWidth || 300));
    rec.width = width;
    let resolveDrawn;
    const drawnOnce = new Promise((resolve) => {
      resolveDrawn = resolve;
    });
    const opts = {
      width,
      height: plotHeight(),
      padding: [8, 18, 0, 0],
      legend: { show: false },
      cursor: {
        y: false,
        drag: { x: false, y: false, setScale: false },
        points: { size: 7, width: 2, fill: card },
      },
      scales: {
        x: { time: false, range: () => [-0.5, rec.dates.length - 0.5] },
        y: { range: (u, min, max) => [0, niceMax(max)] },
      },
      axes: [
        {
          stroke: axis,
          font,
          size: 28,
          gap: 4,
          space: 54,
          incrs: [1, 2, 3, 7, 14, 28],
          splits: (u, axisIdx, min, max, incr) => {
            const out = [];
            for (let i = rec.dates.length - 1; i >= 0; i -= incr) out.unshift(i);
            return out;
          },
          values: (u, splits) => splits.map((i) => (rec.dates[i] ? shortDay(rec.dates[i]) : '')),
          grid: { show: false },
          ticks: { show: true, stroke: grid, width: 1, size: 4 },
        },
        {
          stroke: axis,
          font,
          gap: 6,
          space: 30,
          incrs: Y_INCRS,
          values: (u, splits) => splits.map((v) => fmt(v)),
          size: (u, values) => {
            const longest = values ? values.reduce((m, v) => Math.max(m, String(v === null ? '' : v).length), 1) : 1;
            return Math.ceil(longest * 6.6) + 14;
          },
          grid: { stroke: grid, width: 1 },
          ticks: { show: false },
        },
      ],
      series: [
        { label: 'day' },
        ...rec.spec.paths.map((path, i) => ({
          label: seriesLabel(rec.spec, path),
          stroke: colors[i],
          width: 2,
          show: shownByDefault(rec, i),
          // a dot on the days with counts only: a month of zeros stays a quiet line
          points: {
            size: 5,
            width: 1.5,
            fill: card,
            filter: (u, seriesIdx, show) => {
              if (!show) return null;
              const out = [];
              u.data[seriesIdx].forEach((v, idx) => {
                if (v) out.push(idx);
              });
              return out;
            },
          },
        })),
      ],
      hooks: {
        draw: [() => resolveDrawn()],
        setCursor: [(u) => guard(() => showLegendValues(rec, u.cursor.idx))],
      },
    };
    rec.plot = new uPlot(opts, rec.data, rec.plotEl);
    // settled once drawn (uPlot draws in a microtask); never wait forever
    return Promise.race([drawnOnce, new Promise((resolve) => setTimeout(resolve, 2000))]);
  }

  function showLegendValues(rec, idx) {
    const hovering = idx !== null && idx !== undefined && idx >= 0 && rec.data && idx < rec.dates.length;
    rec.legendHead.textContent = hovering ? longDay(rec.dates[idx]) : 'Totals over 30 days';
    rec.items.forEach((item, i) => {
      const v = hovering ? rec.data[i + 1][idx] : rec.totals[i];
      item.valueEl.textContent = fmt(v || 0);
    });
  }

  function toggleSeries(rec, i) {
    const path = rec.spec.paths[i];
    const show = !shownByDefault(rec, i);
    rec.userShow.set(path, show);
    rec.items[i].button.setAttribute('aria-pressed', String(show));
    if (rec.plot) rec.plot.setSeries(i + 1, { show });
  }

  function resizeCharts() {
    const height = plotHeight();
    for (const rec of state.charts.values()) {
      if (!rec.plot) continue;
      const width = Math.max(160, Math.floor(rec.plotEl.clientWidth));
      if (width !== rec.width || rec.plot.height !== height) {
        rec.width = width;
        rec.plot.setSize({ width, height });
      }
    }
  }

  function redrawAll() {
    if (!state.last) return;
    for (const rec of state.charts.values()) {
      if (rec.plot) {
        rec.plot.destroy();
        rec.plot = null;
      }
    }
    renderCharts(state.last.usage).catch(fatal);
  }

  // --------------------------------------------------------------- wiring

  // Runs an event handler; a failure becomes a visible error, never a console one.
  function guard(fn) {
    try {
      const r = fn();
      if (r && typeof r.catch === 'function') r.catch(fatal);
    } catch (e) {
      fatal(e);
    }
  }

  function fatal(err) {
    showStatus('Something went wrong: ' + describe(err) + '.', true);
    setState('error');
  }

  function start() {
    setState('loading');
    window.addEventListener('unhandledrejection', (e) => {
      e.preventDefault();
      fatal(e.reason);
    });

    ui.keyForm.addEventListener('submit', (e) => {
      e.preventDefault();
      guard(() => {
        const key = ui.keyInput.value.trim();
        if (!key) {
          showKeyForm('Enter an API key with the report scope.', null);
          return;
        }
        if (!plausibleKey(key)) {
          showKeyForm('This key is not valid: an API key is printable ASCII without spaces.', 'unauthorized');
          return;
        }
        ui.keyInput.value = '';
        useKey(key);
      });
    });
    ui.forget.addEventListener('click', () => guard(forgetKey));
    ui.appSelect.addEventListener('change', () =>
      guard(() => {
        state.app = ui.appSelect.value || null;
        state.gen += 1; // answers for the app shown before are dropped
        state.lastOk = null;
        clearData();
        showStatus('Loading the reports of ' + (state.app || 'the default app') + '…', false);
        setState('loading');
        refresh();
      }),
    );
    window.addEventListener('hashchange', () =>
      guard(() => {
        const key = takeKeyFromFragment();
        if (key) useKey(key);
      }),
    );
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && state.pending && state.key) guard(refresh);
    });

    let resizeQueued = false;
    const queueResize = () => {
      if (resizeQueued) return;
      resizeQueued = true;
      // outside the observer callback, so a resize never loops
      requestAnimationFrame(() => {
        resizeQueued = false;
        guard(resizeCharts);
      });
    };
    if (typeof ResizeObserver === 'function') new ResizeObserver(queueResize).observe(ui.charts);
    window.addEventListener('resize', queueResize);
    const scheme = window.matchMedia('(prefers-color-scheme: dark)');
    if (scheme.addEventListener) scheme.addEventListener('change', () => guard(redrawAll));

    if (typeof uPlot !== 'function') {
      ui.content.hidden = true;
      showStatus('The chart library did not load (/dashboard/assets/uPlot.iife.min.js). Reload the page.', true);
      setState('error');
      return;
    }

    const fromFragment = takeKeyFromFragment();
    const key = fromFragment || loadKey();
    if (key && plausibleKey(key)) useKey(key);
    else if (key) {
      dropKey();
      showKeyForm('This key is not valid: an API key is printable ASCII without spaces.', 'unauthorized');
    } else showKeyForm(null, null);
  }

  try {
    start();
  } catch (e) {
    fatal(e);
  }
})();
