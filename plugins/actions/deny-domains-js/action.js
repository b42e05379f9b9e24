// A post-login Action in JavaScript: deny logins from the email domains in
// the secret DENIED_DOMAINS (comma-separated), otherwise put the user's roles
// (app_metadata.roles) into the id_token under a namespaced claim.
//
// It notes the app in app_metadata before deciding: a denied login writes
// nothing, since no change is applied until every bound Action has let the
// login go on.
import { exportAction } from './waypass-action.js';

export const onExecutePostLogin = exportAction((event, api) => {
  api.user.setAppMetadata('last_client', event.client.client_id);

  const denied = (event.secrets.DENIED_DOMAINS ?? '')
    .split(',')
    .map((d) => d.trim().toLowerCase())
    .filter((d) => d !== '');
  const domain = (event.user.email ?? '').split('@').pop().toLowerCase();
  if (denied.includes(domain)) {
    api.access.deny(`logins from ${domain} are not allowed`);
    return;
  }

  api.idToken.setCustomClaim('https://example.com/roles', event.user.app_metadata.roles ?? []);
});
