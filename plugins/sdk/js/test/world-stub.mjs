// Stands in for the world's imports under Node, so the SDK's tests run
// without a component: `send` answers what the test put in `world.next`.
export const world = { requests: [], logs: [], next: undefined };

export function send(request) {
  world.requests.push(request);
  const next = world.next;
  if (next.err !== undefined) {
    // What componentize-js throws for an import's `err`.
    const e = new Error('(see error.payload)');
    Object.defineProperty(e, 'payload', { value: next.err, enumerable: true });
    throw e;
  }
  return next.ok;
}

export function log(level, message) {
  world.logs.push([level, message]);
}
