// Tests of componentize.mjs's patch of componentize-js's bindings:
// `node --test host/src/build/componentize.test.mjs` (run by
// tests/tests/languages.rs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  GENERATED_DEBUG_LOG,
  GENERATED_UTF8_ENCODE,
  UTF8_ENCODE,
  patchBindings,
} from './componentize.mjs';

/** The encoder defined by `source`, with the bindings' `TEXT_ENCODER_UTF8` in scope. */
function encoder(source) {
  return new Function('TEXT_ENCODER_UTF8', `${source}\nreturn _utf8AllocateAndEncode;`)(
    new TextEncoder(),
  );
}

/** A linear memory and a bump `realloc` that records each allocation. */
function memory() {
  const mem = { buffer: new ArrayBuffer(1 << 16), allocations: [] };
  let next = 8;
  mem.realloc = (oldPtr, oldLen, align, len) => {
    assert.equal(oldPtr, 0);
    assert.equal(oldLen, 0);
    assert.equal(align, 1);
    mem.allocations.push(len);
    const ptr = next;
    next += len;
    return ptr;
  };
  return mem;
}

/** What lowering `s` with `encode` allocates and writes. */
function lower(encode, s) {
  const mem = memory();
  const { ptr, len } = encode(s, mem.realloc, mem);
  return { len, allocations: mem.allocations, bytes: [...new Uint8Array(mem.buffer, ptr, len)] };
}

const STRINGS = [
  '',
  'a',
  'Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln',
  'https://provider.example/userinfo?x=1&y=%20',
  'Zoë Ångström',
  '€ ₿ 中文 日本語',
  '😀 𝄞 astral',
  '\ud800', // a lone high surrogate
  '\udc00', // a lone low surrogate
  '\ud800x\udbff', // lone surrogates around a letter
  '\udc00\ud800', // a low before a high: two lone ones
  '\u0000\u007f\u0080\u07ff\u0800\uffff',
  'x'.repeat(10_000),
];

test('the replacement allocates and writes exactly what the generated encoder does', () => {
  const generated = encoder(GENERATED_UTF8_ENCODE);
  const replacement = encoder(UTF8_ENCODE);
  for (const s of STRINGS) {
    const want = lower(generated, s);
    assert.deepEqual(lower(replacement, s), want, JSON.stringify(s));
    assert.deepEqual(want.bytes, [...Buffer.from(s.toWellFormed(), 'utf8')], JSON.stringify(s));
  }
});

/** What `f` throws (it must throw). */
function thrown(f) {
  try {
    f();
  } catch (e) {
    return e;
  }
  assert.fail(`${f} did not throw`);
}

test('the replacement refuses a non-string as the generated encoder does', () => {
  const generated = encoder(GENERATED_UTF8_ENCODE);
  const replacement = encoder(UTF8_ENCODE);
  for (const value of [undefined, null, 42, {}, ['a']]) {
    const mem = memory();
    const want = thrown(() => generated(value, mem.realloc, mem));
    const got = thrown(() => replacement(value, mem.realloc, mem));
    assert.ok(want instanceof TypeError);
    assert.deepEqual([got.constructor, got.message], [want.constructor, want.message]);
    assert.deepEqual(mem.allocations, []);
  }
});

/** The export's call of the guest's function, as generated and as patched. */
const GENERATED_CALL = `    const hostRet16 = await fetchUserProfile(arg0, {
      n: BigInt(f(1)),
    });`;
const PATCHED_CALL = `    let hostRet16 = fetchUserProfile(arg0, {
      n: BigInt(f(1)),
    });
    if (hostRet16 !== null && (typeof hostRet16 === 'object' || typeof hostRet16 === 'function') && 'then' in hostRet16) hostRet16 = await hostRet16;`;

/** An export wrapper shaped as generated, calling the guest's function with `call`. */
function exportWith(call) {
  return `async function export_fetchUserProfile(arg0) {
  let ret;
  try {
${call}
    ret = { tag: 'ok', val: f(hostRet16) };
  } catch (e) {
    ret = { tag: 'err', val: e };
  }
  return ret;
}`;
}

