// The client against a fake wx.request (no server): mock ids, batching,
// backoff, re-login, refused batches, Retry-After, persistence across a
// restart, one flush at a time, and the subscribe popup.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, isMockFormId, backoffDelay, LedgerError, MOCK_FORM_ID } from '../src/index.mjs';
import { createFakeWx, fakeTimers } from './fake-wx.mjs';

const BASE = 'https://ledger.test';
const T1 = 'Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E';

/** A client over a fake wx, with fake timers and a fixed jitter. */
function setup({ handler, storage, ...options } = {}) {
  const wx = createFakeWx({ handler, storage });
  const timers = fakeTimers();
  const errors = [];
  const client = createClient({
    baseUrl: BASE,
    wx,
    timers,
    random: () => 0.5,
    flushIntervalMs: 0,
    backoff: { baseMs: 100, maxMs: 1000 },
    onError: (e) => errors.push(e),
    ...options,
  });
  return { wx, timers, errors, client };
}

const ids = (n, prefix = 'fid') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const submit = (formId) => ({ type: 'submit', detail: { formId, value: {} } });
const postedIds = (wx) =>
  wx
    .posts('/v1/credentials')
    .filter((r) => r.status === 200)
    .flatMap((r) => r.data.form_ids);

test('mock formIds are dropped locally, real ones queued once', async () => {
  for (const mock of [
    MOCK_FORM_ID,
    'undefined',
    'null',
    '',
    undefined,
    null,
    42,
    'requestFormId:fail timeout',
  ]) {
    assert.equal(isMockFormId(mock), true, String(mock));
  }
  assert.equal(isMockFormId('f7a1c0de'), false);

  const { wx, client } = setup();
  assert.equal(client.collectFormId(submit(MOCK_FORM_ID)), false);
  assert.equal(client.collectFormId(submit('requestFormId:fail:deny')), false);
  assert.equal(client.collectFormId({ detail: {} }), false);
  assert.equal(client.collectFormId(undefined), false);
  assert.equal(client.collectFormId(submit('real1')), true);
  assert.equal(client.collectFormId(submit('real1')), false, 'the same id twice is queued once');
  assert.equal(client.collectFormId('real2'), true, 'a bare id works too');
  assert.deepEqual(client.pending(), { formIds: 2, subscriptions: 0 });

  const result = await client.flush();
  assert.deepEqual(result, {
    ok: true,
    acknowledged: 2,
    dropped: 0,
    pending: { formIds: 0, subscriptions: 0 },
  });
  assert.deepEqual(postedIds(wx), ['real1', 'real2']);
  assert.equal(wx.posts('/v1/credentials')[0].header.Authorization, 'Bearer st1.token-1');
});

test('batches carry at most batchSize (≤ 100) items; a full batch flushes by itself', async () => {
  const { wx, client } = setup();
  ids(250).forEach((id) => client.collectFormId(id));
  await client.flush();
  const sizes = wx.posts('/v1/credentials').map((r) => r.data.form_ids.length);
  assert.deepEqual(sizes, [100, 100, 50]);
  assert.deepEqual(postedIds(wx), ids(250), 'in order, each once');

  const capped = setup({ batchSize: 500 });
  ids(150).forEach((id) => capped.client.collectFormId(id));
  await capped.client.flush();
  assert.deepEqual(
    capped.wx.posts('/v1/credentials').map((r) => r.data.form_ids.length),
    [100, 50],
  );

  const small = setup({ batchSize: 3 });
  ['a', 'b'].forEach((id) => small.client.collectFormId(id));
  assert.equal(small.wx.requests.length, 0, 'below a batch nothing is sent');
  small.client.collectFormId('c');
  await small.client.flush();
  assert.deepEqual(
    small.wx.posts('/v1/credentials').map((r) => r.data.form_ids),
    [['a', 'b', 'c']],
  );
});

