// The SDK's share of a JavaScript mapper's call, for the call bench
// (`tests/benches/languages.rs`): the SDK's export, a setting read and
// `profile`, no request; answers a constant profile.

import { exportMapper, profile, requireSetting } from './waypass-mapper.js';

export const fetchUserProfile = exportMapper((_accessToken, ctx) => {
  requireSetting(ctx, 'userinfo_url');
  return profile({ userId: 'constant', email: 'ada@example.com' });
});
