// The request's share of a JavaScript mapper's call, for the call bench
// (`tests/benches/languages.rs`): what `cost-js-constant` does plus the
// userinfo request through the host, its body left unread.

import { exportMapper, profile, providerError, requireSetting, send } from './waypass-mapper.js';

export const fetchUserProfile = exportMapper((accessToken, ctx) => {
  const url = requireSetting(ctx, 'userinfo_url');
  const resp = send({ method: 'get', url, headers: [['Authorization', `Bearer ${accessToken}`]] });
  if (resp.status !== 200) throw providerError(resp.snippet());
  return profile({ userId: 'constant', email: 'ada@example.com' });
});
