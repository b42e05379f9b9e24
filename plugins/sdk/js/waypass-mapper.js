/**
 * JavaScript SDK for Waypass profile mappers.
 *
 * A mapper is a WebAssembly component that turns an OAuth2 access token into
 * the user's profile (the `waypass:mapper/mapper` world in `wit/mapper.wit`).
 * `waypass mapper build DIR` builds a directory holding `mapper.js` with
 * componentize-js and puts this file next to it, so a mapper imports it as
 * `./waypass-mapper.js`.
 *
 * How componentize-js maps the world onto JavaScript: records are objects with
 * camelCase fields, `option` is a value or `undefined`, enums are strings
 * (`'get'`), variants are `{ tag, val }` with the WIT case names
 * (`'invalid-profile'`), `list<u8>` is a `Uint8Array`. An exported function
 * returns its `ok` value; a thrown value with an own `payload` property is
 * returned as the `err` (that is what {@link MapperError} carries). Any other
 * thrown `Error` traps the call. An imported function's `err` is thrown as an
 * `Error` whose `payload` is the WIT error.
 *
 * @example
 * import { exportMapper, getJson, requireSetting, invalidProfile,
 *          profile, optionalString, log } from './waypass-mapper.js';
 *
 * export const fetchUserProfile = exportMapper((accessToken, ctx) => {
 *   const user = getJson(requireSetting(ctx, 'userinfo_url'), accessToken);
 *   const id = optionalString(user?.sub);
 *   if (!id) throw invalidProfile('no `sub` in userinfo');
 *   log.debug(`found user ${id}`);
 *   return profile({ userId: id, email: optionalString(user.email) });
 * });
 *
 * @module waypass-mapper
 */

import { send as hostSend } from 'waypass:mapper/http@0.1.0';
import { log as hostLog } from 'waypass:mapper/log@0.1.0';

// ---------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------

/**
 * Creates, in the global componentize-js's bindings run in, the standard
 * classes every call uses, so that they are in the build's snapshot.
 *
 * componentize-js runs a component's top level once, at build time, and
 * snapshots the engine; each call starts from that snapshot in a fresh
 * instance. SpiderMonkey creates a global's standard classes (constructor,
 * prototype, their methods) on first use, and the bindings (the export's
 * wrapper that lifts the arguments and lowers the profile, the imports'
 * wrappers) live in a global of their own that nothing uses at build time:
 * each call created `Uint8Array` (with `TypedArray`), `String`'s prototype,
 * `Promise` (the export's wrapper is `async`) and `SavedFrame` (the stack
 * SpiderMonkey records for each promise) there anew, over half of a bare
 * call's instructions (BENCHMARKS.md #17, "Where StarlingMonkey's
 * instructions go, by name"). An imported function belongs to that global,
 * so its `Function` constructor evaluates there. `BigInt` lifts `expires_in`.
 * Under Node (the SDK's tests) this touches Node's own global: harmless.
 */
function createBindingsClasses() {
  const bindings = hostSend.constructor('return globalThis')();
  void [
    bindings.Uint8Array,
    bindings.String.prototype,
    bindings.Promise.resolve(),
    bindings.BigInt,
    new bindings.Error().stack,
  ];
}
createBindingsClasses();

/** How many bytes of a response body error messages quote. */
export const SNIPPET_LIMIT = 512;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** The cases of the world's `error`. */
const KINDS = ['unauthorized', 'provider', 'invalid-profile', 'other'];
/** The cases of the `http` interface's `error`. */
const HTTP_CODES = ['denied', 'timeout', 'too-large', 'invalid-request', 'transport', 'budget-exhausted'];

/**
 * Why a mapper could not produce a profile: one case of the world's
 * `variant error`. Throw it from the mapper; the component returns it as the
 * call's `err`. Build one with {@link unauthorized}, {@link providerError},
 * {@link invalidProfile} or {@link otherError}.
 */
