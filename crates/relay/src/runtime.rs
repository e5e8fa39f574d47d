//! The tokio runtime a process that runs a relay builds.
//!
//! tokio's multi-threaded scheduler runs a task woken by the running task next (its *LIFO
//! slot*), ahead of the tasks already queued. That suits a request and its reply. In the
//! relay a wake-up is mostly work handed on — datagrams from the endpoint to a connection,
//! stream data to the task that reads a sender's signals, signals to the routes of their
//! receivers, writes to a receiver's connection — and with the slot off a woken task waits
//! behind the tasks already queued, then finds more to do.
//!
//! Measured (alternated runs, `bench/results/2026-12-07-lifo.md`): where the relay is the
//! limit and many senders write to many receivers, it does a quarter more with the slot off
//! (50→50 targeted 64 B: 1.60–1.94 → 1.26–1.28 s of CPU per million deliveries, 620 k → 790 k
//! deliveries per second; 1 KiB: 4.4–4.8 → 3.8–3.9 s, a third fewer datagrams). Where one
//! sender's signals go one by one to a hundred receivers at half the relay's capacity, a
//! delivery costs a fifth more CPU (1→100 targeted 64 B: 2.39–2.43 → 2.90–2.92 s) at the same
//! rate. Of the other rows measured, 50→50 broadcast 64 B was a little cheaper and the rest
//! unchanged, and so was latency at 1 000 and 10 000 signals per second. The relay takes the
//! capacity.
//!
//! Turning the slot off is one of tokio's unstable settings, compiled only with
//! `--cfg tokio_unstable`, which the workspace's `.cargo/config.toml` passes. Without it the
//! runtime is the same but for the slot.

/// A multi-threaded runtime builder with the timer and I/O drivers on and, where tokio's
/// unstable settings are compiled in, the LIFO slot off. Callers set the worker count if
/// they want one other than tokio's default (one per core).
pub fn builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// On one worker, a task spawns two more and ends. With the LIFO slot, the second runs
    /// first (it took the slot); without it, they run in the order they were spawned.
    fn order_of_two_spawned_tasks(mut builder: tokio::runtime::Builder) -> Vec<u8> {
        let rt = builder.worker_threads(1).build().expect("a runtime");
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let seen = order.clone();
        rt.spawn(async move {
            for i in [1u8, 2] {
                let seen = seen.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    seen.lock().expect("not poisoned").push(i);
                    let _ = done.send(());
                });
            }
        });
        for _ in 0..2 {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("both tasks ran");
        }
        order.lock().expect("not poisoned").clone()
    }

    #[test]
    fn the_relay_runtime_runs_woken_tasks_in_order() {
        let mut plain = tokio::runtime::Builder::new_multi_thread();
        plain.enable_all();
        assert_eq!(
            order_of_two_spawned_tasks(plain),
            [2, 1],
            "tokio's default scheduler runs the last woken task first"
        );
        assert_eq!(
            order_of_two_spawned_tasks(super::builder()),
            [1, 2],
            "the relay's runtime kept tokio's LIFO slot: built without --cfg tokio_unstable? \
             (a RUSTFLAGS variable replaces the flags of .cargo/config.toml)"
        );
    }
}
