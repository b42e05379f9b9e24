// Runs componentize-js's CLI with the bindings it generates patched:
//
//     node componentize.mjs <componentize-js>/src/cli.js <the CLI's arguments…>
//
// componentize-js splices JavaScript bindings for the WIT world into the
// engine: the export's wrapper that lifts the arguments and lowers the
// result, the imports' wrappers. They run in every call, in SpiderMonkey's
// interpreter (there is no JIT inside wasm), so a loop there costs every
// login. Three things in the generated bindings cost a call work that has
// no effect, and nothing in componentize-js turns them off; `waypass mapper
// build` removes them here (BENCHMARKS.md #17, "Cut: the bindings' string
// lowering"):
//
// - `_utf8AllocateAndEncode`, which lowers every string (the request's URL
//   and headers, each field of the profile), counts the UTF-8 length in a
//   JavaScript loop over the string's UTF-16 units before it encodes with
//   `TextEncoder.encodeInto`. The replacement encodes with
//   `TextEncoder.encode` (native code), then copies the bytes into one
//   allocation of exactly their length: the same allocation, the same bytes
//   (`encode` and `encodeInto` both write a lone surrogate as U+FFFD, the
//   three bytes the loop counted for it), the same error for a non-string.
// - `_debugLog(…)` calls, which build an object to hand to a function that
//   returns at once unless `globalThis.process.env.JCO_DEBUG` is set, and a
//   component has no `process`.
// - The export's `await` of what the guest's function returned. The export
//   is an `async` function (componentize-js's embedding expects a promise
//   from it), and `await` of a value that is not a thenable (a synchronous
//   mapper's profile) still makes a promise, records its async stack and
//   resumes the export in a later job. Now the export awaits only a value
//   that has a `then` property (`'then' in value`: the property `await`
//   reads), and lowers any other value at once. What differs is only when the lowering
//   runs: before, not after, jobs the guest queued and left pending (they
//   still run, as the export's promise settles); a guest that changes its
//   returned profile from such a job was racing its own result already.
//
// The version is pinned (`COMPONENTIZE_JS_VERSION` in javascript.rs): if the
// generated text is not the expected one, the build fails and says so rather
// than build a component with different bindings than the ones measured.
// Tests: `componentize.test.mjs` beside this file.

import { pathToFileURL } from 'node:url';

/** `_utf8AllocateAndEncode` exactly as componentize-js 0.23.0 generates it. */
export const GENERATED_UTF8_ENCODE = `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  // Compute the exact allocation size up front. Some older preview1
  // adapters only support an initial allocation, not a subsequent shrink.
  let len = 0;
  let codepoints = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    codepoints++;
    if (ch < 0x80) { len += 1; }
    else if (ch < 0x800) { len += 2; }
    else if (ch >= 0xd800 && ch <= 0xdbff &&
    i + 1 < s.length &&
    (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      len += 4;
      i++;
    } else { len += 3; }
  }
  const ptr = realloc(0, 0, 1, len);
  const { read, written } = TEXT_ENCODER_UTF8.encodeInto(
  s,
  new Uint8Array(memory.buffer, ptr, len),
  );
  if (read !== s.length || written !== len) {
    throw new Error('failed to encode whole string');
  }
  const res = { ptr, len, codepoints };
  return res;
}`;

/**
 * What replaces it: the bytes encoded natively, then copied into one
 * allocation of their exact length. (`codepoints` is not read by any
 * generated caller; `patchBindings` checks that.)
 */
export const UTF8_ENCODE = `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const len = bytes.length;
  const ptr = realloc(0, 0, 1, len);
  new Uint8Array(memory.buffer, ptr, len).set(bytes);
  return { ptr, len };
}`;

/** `_debugLog` as generated: a no-op without `process.env.JCO_DEBUG`. */
export const GENERATED_DEBUG_LOG = `const _debugLog = (...args) => {
  if (!globalThis?.process?.env?.JCO_DEBUG) { return; }
  console.debug(...args);
};`;

/**
 * A whole-line `_debugLog(…);` statement; its arguments are string
 * literals and object literals of plain variables (no side effects), with
 * parentheses nested at most once (inside a string).
 */