export class MapperError extends Error {
  /**
   * @param {'unauthorized'|'provider'|'invalid-profile'|'other'} kind The WIT case.
   * @param {string} message The text the case carries.
   */
  constructor(kind, message) {
    super(String(message));
    this.name = 'MapperError';
    /** The WIT case: `unauthorized`, `provider`, `invalid-profile` or `other`. */
    this.kind = kind;
    // componentize-js returns an own `payload` of a thrown value as the `err`.
    /** The world's `error` value, `{ tag, val }`. */
    this.payload = { tag: kind, val: String(message) };
  }
}

/**
 * The provider rejected the access token (Waypass answers the app with
 * `access_denied`): `throw unauthorized(body)`.
 * @param {string} message
 * @returns {MapperError}
 */
export function unauthorized(message) {
  return new MapperError('unauthorized', message);
}

/**
 * The provider answered something unexpected: a non-2xx status, a body that
 * is not what the mapper expects.
 * @param {string} message
 * @returns {MapperError}
 */
export function providerError(message) {
  return new MapperError('provider', message);
}

/**
 * The provider's answer lacks what a profile needs (no user id, say).
 * @param {string} message
 * @returns {MapperError}
 */
export function invalidProfile(message) {
  return new MapperError('invalid-profile', message);
}

/**
 * Anything else.
 * @param {string} message
 * @returns {MapperError}
 */
export function otherError(message) {
  return new MapperError('other', message);
}

/**
 * Why the host did not answer a request: the `http` interface's `error`.
 * It is a {@link MapperError} of kind `other` with the text
 * `http <code>[: <detail>]` (`http denied: <reason>`, `http timeout`), so one
 * that escapes the mapper becomes the call's error as in the Rust SDK.
 */
export class HttpError extends MapperError {
  /**
   * @param {'denied'|'timeout'|'too-large'|'invalid-request'|'transport'|'budget-exhausted'} code
   *   The WIT case.
   * @param {string} [detail] The text `denied`, `invalid-request` and `transport` carry.
   */
  constructor(code, detail) {
    super('other', `http ${detail === undefined ? code : `${code}: ${detail}`}`);
    this.name = 'HttpError';
    /** The WIT case, in kebab case: `denied`, `timeout`, `too-large`, ... */
    this.code = code;
    /** The case's text, if it carries one. */
    this.detail = detail;
  }

  /** The code followed by `: <detail>` when there is one, e.g. `denied: host not allowed`. */
  describe() {
    return this.detail === undefined ? this.code : `${this.code}: ${this.detail}`;
  }
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/**
 * The value of the connection's setting `key`, or `undefined`.
 * @param {{settings: Array<[string, string]>}} ctx The mapper's context.
 * @param {string} key
 * @returns {string|undefined}
 */
export function setting(ctx, key) {
  const found = ctx.settings.find(([name]) => name === key);
  return found === undefined ? undefined : found[1];
}

/**
 * The value of the setting `key`; throws `other("missing setting `key`")`
 * without it.
 * @param {{settings: Array<[string, string]>}} ctx The mapper's context.
 * @param {string} key
 * @returns {string}
 * @throws {MapperError}
 */
export function requireSetting(ctx, key) {
  const value = setting(ctx, key);
  if (value === undefined) throw otherError(`missing setting \`${key}\``);
  return value;
}

// ---------------------------------------------------------------------------
// HTTP through the host
// ---------------------------------------------------------------------------

// Keeps a leading byte-order mark, as the Rust SDK's lossy decoding does.
const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });
// Keeps a byte-order mark (which JSON.parse then refuses) and throws on invalid UTF-8.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8_ENCODER = new TextEncoder();

/**
 * `bytes` parsed as JSON, read as strictly as the Rust SDK reads them: invalid
 * UTF-8 or a byte-order mark is an error, as is anything `JSON.parse` refuses.
 * @param {Uint8Array|string} bytes
 * @returns {any}
 * @throws {SyntaxError|TypeError} When the bytes are not JSON.
 */
