// Tests of the SDK's plain-JavaScript parts under Node: `npm test` here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
const sdk = await import('../waypass-mapper.js');
const { world } = await import('./world-stub.mjs');

const bytes = (text) => new TextEncoder().encode(text);
const answer = (status, body) => {
  world.next = { ok: { status, headers: [['content-type', 'application/json']], body: bytes(body) } };
};
const kindOf = (fn) => {
  try {
    fn();
  } catch (e) {
    return [e.payload.tag, e.payload.val];
  }
  return undefined;
};
const ctx = { connection: 'c', settings: [['userinfo_url', 'https://x.test/u']] };

test('getJson sends a bearer token and returns the JSON body', () => {
  answer(200, '{"sub":"42"}');
  assert.deepEqual(sdk.getJson('https://x.test/u', 't'), { sub: '42' });
  assert.deepEqual(world.requests.at(-1), {
    method: 'get',
    url: 'https://x.test/u',
    headers: [
      ['Authorization', 'Bearer t'],
      ['Accept', 'application/json'],
    ],
    body: undefined,
  });
});

test('statuses and bodies map to errors as in the Rust SDK', () => {
  answer(401, 'bad token');
  assert.deepEqual(kindOf(() => sdk.getJson('u', 't')), ['unauthorized', 'bad token']);
  answer(403, 'nope');
  assert.deepEqual(kindOf(() => sdk.getJson('u', 't')), ['unauthorized', 'nope']);
  answer(500, 'boom');
  assert.deepEqual(kindOf(() => sdk.getJson('u', 't')), ['provider', '500: boom']);
  answer(200, '<html>');
  const [kind, message] = kindOf(() => sdk.getJson('u', 't'));
  assert.equal(kind, 'provider');
  assert.match(message, /^response is not JSON \(SyntaxError: .*\): <html>$/);
  world.next = { ok: { status: 200, headers: [], body: new Uint8Array([0xff, 0x7b, 0x7d]) } };
  assert.equal(kindOf(() => sdk.getJson('u', 't'))[0], 'provider', 'invalid UTF-8 is not JSON');
});

test('host errors become other("http <code>[: <detail>]")', () => {
  world.next = { err: { tag: 'denied', val: 'host not allowed' } };
  assert.deepEqual(kindOf(() => sdk.getJson('u', 't')), ['other', 'http denied: host not allowed']);
  world.next = { err: { tag: 'timeout' } };
  assert.deepEqual(kindOf(() => sdk.getJson('u', 't')), ['other', 'http timeout']);
  world.next = { err: { tag: 'transport', val: 'reset' } };
  assert.throws(
    () => sdk.send({ url: 'u' }),
    (e) => e instanceof sdk.HttpError && e.code === 'transport' && e.describe() === 'transport: reset',
  );
});

test('snippets cut at 512 bytes on a character boundary', () => {
  assert.equal(sdk.snippet(bytes('é'.repeat(400))), `${'é'.repeat(256)}…`);
  assert.equal(sdk.snippet(bytes('short')), 'short');
  assert.equal(sdk.snippet(bytes('a' + 'é'.repeat(300))), `a${'é'.repeat(255)}…`);
});

test('settings are found by key, and a required one must be there', () => {
  assert.equal(sdk.setting(ctx, 'userinfo_url'), 'https://x.test/u');
  assert.equal(sdk.setting(ctx, 'nope'), undefined);
  assert.deepEqual(kindOf(() => sdk.requireSetting(ctx, 'nope')), ['other', 'missing setting `nope`']);
});

test('profiles keep strings, drop empty values and carry extra as JSON text', () => {
  assert.deepEqual(
    sdk.profile({ userId: '42', email: 'a@b', name: null, emailVerified: false, extra: { team: 'x' } }),
    { userId: '42', email: 'a@b', emailVerified: false, extra: '{"team":"x"}' },
  );
  assert.deepEqual(sdk.profile({ userId: '42', extra: {} }), { userId: '42' });
  assert.throws(() => sdk.profile({ userId: 42 }), TypeError);
  assert.throws(() => sdk.profile({ userId: '42', email: 7 }), TypeError);
});

test('a plain function is exported as a plain function: no Promise, so no event loop', () => {
  const mapper = sdk.exportMapper((token) => {
    if (token === 'bug') return undefined.x;
    if (token === 'denied') throw new sdk.MapperError('unauthorized', 'no');
    if (token === 'raw') sdk.send({ url: 'u' });
    if (token === 'bad') return { userId: 7 };
    return { userId: token, email: null };
  });
  const answer = mapper('7', ctx);
  assert.equal(typeof answer?.then, 'undefined');
  assert.deepEqual(answer, { userId: '7' });
  assert.equal(kindOf(() => mapper('denied', ctx))[0], 'unauthorized');
  world.next = { err: { tag: 'budget-exhausted' } };
  assert.deepEqual(kindOf(() => mapper('raw', ctx)), ['other', 'http budget-exhausted']);
  world.logs.length = 0;
  assert.throws(() => mapper('bug', ctx), TypeError);
  assert.throws(() => mapper('bad', ctx), TypeError);
  assert.equal(world.logs.length, 2);
  assert.match(world.logs[0][1], /^uncaught TypeError: /);
});

test('the export returns profiles, passes mapper errors and logs bugs', async () => {
  const mapper = sdk.exportMapper(async (token) => {
    if (token === 'bug') return undefined.x;
    if (token === 'denied') throw new sdk.MapperError('unauthorized', 'no');
    if (token === 'raw') sdk.send({ url: 'u' });
    return { userId: token };
  });
  assert.deepEqual(await mapper('7', ctx), { userId: '7' });
  await assert.rejects(mapper('denied', ctx), (e) => e.payload.tag === 'unauthorized');
  world.next = { err: { tag: 'budget-exhausted' } };
  await assert.rejects(mapper('raw', ctx), (e) => e.payload.val === 'http budget-exhausted');
  world.logs.length = 0;
  await assert.rejects(mapper('bug', ctx), TypeError);
  assert.equal(world.logs[0][0], 'error');
  assert.match(world.logs[0][1], /^uncaught TypeError: /);
});
