/**
 * Auth0 post-login code in the script engine: Actions
 * (`exports.onExecutePostLogin = async (event, api) => { … }`) and legacy
 * Rules (`function (user, context, callback) { … }`), run unchanged.
 *
 * `mapper.js` hands over the modes below; what comes in and goes out is
 * described there. Auth0's objects are built here from the host's event:
 *
 * - Actions: `event.user` (`user_id`, `email`, `email_verified`, `name`,
 *   `given_name`, `family_name`, `nickname`, `picture`, `app_metadata`,
 *   `user_metadata`, `identities`, `created_at`, `logins_count`),
 *   `event.client`, `event.connection`, `event.request` (`ip`, `user_agent`,
 *   `hostname`, `query`), `event.transaction` (`requested_scopes`,
 *   `protocol`, `redirect_uri`, `prompt`, `response_type`),
 *   `event.resource_server` (the `audience`), `event.authorization.roles`
 *   (`app_metadata.roles`: Waypass has no role store), `event.stats`,
 *   `event.secrets`; `api.access.deny`, `api.idToken.setCustomClaim`,
 *   `api.accessToken.setCustomClaim` / `addScope` / `removeScope`,
 *   `api.user.setAppMetadata` / `setUserMetadata`, `api.cache` (this call
 *   only). What Waypass cannot do (`api.multifactor`, `api.redirect`,
 *   `api.authentication`, …) throws, naming it: never a silent no-op.
 * - Rules: `user` (the same fields), `context` (`clientID`, `clientName`,
 *   `connection`, `connectionStrategy`, `protocol`, `request` with `ip`,
 *   `userAgent`, `hostname`, `query`, `stats.loginsCount`, `idToken`,
 *   `accessToken`, `authorization.roles`), `callback(err, user, context)`,
 *   `UnauthorizedError` (a deny), `configuration`, and
 *   `auth0.users.updateAppMetadata` / `updateUserMetadata` (merged into the
 *   user's metadata once the whole login goes on).
 */

/** The `waypass:mode` values this module runs. */
export const POST_LOGIN_MODES = ['post-login', 'rule', 'check-post-login'];

const SCRIPT_SETTING = 'waypass:script';
const EVENT_SETTING = 'waypass:event';
const SECRETS_SETTING = 'waypass:secrets';
/** Settings the host reserves: everything else is the Rule's `configuration`. */
const RESERVED_PREFIX = 'waypass:';
/** The user id of the answer: the host reads the outcome from `extra`. */
const OUTCOME_USER_ID = 'waypass:post-login';
/** Auth0's `protocol` for a browser login with the authorization code. */
const PROTOCOL = 'oidc-basic-profile';

/**
 * Compiles an Action's module text as a CommonJS module body, without
 * running it (`exports`, `module` and `require` are its parameters, as
 * Node's module wrapper gives them).
 */
function compileAction(source, position) {
  try {
    return { make: new Function('exports', 'module', source) };
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    return { error: position(e, 0) };
  }
}

function parseJson(text, what, Failure) {
  try {
    return JSON.parse(text ?? '');
  } catch {
    throw new Failure('other', `the script engine needs the setting \`${what}\` as JSON`);
  }
}

/** A deep copy of JSON data (the event's parts the script may change). */
function clone(value) {
  return JSON.parse(JSON.stringify(value));
}

function isoTime(seconds) {
  const ms = Number(seconds) * 1000;
  return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : undefined;
}

function plainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

/** `event.user` / a Rule's `user`, with Auth0's field names. */
function auth0User(u) {
  const profile = plainObject(u.profile);
  const extra = plainObject(profile.extra);
  const appMetadata = clone(plainObject(u.app_metadata));
  const userMetadata = clone(plainObject(u.user_metadata));
  const user = {
    ...clone(extra),
    user_id: u.user_id,
    app_metadata: appMetadata,
    user_metadata: userMetadata,
    identities: (u.identities ?? []).map((i) => ({
      connection: i.connection,
      provider: i.provider,
      user_id: i.user_id,
      isSocial: true,
    })),
    created_at: isoTime(u.created_at),
    logins_count: u.logins_count,
  };
  for (const field of ['email', 'email_verified', 'name', 'given_name', 'family_name', 'nickname', 'picture']) {
    if (u[field] !== null && u[field] !== undefined) user[field] = u[field];
  }
  return user;
}

/** The query as an object: the host sends `[name, value]` pairs. */
function queryObject(query) {
  if (Array.isArray(query)) return Object.fromEntries(query.filter((p) => Array.isArray(p) && p.length === 2));
  return { ...plainObject(query) };
}

function roles(appMetadata) {
  const r = appMetadata.roles;
  return Array.isArray(r) ? r.filter((x) => typeof x === 'string') : [];
}

