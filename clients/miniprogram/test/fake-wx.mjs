// A fake of the `wx` global, as much of it as the client uses. Two modes:
// - `service` (an http://host:port of formid-ledger in sandbox mode):
//   wx.request goes over HTTP with node's fetch, wx.login gets a real code
//   from the simulator (POST /sandbox/login-codes) and
//   wx.requestSubscribeMessage lets the simulator play the user
//   (POST /sandbox/subscriptions), so codes and grants are real;
// - `handler` (no server): wx.request answers from handler(request), or
//   from defaults shaped like the service's answers when it returns nothing.
// Either way: storage is a Map (shareable, to "restart" the app over the
// same storage), hideApp() fires the wx.onAppHide handlers, failNext(n)
// makes the next n requests fail without being sent, loseNext(n) sends
// them and then fails (the answer is lost), and `requests` logs every call.

export function createFakeWx(options = {}) {
  const { service, handler, openid = 'oFakeUser', storage = new Map(), answer = () => 'accept' } = options;
  const hideHandlers = new Set();
  let failing = 0;
  let losing = 0;
  let codes = 0;
  let tokens = 0;

  const wx = {
    /** Every wx.request: { method, path, data, header, status } (status 0: failed). */
    requests: [],
    /** Every wx.login and wx.requestSubscribeMessage call, by name. */
    calls: [],
    inFlight: 0,
    maxInFlight: 0,
    storage,

    failNext(n) {
      failing = n;
    },
    loseNext(n) {
      losing = n;
    },
    hideApp() {
      for (const fn of hideHandlers) fn();
    },
    /** The logged requests to one path. */
    posts(path) {
      return wx.requests.filter((r) => r.path === path);
    },

    request({ url, method = 'GET', data, header = {}, success, fail }) {
      const path = new URL(url).pathname;
      const entry = {
        method,
        path,
        data: data === undefined ? undefined : clone(data),
        header: { ...header },
        status: 0,
      };
      wx.requests.push(entry);
      wx.inFlight++;
      wx.maxInFlight = Math.max(wx.maxInFlight, wx.inFlight);
      const done = (fn, arg) => {
        wx.inFlight--;
        fn && fn(arg);
      };
      if (failing > 0) {
        failing--;
        setImmediate(() => done(fail, { errMsg: 'request:fail timeout' }));
        return;
      }
      const lose = losing > 0;
      if (lose) losing--;
      answerRequest({ url, path, method, data, header })
        .then((res) => {
          if (res.fail || lose) {
            done(fail, {
              errMsg: lose ? 'request:fail socket closed' : 'request:fail ' + (res.errMsg || 'network'),
            });
            return;
          }
          entry.status = res.statusCode;
          entry.response = res.data;
          done(success, {
            statusCode: res.statusCode,
            data: res.data,
            header: res.header || {},
            errMsg: 'request:ok',
          });
        })
        .catch((err) => done(fail, { errMsg: 'request:fail ' + err.message }));
    },

    login({ success, fail }) {
      wx.calls.push('login');
      const got = service
        ? sandbox('/sandbox/login-codes', { openid })
        : Promise.resolve({ code: `code-${++codes}` });
      got.then(
        (body) => success({ code: body.code, errMsg: 'login:ok' }),
        (err) => fail({ errMsg: 'login:fail ' + err.message }),
      );
    },

    requestSubscribeMessage({ tmplIds, success, fail }) {
      wx.calls.push('requestSubscribeMessage');
      const wanted = Object.fromEntries(tmplIds.map((t) => [t, answer(t)]));
      if (Object.values(wanted).includes('fail')) {
        setImmediate(() => fail({ errMsg: 'requestSubscribeMessage:fail cancel', errCode: 20004 }));
        return;
      }
      const got = service
        ? sandbox('/sandbox/subscriptions', { openid, results: wanted })
        : Promise.resolve({ errMsg: 'requestSubscribeMessage:ok', ...wanted });
      got.then(success, (err) => fail({ errMsg: 'requestSubscribeMessage:fail ' + err.message }));
    },

    // wx storage keeps what JSON keeps, and answers '' for a missing key.
    getStorageSync: (key) => (storage.has(key) ? clone(storage.get(key)) : ''),
    setStorageSync: (key, value) => void storage.set(key, clone(value)),
    removeStorageSync: (key) => void storage.delete(key),

    onAppHide: (fn) => void hideHandlers.add(fn),
    offAppHide: (fn) => void hideHandlers.delete(fn),
    hideHandlerCount: () => hideHandlers.size,
  };

  async function sandbox(path, body) {
    const res = await fetch(service + path, { method: 'POST', body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }

  async function answerRequest(req) {
    if (service) {
      const res = await fetch(service + req.path, {
        method: req.method,
        headers: req.header,
        body: req.data === undefined ? undefined : JSON.stringify(req.data),
      });
      const text = await res.text();
      let data = text;
      try {
        data = JSON.parse(text);
      } catch {
        // not JSON: wx.request hands the text over as is
      }
      return { statusCode: res.status, data, header: Object.fromEntries(res.headers) };
    }
    const res = handler ? await handler(req) : undefined;
    return res || defaultAnswer(req);
  }

  // Answers shaped like the service's, for handler mode.
  function defaultAnswer(req) {
    if (req.path === '/v1/sessions') {
      return { statusCode: 201, data: { token: `st1.token-${++tokens}`, openid, expires_in: 604800 } };
    }
    if (req.path === '/v1/credentials') {
      const n = req.data.form_ids.length;
      return {
        statusCode: 200,
        data: { accepted: n, duplicates: 0, evicted: 0, rejected: [], available_sends: n },
      };
    }
    if (req.path === '/v1/subscriptions') {
      const granted = {};
      for (const [k, v] of Object.entries(req.data.results))
        if (k !== 'errMsg' && v === 'accept') granted[k] = 1;
      return { statusCode: 200, data: { granted, ignored: [], source: 'client' } };
    }
    return { statusCode: 404, data: { code: 'not_found', message: req.path } };
  }

  return wx;
}

function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Timers for unit tests: timeouts run on the next turn and record their
 * delays; intervals are recorded and ticked by hand. */
export function fakeTimers() {
  const timers = {
    delays: [],
    intervals: [],
    setTimeout(fn, ms) {
      timers.delays.push(ms);
      return setImmediate(fn);
    },
    clearTimeout(id) {
      clearImmediate(id);
    },
    setInterval(fn, ms) {
      const interval = { fn, ms, cleared: false };
      timers.intervals.push(interval);
      return interval;
    },
    clearInterval(interval) {
      interval.cleared = true;
    },
    /** Runs every live interval's callback once. */
    tick() {
      for (const i of timers.intervals) if (!i.cleared) i.fn();
    },
  };
  return timers;
}
