//! `waypass check --config FILE`: a configuration validated without serving,
//! every problem at once, each with its place in the file (line and column)
//! and its path (`connections[2].options.tokenURL`).
//!
//! Three passes, each going on past what it finds:
//!
//! 1. TOML syntax, with the parser's recovery (every syntax error; nothing
//!    else is checked in a file that does not parse).
//! 2. The file's shape, with serde: an unknown field, a wrong type or a bad
//!    value is reported, taken out of a working copy of the document, and
//!    the file read again — so the next one is found too.
//! 3. What `serve` checks beyond the shape, field by field: URLs, callbacks,
//!    secrets (variables set, files readable), mapper files (components for
//!    the world, without compiling them), scripts (compiled by the script
//!    engine, as when they are saved), references between apps, connections
//!    and mappers. Then what `serve` itself runs (`Connection::new`, the
//!    apps' checks), for anything a field check does not cover.
//!
//! It never opens the store: connecting to PostgreSQL migrates its schema,
//! which a check must not do. A mapper or app the file refers to but does
//! not define may already be registered there: that is a warning.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{ClientConfig, Config, check_issuer, client};
use crate::broker::limits::LimitsError;
use crate::catalog::registry::parse_ref;
use crate::egress::HostRule;
use crate::mapper::limits::MAX_COMPONENT_BYTES;
use crate::mapper::{Runtime, RuntimeConfig};
use crate::model::{ClientType, Connection, SecretSource, check_callbacks, check_require_pkce};
use crate::script::ScriptEngine;
use crate::secret::SecretHash;

/// The most problems one check reports. A file with more is better fixed
/// from the top; and each problem of shape reads the whole file again, so
/// the bound also bounds the work on a hostile file.
pub const MAX_PROBLEMS: usize = 200;

/// The shortest admin token `serve` accepts (see `broker::startup`).
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Why the check itself could not run (problems in the file are a
/// [`Report`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// `serve` would refuse the file (or fail at its first login).
    Error,
    /// Fine for `serve` only if the store already holds what is named.
    Warning,
}

/// A line and column in the file, both from 1 (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub line: usize,
    pub column: usize,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// Where in the file; `None` for what comes from the environment.
    pub place: Option<Place>,
    /// The setting's path (`connections[2].options.tokenURL`), or where the
    /// problem comes from (`WAYPASS_LISTEN`); empty for the whole file.
    pub path: String,
    pub message: String,
}

/// What a check found, and what the file defines.
#[derive(Debug, Default)]
pub struct Report {
    /// In the order of their places in the file.
    pub problems: Vec<Problem>,
    pub apps: usize,
    pub connections: usize,
    pub mappers: usize,
    /// Whether [`MAX_PROBLEMS`] cut the list short.
    pub truncated: bool,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }
}

/// Where the check may keep the compiled script engine (it compiles once).
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub artifact_cache: Option<PathBuf>,
}

/// Checks the configuration file at `path` as `serve` would read it
/// (relative paths from the file's directory, `WAYPASS_*` overrides).
pub async fn check_file(path: &Path, options: &CheckOptions) -> Result<Report, CheckError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(check_text(&text, base, options).await)
}

/// Checks configuration `text`; relative paths in it are from `base`.
pub async fn check_text(text: &str, base: &Path, options: &CheckOptions) -> Report {
    let mut found = Found::new(text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let at = e.span().map_or(0, |s| s.start);
            found.push_at(
                Severity::Error,
                at,
                String::new(),
                e.message().trim().to_owned(),
            );
        }
        return found.finish(None);
    }
    let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let original = Nodes::of(&root);
    let Some((config, work)) = read_shape(&root, &original, &mut found) else {
        return found.finish(None);
    };
    let mut checker = Checker {
        found,
        original,
        work: Nodes::of(&work),
        base: base.to_owned(),
    };
    let config = checker.check(config, options).await;
    checker.found.finish(Some(&config))
}

/// Problems as they are found, placed by byte offsets into the text.
struct Found<'t> {
    text: &'t str,
    problems: Vec<(usize, Problem)>,
    truncated: bool,
}

