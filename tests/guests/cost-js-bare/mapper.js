// The floor of a JavaScript mapper's call, for the call bench
// (`tests/benches/languages.rs`): componentize-js's bindings alone, a
// synchronous export, no SDK, no request; answers a constant profile.

export function fetchUserProfile(_accessToken, _ctx) {
  return { userId: 'constant' };
}
