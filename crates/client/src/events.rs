//! What the client tells its user: signals, presence, rejections, and the connection's end.

use bytestring::ByteString;
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, SignalError, Target};
use std::collections::VecDeque;

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A signal to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// Who it is for.
    pub to: Target,
    /// The type (may be empty).
    pub r#type: String,
    /// The data (may be empty).
    pub data: String,
}

impl Signal {
    /// A signal to everyone in the session (the sender included).
    pub fn to_all(ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::All,
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A signal to one connection.
    pub fn to_one(id: ConnectionId, ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::One(id),
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A signal to several connections.
    pub fn to_list(ids: Vec<ConnectionId>, ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::List(ids),
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A ping: no type, no data, to everyone; it identifies only the sender.
    pub fn ping() -> Self {
        Self::to_all("", "")
    }
}

/// A signal as received.
///
/// Its type and data hold nothing else alive: each is copied into a buffer of its exact size
/// out of what the client received (which is then free to go) or, for a signal that arrived
/// in pieces and was gathered into a buffer of its own, is a slice of that buffer, which
/// holds this signal alone. Cheap to clone (a reference count) and fine to keep for long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSignal {
    /// The sender, stamped by the relay; `None` when the relay itself sent it (REST).
    pub from: Option<ConnectionId>,
    /// The sender's sequence number.
    pub seq: u64,
    /// Whether it went to everyone.
    pub to_all: bool,
    /// The type.
    pub r#type: ByteString,
    /// The data.
    pub data: ByteString,
}

impl ReceivedSignal {
    /// Whether it is a ping (no type, no data).
    pub fn is_ping(&self) -> bool {
        self.r#type.is_empty() && self.data.is_empty()
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived.
    Signal(ReceivedSignal),
    /// Someone joined the session.
    Joined(ConnectionInfo),
    /// Someone left the session.
    Left {
        /// Who (as they were known).
        peer: ConnectionInfo,
        /// Why.
        reason: LeftReason,
    },
    /// A signal sent without awaiting its receipt was rejected by the relay.
    Rejected {
        /// Its `seq`.
        seq: u64,
        /// Why.
        error: SignalError,
    },
    /// A control request was refused (e.g. a kick by a non-moderator).
    Denied {
        /// The relay's explanation.
        message: String,
    },
    /// Signals of one sender addressed to us were lost while we were away (the relay could
    /// not keep them all): "12 signals from alice were lost".
    Missed {
        /// Whose: a connection, or `None` for the relay's own signals.
        from: Option<ConnectionId>,
        /// The lowest lost `seq`.
        first: u64,
        /// The highest lost `seq`.
        last: u64,
        /// How many.
        count: u64,
    },
    /// The connection to the relay was lost; the client is reconnecting (Vonage's
    /// `sessionReconnecting`). Sent signals wait, unless `retry_after_reconnect` is off.
    Reconnecting {
        /// Why the connection was lost.
        reason: LeftReason,
        /// The explanation.
        message: String,
    },
    /// Back (Vonage's `sessionReconnected`). `resumed`: the same connection — nothing was
    /// missed and peers saw no change. Otherwise the relay no longer held it (it restarted,
    /// or the grace period passed) and this is a new connection, `me`, in the same session;
    /// presence events before this one bring the participant list up to date.
    Reconnected {
        /// Whether this is the same connection as before.
        resumed: bool,
        /// This connection now.
        me: ConnectionInfo,
    },
    /// The connection ended; no more events follow.
    Disconnected {
        /// Why.
        reason: LeftReason,
        /// The relay's or the network's explanation.
        message: String,
    },
}

/// The client's tasks put events here for its [`Events`]: one queue, bounded, that each
/// delivery stream's reader fills under one lock per batch and the application empties under
/// one lock per batch. The application's task is woken only when the queue goes from empty to
/// not empty, which matters at hundreds of thousands of signals a second.
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    /// The application waits here for events.
    readable: Notify,
    /// Readers wait here for room.
    room: Notify,
    /// Events that may wait in the queue before the readers stop reading (a batch may go
    /// past it; the application's [`Events`] hold at most one queue's worth besides).
    capacity: Capacity,
}

/// How many events may wait in a client's queue: room for each live sender (the delivery
/// readers, one per peer sending to this client, and the supervisor), between a floor and a
/// ceiling. A small queue keeps what waits in it warm in the cache; but each sender hands
/// over a batch at a time, and many senders with room for a few batches wait on each other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capacity {
    /// Events per live sender.
    pub(crate) per_sender: usize,
    /// The least, whatever the number of senders.
    pub(crate) min: usize,
    /// The most, whatever the number of senders.
    pub(crate) max: usize,
}

impl Capacity {
    /// Always `n` events.
    #[cfg(test)]
    pub(crate) const fn fixed(n: usize) -> Self {
        Self {
            per_sender: 0,
            min: n,
            max: n,
        }
    }

