// Starts a real formid-ledger in sandbox mode on a free port, with an admin
// API key, for the integration tests: the binary at $FORMID_LEDGER_BIN, or
// else the newest one cargo built for this checkout (debug or release).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The service binary: $FORMID_LEDGER_BIN, or the newest build in the
 * checkout's target directory (wherever CARGO_TARGET_DIR puts it). */
export function serviceBinary() {
  const fromEnv = process.env.FORMID_LEDGER_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`FORMID_LEDGER_BIN=${fromEnv}: no such file`);
    return fromEnv;
  }
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  let targetDir = path.join(repo, 'target');
  try {
    const metadata = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
      cwd: repo,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    targetDir = JSON.parse(metadata).target_directory;
  } catch {
    // No cargo on PATH: the default target directory.
  }
  const built = ['debug', 'release']
    .map((profile) => path.join(targetDir, profile, 'formid-ledger'))
    .filter((bin) => existsSync(bin))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (built.length === 0) {
    throw new Error(
      `no formid-ledger binary under ${targetDir}: build it (cargo build) or set FORMID_LEDGER_BIN`,
    );
  }
  return built[0];
}

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Spawns the binary with `args` and exactly `env` (plus PATH), and waits
 * until `healthPath` answers 200 at `baseUrl`. */
async function spawnHealthy(args, env, baseUrl, healthPath) {
  const bin = serviceBinary();
  const child = spawn(bin, args, {
    env: { PATH: process.env.PATH, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  let spawnError = null;
  child.once('error', (error) => (spawnError = error));
  const exited = new Promise((resolve) => child.once('exit', resolve));

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (spawnError) throw new Error(`${bin}: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${bin} exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${output}`,
      );
    }
    const status = await fetch(baseUrl + healthPath).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${bin} not healthy on ${baseUrl} after 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  async function stop() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await exited;
  }
  return { stop, output: () => output };
}

/** POSTs `body` to `url`; resolves the parsed answer (throws on non-2xx). */
async function post(url, body) {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

/** The WeChat simulator alone (`formid-ledger sim`), with more
 * mini-programs: `apps` as `APPID:SECRET`. */
export async function startSimulator({ apps = [] } = {}) {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const args = ['sim', '--listen', `127.0.0.1:${port}`, ...apps.flatMap((a) => ['--app', a])];
  const process_ = await spawnHealthy(args, {}, baseUrl, '/sandbox/stats');
  return { baseUrl, control: (path, body) => post(baseUrl + path, body), ...process_ };
}

/** `keys`: more `name:secret:scopes` entries for API_KEYS, beside the
 * generated admin key. Without `env`, the service runs the embedded store
 * (its data in a temporary DATA_DIR, removed at stop) in sandbox mode; `env`
 * adds settings (an apps file, a simulator to call), and `simulator` is
 * where `sandbox()` then posts. */
export async function startService({ keys = [], env = {}, simulator = null } = {}) {
  const port = await freePort();
  const adminKey = 'client-test-' + randomBytes(16).toString('hex');
  const baseUrl = `http://127.0.0.1:${port}`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'formid-data-'));
  // Only what the test means: no WECHAT_* or REDIS_* from this shell.
  const process_ = await spawnHealthy(
    [],
    {
      LISTEN: `127.0.0.1:${port}`,
      DATA_DIR: dataDir,
      API_KEYS: [`test:${adminKey}:admin`, ...keys].join(','),
      ...env,
    },
    baseUrl,
    '/healthz',
  );

  /** A call with the admin key; resolves the parsed body (throws on non-2xx). */
  async function admin(path, { method = 'GET', body } = {}) {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { Authorization: `Bearer ${adminKey}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  }

  /** A simulator control route: the service's own in sandbox mode. */
  const sandbox = (path, body) => post((simulator ? simulator.baseUrl : baseUrl) + path, body);

  async function stop() {
    await process_.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  return { baseUrl, adminKey, admin, sandbox, ...process_, stop, dataDir };
}
