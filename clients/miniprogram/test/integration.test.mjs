// The example mini-program and the client against a real formid-ledger
// (sandbox mode, started here from $FORMID_LEDGER_BIN or the newest build): real login codes,
// real formIds and grants from the simulator, results read back through
// the API with an admin key.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, MOCK_FORM_ID } from '../src/index.mjs';
import { createFakeWx } from './fake-wx.mjs';
import { loadMiniProgram } from './mini-program.mjs';
import { startService } from './service.mjs';

const TEMPLATE = 'Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E'; // built into the simulator
const FAST = { baseMs: 5, maxMs: 20 };

let service;
before(async () => {
  service = await startService();
});
after(async () => {
  if (service) await service.stop();
});

const userCredentials = (openid) => service.admin(`/v1/users/${openid}/credentials`);
const formIdsFor = async (openid, count) =>
  (await service.sandbox('/sandbox/form-ids', { openid, count })).form_ids;

/** A client of its own for `openid`, with a fast backoff. */
function clientFor(openid, { storage, ...options } = {}) {
  const wx = createFakeWx({ service: service.baseUrl, openid, storage });
  const errors = [];
  const client = createClient({
    baseUrl: service.baseUrl,
    wx,
    backoff: FAST,
    flushIntervalMs: 0,
    onError: (e) => errors.push(e),
    ...options,
  });
  return { wx, client, errors };
}

test('the example page: three real formIds and a mock one, flushed when the app hides', async (t) => {
  const openid = 'oPageForms';
  const wx = createFakeWx({ service: service.baseUrl, openid });
  const { app, page } = loadMiniProgram({ wx, config: { ledgerBaseUrl: service.baseUrl } });
  t.after(() => app.ledger.destroy()); // even when an assertion fails
  const real = await formIdsFor(openid, 3);
  for (const formId of [real[0], MOCK_FORM_ID, real[1], real[2]]) {
    page.onSubmit({ type: 'submit', detail: { formId, value: { note: 'hi' } } });
  }
  assert.deepEqual(app.ledger.pending(), { formIds: 3, subscriptions: 0 }, 'the mock id never queued');
  assert.equal(wx.requests.length, 0, 'nothing sent before the app hides');

  wx.hideApp();
  const result = await app.ledger.flush(); // runs after the flush the hide started
  assert.equal(result.ok, true);
  assert.deepEqual(result.pending, { formIds: 0, subscriptions: 0 });
  const posts = wx.posts('/v1/credentials');
  assert.equal(posts.length, 1);
  assert.deepEqual(posts[0].data, { form_ids: real });
  assert.deepEqual(posts[0].response, {
    accepted: 3,
    duplicates: 0,
    evicted: 0,
    rejected: [],
    available_sends: 3,
  });
  assert.equal((await userCredentials(openid)).available_sends, 3);
});

test('the example page: "Notify me" grants a subscribe message the service then holds', async (t) => {
  const openid = 'oPageGrant';
  const wx = createFakeWx({ service: service.baseUrl, openid });
  const { app, page } = loadMiniProgram({ wx, config: { ledgerBaseUrl: service.baseUrl } });
  t.after(() => app.ledger.destroy()); // even when an assertion fails
  await page.onNotifyTap();
  assert.equal(page.data.notify, 'accept');
  assert.deepEqual(
    wx.posts('/v1/subscriptions').map((r) => r.status),
    [200],
  );
  assert.deepEqual((await userCredentials(openid)).subscriptions, { [TEMPLATE]: 1 });

  // The client's own answer: the user's choice and what the service said.
  const out = await app.ledger.requestSubscribe([TEMPLATE]);
  assert.deepEqual(out.answer, { errMsg: 'requestSubscribeMessage:ok', [TEMPLATE]: 'accept' });
  assert.deepEqual(out.service, { granted: { [TEMPLATE]: 2 }, long_term: [], ignored: [], source: 'client' });
  assert.equal(out.queued, false);
  assert.deepEqual((await userCredentials(openid)).subscriptions, { [TEMPLATE]: 2 });
});