test('transient failures are retried on a capped exponential schedule, then kept', async () => {
  assert.equal(
    backoffDelay(0, { baseMs: 100, maxMs: 1000 }, () => 0),
    50,
  );
  assert.equal(
    backoffDelay(10, { baseMs: 100, maxMs: 1000 }, () => 0.999999),
    1000,
  );

  const { wx, timers, errors, client } = setup({
    maxRetries: 5,
    handler: (req) =>
      req.path === '/v1/credentials' ? { statusCode: 503, data: { code: 'store_unavailable' } } : undefined,
  });
  client.collectFormId('x1');
  const result = await client.flush();
  // c = min(1000, 100·2^n), jittered to c/2 + 0.5·c/2.
  assert.deepEqual(timers.delays, [75, 150, 300, 600, 750]);
  assert.equal(wx.posts('/v1/credentials').length, 6, 'the first try and 5 retries');
  assert.equal(result.ok, false);
  assert.deepEqual(result.pending, { formIds: 1, subscriptions: 0 });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, 'unavailable');
  assert.equal(errors[0].status, 503);
  assert.equal(errors[0].dropped, false);

  // Network failures (wx.request fail) are retried the same way.
  const net = setup({ maxRetries: 2 });
  net.client.collectFormId('y1');
  await net.client.login();
  net.wx.failNext(2);
  const ok = await net.client.flush();
  assert.equal(ok.ok, true);
  assert.deepEqual(net.timers.delays, [75, 150]);
  assert.deepEqual(
    net.wx.posts('/v1/credentials').map((r) => r.status),
    [0, 0, 200],
  );
});

test('a 401 logs in again once and resends; a second 401 keeps the items', async () => {
  let refuse = 1;
  const once = setup({
    handler: (req) => {
      if (req.path === '/v1/credentials' && refuse-- > 0)
        return { statusCode: 401, data: { code: 'unauthorized' } };
    },
  });
  once.client.collectFormId('a1');
  const result = await once.client.flush();
  assert.equal(result.ok, true);
  assert.deepEqual(
    once.wx.requests.map((r) => [r.path, r.status]),
    [
      ['/v1/sessions', 201],
      ['/v1/credentials', 401],
      ['/v1/sessions', 201],
      ['/v1/credentials', 200],
    ],
  );
  assert.equal(once.wx.posts('/v1/credentials')[1].header.Authorization, 'Bearer st1.token-2');
  assert.equal(once.wx.storage.get('formid-ledger:session').token, 'st1.token-2');

  const always = setup({
    handler: (req) =>
      req.path === '/v1/credentials' ? { statusCode: 401, data: { code: 'unauthorized' } } : undefined,
  });
  always.client.collectFormId('a1');
  const refused = await always.client.flush();
  assert.equal(refused.ok, false);
  assert.equal(always.wx.posts('/v1/credentials').length, 2, 'no loop');
  assert.equal(always.wx.posts('/v1/sessions').length, 2);
  assert.deepEqual(
    always.errors.map((e) => e.kind),
    ['unauthorized'],
  );
  assert.deepEqual(refused.pending, { formIds: 1, subscriptions: 0 });
});

test('a 400 drops that batch and reports it, without retrying; later batches still go', async () => {
  let calls = 0;
  const { wx, timers, errors, client } = setup({
    batchSize: 2,
    handler: (req) => {
      if (req.path === '/v1/credentials' && calls++ === 0) {
        return { statusCode: 400, data: { code: 'invalid_request', message: 'bad body' } };
      }
    },
  });
  client.collectFormId('b1');
  client.collectFormId('b2'); // a full batch: flushes by itself
  client.collectFormId('b3');
  const result = await client.flush(); // queued behind the one the full batch started
  assert.equal(result.ok, true);
  assert.deepEqual(result.pending, { formIds: 0, subscriptions: 0 });
  assert.deepEqual(
    wx.posts('/v1/credentials').map((r) => [r.data.form_ids, r.status]),
    [
      [['b1', 'b2'], 400],
      [['b3'], 200],
    ],
  );
  assert.deepEqual(timers.delays, [], 'never retried');
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof LedgerError);
  assert.equal(errors[0].kind, 'rejected');
  assert.equal(errors[0].code, 'invalid_request');
  assert.equal(errors[0].dropped, true);
  assert.deepEqual(errors[0].items, ['b1', 'b2']);
  assert.deepEqual(wx.storage.get('formid-ledger:queue'), { formIds: [], subscriptions: [] });

  // Another refusal (a 404 from a wrong baseUrl) is not retried either, but
  // the items stay for a later flush: the batch is not what is wrong.
  const lost = setup({
    handler: (req) => (req.path === '/v1/credentials' ? { statusCode: 404, data: 'no route' } : undefined),
  });
  lost.client.collectFormId('c1');
  const kept = await lost.client.flush();
  assert.equal(kept.ok, false);
  assert.equal(lost.wx.posts('/v1/credentials').length, 1);
  assert.deepEqual(
    lost.errors.map((e) => [e.kind, e.status, e.dropped]),
    [['refused', 404, false]],
  );
  assert.deepEqual(kept.pending, { formIds: 1, subscriptions: 0 });
});

