// Runs the example mini-program (example/) the way the WeChat runtime
// does: each file in its own function scope with `require`, `module`,
// `exports`, `wx`, `App`, `Page` and `getApp` injected, and
// `@formid-ledger/miniprogram` resolving to the CommonJS build.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const EXAMPLE = fileURLToPath(new URL('../example/', import.meta.url));
const requireBuild = createRequire(import.meta.url);

/** Loads example/app.js (and runs onLaunch), then the page at `page`.
 * `config` replaces example/config.js. Returns { app, page } where page is
 * an instance with `data` and `setData`. */
export function loadMiniProgram({ wx, config, page = 'pages/index/index' }) {
  let appObject = null;
  let pageDefinition = null;
  const modules = {
    '@formid-ledger/miniprogram': requireBuild('../dist/index.cjs'),
    './config.js': config,
  };
  const globals = {
    wx,
    App: (definition) => {
      appObject = definition;
    },
    Page: (definition) => {
      pageDefinition = definition;
    },
    getApp: () => appObject,
  };
  run('app.js', modules, globals);
  appObject.onLaunch.call(appObject, {});
  run(`${page}.js`, modules, globals);
  const instance = { ...pageDefinition, data: structuredClone(pageDefinition.data || {}) };
  instance.setData = (patch) => Object.assign(instance.data, patch);
  return { app: appObject, page: instance };
}

function run(file, modules, globals) {
  const source = readFileSync(EXAMPLE + file, 'utf8');
  const module = { exports: {} };
  const require = (name) => {
    if (!(name in modules)) throw new Error(`${file}: require(${JSON.stringify(name)}) is not available`);
    return modules[name];
  };
  const names = ['require', 'module', 'exports', ...Object.keys(globals)];
  new Function(...names, source)(require, module, module.exports, ...Object.values(globals));
  return module.exports;
}
