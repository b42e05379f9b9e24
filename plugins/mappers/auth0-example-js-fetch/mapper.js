// A faithful port of Auth0's example `fetchUserProfile` script, with plain
// `fetch()`: GET the userinfo URL with the access token, expect 200 and a JSON
// body, and read `account.uuid` and `account.email`.
//
// `fetch()` runs over `wasi:http/outgoing-handler`, where the host applies the
// connection's egress policy as it does to its own `http` interface. The
// SDK (`./waypass-mapper.js`, put next to this file by `waypass mapper build`)
// only supplies settings, errors and the profile's shape.

import {
  exportMapper,
  invalidProfile,
  optionalString,
  parseJson,
  otherError,
  profile,
  providerError,
  requireSetting,
  snippet,
} from './waypass-mapper.js';

export const fetchUserProfile = exportMapper(async (accessToken, ctx) => {
  const url = requireSetting(ctx, 'userinfo_url');
  let status;
  let bytes;
  try {
    // The host never follows redirects; neither does this mapper (a 3xx is
    // "not 200", as with the `http` interface).
    const resp = await fetch(url, {
      headers: { Authorization: `Bearer ${accessToken}` },
      redirect: 'manual',
    });
    status = resp.status;
    bytes = new Uint8Array(await resp.arrayBuffer());
  } catch (e) {
    // `if (err) return callback(err);`. A refused request (egress policy),
    // a timeout and a transport failure all reach JavaScript as the same
    // `TypeError: NetworkError when attempting to fetch resource`; the
    // call's request log says which it was.
    throw otherError(e instanceof Error ? e.message : String(e));
  }
  // `if (resp.statusCode !== 200) return callback(new Error(body));`
  if (status !== 200) throw providerError(snippet(bytes));
  // `try { JSON.parse(body) } catch (e) { return callback(new Error(body)); }`
  let body;
  try {
    body = parseJson(bytes);
  } catch {
    throw providerError(snippet(bytes));
  }
  const account = body !== null && typeof body === 'object' ? body.account : undefined;
  const userId = account !== null && typeof account === 'object' ? optionalString(account.uuid) : undefined;
  if (!userId) throw invalidProfile('`account.uuid` is missing or not a string');
  return profile({ userId, email: optionalString(account.email) });
});
