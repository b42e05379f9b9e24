//! A mapper that misbehaves on demand, for the host's tests. The setting
//! `mode` picks the behaviour; see `README.md`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use waypass_mapper::http::{self, Request};
use waypass_mapper::serde_json::{Map, Value, json};
use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper, log};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Hostile;

impl Mapper for Hostile {
    fn fetch_user_profile(access_token: String, ctx: Context) -> Result<Profile, Error> {
        match ctx.setting("mode").unwrap_or_default() {
            "echo" => Ok(echo(access_token, &ctx)),
            "counter" => {
                let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(ProfileBuilder::new(n.to_string()).build())
            }
            "loop" => spin(),
            "memory-bomb" => memory_bomb(),
            "huge-output" => Ok(ProfileBuilder::new("huge")
                .name("x".repeat(10 << 20))
                .build()),
            "trap" => panic!("hostile guest panicked on purpose"),
            "log-flood" => Ok(log_flood()),
            "fetch" => fetch(&ctx, host_get),
            "wasi-http" => fetch(&ctx, wasi_http::get),
            "stack-overflow" => {
                let limit = number_setting(&ctx, "depth", u64::MAX)?;
                Ok(ProfileBuilder::new(recurse(0, limit).to_string()).build())
            }
            "fields-bomb" => host_memory::fields_bomb(&ctx),
            "hold-bodies" => host_memory::hold_bodies(&ctx),
            "sockets" => Ok(sandbox::sockets(&ctx)),
            "environment" => Ok(sandbox::environment()),
            "files" => Ok(sandbox::files()),
            _ => Err(Error::Other("unknown mode".into())),
        }
    }
}

export_mapper!(Hostile);

fn echo(access_token: String, ctx: &Context) -> Profile {
    let settings: Map<String, Value> = ctx
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let t = &ctx.tokens;
    ProfileBuilder::new("echo")
        .extra(json!({
            "access_token": access_token,
            "connection": ctx.connection,
            "settings": settings,
            "token_type": t.token_type,
            "id_token": t.id_token,
            "refresh_token": t.refresh_token,
            "expires_in": t.expires_in,
            "scope": t.scope,
            "raw": t.raw,
        }))
        .build()
}

fn spin() -> ! {
    let mut i = 0u64;
    loop {
        i = core::hint::black_box(i.wrapping_add(1));
    }
}

/// Recurses until the guest's call stack runs out (a trap, "call stack
/// exhausted"), `limit` being out of reach. Each frame holds only locals,
/// not the shadow stack in linear memory, and neither combination of the
/// results lets the compiler turn the recursion into a loop.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    if depth.is_multiple_of(2) {
        recurse(depth + 1, limit).wrapping_sub(depth)
    } else {
        depth.wrapping_sub(recurse(depth + 1, limit))
    }
}

fn memory_bomb() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 0xa5;
        }
        chunks.push(core::hint::black_box(chunk));
    }
}

fn log_flood() -> Profile {
    let line = "x".repeat(200);
    for _ in 0..100_000 {
        log::info(&line);
    }
    // Like `println!`, but a closed or full stdout must not trap the guest.
    let mut stdout = std::io::stdout().lock();
    for i in 0..100_000 {
        let _ = writeln!(stdout, "hostile guest flooding stdout, line {i}");
    }
    let _ = stdout.flush();
    ProfileBuilder::new("flooded").build()
}

/// One GET: the status, the `location` header and the body.
type Answer = (u16, Option<String>, Vec<u8>);

fn host_get(url: &str) -> Result<Answer, Error> {
    let resp = http::send(&Request::get(url)).map_err(|e| Error::Other(e.describe()))?;
    let location = resp.header("location").map(str::to_owned);
    Ok((resp.status, location, resp.body))
}

