//! Admission: what a connection may hold before and after it joins.
//!
//! Before authentication a connection must be cheap to hold, or a few thousand QUIC Initials
//! a second — from spoofed or many sources — keep the relay "full" for everyone. So:
//!
//! - A connection that has not joined yet (QUIC handshake, then `Hello`) holds a *pending*
//!   slot from a small budget of its own (`max_pending`), never one of the joined budget
//!   (`max_connections`); it must finish its handshake within `handshake_timeout` and send
//!   `Hello` within `hello_timeout` after that.
//! - Once more than [`RETRY_ABOVE`] connections are pending, a source whose address is not
//!   validated gets a QUIC Retry instead of a slot: the relay keeps no state for it until it
//!   proves it receives at that address (a spoofed source never does).
//! - Each source IP address may hold at most `max_pending_per_source` pending and
//!   `max_connections_per_source` joined connections. Over the pending bound the Initial is
//!   ignored (the client retries it later); over the joined bound the join is refused
//!   (`RelayFull`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::registry::lock;

/// Pending connections beyond which unvalidated sources get a Retry.
pub(crate) const RETRY_ABOVE: usize = 16;

/// The budgets, shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub(crate) struct Admission {
    pending: Arc<Semaphore>,
    max_pending: usize,
    joined: Arc<Semaphore>,
    sources: Mutex<HashMap<IpAddr, PerSource>>,
    pending_per_source: u32,
    joined_per_source: u32,
}

#[derive(Debug, Default)]
struct PerSource {
    pending: u32,
    joined: u32,
}

/// What to do with a new QUIC `Incoming`.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Serve it, holding this pending slot.
    Accept(Pending),
    /// Ask the source to prove its address first (QUIC Retry).
    Retry,
    /// Drop its Initial without an answer (that source has enough handshakes in flight).
    Ignore,
    /// Refuse it (the pending budget is spent).
    Refuse,
}

impl Admission {
    pub(crate) fn new(
        max_pending: u32,
        max_connections: u32,
        pending_per_source: u32,
        joined_per_source: u32,
    ) -> Arc<Self> {
        Arc::new(Self {
            pending: Arc::new(Semaphore::new(max_pending as usize)),
            max_pending: max_pending as usize,
            joined: Arc::new(Semaphore::new(max_connections as usize)),
            sources: Mutex::new(HashMap::new()),
            pending_per_source,
            joined_per_source,
        })
    }

    /// Connections that have not joined yet.
    pub(crate) fn pending(&self) -> usize {
        self.max_pending - self.pending.available_permits()
    }

    /// Decides about a new connection from `ip`; `validated`: its address is proven (it came
    /// back with a Retry token).
    pub(crate) fn incoming(self: &Arc<Self>, ip: IpAddr, validated: bool) -> Decision {
        if !validated && self.pending() >= RETRY_ABOVE {
            return Decision::Retry;
        }
        let mut sources = lock(&self.sources);
        let source = sources.entry(ip).or_default();
        if source.pending >= self.pending_per_source {
            return Decision::Ignore;
        }
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            if source.pending == 0 && source.joined == 0 {
                sources.remove(&ip);
            }
            return Decision::Refuse;
        };
        source.pending += 1;
        Decision::Accept(Pending {
            admission: self.clone(),
            ip,
            _permit: permit,
        })
    }

    fn release(&self, ip: IpAddr, pending: u32, joined: u32) {
        let mut sources = lock(&self.sources);
        if let Some(s) = sources.get_mut(&ip) {
            s.pending = s.pending.saturating_sub(pending);
            s.joined = s.joined.saturating_sub(joined);
            if s.pending == 0 && s.joined == 0 {
                sources.remove(&ip);
            }
        }
    }
}

/// A pending slot: held from the first packet until the connection joins or goes.
#[derive(Debug)]
pub(crate) struct Pending {
    admission: Arc<Admission>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    /// Trades the pending slot for a joined one; `Err` with the reason when the relay, or
    /// this source, has as many connections as it may.
    pub(crate) fn join(self) -> Result<Joined, &'static str> {
        let a = &self.admission;
        let permit = a
            .joined
            .clone()
            .try_acquire_owned()
            .map_err(|_| "the relay is full")?;
        {
            let mut sources = lock(&a.sources);
            let source = sources.entry(self.ip).or_default();
            if source.joined >= a.joined_per_source {
                return Err("too many connections from this address");
            }
            source.joined += 1;
        }
        Ok(Joined {
            admission: a.clone(),
            ip: self.ip,
            _permit: permit,
        })
        // `self` drops here: the pending slot is free again.
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.admission.release(self.ip, 1, 0);
    }
}

/// A joined slot: held until the connection ends.
#[derive(Debug)]
pub(crate) struct Joined {
    admission: Arc<Admission>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.admission.release(self.ip, 0, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn pending_is_bounded_per_source_and_overall_and_retry_protects_it() {
        let a = Admission::new(20, 100, 2, 3);
        let mut held = Vec::new();
        // Two per source, then that source is ignored.
        for _ in 0..2 {
            match a.incoming(ip(1), false) {
                Decision::Accept(p) => held.push(p),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(a.incoming(ip(1), true), Decision::Ignore));
        // Many sources: past RETRY_ABOVE the unvalidated ones get a Retry, validated ones
        // still a slot, until the budget is spent.
        for i in 2..=(RETRY_ABOVE as u8 - 1) {
            match a.incoming(ip(i), false) {
                Decision::Accept(p) => held.push(p),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(a.pending(), RETRY_ABOVE);
        assert!(matches!(a.incoming(ip(200), false), Decision::Retry));
        for i in 0..4 {
            match a.incoming(ip(100 + i), true) {
                Decision::Accept(p) => held.push(p),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(a.incoming(ip(199), true), Decision::Refuse));
        // Joining frees the pending slot.
        let joined = held.pop().unwrap().join().unwrap();
        assert_eq!(a.pending(), 19);
        drop(held);
        assert_eq!(a.pending(), 0);
        drop(joined);
        assert!(
            lock(&a.sources).is_empty(),
            "nothing is kept for sources that left"
        );
    }

    #[test]
    fn joined_connections_are_bounded_per_source() {
        let a = Admission::new(10, 100, 10, 2);
        let join = || match a.incoming(ip(7), true) {
            Decision::Accept(p) => p.join(),
            other => panic!("{other:?}"),
        };
        let one = join().unwrap();
        let _two = join().unwrap();
        assert_eq!(
            join().unwrap_err(),
            "too many connections from this address"
        );
        drop(one);
        assert!(join().is_ok());
        let full = Admission::new(10, 1, 10, 10);
        let _only = match full.incoming(ip(1), true) {
            Decision::Accept(p) => p.join().unwrap(),
            other => panic!("{other:?}"),
        };
        match full.incoming(ip(2), true) {
            Decision::Accept(p) => assert_eq!(p.join().unwrap_err(), "the relay is full"),
            other => panic!("{other:?}"),
        }
    }
}