    /// The room for `senders` live senders.
    fn of(&self, senders: usize) -> usize {
        senders
            .saturating_mul(self.per_sender)
            .clamp(self.min, self.max)
    }
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<Event>,
    /// Live [`EventTx`] handles: none left means no more events.
    senders: usize,
    /// The [`Events`] were dropped: what comes is discarded.
    unread: bool,
    /// Senders waiting for room, by ticket, oldest first: room goes to them in that order,
    /// and a sender that comes later waits behind them even when there is room, so what the
    /// client's tasks hand over keeps the order in which they started waiting.
    waiters: VecDeque<u64>,
    /// The next ticket to hand out.
    next_ticket: u64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        crate::client::lock(&self.state)
    }
}

/// The queue of events of one client and its reading end, which keeps `owner` (the client's
/// handle; `None` in tests).
pub(crate) fn channel(
    capacity: Capacity,
    owner: Option<Arc<crate::client::Owner>>,
) -> (EventTx, Events) {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            senders: 1,
            ..QueueState::default()
        }),
        readable: Notify::new(),
        room: Notify::new(),
        capacity,
    });
    let events = Events {
        queue: queue.clone(),
        ready: VecDeque::new(),
        _owner: owner,
    };
    (EventTx { queue }, events)
}

/// Where the client's tasks hand events to the application.
#[derive(Debug)]
pub(crate) struct EventTx {
    queue: Arc<Queue>,
}

impl EventTx {
    /// Hands `events` over, in order, after waiting while the queue is full (or while senders
    /// that came earlier still wait). Without a listener (the [`Events`] were dropped) they are
    /// discarded at once.
    pub(crate) async fn send(&self, events: impl IntoIterator<Item = Event>) {
        let queue = &*self.queue;
        // Dropped with its ticket still held (the send was cancelled), it leaves the line.
        let mut ticket = Ticket {
            queue,
            number: None,
        };
        loop {
            // Made here, registered only if this sender must wait (`Notified` costs nothing
            // until then).
            let room = queue.room.notified();
            tokio::pin!(room);
            {
                let mut state = queue.lock();
                if state.unread {
                    ticket.leave(&mut state);
                    return;
                }
                let turn = match ticket.number {
                    None => state.waiters.is_empty(),
                    Some(number) => state.waiters.front() == Some(&number),
                };
                let capacity = queue.capacity.of(state.senders);
                if turn && state.events.len() < capacity {
                    if ticket.number.take().is_some() {
                        state.waiters.pop_front();
                    }
                    let was_empty = state.events.is_empty();
                    state.events.extend(events);
                    let woken = was_empty && !state.events.is_empty();
                    // The next in line may fit too.
                    let next = !state.waiters.is_empty() && state.events.len() < capacity;
                    drop(state);
                    if woken {
                        queue.readable.notify_one();
                    }
                    if next {
                        queue.room.notify_waiters();
                    }
                    return;
                }
                if ticket.number.is_none() {
                    let number = state.next_ticket;
                    state.next_ticket += 1;
                    state.waiters.push_back(number);
                    ticket.number = Some(number);
                }
                // Registered under the lock, before the application's next take can wake every
                // wait registered so far.
                room.as_mut().enable();
            }
            room.await;
        }
    }
}