test('a flush that fails twice, then gets through: nothing lost, nothing posted twice', async () => {
  const openid = 'oFlaky';
  const { wx, client, errors } = clientFor(openid, { maxRetries: 3 });
  await client.login();
  const real = await formIdsFor(openid, 3);
  real.forEach((id) => client.collectFormId(id));
  wx.failNext(2);
  const [result, again] = await Promise.all([client.flush(), client.flush()]);
  assert.equal(result.ok, true);
  assert.equal(again.ok, true);
  assert.deepEqual(
    wx.posts('/v1/credentials').map((r) => [r.status, r.data.form_ids]),
    [
      [0, real],
      [0, real],
      [200, real],
    ],
  );
  assert.equal(wx.maxInFlight, 1);
  assert.equal(wx.posts('/v1/credentials')[2].response.duplicates, 0);
  assert.equal((await userCredentials(openid)).available_sends, 3);
  assert.deepEqual(errors, []);
  client.destroy();
});

test('an answer lost after the service stored the batch: the resend finds duplicates, the ledger holds each once', async () => {
  const openid = 'oLostAnswer';
  const { wx, client } = clientFor(openid);
  await client.login();
  const real = await formIdsFor(openid, 3);
  real.forEach((id) => client.collectFormId(id));
  wx.loseNext(1);
  assert.equal((await client.flush()).ok, true);
  const posts = wx.posts('/v1/credentials');
  assert.equal(posts.length, 2);
  assert.deepEqual(posts[1].response, {
    accepted: 0,
    duplicates: 3,
    evicted: 0,
    rejected: [],
    available_sends: 3,
  });
  assert.equal((await userCredentials(openid)).available_sends, 3);
  client.destroy();
});

test('a token the service refuses: one new login, then the post goes through', async () => {
  const openid = 'oStaleToken';
  const storage = new Map([
    ['formid-ledger:session', { token: 'st1.garbage.0.forged', openid, expiresAt: Date.now() + 3600_000 }],
  ]);
  const { wx, client, errors } = clientFor(openid, { storage });
  const real = await formIdsFor(openid, 2);
  real.forEach((id) => client.collectFormId(id));
  assert.equal((await client.flush()).ok, true);
  assert.deepEqual(
    wx.requests.map((r) => [r.path, r.status]),
    [
      ['/v1/credentials', 401],
      ['/v1/sessions', 201],
      ['/v1/credentials', 200],
    ],
  );
  assert.equal(wx.posts('/v1/credentials')[0].header.Authorization, 'Bearer st1.garbage.0.forged');
  assert.match(storage.get('formid-ledger:session').token, /^st2\./);
  assert.notEqual(storage.get('formid-ledger:session').token, 'st1.garbage.0.forged');
  assert.equal((await userCredentials(openid)).available_sends, 2);
  assert.deepEqual(errors, []);
  client.destroy();
});

test('a grant and formIds kept through a killed app reach the service on the next launch', async () => {
  const openid = 'oRestart';
  const storage = new Map();
  const first = clientFor(openid, { storage, maxRetries: 1 });
  await first.client.login();
  const real = await formIdsFor(openid, 2);
  real.forEach((id) => first.client.collectFormId(id));
  first.wx.failNext(1000); // the network is gone
  const out = await first.client.requestSubscribe([TEMPLATE]);
  assert.equal(out.answer[TEMPLATE], 'accept', 'the user said yes');
  assert.equal(out.queued, true);
  assert.deepEqual(first.client.pending(), { formIds: 2, subscriptions: 1 });
  first.client.destroy(); // killed
  assert.deepEqual(await userCredentials(openid), {
    ...(await userCredentials(openid)),
    available_sends: 0,
    subscriptions: {},
  });

  const second = clientFor(openid, { storage });
  const result = await second.client.flush();
  assert.equal(result.ok, true);
  assert.equal(second.wx.posts('/v1/sessions').length, 0, 'the stored token still works');
  const held = await userCredentials(openid);
  assert.equal(held.available_sends, 2);
  assert.deepEqual(held.subscriptions, { [TEMPLATE]: 1 });
  second.client.destroy();
});
