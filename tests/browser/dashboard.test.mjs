// The operators' dashboard in a real headless Chromium (Debian's, driven
// through playwright-core) against a real service (the binary at
// $FORMID_LEDGER_BIN, sandbox mode) holding known data: the charts and
// numbers the page renders are the ones put in, nothing is logged to the
// console, a wrong key says so, and it fits a phone. Screenshots go to
// $DASHBOARD_SCREENSHOTS (default: the working directory).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { startService } from '../../clients/miniprogram/test/service.mjs';

const TEMPLATE = 'FDco73hhn-F5hDB5NItfkd8fCbZfeKxwXUCS2clB83A'; // built into the simulator
const SUBSCRIBE = 'Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E';
const LONG_TERM = 'Lt7Yu3Io9Pa1Sd5Fg2Hj8Kl4Zx6Cv0Bn3Mq7We1Rt5Y'; // the simulator's long-term template
const COLLECT_ONLY = 'collector-only-0123456789abcdef';
const SHOTS = process.env.DASHBOARD_SCREENSHOTS || '.';

let service;
let browser;

before(async () => {
  service = await startService({ keys: [`collector:${COLLECT_ONLY}:collect`] });
  await seed();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (service) await service.stop();
});

/** One user: 5 formIds (and a mock one), two template sends, a prepay_id;
 * three subscribe accepts and one subscribe send; a long-term subscription
 * and two sends on it. */
async function seed() {
  const openid = 'oDashboard';
  const { form_ids } = await service.sandbox('/sandbox/form-ids', { openid, count: 5 });
  const formIds = [...form_ids, 'the formId is a mock one'].map((id) => ({ kind: 'form', id }));
  await service.admin('/v1/credentials', { method: 'POST', body: { openid, credentials: formIds } });
  for (let i = 0; i < 2; i++) {
    await service.admin('/v1/messages', {
      method: 'POST',
      body: { touser: openid, template_id: TEMPLATE, data: { keyword1: { value: `order ${i}` } } },
    });
  }
  // After the sends, which would otherwise spend it first (it expires first).
  const { prepay_id } = await service.sandbox('/sandbox/payments', { openid });
  await service.admin('/v1/credentials', {
    method: 'POST',
    body: { openid, credentials: [{ kind: 'prepay', id: prepay_id }] },
  });
  for (let i = 0; i < 3; i++) {
    const results = await service.sandbox('/sandbox/subscriptions', {
      openid,
      results: { [SUBSCRIBE]: 'accept' },
    });
    await service.admin('/v1/subscriptions', { method: 'POST', body: { openid, results } });
  }
  await service.admin('/v1/subscribe-messages', {
    method: 'POST',
    body: { touser: openid, template_id: SUBSCRIBE, data: { thing1: { value: '配送中' } } },
  });
  const results = await service.sandbox('/sandbox/subscriptions', {
    openid,
    results: { [LONG_TERM]: 'accept' },
  });
  await service.admin('/v1/subscriptions', { method: 'POST', body: { openid, results } });
  for (let i = 0; i < 2; i++) {
    await service.admin('/v1/subscribe-messages', {
      method: 'POST',
      body: { touser: openid, template_id: LONG_TERM, data: { thing1: { value: `进度 ${i}` } } },
    });
  }
}

/** A page that records console messages and uncaught errors. */
async function openPage(viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => problems.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  return { page, problems, close: () => context.close() };
}

const totals = (page, chart) =>
  page.$eval(`[data-chart="${chart}"]`, (el) => JSON.parse(el.dataset.totals));
const summary = (page, field) =>
  page.$eval(`[data-summary="${field}"]`, (el) => Number(el.dataset.value));

