//! The log of what happened: every login outcome and every management
//! write, as an event in the store ([`crate::store::LogEvent`], Auth0's log
//! event shape), so "why did this user's login fail yesterday" is answered
//! by `GET /api/v2/logs` without server logs.
//!
//! Events are written off the request path: [`EventSink::record`] puts one
//! on a bounded queue ([`EVENT_QUEUE_BOUND`]) and a writer task stores them
//! in batches of up to [`EVENT_BATCH`], each gathered for up to
//! [`EVENT_LINGER`] after its first event (a group commit: under load many
//! logins' events share one store transaction). A crash loses at most what
//! is queued and the batch being gathered or written, [`EVENT_QUEUE_BOUND`]
//! plus [`EVENT_BATCH`] events; with a store that keeps up, the events of
//! the last [`EVENT_LINGER`] and of the write under way. A full queue drops
//! the new event (counted in [`EventSink::dropped`] and logged) rather than
//! slow a login down.
//!
//! No event holds a secret: codes, tokens, client secrets, cookies and
//! request bodies are never put in one; management writes carry the
//! method, the path (ids, never bodies) and who called.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::store::{LogEvent, Store};

/// Events waiting to be written. At a few hundred bytes each, 4096 are a
/// couple of MiB at most, and at a thousand logins a second several
/// seconds of a stalled store; the bound is also what a crash can lose.
pub const EVENT_QUEUE_BOUND: usize = 4096;
/// Events written in one store transaction: large batches amortise a
/// commit under load; a quiet instance writes each event within
/// [`EVENT_LINGER`].
pub const EVENT_BATCH: usize = 256;
/// How long the writer waits, after a batch's first event, for more before
/// writing it. Each write is a store transaction (on SQLite a hand-off to
/// its thread, a commit and its WAL appends); written one by one, a login's
/// two events cost ~0.1 CPU-s per 1000 logins of kernel time alone
/// (BENCHMARKS.md). At hundreds of logins a second, 50 ms gathers tens of
/// events into one write, while an event still reaches the store (and
/// every other instance's `/api/v2/logs`) well within a second. A flush
/// ends the wait: this instance's own reads never wait for it.
pub const EVENT_LINGER: Duration = Duration::from_millis(50);
/// How long log events are kept by default (`log_retention_days`), as
/// Auth0's paid plans keep them.
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 30;
/// Pause after a failed batch before the writer takes the next: a store
/// that is down should not be hammered.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Auth0's log event type codes Waypass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `s`: successful login.
    Success,
    /// `f`: failed login.
    Failure,
    /// `sapi` / `fapi`: a management API write succeeded / failed.
    ApiSuccess,
    ApiFailure,
    /// `seacft` / `feacft`: an authorization code exchanged / refused.
    CodeExchange,
    CodeExchangeFailure,
    /// `seccft` / `feccft`: client credentials exchanged / refused.
    ClientCredentials,
    ClientCredentialsFailure,
    /// `link` / `unlink`: an identity joined a user / left one (issue #12
    /// §6). Auth0 logs no such type (its links show as `sapi`); these are
    /// Waypass's, named plainly.
    IdentityLinked,
    IdentityUnlinked,
}

impl EventType {
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "s",
            Self::Failure => "f",
            Self::ApiSuccess => "sapi",
            Self::ApiFailure => "fapi",
            Self::CodeExchange => "seacft",
            Self::CodeExchangeFailure => "feacft",
            Self::ClientCredentials => "seccft",
            Self::ClientCredentialsFailure => "feccft",
            Self::IdentityLinked => "link",
            Self::IdentityUnlinked => "unlink",
        }
    }
}

/// Where a login failed (`details.stage` of an `f` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStage {
    /// `/authorize` refused the request.
    Authorize,
    /// The answer at `/login/callback` was refused before the provider's
    /// code was used (provenance, issuer).
    Callback,
    /// The provider answered with an error (the user denied, …).
    Provider,
    /// The token request to the provider failed.
    ProviderToken,
    /// The connection's mapper or script failed.
    Mapper,
    /// The user or the code could not be recorded.
    User,
}

/// What a failed login's event says in `details`.
#[derive(Debug, Serialize)]
pub struct FailureDetails<'a> {
    pub stage: LoginStage,
    /// The OAuth error code the app was sent.
    pub error: &'a str,
    /// Why: the provider's error, the mapper's message, …
    pub reason: &'a str,
    /// The mapper's typed error kind, when the mapper failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapper_error: Option<&'static str>,
}

/// What a management write's event says in `details`.
#[derive(Debug, Serialize)]
pub struct ApiDetails<'a> {
    pub method: &'a str,
    /// `/api/v2/...`, without the query.
    pub path: String,
    /// The id the write is about (the path's second segment), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    /// The admin token (`admin`) or the management client's id; absent
    /// when the caller was not authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<&'a str>,
    pub status: u16,
}