export function parseJson(bytes) {
  return JSON.parse(typeof bytes === 'string' ? bytes : STRICT_UTF8.decode(bytes));
}

/**
 * `bytes` as text (invalid UTF-8 replaced), cut to at most
 * {@link SNIPPET_LIMIT} bytes on a character boundary, with `…` appended
 * when cut.
 * @param {Uint8Array|string} bytes
 * @returns {string}
 */
export function snippet(bytes) {
  const text = typeof bytes === 'string' ? bytes : UTF8.decode(bytes);
  const encoded = UTF8_ENCODER.encode(text);
  if (encoded.length <= SNIPPET_LIMIT) return text;
  let end = SNIPPET_LIMIT;
  // Back off continuation bytes (0b10xxxxxx) to a character's first byte.
  while (end > 0 && (encoded[end] & 0xc0) === 0x80) end -= 1;
  return `${UTF8.decode(encoded.subarray(0, end))}…`;
}

/** The provider's whole answer to a request sent with {@link send}. */
export class HttpResponse {
  /**
   * @param {{status: number, headers: Array<[string, string]>, body: Uint8Array}} raw
   *   The `http` interface's `response`.
   */
  constructor({ status, headers, body }) {
    /** The HTTP status code. */
    this.status = status;
    /** Header fields as `[name, value]` pairs, names in lower case. */
    this.headers = headers;
    /** The whole body. */
    this.body = body;
  }

  /**
   * The first value of the header `name` (case-insensitive), or `undefined`.
   * @param {string} name
   * @returns {string|undefined}
   */
  header(name) {
    const wanted = name.toLowerCase();
    const found = this.headers.find(([n]) => n.toLowerCase() === wanted);
    return found === undefined ? undefined : found[1];
  }

  /** Whether the status is 2xx. */
  isSuccess() {
    return this.status >= 200 && this.status < 300;
  }

  /** The body as text, invalid UTF-8 replaced. */
  text() {
    return UTF8.decode(this.body);
  }

  /** The body as text cut for an error message; see {@link snippet}. */
  snippet() {
    return snippet(this.body);
  }

  /**
   * The body as JSON, if the status is 2xx. 401 and 403 throw
   * `unauthorized(<body>)`, other statuses `provider("<status>: <body>")`, a
   * body that is not JSON `provider("response is not JSON (...): <body>")`.
   * @returns {any}
   * @throws {MapperError}
   */
  json() {
    if (this.status === 401 || this.status === 403) throw unauthorized(this.snippet());
    if (!this.isSuccess()) throw providerError(`${this.status}: ${this.snippet()}`);
    try {
      return parseJson(this.body);
    } catch (e) {
      throw providerError(`response is not JSON (${errorText(e)}): ${this.snippet()}`);
    }
  }
}

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'];

/**
 * Sends a request through the host, under the connection's egress policy,
 * and waits for the whole response. Redirects are never followed.
 *
 * @param {object} request
 * @param {string} request.url Absolute `https://` URL (`http://` only where allowed).
 * @param {string} [request.method='get'] `get`, `head`, `post`, `put`, `patch`, `delete` or `options`
 *   (any case).
 * @param {Array<[string, string]>|Record<string, string>} [request.headers] Header fields.
 * @param {Uint8Array|string} [request.body] The body; a string is sent as UTF-8.
 * @returns {HttpResponse}
 * @throws {HttpError} When the host did not answer (denied, timeout, ...).
 */
export function send({ url, method = 'get', headers = [], body } = {}) {
  const m = String(method).toLowerCase();
  if (!METHODS.includes(m)) throw new HttpError('invalid-request', `unsupported method \`${method}\``);
  const request = {
    method: m,
    url: String(url),
    headers: (Array.isArray(headers) ? headers : Object.entries(headers)).map(([n, v]) => [
      String(n),
      String(v),
    ]),
    body: typeof body === 'string' ? UTF8_ENCODER.encode(body) : body,
  };
  let raw;
  try {
    raw = hostSend(request);
  } catch (e) {
    const err = e?.payload;
    if (HTTP_CODES.includes(err?.tag)) throw new HttpError(err.tag, err.val);
    throw e;
  }
  return new HttpResponse(raw);
}