test('a 429 waits what Retry-After says, then the backoff schedule', async () => {
  let limited = 0;
  const { wx, timers, client } = setup({
    handler: (req) => {
      if (req.path !== '/v1/credentials') return;
      limited++;
      if (limited === 1)
        return { statusCode: 429, header: { 'Retry-After': '7' }, data: { code: 'rate_limited' } };
      if (limited === 2)
        return { statusCode: 429, header: { 'retry-after': '0' }, data: { code: 'rate_limited' } };
      if (limited === 3) return { statusCode: 429, data: { code: 'rate_limited' } };
    },
  });
  client.collectFormId('r1');
  const result = await client.flush();
  assert.equal(result.ok, true);
  assert.deepEqual(
    timers.delays,
    [7000, 0, 300],
    'header values as given; without one, retry 3 of the schedule',
  );
  assert.deepEqual(
    wx.posts('/v1/credentials').map((r) => r.status),
    [429, 429, 429, 200],
  );
});

test('nothing is lost when a flush fails: queue kept, persisted, resent after a restart', async () => {
  const storage = new Map();
  const first = setup({ storage, maxRetries: 1 });
  ['k1', 'k2', 'k3'].forEach((id) => first.client.collectFormId(submit(id)));
  await first.client.login();
  first.wx.failNext(1000);
  const failed = await first.client.flush();
  assert.equal(failed.ok, false);
  assert.deepEqual(failed.pending, { formIds: 3, subscriptions: 0 });
  assert.deepEqual(
    storage.get('formid-ledger:queue').formIds.map((f) => f.id),
    ['k1', 'k2', 'k3'],
    'persisted in wx storage',
  );
  first.client.destroy(); // the app is killed

  const second = setup({ storage }); // next launch, same storage
  assert.deepEqual(second.client.pending(), { formIds: 3, subscriptions: 0 });
  const result = await second.client.flush();
  assert.equal(result.ok, true);
  assert.deepEqual(postedIds(second.wx), ['k1', 'k2', 'k3']);
  assert.equal(second.wx.posts('/v1/sessions').length, 0, 'the stored session is reused');
  assert.deepEqual(storage.get('formid-ledger:queue'), { formIds: [], subscriptions: [] });
});

test('formIds older than 7 days are not posted', async () => {
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const { wx, client } = setup({ now: () => clock });
  client.collectFormId('old');
  clock += 7 * 24 * 3600 * 1000 + 1;
  client.collectFormId('new');
  await client.flush();
  assert.deepEqual(postedIds(wx), ['new']);
});