/// What a `link` or `unlink` event says in `details`: the identity, and
/// who linked or unlinked it.
#[derive(Debug, Serialize)]
pub struct LinkDetails<'a> {
    /// The identity's provider (`oauth2`), connection and provider id.
    pub identity: crate::store::IdentityKey<'a>,
    /// `login`: the connection's `account_linking` policy at a login;
    /// otherwise the management caller (`admin` or a client's id).
    pub by: &'a str,
    /// Why: the policy that linked, or the management call.
    pub reason: &'a str,
    /// After an unlink, the user the identity became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_user_id: Option<&'a str>,
}

enum Message {
    Event(Box<LogEvent>),
    /// Answered once every event queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The queue events go through to the store.
pub struct EventSink {
    queue: Option<mpsc::Sender<Message>>,
    enabled: AtomicBool,
    /// This instance's share of each `log_id` (instances write into one
    /// store).
    instance: String,
    sequence: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink writing to `store`, its writer on the current tokio runtime
    /// (none outside one: then events are counted as dropped).
    pub fn new(store: Arc<dyn Store>, instance: &str) -> Self {
        Self::with_linger(store, instance, EVENT_LINGER)
    }

    /// [`EventSink::new`] gathering each batch for `linger` instead of
    /// [`EVENT_LINGER`] (tests).
    pub fn with_linger(store: Arc<dyn Store>, instance: &str, linger: Duration) -> Self {
        let queue = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE_BOUND);
            rt.spawn(write_batches(store, rx, linger));
            tx
        });
        Self {
            queue,
            enabled: AtomicBool::new(true),
            instance: instance.to_owned(),
            sequence: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Turns recording on or off (off: the benchmark's baseline).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Events dropped because the queue was full (or there was no writer).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A new event of `kind` at `date` with a fresh id and nothing else.
    pub fn event(&self, kind: EventType, date: u64, description: impl Into<String>) -> LogEvent {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        LogEvent {
            // Fixed widths, so ids order as (date, sequence) do.
            log_id: format!("{date:011}{sequence:012}{}", self.instance),
            date,
            event_type: kind.code().to_owned(),
            description: Some(description.into()),
            connection: None,
            connection_id: None,
            client_id: None,
            client_name: None,
            user_id: None,
            user_name: None,
            ip: None,
            user_agent: user_agent(),
            details: serde_json::Value::Null,
        }
    }

    /// Queues `event` for the store; never waits.
    pub fn record(&self, event: LogEvent) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let queued = self
            .queue
            .as_ref()
            .is_some_and(|q| q.try_send(Message::Event(Box::new(event))).is_ok());
        if !queued {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped, "the log event queue is full; an event was dropped");
        }
    }

    /// Waits until every event recorded so far is written (or failed to
    /// be): `GET /api/v2/logs` on this instance sees its own events.
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, written) = oneshot::channel();
        if queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// The writer: gathers what is queued for up to `linger` after the first
