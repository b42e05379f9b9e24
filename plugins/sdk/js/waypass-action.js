/**
 * JavaScript SDK for Waypass post-login Actions.
 *
 * An Action is a WebAssembly component of the `waypass:action/post-login`
 * world (`wit/action/action.wit`). `waypass action build DIR` builds a
 * directory holding `action.js` with componentize-js and puts this file (and
 * the mapper SDK, `waypass-mapper.js`, whose HTTP helpers it re-exports) next
 * to it, so an Action imports it as `./waypass-action.js`.
 *
 * The handler reads like an Auth0 post-login Action: it gets an `event`
 * (snake_case, as Auth0's: `event.user.email`, `event.user.app_metadata`,
 * `event.client.client_id`, `event.secrets.API_KEY`, ...) and an `api`
 * (`api.idToken.setCustomClaim`, `api.accessToken.setCustomClaim`,
 * `api.access.deny`, `api.user.setAppMetadata`, ...). What it asks of `api`
 * becomes the world's `outcome`; nothing is applied until every bound Action
 * has answered, and a denied login changes nothing.
 *
 * The handler is synchronous: host calls (`send`, `getJson`) block until the
 * answer is there. Whatever it throws fails the login with `server_error`
 * naming the Action (the world's `error`); it is never skipped.
 *
 * @example
 * import { exportAction } from './waypass-action.js';
 *
 * export const onExecutePostLogin = exportAction((event, api) => {
 *   if (event.user.email?.endsWith('@blocked.example')) {
 *     api.access.deny('this domain may not log in');
 *     return;
 *   }
 *   api.idToken.setCustomClaim('https://example.com/roles', event.user.app_metadata.roles ?? []);
 * });
 *
 * @module waypass-action
 */

export {
  HttpError,
  HttpResponse,
  MapperError,
  SNIPPET_LIMIT,
  getJson,
  log,
  parseJson,
  send,
  sendJson,
  snippet,
  writeLog,
} from './waypass-mapper.js';

/** Fields of the event holding the text of a JSON object, parsed for the handler. */
const JSON_FIELDS = ['profile', 'appMetadata', 'userMetadata'];

/**
 * An Action's own error: throw one (or anything) to fail the login with
 * `server_error` naming the Action and this message.
 */
export class ActionError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(String(message));
    this.name = 'ActionError';
    // componentize-js returns an own `payload` of a thrown value as the `err`.
    /** The world's `error` value, `{ tag: 'other', val }`. */
    this.payload = { tag: 'other', val: String(message) };
  }
}

/** `camelCase` as Auth0's `snake_case`. */
function snake(name) {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The world's event (camelCase records, JSON as text) as Auth0 shapes it:
 * snake_case names, `app_metadata`, `user_metadata` and `profile` parsed,
 * `secrets` an object, `logins_count` and `created_at` numbers. Fields the world gains later come through as well.
 * @param {any} value
 * @param {string} [name] The WIT field name `value` came from.
 * @returns {any}
 */
export function auth0Event(value, name) {
  if (JSON_FIELDS.includes(name) && typeof value === 'string') {
    try {
      return JSON.parse(value);
    } catch {
      return {};
    }
  }
  if (name === 'secrets' && Array.isArray(value)) return Object.fromEntries(value);
  // `u64` counts and times arrive as BigInt; Auth0's are numbers (exact below 2^53).
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map((v) => auth0Event(v));
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [key, v] of Object.entries(value)) out[snake(key)] = auth0Event(v, key);
  return out;
}

/**
 * A claim or metadata value as the JSON text the world carries; `undefined`
 * is `null` (which removes a metadata property).
 * @param {any} value
 * @returns {string}
 */
function jsonText(value) {
  const text = JSON.stringify(value === undefined ? null : value);
  if (text === undefined) throw new ActionError(`a ${typeof value} is not a JSON value`);
  return text;
}

/**
 * The `api` a handler is given: it records what the handler asks for.
 * Build one with `new Api()` to test a handler outside a component.
 */
export class Api {
  constructor() {
    /** The changes asked for so far, as the world's `changes` record. */
    this.changes = {
      idTokenClaims: [],
      accessTokenClaims: [],
      appMetadata: [],
      userMetadata: [],
      addScopes: [],
      removeScopes: [],
    };
    /** The reason of the first `api.access.deny`, if any. */
    this.denied = undefined;
    const changes = this.changes;
    const claim = (list) => (name, value) => {
      list.push({ name: String(name), value: jsonText(value) });
    };
    /** Claims of the id_token. */
    this.idToken = Object.freeze({ setCustomClaim: claim(changes.idTokenClaims) });
    /** Claims and scopes of the access token's grant. */
    this.accessToken = Object.freeze({
      setCustomClaim: claim(changes.accessTokenClaims),
      /** @param {string} scope */
      addScope: (scope) => {
        changes.addScopes.push(String(scope));
      },
      /** @param {string} scope `openid` cannot be removed. */
      removeScope: (scope) => {
        changes.removeScopes.push(String(scope));
      },
    });
    /** Top-level properties of the user's metadata (`null` or `undefined` removes one). */
    this.user = Object.freeze({
      setAppMetadata: claim(changes.appMetadata),
      setUserMetadata: claim(changes.userMetadata),
    });
    /** Ends the login: the app gets `access_denied` with `reason`. */
    this.access = Object.freeze({
      deny: (reason) => {
        if (this.denied === undefined) this.denied = String(reason);
      },
    });
  }

  /** The world's `outcome` of what was asked: a deny wins over any change. */
  outcome() {
    if (this.denied !== undefined) return { tag: 'deny', val: this.denied };
    return { tag: 'proceed', val: this.changes };
  }
}

/** The text of anything thrown. */
function errorText(e) {
  if (e instanceof Error) return e.message;
  try {
    return String(e);
  } catch {
    return 'an exception';
  }
}

/**
 * The component's `onExecutePostLogin` export, made from
 * `handler(event, api)`: `export const onExecutePostLogin = exportAction(handler)`.
 *
 * Anything the handler throws becomes the world's `error` (a
 * {@link MapperError} from the HTTP helpers keeps its text); a handler that
 * returns a Promise is refused, since the component cannot wait for it.
 * @param {(event: any, api: Api) => void} handler
 * @returns {(event: any) => any}
 */
export function exportAction(handler) {
  return (event) => {
    const api = new Api();
    let result;
    try {
      result = handler(auth0Event(event), api);
    } catch (e) {
      throw e instanceof ActionError ? e : new ActionError(errorText(e));
    }
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      throw new ActionError(
        'the handler returned a Promise: write it as a plain (not async) function; host calls block',
      );
    }
    return api.outcome();
  };
}
