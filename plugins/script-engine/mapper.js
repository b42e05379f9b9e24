/**
 * Waypass's script engine: runs an Auth0 `fetchUserProfile` script, unchanged,
 * as a mapper (`waypass:mapper/mapper`).
 *
 * The host ships this component prebuilt and hands it the connection's
 * `options.scripts.fetchUserProfile` as the setting `waypass:script`; the
 * connection's other mapper settings are the script's `configuration`. With
 * the setting `waypass:mode` = `check` the engine only compiles the script and
 * answers `err(other(<json>))` with `{"check":"ok"}` or
 * `{"check":"syntax-error","message","line","column"}` (1-based, in the
 * script's own text).
 *
 * What a script sees, with Auth0's meaning: `request`, `context` (the token
 * endpoint's response), `callback(err, profile)`, `require('jsonwebtoken' |
 * 'jwks-rsa' | 'request' | 'querystring' | 'buffer' | 'util')`, `Buffer`,
 * `atob`/`btoa`, `console` (into the mapper's log), `configuration`,
 * `UnauthorizedError`, timers and `fetch` (over `wasi:http`, under the same
 * egress policy). Scripts may call back, return a Promise or be `async`.
 *
 * How the result maps onto the world: the profile's `user_id` (string or
 * number) becomes `user-id`; `email`, `email_verified`, `name`, `given_name`,
 * `family_name`, `nickname` and `picture` their fields; everything else goes
 * into `extra`. `callback(err)` or an exception → `other(err.message)` (the
 * broker hands that message to the app, as Auth0 does);
 * `callback(new UnauthorizedError(msg))` → `unauthorized(msg)`; a profile
 * without `user_id` → `invalid-profile`.
 *
 * The same export runs Auth0 post-login code, chosen by the host with
 * `waypass:mode`: `post-login` runs an Action (`exports.onExecutePostLogin =
 * async (event, api) => { … }`), `rule` a legacy Rule (`function (user,
 * context, callback) { … }`), `check-post-login` compiles an Action only.
 * The login's event comes as the setting `waypass:event` (the host's
 * `ActionEvent` as JSON) and the Action's secrets as `waypass:secrets` (a
 * JSON object); the engine builds Auth0's `event`/`api` or `user`/`context`
 * from them (`postlogin.js`). The answer is a profile whose `user-id` is
 * `waypass:post-login` and whose `extra` is the outcome:
 * `{"outcome":"deny","reason"}` or `{"outcome":"proceed","id_token_claims",
 * "access_token_claims","app_metadata","user_metadata","add_scopes",
 * "remove_scopes"}`; a failing script is `other(message)` as above.
 */

import { send } from 'waypass:mapper/http@0.1.0';
import { log } from 'waypass:mapper/log@0.1.0';
import { Buffer } from './buffer.js';
import { makeRequest, parseQuery, stringifyQuery, transportError } from './request.js';
import * as jwt from './jwt.js';
import { POST_LOGIN_MODES, runPostLogin } from './postlogin.js';

/**
 * Creates, in the global componentize-js's bindings run in, the standard
 * classes every call uses, so that they are in the build's snapshot instead
 * of being created anew in each call's fresh instance: SpiderMonkey creates
 * a global's classes on first use, and nothing uses the bindings' global at
 * build time. The same as `createBindingsClasses` in the JavaScript SDK
 * (`plugins/sdk/js/waypass-mapper.js`), which says more; BENCHMARKS.md #17,
 * "Where StarlingMonkey's instructions go, by name".
 */
function createBindingsClasses() {
  const bindings = send.constructor('return globalThis')();
  void [
    bindings.Uint8Array,
    bindings.String.prototype,
    bindings.Promise.resolve(),
    bindings.BigInt,
    new bindings.Error().stack,
  ];
  // The engine iterates arrays (`for … of`, spreading, destructuring) in
  // every call: the array iterator's prototype and `Iterator` behind it.
  for (const global of [globalThis, bindings]) global.Function('for (const _ of []);')();
}
createBindingsClasses();

/** The settings the host reserves for the engine. */
const SCRIPT_SETTING = 'waypass:script';
const MODE_SETTING = 'waypass:mode';

