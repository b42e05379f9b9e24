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

/// GET straight through `wasi:http/outgoing-handler`, bypassing the host's
/// `http` interface.
mod wasi_http {
    use super::{Answer, Error};
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, Scheme, http_error_code,
    };
    use wasi::io::streams::StreamError;

    fn code(e: ErrorCode) -> Error {
        Error::Other(format!("wasi-http: {e:?}"))
    }

    fn other(what: &str) -> Error {
        Error::Other(format!("wasi-http: {what}"))
    }

    pub fn get(url: &str) -> Result<Answer, Error> {
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

        let future = outgoing_handler::handle(request, None).map_err(code)?;
        // The pollable is the future's child: drop it before the future.
        let pollable = future.subscribe();
        pollable.block();
        drop(pollable);
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(code(e)),
            Some(Err(())) => return Err(other("response already taken")),
            None => return Err(other("response not ready")),
        };
        drop(future);

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
