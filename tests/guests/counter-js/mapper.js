// Keeps state in the places a JavaScript mapper could: a module-level
// variable, a property of `globalThis`, and a cache object. Each call adds
// one to each and answers their values; a fresh instance per login answers
// user id "1" and `extra` {"global":1,"cached":1} every time.

import { exportMapper, profile } from './waypass-mapper.js';

let calls = 0;
const cache = new Map();

export const fetchUserProfile = exportMapper((_accessToken, _ctx) => {
  calls += 1;
  globalThis.waypassCounter = (globalThis.waypassCounter ?? 0) + 1;
  cache.set('calls', (cache.get('calls') ?? 0) + 1);
  return profile({
    userId: String(calls),
    extra: { global: globalThis.waypassCounter, cached: cache.get('calls') },
  });
});
