// Tests of `../jwt.js` under Node: `node --test plugins/script-engine/test/`.
// Node's own crypto makes the keys, tokens and certificates the module must
// accept, so a pass means interoperability, not just self-consistency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';

import {
  JsonWebTokenError,
  NotBeforeError,
  TokenExpiredError,
  createJwksClient,
  decode,
  hmacSha256,
  jwkToPem,
  sha256,
  sign,
  verify,
} from '../jwt.js';

// ---------------------------------------------------------------------------
// Keys and tokens

const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const otherRsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

const rsaSpki = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const rsaPkcs1 = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' });
const rsaJwk = rsa.publicKey.export({ format: 'jwk' });
const ecSpki = ec.publicKey.export({ type: 'spki', format: 'pem' });
const ecJwk = ec.publicKey.export({ format: 'jwk' });
const SECRET = 'a shared secret that is long enough';

const b64url = (data) => Buffer.from(data).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A compact JWS of `header` and `payload` signed by `signer(input bytes)`. */
function makeToken(header, payload, signer) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${b64url(signer(Buffer.from(input)))}`;
}

const rsSigner = (privateKey) => (input) => crypto.sign('sha256', input, privateKey);
const esSigner = (privateKey) => (input) =>
  crypto.sign('sha256', input, { key: privateKey, dsaEncoding: 'ieee-p1363' });
const hsSigner = (secret) => (input) => crypto.createHmac('sha256', secret).update(input).digest();

const rs256 = (payload, header = {}) =>
  makeToken({ alg: 'RS256', typ: 'JWT', ...header }, payload, rsSigner(rsa.privateKey));
const es256 = (payload, header = {}) =>
  makeToken({ alg: 'ES256', typ: 'JWT', ...header }, payload, esSigner(ec.privateKey));
const hs256 = (payload, secret = SECRET) => makeToken({ alg: 'HS256', typ: 'JWT' }, payload, hsSigner(secret));

const claims = { sub: 'user-1', name: 'Ada' };

/** `verify` with a callback, as a promise. */
const verifyWithCallback = (token, key, options) =>
  new Promise((resolve, reject) => {
    verify(token, key, options, (err, decoded) => (err ? reject(err) : resolve(decoded)));
  });

/** The error `fn` throws (failing if it returns). */
function thrown(fn) {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected an exception');
}

function assertJwtError(fn, message, type = JsonWebTokenError) {
  const err = thrown(fn);
  assert.ok(err instanceof type, `expected ${type.name}, got ${err && err.name}: ${err && err.message}`);
  assert.equal(err.message, message);
  return err;
}

/** `token` with a bit of its signature's byte at `index` (from the end if negative) flipped. */
function flipSignatureByte(token, index = 0) {
  const [h, p, s] = token.split('.');
  const signature = Buffer.from(s, 'base64url');
  signature[index < 0 ? signature.length + index : index] ^= 0x01;
  return `${h}.${p}.${b64url(signature)}`;
}

/** `token` with its payload replaced (signature kept). */
function withPayload(token, payload) {
  const [h, , s] = token.split('.');
  return `${h}.${b64url(JSON.stringify(payload))}.${s}`;
}

/** A fresh key pair and a self-signed certificate for it, made by `openssl req`.
 * Without `openssl` on PATH this throws, and the test fails: it is never skipped. */
function selfSignedCertificate(newkeyArgs) {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch (e) {
    throw new Error(`this test makes its certificates with openssl, which cannot run: ${e.message}`);
  }
  const out = execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', ...newkeyArgs, '-nodes', '-keyout', '-', '-subj', '/CN=waypass-test', '-days', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  ).toString();
  const pem = (label) => out.match(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----\\n`))[0];
  return { privateKey: crypto.createPrivateKey(pem('PRIVATE KEY')), certificate: pem('CERTIFICATE') };
}

// ---------------------------------------------------------------------------
// Hashes