/**
 * Bindings shaped as componentize-js 0.23.0 generates them, cut down, with
 * the encoder `encode`, with or without the `_debugLog` calls, and the
 * export's call `call`.
 */
function bindings(encode, debugCalls, call = GENERATED_CALL) {
  const calls = (...lines) => (debugCalls ? lines.map((l) => `${l}\n`).join('') : '');
  return `const TEXT_ENCODER_UTF8 = new TextEncoder();

${encode}


${GENERATED_DEBUG_LOG}

function send(arg0) {
  var encodeRes = _utf8AllocateAndEncode(arg0, $realloc, $memory);
  var ptr2= encodeRes.ptr;
  var len2 = encodeRes.len;
${calls(
  "  _debugLog('[Instruction::CallWasm] enter', {",
  "    funcName: 'send',",
  '    paramCount: 8,',
  '  });',
)}  ret = call(ptr2, len2);
${calls(
  "  _debugLog(' [Instruction::CallInterface] (sync, @ enter)');",
  `      _debugLog("ERROR: invalid value (expected result as object with 'tag' member)", { value: variant39, valueType: typeof variant39});`,
)}  return ret;
}

${exportWith(call)}
`;
}
const BINDINGS = bindings(GENERATED_UTF8_ENCODE, true);

test('the patch replaces the encoder, removes every _debugLog call and the await of a non-thenable, nothing else', () => {
  const patched = patchBindings(BINDINGS);
  assert.equal(patched, bindings(UTF8_ENCODE, false, PATCHED_CALL));
  assert.ok(!patched.includes('charCodeAt'));
});

/**
 * The export defined by `call`, around the guest's function `guest`;
 * `lowering` sees the guest's result where the export lowers it.
 */
function exportAround(call, guest, lowering = (x) => x) {
  return new Function('fetchUserProfile', 'f', `${exportWith(call)}\nreturn export_fetchUserProfile;`)(
    guest,
    lowering,
  );
}

test('the patched export returns what the generated one does, whatever the guest returns or throws', async () => {
  const thenable = (value) => ({ then: (resolve) => resolve(value) });
  const callableThenable = Object.assign(() => 'called', { then: (resolve) => resolve('via then') });
  const failure = new Error('no profile');
  const plainFunction = () => 'a plain function';
  const guests = [
    () => ({ userId: 'u-1', email: 'a@example.com' }),
    () => Promise.resolve({ userId: 'u-2' }),
    () => Promise.reject(failure),
    () => thenable({ userId: 'u-3' }),
    () => callableThenable,
    () => plainFunction,
    () => {
      throw failure;
    },
    () => null,
    () => undefined,
    () => 42,
    () => 'text',
    () => ({ then: 'not callable', userId: 'u-4' }),
  ];
  for (const guest of guests) {
    const calls = [];
    const recording = (...args) => {
      calls.push(args);
      return guest();
    };
    const want = await exportAround(GENERATED_CALL, recording)('token');
    const got = await exportAround(PATCHED_CALL, recording)('token');
    assert.deepEqual(got, want, guest.toString());
    assert.deepEqual(calls[0], calls[1]);
    assert.deepEqual(calls[0], ['token', { n: 1n }]);
  }
});

test('the patched export lowers a synchronous result at once, the generated one after pending jobs', async () => {
  for (const [call, want] of [
    [PATCHED_CALL, ['lowered', 'returned', 'job']],
    [GENERATED_CALL, ['returned', 'job', 'lowered']],
  ]) {
    const order = [];
    const guest = () => {
      queueMicrotask(() => order.push('job'));
      return { userId: 'u-1' };
    };
    const lowering = (x) => {
      if (typeof x === 'object') order.push('lowered');
      return x;
    };
    const pending = exportAround(call, guest, lowering)('token');
    order.push('returned');
    await pending;
    assert.deepEqual(order, want);
  }
});
