//! A provider that never answers: a TCP server on 127.0.0.1 that accepts
//! connections and holds them, unanswered, until it is dropped. Tests use
//! it to keep calls in flight and to know, without sleeping, when they are.

use std::net::SocketAddr;

/// A running gate; dropping it closes every connection it holds.
pub struct Gate {
    pub addr: SocketAddr,
    accepted: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn start() -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, accepted) = tokio::sync::watch::channel(0);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                tx.send_replace(held.len());
            }
        });
        Gate {
            addr,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Waits until the count of accepted connections changes.
    pub async fn changed(&mut self) {
        self.accepted.changed().await.expect("the gate is running");
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_for(&mut self, n: usize) {
        self.accepted
            .wait_for(|accepted| *accepted >= n)
            .await
            .expect("the gate is running");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Aborting the task drops the held connections: requests waiting
        // on them fail at once.
        self.task.abort();
    }
}
