//! A route's queue: the frames one sender's task hands to one route's task. A member's
//! control frames wait in one too.
//!
//! A bounded single-producer, single-consumer queue built for how routes use it. The sender
//! adds one item at a time (one uncontended lock and a `VecDeque` push) — a frame, or a
//! chunk's whole run of broadcasts as one shared item, which counts as its frames towards the
//! bound ([`Weighted`]); the route takes *everything* queued
//! under one lock, when what it took before is used up, so its side costs one lock per batch
//! of writes rather than one synchronisation per frame. The route is woken only when the
//! queue turns non-empty. (A tokio `mpsc` channel did a semaphore permit, a slot in its block
//! list and a waker check per frame on both sides: about a tenth of the relay's time on a
//! 10→10 broadcast of small signals.)
//!
//! The route's task waits in an [`AtomicWaker`]: it registers, then looks, so a frame queued
//! after the look wakes it, and going to sleep costs the look's lock and two atomic
//! exchanges. (A `Notify` took its own lock to register and another to drop the wait: on
//! targeted rows, where a route takes one frame per wake-up, that was a lock per frame
//! more.)
//!
//! The bound counts what waits in the queue and what the route took but has not handed on
//! yet, as a channel's capacity would; frames leave it as the route takes them one by one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::registry::lock;

/// How much of a queue's bound an item takes: 1 unless it stands for several.
pub(crate) trait Weighted {
    fn weight(&self) -> usize {
        1
    }
}

impl Weighted for bytes::Bytes {}

/// Why an item was not queued; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The route closed the queue, or is gone.
    Closed(T),
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Items the route took out of `state` and has not yet handed on (written only by the
    /// route; the sender reads it for the bound).
    taken: AtomicUsize,
    /// Wakes the route when the queue turns non-empty, or the sender goes.
    ready: AtomicWaker,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// The weight of `items`.
    weight: usize,
    /// The route takes no more.
    closed: bool,
    /// The sender is gone: nothing more comes.
    sender_gone: bool,
}

/// Room for items a queue keeps while idle.
const KEEP: usize = 16;

/// A queue of at most `capacity` items (at least 1).
pub(crate) fn queue<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            weight: 0,
            closed: false,
            sender_gone: false,
        }),
        taken: AtomicUsize::new(0),
        ready: AtomicWaker::new(),
        capacity: capacity.max(1),
    });
    (
        Sender(shared.clone()),
        Receiver {
            shared,
            local: VecDeque::new(),
        },
    )
}

/// The sender's end; dropping it tells the route that nothing more comes.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("queue::Sender")
            .field("capacity", &self.0.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("queue::Receiver")
            .field("local", &self.local.len())
            .finish_non_exhaustive()
    }
}

impl<T: Weighted> Sender<T> {
    /// Queues `item` unless the queue is full (has less room than its weight) or closed.
    /// Never waits.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = lock(&self.0.state);
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        let weight = item.weight();
        if state.weight + self.0.taken.load(Ordering::Relaxed) + weight > self.0.capacity {
            return Err(TrySendError::Full(item));
        }
        state.weight += weight;
        state.items.push_back(item);
        let first = state.items.len() == 1;
        drop(state);
        if first {
            self.0.ready.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        lock(&self.0.state).sender_gone = true;
        self.0.ready.wake();
    }
}

/// The route's end. Dropping it closes the queue (what is still in it is dropped).
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// What it took out of the shared queue at its last refill.
    local: VecDeque<T>,
}

