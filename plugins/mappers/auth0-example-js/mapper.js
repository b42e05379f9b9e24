// A faithful port of Auth0's example `fetchUserProfile` script: GET the
// userinfo URL with the access token, expect 200 and a JSON body, and read
// `account.uuid` and `account.email`. Requests go through the host's `http`
// interface (via the SDK), under the connection's egress policy.
//
// `./waypass-mapper.js` is the JavaScript SDK; `waypass mapper build` puts it
// next to this file.

import {
  exportMapper,
  invalidProfile,
  optionalString,
  parseJson,
  profile,
  providerError,
  requireSetting,
  send,
} from './waypass-mapper.js';

export const fetchUserProfile = exportMapper((accessToken, ctx) => {
  const url = requireSetting(ctx, 'userinfo_url');
  // `if (err) return callback(err);`: a host error throws `other("http <kind>…")`.
  const resp = send({ method: 'get', url, headers: [['Authorization', `Bearer ${accessToken}`]] });
  // `if (resp.statusCode !== 200) return callback(new Error(body));`
  if (resp.status !== 200) throw providerError(resp.snippet());
  // `try { JSON.parse(body) } catch (e) { return callback(new Error(body)); }`
  let body;
  try {
    body = parseJson(resp.body);
  } catch {
    throw providerError(resp.snippet());
  }
  const account = body !== null && typeof body === 'object' ? body.account : undefined;
  const userId = account !== null && typeof account === 'object' ? optionalString(account.uuid) : undefined;
  if (!userId) throw invalidProfile('`account.uuid` is missing or not a string');
  return profile({ userId, email: optionalString(account.email) });
});