/// A sender's place in the line for room.
struct Ticket<'a> {
    queue: &'a Queue,
    number: Option<u64>,
}

impl Ticket<'_> {
    /// Leaves the line, letting the next in line try if this one was first.
    fn leave(&mut self, state: &mut QueueState) -> bool {
        let Some(number) = self.number.take() else {
            return false;
        };
        let first = state.waiters.front() == Some(&number);
        state.waiters.retain(|&n| n != number);
        first
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.number.is_none() {
            return;
        }
        let first = {
            let mut state = self.queue.lock();
            self.leave(&mut state)
        };
        if first {
            self.queue.room.notify_waiters();
        }
    }
}

impl Clone for EventTx {
    fn clone(&self) -> Self {
        self.queue.lock().senders += 1;
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for EventTx {
    fn drop(&mut self) {
        let last = {
            let mut state = self.queue.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.queue.readable.notify_one();
        }
    }
}

/// The stream of events of one client. When it is not read, the relay eventually drops the
/// client as a slow consumer: read it.
#[derive(Debug)]
pub struct Events {
    queue: Arc<Queue>,
    /// Taken from the queue, not yet returned.
    ready: VecDeque<Event>,
    /// Keeps the client in its session while the events are read (see [`crate::Client`]).
    _owner: Option<Arc<crate::client::Owner>>,
}

impl Events {
    /// The next event; `None` after `Disconnected`.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.take() {
                Taken::Event(e) => return Some(e),
                Taken::Ended => return None,
                // An event queued after `take` looked leaves a permit: this returns at once.
                Taken::Nothing => self.queue.readable.notified().await,
            }
        }
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<Event> {
        match self.take() {
            Taken::Event(e) => Some(e),
            Taken::Ended | Taken::Nothing => None,
        }
    }

    /// The next event: from those already taken, else everything queued, taken at once.
    fn take(&mut self) -> Taken {
        if let Some(e) = self.ready.pop_front() {
            return Taken::Event(e);
        }
        let waiting = {
            let mut state = self.queue.lock();
            if state.events.is_empty() {
                return if state.senders == 0 {
                    Taken::Ended
                } else {
                    Taken::Nothing
                };
            }
            // The emptied buffer goes back to the queue, so neither side allocates anew.
            std::mem::swap(&mut state.events, &mut self.ready);
            !state.waiters.is_empty()
        };
        if waiting {
            self.queue.room.notify_waiters();
        }
        self.ready.pop_front().map_or(Taken::Nothing, Taken::Event)
    }
}

/// What [`Events::take`] found.
enum Taken {
    Event(Event),
    Nothing,
    Ended,
}