test('sha256 and hmacSha256 match node:crypto across block boundaries', () => {
  for (const length of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
    const data = crypto.randomBytes(length);
    const expected = crypto.createHash('sha256').update(data).digest();
    assert.deepEqual(Buffer.from(sha256(new Uint8Array(data))), expected, `sha256 of ${length} bytes`);
    for (const keyLength of [0, 16, 64, 65, 200]) {
      const key = crypto.randomBytes(keyLength);
      const mac = crypto.createHmac('sha256', key).update(data).digest();
      assert.deepEqual(Buffer.from(hmacSha256(new Uint8Array(key), new Uint8Array(data))), mac);
    }
  }
});

// ---------------------------------------------------------------------------
// decode

test('decode returns the payload without checking the signature', () => {
  const token = rs256(claims);
  assert.deepEqual(decode(token), claims);
  assert.deepEqual(decode(flipSignatureByte(token)), claims);
});

test('decode with complete returns header, payload and the signature string', () => {
  const token = rs256(claims, { kid: 'k1' });
  assert.deepEqual(decode(token, { complete: true }), {
    header: { alg: 'RS256', typ: 'JWT', kid: 'k1' },
    payload: claims,
    signature: token.split('.')[2],
  });
});

test('decode returns null for what is not a JWT', () => {
  const notJson = `${b64url('not json')}.${b64url('{}')}.`;
  for (const notJwt of ['', 'abc', 'a.b', 'a.b.c.d', notJson, '!!.??.', undefined, null, 42]) {
    assert.equal(decode(notJwt), null, String(notJwt));
  }
});

test('decode returns a payload that is not JSON as a string unless typ is JWT', () => {
  const token = `${b64url('{"alg":"HS256"}')}.${b64url('hello')}.`;
  assert.equal(decode(token), 'hello');
  assert.throws(() => decode(token, { json: true }), SyntaxError);
  assert.throws(() => decode(`${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url('hello')}.`), SyntaxError);
});

// ---------------------------------------------------------------------------
// Signatures and keys

test('verify RS256 with an SPKI PEM', () => {
  assert.deepEqual(verify(rs256(claims), rsaSpki), claims);
});

test('verify RS256 with a PKCS#1 PEM', () => {
  assert.deepEqual(verify(rs256(claims), rsaPkcs1), claims);
});

test('verify RS256 with a JWK', () => {
  assert.deepEqual(verify(rs256(claims), rsaJwk), claims);
});

