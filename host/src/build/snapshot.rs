//! The script engine's second snapshot, taken by the host after one call.
//!
//! componentize-js snapshots the engine (Wizer) once its modules' top level
//! has run, before any call. SpiderMonkey does much of its work lazily (a
//! function's bytecode on its first call, a builtin on first use), so each
//! login's fresh instance did again the lazy work of the first call: 0.43 M
//! instructions of a script login's 7.42 M once the bindings' classes are
//! made at build time (BENCHMARKS.md #17, "Cut: the shipped engine
//! snapshotted after a warm-up call").
//!
//! [`after_one_check`] runs the built engine once, in `check` mode on
//! [`WARM_UP_SCRIPT`], and writes the state that call leaves (the memory
//! and the mutable globals) back into the component as its initial data
//! (component-init-transform, the tool componentize-py snapshots with).
//! Every login then starts from that state in a fresh instance, as before:
//! nothing of one login reaches another.
//!
//! The call may read the monotonic clock (answered from zero, as a fresh
//! instance's clock starts); every other import traps, so the snapshot
//! cannot hold randomness (a seed drawn once would be every login's), an
//! open resource, or anything fetched. A call that needs more fails the
//! build with the import's name.

use std::time::Instant;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use wasmtime::component::{Component, ComponentNamedList, Instance, Lift, Linker, Val};
use wasmtime::{Config, Engine, Store};

/// The script checked (compiled, not run) in the warm-up call: a
/// `fetchUserProfile` in the style of Auth0's documentation, so the call
/// compiles the parser's and the engine's paths every script takes.
pub(super) const WARM_UP_SCRIPT: &str = r#"function fetchUserProfile(accessToken, context, callback) {
  request.get(
    {
      url: 'https://warm-up.invalid/userinfo',
      headers: { Authorization: 'Bearer ' + accessToken },
    },
    function (err, resp, body) {
      if (err) return callback(err);
      if (resp.statusCode !== 200) return callback(new Error(body));
      let bodyParsed;
      try {
        bodyParsed = JSON.parse(body);
      } catch (jsonError) {
        return callback(new Error(body));
      }
      const profile = { user_id: bodyParsed.account.uuid, email: bodyParsed.account.email };
      callback(null, profile);
    },
  );
}
"#;

/// The version of the snapshotting tool, part of the engine's inputs.
pub(super) const TRANSFORM: &str = "component-init-transform 0.3.1";

/// An upper bound on the warm-up call's work (wasm fuel), so that a broken
/// engine fails the build instead of spinning: the call takes a few million.
const WARM_UP_FUEL: u64 = 10_000_000_000;

/// `engine` (a built script engine component) with the state one `check`
/// call of [`WARM_UP_SCRIPT`] leaves as its initial state.
pub(super) fn after_one_check(engine: &[u8]) -> anyhow::Result<Vec<u8>> {
    futures::executor::block_on(component_init_transform::initialize(
        engine,
        |instrumented| -> BoxFuture<'static, anyhow::Result<Box<dyn component_init_transform::Invoker>>> {
            Box::pin(check_once(instrumented))
        },
    ))
    .context("cannot snapshot the script engine after its warm-up call")
}