/**
 * Sends `request` (see {@link send}) and returns its body as JSON; see
 * {@link HttpResponse#json} for how statuses and bodies become errors.
 * @param {Parameters<typeof send>[0]} request
 * @returns {any}
 * @throws {MapperError}
 */
export function sendJson(request) {
  return send(request).json();
}

/**
 * GETs `url` with `Authorization: Bearer <bearerToken>` and
 * `Accept: application/json` and returns the body as JSON.
 *
 * 401 and 403 throw `unauthorized(<body>)`, any other non-2xx status
 * `provider("<status>: <body>")`, a body that is not JSON `provider(...)`,
 * and a host error `other("http <code>[: <detail>]")` (`http timeout`,
 * `http denied: <reason>`, ...). Quoted bodies are cut to
 * {@link SNIPPET_LIMIT} bytes.
 * @param {string} url
 * @param {string} bearerToken
 * @returns {any}
 * @throws {MapperError}
 */
export function getJson(url, bearerToken) {
  return sendJson({
    method: 'get',
    url,
    headers: [
      ['Authorization', `Bearer ${bearerToken}`],
      ['Accept', 'application/json'],
    ],
  });
}

// ---------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------

const TEXT_FIELDS = ['email', 'name', 'givenName', 'familyName', 'nickname', 'picture'];

/**
 * `value` if it is a string, else `undefined`: for optional fields of a JSON
 * answer (`optionalString(user.email)`).
 * @param {unknown} value
 * @returns {string|undefined}
 */
export function optionalString(value) {
  return typeof value === 'string' ? value : undefined;
}

/**
 * The user's profile, checked and shaped for the world.
 *
 * Text fields take a string, `null` or `undefined`; `emailVerified` a boolean,
 * `null` or `undefined`; `extra` an object of any other attributes, sent as
 * the text of one JSON object (left out when it has no keys). A value of the
 * wrong type throws `TypeError`: it is a bug in the mapper, as it would be a
 * compile error in Rust.
 *
 * @param {object} fields
 * @param {string} fields.userId The provider's stable identifier for the user (must not be empty).
 * @param {string|null} [fields.email]
 * @param {boolean|null} [fields.emailVerified]
 * @param {string|null} [fields.name]
 * @param {string|null} [fields.givenName]
 * @param {string|null} [fields.familyName]
 * @param {string|null} [fields.nickname]
 * @param {string|null} [fields.picture]
 * @param {Record<string, unknown>|null} [fields.extra]
 * @returns {{userId: string, email?: string, emailVerified?: boolean, name?: string,
 *   givenName?: string, familyName?: string, nickname?: string, picture?: string,
 *   extra?: string}}
 * @throws {TypeError}
 */