test('verify RS256 and ES256 with an X.509 certificate made by openssl', () => {
  const rsaCert = selfSignedCertificate(['rsa:2048']);
  const rsaToken = makeToken({ alg: 'RS256' }, claims, rsSigner(rsaCert.privateKey));
  assert.deepEqual(verify(rsaToken, rsaCert.certificate), claims);
  assertJwtError(() => verify(rs256(claims), rsaCert.certificate), 'invalid signature');

  const ecCert = selfSignedCertificate(['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  const ecToken = makeToken({ alg: 'ES256' }, claims, esSigner(ecCert.privateKey));
  assert.deepEqual(verify(ecToken, ecCert.certificate), claims);
});

test('verify RS256 with other key sizes and exponents', () => {
  for (const options of [{ modulusLength: 3072 }, { modulusLength: 2048, publicExponent: 3 }]) {
    const keys = crypto.generateKeyPairSync('rsa', options);
    const token = makeToken({ alg: 'RS256' }, claims, rsSigner(keys.privateKey));
    assert.deepEqual(verify(token, keys.publicKey.export({ type: 'spki', format: 'pem' })), claims);
    assert.deepEqual(verify(token, keys.publicKey.export({ format: 'jwk' })), claims);
  }
});

test('verify ES256 with an SPKI PEM and with a JWK', () => {
  for (let i = 0; i < 10; i++) {
    const payload = { ...claims, i };
    assert.deepEqual(verify(es256(payload), ecSpki), payload);
    assert.deepEqual(verify(es256(payload), ecJwk), payload);
  }
});

test('verify HS256 with a string secret, a Uint8Array and an oct JWK', () => {
  const token = hs256(claims);
  assert.deepEqual(verify(token, SECRET), claims);
  assert.deepEqual(verify(token, new TextEncoder().encode(SECRET)), claims);
  assert.deepEqual(verify(token, { kty: 'oct', k: b64url(SECRET) }), claims);
  assertJwtError(() => verify(token, 'another secret'), 'invalid signature');
});

test('sign makes HS256 tokens that verify and that node:crypto agrees with', () => {
  const token = sign(claims, SECRET, { expiresIn: '1h', audience: 'api', issuer: 'https://idp.test/', keyid: 'k1' });
  const [h, p, s] = token.split('.');
  assert.equal(s, b64url(hsSigner(SECRET)(`${h}.${p}`)));
  assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url')), { alg: 'HS256', typ: 'JWT', kid: 'k1' });
  const payload = verify(token, SECRET, { audience: 'api', issuer: 'https://idp.test/' });
  assert.equal(payload.sub, 'user-1');
  assert.ok(Math.abs(payload.iat - now()) <= 1);
  assert.equal(payload.exp, payload.iat + 3600);
});

test('sign options: expiresIn in seconds, subject, noTimestamp, and only HS256', () => {
  const payload = decode(sign({ a: 1 }, SECRET, { expiresIn: 60, subject: 's', noTimestamp: true }));
  assert.equal(payload.iat, undefined);
  assert.equal(payload.sub, 's');
  assert.ok(Math.abs(payload.exp - (now() + 60)) <= 1);
  assert.equal(decode(sign({ a: 1 }, SECRET, { expiresIn: '10m' })).exp - now(), 600);
  assert.equal(decode(sign({ a: 1, iat: 1000 }, SECRET, { expiresIn: '2d' })).exp, 1000 + 2 * 86400);
  assertJwtError(() => sign(claims, SECRET, { algorithm: 'RS256' }), 'only HS256 tokens can be signed');
  assertJwtError(() => sign(claims, rsaSpki), 'secretOrPrivateKey must be a symmetric key when using HS256');
  assertJwtError(
    () => sign({ exp: 1 }, SECRET, { expiresIn: 10 }),
    'Bad "options.expiresIn" option the payload already has an "exp" property.',
  );
});

test('a tampered payload is an invalid signature for each algorithm', () => {
  const forged = { ...claims, sub: 'admin' };
  assertJwtError(() => verify(withPayload(rs256(claims), forged), rsaSpki), 'invalid signature');
  assertJwtError(() => verify(withPayload(es256(claims), forged), ecSpki), 'invalid signature');
  assertJwtError(() => verify(withPayload(hs256(claims), forged), SECRET), 'invalid signature');
});

test('a flipped signature byte is an invalid signature for each algorithm', () => {
  for (const index of [0, 1, 16, 31, -1]) {
    assertJwtError(() => verify(flipSignatureByte(rs256(claims), index), rsaSpki), 'invalid signature');
    assertJwtError(() => verify(flipSignatureByte(es256(claims), index), ecSpki), 'invalid signature');
    assertJwtError(() => verify(flipSignatureByte(hs256(claims), index), SECRET), 'invalid signature');
  }
});

test('a signature by another key is an invalid signature', () => {
  const token = makeToken({ alg: 'RS256' }, claims, rsSigner(otherRsa.privateKey));
  assertJwtError(() => verify(token, rsaSpki), 'invalid signature');
});

test('ES256 refuses r or s outside 1..n-1 and signatures of the wrong length', () => {
  const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
  const [h, p, s] = es256(claims).split('.');
  const signature = Buffer.from(s, 'base64url');
  const variants = [
    Buffer.concat([Buffer.alloc(32), signature.subarray(32)]),
    Buffer.concat([signature.subarray(0, 32), Buffer.alloc(32)]),
    Buffer.concat([n, signature.subarray(32)]),
    Buffer.concat([signature.subarray(0, 32), n]),
    signature.subarray(0, 63),
    Buffer.concat([signature, Buffer.alloc(1)]),
  ];
  for (const variant of variants) {
    assertJwtError(() => verify(`${h}.${p}.${b64url(variant)}`, ecSpki), 'invalid signature');
  }
});

test('RS256 refuses an e=3 Bleichenbacher forgery with garbage after the digest', () => {
  const keys = crypto.generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 });
  const header = b64url(JSON.stringify({ alg: 'RS256' }));
  const body = b64url(JSON.stringify({ sub: 'admin' }));
  const digest = crypto.createHash('sha256').update(`${header}.${body}`).digest();
  // 00 01, eight FF, 00, DigestInfo, hash: what a lax parser checks. The rest is garbage.
  const prefix = Buffer.concat([
    Buffer.from('0001ffffffffffffffff00', 'hex'),
    Buffer.from('3031300d060960864801650304020105000420', 'hex'),
    digest,
  ]);
  const garbageBits = BigInt((256 - prefix.length) * 8);
  const high = ((BigInt('0x' + prefix.toString('hex')) + 1n) << garbageBits) - 1n;
  // The integer cube root of `high`, by Newton's method from above.
  const step = (x) => (2n * x + high / (x * x)) / 3n;
  let root = 1n << 700n;
  for (let next = step(root); next < root; next = step(root)) root = next;
  const cube = (root ** 3n).toString(16).padStart(512, '0');
  assert.ok(cube.startsWith(prefix.toString('hex')), 'the forgery fools a parser that ignores trailing bytes');
  const forged = `${header}.${body}.${b64url(Buffer.from(root.toString(16).padStart(512, '0'), 'hex'))}`;
  assertJwtError(() => verify(forged, keys.publicKey.export({ type: 'spki', format: 'pem' })), 'invalid signature');
});