/// GETs the setting `url` `count` times, following redirects when
/// `follow_redirects` is `true` (5 hops at most per request).
fn fetch(ctx: &Context, get: fn(&str) -> Result<Answer, Error>) -> Result<Profile, Error> {
    let url = ctx.require_setting("url")?;
    let count: u64 = match ctx.setting("count") {
        Some(c) => c
            .parse()
            .map_err(|_| Error::Other(format!("invalid count `{c}`")))?,
        None => 1,
    };
    let follow = ctx.setting("follow_redirects") == Some("true");

    let mut statuses = Vec::new();
    let mut last_body = Vec::new();
    for _ in 0..count {
        let mut target = url.to_owned();
        let mut hops = 0;
        loop {
            let (status, location, body) = get(&target)?;
            statuses.push(status);
            last_body = body;
            match location {
                Some(loc) if follow && (300..400).contains(&status) && hops < 5 => {
                    target = resolve(&target, &loc);
                    hops += 1;
                }
                _ => break,
            }
        }
    }

    let mut text = String::from_utf8_lossy(&last_body).into_owned();
    let mut end = text.len().min(1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    Ok(ProfileBuilder::new("fetched")
        .extra(json!({"statuses": statuses, "last_body": text}))
        .build())
}

/// `location` made absolute against `base` when it is a path.
fn resolve(base: &str, location: &str) -> String {
    if !location.starts_with('/') || location.starts_with("//") {
        return location.to_owned();
    }
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}{location}", &base[..origin_end])
}

/// The optional setting `name` as a number, `default` when absent.
fn number_setting(ctx: &Context, name: &str, default: u64) -> Result<u64, Error> {
    match ctx.setting(name) {
        Some(c) => c
            .parse()
            .map_err(|_| Error::Other(format!("invalid {name} `{c}`"))),
        None => Ok(default),
    }
}

/// Host memory a guest can make the host hold outside its linear memory.
mod host_memory {
    use super::{Context, Error, ProfileBuilder, number_setting, wasi_http};
    use wasi::http::types::Fields;
    use waypass_mapper::Profile;
    use waypass_mapper::serde_json::json;

    /// Fills one `fields` with `headers` small headers (default 150, about
    /// 12 KiB as the host counts them), then clones it `count` times
    /// (default: until the host stops the call), writing to every clone so
    /// that the host copies the map the clone shared, and keeps every clone.
    pub fn fields_bomb(ctx: &Context) -> Result<Profile, Error> {
        let count = number_setting(ctx, "count", u64::MAX)?;
        let headers = number_setting(ctx, "headers", 150)?;
        let base = Fields::new();
        // Small headers: the most host bookkeeping per byte of the limit.
        for i in 0..headers {
            base.append(&format!("x-h{i}"), b"v")
                .map_err(|e| Error::Other(format!("header {i}: {e:?}")))?;
        }
        let mut kept = Vec::new();
        for _ in 0..count {
            let copy = base.clone();
            // Same size as before, so the write is accepted; it makes the
            // host copy the map the clone shared with `base`.
            let _ = copy.set("x-h0", &[b"w".to_vec()]);
            kept.push(copy);
        }
        Ok(ProfileBuilder::new("fields-kept")
            .extra(json!({"headers": headers, "clones": kept.len()}))
            .build())
    }

    /// GETs the setting `url` `count` times through `wasi:http` and keeps
    /// every response, its body unread, to the end of the call.
    pub fn hold_bodies(ctx: &Context) -> Result<Profile, Error> {
        let url = ctx.require_setting("url")?;
        let count = number_setting(ctx, "count", 1)?;
        let mut kept = Vec::new();
        for _ in 0..count {
            kept.push(wasi_http::get_unread(url)?);
        }
        Ok(ProfileBuilder::new("bodies-held")
            .extra(json!({"responses": kept.len()}))
            .build())
    }
}