impl Drop for Events {
    fn drop(&mut self) {
        let dropped = {
            let mut state = self.queue.lock();
            state.unread = true;
            std::mem::take(&mut state.events)
        };
        drop(dropped);
        self.queue.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::time::Duration;

    fn missed(n: u64) -> Event {
        Event::Missed {
            from: None,
            first: n,
            last: n,
            count: 1,
        }
    }

    fn number(e: Event) -> u64 {
        match e {
            Event::Missed { first, .. } => first,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_come_in_order_and_end_when_every_sender_is_gone() {
        let (tx, mut events) = channel(Capacity::fixed(8), None);
        let tx2 = tx.clone();
        tx.send([missed(1), missed(2)]).await;
        assert_eq!(events.try_next().map(number), Some(1));
        tx2.send([missed(3)]).await;
        drop(tx);
        assert_eq!(events.next().await.map(number), Some(2));
        assert_eq!(events.next().await.map(number), Some(3));
        assert!(events.try_next().is_none());
        let end = tokio::spawn(async move { events.next().await.is_none() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!end.is_finished(), "a sender is still there");
        drop(tx2);
        assert!(end.await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_holds_the_sender_until_the_application_takes() {
        let (tx, mut events) = channel(Capacity::fixed(4), None);
        tx.send((0..4).map(missed)).await;
        let sent = tokio::spawn(async move {
            tx.send([missed(4)]).await;
            tx
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sent.is_finished(), "the queue is full");
        assert_eq!(events.next().await.map(number), Some(0));
        let tx = tokio::time::timeout(Duration::from_secs(5), sent)
            .await
            .expect("the sender is released")
            .unwrap();
        for n in 1..5 {
            assert_eq!(events.next().await.map(number), Some(n));
        }
        drop(tx);
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn the_queue_has_room_for_each_sender_between_its_floor_and_ceiling() {
        let capacity = Capacity {
            per_sender: 4,
            min: 4,
            max: 12,
        };
        assert_eq!(
            [1, 2, 3, 10].map(|n| capacity.of(n)),
            [4, 8, 12, 12],
            "one sender gets the floor, many the ceiling"
        );
        let (tx, mut events) = channel(capacity, None);
        tx.send((0..4).map(missed)).await;
        assert!(
            tx.send([missed(4)]).now_or_never().is_none(),
            "one sender: full at 4"
        );
        let second = tx.clone();
        tx.send([missed(4)]).await;
        second.send((5..8).map(missed)).await;
        assert!(
            second.send([missed(8)]).now_or_never().is_none(),
            "two senders: full at 8"
        );
        drop(second);
        for n in 0..8 {
            assert_eq!(events.next().await.map(number), Some(n));
        }
    }

    #[tokio::test]
    async fn room_goes_to_waiting_senders_in_the_order_they_came() {
        let (tx, mut events) = channel(Capacity::fixed(4), None);
        tx.send((0..4).map(missed)).await;
        let mut blocked = Vec::new();
        for n in [10, 11] {
            let tx = tx.clone();
            blocked.push(tokio::spawn(async move { tx.send([missed(n)]).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A cancelled wait leaves the line without holding up the others.
        let cancelled = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send([missed(99)]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancelled.abort();
        assert!(
            blocked.iter().all(|b| !b.is_finished()),
            "the queue is full"
        );
        // The application takes everything; a sender that comes now, with room free, still
        // goes after the two that waited.
        assert_eq!(events.next().await.map(number), Some(0));
        tokio::time::timeout(Duration::from_secs(5), tx.send([missed(12)]))
            .await
            .expect("room for all three");
        for b in blocked {
            b.await.unwrap();
        }
        let mut order = Vec::new();
        while let Some(e) = events.try_next() {
            order.push(number(e));
        }
        assert_eq!(order, [1, 2, 3, 10, 11, 12]);
    }

    #[tokio::test]
    async fn without_a_listener_events_are_discarded_and_nothing_waits() {
        let (tx, events) = channel(Capacity::fixed(2), None);
        tx.send((0..2).map(missed)).await;
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send([missed(2)]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(events);
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("the waiting sender is released")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), tx.send((0..100).map(missed)))
            .await
            .expect("nothing waits for a listener that is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_on_other_threads_wake_the_application() {
        let (tx, mut events) = channel(Capacity::fixed(16), None);
        let mut senders = Vec::new();
        for s in 0..4u64 {
            let tx = tx.clone();
            senders.push(tokio::spawn(async move {
                for n in 0..1000 {
                    tx.send([missed(s * 1000 + n)]).await;
                    if n % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        drop(tx);
        let mut last = [None::<u64>; 4];
        let mut got = 0;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("woken")
        {
            let n = number(e);
            let s = (n / 1000) as usize;
            assert!(last[s].is_none_or(|l| l < n), "each sender's order holds");
            last[s] = Some(n);
            got += 1;
        }
        assert_eq!(got, 4000);
        for s in senders {
            s.await.unwrap();
        }
    }
}