impl<T: Weighted> Receiver<T> {
    /// The next item, waiting for one; `None` once the queue is closed or the sender is gone
    /// and nothing is left. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Receiver::recv`] as a poll: registers `cx` to be woken when an item comes.
    pub(crate) fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<T>> {
        if self.local.is_empty() {
            // Registered before the look: an item queued after it wakes this task.
            self.shared.ready.register(cx.waker());
            if !self.refill() {
                return Poll::Ready(None);
            }
        }
        match self.local.pop_front() {
            Some(item) => {
                self.hand_on(item.weight());
                Poll::Ready(Some(item))
            }
            None => Poll::Pending,
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        if self.local.is_empty() {
            self.refill();
        }
        let item = self.local.pop_front()?;
        self.hand_on(item.weight());
        Some(item)
    }

    /// Refuses further items (the sender gets them back as [`TrySendError::Closed`]); what
    /// is queued can still be taken.
    pub(crate) fn close(&mut self) {
        lock(&self.shared.state).closed = true;
    }

    /// An item of `weight` leaves the bound. Only the route writes `taken`: a plain load
    /// and store.
    fn hand_on(&mut self, weight: usize) {
        let taken = self.shared.taken.load(Ordering::Relaxed);
        self.shared.taken.store(taken - weight, Ordering::Relaxed);
    }

    /// Takes everything queued (when `local` is used up); false when nothing more can come.
    /// Finding nothing, it is going idle: a queue that grew for a burst gives that room back
    /// rather than keep it for its life (an idle member's control queue after a join storm's
    /// news, say).
    fn refill(&mut self) -> bool {
        debug_assert!(self.local.is_empty());
        let mut state = lock(&self.shared.state);
        std::mem::swap(&mut state.items, &mut self.local);
        self.shared
            .taken
            .store(std::mem::take(&mut state.weight), Ordering::Relaxed);
        if self.local.is_empty() {
            if self.local.capacity() > KEEP {
                self.local = VecDeque::new();
            }
            if state.items.capacity() > KEEP {
                state.items = VecDeque::new();
            }
        }
        !self.local.is_empty() || !(state.closed || state.sender_gone)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weighted for u8 {}
    impl Weighted for u32 {}
    impl Weighted for i32 {}

    #[tokio::test]
    async fn items_come_in_order_within_the_bound_until_the_sender_goes() {
        let (tx, mut rx) = queue(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.recv().await, Some(0));
        // One taken: room for one more, not two.
        tx.try_send(3).unwrap();
        assert_eq!(tx.try_send(4), Err(TrySendError::Full(4)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        tx.try_send(4).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None);
    }

    /// Stands for `.0` items.
    #[derive(Debug, PartialEq, Eq)]
    struct Run(usize);

    impl Weighted for Run {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[tokio::test]
    async fn an_item_takes_its_weight_of_the_bound_until_it_is_taken() {
        let (tx, mut rx) = queue(4);
        tx.try_send(Run(1)).unwrap();
        tx.try_send(Run(3)).unwrap();
        // Full: even the lightest item does not fit, and one heavier than the bound never does.
        assert_eq!(tx.try_send(Run(1)), Err(TrySendError::Full(Run(1))));
        let (big, _waiting) = queue(4);
        assert_eq!(big.try_send(Run(5)), Err(TrySendError::Full(Run(5))));
        assert_eq!(rx.recv().await, Some(Run(1)));
        // The run is taken out of the queue but not handed on: it still counts.
        tx.try_send(Run(1)).unwrap();
        assert_eq!(tx.try_send(Run(1)), Err(TrySendError::Full(Run(1))));
        assert_eq!(rx.recv().await, Some(Run(3)));
        tx.try_send(Run(3)).unwrap();
        assert_eq!(rx.recv().await, Some(Run(1)));
        assert_eq!(rx.recv().await, Some(Run(3)));
        tx.try_send(Run(4)).unwrap();
        rx.close();
        assert_eq!(tx.try_send(Run(1)), Err(TrySendError::Closed(Run(1))));
        assert_eq!(rx.recv().await, Some(Run(4)));
    }

    #[tokio::test]
    async fn a_closed_queue_gives_items_back_but_keeps_what_it_holds() {
        let (tx, mut rx) = queue(8);
        tx.try_send(1).unwrap();
        rx.close();
        assert_eq!(tx.try_send(2), Err(TrySendError::Closed(2)));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
        let (tx, rx) = queue::<u8>(8);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[tokio::test]
    async fn a_queue_that_goes_idle_gives_back_a_bursts_room() {
        let (tx, mut rx) = queue(1000);
        for i in 0..500u32 {
            tx.try_send(i).unwrap();
        }
        for i in 0..500u32 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert!(
            rx.local.capacity() >= 500,
            "the burst was taken in one refill"
        );
        // Nothing queued: the receiver waits, and gives the room back first.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv());
        assert!(waiting.await.is_err());
        assert!(rx.local.capacity() <= KEEP);
        assert!(lock(&rx.shared.state).items.capacity() <= KEEP);
        // And it still works.
        tx.try_send(7).unwrap();
        assert_eq!(rx.recv().await, Some(7));
    }

    #[tokio::test]
    async fn a_waiting_route_wakes_for_each_new_item_and_for_the_end() {
        let (tx, mut rx) = queue(4);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            got
        });
        for i in 0..1000u32 {
            loop {
                match tx.try_send(i) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => tokio::task::yield_now().await,
                    Err(TrySendError::Closed(_)) => panic!("closed"),
                }
            }
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the route saw the end")
            .unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
