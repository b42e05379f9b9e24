//! Host bindings for the `waypass:mapper/mapper` world, generated once here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "mapper",
    imports: { default: async },
    exports: { default: async },
});

pub use self::waypass::mapper::{http, log, types};