export function profile(fields) {
  if (fields === null || typeof fields !== 'object') {
    throw new TypeError(`a profile must be an object, not ${typeName(fields)}`);
  }
  const { userId, emailVerified, extra } = fields;
  if (typeof userId !== 'string') {
    throw new TypeError(`profile userId must be a string, not ${typeName(userId)}`);
  }
  const out = { userId };
  for (const field of TEXT_FIELDS) {
    const value = fields[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') {
      throw new TypeError(`profile ${field} must be a string or undefined, not ${typeName(value)}`);
    }
    out[field] = value;
  }
  if (emailVerified !== undefined && emailVerified !== null) {
    if (typeof emailVerified !== 'boolean') {
      throw new TypeError(
        `profile emailVerified must be a boolean or undefined, not ${typeName(emailVerified)}`,
      );
    }
    out.emailVerified = emailVerified;
  }
  if (extra !== undefined && extra !== null) {
    if (typeof extra === 'string') {
      // Already JSON text (a profile that went through `profile` once).
      out.extra = extra;
    } else if (typeof extra === 'object' && !Array.isArray(extra)) {
      if (Object.keys(extra).length > 0) out.extra = JSON.stringify(extra);
    } else {
      throw new TypeError(`profile extra must be an object or undefined, not ${typeName(extra)}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The export
// ---------------------------------------------------------------------------

/**
 * The function to export as `fetchUserProfile`, made from
 * `fn(accessToken, ctx)` (sync or async), which returns the profile's fields
 * (see {@link profile}) or throws a {@link MapperError}.
 *
 * `export const fetchUserProfile = exportMapper((accessToken, ctx) => { ... });`
 *
 * The result goes through {@link profile}. Any other thrown value is a bug in
 * the mapper: it is logged at error level with its stack and the call traps
 * (the mapper has no stderr, so without the log line the cause would be lost).
 *
 * A plain `fn`'s profile is returned as it is; only an `async` one's is
 * returned as a Promise. componentize-js runs the event loop for an export
 * only when it returns a Promise, and the host's `http` import blocks, so a
 * plain mapper never needs that loop (it cost up to ~0.06 ms a call,
 * BENCHMARKS.md #17).
 *
 * @param {(accessToken: string, ctx: object) => object|Promise<object>} fn
 * @returns {(accessToken: string, ctx: object) => object|Promise<object>}
 */
export function exportMapper(fn) {
  return function fetchUserProfile(accessToken, ctx) {
    let result;
    try {
      result = fn(accessToken, ctx);
      if (!isThenable(result)) return profile(result);
    } catch (e) {
      throw asFailure(e);
    }
    return Promise.resolve(result).then(profile).catch((e) => {
      throw asFailure(e);
    });
  };
}

/** Whether `value` is a Promise or another thenable. */
function isThenable(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function';
}

/**
 * What a failed call throws: the world's error if `e` is one (see
 * {@link asMapperError}), else `e` itself, logged at error level first.
 */
function asFailure(e) {
  const known = asMapperError(e);
  if (known !== undefined) return known;
  hostLog('error', `uncaught ${errorText(e)}${e?.stack ? `\n${e.stack}` : ''}`);
  return e;
}

/** `e` as the world's error, if it is one: ours, the raw `http` import's, or a `{ tag, val }`. */
function asMapperError(e) {
  if (e instanceof MapperError) return e;
  const value = e !== null && typeof e === 'object' && Object.hasOwn(e, 'payload') ? e.payload : e;
  if (value === null || typeof value !== 'object') return undefined;
  if (HTTP_CODES.includes(value.tag)) return new HttpError(value.tag, value.val);
  if (KINDS.includes(value.tag)) return new MapperError(value.tag, value.val);
  return undefined;
}

// ---------------------------------------------------------------------------
// Log
// ---------------------------------------------------------------------------

/**
 * Records `message` in the host's log at `level`, with the login's
 * correlation id. The host bounds how much one call may log; extra lines are
 * dropped. (`console` writes nowhere: mappers are built without stdio.)
 * @param {'trace'|'debug'|'info'|'warn'|'error'} level
 * @param {unknown} message
 */
export function writeLog(level, message) {
  hostLog(level, String(message));
}

/**
 * Log helpers: `log.info('...')` and so on; see {@link writeLog}.
 * @type {{trace: (m: unknown) => void, debug: (m: unknown) => void,
 *   info: (m: unknown) => void, warn: (m: unknown) => void, error: (m: unknown) => void}}
 */
export const log = Object.freeze({
  trace: (message) => writeLog('trace', message),
  debug: (message) => writeLog('debug', message),
  info: (message) => writeLog('info', message),
  warn: (message) => writeLog('warn', message),
  error: (message) => writeLog('error', message),
});

// ---------------------------------------------------------------------------

function errorText(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
