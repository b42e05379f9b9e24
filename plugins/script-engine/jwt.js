/**
 * JSON Web Tokens for Auth0-style scripts: the parts of npm's `jsonwebtoken`
 * (v9: `decode`, `verify`, HS256 `sign`, the error classes) and `jwks-rsa`
 * (`createJwksClient`) that `fetchUserProfile` scripts use, plus `jwkToPem`.
 *
 * It runs inside StarlingMonkey (SpiderMonkey in WebAssembly), so it imports
 * nothing, uses no Node API and no WebCrypto, and is synchronous throughout:
 * SHA-256 on 32-bit integers, RSA and P-256 on BigInt.
 *
 * Supported algorithms: RS256, ES256 and HS256 (verify), HS256 only (sign).
 * Keys: SPKI, PKCS#1 and X.509 certificate PEMs (RSA or EC P-256), JWKs
 * (RSA, EC P-256, oct), and any other string or Uint8Array as an HMAC secret.
 *
 * Deliberately left out: other algorithms (RS384/512, PS*, ES384/512, EdDSA
 * and `none` are "invalid algorithm"); private-key and encrypted PEMs;
 * compressed EC points; certificate validation (a certificate only supplies
 * its public key, as with `jsonwebtoken`); JWKS `x5c`, cache expiry and rate
 * limiting (a client fetches once, through the caller's synchronous `getJson`).
 * Callbacks are called synchronously. Nothing here handles private keys, so
 * only the HMAC comparison is written to run in constant shape.
 *
 * @module jwt
 */

import { binaryToBytes, bytesToBinary } from './buffer.js';

// ---------------------------------------------------------------------------
// Errors (as jsonwebtoken and jwks-rsa name them)

export class JsonWebTokenError extends Error {
  constructor(message, inner) {
    super(message);
    this.name = 'JsonWebTokenError';
    if (inner) this.inner = inner;
  }
}

export class TokenExpiredError extends JsonWebTokenError {
  constructor(message, expiredAt) {
    super(message);
    this.name = 'TokenExpiredError';
    this.expiredAt = expiredAt;
  }
}

export class NotBeforeError extends JsonWebTokenError {
  constructor(message, date) {
    super(message);
    this.name = 'NotBeforeError';
    this.date = date;
  }
}

export class SigningKeyNotFoundError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SigningKeyNotFoundError';
  }
}

class JwksError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JwksError';
  }
}

// ---------------------------------------------------------------------------
// Bytes, text, base64 and hex

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const BASE64URL_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) BASE64URL_VALUES[BASE64URL_ALPHABET.charCodeAt(i)] = i;

/**
 * Decodes unpadded base64url; null unless `text` is canonical base64url
 * (alphabet, length, and zero bits after the last byte).
 */
function base64UrlDecode(text) {
  const length = text.length;
  if (length % 4 === 1) return null;
  const out = new Uint8Array((length * 3) >> 2);
  let bits = 0;
  let count = 0;
  let j = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    const value = c < 128 ? BASE64URL_VALUES[c] : -1;
    if (value < 0) return null;
    bits = ((bits << 6) | value) & 0xffff;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[j++] = bits >> count;
    }
  }
  return (bits & ((1 << count) - 1)) === 0 ? out : null;
}