const DEBUG_LOG_CALL = /^[ \t]*_debugLog\((?:[^()]|\([^()]*\))*\);[ \t]*\n/gm;

/** The export's call of the guest's function: `const hostRetN = await f(`. */
const AWAITED_CALL = /const (hostRet\d+) = await ([\w$]+)\(/g;

/**
 * `source` with each `const hostRetN = await f(…);` made
 * `let hostRetN = f(…);` followed by an `await` only of a thenable.
 */
function awaitOnlyThenables(source, unexpected) {
  let out = '';
  let from = 0;
  let count = 0;
  for (const m of source.matchAll(AWAITED_CALL)) {
    if (m.index < from) continue;
    // The call's closing parenthesis: its arguments are variables, object
    // literals and nested calls, never string literals.
    let depth = 0;
    let end = m.index + m[0].length - 1;
    for (; end < source.length; end++) {
      if (source[end] === '(') depth++;
      else if (source[end] === ')' && --depth === 0) break;
    }
    if (depth !== 0 || source[end + 1] !== ';') throw unexpected('an export call without its end');
    const v = m[1];
    const call = source.slice(m.index + m[0].length - m[2].length - 1, end + 1);
    out +=
      source.slice(from, m.index) +
      `let ${v} = ${call};\n` +
      `    if (${v} !== null && (typeof ${v} === 'object' || typeof ${v} === 'function') && 'then' in ${v}) ${v} = await ${v};`;
    from = end + 2;
    count++;
  }
  if (count === 0) throw unexpected('no export awaiting the guest\'s function');
  return out + source.slice(from);
}

/**
 * The generated bindings `source` with the string lowering replaced, the
 * `_debugLog` calls removed and the export awaiting only a thenable. Throws
 * if `source` is not what componentize-js 0.23.0 generates.
 * @param {string} source
 * @returns {string}
 */
export function patchBindings(source) {
  const unexpected = (what) =>
    new Error(
      `waypass: componentize-js generated bindings it does not expect (${what}); ` +
        'the pinned componentize-js version and host/src/build/componentize.mjs disagree',
    );
  if (!source.includes(GENERATED_DEBUG_LOG)) throw unexpected('no `_debugLog` definition');
  let patched = awaitOnlyThenables(source.replace(DEBUG_LOG_CALL, ''), unexpected);
  if (patched.includes('_debugLog(')) throw unexpected('a `_debugLog` call this patch does not remove');
  // A world that lowers no string has no encoder.
  if (patched.includes('_utf8AllocateAndEncode(')) {
    const at = patched.indexOf(GENERATED_UTF8_ENCODE);
    if (at < 0 || patched.indexOf(GENERATED_UTF8_ENCODE, at + 1) >= 0) {
      throw unexpected('`_utf8AllocateAndEncode` is not the expected function');
    }
    patched =
      patched.slice(0, at) + UTF8_ENCODE + patched.slice(at + GENERATED_UTF8_ENCODE.length);
    if (/\.codepoints\b|\bcodepoints\s*[},]/.test(patched)) {
      throw unexpected('a caller reads the encoder result\'s `codepoints`');
    }
  }
  return patched;
}

/** Runs the CLI at `argv[2]` with the rest of `argv`, bindings patched. */
async function main() {
  const [cli, ...args] = process.argv.slice(2);
  if (!cli) throw new Error('usage: node componentize.mjs <componentize-js cli.js> <arguments…>');
  const cliUrl = pathToFileURL(cli);
  // The CLI's `componentize` calls `splicer.spliceBindings` through this
  // object (a plain object, one module instance): replacing the property
  // here patches its result.
  const { splicer } = await import(new URL('../lib/spidermonkey-embedding-splicer.js', cliUrl).href);
  const splice = splicer.spliceBindings;
  splicer.spliceBindings = (...spliceArgs) => {
    const spliced = splice(...spliceArgs);
    return { ...spliced, jsBindings: patchBindings(spliced.jsBindings) };
  };
  process.argv = [process.argv[0], cli, ...args];
  await import(cliUrl.href);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
