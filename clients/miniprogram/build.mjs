// Builds dist/index.cjs (CommonJS, for `require` and mini-program runtimes)
// from src/index.mjs. The source has no imports and exports only with
// `export const|function|class NAME` at the start of a line, so the build
// strips those keywords and adds one `module.exports`. `node build.mjs`
// writes the file; test/package.test.mjs checks it is up to date.

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
export const SOURCE = here('./src/index.mjs');
export const TARGET = here('./dist/index.cjs');

/** The CommonJS text for an ES module source. */
export function render(source) {
  const names = [];
  const body = source.replace(
    /^export (const|function|class|async function) ([A-Za-z_$][\w$]*)/gm,
    (_, what, name) => {
      names.push(name);
      return `${what} ${name}`;
    },
  );
  if (/^\s*(import|export)\b/m.test(body)) {
    throw new Error('src/index.mjs: only `export const|function|class NAME` can be built');
  }
  return (
    '// Generated from src/index.mjs by build.mjs: edit the source, then run `node build.mjs`.\n' +
    "'use strict';\n\n" +
    body.trimEnd() +
    `\n\nmodule.exports = { ${names.join(', ')} };\n`
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(TARGET, render(readFileSync(SOURCE, 'utf8')));
  console.log(`wrote ${TARGET}`);
}
