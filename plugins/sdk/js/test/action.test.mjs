// Tests of the Action SDK's plain-JavaScript parts under Node: `npm test` here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
const sdk = await import('../waypass-action.js');

/** An event as componentize-js hands it over: camelCase, JSON as text. */
const worldEvent = () => ({
  user: {
    userId: 'oauth2|acme|1',
    email: 'ann@example.com',
    emailVerified: true,
    givenName: undefined,
    profile: '{"sub":"1"}',
    appMetadata: '{"roles":["admin"]}',
    userMetadata: 'not json',
    identities: [{ connection: 'acme', provider: 'oauth2', userId: '1' }],
    loginsCount: 3n,
  },
  client: { clientId: 'app1', name: 'App' },
  connection: { name: 'acme', strategy: 'oauth2' },
  request: { ip: '127.0.0.1', userAgent: 'ua' },
  transaction: { requestedScopes: ['openid'], redirectUri: 'https://app/cb' },
  secrets: [['API_KEY', 'k']],
});

test('the event reads as Auth0 shapes it: snake_case, metadata parsed, secrets an object', () => {
  const event = sdk.auth0Event(worldEvent());
  assert.equal(event.user.user_id, 'oauth2|acme|1');
  assert.equal(event.user.email_verified, true);
  assert.deepEqual(event.user.app_metadata, { roles: ['admin'] });
  assert.deepEqual(event.user.profile, { sub: '1' });
  assert.deepEqual(event.user.user_metadata, {}, 'text that is not JSON reads as {}');
  assert.equal(event.user.identities[0].user_id, '1');
  assert.equal(event.user.logins_count, 3);
  assert.equal(event.client.client_id, 'app1');
  assert.equal(event.request.user_agent, 'ua');
  assert.deepEqual(event.transaction.requested_scopes, ['openid']);
  assert.deepEqual(event.secrets, { API_KEY: 'k' });
});

test('what the handler asks of api becomes the proceed outcome, values as JSON text', () => {
  const run = sdk.exportAction((event, api) => {
    api.idToken.setCustomClaim('https://x/roles', event.user.app_metadata.roles);
    api.accessToken.setCustomClaim('https://x/n', 42);
    api.accessToken.addScope('read:x');
    api.accessToken.removeScope('write:x');
    api.user.setAppMetadata('plan', 'gold');
    api.user.setUserMetadata('theme', undefined);
  });
  assert.deepEqual(run(worldEvent()), {
    tag: 'proceed',
    val: {
      idTokenClaims: [{ name: 'https://x/roles', value: '["admin"]' }],
      accessTokenClaims: [{ name: 'https://x/n', value: '42' }],
      appMetadata: [{ name: 'plan', value: '"gold"' }],
      userMetadata: [{ name: 'theme', value: 'null' }],
      addScopes: ['read:x'],
      removeScopes: ['write:x'],
    },
  });
});

test('a deny wins over changes and keeps the first reason', () => {
  const run = sdk.exportAction((event, api) => {
    api.user.setAppMetadata('seen', true);
    api.access.deny('first');
    api.access.deny('second');
  });
  assert.deepEqual(run(worldEvent()), { tag: 'deny', val: 'first' });
});

test('whatever the handler throws becomes the world error, and a Promise is refused', () => {
  const thrown = (handler) => {
    try {
      sdk.exportAction(handler)(worldEvent());
    } catch (e) {
      return e.payload;
    }
    return undefined;
  };
  assert.deepEqual(
    thrown(() => {
      throw new Error('boom');
    }),
    { tag: 'other', val: 'boom' },
  );
  assert.deepEqual(
    thrown(() => {
      throw new sdk.ActionError('mine');
    }),
    { tag: 'other', val: 'mine' },
  );
  assert.deepEqual(
    thrown((event, api) => {
      api.idToken.setCustomClaim('x', () => 1);
    }),
    { tag: 'other', val: 'a function is not a JSON value' },
  );
  assert.match(thrown(async () => {}).val, /returned a Promise/);
});