/// Instantiates the instrumented engine and makes the warm-up call; the
/// returned invoker reads the state back for the transform.
async fn check_once(
    instrumented: Vec<u8>,
) -> anyhow::Result<Box<dyn component_init_transform::Invoker>> {
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true);
    let engine = Engine::new(&config)?;
    let component = Component::new(&engine, &instrumented)
        .map_err(anyhow::Error::from)
        .context("cannot compile the instrumented engine")?;

    let mut linker = Linker::new(&engine);
    let started = Instant::now();
    for (name, _) in component.component_type().imports(&engine) {
        if name.starts_with("wasi:clocks/monotonic-clock@") {
            let mut clock = linker.instance(name)?;
            clock.func_wrap("now", move |_, (): ()| {
                Ok((u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),))
            })?;
            clock.func_wrap("resolution", |_, (): ()| Ok((1u64,)))?;
        }
    }
    linker.define_unknown_imports_as_traps(&component)?;

    let mut store = Store::new(&engine, ());
    store.set_fuel(WARM_UP_FUEL)?;
    // The transform reads the whole memory back as one `list<u8>`.
    store.set_hostcall_fuel(usize::MAX);
    let instance = linker.instantiate_async(&mut store, &component).await?;
    let export = instance
        .get_export_index(&mut store, None, "fetch-user-profile")
        .context("the engine exports no fetch-user-profile")?;
    let call = instance
        .get_func(&mut store, export)
        .context("fetch-user-profile is not a function")?;
    let mut answer = [Val::Bool(false)];
    call.call_async(
        &mut store,
        &[Val::String(String::new()), check_context()],
        &mut answer,
    )
    .await
    .map_err(anyhow::Error::from)
    .context("the warm-up call failed")?;
    check_answer(&answer[0])?;
    Ok(Box::new(Invoker { store, instance }))
}

/// The `context` of a `check` call of [`WARM_UP_SCRIPT`] (`wit/mapper.wit`).
fn check_context() -> Val {
    let none = || Val::Option(None);
    let setting = |key: &str, value: &str| {
        Val::Tuple(vec![Val::String(key.into()), Val::String(value.into())])
    };
    Val::Record(vec![
        ("connection".into(), Val::String("warm-up".into())),
        (
            "tokens".into(),
            Val::Record(vec![
                ("access-token".into(), Val::String(String::new())),
                ("token-type".into(), none()),
                ("id-token".into(), none()),
                ("refresh-token".into(), none()),
                ("expires-in".into(), none()),
                ("scope".into(), none()),
                ("raw".into(), Val::String("{}".into())),
            ]),
        ),
        (
            "settings".into(),
            Val::List(vec![
                setting(crate::script::SCRIPT_SETTING, WARM_UP_SCRIPT),
                setting(crate::script::MODE_SETTING, "check"),
            ]),
        ),
    ])
}

/// The engine answers a check with `other` carrying `{"check":"ok"}`
/// (`crate::script::ScriptEngine::check`); anything else means the call did
/// not do what the snapshot is meant to hold.
fn check_answer(answer: &Val) -> anyhow::Result<()> {
    if let Val::Result(Err(Some(error))) = answer
        && let Val::Variant(case, Some(message)) = &**error
        && case == "other"
        && let Val::String(message) = &**message
        && serde_json::from_str::<serde_json::Value>(message)
            .is_ok_and(|v| v == serde_json::json!({"check": "ok"}))
    {
        return Ok(());
    }
    bail!("the warm-up check did not answer ok: {answer:?}")
}

/// Calls the instrumentation's exports for component-init-transform.
struct Invoker {
    store: Store<()>,
    instance: Instance,
}

impl Invoker {
    async fn call<R>(&mut self, name: &str) -> anyhow::Result<R>
    where
        (R,): ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let func = self
            .instance
            .get_typed_func::<(), (R,)>(&mut self.store, name)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("the instrumented engine exports no {name}"))?;
        let (value,) = func.call_async(&mut self.store, ()).await?;
        Ok(value)
    }
}

#[async_trait::async_trait]
impl component_init_transform::Invoker for Invoker {
    async fn call_s32(&mut self, function: &str) -> anyhow::Result<i32> {
        self.call(function).await
    }
    async fn call_s64(&mut self, function: &str) -> anyhow::Result<i64> {
        self.call(function).await
    }
    async fn call_f32(&mut self, function: &str) -> anyhow::Result<f32> {
        self.call(function).await
    }
    async fn call_f64(&mut self, function: &str) -> anyhow::Result<f64> {
        self.call(function).await
    }
    async fn call_list_u8(&mut self, function: &str) -> anyhow::Result<Vec<u8>> {
        self.call(function).await
    }
}
