/**
 * The `request` module as fetchUserProfile scripts use it:
 * `request(options, callback)`, `request.get|post|put|patch|del|head(…)`,
 * `request.defaults(options)`, the options `url`/`uri`, `method`, `headers`,
 * `qs`, `json`, `form`, `body`, `auth` and `encoding`, and the
 * `(err, resp, body)` callback with `resp.statusCode`, `resp.headers` and
 * `resp.body`.
 *
 * Every request goes through the host's `http.send`, so the connection's
 * egress policy, timeouts, size caps and request budget apply. The callback
 * runs after the calling code has returned (in a microtask), as Node's does.
 *
 * Left out: streaming (`.pipe`, `.on`), redirects (the host never follows
 * them: a 3xx is the answer), cookies jars, proxies, `multipart`/`formData`,
 * and `qs` nesting (arrays repeat the key: `a=1&a=2`; nested objects are
 * written as JSON).
 */

import { Buffer } from './buffer.js';

const METHODS = { GET: 'get', HEAD: 'head', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'delete', OPTIONS: 'options' };

/** `application/x-www-form-urlencoded` of a flat object, as `querystring.stringify`. */
export function stringifyQuery(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v === undefined) continue;
      const text = v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(text)}`);
    }
  }
  return parts.join('&');
}

/** `querystring.parse`: repeated keys become arrays. */
export function parseQuery(text) {
  const out = {};
  for (const part of String(text).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const decodePart = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    const key = decodePart(eq === -1 ? part : part.slice(0, eq));
    const value = eq === -1 ? '' : decodePart(part.slice(eq + 1));
    if (!Object.hasOwn(out, key)) out[key] = value;
    else if (Array.isArray(out[key])) out[key].push(value);
    else out[key] = [out[key], value];
  }
  return out;
}

/** `request`'s argument shuffling: (uri, options, callback) in any of its forms. */
function params(uri, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  let merged;
  if (uri !== null && typeof uri === 'object' && !(uri instanceof URL)) merged = { ...uri, ...options };
  else merged = { ...options, uri: String(uri) };
  if (callback === undefined && typeof merged.callback === 'function') callback = merged.callback;
  return { options: merged, callback };
}

function headerNamed(headers, name) {
  const lower = name.toLowerCase();
  return Object.keys(headers).find((k) => k.toLowerCase() === lower);
}

function setDefaultHeader(headers, name, value) {
  if (headerNamed(headers, name) === undefined) headers[name] = value;
}

function bytesOf(body) {
  if (body === undefined || body === null) return undefined;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return Buffer.from(String(body));
}

/** The WIT request for `options`, or an Error saying what is wrong with them. */
function toHostRequest(options, verb) {
  const target = options.url ?? options.uri;
  if (target === undefined || target === null || target === '') {
    throw new Error('options.uri is a required argument');
  }
  let url = String(target);
  if (options.baseUrl !== undefined) url = String(options.baseUrl).replace(/\/$/, '') + '/' + url.replace(/^\//, '');
  if (options.qs !== undefined && options.qs !== null) {
    const query = typeof options.qs === 'string' ? options.qs : stringifyQuery(options.qs);
    if (query !== '') url += (url.includes('?') ? '&' : '?') + query;
  }
  const methodName = String(verb ?? options.method ?? 'GET').toUpperCase();
  const method = METHODS[methodName];
  if (method === undefined) throw new Error(`unsupported method ${methodName}`);

  const headers = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (value !== undefined && value !== null) headers[name] = String(value);
  }
  let body;
  if (options.form !== undefined && options.form !== null) {
    body = typeof options.form === 'string' ? options.form : stringifyQuery(options.form);
    setDefaultHeader(headers, 'content-type', 'application/x-www-form-urlencoded');
  } else if (options.json !== undefined && options.json !== null && options.json !== false && typeof options.json !== 'boolean') {
    body = JSON.stringify(options.json);
    setDefaultHeader(headers, 'content-type', 'application/json');
  } else if (options.body !== undefined && options.body !== null) {
    if (options.json === true && !(options.body instanceof Uint8Array) && typeof options.body === 'object') {
      body = JSON.stringify(options.body);
      setDefaultHeader(headers, 'content-type', 'application/json');
    } else {
      body = options.body;
    }
  }
  if (options.json) setDefaultHeader(headers, 'accept', 'application/json');

  const auth = options.auth;
  if (auth !== undefined && auth !== null) {
    if (auth.bearer !== undefined) {
      const token = typeof auth.bearer === 'function' ? auth.bearer() : auth.bearer;
      headers.authorization = `Bearer ${token}`;
    } else {
      const user = auth.user ?? auth.username ?? '';
      const pass = auth.pass ?? auth.password ?? '';
      headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    }
  }
  return {
    method,
    url,
    headers: Object.entries(headers),
    body: bytesOf(body),
  };
}

/** Node's `resp.headers`: lower-case names, repeated headers joined (set-cookie kept as a list). */
function responseHeaders(pairs) {
  const out = {};
  for (const [rawName, value] of pairs) {
    const name = rawName.toLowerCase();
    if (name === 'set-cookie') (out[name] ??= []).push(value);
    else out[name] = Object.hasOwn(out, name) ? `${out[name]}, ${value}` : value;
  }
  return out;
}

const STATUS_TEXT = {
  200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found',
  304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** An Error for the host's refusal or failure (the `http` interface's `error`). */
export function transportError(e, url) {
  const value = e !== null && typeof e === 'object' && Object.hasOwn(e, 'payload') ? e.payload : undefined;
  if (value === undefined || typeof value.tag !== 'string') return e instanceof Error ? e : new Error(String(e));
  const err = new Error(`http ${value.val === undefined ? value.tag : `${value.tag}: ${value.val}`} (${url})`);
  err.code = value.tag === 'timeout' ? 'ETIMEDOUT' : `E${value.tag.toUpperCase().replace(/-/g, '')}`;
  return err;
}

/**
 * A `request` function that sends through `send` (the host's `http.send`)
 * and hands each callback to `deliver(callback, args)`, which runs it later
 * and routes what it throws to the script's result.
 * @param {(req: object) => object} send
 * @param {(callback: Function, args: unknown[]) => void} deliver
 */
export function makeRequest(send, deliver) {
  function perform(verb, defaults, uri, options, callback) {
    const call = params(uri, options, callback);
    const opts = { ...defaults, ...call.options, headers: { ...defaults.headers, ...call.options.headers } };
    const cb = call.callback ?? (() => {});
    let hostRequest;
    try {
      hostRequest = toHostRequest(opts, verb);
    } catch (e) {
      deliver(cb, [e]);
      return;
    }
    let answer;
    try {
      answer = send(hostRequest);
    } catch (e) {
      deliver(cb, [transportError(e, hostRequest.url)]);
      return;
    }
    const raw = Buffer.from(answer.body);
    let body = opts.encoding === null ? raw : raw.toString(opts.encoding ?? 'utf8');
    if (opts.json && typeof body === 'string' && body !== '') {
      try {
        body = JSON.parse(body);
      } catch {
        // `request` keeps the text when a `json: true` answer is not JSON.
      }
    }
    const resp = {
      statusCode: answer.status,
      statusMessage: STATUS_TEXT[answer.status] ?? '',
      headers: responseHeaders(answer.headers),
      body,
      request: { uri: { href: hostRequest.url }, method: hostRequest.method.toUpperCase() },
    };
    deliver(cb, [null, resp, body]);
  }

  function withDefaults(defaults) {
    const request = (uri, options, callback) => perform(undefined, defaults, uri, options, callback);
    request.get = (uri, options, callback) => perform('GET', defaults, uri, options, callback);
    request.head = (uri, options, callback) => perform('HEAD', defaults, uri, options, callback);
    request.post = (uri, options, callback) => perform('POST', defaults, uri, options, callback);
    request.put = (uri, options, callback) => perform('PUT', defaults, uri, options, callback);
    request.patch = (uri, options, callback) => perform('PATCH', defaults, uri, options, callback);
    request.del = (uri, options, callback) => perform('DELETE', defaults, uri, options, callback);
    request.delete = request.del;
    request.defaults = (more) => withDefaults({ ...defaults, ...more, headers: { ...defaults.headers, ...more?.headers } });
    return request;
  }
  return withDefaults({});
}