function base64UrlEncode(bytes) {
  return btoa(bytesToBinary(bytes)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function bytesToHex(bytes) {
  let hex = '';
  for (let i = 0; i < bytes.length; i++) hex += HEX[bytes[i]];
  return hex;
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

/** The unsigned big-endian integer in `bytes`. */
function bytesToBigInt(bytes) {
  return bytes.length === 0 ? 0n : BigInt('0x' + bytesToHex(bytes));
}

/** `value` (0 <= value < 256^length) as `length` big-endian bytes. */
function bigIntToBytes(value, length) {
  const hex = value.toString(16).padStart(length * 2, '0');
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const hi = hex.charCodeAt(2 * i);
    const lo = hex.charCodeAt(2 * i + 1);
    out[i] = ((hi < 58 ? hi - 48 : hi - 87) << 4) | (lo < 58 ? lo - 48 : lo - 87);
  }
  return out;
}

/** Whether two byte arrays are equal, looking at every byte whatever they hold. */
function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** The JSON object (not array, not null) that `bytes` hold as UTF-8, or null. */
function parseJsonObject(bytes) {
  if (!bytes) return null;
  let value;
  try {
    value = JSON.parse(utf8Decoder.decode(bytes));
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

// ---------------------------------------------------------------------------
// SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104)

const SHA256_K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** The message schedule, reused by every call. */
const SHA256_W = new Int32Array(64);

/** The SHA-256 digest (32 bytes) of `bytes`. */
export function sha256(bytes) {
  const length = bytes.length;
  // The message, a 1 bit, zeros, and the 64-bit length in bits: whole 64-byte blocks.
  const blocks = new Uint8Array(((length + 72) >>> 6) << 6);
  blocks.set(bytes);
  blocks[length] = 0x80;
  const end = blocks.length;
  const bitsHigh = Math.floor(length / 0x20000000);
  const bitsLow = (length << 3) >>> 0;
  blocks[end - 8] = bitsHigh >>> 24;
  blocks[end - 7] = bitsHigh >>> 16;
  blocks[end - 6] = bitsHigh >>> 8;
  blocks[end - 5] = bitsHigh;
  blocks[end - 4] = bitsLow >>> 24;
  blocks[end - 3] = bitsLow >>> 16;
  blocks[end - 2] = bitsLow >>> 8;
  blocks[end - 1] = bitsLow;

  const w = SHA256_W;
  const k = SHA256_K;
  let h0 = 0x6a09e667 | 0;
  let h1 = 0xbb67ae85 | 0;
  let h2 = 0x3c6ef372 | 0;
  let h3 = 0xa54ff53a | 0;
  let h4 = 0x510e527f | 0;
  let h5 = 0x9b05688c | 0;
  let h6 = 0x1f83d9ab | 0;
  let h7 = 0x5be0cd19 | 0;
  for (let offset = 0; offset < end; offset += 64) {
    for (let i = 0; i < 16; i++) {
      const j = offset + (i << 2);
      w[i] = (blocks[j] << 24) | (blocks[j + 1] << 16) | (blocks[j + 2] << 8) | blocks[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let h = h7;
    for (let i = 0; i < 64; i++) {
      const sigma1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + sigma1 + ((e & f) ^ (~e & g)) + k[i] + w[i]) | 0;
      const sigma0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (sigma0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }

  const digest = new Uint8Array(32);
  const state = [h0, h1, h2, h3, h4, h5, h6, h7];
  for (let i = 0; i < 8; i++) {
    const v = state[i];
    digest[4 * i] = v >>> 24;
    digest[4 * i + 1] = v >>> 16;
    digest[4 * i + 2] = v >>> 8;
    digest[4 * i + 3] = v;
  }
  return digest;
}

/** HMAC-SHA-256 of `bytes` under `key` (both Uint8Array): 32 bytes. */
export function hmacSha256(key, bytes) {
  if (key.length > 64) key = sha256(key);
  const inner = new Uint8Array(64 + bytes.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    const k = i < key.length ? key[i] : 0;
    inner[i] = k ^ 0x36;
    outer[i] = k ^ 0x5c;
  }
  inner.set(bytes, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

// ---------------------------------------------------------------------------
// DER: just enough to read and write public keys

const OID_RSA_ENCRYPTION = '2a864886f70d010101'; // 1.2.840.113549.1.1.1
const OID_EC_PUBLIC_KEY = '2a8648ce3d0201'; // 1.2.840.10045.2.1
const OID_P256 = '2a8648ce3d030107'; // 1.2.840.10045.3.1.7 (prime256v1)

/** The encoded AlgorithmIdentifier of each SPKI we write. */
const RSA_ALGORITHM_ID = hexToBytes('300d0609' + OID_RSA_ENCRYPTION + '0500');
const EC_P256_ALGORITHM_ID = hexToBytes('30130607' + OID_EC_PUBLIC_KEY + '0608' + OID_P256);

/**
 * The DER element starting at `pos` (and ending by `limit`): its tag and the
 * range of its contents. Throws if it is truncated or its tag is not `tag`.
 */
function derElement(der, pos, limit, tag) {
  if (pos + 2 > limit || der[pos] !== tag) throw new Error('unexpected DER');
  let length = der[pos + 1];
  pos += 2;
  if (length >= 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || pos + count > limit) throw new Error('unexpected DER');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[pos++];
  }
  if (pos + length > limit) throw new Error('truncated DER');
  return { tag, start: pos, end: pos + length };
}

/** The elements inside `parent`, whatever their tags. */
function derChildren(der, parent) {
  const children = [];
  for (let pos = parent.start; pos < parent.end; ) {
    const child = derElement(der, pos, parent.end, der[pos]);
    children.push(child);
    pos = child.end;
  }
  return children;
}

/** The top-level element of `der`, which must fill it. */
function derTop(der, tag) {
  const element = derElement(der, 0, der.length, tag);
  if (element.end !== der.length) throw new Error('trailing bytes after DER');
  return element;
}

function derContents(der, element) {
  return der.subarray(element.start, element.end);
}

/** A non-negative DER INTEGER as a BigInt. */
function derUnsigned(der, element) {
  if (element.tag !== 0x02 || element.end === element.start || der[element.start] & 0x80) {
    throw new Error('expected a non-negative INTEGER');
  }
  return bytesToBigInt(derContents(der, element));
}

/** A DER element of `tag` holding the concatenated `parts`. */
function derEncode(tag, ...parts) {
  let length = 0;
  for (const part of parts) length += part.length;
  const header = [tag];
  if (length < 0x80) {
    header.push(length);
  } else {
    const bytes = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header.push(0x80 | bytes.length, ...bytes);
  }
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let pos = header.length;
  for (const part of parts) {
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

/** A DER INTEGER holding the non-negative `value`. */
function derInteger(value) {
  let hex = value.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (parseInt(hex[0], 16) >= 8) hex = '00' + hex;
  return derEncode(0x02, hexToBytes(hex));
}

// ---------------------------------------------------------------------------
// Keys: {kind: 'rsa', n, e, size} | {kind: 'ec', x, y} | {kind: 'secret', bytes}

/** Key material as `verify` accepts it (see the module comment). Throws if unusable. */
function importKey(material) {
  if (typeof material === 'string') {
    return material.includes('-----BEGIN') ? importPem(material) : secretKey(utf8Encoder.encode(material));
  }
  if (material instanceof Uint8Array) return secretKey(material);
  if (material !== null && typeof material === 'object') return importJwk(material);
  throw new Error('unsupported key material');
}

function secretKey(bytes) {
  return { kind: 'secret', bytes };
}

function rsaKey(n, e) {
  if (n % 2n === 0n || e < 3n || e % 2n === 0n || e >= n) throw new Error('invalid RSA public key');
  return { kind: 'rsa', n, e, size: (n.toString(16).length + 1) >> 1 };
}

function ecKey(x, y) {
  if (!onCurve(x, y)) throw new Error('EC public key is not a P-256 point');
  return { kind: 'ec', x, y };
}

const PEM_PATTERN = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]+)-----END \1-----/;

function importPem(pem) {
  const match = PEM_PATTERN.exec(pem);
  if (!match) throw new Error('malformed PEM');
  const der = binaryToBytes(atob(match[2].replace(/\s+/g, '')));
  switch (match[1]) {
    case 'PUBLIC KEY':
      return importSpki(der, derTop(der, 0x30));
    case 'RSA PUBLIC KEY':
      return importRsaPublicKey(der);
    case 'CERTIFICATE':
      return importSpki(der, certificateSpki(der));
    default:
      throw new Error(`unsupported PEM: ${match[1]}`);
  }
}

/** The SubjectPublicKeyInfo element of an X.509 certificate. */
function certificateSpki(der) {
  const certificate = derTop(der, 0x30);
  const tbs = derChildren(der, derElement(der, certificate.start, certificate.end, 0x30));
  // [0] version (optional), serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
  const spki = tbs[(tbs[0] && tbs[0].tag === 0xa0 ? 1 : 0) + 5];
  if (!spki || spki.tag !== 0x30) throw new Error('no public key in certificate');
  return spki;
}

function importSpki(der, spki) {
  const [algorithm, publicKey, extra] = derChildren(der, spki);
  if (!algorithm || algorithm.tag !== 0x30 || !publicKey || publicKey.tag !== 0x03 || extra) {
    throw new Error('malformed SubjectPublicKeyInfo');
  }
  const [oid, parameters] = derChildren(der, algorithm);
  // A BIT STRING starts with its count of unused bits: 0 for a key.
  if (publicKey.end === publicKey.start || der[publicKey.start] !== 0) throw new Error('malformed public key');
  const keyBytes = der.subarray(publicKey.start + 1, publicKey.end);
  const algorithmOid = oid && oid.tag === 0x06 ? bytesToHex(derContents(der, oid)) : '';
  if (algorithmOid === OID_RSA_ENCRYPTION) return importRsaPublicKey(keyBytes);
  if (algorithmOid === OID_EC_PUBLIC_KEY) {
    if (!parameters || parameters.tag !== 0x06 || bytesToHex(derContents(der, parameters)) !== OID_P256) {
      throw new Error('unsupported EC curve');
    }
    if (keyBytes.length !== 65 || keyBytes[0] !== 0x04) throw new Error('unsupported EC point encoding');
    return ecKey(bytesToBigInt(keyBytes.subarray(1, 33)), bytesToBigInt(keyBytes.subarray(33)));
  }
  throw new Error('unsupported public key algorithm');
}

/** PKCS#1 RSAPublicKey: SEQUENCE { modulus INTEGER, publicExponent INTEGER }. */
function importRsaPublicKey(der) {
  const [n, e, extra] = derChildren(der, derTop(der, 0x30));
  if (!n || !e || extra) throw new Error('malformed RSA public key');
  return rsaKey(derUnsigned(der, n), derUnsigned(der, e));
}

function importJwk(jwk) {
  switch (jwk.kty) {
    case 'RSA':
      return rsaKey(bytesToBigInt(jwkBytes(jwk, 'n')), bytesToBigInt(jwkBytes(jwk, 'e')));
    case 'EC': {
      if (jwk.crv !== 'P-256') throw new Error(`unsupported EC curve: ${jwk.crv}`);
      const x = jwkBytes(jwk, 'x');
      const y = jwkBytes(jwk, 'y');
      if (x.length > 32 || y.length > 32) throw new Error('EC coordinate too long for P-256');
      return ecKey(bytesToBigInt(x), bytesToBigInt(y));
    }
    case 'oct':
      return secretKey(jwkBytes(jwk, 'k'));
    default:
      throw new Error(`unsupported JWK key type: ${jwk.kty}`);
  }
}

/** A JWK member's base64url bytes (trailing `=` padding tolerated), non-empty. */
function jwkBytes(jwk, name) {
  const value = jwk[name];
  const bytes = typeof value === 'string' ? base64UrlDecode(value.replace(/=+$/, '')) : null;
  if (!bytes || bytes.length === 0) throw new Error(`JWK member "${name}" is not base64url`);
  return bytes;
}

/**
 * The SPKI PEM ("-----BEGIN PUBLIC KEY-----") of an RSA or EC P-256 public
 * JWK; throws an Error for anything else.
 */
export function jwkToPem(jwk) {
  if (jwk === null || typeof jwk !== 'object' || (jwk.kty !== 'RSA' && jwk.kty !== 'EC')) {
    throw new Error('jwkToPem: expected an RSA or EC public JWK');
  }
  const key = importJwk(jwk);
  // SubjectPublicKeyInfo: the algorithm, then the key in a BIT STRING (0 unused bits).
  let spki;
  if (key.kind === 'rsa') {
    const rsaPublicKey = derEncode(0x30, derInteger(key.n), derInteger(key.e));
    spki = derEncode(0x30, RSA_ALGORITHM_ID, derEncode(0x03, [0], rsaPublicKey));
  } else {
    const point = derEncode(0x03, [0, 0x04], bigIntToBytes(key.x, 32), bigIntToBytes(key.y, 32));
    spki = derEncode(0x30, EC_P256_ALGORITHM_ID, point);
  }
  const lines = btoa(bytesToBinary(spki)).match(/.{1,64}/g).join('\n');
  return `-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`;
}

// ---------------------------------------------------------------------------
// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.2)

/** DER DigestInfo prefix for SHA-256 (RFC 8017 9.2, note 1). */
const SHA256_DIGEST_INFO = hexToBytes('3031300d060960864801650304020105000420');

/** base^exponent mod modulus, left to right: e = 65537 takes 17 multiplications. */
function modPow(base, exponent, modulus) {
  const bits = exponent.toString(2);
  let result = base;
  for (let i = 1; i < bits.length; i++) {
    result = (result * result) % modulus;
    if (bits.charCodeAt(i) === 49) result = (result * base) % modulus;
  }
  return result;
}

function verifyRs256(key, data, signature) {
  const size = key.size;
  const tail = SHA256_DIGEST_INFO.length + 32;
  if (signature.length !== size || size < tail + 11) return false;
  const s = bytesToBigInt(signature);
  if (s >= key.n) return false;
  // Build the one valid encoding, EM = 00 01 FF..FF 00 || DigestInfo || H, and compare all of it.
  const expected = new Uint8Array(size);
  expected[1] = 0x01;
  expected.fill(0xff, 2, size - tail - 1);
  expected.set(SHA256_DIGEST_INFO, size - tail);
  expected.set(sha256(data), size - 32);
  return equalBytes(bigIntToBytes(modPow(s, key.e, key.n), size), expected);
}

// ---------------------------------------------------------------------------
// ES256: ECDSA on P-256 with SHA-256 (FIPS 186-4, SEC 1 4.1.4)
//
// Points are Jacobian (X, Y, Z) for x = X/Z^2, y = Y/Z^3, in an object updated
// in place; Z = 0 is the point at infinity. u1*G + u2*Q is computed in one
// pass over the bits of both scalars (Shamir's trick) with G, Q and G+Q in
// affine form, so every addition is a mixed one. Finding G+Q costs one
// inversion; the final x-coordinate check needs none (it compares X with
// r*Z^2), so a verification inverts twice, counting s^-1.

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

/** Whether (x, y) is an affine point of P-256 (y^2 = x^3 - 3x + b); a = -3. */
function onCurve(x, y) {
  if (x >= P || y >= P) return false;
  return (y * y - (x * x * x - 3n * x + B)) % P === 0n;
}

/** a^-1 mod m for a prime m and a not divisible by it (extended Euclid). */
function modInverse(a, m) {
  let r0 = m;
  let r1 = a % m;
  let t0 = 0n;
  let t1 = 1n;
  while (r1 !== 0n) {
    const q = r0 / r1;
    const r2 = r0 - q * r1;
    r0 = r1;
    r1 = r2;
    const t2 = t0 - q * t1;
    t0 = t1;
    t1 = t2;
  }
  return t0 < 0n ? t0 + m : t0;
}

/** R = 2R ("dbl-2001-b", for a = -3). */
function pointDouble(R) {
  const { x, y, z } = R;
  if (z === 0n) return;
  const delta = (z * z) % P;
  const gamma = (y * y) % P;
  const beta = (x * gamma) % P;
  const alpha = (3n * (x - delta) * (x + delta)) % P;
  let x3 = (alpha * alpha - 8n * beta) % P;
  if (x3 < 0n) x3 += P;
  let y3 = (alpha * (4n * beta - x3) - 8n * ((gamma * gamma) % P)) % P;
  if (y3 < 0n) y3 += P;
  R.x = x3;
  R.y = y3;
  R.z = (2n * y * z) % P;
}

/** R = R + (ax, ay), the second point affine ("madd-2004-hmv"). */
function pointAddAffine(R, ax, ay) {
  const { x, y, z } = R;
  if (z === 0n) {
    R.x = ax;
    R.y = ay;
    R.z = 1n;
    return;
  }
  const zz = (z * z) % P;
  let h = (ax * zz - x) % P;
  if (h < 0n) h += P;
  let r = (((ay * zz) % P) * z - y) % P;
  if (r < 0n) r += P;
  if (h === 0n) {
    // Same x: the same point (double it) or its negation (the sum is infinity).
    if (r === 0n) pointDouble(R);
    else R.z = 0n;
    return;
  }
  const hh = (h * h) % P;
  const hhh = (h * hh) % P;
  const v = (x * hh) % P;
  let x3 = (r * r - hhh - 2n * v) % P;
  if (x3 < 0n) x3 += P;
  let y3 = (r * (v - x3) - y * hhh) % P;
  if (y3 < 0n) y3 += P;
  R.x = x3;
  R.y = y3;
  R.z = (z * h) % P;
}

/** u1*G + u2*Q as a Jacobian point. */
function doubleScalarMultiply(u1, u2, qx, qy) {
  const sum = { x: GX, y: GY, z: 1n };
  pointAddAffine(sum, qx, qy);
  let gq = null;
  if (sum.z !== 0n) {
    const zInverse = modInverse(sum.z, P);
    const zInverse2 = (zInverse * zInverse) % P;
    gq = [(sum.x * zInverse2) % P, (((sum.y * zInverse2) % P) * zInverse) % P];
  }
  // Indexed by (bit of u1) + 2 * (bit of u2).
  const table = [null, [GX, GY], [qx, qy], gq];
  const bits1 = u1.toString(2).padStart(256, '0');
  const bits2 = u2.toString(2).padStart(256, '0');
  const R = { x: 0n, y: 1n, z: 0n };
  for (let i = 0; i < 256; i++) {
    pointDouble(R);
    const addend = table[(bits1.charCodeAt(i) - 48) | ((bits2.charCodeAt(i) - 48) << 1)];
    if (addend) pointAddAffine(R, addend[0], addend[1]);
  }
  return R;
}

function verifyEs256(key, data, signature) {
  if (signature.length !== 64) return false;
  const r = bytesToBigInt(signature.subarray(0, 32));
  const s = bytesToBigInt(signature.subarray(32));
  if (r === 0n || r >= N || s === 0n || s >= N) return false;
  const e = bytesToBigInt(sha256(data));
  const w = modInverse(s, N);
  const R = doubleScalarMultiply((e * w) % N, (r * w) % N, key.x, key.y);
  if (R.z === 0n) return false;
  // Valid iff x(R) mod n = r. As n < p < 2n, x(R) is r or r + n (if below p);
  // x(R) = c exactly when X = c * Z^2 (mod p).
  const zz = (R.z * R.z) % P;
  if ((r * zz) % P === R.x) return true;
  return r + N < P && ((r + N) * zz) % P === R.x;
}

// ---------------------------------------------------------------------------
// HS256

function verifyHs256(key, data, signature) {
  return equalBytes(hmacSha256(key.bytes, data), signature);
}

// ---------------------------------------------------------------------------
// Time spans (the `ms` package's syntax: 60, "2 days", "10h", "7d", "1.5h")

const UNIT_MS = Object.create(null);
for (const [ms, units] of [
  [1, ['', 'ms', 'msec', 'msecs', 'millisecond', 'milliseconds']],
  [1000, ['s', 'sec', 'secs', 'second', 'seconds']],
  [60000, ['m', 'min', 'mins', 'minute', 'minutes']],
  [3600000, ['h', 'hr', 'hrs', 'hour', 'hours']],
  [86400000, ['d', 'day', 'days']],
  [604800000, ['w', 'week', 'weeks']],
  [31557600000, ['y', 'yr', 'yrs', 'year', 'years']],
]) {
  for (const unit of units) UNIT_MS[unit] = ms;
}

/**
 * The time `span` after `timestamp` (seconds): a number is seconds, a string
 * a duration as `ms` reads it (a bare number in a string is milliseconds).
 * Undefined when `span` is neither.
 */
function timespan(span, timestamp) {
  if (typeof span === 'number') return timestamp + span;
  if (typeof span !== 'string' || span.length > 100) return undefined;
  const match = /^(-?(?:\d+)?\.?\d+) *([a-z]*)$/i.exec(span);
  const unitMs = match && UNIT_MS[match[2].toLowerCase()];
  return unitMs ? Math.floor(timestamp + (parseFloat(match[1]) * unitMs) / 1000) : undefined;
}

// ---------------------------------------------------------------------------
// decode, verify and sign (jsonwebtoken)

/** A JWS in compact form, as `jws` recognises one. */
const JWS_PATTERN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** What `verify` can check, by `alg`. */
const ALGORITHMS = new Map([
  ['RS256', { kind: 'rsa', verify: verifyRs256 }],
  ['ES256', { kind: 'ec', verify: verifyEs256 }],
  ['HS256', { kind: 'secret', verify: verifyHs256 }],
]);

/** jsonwebtoken's `algorithms` when none are given, by the key's kind. */
const DEFAULT_ALGORITHMS = {
  rsa: ['RS256', 'RS384', 'RS512'],
  ec: ['ES256', 'ES384', 'ES512'],
  secret: ['HS256', 'HS384', 'HS512'],
};

/**
 * The payload of a JWT without checking its signature, or null when `token`
 * is not one; `options.complete` returns `{header, payload, signature}`. A
 * payload that is not JSON is returned as a string, except that when the
 * header's `typ` is "JWT" or `options.json` is set it must be JSON (else a
 * SyntaxError is thrown), as with jsonwebtoken.
 */
export function decode(token, options) {
  options = options || {};
  if (typeof token !== 'string' || !JWS_PATTERN.test(token)) return null;
  const [encodedHeader, encodedPayload, signature] = token.split('.');
  const header = parseJsonObject(base64UrlDecode(encodedHeader));
  const payloadBytes = base64UrlDecode(encodedPayload);
  if (!header || !payloadBytes) return null;
  let payload = utf8Decoder.decode(payloadBytes);
  if (header.typ === 'JWT' || options.json) payload = JSON.parse(payload);
  if (typeof payload === 'string') {
    try {
      const parsed = JSON.parse(payload);
      if (typeof parsed === 'object') payload = parsed;
    } catch {
      // Not JSON: the payload is the string.
    }
  }
  return options.complete === true ? { header, payload, signature } : payload;
}

/**
 * Checks `token`'s signature with `secretOrPublicKey` and its claims against
 * `options`, with jsonwebtoken v9's options and error messages. Returns the
 * payload (or `{header, payload, signature}` with `options.complete`) or
 * throws; with a callback, passes `(err, decoded)` to it instead.
 * `secretOrPublicKey` may be a function `(header, cb)` that passes a key to
 * `cb(err, key)`, which requires a callback.
 *
 * Stricter than jsonwebtoken: a segment that is not base64url is "jwt
 * malformed" and a payload that is not a JSON object "invalid token"; `none`
 * is never accepted; a key of the wrong kind for `alg` (an RSA PEM for HS256,
 * a secret for RS256) is "invalid algorithm" whatever `options.algorithms`
 * says; a string that looks like a PEM but is not a supported public key is
 * refused rather than taken for an HMAC secret.
 */
export function verify(token, secretOrPublicKey, options, callback) {
  if (typeof options === 'function' && !callback) {
    callback = options;
    options = undefined;
  }
  options = options || {};
  const done = callback
    ? (err, decoded) => {
        callback(err, decoded);
      }
    : (err, decoded) => {
        if (err) throw err;
        return decoded;
      };

  let parsed;
  try {
    checkVerifyOptions(options);
    parsed = decodeForVerify(token);
  } catch (err) {
    return done(err);
  }
  const finish = (key) => {
    let decoded;
    try {
      decoded = checkToken(parsed, key, options);
    } catch (err) {
      return done(err);
    }
    return done(null, decoded);
  };

  if (typeof secretOrPublicKey !== 'function') return finish(secretOrPublicKey);
  if (!callback) {
    return done(
      new JsonWebTokenError('verify must be called asynchronous if secret or public key is provided as a callback'),
    );
  }
  secretOrPublicKey(parsed.header, (err, key) => {
    if (err) return done(new JsonWebTokenError('error in secret or public key callback: ' + err.message));
    return finish(key);
  });
}

function checkVerifyOptions(options) {
  if (options.clockTimestamp && typeof options.clockTimestamp !== 'number') {
    throw new JsonWebTokenError('clockTimestamp must be a number');
  }
  if (options.nonce !== undefined && (typeof options.nonce !== 'string' || options.nonce.trim() === '')) {
    throw new JsonWebTokenError('nonce must be a non-empty string');
  }
}

/** The parts of `token` that `verify` needs; throws for anything but a JWT. */
function decodeForVerify(token) {
  if (!token) throw new JsonWebTokenError('jwt must be provided');
  if (typeof token !== 'string') throw new JsonWebTokenError('jwt must be a string');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JsonWebTokenError('jwt malformed');
  const headerBytes = base64UrlDecode(parts[0]);
  const payloadBytes = base64UrlDecode(parts[1]);
  const signature = base64UrlDecode(parts[2]);
  if (!headerBytes || !payloadBytes || !signature) throw new JsonWebTokenError('jwt malformed');
  const header = parseJsonObject(headerBytes);
  const payload = parseJsonObject(payloadBytes);
  if (!header || !payload) throw new JsonWebTokenError('invalid token');
  return { header, payload, signature, parts };
}

/** Checks the algorithm, signature and claims of a decoded token; returns what `verify` returns. */
function checkToken({ header, payload, signature, parts }, keyMaterial, options) {
  if (signature.length === 0) {
    throw new JsonWebTokenError(header.alg === 'none' ? 'invalid algorithm' : 'jwt signature is required');
  }
  if (!keyMaterial) throw new JsonWebTokenError('secret or public key must be provided');
  let key;
  try {
    key = importKey(keyMaterial);
  } catch (err) {
    throw new JsonWebTokenError('secretOrPublicKey is not valid key material', err);
  }
  const allowed = options.algorithms ? [].concat(options.algorithms) : DEFAULT_ALGORITHMS[key.kind];
  const algorithm = ALGORITHMS.get(header.alg);
  // The key's kind must suit the algorithm: an RSA key's PEM is never an HMAC secret.
  if (!allowed.includes(header.alg) || !algorithm || algorithm.kind !== key.kind) {
    throw new JsonWebTokenError('invalid algorithm');
  }
  if (!algorithm.verify(key, utf8Encoder.encode(parts[0] + '.' + parts[1]), signature)) {
    throw new JsonWebTokenError('invalid signature');
  }
  checkClaims(payload, options);
  return options.complete === true ? { header, payload, signature: parts[2] } : payload;
}

function checkClaims(payload, options) {
  const now = options.clockTimestamp || Math.floor(Date.now() / 1000);
  const tolerance = options.clockTolerance || 0;

  if (payload.nbf !== undefined && !options.ignoreNotBefore) {
    if (typeof payload.nbf !== 'number') throw new JsonWebTokenError('invalid nbf value');
    if (payload.nbf > now + tolerance) throw new NotBeforeError('jwt not active', new Date(payload.nbf * 1000));
  }

  if (payload.exp !== undefined && !options.ignoreExpiration) {
    if (typeof payload.exp !== 'number') throw new JsonWebTokenError('invalid exp value');
    if (now >= payload.exp + tolerance) throw new TokenExpiredError('jwt expired', new Date(payload.exp * 1000));
  }

  if (options.audience) {
    const audiences = Array.isArray(options.audience) ? options.audience : [options.audience];
    const targets = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    const match = targets.some(
      (target) =>
        typeof target === 'string' &&
        audiences.some((audience) => (audience instanceof RegExp ? audience.test(target) : audience === target)),
    );
    if (!match) throw new JsonWebTokenError('jwt audience invalid. expected: ' + audiences.join(' or '));
  }

  if (options.issuer) {
    const invalid =
      (typeof options.issuer === 'string' && payload.iss !== options.issuer) ||
      (Array.isArray(options.issuer) && !options.issuer.includes(payload.iss));
    if (invalid) throw new JsonWebTokenError('jwt issuer invalid. expected: ' + options.issuer);
  }

  if (options.subject && payload.sub !== options.subject) {
    throw new JsonWebTokenError('jwt subject invalid. expected: ' + options.subject);
  }

  if (options.jwtid && payload.jti !== options.jwtid) {
    throw new JsonWebTokenError('jwt jwtid invalid. expected: ' + options.jwtid);
  }

  if (options.nonce && payload.nonce !== options.nonce) {
    throw new JsonWebTokenError('jwt nonce invalid. expected: ' + options.nonce);
  }

  if (options.maxAge) {
    if (typeof payload.iat !== 'number') throw new JsonWebTokenError('iat required when maxAge is specified');
    const latest = timespan(options.maxAge, payload.iat);
    if (latest === undefined) {
      throw new JsonWebTokenError(
        '"maxAge" should be a number of seconds or string representing a timespan eg: "1d", "20h", 60',
      );
    }
    if (now >= latest + tolerance) throw new TokenExpiredError('maxAge exceeded', new Date(latest * 1000));
  }
}

/** The claims `sign` sets from its options. */
const SIGN_CLAIM_OPTIONS = [
  ['audience', 'aud'],
  ['issuer', 'iss'],
  ['subject', 'sub'],
];

/**
 * An HS256 JWT of `payload` (a plain object) under `secret` (string,
 * Uint8Array or oct JWK). Options: algorithm ('HS256' only), expiresIn,
 * audience, issuer, subject, keyid, noTimestamp. Adds `iat` unless
 * `noTimestamp` (keeping a payload's own `iat`).
 */
export function sign(payload, secret, options) {
  options = options || {};
  if ((options.algorithm || 'HS256') !== 'HS256') throw new JsonWebTokenError('only HS256 tokens can be signed');
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new JsonWebTokenError('Expected "payload" to be a plain object.');
  }
  if (!secret) throw new JsonWebTokenError('secretOrPrivateKey must have a value');
  let key;
  try {
    key = importKey(secret);
  } catch (err) {
    throw new JsonWebTokenError('secretOrPrivateKey is not valid key material', err);
  }
  if (key.kind !== 'secret') throw new JsonWebTokenError('secretOrPrivateKey must be a symmetric key when using HS256');

  const claims = Object.assign({}, payload);
  const timestamp = claims.iat || Math.floor(Date.now() / 1000);
  if (options.noTimestamp) delete claims.iat;
  else claims.iat = timestamp;
  if (options.expiresIn !== undefined) {
    if (claims.exp !== undefined) {
      throw new JsonWebTokenError('Bad "options.expiresIn" option the payload already has an "exp" property.');
    }
    claims.exp = timespan(options.expiresIn, timestamp);
    if (claims.exp === undefined) {
      throw new JsonWebTokenError('"expiresIn" should be a number of seconds or string representing a timespan');
    }
  }
  for (const [option, claim] of SIGN_CLAIM_OPTIONS) {
    if (options[option] === undefined) continue;
    if (claims[claim] !== undefined) {
      throw new JsonWebTokenError(`Bad "options.${option}" option. The payload already has an "${claim}" property.`);
    }
    claims[claim] = options[option];
  }

  const header = { alg: 'HS256', typ: 'JWT', kid: options.keyid };
  const input =
    base64UrlEncode(utf8Encoder.encode(JSON.stringify(header))) +
    '.' +
    base64UrlEncode(utf8Encoder.encode(JSON.stringify(claims)));
  return input + '.' + base64UrlEncode(hmacSha256(key.bytes, utf8Encoder.encode(input)));
}

// ---------------------------------------------------------------------------
// JWKS client (jwks-rsa)

/**
 * A jwks-rsa-like client for the JWKS at `options.jwksUri`, fetched with the
 * caller's synchronous `getJson(url)` (which returns parsed JSON or throws)
 * on first use and then kept. `getSigningKeys([cb])` and
 * `getSigningKey(kid, [cb])` call `cb(err, result)` or, without one, return a
 * promise.
 */
export function createJwksClient(options, getJson) {
  if (!options || typeof options.jwksUri !== 'string' || options.jwksUri === '') {
    throw new TypeError('createJwksClient: options.jwksUri is required');
  }
  if (typeof getJson !== 'function') throw new TypeError('createJwksClient: getJson must be a function');
  let cached;

  const signingKeys = () => {
    if (cached) return cached;
    const jwks = getJson(options.jwksUri);
    const keys = jwks !== null && typeof jwks === 'object' && Array.isArray(jwks.keys) ? jwks.keys : [];
    if (keys.length === 0) throw new JwksError('The JWKS endpoint did not contain any keys');
    const found = keys
      .filter((jwk) => jwk && (jwk.use === 'sig' || jwk.use === undefined) && (jwk.kty === 'RSA' || jwk.kty === 'EC'))
      .map(signingKey)
      .filter(Boolean);
    if (found.length === 0) throw new JwksError('The JWKS endpoint did not contain any signing keys');
    cached = found;
    return cached;
  };

  const signingKeyFor = (kid) => {
    const keys = signingKeys();
    const kidDefined = kid !== undefined && kid !== null;
    if (!kidDefined && keys.length > 1) {
      throw new SigningKeyNotFoundError('No KID specified and JWKS endpoint returned more than 1 key');
    }
    const key = keys.find((k) => !kidDefined || k.kid === kid);
    if (!key) throw new SigningKeyNotFoundError(`Unable to find a signing key that matches '${kid}'`);
    return key;
  };

  return {
    getSigningKeys(callback) {
      return settle(signingKeys, callback);
    },
    getSigningKey(kid, callback) {
      if (typeof kid === 'function' && callback === undefined) {
        callback = kid;
        kid = undefined;
      }
      return settle(() => signingKeyFor(kid), callback);
    },
  };
}

/** A JWKS entry as jwks-rsa presents it, or null if it is not a usable public key. */
function signingKey(jwk) {
  let pem;
  try {
    pem = jwkToPem(jwk);
  } catch {
    return null;
  }
  const key = { kid: jwk.kid, alg: jwk.alg, kty: jwk.kty, getPublicKey: () => pem };
  // jwks-rsa sets `publicKey` on every key, and `rsaPublicKey` on RSA ones.
  key.publicKey = pem;
  if (jwk.kty === 'RSA') key.rsaPublicKey = pem;
  return key;
}

/** `compute()`'s result or error for a node-style callback or, without one, as a promise. */
function settle(compute, callback) {
  let result;
  try {
    result = compute();
  } catch (err) {
    if (!callback) return Promise.reject(err);
    callback(err);
    return undefined;
  }
  if (!callback) return Promise.resolve(result);
  callback(null, result);
  return undefined;
}