test('alg none is refused, with or without a signature', () => {
  const unsigned = `${b64url('{"alg":"none","typ":"JWT"}')}.${b64url(JSON.stringify(claims))}.`;
  assertJwtError(() => verify(unsigned, rsaSpki), 'invalid algorithm');
  assertJwtError(() => verify(unsigned, SECRET, { algorithms: ['none'] }), 'invalid algorithm');
  assertJwtError(() => verify(unsigned, undefined), 'invalid algorithm');
  const withSignature = `${unsigned}${b64url('x')}`;
  assertJwtError(() => verify(withSignature, SECRET, { algorithms: ['none', 'HS256'] }), 'invalid algorithm');
});

test('an HS256 token forged with the RSA public PEM as HMAC secret is an invalid algorithm', () => {
  const forged = hs256(claims, rsaSpki);
  assertJwtError(() => verify(forged, rsaSpki), 'invalid algorithm');
  assertJwtError(() => verify(forged, rsaSpki, { algorithms: ['HS256', 'RS256'] }), 'invalid algorithm');
  assertJwtError(() => verify(hs256(claims, rsaPkcs1), rsaPkcs1, { algorithms: ['HS256'] }), 'invalid algorithm');
  assertJwtError(() => verify(hs256(claims, ecSpki), ecSpki), 'invalid algorithm');
});

test('a key of the wrong kind for the algorithm is an invalid algorithm', () => {
  assertJwtError(() => verify(rs256(claims), SECRET, { algorithms: ['RS256'] }), 'invalid algorithm');
  assertJwtError(() => verify(rs256(claims), ecSpki, { algorithms: ['RS256'] }), 'invalid algorithm');
  assertJwtError(() => verify(es256(claims), rsaSpki, { algorithms: ['ES256'] }), 'invalid algorithm');
  assertJwtError(() => verify(es256(claims), rsaJwk), 'invalid algorithm');
  assertJwtError(() => verify(rs256(claims), rsaSpki, { algorithms: ['ES256'] }), 'invalid algorithm');
  const rs512 = makeToken({ alg: 'RS512' }, claims, (input) => crypto.sign('sha512', input, rsa.privateKey));
  assertJwtError(() => verify(rs512, rsaSpki), 'invalid algorithm');
});