impl<'t> Found<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            problems: Vec::new(),
            truncated: false,
        }
    }

    fn full(&self) -> bool {
        self.problems.len() >= MAX_PROBLEMS
    }

    fn push_at(&mut self, severity: Severity, offset: usize, path: String, message: String) {
        if self.full() {
            self.truncated = true;
            return;
        }
        let place = place_of(self.text, offset);
        self.problems.push((
            offset,
            Problem {
                severity,
                place: Some(place),
                path,
                message,
            },
        ));
    }

    /// A problem from outside the file (the environment): listed first.
    fn push_unplaced(&mut self, path: &str, message: String) {
        if self.full() {
            self.truncated = true;
            return;
        }
        self.problems.push((
            0,
            Problem {
                severity: Severity::Error,
                place: None,
                path: path.to_owned(),
                message,
            },
        ));
    }

    fn finish(mut self, config: Option<&Config>) -> Report {
        self.problems
            .sort_by_key(|(offset, p)| (p.place.is_some(), *offset, p.severity));
        Report {
            problems: self.problems.into_iter().map(|(_, p)| p).collect(),
            apps: config.map_or(0, |c| c.clients.len()),
            connections: config.map_or(0, |c| c.connections.len()),
            mappers: config.map_or(0, |c| c.mappers.len()),
            truncated: self.truncated,
        }
    }
}

/// Line and column (from 1) of a byte offset.
fn place_of(text: &str, offset: usize) -> Place {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Place {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// `connections[2].options.customHeaders."X-Tenant"`.
fn show_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
        }
    }
    out
}

/// Every key and value of a document with its path and spans, so a span
/// (from an error) finds its path and a path finds its place.
struct Nodes {
    nodes: Vec<Node>,
}

struct Node {
    path: Vec<Seg>,
    /// The key's span (none for array elements and the root).
    key: Option<Range<usize>>,
    /// The value's span; for a table from a `[header]`, the header's.
    value: Range<usize>,
}

impl Nodes {
    fn of(root: &Spanned<DeValue<'_>>) -> Self {
        let mut nodes = Vec::new();
        let mut stack = vec![(Vec::new(), None, root)];
        while let Some((path, key, value)) = stack.pop() {
            match value.get_ref() {
                DeValue::Table(table) => {
                    for (k, v) in table.iter() {
                        let mut p: Vec<Seg> = path.clone();
                        p.push(Seg::Key(k.get_ref().to_string()));
                        stack.push((p, Some(k.span()), v));
                    }
                }
                DeValue::Array(array) => {
                    for (i, v) in array.iter().enumerate() {
                        let mut p: Vec<Seg> = path.clone();
                        p.push(Seg::Index(i));
                        stack.push((p, None, v));
                    }
                }
                _ => {}
            }
            nodes.push(Node {
                path,
                key,
                value: value.span(),
            });
        }
        Self { nodes }
    }

    /// The node a span (an error's) points at: the one whose key or value
    /// it is, else the narrowest whose key or value holds it.
    fn at_span(&self, span: &Range<usize>) -> Option<&Node> {
        let exact = self
            .nodes
            .iter()
            .filter(|n| n.value == *span || n.key.as_ref() == Some(span))
            .max_by_key(|n| n.path.len());
        exact.or_else(|| {
            self.nodes
                .iter()
                .filter(|n| {
                    let holds = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
                    holds(&n.value) || n.key.as_ref().is_some_and(holds)
                })
                .min_by_key(|n| {
                    let len = |r: &Range<usize>| r.end - r.start;
                    n.key
                        .as_ref()
                        .map_or(len(&n.value), |k| len(k).min(len(&n.value)))
                })
        })
    }

    fn at_path(&self, path: &[Seg]) -> Option<&Node> {
        self.nodes.iter().find(|n| n.path == path)
    }

    /// The node with these spans (of another copy of the same document).
    fn same_as(&self, other: &Node) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.key == other.key && n.value == other.value)
    }
}

/// Where a node is shown: its key when it has one (`tokenURL = …` points
/// at `tokenURL`), else its value.
fn node_offset(node: &Node) -> usize {
    node.key.as_ref().map_or(node.value.start, |k| k.start)
}