/** Auth0's post-login `event`. */
function actionEvent(host, secrets) {
  const user = auth0User(host.user);
  const request = host.request ?? {};
  const tx = host.transaction ?? {};
  const event = {
    user,
    client: { client_id: host.client.client_id, name: host.client.name ?? '', metadata: {} },
    connection: {
      id: host.connection.name,
      name: host.connection.name,
      strategy: host.connection.strategy,
      metadata: {},
    },
    request: {
      ip: request.ip ?? '',
      user_agent: request.user_agent ?? undefined,
      hostname: request.hostname ?? '',
      method: 'GET',
      query: queryObject(request.query),
      body: {},
      geoip: {},
    },
    transaction: {
      requested_scopes: [...(tx.requested_scopes ?? [])],
      protocol: PROTOCOL,
      redirect_uri: tx.redirect_uri ?? '',
      response_type: ['code'],
      prompt: tx.prompt ? String(tx.prompt).split(' ').filter(Boolean) : undefined,
    },
    authorization: { roles: roles(user.app_metadata) },
    stats: { logins_count: user.logins_count },
    secrets: { ...secrets },
    tenant: { id: 'waypass' },
  };
  if (tx.audience) event.resource_server = { identifier: tx.audience };
  return event;
}

/** What one run asks to change, in the host's outcome form. */
class Changes {
  constructor() {
    this.denied = undefined;
    this.idTokenClaims = {};
    this.accessTokenClaims = {};
    this.appMetadata = {};
    this.userMetadata = {};
    this.addScopes = [];
    this.removeScopes = [];
  }

  outcome() {
    if (this.denied !== undefined) return { outcome: 'deny', reason: this.denied };
    return {
      outcome: 'proceed',
      id_token_claims: this.idTokenClaims,
      access_token_claims: this.accessTokenClaims,
      app_metadata: this.appMetadata,
      user_metadata: this.userMetadata,
      add_scopes: this.addScopes,
      remove_scopes: this.removeScopes,
    };
  }
}

function requireName(name, what) {
  if (typeof name !== 'string' || name === '') throw new TypeError(`${what}: the name must be a non-empty string`);
  return name;
}

/** Metadata values as JSON keeps them: `undefined` removes, as `null`. */
function metadataValue(value) {
  return value === undefined ? null : value;
}

function unavailable(name) {
  return () => {
    throw new Error(`${name} is not available in Waypass`);
  };
}

/** Auth0's post-login `api`, recording into `changes`. */
function actionApi(changes) {
  const cache = new Map();
  const api = {
    access: {
      deny(reason) {
        if (changes.denied === undefined) changes.denied = reason === undefined ? '' : String(reason);
        return api;
      },
    },
    idToken: {
      setCustomClaim(name, value) {
        changes.idTokenClaims[requireName(name, 'api.idToken.setCustomClaim')] = value;
        return api;
      },
    },
    accessToken: {
      setCustomClaim(name, value) {
        changes.accessTokenClaims[requireName(name, 'api.accessToken.setCustomClaim')] = value;
        return api;
      },
      addScope(scope) {
        changes.addScopes.push(requireName(scope, 'api.accessToken.addScope'));
        return api;
      },
      removeScope(scope) {
        changes.removeScopes.push(requireName(scope, 'api.accessToken.removeScope'));
        return api;
      },
    },
    user: {
      setAppMetadata(name, value) {
        changes.appMetadata[requireName(name, 'api.user.setAppMetadata')] = metadataValue(value);
        return api;
      },
      setUserMetadata(name, value) {
        changes.userMetadata[requireName(name, 'api.user.setUserMetadata')] = metadataValue(value);
        return api;
      },
    },
    // Auth0's cache outlives a call; here an instance serves one call, so
    // it holds what this call set (a miss is what Auth0 code handles anyway).
    cache: {
      get(key) {
        return cache.has(key) ? { value: cache.get(key) } : undefined;
      },
      set(key, value) {
        cache.set(key, value);
        return { type: 'success' };
      },
      delete(key) {
        cache.delete(key);
        return { type: 'success' };
      },
    },
    multifactor: { enable: unavailable('api.multifactor.enable') },
    redirect: {
      sendUserTo: unavailable('api.redirect.sendUserTo'),
      encodeToken: unavailable('api.redirect.encodeToken'),
      validateToken: unavailable('api.redirect.validateToken'),
    },
    authentication: {
      challengeWith: unavailable('api.authentication.challengeWith'),
      enrollWith: unavailable('api.authentication.enrollWith'),
      recordMethod: unavailable('api.authentication.recordMethod'),
      setPrimaryUser: unavailable('api.authentication.setPrimaryUser'),
    },
    samlResponse: { setAttribute: unavailable('api.samlResponse.setAttribute') },
    session: { revoke: unavailable('api.session.revoke') },
    refreshToken: { revoke: unavailable('api.refreshToken.revoke') },
  };
  return api;
}

/** A Rule's `context`. */
function ruleContext(host, user) {
  const request = host.request ?? {};
  const tx = host.transaction ?? {};
  return {
    clientID: host.client.client_id,
    clientName: host.client.name ?? '',
    clientMetadata: {},
    connection: host.connection.name,
    connectionID: host.connection.name,
    connectionStrategy: host.connection.strategy,
    protocol: PROTOCOL,
    request: {
      ip: request.ip ?? '',
      userAgent: request.user_agent ?? undefined,
      hostname: request.hostname ?? '',
      query: queryObject(request.query),
      geoip: {},
    },
    stats: { loginsCount: user.logins_count },
    authorization: { roles: roles(user.app_metadata) },
    idToken: {},
    accessToken: { scope: [...(tx.requested_scopes ?? [])] },
  };
}