test('unusable key material is refused', () => {
  const p384 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
  const unusable = [
    p384.export({ type: 'spki', format: 'pem' }),
    rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    rsaSpki.slice(0, 200),
    { kty: 'OKP', crv: 'Ed25519', x: 'AA' },
    42,
  ];
  for (const key of unusable) {
    assertJwtError(() => verify(es256(claims), key), 'secretOrPublicKey is not valid key material');
  }
  const offCurve = { ...ecJwk, y: ecJwk.x };
  assertJwtError(() => verify(es256(claims), offCurve), 'secretOrPublicKey is not valid key material');
});

// ---------------------------------------------------------------------------
// Malformed tokens

test('malformed tokens get jsonwebtoken’s messages', () => {
  assertJwtError(() => verify('', rsaSpki), 'jwt must be provided');
  assertJwtError(() => verify(undefined, rsaSpki), 'jwt must be provided');
  assertJwtError(() => verify({}, rsaSpki), 'jwt must be a string');
  assertJwtError(() => verify('a.b', rsaSpki), 'jwt malformed');
  assertJwtError(() => verify('a.b.c.d', rsaSpki), 'jwt malformed');
  assertJwtError(() => verify('*.e30.', rsaSpki), 'jwt malformed');
  assertJwtError(() => verify(`${b64url('nope')}.e30.c2ln`, rsaSpki), 'invalid token');
  assertJwtError(() => verify(`${b64url('{"alg":"RS256"}')}.${b64url('nope')}.c2ln`, rsaSpki), 'invalid token');
  const [h, p] = rs256(claims).split('.');
  assertJwtError(() => verify(`${h}.${p}.`, rsaSpki), 'jwt signature is required');
  assertJwtError(() => verify(rs256(claims), ''), 'secret or public key must be provided');
  assertJwtError(() => verify(rs256(claims), undefined), 'secret or public key must be provided');
});

// ---------------------------------------------------------------------------
// Claims

test('an expired token is a TokenExpiredError with expiredAt', () => {
  const exp = now() - 30;
  const err = assertJwtError(() => verify(rs256({ ...claims, exp }), rsaSpki), 'jwt expired', TokenExpiredError);
  assert.equal(err.name, 'TokenExpiredError');
  assert.deepEqual(err.expiredAt, new Date(exp * 1000));
});

test('clockTolerance, clockTimestamp and ignoreExpiration rescue an expired token', () => {
  const token = rs256({ ...claims, exp: now() - 30 });
  assert.equal(verify(token, rsaSpki, { clockTolerance: 60 }).sub, 'user-1');
  assert.equal(verify(token, rsaSpki, { clockTimestamp: now() - 60 }).sub, 'user-1');
  assert.equal(verify(token, rsaSpki, { ignoreExpiration: true }).sub, 'user-1');
  assertJwtError(() => verify(rs256({ exp: 'soon' }), rsaSpki), 'invalid exp value');
});

test('a token not yet valid is a NotBeforeError with its date', () => {
  const nbf = now() + 120;
  const token = rs256({ ...claims, nbf });
  const err = assertJwtError(() => verify(token, rsaSpki), 'jwt not active', NotBeforeError);
  assert.equal(err.name, 'NotBeforeError');
  assert.deepEqual(err.date, new Date(nbf * 1000));
  assert.equal(verify(token, rsaSpki, { clockTolerance: 180 }).sub, 'user-1');
  assert.equal(verify(token, rsaSpki, { ignoreNotBefore: true }).sub, 'user-1');
  assertJwtError(() => verify(rs256({ nbf: 'later' }), rsaSpki), 'invalid nbf value');
});