/// Pass 2: deserialises [`Config`] from a working copy of the document,
/// reporting each error and taking out what it was about, until the rest
/// reads. Returns the configuration (without what was taken out) and the
/// working copy it was read from; `None` when the top level itself is
/// unusable (a required setting missing or wrong).
fn read_shape<'i>(
    root: &Spanned<DeValue<'i>>,
    original: &Nodes,
    found: &mut Found<'_>,
) -> Option<(Config, Spanned<DeValue<'i>>)> {
    let mut work = root.clone();
    // What was taken out, so that the `missing field` it causes is not a
    // second report of one problem: (the table's path, the key).
    let mut removed: BTreeSet<(Vec<Seg>, String)> = BTreeSet::new();
    loop {
        let error = match Config::deserialize(toml::de::ValueDeserializer::from(work.clone())) {
            Ok(config) => return Some((config, work)),
            Err(e) => e,
        };
        if found.full() {
            found.truncated = true;
            return None;
        }
        let message = error.message().trim().to_owned();
        let node = error.span().and_then(|span| original.at_span(&span));
        let Some(node) = node else {
            found.push_at(Severity::Error, 0, String::new(), message);
            return None;
        };
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let echo = missing
            .as_ref()
            .is_some_and(|field| removed.contains(&(node.path.clone(), field.clone())));
        if !echo {
            found.push_at(
                Severity::Error,
                node_offset(node),
                show_path(&node.path),
                message,
            );
        }
        if node.path.is_empty() || !remove(&mut work, node) {
            return None;
        }
        if let Some((Seg::Key(k), parent)) = node.path.split_last() {
            removed.insert((parent.to_vec(), k.clone()));
        }
    }
}

/// Takes `node` (of the original document) out of the working copy `doc`,
/// found by its spans, which taking other nodes out never changes (its
/// path's array indices may).
fn remove(doc: &mut Spanned<DeValue<'_>>, node: &Node) -> bool {
    match doc.get_mut() {
        DeValue::Table(table) => {
            // A key is found by its own span: an array of tables spans what
            // its first element does, so values' spans are not unique.
            let hit = table
                .iter()
                .find(|(k, _)| node.key.as_ref() == Some(&k.span()))
                .map(|(k, _)| k.get_ref().to_string());
            if let Some(k) = hit {
                return table.remove(k.as_str()).is_some();
            }
            table.iter_mut().any(|(_, v)| remove(v, node))
        }
        DeValue::Array(array) => {
            if let Some(i) = array
                .iter()
                .position(|v| node.key.is_none() && v.span() == node.value)
            {
                let mut kept = DeArray::new();
                for (j, item) in array.iter().enumerate() {
                    if j != i {
                        kept.push(item.clone());
                    }
                }
                *array = kept;
                return true;
            }
            array.iter_mut().any(|v| remove(v, node))
        }
        _ => false,
    }
}

/// Pass 3, on what pass 2 read.
struct Checker<'t> {
    found: Found<'t>,
    /// The file as written: paths and places.
    original: Nodes,
    /// The working copy the configuration was read from (what pass 2 took
    /// out is missing): its elements' spans lead back to the original.
    work: Nodes,
    base: PathBuf,
}