/** The profile fields the world names; the rest of a profile goes into `extra`. */
const TEXT_FIELDS = [
  ['email', 'email'],
  ['name', 'name'],
  ['given_name', 'givenName'],
  ['family_name', 'familyName'],
  ['nickname', 'nickname'],
  ['picture', 'picture'],
];

/** A value thrown out of the export: componentize-js returns its `payload` as the `err`. */
class Failure {
  constructor(tag, message) {
    this.payload = { tag, val: String(message) };
  }
}

/** Auth0's error for "this user may not log in": the app gets `access_denied`. */
class UnauthorizedError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UnauthorizedError';
  }
}

// ---------------------------------------------------------------------------
// console
// ---------------------------------------------------------------------------

function inspect(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}` : String(value);
  if (typeof value === 'function') return `[Function: ${value.name || 'anonymous'}]`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === undefined || typeof value !== 'object') return String(value);
  const seen = new WeakSet();
  try {
    return JSON.stringify(value, (_, v) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (v !== null && typeof v === 'object') {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    });
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Node's `util.format`: `%s`, `%d`, `%i`, `%f`, `%j`, `%o`, `%O`, `%%`, then the rest joined by spaces. */
function format(...args) {
  if (typeof args[0] !== 'string') return args.map(inspect).join(' ');
  let rest = 1;
  const head = args[0].replace(/%[sdifjoO%]/g, (spec) => {
    if (spec === '%%') return '%';
    if (rest >= args.length) return spec;
    const value = args[rest++];
    switch (spec) {
      case '%d':
      case '%i':
        return String(spec === '%i' ? Math.trunc(Number(value)) : Number(value));
      case '%f':
        return String(Number(value));
      case '%s':
        return typeof value === 'string' ? value : inspect(value);
      default:
        return inspect(value);
    }
  });
  return [head, ...args.slice(rest).map(inspect)].join(' ');
}

const scriptConsole = {
  log: (...args) => log('info', format(...args)),
  info: (...args) => log('info', format(...args)),
  debug: (...args) => log('debug', format(...args)),
  trace: (...args) => log('trace', format(...args)),
  warn: (...args) => log('warn', format(...args)),
  error: (...args) => log('error', format(...args)),
  dir: (value) => log('info', inspect(value)),
};

// ---------------------------------------------------------------------------
// Compiling the script
// ---------------------------------------------------------------------------

/** Lines SpiderMonkey puts before a `new Function` body (its synthetic header). */
const BODY_LINE_OFFSET = (() => {
  try {
    new Function('@');
  } catch (e) {
    return e.lineNumber - 1;
  }
  return 0;
})();

const EXPRESSION_PREFIX = 'return (';

/** `e`'s position in the script's own text, given how the text was wrapped. */
function position(e, columnShiftOnFirstLine) {
  const line = Math.max(1, (e.lineNumber ?? 1) - BODY_LINE_OFFSET);
  const column = Math.max(1, (e.columnNumber ?? 1) - (line === 1 ? columnShiftOnFirstLine : 0));
  return { message: e.message, line, column };
}

function later(a, b) {
  return a.line !== b.line ? a.line > b.line : a.column >= b.column;
}

/**
 * `source` without its trailing white space and semicolons (a function
 * expression followed by `;` is still an expression). `trimEnd` removes
 * exactly what `\s` matches (ECMAScript white space and line terminators);
 * no regular expression, because each login runs in a fresh instance,
 * where the first use of one compiles it again.
 */
function withoutTrailingSemicolons(source) {
  let code = source.trimEnd();
  while (code.endsWith(';')) code = code.slice(0, -1).trimEnd();
  return code;
}

/**
 * Compiles `source` without running it. Auth0 accepts both a function
 * expression (`function (accessToken, ctx, cb) { … }`, the dashboard's
 * template) and a program declaring `fetchUserProfile`; the form that parses
 * is used, and when neither does, the error reported is the one that got
 * further into the text (the form the author meant).
 * @returns {{ make: () => Function } | { error: { message: string, line: number, column: number } }}
 */
function compile(source) {
  const expression = withoutTrailingSemicolons(source);
  let asExpression;
  try {
    const wrapper = new Function(`${EXPRESSION_PREFIX}${expression}\n);`);
    return { make: wrapper };
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    asExpression = position(e, EXPRESSION_PREFIX.length);
  }
  try {
    const program = new Function(
      `${source}\n;return typeof fetchUserProfile === 'function' ? fetchUserProfile : undefined;`,
    );
    return { make: program };
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const asProgram = position(e, 0);
    return { error: later(asExpression, asProgram) ? asExpression : asProgram };
  }
}

// ---------------------------------------------------------------------------
// Running it
// ---------------------------------------------------------------------------

/**
 * One run of the script: settles once, with the first of callback(err,
 * profile), the returned promise's value, an exception, or "stalled"
 * (nothing left that could call back).
 */
class Run {
  constructor(stallMessage = 'the script finished without calling callback(err, profile)') {
    this.stallMessage = stallMessage;
    this.settled = false;
    this.timers = new Set();
    this.inflight = 0;
    /** The pending stall check's timer, if one is armed. */
    this.stallCheck = undefined;
    /**
     * True while the export's own synchronous code runs (compiling, calling
     * the script): nothing can stall before the export waits, so no check is
     * armed until `wait()`.
     */
    this.starting = true;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  succeed(profile) {
    if (this.settled) return;
    this.settle();
    this.resolve(profile);
  }

  fail(error) {
    if (this.settled) {
      log('warn', `after the script called back: ${inspect(error)}`);
      return;
    }
    this.settle();
    this.reject(error);
  }

  /** Marks the run settled and drops its stall check: a settled run leaves no timer behind. */
  settle() {
    this.settled = true;
    if (this.stallCheck !== undefined) {
      realClearTimeout(this.stallCheck);
      this.stallCheck = undefined;
    }
  }

  /**
   * The run's outcome, once the export's synchronous part is done: from
   * here on a run that waits for nothing is stalled.
   */
  wait() {
    this.starting = false;
    this.scheduleStallCheck();
    return this.promise;
  }

  /** The script's `callback(err, profile)`. */
  callback() {
    return (err, profile) => {
      if (this.settled) {
        log('warn', 'the script called back more than once; later calls are ignored');
        return;
      }
      // Node's callbacks test `if (err)`: `callback(false, profile)` succeeds.
      if (err) this.fail(err);
      else this.succeed(profile);
    };
  }

  /** Runs `fn(...args)` now, sending what it throws to the result. */
  guard(fn, args) {
    try {
      return fn(...args);
    } catch (e) {
      this.fail(e);
      return undefined;
    } finally {
      this.scheduleStallCheck();
    }
  }

  /** Runs `fn(...args)` after the current code, as Node delivers I/O callbacks. */
  deliver(fn, args) {
    this.inflight++;
    queueMicrotask(() => {
      this.inflight--;
      this.guard(fn, args);
    });
  }

  /**
   * After everything queued has run (a zero-delay task runs after all
   * microtasks), a run that has not settled and waits for nothing can never
   * settle: say so now instead of waiting for the deadline.
   *
   * Armed only when the run waits for nothing at this moment: while a
   * timer, a delivered callback or a tracked promise is pending, its end
   * calls this again (every one of them ends in `guard` or `track`'s
   * `done`), so a check armed now could only find work pending. A login
   * whose script calls back (at once, or from its request's callback) thus
   * arms no timer (each armed one is a clock subscription through the host
   * and a task in the engine's event loop).
   */
  scheduleStallCheck() {
    if (this.starting || this.settled || this.stallCheck !== undefined) return;
    if (this.timers.size !== 0 || this.inflight !== 0) return;
    this.stallCheck = realSetTimeout(() => {
      this.stallCheck = undefined;
      if (!this.settled && this.timers.size === 0 && this.inflight === 0) {
        this.fail(new Error(this.stallMessage));
      }
    }, 0);
  }

  /** Counts `promise` as work the script may be waiting for. */
  track(promise) {
    this.inflight++;
    const done = () => {
      this.inflight--;
      this.scheduleStallCheck();
    };
    promise.then(done, done);
    return promise;
  }
}

const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const realSetInterval = globalThis.setInterval;
const realClearInterval = globalThis.clearInterval;
const realFetch = globalThis.fetch;

/**
 * Timers and `fetch` that tell `run` what is still pending. Installed once,
 * at initialisation, for the instance's one run (`RUN` below).
 */
function installTrackedAsync(run) {
  globalThis.setTimeout = (fn, ms, ...args) => {
    const id = realSetTimeout(() => {
      run.timers.delete(id);
      if (typeof fn === 'function') run.guard(fn, args);
      else run.scheduleStallCheck();
    }, ms);
    run.timers.add(id);
    return id;
  };
  globalThis.clearTimeout = (id) => {
    run.timers.delete(id);
    realClearTimeout(id);
    run.scheduleStallCheck();
  };
  globalThis.setInterval = (fn, ms, ...args) => {
    const id = realSetInterval(() => {
      if (typeof fn === 'function') run.guard(fn, args);
    }, ms);
    run.timers.add(id);
    return id;
  };
  globalThis.clearInterval = (id) => {
    run.timers.delete(id);
    realClearInterval(id);
    run.scheduleStallCheck();
  };
  if (typeof realFetch === 'function') {
    globalThis.fetch = (...args) => run.track(realFetch(...args));
    for (const method of ['arrayBuffer', 'json', 'text', 'blob', 'formData']) {
      const real = Response.prototype[method];
      if (typeof real === 'function') {
        Response.prototype[method] = function (...args) {
          return run.track(real.apply(this, args));
        };
      }
    }
  }
}

const UTF8 = new TextDecoder();

/** GET `url` as JSON through the host (jwks-rsa's fetch). */
function getJson(url) {
  let answer;
  try {
    answer = send({ method: 'get', url, headers: [['accept', 'application/json']], body: undefined });
  } catch (e) {
    throw transportError(e, url);
  }
  const text = UTF8.decode(answer.body);
  if (answer.status !== 200) throw new Error(`${url} answered ${answer.status}: ${text.slice(0, 200)}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${url} did not answer JSON`);
  }
}

function promisify(fn) {
  return (...args) =>
    new Promise((resolve, reject) => fn(...args, (err, value) => (err ? reject(err) : resolve(value))));
}

/** The modules `require` knows, built for one run. */
function modules(request) {
  const jwksRsa = (options) => jwt.createJwksClient(options, getJson);
  jwksRsa.SigningKeyNotFoundError = jwt.SigningKeyNotFoundError;
  return {
    request,
    jsonwebtoken: {
      decode: jwt.decode,
      verify: jwt.verify,
      sign: jwt.sign,
      JsonWebTokenError: jwt.JsonWebTokenError,
      TokenExpiredError: jwt.TokenExpiredError,
      NotBeforeError: jwt.NotBeforeError,
    },
    'jwks-rsa': jwksRsa,
    querystring: { stringify: stringifyQuery, encode: stringifyQuery, parse: parseQuery, decode: parseQuery },
    buffer: { Buffer },
    util: { format, inspect, promisify },
  };
}

/** The script's `context`: the token endpoint's response as received. */
function scriptContext(tokens) {
  try {
    const raw = JSON.parse(tokens.raw);
    if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) return raw;
  } catch {
    // Not JSON: rebuild it from the parsed fields below.
  }
  const context = { access_token: tokens.accessToken };
  if (tokens.tokenType !== undefined) context.token_type = tokens.tokenType;
  if (tokens.idToken !== undefined) context.id_token = tokens.idToken;
  if (tokens.refreshToken !== undefined) context.refresh_token = tokens.refreshToken;
  if (tokens.expiresIn !== undefined) context.expires_in = Number(tokens.expiresIn);
  if (tokens.scope !== undefined) context.scope = tokens.scope;
  return context;
}

function installGlobals(run, configuration) {
  const request = makeRequest(send, (fn, args) => run.deliver(fn, args));
  // Built on the first `require`: most scripts never call it.
  let known;
  Object.assign(globalThis, {
    request,
    Buffer,
    console: scriptConsole,
    configuration,
    UnauthorizedError,
    require(name) {
      known ??= modules(request);
      if (Object.hasOwn(known, name)) return known[name];
      throw new Error(
        `module '${name}' is not available to scripts here; available: ${Object.keys(known).join(', ')}`,
      );
    },
  });
  installTrackedAsync(run);
}

/**
 * The instance's one run, and the `configuration` object its script sees
 * (filled from the call's settings), with the globals installed for them
 * here, at initialisation: in the build's snapshot, not in every login. An
 * instance serves one call and every call gets a fresh instance, so this is
 * still one run per login; nothing a login sets survives it.
 */
const RUN = new Run();
const CONFIGURATION = {};
installGlobals(RUN, CONFIGURATION);

// ---------------------------------------------------------------------------
// The result
// ---------------------------------------------------------------------------

function describe(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** The world's `profile` for the script's profile object. */
function toProfile(p) {
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    throw new Failure('invalid-profile', `the script called back with ${describe(p)} instead of a profile object`);
  }
  const id = p.user_id;
  if (id === undefined || id === null || id === '') {
    throw new Failure('invalid-profile', 'the profile has no user_id');
  }
  if (typeof id !== 'string' && typeof id !== 'number' && typeof id !== 'bigint') {
    throw new Failure('invalid-profile', `user_id must be a string or a number, not ${describe(id)}`);
  }
  const out = { userId: String(id) };
  const extra = { ...p };
  delete extra.user_id;
  for (const [from, to] of TEXT_FIELDS) {
    const value = p[from];
    if (typeof value === 'string' || typeof value === 'number') {
      out[to] = String(value);
      delete extra[from];
    } else if (value === null || value === undefined) {
      delete extra[from];
    }
  }
  const verified = p.email_verified;
  if (typeof verified === 'boolean' || verified === 'true' || verified === 'false') {
    out.emailVerified = verified === true || verified === 'true';
    delete extra.email_verified;
  } else if (verified === null || verified === undefined) {
    delete extra.email_verified;
  }
  if (Object.keys(extra).length > 0) {
    out.extra = JSON.stringify(extra, (_, v) => (typeof v === 'bigint' ? String(v) : v));
  }
  return out;
}

/** The world's `error` for what the script failed with. */
function toFailure(e) {
  if (e instanceof Failure) return e;
  if (e instanceof UnauthorizedError) return new Failure('unauthorized', e.message);
  const message =
    e instanceof Error || (e !== null && typeof e === 'object' && typeof e.message === 'string')
      ? e.message
      : typeof e === 'string'
        ? e
        : inspect(e);
  if (e instanceof Error && e.stack) log('debug', `script error: ${e.name}: ${e.message}\n${e.stack}`);
  return new Failure('other', message);
}

// ---------------------------------------------------------------------------
// The export
// ---------------------------------------------------------------------------

export async function fetchUserProfile(accessToken, ctx) {
  const settings = new Map(ctx.settings);
  const source = settings.get(SCRIPT_SETTING);
  if (source === undefined) {
    throw new Failure('other', `the script engine needs the setting \`${SCRIPT_SETTING}\``);
  }
  const mode = settings.get(MODE_SETTING);
  if (POST_LOGIN_MODES.includes(mode)) {
    return runPostLogin(mode, source, settings, {
      run: RUN,
      configuration: CONFIGURATION,
      Failure,
      UnauthorizedError,
      compile,
      position,
      toFailure,
    });
  }
  const compiled = compile(source);
  if (mode === 'check') {
    const answer = compiled.error ? { check: 'syntax-error', ...compiled.error } : { check: 'ok' };
    throw new Failure('other', JSON.stringify(answer));
  }
  if (compiled.error) {
    const { message, line, column } = compiled.error;
    throw new Failure('other', `the script does not compile: line ${line}, column ${column}: ${message}`);
  }
  for (const [key, value] of settings) {
    if (key !== SCRIPT_SETTING && key !== MODE_SETTING) CONFIGURATION[key] = value;
  }
  const run = RUN;
  const fn = run.guard(compiled.make, []);
  if (!run.settled && typeof fn !== 'function') {
    run.fail(
      new Error(
        'the script must be a function: `function (accessToken, context, callback) { … }` ' +
          'or declare `function fetchUserProfile(accessToken, context, callback) { … }`',
      ),
    );
  }
  if (!run.settled) {
    const returned = run.guard(fn, [accessToken, scriptContext(ctx.tokens), run.callback()]);
    if (returned !== null && typeof returned === 'object' && typeof returned.then === 'function') {
      run.track(
        Promise.resolve(returned).then(
          (value) => {
            // An async script that resolves without a value may still call back.
            if (value !== undefined) run.succeed(value);
          },
          (e) => run.fail(e),
        ),
      );
    }
  }
  let profile;
  try {
    profile = await run.wait();
  } catch (e) {
    throw toFailure(e);
  }
  return toProfile(profile);
}