test('audience: string, array and RegExp matches', () => {
  assert.ok(verify(rs256({ aud: 'api' }), rsaSpki, { audience: 'api' }));
  assert.ok(verify(rs256({ aud: ['other', 'api'] }), rsaSpki, { audience: 'api' }));
  assert.ok(verify(rs256({ aud: 'api' }), rsaSpki, { audience: ['web', 'api'] }));
  assert.ok(verify(rs256({ aud: 'urn:api:42' }), rsaSpki, { audience: /^urn:api:\d+$/ }));
  assert.ok(verify(rs256({ aud: ['x', 'urn:api:42'] }), rsaSpki, { audience: ['web', /^urn:api:/] }));
});

test('audience mismatch messages', () => {
  assertJwtError(
    () => verify(rs256({ aud: 'api' }), rsaSpki, { audience: 'web' }),
    'jwt audience invalid. expected: web',
  );
  assertJwtError(
    () => verify(rs256({ aud: ['a', 'b'] }), rsaSpki, { audience: ['web', 'mobile'] }),
    'jwt audience invalid. expected: web or mobile',
  );
  assertJwtError(
    () => verify(rs256({ aud: 'api' }), rsaSpki, { audience: [/^urn:/, 'web'] }),
    'jwt audience invalid. expected: /^urn:/ or web',
  );
  assertJwtError(() => verify(rs256({}), rsaSpki, { audience: /.*/ }), 'jwt audience invalid. expected: /.*/');
});

test('issuer, subject, jwtid and nonce mismatch messages', () => {
  const token = rs256({ iss: 'https://a.test/', sub: 's1', jti: 'j1', nonce: 'n1' });
  const issuer = ['https://b.test/', 'https://a.test/'];
  assert.ok(verify(token, rsaSpki, { issuer, subject: 's1', jwtid: 'j1', nonce: 'n1' }));
  assertJwtError(
    () => verify(token, rsaSpki, { issuer: 'https://b.test/' }),
    'jwt issuer invalid. expected: https://b.test/',
  );
  assertJwtError(
    () => verify(token, rsaSpki, { issuer: ['https://b.test/', 'https://c.test/'] }),
    'jwt issuer invalid. expected: https://b.test/,https://c.test/',
  );
  assertJwtError(() => verify(token, rsaSpki, { subject: 's2' }), 'jwt subject invalid. expected: s2');
  assertJwtError(() => verify(token, rsaSpki, { jwtid: 'j2' }), 'jwt jwtid invalid. expected: j2');
  assertJwtError(() => verify(token, rsaSpki, { nonce: 'n2' }), 'jwt nonce invalid. expected: n2');
});

test('maxAge limits the age of iat', () => {
  const iat = now() - 7200;
  const old = rs256({ iat });
  assert.ok(verify(old, rsaSpki, { maxAge: '3h' }));
  assert.ok(verify(old, rsaSpki, { maxAge: 7300 }));
  const err = assertJwtError(() => verify(old, rsaSpki, { maxAge: '1h' }), 'maxAge exceeded', TokenExpiredError);
  assert.deepEqual(err.expiredAt, new Date((iat + 3600) * 1000));
  assert.ok(verify(old, rsaSpki, { maxAge: '1h', clockTolerance: 3700 }));
  assertJwtError(() => verify(rs256({}), rsaSpki, { maxAge: 60 }), 'iat required when maxAge is specified');
});

test('complete returns header, payload and signature', () => {
  const token = es256(claims, { kid: 'k1' });
  assert.deepEqual(verify(token, ecSpki, { complete: true }), {
    header: { alg: 'ES256', typ: 'JWT', kid: 'k1' },
    payload: claims,
    signature: token.split('.')[2],
  });
});