/// What the locked-down WASI gives a guest that reaches past the world:
/// sockets, the environment, files. Each answer is the refusal as the guest
/// sees it (`ok` where something got through).
mod sandbox {
    use super::{Context, ProfileBuilder};
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Network};
    use wasi::sockets::{instance_network, ip_name_lookup, tcp_create_socket, udp_create_socket};
    use waypass_mapper::Profile;
    use waypass_mapper::serde_json::json;

    /// A TCP connection to the setting `addr` (`a.b.c.d:port`), a UDP
    /// socket and a name lookup of `localhost`.
    pub fn sockets(ctx: &Context) -> Profile {
        let network = instance_network::instance_network();
        let target = ctx.setting("addr").and_then(parse_v4);
        ProfileBuilder::new("sockets")
            .extra(json!({
                "tcp": tcp_connect(&network, target),
                "udp": match udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.name().to_owned(),
                },
                "lookup": match ip_name_lookup::resolve_addresses(&network, "localhost") {
                    Ok(stream) => {
                        stream.subscribe().block();
                        match stream.resolve_next_address() {
                            Ok(Some(_)) => "ok".to_owned(),
                            Ok(None) => "no address".to_owned(),
                            Err(e) => e.name().to_owned(),
                        }
                    }
                    Err(e) => e.name().to_owned(),
                },
            }))
            .build()
    }

    fn parse_v4(addr: &str) -> Option<IpSocketAddress> {
        let (ip, port) = addr.split_once(':')?;
        let octets: Vec<u8> = ip
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        let [a, b, c, d] = octets[..] else {
            return None;
        };
        Some(IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: port.parse().ok()?,
            address: (a, b, c, d),
        }))
    }

    fn tcp_connect(network: &Network, target: Option<IpSocketAddress>) -> String {
        let socket = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
            Ok(socket) => socket,
            Err(e) => return format!("create-tcp-socket: {}", e.name()),
        };
        let Some(target) = target else {
            return "missing or invalid setting `addr`".to_owned();
        };
        if let Err(e) = socket.start_connect(network, target) {
            return format!("start-connect: {}", e.name());
        }
        socket.subscribe().block();
        match socket.finish_connect() {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("finish-connect: {}", e.name()),
        }
    }

    /// Environment variables, arguments and the working directory.
    pub fn environment() -> Profile {
        use wasi::cli::environment;
        ProfileBuilder::new("environment")
            .extra(json!({
                "variables": environment::get_environment(),
                "arguments": environment::get_arguments(),
                "cwd": environment::initial_cwd(),
            }))
            .build()
    }

    /// The preopened directories, and `/etc/passwd` read through the
    /// standard library.
    pub fn files() -> Profile {
        let preopens: Vec<String> = wasi::filesystem::preopens::get_directories()
            .into_iter()
            .map(|(_, path)| path)
            .collect();
        let passwd = match std::fs::read_to_string("/etc/passwd") {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        ProfileBuilder::new("files")
            .extra(json!({"preopens": preopens, "passwd": passwd}))
            .build()
    }
}

/// GET straight through `wasi:http/outgoing-handler`, bypassing the host's
/// `http` interface.
mod wasi_http {
    use super::{Answer, Error};
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme,
        http_error_code,
    };
    use wasi::io::streams::StreamError;

    fn code(e: ErrorCode) -> Error {
        Error::Other(format!("wasi-http: {e:?}"))
    }

    fn other(what: &str) -> Error {
        Error::Other(format!("wasi-http: {what}"))
    }

    /// The response to a GET of `url`, its body not read.
    pub fn get_unread(url: &str) -> Result<IncomingResponse, Error> {
        let request = request(url)?;
        let future = outgoing_handler::handle(request, None).map_err(code)?;
        // The pollable is the future's child: drop it before the future.
        let pollable = future.subscribe();
        pollable.block();
        drop(pollable);
        match future.get() {
            Some(Ok(Ok(response))) => Ok(response),
            Some(Ok(Err(e))) => Err(code(e)),
            Some(Err(())) => Err(other("response already taken")),
            None => Err(other("response not ready")),
        }
    }

    fn request(url: &str) -> Result<OutgoingRequest, Error> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| other("invalid url"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            s => Scheme::Other(s.to_owned()),
        };

        let request = OutgoingRequest::new(Fields::new());
        request
            .set_method(&Method::Get)
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(authority)))
            .and_then(|()| request.set_path_with_query(Some(path)))
            .map_err(|()| other("invalid url"))?;
        Ok(request)
    }

    pub fn get(url: &str) -> Result<Answer, Error> {
        let response = get_unread(url)?;

        let status = response.status();
        let body = response
            .consume()
            .map_err(|()| other("body already taken"))?;
        let stream = body.stream().map_err(|()| other("stream already taken"))?;
        let mut bytes = Vec::new();
        let outcome = loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break Ok(()),
                Err(StreamError::LastOperationFailed(e)) => {
                    break Err(match http_error_code(&e) {
                        Some(c) => code(c),
                        None => other(&e.to_debug_string()),
                    });
                }
            }
        };
        // The stream is the body's child: drop it before finishing the body.
        drop(stream);
        drop(IncomingBody::finish(body));
        drop(response);
        outcome.map(|()| (status, None, bytes))
    }
}