test('the charts and the summary show what the service holds, with nothing on the console', async () => {
  const { page, problems, close } = await openPage({ width: 1280, height: 900 });
  await page.goto(`${service.baseUrl}/dashboard#key=${service.adminKey}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 });

  const form = await totals(page, 'credentials-form');
  assert.equal(form['collected.form'], 5);
  assert.equal(form['spent.form'], 2);
  const prepay = await totals(page, 'credentials-prepay');
  assert.equal(prepay['collected.prepay'], 1);
  assert.equal(prepay['spent.prepay'], 0);
  const sends = await totals(page, 'sends');
  assert.equal(sends['sends.sent'], 2);
  const grants = await totals(page, 'subscribe-grants');
  assert.equal(grants['subscribe.accepted'], 3);
  assert.equal(grants['subscribe.spent'], 1);

  assert.equal(await summary(page, 'users_with_credentials'), 1);
  assert.equal(await summary(page, 'available_sends.form'), 3);
  assert.equal(await summary(page, 'available_sends.prepay'), 3);
  const held = await page.$eval(`tr[data-template="${SUBSCRIBE}"]`, (el) => Number(el.dataset.count));
  assert.equal(held, 2);
  // The long-term template counts apart: one subscriber, two sends, nothing spent.
  const subscribers = await page.$eval(`tr[data-template="${LONG_TERM}"]`, (el) => Number(el.dataset.subscribers));
  assert.equal(subscribers, 1);
  const longTerm = await totals(page, 'subscribe-long-term');
  assert.equal(longTerm['subscribe.long_term.sent'], 2);
  assert.equal(longTerm['subscribe.long_term.accepted'], 1);
  // WeChat's quota per send API: the two template sends and one subscribe send.
  const quota = await page.$$eval('tr[data-quota]', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.quota, Number(r.dataset.used)])),
  );
  assert.deepEqual(quota, { template: 2, subscribe: 3, official_account: 0, official_account_subscribe: 0 });

  // Each chart is drawn, not just counted.
  const canvases = await page.$$eval('[data-chart] canvas', (all) => all.length);
  assert.ok(canvases >= 4, `${canvases} charts drawn`);
  // The key left the address bar for this tab's storage.
  assert.equal(new URL(page.url()).hash, '');
  const kept = await page.evaluate(() => Object.values(sessionStorage));
  assert.deepEqual(kept, [service.adminKey]);

  await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await close();
});

test('on a phone-width screen everything fits in one column', async () => {
  const { page, problems, close } = await openPage({ width: 360, height: 740 });
  await page.goto(`${service.baseUrl}/dashboard#key=${service.adminKey}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${overflow}px wider than the screen`);
  const widths = await page.$$eval('[data-chart] canvas', (all) => all.map((c) => c.getBoundingClientRect().width));
  assert.ok(widths.every((w) => w > 200 && w <= 360), `chart widths ${widths}`);
  await page.screenshot({ path: path.join(SHOTS, 'dashboard-phone.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await close();
});

test('a wrong key, or one without the report scope, says so; a typed key then works', async () => {
  const { page, close } = await openPage({ width: 1024, height: 800 });
  await page.goto(`${service.baseUrl}/dashboard#key=not-a-key-of-this-service`);
  await page.waitForSelector('body[data-state="needs-key"][data-key-error="unauthorized"]');
  assert.match(await page.textContent('#key-error'), /not valid/);

  await page.fill('#key-input', COLLECT_ONLY);
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('body[data-state="needs-key"][data-key-error="forbidden"]');
  assert.match(await page.textContent('#key-error'), /report scope/);

  await page.fill('#key-input', service.adminKey);
  await page.press('#key-input', 'Enter');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 });
  assert.equal((await totals(page, 'credentials-form'))['collected.form'], 5);
  await close();
});

test('the page and its assets come from the binary, under a strict content security policy', async () => {
  for (const asset of ['/dashboard', '/dashboard/assets/dashboard.js', '/dashboard/assets/uPlot.iife.min.js']) {
    const res = await fetch(service.baseUrl + asset);
    assert.equal(res.status, 200, asset);
    assert.match(res.headers.get('content-security-policy'), /default-src 'self'/, asset);
  }
  const licence = await fetch(`${service.baseUrl}/dashboard/assets/uPlot.LICENSE`);
  assert.match(await licence.text(), /MIT/);
  const missing = await fetch(`${service.baseUrl}/dashboard/assets/nothing.js`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).code, 'not_found');
});
