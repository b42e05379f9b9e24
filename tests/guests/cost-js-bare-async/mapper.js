// The floor of an asynchronous JavaScript export, for the call bench
// (`tests/benches/languages.rs`): `cost-js-bare` as an `async` function,
// which componentize-js settles by running the event loop.

export async function fetchUserProfile(_accessToken, _ctx) {
  return { userId: 'constant' };
}