impl Checker<'_> {
    /// Reports a problem about the setting at `path` (a path into what was
    /// read, translated to the file as written). A setting the file leaves
    /// out is placed at its nearest ancestor in the file.
    fn report(&mut self, severity: Severity, path: &[Seg], message: impl Into<String>) {
        let mut len = path.len();
        let (offset, mut shown) = loop {
            let node = self
                .work
                .at_path(&path[..len])
                .and_then(|w| self.original.same_as(w));
            if let Some(node) = node {
                break (node_offset(node), node.path.clone());
            }
            if len == 0 {
                break (0, Vec::new());
            }
            len -= 1;
        };
        shown.extend_from_slice(&path[len..]);
        self.found
            .push_at(severity, offset, show_path(&shown), message.into());
    }

    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(Severity::Error, path, message);
    }

    fn warning(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(Severity::Warning, path, message);
    }

    /// A path relative to the configuration file, as `Config::load` makes it.
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.base.join(path)
        } else {
            path.to_owned()
        }
    }

    async fn check(&mut self, mut config: Config, options: &CheckOptions) -> Config {
        let env_ok = match config.apply_env() {
            Ok(()) => true,
            Err(e) => {
                self.found.push_unplaced("environment", format!("{e:#}"));
                false
            }
        };
        // A WAYPASS_ISSUER was checked with the environment.
        if env_ok
            && std::env::var_os("WAYPASS_ISSUER").is_none()
            && let Err(e) = check_issuer(&config.issuer)
        {
            self.error(&[key("issuer")], e);
        }
        if let Some(url) = &config.database_url
            && let Err(e) = url.check()
        {
            self.error(&[key("database_url")], e.to_string());
        }
        if let Err(e) = config.limits.check() {
            let path = match &e {
                LimitsError::EmptyQuota(name) => vec![key("limits"), key("rate"), key(name)],
                LimitsError::NoLogins => vec![key("limits"), key("max_outstanding_logins")],
                LimitsError::BadProxy(_) => vec![key("limits"), key("trusted_proxies")],
            };
            self.error(&path, e.to_string());
        }
        self.check_paths(&config);
        let mappers = self.check_mappers(&config);
        let apps = self.check_apps(&config);
        self.check_connections(&config, &mappers, &apps, options)
            .await;
        config
    }

    /// The data directory, the watched mappers directory, the admin token.
    fn check_paths(&mut self, config: &Config) {
        let data_dir = self.resolve(&config.data_dir);
        if data_dir.exists() && !data_dir.is_dir() {
            self.error(
                &[key("data_dir")],
                format!("{} exists and is not a directory", data_dir.display()),
            );
        }
        if let Some(dir) = &config.mappers_dir {
            let dir = self.resolve(dir);
            if !dir.is_dir() {
                self.error(
                    &[key("mappers_dir")],
                    format!("{} is not a directory", dir.display()),
                );
            }
        }
        // WAYPASS_ADMIN_TOKEN wins over the file, as in `serve`; a problem
        // with what the environment gives is placed there, not in the file.
        let from_env_file =
            std::env::var_os("WAYPASS_ADMIN_TOKEN_FILE").is_some_and(|v| !v.is_empty());
        let (place, token) = match (
            std::env::var("WAYPASS_ADMIN_TOKEN"),
            &config.admin_token_file,
        ) {
            (Ok(token), _) => ("WAYPASS_ADMIN_TOKEN", Ok(token)),
            (Err(_), Some(file)) => {
                let file = self.resolve(file);
                let place = if from_env_file {
                    "WAYPASS_ADMIN_TOKEN_FILE"
                } else {
                    "admin_token_file"
                };
                (place, SecretSource::File(&file).read())
            }
            (Err(_), None) => return,
        };
        let problem = match token {
            Err(e) => e,
            Ok(token) if token.chars().count() < MIN_ADMIN_TOKEN_CHARS => {
                format!("the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters")
            }
            Ok(_) => return,
        };
        if place == "admin_token_file" {
            self.error(&[key(place)], problem);
        } else {
            self.found.push_unplaced(place, problem);
        }
    }

    /// `[[mappers]]`: unique names, files that are components for the world.
    /// Returns the mapper names `serve` will have from the file and from
    /// `mappers_dir`.
    fn check_mappers(&mut self, config: &Config) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (i, m) in config.mappers.iter().enumerate() {
            let at = |field: &str| vec![key("mappers"), Seg::Index(i), key(field)];
            if m.name.is_empty() || m.name.contains('@') {
                self.error(
                    &at("name"),
                    format!(
                        "`{}` is not a mapper name: connections name mappers as NAME or NAME@VERSION",
                        m.name
                    ),
                );
            }
            if !names.insert(m.name.clone()) {
                self.error(&at("name"), format!("mapper `{}` is defined twice", m.name));
            }
            let path = self.resolve(&m.path);
            // Not read when it is larger than any component may be.
            let read = std::fs::metadata(&path).and_then(|meta| {
                if meta.len() > MAX_COMPONENT_BYTES as u64 {
                    Ok(None)
                } else {
                    std::fs::read(&path).map(Some)
                }
            });
            match read {
                Err(e) => self.error(&at("path"), format!("cannot read {}: {e}", path.display())),
                Ok(None) => self.error(
                    &at("path"),
                    format!(
                        "{} is larger than a mapper may be ({MAX_COMPONENT_BYTES} bytes)",
                        path.display()
                    ),
                ),
                Ok(Some(bytes)) => {
                    if let Err(e) = Runtime::precheck(&bytes) {
                        self.error(
                            &at("path"),
                            format!("{} is not a usable mapper: {e}", path.display()),
                        );
                    }
                }
            }
        }
        if let Some(dir) = &config.mappers_dir
            && let Ok(entries) = std::fs::read_dir(self.resolve(dir))
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wasm")
                    && let Some(stem) = path.file_stem()
                {
                    names.insert(stem.to_string_lossy().into_owned());
                }
            }
        }
        names
    }

    /// `[[clients]]`: unique ids, callbacks, one reachable secret as the
    /// type needs, PKCE. Returns the app ids.
    fn check_apps(&mut self, config: &Config) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (i, c) in config.clients.iter().enumerate() {
            let before = self.found.problems.len();
            let at = |field: &str| vec![key("clients"), Seg::Index(i), key(field)];
            let whole = [key("clients"), Seg::Index(i)];
            if !ids.insert(c.client_id.clone()) {
                self.error(
                    &at("client_id"),
                    format!("client `{}` is defined twice", c.client_id),
                );
            }
            if c.callbacks.is_empty() {
                self.error(&at("callbacks"), "at least one callback URL is required");
            }
            for (j, cb) in c.callbacks.iter().enumerate() {
                if let Err(e) = check_callbacks(std::slice::from_ref(cb)) {
                    let mut path = at("callbacks");
                    path.push(Seg::Index(j));
                    self.error(&path, e);
                }
            }
            let secrets = self.check_app_secret(c, i);
            match (c.client_type, secrets) {
                (ClientType::Confidential, 0) => {
                    self.error(&whole, "a confidential client needs a secret (client_secret_env, client_secret_file, client_secret_sha256 or client_secret)");
                }
                (ClientType::Public, n) if n > 0 => {
                    self.error(&at("type"), "a public client has no secret");
                }
                (_, n) if n > 1 => self.error(&whole, "give the secret one way only"),
                _ => {}
            }
            if let Err(e) = check_require_pkce(c.client_type, c.require_pkce) {
                self.error(&at("require_pkce"), e);
            }
            // What `serve` runs, for anything the checks above miss.
            if self.found.problems.len() == before
                && let Err(e) = client(c)
            {
                self.error(&whole, e);
            }
        }
        ids
    }

    /// Checks each secret an app gives; returns how many forms it gives.
    fn check_app_secret(&mut self, c: &ClientConfig, i: usize) -> usize {
        let at = |field: &str| vec![key("clients"), Seg::Index(i), key(field)];
        if let Some(var) = &c.client_secret_env
            && let Err(e) = SecretSource::Env(var).read()
        {
            self.error(&at("client_secret_env"), e);
        }
        if let Some(file) = &c.client_secret_file
            && let Err(e) = SecretSource::File(file).read()
        {
            self.error(&at("client_secret_file"), e);
        }
        if let Some(hex) = &c.client_secret_sha256
            && SecretHash::from_hex(hex).is_none()
        {
            self.error(&at("client_secret_sha256"), "not 64 hex digits (a SHA-256)");
        }
        [
            c.client_secret.is_some(),
            c.client_secret_env.is_some(),
            c.client_secret_file.is_some(),
            c.client_secret_sha256.is_some(),
        ]
        .into_iter()
        .filter(|given| *given)
        .count()
    }

    async fn check_connections(
        &mut self,
        config: &Config,
        mappers: &BTreeSet<String>,
        apps: &BTreeSet<String>,
        options: &CheckOptions,
    ) {
        let mut names = BTreeSet::new();
        let mut scripts = Vec::new();
        for (i, spec) in config.connections.iter().enumerate() {
            let before = self.found.problems.len();
            let conn = [key("connections"), Seg::Index(i)];
            let at = |field: &str| vec![key("connections"), Seg::Index(i), key(field)];
            let opt = |field: &str| {
                vec![
                    key("connections"),
                    Seg::Index(i),
                    key("options"),
                    key(field),
                ]
            };
            let opt_in = |field: &str, inner: Seg| {
                vec![
                    key("connections"),
                    Seg::Index(i),
                    key("options"),
                    key(field),
                    inner,
                ]
            };
            if !names.insert(spec.name.to_string()) {
                self.error(
                    &at("name"),
                    format!("connection `{}` is defined twice", spec.name),
                );
            }
            for (j, app) in spec.enabled_clients.iter().enumerate() {
                if !apps.contains(app) {
                    self.warning(
                        &[key("connections"), Seg::Index(i), key("enabled_clients"), Seg::Index(j)],
                        format!("app `{app}` is not defined in this file: `serve` refuses to start unless the store already holds it"),
                    );
                }
            }
            let o = &spec.options;
            for (field, value) in [
                ("authorizationURL", Some(&o.authorization_url)),
                ("tokenURL", Some(&o.token_url)),
                ("icon_url", o.icon_url.as_ref()),
                ("issuer", o.issuer.as_ref()),
            ] {
                if let Some(value) = value
                    && let Err(e) = http_url(value)
                {
                    self.error(&opt(field), e);
                }
            }
            if o.client_id.is_empty() {
                self.error(&opt("client_id"), "the provider's client_id is empty");
            }
            match (&o.mapper, &o.scripts) {
                (Some(_), Some(_)) => self.error(
                    &opt("mapper"),
                    "names both a mapper and scripts.fetchUserProfile; keep one",
                ),
                (None, None) => self.error(
                    &conn_options(i),
                    "needs `mapper` (a registered mapper) or `scripts.fetchUserProfile` (an Auth0 script)",
                ),
                (Some(reference), None) => match parse_ref(reference) {
                    Err(e) => self.error(&opt("mapper"), e),
                    Ok((name, _)) if !mappers.contains(name) => self.warning(
                        &opt("mapper"),
                        format!(
                            "mapper `{name}` is not defined in this file's [[mappers]] (nor in mappers_dir): \
                             `serve` refuses to start unless the store already holds it"
                        ),
                    ),
                    Ok(_) => {}
                },
                (None, Some(s)) => match crate::script::check_length(&s.fetch_user_profile) {
                    Err(e) => self.error(&opt_in("scripts", key("fetchUserProfile")), e.to_string()),
                    Ok(()) => scripts.push((i, s.fetch_user_profile.clone())),
                },
            }
            for (name, value) in &o.custom_headers {
                let path = opt_in("customHeaders", Seg::Key(name.clone()));
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.error(&path, format!("`{name}` is not a valid header name"));
                } else if HeaderValue::from_str(value).is_err() {
                    // The value is not quoted: it may be a credential.
                    self.error(
                        &path,
                        "not a valid header value (visible ASCII and spaces only, no line breaks)",
                    );
                }
            }
            for name in o
                .mapper_settings
                .keys()
                .filter(|k| k.starts_with("waypass:"))
            {
                self.error(
                    &opt_in("mapper_settings", Seg::Key(name.clone())),
                    "setting names starting with `waypass:` are reserved",
                );
            }
            for (j, host) in o.mapper_egress.allowed_hosts.iter().enumerate() {
                if let Err(e) = host.parse::<HostRule>() {
                    self.error(
                        &[
                            key("connections"),
                            Seg::Index(i),
                            key("options"),
                            key("mapper_egress"),
                            key("allowed_hosts"),
                            Seg::Index(j),
                        ],
                        e,
                    );
                }
            }
            if let Some(var) = &o.client_secret_env
                && let Err(e) = SecretSource::Env(var).read()
            {
                self.error(&opt("client_secret_env"), e);
            }
            if let Some(file) = &o.client_secret_file
                && let Err(e) = SecretSource::File(file).read()
            {
                self.error(&opt("client_secret_file"), e);
            }
            for (setting, var) in &o.mapper_settings_env {
                if let Err(e) = SecretSource::Env(var).read() {
                    self.error(&opt_in("mapper_settings_env", Seg::Key(setting.clone())), e);
                }
            }
            // What `serve` runs, for anything the checks above miss.
            if self.found.problems.len() == before
                && let Err(e) = Connection::new(Connection::config_id(&spec.name), spec.clone())
            {
                self.error(&conn, e);
            }
        }
        if !scripts.is_empty() {
            self.check_scripts(scripts, options).await;
        }
    }

    /// Compiles each script with the script engine, as the API does when a
    /// script is saved and `serve` does at start.
    async fn check_scripts(&mut self, scripts: Vec<(usize, String)>, options: &CheckOptions) {
        let at = |i: usize| {
            vec![
                key("connections"),
                Seg::Index(i),
                key("options"),
                key("scripts"),
                key("fetchUserProfile"),
            ]
        };
        let loaded = Runtime::new(RuntimeConfig {
            cache_dir: options.artifact_cache.clone(),
            ..RuntimeConfig::default()
        })
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            ScriptEngine::load(&runtime)
                .map(|engine| (runtime, engine))
                .map_err(|e| e.to_string())
        });
        let (runtime, engine) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                for (i, _) in scripts {
                    self.error(
                        &at(i),
                        format!("the script engine could not be loaded to check it: {e}"),
                    );
                }
                return;
            }
        };
        for (i, script) in scripts {
            if let Err(e) = engine.check(&runtime, &script).await {
                self.error(&at(i), format!("{e} (in the script)"));
            }
        }
    }
}