test('one flush in flight at a time; calls meanwhile share the next one', async () => {
  const held = [];
  const { wx, client } = setup({
    handler: (req) =>
      req.path === '/v1/credentials' ? new Promise((resolve) => held.push(resolve)) : undefined,
  });
  const release = async () => {
    while (!held.length) await new Promise((r) => setImmediate(r));
    const [first] = held.splice(0, 1);
    first(undefined); // the default answer
  };
  client.collectFormId('p1');
  const a = client.flush();
  client.collectFormId('p2');
  const b = client.flush();
  const c = client.flush();
  assert.equal(b, c, 'one flush queued behind the running one');
  client.collectFormId('p3');
  await release();
  await release();
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(wx.maxInFlight, 1);
  assert.deepEqual(
    wx.posts('/v1/credentials').map((r) => r.data.form_ids),
    [['p1'], ['p2', 'p3']],
  );
  // The running flush goes on with what was queued meanwhile; the queued
  // one finds nothing left.
  assert.equal(ra.acknowledged, 3);
  assert.equal(rb.acknowledged, 0);
  assert.deepEqual(rb.pending, { formIds: 0, subscriptions: 0 });
});

test('app hide and the interval flush; destroy stops both', async () => {
  const { wx, timers, client } = setup({ flushIntervalMs: 5000 });
  assert.equal(timers.intervals[0].ms, 5000);
  assert.equal(wx.hideHandlerCount(), 1);

  client.collectFormId('h1');
  wx.hideApp();
  await client.flush();
  assert.deepEqual(postedIds(wx), ['h1']);

  client.collectFormId('i1');
  timers.tick();
  await client.flush();
  assert.deepEqual(postedIds(wx), ['h1', 'i1']);

  client.destroy();
  assert.equal(timers.intervals[0].cleared, true);
  assert.equal(wx.hideHandlerCount(), 0);
  assert.equal(client.collectFormId('late'), false);
});

test('destroy ends a flush waiting in backoff; its items stay queued', async () => {
  const wx = createFakeWx({
    handler: (req) => (req.path === '/v1/credentials' ? { statusCode: 503, data: {} } : undefined),
  });
  const client = createClient({
    baseUrl: BASE,
    wx,
    flushIntervalMs: 0,
    backoff: { baseMs: 60_000, maxMs: 60_000 },
  });
  client.collectFormId('d1');
  const flushing = client.flush();
  while (!wx.posts('/v1/credentials').length) await new Promise((r) => setImmediate(r));
  client.destroy();
  const result = await flushing;
  assert.equal(result.ok, false);
  assert.deepEqual(
    wx.storage.get('formid-ledger:queue').formIds.map((f) => f.id),
    ['d1'],
  );
});

test('the session token is kept with its expiry and renewed before it runs out', async () => {
  let clock = 1_000_000;
  const storage = new Map();
  const { wx, client } = setup({ storage, now: () => clock });
  const session = await client.login();
  assert.deepEqual(session, { token: 'st1.token-1', openid: 'oFakeUser', expiresAt: clock + 604800 * 1000 });
  assert.deepEqual(storage.get('formid-ledger:session'), session);
  await client.login();
  assert.equal(wx.posts('/v1/sessions').length, 1, 'reused');
  clock = session.expiresAt - 30_000; // inside the renewal margin
  assert.equal((await client.login()).token, 'st1.token-2');
  assert.equal(wx.calls.filter((c) => c === 'login').length, 2);
});

test('login failures keep the items; each login attempt uses a new wx.login code', async () => {
  let refuse = 2;
  const { wx, errors, client } = setup({
    maxRetries: 3,
    handler: (req) => {
      if (req.path === '/v1/sessions' && refuse-- > 0)
        return { statusCode: 503, data: { code: 'wechat_unavailable' } };
    },
  });
  client.collectFormId('l1');
  assert.equal((await client.flush()).ok, true);
  assert.deepEqual(
    wx.posts('/v1/sessions').map((r) => r.data.code),
    ['code-1', 'code-2', 'code-3'],
  );

  const blocked = setup({
    handler: (req) =>
      req.path === '/v1/sessions' ? { statusCode: 403, data: { code: 'user_blocked' } } : undefined,
  });
  blocked.client.collectFormId('l2');
  const result = await blocked.client.flush();
  assert.equal(result.ok, false);
  assert.deepEqual(result.pending, { formIds: 1, subscriptions: 0 });
  assert.deepEqual(
    blocked.errors.map((e) => [e.kind, e.code]),
    [['login', 'user_blocked']],
  );
  assert.equal(errors.length, 0);
});

