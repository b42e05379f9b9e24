//! Waypass: a self-hosted login broker. Apps log users in through any OAuth2
//! provider; each connection's profile mapping runs as a WebAssembly component
//! that reaches the network only through the host.
//!
//! # Layout
//!
//! - [`mapper`]: the mapper runtime — loads components implementing the
//!   `waypass:mapper/mapper` world (`wit/`), runs one fresh instance per
//!   call under limits, and reports typed outcomes.
//! - [`actions`]: post-login Actions — components of the
//!   `waypass:action/post-login` world (`wit/action/`), on the same
//!   runtime, run in bound order after the user is recorded and before the
//!   code is issued.
//! - [`egress`]: the egress policy behind every request a mapper makes, through
//!   our `http` import and `wasi:http` alike.
//! - [`store`]: all state behind one trait (memory, SQLite, PostgreSQL),
//!   with types of its own for what it stores; the only truth.
//! - [`catalog`]: what an instance serves — apps, connections, loaded
//!   mapper versions — as an immutable snapshot of the store, rebuilt when
//!   the store's catalog version moves.
//! - [`model`]: apps and connections as the configuration and the API give
//!   them, checked into what logins use; converted to and from the store's
//!   types at this edge.
//! - [`broker`]: the login flow and the OpenID Connect provider, over hyper.
//! - [`admin`]: the management API (`/api/v2`) and the watched mappers
//!   directory: they write the store, then refresh the catalog.
//! - [`upstream`]: the HTTP client towards providers (token exchange).
//! - [`keys`], [`secret`]: signing keys; bearer secrets and their hashes.
//! - [`script`]: Auth0 `fetchUserProfile` scripts, run by a shipped engine.
//! - [`build`]: compiling a mapper's source directory into a component.
//! - [`cli`]: the `waypass` command's subcommands (the binary only parses and
//!   dispatches).

pub mod actions;
pub mod admin;
pub mod broker;
pub mod build;
pub mod catalog;
pub mod cli;
pub mod dev_provider;
pub mod egress;
pub mod events;
pub mod html;
pub mod keys;
pub mod mapper;
pub mod metrics;
pub mod model;
pub mod quickstart;
pub mod script;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod upstream;