// ---------------------------------------------------------------------------
// Callbacks

test('callback form delivers the payload or the error and returns undefined', () => {
  const results = [];
  assert.equal(verify(rs256(claims), rsaSpki, (err, decoded) => results.push([err, decoded])), undefined);
  verify(rs256(claims), rsaSpki, { audience: 'x' }, (err, decoded) => results.push([err, decoded]));
  assert.deepEqual(results[0], [null, claims]);
  assert.ok(results[1][0] instanceof JsonWebTokenError);
  assert.equal(results[1][0].message, 'jwt audience invalid. expected: x');
  assert.equal(results[1][1], undefined);
});

test('a key function gets the header and may answer later', async () => {
  const getKey = (header, cb) => setImmediate(() => cb(null, header.kid === 'ec' ? ecSpki : rsaSpki));
  assert.deepEqual(await verifyWithCallback(es256(claims, { kid: 'ec' }), getKey, {}), claims);
  assert.deepEqual(await verifyWithCallback(rs256(claims, { kid: 'rsa' }), getKey, { algorithms: ['RS256'] }), claims);
  const expired = rs256({ ...claims, exp: now() - 10 }, { kid: 'rsa' });
  await assert.rejects(verifyWithCallback(expired, getKey, undefined), TokenExpiredError);
});

test('a key function error and a key function without a callback', async () => {
  const err = await new Promise((resolve) =>
    verify(rs256(claims), (header, cb) => cb(new Error('no such key')), {}, (e) => resolve(e)),
  );
  assert.ok(err instanceof JsonWebTokenError);
  assert.equal(err.message, 'error in secret or public key callback: no such key');
  assertJwtError(
    () => verify(rs256(claims), (header, cb) => cb(null, rsaSpki)),
    'verify must be called asynchronous if secret or public key is provided as a callback',
  );
});

// ---------------------------------------------------------------------------
// jwkToPem

test('jwkToPem gives the SPKI PEM node:crypto exports, and node imports it', () => {
  for (const [jwk, publicKey] of [
    [rsaJwk, rsa.publicKey],
    [ecJwk, ec.publicKey],
  ]) {
    const pem = jwkToPem(jwk);
    assert.equal(pem, publicKey.export({ type: 'spki', format: 'pem' }));
    assert.ok(crypto.createPublicKey(pem).equals(publicKey));
  }
  assert.throws(() => jwkToPem({ kty: 'oct', k: 'c2VjcmV0' }), /RSA or EC/);
  assert.throws(() => jwkToPem({ kty: 'EC', crv: 'P-384', x: ecJwk.x, y: ecJwk.y }), /curve/);
});

// ---------------------------------------------------------------------------
// JWKS client

const JWKS_URI = 'https://idp.test/.well-known/jwks.json';

function fakeJwks(keys) {
  const calls = [];
  const getJson = (url) => {
    calls.push(url);
    return { keys };
  };
  return { calls, getJson };
}

const jwksKeys = [
  { ...rsaJwk, kid: 'rsa-1', alg: 'RS256', use: 'sig' },
  { ...ecJwk, kid: 'ec-1', alg: 'ES256' },
  { ...otherRsa.publicKey.export({ format: 'jwk' }), kid: 'enc-1', use: 'enc' },
  { kty: 'oct', kid: 'oct-1', k: 'c2VjcmV0' },
];

test('getSigningKey finds a key by kid with a callback and as a promise', async () => {
  const { getJson } = fakeJwks(jwksKeys);
  const client = createJwksClient({ jwksUri: JWKS_URI }, getJson);
  let fromCallback;
  client.getSigningKey('rsa-1', (err, key) => {
    assert.equal(err, null);
    fromCallback = key;
  });
  assert.equal(fromCallback.kid, 'rsa-1');
  assert.equal(fromCallback.alg, 'RS256');
  assert.equal(fromCallback.rsaPublicKey, rsaSpki);
  assert.equal(fromCallback.getPublicKey(), rsaSpki);

  const ecKey = await client.getSigningKey('ec-1');
  assert.equal(ecKey.kty, 'EC');
  assert.equal(ecKey.publicKey, ecSpki);
  assert.equal(ecKey.getPublicKey(), ecSpki);
});