/// event (less once [`EVENT_BATCH`] are there or a flush asks) and writes
/// it in one call, until every sender is gone.
async fn write_batches(
    store: Arc<dyn Store>,
    mut queue: mpsc::Receiver<Message>,
    linger: Duration,
) {
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = queue.recv().await {
        let deadline = tokio::time::Instant::now() + linger;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => batch.push(*e),
                Message::Flush(done) => flushes.push(done),
            }
            // Everything queued before a flush is in the batch (the queue
            // is FIFO): write it now.
            if batch.len() >= EVENT_BATCH || !flushes.is_empty() {
                break;
            }
            next = match queue.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
        }
        if !batch.is_empty() {
            if let Err(e) = store.put_log_events(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "log events could not be stored; they are lost");
                tokio::time::sleep(WRITE_RETRY_PAUSE).await;
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// What a request tells its events without passing it through every
/// call: the `User-Agent`, and (for a login) how far it got.
#[derive(Debug, Default)]
pub struct RequestNotes {
    user_agent: Option<String>,
    stage: Cell<Option<LoginStage>>,
    user: RefCell<Option<(String, Option<String>)>>,
    mapper_error: Cell<Option<&'static str>>,
}

/// Longest `User-Agent` kept in an event: enough to tell browsers apart.
pub const MAX_USER_AGENT: usize = 256;

tokio::task_local! {
    static NOTES: RequestNotes;
}

/// Runs `f` (one request) with `user_agent` noted for its events.
pub async fn with_request<F: std::future::Future>(user_agent: Option<&str>, f: F) -> F::Output {
    let notes = RequestNotes {
        user_agent: user_agent.map(|ua| cut(ua, MAX_USER_AGENT)),
        ..RequestNotes::default()
    };
    NOTES.scope(notes, f).await
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The `User-Agent` of the request being served, as noted (cut to
/// [`MAX_USER_AGENT`]).
pub fn user_agent() -> Option<String> {
    NOTES.try_with(|n| n.user_agent.clone()).ok().flatten()
}

/// Notes that the login in this request has reached `stage`.
pub fn at_stage(stage: LoginStage) {
    let _ = NOTES.try_with(|n| n.stage.set(Some(stage)));
}

/// The stage the login in this request reached, if noted.
pub fn stage() -> Option<LoginStage> {
    NOTES.try_with(|n| n.stage.get()).ok().flatten()
}

/// Notes the user this request's login is for (id and a display name).
pub fn note_user(user_id: &str, name: Option<&str>) {
    let _ = NOTES.try_with(|n| {
        *n.user.borrow_mut() = Some((user_id.to_owned(), name.map(str::to_owned)));
    });
}

pub fn noted_user() -> Option<(String, Option<String>)> {
    NOTES.try_with(|n| n.user.borrow().clone()).ok().flatten()
}

/// Notes the mapper's typed error kind.
pub fn note_mapper_error(kind: &'static str) {
    let _ = NOTES.try_with(|n| n.mapper_error.set(Some(kind)));
}

pub fn noted_mapper_error() -> Option<&'static str> {
    NOTES.try_with(|n| n.mapper_error.get()).ok().flatten()
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-02T01:02:03.000Z`),
/// Auth0's `date` format.
pub fn rfc3339(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let rem = seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC) or plain epoch
/// seconds; `None` for anything else.
pub fn parse_date(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hh, mm, ss) = if s.len() == 10 {
        (0, 0, 0)
    } else {
        if s.as_bytes().get(10) != Some(&b'T') || !s.ends_with('Z') {
            return None;
        }
        (num(11..13)?, num(14..16)?, num(17..19)?)
    };
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_and_parse_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(parse_date("2023-11-14T22:13:20.000Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14"), Some(1_699_920_000));
        assert_eq!(parse_date("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("2023-11-14T22:13:20+01:00"), None);
    }

    #[tokio::test]
    async fn events_are_written_by_the_time_a_flush_returns() {
        let store = Arc::new(crate::store::MemoryStore::default());
        let sink = EventSink::new(store.clone(), "i1");
        for n in 0..10 {
            sink.record(sink.event(EventType::Success, 100 + n, "ok"));
        }
        sink.flush().await;
        let page = store
            .log_events(&crate::store::LogQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.total, 10);
        assert!(page.events.windows(2).all(|w| w[0].log_id > w[1].log_id));
    }

    /// How many events `store` holds.
    async fn stored(store: &dyn Store) -> u64 {
        store
            .log_events(&crate::store::LogQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list")
            .total
    }

    /// How many `put_log_events` calls `metrics` timed.
    fn event_writes(metrics: &crate::metrics::Metrics) -> u64 {
        metrics
            .render(0)
            .lines()
            .find(|l| {
                l.starts_with("waypass_store_operation_duration_seconds_count")
                    && l.contains("operation=\"put_log_events\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn events_recorded_while_a_batch_lingers_share_one_store_write() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::metrics::InstrumentedStore::wrap(
            Arc::new(crate::store::MemoryStore::default()),
            metrics.clone(),
        );
        // A linger no test outlasts: only the flush ends it.
        let sink = EventSink::with_linger(store.clone(), "i1", Duration::from_secs(3600));
        sink.record(sink.event(EventType::Success, 100, "first"));
        // The writer (on this test's one thread) takes the first event and
        // waits for more.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        sink.record(sink.event(EventType::Success, 101, "second"));
        sink.flush().await;
        assert_eq!(stored(&*store).await, 2);
        assert_eq!(
            event_writes(&metrics),
            1,
            "each event was written on its own"
        );
    }

    #[tokio::test]
    async fn a_flush_ends_the_linger_at_once() {
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
        let sink = EventSink::with_linger(store.clone(), "i1", Duration::from_secs(3600));
        sink.record(sink.event(EventType::Success, 100, "ok"));
        // Far below the linger, far above any scheduling delay.
        tokio::time::timeout(Duration::from_secs(60), sink.flush())
            .await
            .expect("the flush waited for the linger");
        assert_eq!(stored(&*store).await, 1);
    }

    #[test]
    fn outside_a_runtime_events_are_counted_as_dropped() {
        let sink = EventSink::new(Arc::new(crate::store::MemoryStore::default()), "i1");
        sink.record(sink.event(EventType::Failure, 1, "no"));
        assert_eq!(sink.dropped(), 1);
    }
}
