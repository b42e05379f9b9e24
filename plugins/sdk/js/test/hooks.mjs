// Module hooks resolving the world's interfaces to `world-stub.mjs`.
const STUB = new URL('./world-stub.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('waypass:mapper/')) return { url: STUB, shortCircuit: true };
  return next(specifier, context);
}