/** `auth0.users` of Rules: metadata writes, applied when the login goes on. */
function ruleAuth0(changes) {
  const record = (target, what) => (userId, metadata) => {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      return Promise.reject(new TypeError(`auth0.users.${what}: the metadata must be an object`));
    }
    for (const [name, value] of Object.entries(metadata)) target[name] = metadataValue(value);
    return Promise.resolve();
  };
  return {
    users: {
      updateAppMetadata: record(changes.appMetadata, 'updateAppMetadata'),
      updateUserMetadata: record(changes.userMetadata, 'updateUserMetadata'),
    },
  };
}

/** Copies the claims a Rule left in `context.idToken` / `context.accessToken`. */
function ruleClaims(context, changes) {
  for (const [name, value] of Object.entries(plainObject(context?.idToken))) {
    changes.idTokenClaims[name] = value;
  }
  for (const [name, value] of Object.entries(plainObject(context?.accessToken))) {
    // `scope` is what the app asked for, handed in; it is not a claim.
    if (name !== 'scope') changes.accessTokenClaims[name] = value;
  }
}

function answer(outcome) {
  return {
    userId: OUTCOME_USER_ID,
    extra: JSON.stringify(outcome, (_, v) => (typeof v === 'bigint' ? String(v) : v)),
  };
}

/**
 * Runs `source` in `mode` with what `mapper.js` shares (`engine`: the
 * instance's `run` and `configuration`, whose globals are installed,
 * `Failure`, `UnauthorizedError`, `compile`, `position`, `toFailure`).
 */
export async function runPostLogin(mode, source, settings, engine) {
  const { run, configuration, Failure, UnauthorizedError } = engine;
  if (mode === 'check-post-login') {
    const compiled = compileAction(source, engine.position);
    const reply = compiled.error ? { check: 'syntax-error', ...compiled.error } : { check: 'ok' };
    throw new Failure('other', JSON.stringify(reply));
  }
  const host = parseJson(settings.get(EVENT_SETTING), EVENT_SETTING, Failure);
  const secrets = plainObject(parseJson(settings.get(SECRETS_SETTING) ?? '{}', SECRETS_SETTING, Failure));
  for (const [key, value] of settings) {
    if (!key.startsWith(RESERVED_PREFIX)) configuration[key] = value;
  }
  const changes = new Changes();
  if (mode === 'post-login') {
    const compiled = compileAction(source, engine.position);
    if (compiled.error) {
      const { message, line, column } = compiled.error;
      throw new Failure('other', `the action does not compile: line ${line}, column ${column}: ${message}`);
    }
    run.stallMessage = 'the action finished without its onExecutePostLogin settling';
    const module = { exports: {} };
    run.guard(compiled.make, [module.exports, module]);
    const handler = module.exports?.onExecutePostLogin;
    if (!run.settled && typeof handler !== 'function') {
      run.fail(new Error('the action must export onExecutePostLogin: `exports.onExecutePostLogin = async (event, api) => { … }`'));
    }
    if (!run.settled) {
      const returned = run.guard(handler, [actionEvent(host, secrets), actionApi(changes)]);
      if (returned !== null && typeof returned === 'object' && typeof returned.then === 'function') {
        run.track(
          Promise.resolve(returned).then(
            () => run.succeed(),
            (e) => run.fail(e),
          ),
        );
      } else {
        run.succeed();
      }
    }
    try {
      await run.wait();
    } catch (e) {
      throw engine.toFailure(e);
    }
    return answer(changes.outcome());
  }
  // A Rule.
  const compiled = engine.compile(source);
  if (compiled.error) {
    const { message, line, column } = compiled.error;
    throw new Failure('other', `the rule does not compile: line ${line}, column ${column}: ${message}`);
  }
  run.stallMessage = 'the rule finished without calling callback(err, user, context)';
  globalThis.auth0 = ruleAuth0(changes);
  const fn = run.guard(compiled.make, []);
  if (!run.settled && typeof fn !== 'function') {
    run.fail(new Error('the rule must be a function: `function (user, context, callback) { … }`'));
  }
  if (!run.settled) {
    const user = auth0User(host.user);
    const context = ruleContext(host, user);
    let called = false;
    const callback = (err, _user, ctx) => {
      if (called || run.settled) {
        console.warn('the rule called back more than once; later calls are ignored');
        return;
      }
      called = true;
      if (err) run.fail(err);
      else run.succeed(ctx ?? context);
    };
    run.guard(fn, [user, context, callback]);
  }
  let finalContext;
  try {
    finalContext = await run.wait();
  } catch (e) {
    // Auth0: `callback(new UnauthorizedError(msg))` denies the login.
    if (e instanceof UnauthorizedError) {
      changes.denied = e.message;
      return answer(changes.outcome());
    }
    throw engine.toFailure(e);
  }
  ruleClaims(finalContext, changes);
  return answer(changes.outcome());
}
