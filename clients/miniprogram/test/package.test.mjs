// The package around the code: dist/index.cjs built from the current
// source, the exports map, the README's code being the example's, the
// type declarations naming every export, and no dependencies.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { render, SOURCE, TARGET } from '../build.mjs';
import * as esm from '../src/index.mjs';

const read = (path) => readFileSync(new URL(path, import.meta.url), 'utf8');
const require = createRequire(import.meta.url);

test('dist/index.cjs is built from the current src/index.mjs (run `node build.mjs`)', () => {
  assert.equal(readFileSync(TARGET, 'utf8'), render(readFileSync(SOURCE, 'utf8')));
});

test('the package resolves to the ES module for import and the build for require', async () => {
  const byName = await import('@formid-ledger/miniprogram');
  assert.equal(byName.createClient, esm.createClient);
  const cjs = require('@formid-ledger/miniprogram');
  assert.equal(require.resolve('@formid-ledger/miniprogram'), TARGET);
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(cjs.isMockFormId(cjs.MOCK_FORM_ID), true);
  assert.equal(
    cjs.backoffDelay(3, { baseMs: 100, maxMs: 1000 }, () => 0),
    400,
  );
});

test('package.json: no dependencies, node --test, exports with types', () => {
  const pkg = JSON.parse(read('../package.json'));
  assert.equal(pkg.name, '@formid-ledger/miniprogram');
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.scripts.test, 'node --test test/*.test.mjs');
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    assert.equal(pkg[field], undefined, field);
  }
  assert.deepEqual(pkg.exports['.'], {
    types: './index.d.ts',
    import: './src/index.mjs',
    require: './dist/index.cjs',
  });
});

test("the README's code is the example mini-program's", () => {
  const readme = read('../README.md');
  const blocks = [...readme.matchAll(/```(?:js|html)\n([\s\S]*?)```/g)].map((m) => m[1]);
  for (const file of ['app.js', 'pages/index/index.js', 'pages/index/index.wxml']) {
    assert.ok(blocks.includes(read(`../example/${file}`)), `README.md shows example/${file} as it is`);
  }
});

test('index.d.ts declares every export', () => {
  const dts = read('../index.d.ts');
  for (const name of Object.keys(esm)) {
    assert.match(dts, new RegExp(`export declare (const|function|class) ${name}\\b`), name);
  }
});
