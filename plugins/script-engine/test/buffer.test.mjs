// The engine's Buffer against Node's own, for what scripts do with it.
// Run: node --test plugins/script-engine/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer as EngineBuffer } from '../buffer.js';
import { stringifyQuery, parseQuery } from '../request.js';

const TEXTS = ['', 'a', 'client:s3cret', 'héllo wörld ✓', 'x'.repeat(70000), '\u0000\u00ff'];
const ENCODINGS = ['utf8', 'base64', 'base64url', 'hex', 'latin1', 'ascii'];

test('encoding text gives the bytes and text Node gives', () => {
  for (const text of TEXTS) {
    const ours = EngineBuffer.from(text);
    const node = Buffer.from(text);
    assert.deepEqual([...ours], [...node]);
    for (const enc of ENCODINGS) {
      assert.equal(ours.toString(enc), node.toString(enc), `${enc} of ${text.slice(0, 20)}`);
    }
  }
});

test('decoding base64, base64url and hex reads what Node reads, padding or not', () => {
  for (const [input, enc] of [
    ['Y2xpZW50OnMzY3JldA==', 'base64'],
    ['Y2xpZW50OnMzY3JldA', 'base64'],
    ['eyJzdWIiOiJ1LTcifQ', 'base64url'],
    ['-_-_', 'base64'],
    ['Y2xp ZW50', 'base64'],
    ['6869', 'hex'],
    ['68z9', 'hex'],
    ['6z', 'hex'],
    ['YW*Jj', 'base64'],
    ['YQ==YQ==', 'base64'],
    ['YWJj\nZGVm', 'base64'],
  ]) {
    assert.deepEqual([...EngineBuffer.from(input, enc)], [...Buffer.from(input, enc)], `${enc} ${input}`);
  }
});

test('the deprecated constructor, concat, byteLength, equals and JSON behave as in Node', () => {
  assert.equal(new EngineBuffer('a:b').toString('base64'), 'YTpi');
  const joined = EngineBuffer.concat([EngineBuffer.from('ab'), EngineBuffer.from('cd')]);
  assert.equal(joined.toString(), 'abcd');
  assert.ok(EngineBuffer.isBuffer(joined));
  assert.equal(EngineBuffer.byteLength('✓'), Buffer.byteLength('✓'));
  assert.ok(EngineBuffer.from('x').equals(EngineBuffer.from('x')));
  assert.deepEqual(JSON.parse(JSON.stringify(EngineBuffer.from('hi'))), JSON.parse(JSON.stringify(Buffer.from('hi'))));
  assert.equal(EngineBuffer.from(EngineBuffer.from('hi').toJSON()).toString(), 'hi');
  assert.equal(EngineBuffer.alloc(3, 1).toString('hex'), '010101');
  assert.throws(() => EngineBuffer.from('x', 'utf16'), /Unknown encoding/);
});

test('query strings are written and read as querystring does for flat objects', () => {
  assert.equal(stringifyQuery({ fields: 'id,email', n: 1, empty: '', skip: undefined }), 'fields=id%2Cemail&n=1&empty=');
  assert.equal(stringifyQuery({ a: [1, 2] }), 'a=1&a=2');
  assert.deepEqual(parseQuery('a=1&a=2&b=x+y&c'), { a: ['1', '2'], b: 'x y', c: '' });
});