test('getSigningKeys keeps RSA and EC signing keys only', async () => {
  const client = createJwksClient({ jwksUri: JWKS_URI }, fakeJwks(jwksKeys).getJson);
  assert.deepEqual((await client.getSigningKeys()).map((k) => k.kid), ['rsa-1', 'ec-1']);
  client.getSigningKeys((err, keys) => assert.deepEqual([err, keys.length], [null, 2]));
});

test('an unknown kid is a SigningKeyNotFoundError', async () => {
  const client = createJwksClient({ jwksUri: JWKS_URI }, fakeJwks(jwksKeys).getJson);
  await assert.rejects(client.getSigningKey('nope'), {
    name: 'SigningKeyNotFoundError',
    message: "Unable to find a signing key that matches 'nope'",
  });
  let error;
  client.getSigningKey('enc-1', (err) => (error = err));
  assert.equal(error.name, 'SigningKeyNotFoundError');
  assert.equal(error.message, "Unable to find a signing key that matches 'enc-1'");
  await assert.rejects(client.getSigningKey(undefined), { name: 'SigningKeyNotFoundError' });
});

test('without a kid, a single signing key is the one', async () => {
  const client = createJwksClient({ jwksUri: JWKS_URI }, fakeJwks([{ ...rsaJwk, kid: 'only' }]).getJson);
  assert.equal((await client.getSigningKey(undefined)).kid, 'only');
  assert.equal((await client.getSigningKey(null)).kid, 'only');
});

test('the JWKS is fetched once per client', async () => {
  const { calls, getJson } = fakeJwks(jwksKeys);
  const client = createJwksClient({ jwksUri: JWKS_URI }, getJson);
  await client.getSigningKey('rsa-1');
  await client.getSigningKey('ec-1');
  await client.getSigningKeys();
  client.getSigningKey('rsa-1', () => {});
  assert.deepEqual(calls, [JWKS_URI]);
});

test('fetch errors reach the callback or the promise, and are not cached', async () => {
  let fail = true;
  const client = createJwksClient({ jwksUri: JWKS_URI }, () => {
    if (fail) throw new Error('connection refused');
    return { keys: jwksKeys };
  });
  await assert.rejects(client.getSigningKey('rsa-1'), { message: 'connection refused' });
  let error;
  client.getSigningKey('rsa-1', (err) => (error = err));
  assert.equal(error.message, 'connection refused');
  fail = false;
  assert.equal((await client.getSigningKey('rsa-1')).kid, 'rsa-1');
  assert.throws(() => createJwksClient({}, () => ({})), /jwksUri/);
});

test('a JWKS key verifies a token through a key function', async () => {
  const client = createJwksClient({ jwksUri: JWKS_URI }, fakeJwks(jwksKeys).getJson);
  const getKey = (header, cb) =>
    client.getSigningKey(header.kid, (err, key) => (err ? cb(err) : cb(null, key.publicKey || key.rsaPublicKey)));
  const check = (token) => verifyWithCallback(token, getKey, { algorithms: ['RS256', 'ES256'] });
  assert.deepEqual(await check(rs256(claims, { kid: 'rsa-1' })), claims);
  assert.deepEqual(await check(es256(claims, { kid: 'ec-1' })), claims);
  await assert.rejects(check(rs256(claims, { kid: 'gone' })), {
    message: "error in secret or public key callback: Unable to find a signing key that matches 'gone'",
  });
  const key = await client.getSigningKey('rsa-1');
  assert.deepEqual(verify(rs256(claims), key.getPublicKey()), claims);
});
