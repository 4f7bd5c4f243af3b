// The dashboard's app picker in a real headless Chromium: a service with an
// apps file (two mini-programs, the simulator playing both), different data
// in each app; the page shows the default app's reports first, and the
// other app's once it is picked.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

import { startService, startSimulator } from '../../clients/miniprogram/test/service.mjs';

const APPS = `
[[apps]]
name = "default"
[apps.miniprogram]
appid = "wxsandbox"
secret_env = "DEFAULT_SECRET"

[[apps]]
name = "news"
[apps.miniprogram]
appid = "wxnews"
secret_env = "NEWS_SECRET"
`;

let simulator;
let service;
let browser;

before(async () => {
  simulator = await startSimulator({ apps: ['wxnews:news-secret'] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'formid-apps-'));
  const file = path.join(dir, 'apps.toml');
  writeFileSync(file, APPS);
  service = await startService({
    simulator,
    env: {
      APPS_FILE: file,
      DEFAULT_SECRET: 'sandbox-secret',
      NEWS_SECRET: 'news-secret',
      WECHAT_API_BASE: `${simulator.baseUrl}/sandbox/wechat`,
      SESSION_SECRET: randomBytes(32).toString('hex'),
    },
  });
  // One formId in default, three in news, for the same user.
  const openid = 'oPicker';
  for (const [app, appid, count] of [
    ['default', 'wxsandbox', 1],
    ['news', 'wxnews', 3],
  ]) {
    const { form_ids } = await service.sandbox('/sandbox/form-ids', { openid, count, appid });
    await service.admin(`/v1/apps/${app}/credentials`, { method: 'POST', body: { openid, form_ids } });
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (service) await service.stop();
  if (simulator) await simulator.stop();
});

const available = (page) =>
  page.$eval('[data-summary="available_sends.form"]', (el) => Number(el.dataset.value));

test('the app picker lists the apps and switches every figure to the one picked', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => problems.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));

  await page.goto(`${service.baseUrl}/dashboard#key=${service.adminKey}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 });
  assert.equal(await page.isVisible('#app-select'), true);
  const options = await page.$$eval('#app-select option', (all) => all.map((o) => o.value));
  assert.deepEqual(options, ['default', 'news']);
  assert.equal(await page.inputValue('#app-select'), 'default');
  assert.equal(await available(page), 1);

  await page.selectOption('#app-select', 'news');
  await page.waitForFunction(
    () => document.querySelector('[data-summary="available_sends.form"]')?.dataset.value === '3',
    null,
    { timeout: 15_000 },
  );
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 });
  assert.equal(await available(page), 3);
  assert.deepEqual(problems, []);
  await context.close();
});
