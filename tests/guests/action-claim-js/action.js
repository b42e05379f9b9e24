// The work `action-probe` does with the secrets `claim` and `metadata`, in
// JavaScript through the SDK, for the per-login figures of
// `tests/benches/actions.rs`: one namespaced claim on both tokens and one
// app_metadata property.
import { exportAction } from './waypass-action.js';

export const onExecutePostLogin = exportAction((event, api) => {
  api.idToken.setCustomClaim('https://example.com/roles', ['admin']);
  api.accessToken.setCustomClaim('https://example.com/roles', ['admin']);
  api.user.setAppMetadata('plan', 'gold');
});
