//! The epoch ticker: advances the engine's epoch every
//! [`EPOCH_TICK`](super::limits::EPOCH_TICK) while guest calls run, so that
//! a running guest is interrupted to check its deadline and yield, and
//! sleeps when none runs.
//!
//! A ticker that never stops wakes its thread a thousand times a second on
//! an idle broker: measured, ~900 context switches a second and 1–3 % of a
//! core with nobody logging in, on every instance of a fleet. This one
//! parks once [`LINGER_TICKS`] ticks passed with no call running, and the
//! next call to start wakes it. The linger keeps a loaded broker (calls
//! closer together than the linger) from paying a wake-up per call: there
//! the ticker runs as before.
//!
//! A call's first interruption still comes one tick after it started: a
//! parked ticker is woken before the call's store exists, and the epoch a
//! deadline counts from is read when the call sets it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use wasmtime::Engine;

/// Ticks with no call running before the ticker parks: 20 ms at 1 ms a
/// tick. Logins more often than fifty a second keep it ticking; fewer pay
/// one wake-up of the thread each, and an idle broker pays nothing.
pub(crate) const LINGER_TICKS: u32 = 20;

/// The ticker's thread, and the calls it ticks for.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the first call starts while the ticker is parked,
    /// and when the ticker is stopped.
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Guest calls in flight.
    running: usize,
    /// The ticker waits on [`Shared::wake`]: the next call must wake it.
    parked: bool,
    stopped: bool,
}

/// One guest call in flight; the ticker may park once every such guard is
/// dropped.
pub(crate) struct Ticking<'t> {
    shared: &'t Shared,
}

impl EpochTicker {
    /// Starts the thread advancing `engine`'s epoch every `tick`.
    pub(crate) fn start(engine: Engine, tick: Duration) -> anyhow::Result<Self> {
        Self::start_with(move || engine.increment_epoch(), tick, LINGER_TICKS)
    }

    /// The ticker with what a tick does, its period and its linger given.
    fn start_with(
        advance: impl Fn() + Send + 'static,
        tick: Duration,
        linger_ticks: u32,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("waypass-epoch".into())
            .spawn(move || thread_shared.run(advance, tick, linger_ticks))
            .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
        Ok(Self { shared })
    }

    /// Marks a guest call in flight until the guard is dropped, waking a
    /// parked ticker.
    pub(crate) fn ticking(&self) -> Ticking<'_> {
        let mut state = self.shared.lock();
        state.running += 1;
        if state.parked {
            state.parked = false;
            self.shared.wake.notify_one();
        }
        Ticking {
            shared: &self.shared,
        }
    }

    /// Whether the thread advances the epoch now (it is not parked).
    pub(crate) fn is_ticking(&self) -> bool {
        !self.shared.lock().parked
    }

    #[cfg(test)]
    fn parked(&self) -> bool {
        !self.is_ticking()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self, advance: impl Fn(), tick: Duration, linger_ticks: u32) {
        let mut idle_ticks = 0u32;
        loop {
            {
                let mut state = self.lock();
                if state.running == 0 {
                    idle_ticks = idle_ticks.saturating_add(1);
                } else {
                    idle_ticks = 0;
                }
                if idle_ticks > linger_ticks {
                    state.parked = true;
                    // `ticking` clears `parked` when it wakes us; a spurious
                    // wake-up finds it still set and waits again.
                    while state.parked && !state.stopped {
                        state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    idle_ticks = 0;
                }
                if state.stopped {
                    return;
                }
            }
            std::thread::sleep(tick);
            advance();
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stopped = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.shared.lock().running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use super::*;

    const TICK: Duration = Duration::from_millis(1);
    const LINGER: u32 = 5;

    /// Waits up to ten seconds for `done`, polling: the thread runs on its
    /// own schedule, and a loaded machine delays it.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not within 10 s: {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn counting_ticker() -> (EpochTicker, Arc<AtomicU64>) {
        let advanced = Arc::new(AtomicU64::new(0));
        let counter = advanced.clone();
        let ticker = EpochTicker::start_with(
            move || {
                counter.fetch_add(1, Ordering::Relaxed);
            },
            TICK,
            LINGER,
        )
        .expect("ticker starts");
        (ticker, advanced)
    }

    #[test]
    fn with_no_call_running_the_ticker_parks_and_stops_advancing_the_epoch() {
        let (ticker, advanced) = counting_ticker();
        eventually("the idle ticker parks", || ticker.parked());
        let at_park = advanced.load(Ordering::Relaxed);
        assert!(
            at_park <= u64::from(LINGER) + 1,
            "parked after its linger, not later: {at_park} ticks"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            advanced.load(Ordering::Relaxed),
            at_park,
            "no tick while parked"
        );
    }

    #[test]
    fn a_call_starting_wakes_the_parked_ticker_which_ticks_until_the_call_ends() {
        let (ticker, advanced) = counting_ticker();
        eventually("the idle ticker parks", || ticker.parked());
        let before = advanced.load(Ordering::Relaxed);

        let call = ticker.ticking();
        assert!(!ticker.parked(), "woken as the call starts");
        eventually("ticks while the call runs", || {
            advanced.load(Ordering::Relaxed) >= before + 3 * u64::from(LINGER)
        });
        assert!(!ticker.parked(), "never parks under a running call");

        drop(call);
        eventually("parks again after the call", || ticker.parked());
    }

    #[test]
    fn overlapping_calls_keep_it_ticking_until_the_last_one_ends() {
        let (ticker, advanced) = counting_ticker();
        let first = ticker.ticking();
        let second = ticker.ticking();
        drop(first);
        let now = advanced.load(Ordering::Relaxed);
        eventually("ticks past the linger with one call left", || {
            advanced.load(Ordering::Relaxed) > now + 2 * u64::from(LINGER)
        });
        assert!(!ticker.parked());
        drop(second);
        eventually("parks once the last call ends", || ticker.parked());
    }

    #[test]
    fn dropping_the_ticker_ends_its_thread_even_while_parked() {
        let (ticker, advanced) = counting_ticker();
        eventually("the idle ticker parks", || ticker.parked());
        let shared = Arc::downgrade(&ticker.shared);
        drop(ticker);
        // The thread holds the other reference until it returns.
        eventually("the thread has ended", || shared.upgrade().is_none());
        let at_end = advanced.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(advanced.load(Ordering::Relaxed), at_end);
    }
}
