/**
 * The part of Node's `Buffer` that fetchUserProfile scripts use: building
 * bytes from text in an encoding (`Buffer.from(id + ':' + secret).toString('base64')`,
 * `Buffer.from(part, 'base64').toString()`), concatenating and comparing.
 *
 * A `Buffer` is a `Uint8Array`, as in Node. Encodings: `utf8` (`utf-8`),
 * `base64`, `base64url`, `hex`, `latin1` (`binary`) and `ascii`. Left out:
 * the numeric read/write methods, `fill` patterns other than a byte, and
 * `buf.slice` sharing memory (here it copies, like `Uint8Array#slice`).
 */

const UTF8_ENCODER = new TextEncoder();
const UTF8_DECODER = new TextDecoder();
const ENCODINGS = new Set(['utf8', 'utf-8', 'base64', 'base64url', 'hex', 'latin1', 'binary', 'ascii']);

function encodingOf(encoding) {
  const name = encoding === undefined || encoding === null ? 'utf8' : String(encoding).toLowerCase();
  if (!ENCODINGS.has(name)) throw new TypeError(`Unknown encoding: ${encoding}`);
  return name;
}

/** Bytes of a "binary string" (one char per byte, as `atob` returns). */
export function binaryToBytes(binary) {
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i) & 0xff;
  return bytes;
}

/** A "binary string" of `bytes` (as `btoa` takes), built in chunks (apply's argument limit). */
export function bytesToBinary(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return out;
}

/**
 * Node's lenient base64 decoding: both alphabets (base64url's `-` and `_`)
 * are read, characters outside them are skipped, and decoding stops at the
 * first `=`; missing padding is fine.
 */
function decodeBase64(text) {
  const end = text.indexOf('=');
  let clean = (end === -1 ? text : text.slice(0, end))
    .replace(/-/g, '+')
    .replace(/_/g, '/')
    .replace(/[^A-Za-z0-9+/]/g, '');
  if (clean.length % 4 === 1) clean = clean.slice(0, -1);
  while (clean.length % 4 !== 0) clean += '=';
  return binaryToBytes(atob(clean));
}

function encode(text, encoding) {
  switch (encoding) {
    case 'utf8':
    case 'utf-8':
      return UTF8_ENCODER.encode(text);
    case 'base64':
    case 'base64url':
      return decodeBase64(text);
    case 'hex': {
      // Node stops at the first pair that is not two hex digits.
      const bytes = new Uint8Array(text.length >>> 1);
      let n = 0;
      for (; n < bytes.length; n++) {
        const pair = text.substr(n * 2, 2);
        if (!/^[0-9a-fA-F]{2}$/.test(pair)) break;
        bytes[n] = Number.parseInt(pair, 16);
      }
      return bytes.subarray(0, n);
    }
    case 'ascii':
    case 'latin1':
    case 'binary':
      return binaryToBytes(text);
  }
}

function decode(bytes, encoding) {
  switch (encoding) {
    case 'utf8':
    case 'utf-8':
      return UTF8_DECODER.decode(bytes);
    case 'base64':
      return btoa(bytesToBinary(bytes));
    case 'base64url':
      return btoa(bytesToBinary(bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    case 'hex': {
      let out = '';
      for (const b of bytes) out += b.toString(16).padStart(2, '0');
      return out;
    }
    case 'ascii':
      return bytesToBinary(bytes.map((b) => b & 0x7f));
    case 'latin1':
    case 'binary':
      return bytesToBinary(bytes);
  }
}

export class Buffer extends Uint8Array {
  /**
   * Node's deprecated `new Buffer(string[, encoding])`, which older scripts
   * still use (`new Buffer(id + ':' + secret).toString('base64')`); any other
   * arguments are `Uint8Array`'s.
   */
  constructor(value, encodingOrOffset, length) {
    if (typeof value === 'string') {
      const bytes = encode(value, encodingOf(encodingOrOffset));
      super(bytes.length);
      this.set(bytes);
      return;
    }
    super(value, encodingOrOffset, length);
  }

  /**
   * `Buffer.from(string[, encoding])`, `Buffer.from(bytes | array | arrayBuffer)`.
   * @returns {Buffer}
   */
  static from(value, encodingOrOffset, length) {
    if (typeof value === 'string') return new Buffer(value, encodingOrOffset);
    if (value instanceof ArrayBuffer) {
      return new Buffer(value, encodingOrOffset ?? 0, length ?? value.byteLength - (encodingOrOffset ?? 0));
    }
    if (ArrayBuffer.isView(value) || Array.isArray(value)) {
      const copy = new Buffer(value.length);
      copy.set(value);
      return copy;
    }
    if (value !== null && typeof value === 'object' && value.type === 'Buffer' && Array.isArray(value.data)) {
      return Buffer.from(value.data);
    }
    throw new TypeError(
      'The first argument must be of type string, Buffer, ArrayBuffer, Array, or Array-like Object',
    );
  }

  /** A zero-filled (or `fill`-filled) buffer of `size` bytes. */
  static alloc(size, fill) {
    const buf = new Buffer(size);
    if (typeof fill === 'number') buf.fill(fill & 0xff);
    else if (typeof fill === 'string' && fill.length > 0) {
      const pattern = encode(fill, 'utf8');
      for (let i = 0; i < size; i++) buf[i] = pattern[i % pattern.length];
    }
    return buf;
  }

  static isBuffer(value) {
    return value instanceof Buffer;
  }

  static isEncoding(encoding) {
    return typeof encoding === 'string' && ENCODINGS.has(encoding.toLowerCase());
  }

  static byteLength(value, encoding) {
    if (typeof value !== 'string') return value.byteLength;
    return encode(value, encodingOf(encoding)).length;
  }

  static concat(list, totalLength) {
    const total = totalLength ?? list.reduce((n, b) => n + b.length, 0);
    const out = Buffer.alloc(total);
    let at = 0;
    for (const b of list) {
      if (at >= total) break;
      out.set(b.subarray(0, total - at), at);
      at += b.length;
    }
    return out;
  }

  static compare(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }

  /** The bytes as text in `encoding` (default utf8), optionally of `[start, end)`. */
  toString(encoding, start, end) {
    const bytes = start === undefined && end === undefined ? this : this.subarray(start ?? 0, end ?? this.length);
    return decode(bytes, encodingOf(encoding));
  }

  equals(other) {
    return Buffer.compare(this, other) === 0;
  }

  toJSON() {
    return { type: 'Buffer', data: Array.from(this) };
  }
}
