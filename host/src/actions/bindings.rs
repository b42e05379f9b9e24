//! Host bindings for the `waypass:action/post-login` world, generated once
//! here. Its `http` and `log` imports are the mapper world's, implemented
//! once by the runtime's `HostState` and linked once in its linker.

wasmtime::component::bindgen!({
    path: ["../wit", "../wit/action"],
    world: "waypass:action/post-login@0.1.0",
    imports: { default: async },
    exports: { default: async },
    with: {
        "waypass:mapper/http": crate::mapper::bindings::http,
        "waypass:mapper/log": crate::mapper::bindings::log,
    },
});