fn conn_options(i: usize) -> Vec<Seg> {
    vec![key("connections"), Seg::Index(i), key("options")]
}

/// An http(s) URL with a host, as `Connection::new` requires of a
/// connection's URLs.
fn http_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!("`{s}` must be an http(s) URL with a host"));
    }
    Ok(())
}

/// Counts of what a valid file defines, for the one-line summary.
pub fn summary(report: &Report) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {}, {}",
        plural(report.apps, "app", "apps"),
        plural(report.connections, "connection", "connections"),
        plural(report.mappers, "mapper", "mappers"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(text: &str) -> Report {
        check_text(text, Path::new("."), &CheckOptions::default()).await
    }

    fn shown(report: &Report) -> Vec<String> {
        report
            .problems
            .iter()
            .map(|p| {
                let place = p
                    .place
                    .map_or("-".into(), |pl| format!("{}:{}", pl.line, pl.column));
                format!("{place} {} {}", p.path, p.message)
            })
            .collect()
    }

    #[test]
    fn places_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(place_of(text, 0), Place { line: 1, column: 1 });
        assert_eq!(place_of(text, 6), Place { line: 2, column: 1 });
        // `=` after `bé `: the é is two bytes, one column.
        assert_eq!(place_of(text, 10), Place { line: 2, column: 4 });
    }

    #[test]
    fn paths_show_indices_and_quote_keys_that_need_it() {
        let path = [
            key("connections"),
            Seg::Index(2),
            key("options"),
            key("customHeaders"),
            key("X Tenant"),
        ];
        assert_eq!(
            show_path(&path),
            "connections[2].options.customHeaders.\"X Tenant\""
        );
    }

    #[tokio::test]
    async fn every_syntax_error_is_reported_and_nothing_else_is_checked() {
        let report = check("issuer = \nlisten = [1,\n").await;
        assert!(report.errors() >= 2, "{:?}", shown(&report));
        assert!(report.problems.iter().all(|p| p.place.is_some()));
    }

    #[tokio::test]
    async fn unknown_fields_and_wrong_types_are_all_reported_in_one_pass() {
        let text = r#"issuer = "https://login.example.com"
listen_port = 3

[[clients]]
client_id = "shop"
client_secret_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
callbacks = ["https://shop.example.com/cb"]
require_pkce = "yes"
colour = "blue"
"#;
        let report = check(text).await;
        let shown = shown(&report);
        assert_eq!(report.errors(), 3, "{shown:?}");
        assert!(
            shown[0].starts_with("2:1 listen_port unknown field"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("8:1 clients[0].require_pkce invalid type"),
            "{shown:?}"
        );
        assert!(
            shown[2].starts_with("9:1 clients[0].colour unknown field"),
            "{shown:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_required_field_takes_its_table_out_and_the_rest_is_checked() {
        let text = r#"issuer = "https://login.example.com"
[[connections]]
name = "a"
[[connections]]
name = "b"
[connections.options]
authorizationURL = "ftp://id.example/authorize"
tokenURL = "https://id.example/token"
client_id = "w"
client_secret = "s"
mapper = "m"
"#;
        let report = check(text).await;
        let shown = shown(&report);
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("2:") && s.contains("missing field `options`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("7:1 connections[1].options.authorizationURL `ftp://")),
            "{shown:?}"
        );
    }
}
