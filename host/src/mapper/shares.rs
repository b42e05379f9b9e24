//! Each connection's share of the instance pool: at most
//! [`MAX_CALLS_PER_CONNECTION`] of its calls run at once, so that one
//! connection — a burst of logins, or `try` calls against a provider that
//! never answers — cannot hold every pool slot while other connections'
//! logins fail for want of one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::limits::MAX_CALLS_PER_CONNECTION;

/// Calls running, by connection. A connection with none has no entry.
#[derive(Debug, Default)]
pub(crate) struct CallShares {
    running: Mutex<HashMap<String, usize>>,
}

/// One running call of a connection; its place is given back when dropped.
pub(crate) struct Share {
    shares: Arc<CallShares>,
    connection: String,
}

impl CallShares {
    /// Calls running now, every connection's together.
    pub(crate) fn running(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.values().sum()
    }

    /// A place for one more call of `connection`, or `None` when it already
    /// runs its share.
    pub(crate) fn enter(self: &Arc<Self>, connection: &str) -> Option<Share> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(connection.to_owned()).or_default();
        if *count >= MAX_CALLS_PER_CONNECTION {
            return None;
        }
        *count += 1;
        Some(Share {
            shares: self.clone(),
            connection: connection.to_owned(),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut running = self
            .shares
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.connection) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.connection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_runs_at_most_its_share_and_others_keep_theirs() {
        let shares = Arc::new(CallShares::default());
        let held: Vec<Share> = (0..MAX_CALLS_PER_CONNECTION)
            .map(|_| shares.enter("busy").expect("within the share"))
            .collect();
        assert!(shares.enter("busy").is_none(), "one past the share");
        assert!(shares.enter("other").is_some(), "another connection");
        drop(held);
        assert!(shares.enter("busy").is_some(), "given back when done");
        assert!(
            shares.running.lock().expect("lock").is_empty(),
            "no entry is kept for a connection with no call running"
        );
    }
}
