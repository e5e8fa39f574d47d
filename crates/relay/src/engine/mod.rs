//! The relay's rules, without I/O.
//!
//! Everything here is plain state and decisions: no tasks, sockets, locks or clocks. Time is
//! passed in as an `Instant`, and what a rule decides comes back as a value (take this
//! signal or drop it as a resend, close these receivers, send this presence batch now or at
//! that instant). The drivers around it — the QUIC and WebSocket connection tasks, the
//! delivery routes, the REST handlers, the cluster's NATS tasks — move bytes and timers and
//! call in here for every choice that matters, so each rule can be tested on its own, with
//! unit tests and property tests over random interleavings.
//!
//! - [`admit`]: whether a signal may go (role, rate buckets, rules, targets).
//! - [`sequence`]: a sender's signal numbers across reconnects (each seq taken once; a
//!   rejection told again when resent).
//! - [`ratelimit`]: the token buckets a sender spends, signals and bytes × receivers.
//! - [`replay`]: what a route keeps for a resume, within its bound and the replay budgets, and
//!   what a resuming client gets or is told it lost.
//! - [`resume`]: what a receiver's client has and what it missed while away.
//! - [`stalls`]: while a session's queue budget is spent, which receivers hold it and are
//!   closed.
//! - [`presence`]: presence news, numbered and paced into shared batches.
//! - [`roster`]: who is on which other node of a cluster, folded from versioned changes,
//!   deltas and snapshots, each checked and bounded like a client's input.
//!
//! The budgets' counters themselves (`crate::budget`) are shared by every task of a session
//! and stay lock-free atomics beside the engine.

pub(crate) mod admit;
pub(crate) mod presence;
pub(crate) mod ratelimit;
pub(crate) mod replay;
pub(crate) mod resume;
pub(crate) mod roster;
pub(crate) mod sequence;
pub(crate) mod stalls;

/// What one queued or kept frame costs the budgets beyond its bytes.
pub(crate) const ENTRY_OVERHEAD: usize = 64;