test('requestSubscribe opens the popup at once and posts the answer as WeChat returned it', async () => {
  const { wx, client } = setup();
  const pending = client.requestSubscribe([T1]);
  assert.deepEqual(wx.calls, ['requestSubscribeMessage'], 'asked within the tap, before any await');
  const { answer, service, queued } = await pending;
  assert.deepEqual(answer, { errMsg: 'requestSubscribeMessage:ok', [T1]: 'accept' });
  assert.deepEqual(service, { granted: { [T1]: 1 }, ignored: [], source: 'client' });
  assert.equal(queued, false);
  assert.deepEqual(wx.posts('/v1/subscriptions')[0].data, {
    results: { errMsg: 'requestSubscribeMessage:ok', [T1]: 'accept' },
  });
});

test('subscribe answers: non-string fields stripped, empty answers not posted, a cancelled popup rejects', async () => {
  const { wx, client } = setup();
  wx.requestSubscribeMessage = ({ success }) =>
    success({ errMsg: 'requestSubscribeMessage:ok', errCode: 0, [T1]: 'reject' });
  await client.requestSubscribe([T1]);
  assert.deepEqual(wx.posts('/v1/subscriptions')[0].data, {
    results: { errMsg: 'requestSubscribeMessage:ok', [T1]: 'reject' },
  });

  wx.requestSubscribeMessage = ({ success }) => success({ errMsg: 'requestSubscribeMessage:ok' });
  assert.deepEqual(await client.requestSubscribe([T1]), {
    answer: { errMsg: 'requestSubscribeMessage:ok' },
    service: null,
    queued: false,
  });
  assert.equal(wx.posts('/v1/subscriptions').length, 1);

  const cancelled = setup();
  const fake = createFakeWx({ answer: () => 'fail' });
  cancelled.wx.requestSubscribeMessage = fake.requestSubscribeMessage;
  await assert.rejects(cancelled.client.requestSubscribe([T1]), {
    errMsg: 'requestSubscribeMessage:fail cancel',
  });
  assert.equal(cancelled.wx.requests.length, 0);
});

test('a grant whose post fails stays queued across a restart and is posted next launch', async () => {
  const storage = new Map();
  const first = setup({ storage, maxRetries: 0 });
  await first.client.login();
  first.wx.failNext(1);
  const out = await first.client.requestSubscribe([T1]);
  assert.equal(out.queued, true);
  assert.equal(out.service, null);
  assert.equal(storage.get('formid-ledger:queue').subscriptions.length, 1);
  first.client.destroy();

  const second = setup({ storage });
  assert.deepEqual(second.client.pending(), { formIds: 0, subscriptions: 1 });
  await second.client.flush();
  assert.deepEqual(
    second.wx.posts('/v1/subscriptions').map((r) => [r.data.results[T1], r.status]),
    [['accept', 200]],
  );
  assert.deepEqual(second.client.pending(), { formIds: 0, subscriptions: 0 });
});

test('a refused subscribe answer is dropped and handed back as the error', async () => {
  const { errors, client } = setup({
    handler: (req) =>
      req.path === '/v1/subscriptions'
        ? { statusCode: 400, data: { code: 'invalid_request', message: 'results names no template' } }
        : undefined,
  });
  const out = await client.requestSubscribe([T1]);
  assert.equal(out.queued, false);
  assert.equal(out.service, null);
  assert.equal(out.error.kind, 'rejected');
  assert.equal(errors[0], out.error);
});

test('createClient checks its options', () => {
  assert.throws(() => createClient({ baseUrl: BASE }), TypeError);
  assert.throws(() => createClient({ wx: createFakeWx() }), TypeError);
  const memory = createClient({ baseUrl: BASE + '/', wx: { request() {}, login() {} }, flushIntervalMs: 0 });
  assert.equal(memory.collectFormId('m1'), true, 'works without wx storage');
});
