//! The WebSocket link (`GET /v1/ws` on the HTTP listener): `signalbox/1` for browsers and
//! networks without WebTransport.
//!
//! A WebSocket is one ordered byte channel, so the protocol's streams travel inside it as
//! binary messages: each message is a stream id (an unsigned LEB128 varint) followed by bytes
//! of that stream — the same length-prefixed frames as on QUIC. A message with the id alone
//! ends its stream (QUIC's FIN).
//!
//! | id | direction | stream |
//! |---|---|---|
//! | 0 | both | the control stream (`Hello`, `Welcome`, presence, acceptance, `Kick`, `Leave`) |
//! | 1 | client → relay | the client's send stream (`Outgoing`) |
//! | 1, 2, 3, … | relay → client | delivery streams, one per active sender, ids rising |
//!
//! Everything else is the protocol as on QUIC: one delivery stream per sender starting with
//! its `DeliveryHeader`, a client reads an older stream of a sender to its end before a newer
//! one. What WebSocket cannot give is independence: one slow message delays the ones behind
//! it, whoever sent them. A client closes with code 1000 (or 4000, Signalbox's close code 0 +
//! 4000) to leave; the relay closes with 4000 + its close code and the reason.
//!
//! Bounds: messages of at most [`MAX_MESSAGE`] bytes from the client, [`OUT_QUEUE`] messages
//! waiting for the socket; a client that reads nothing is closed as a slow consumer like any
//! other (the delivery routes watch [`WsLink::written`]).
//!
//! Liveness, as QUIC's: the relay pings every `keep_alive` (browsers answer by themselves),
//! and a socket that brings nothing for `idle_timeout` — a phone that left the Wi-Fi without
//! a word, whose TCP would otherwise look open for many minutes — is ended as a network
//! failure: the member is away, and may resume.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use signalbox_proto::CloseCode;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::registry::lock;

/// The largest message a client may send: a `Hello` or an `Outgoing` frame of the largest
/// size, with its prefixes, and room to spare.
pub(crate) const MAX_MESSAGE: usize = 128 * 1024;
/// Messages waiting for the socket, at most (each at most a delivery batch, 64 KiB).
const OUT_QUEUE: usize = 16;
/// Messages from one client stream waiting for the relay to read them.
const IN_QUEUE: usize = 16;
/// How long the relay tries to send its close frame to a client that does not read.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The WebSocket close code of Signalbox close code 0; code `n` is `CLOSE_BASE + n`.
pub(crate) const CLOSE_BASE: u16 = 4000;

/// One browser's WebSocket, as the connection task and the delivery routes use it.
#[derive(Debug, Clone)]
pub(crate) struct WsLink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    remote: IpAddr,
    out: mpsc::Sender<Out>,
    /// The next id for a relay-opened stream.
    next_stream: AtomicU32,
    /// Messages the socket took (the client's progress).
    written: AtomicU64,
    /// Cancelled when the socket has ended (either side).
    ended: CancellationToken,
    /// Cancelled when the relay closes the link; the writer then sends `close_frame`.
    closing: CancellationToken,
    close_frame: Mutex<Option<(u16, String)>>,
    /// The client closed with 1000 or 4000: it left.
    normal: AtomicBool,
    /// When the socket last brought anything (a message, a pong).
    heard: Mutex<tokio::time::Instant>,
    /// The client's control stream and send stream, once it opened them.
    bi: tokio::sync::Mutex<mpsc::Receiver<mpsc::Receiver<Bytes>>>,
    uni: tokio::sync::Mutex<mpsc::Receiver<mpsc::Receiver<Bytes>>>,
}

/// What the writer sends.
#[derive(Debug)]
enum Out {
    Data(u32, Bytes),
    Fin(u32, oneshot::Sender<()>),
}

/// How often the relay pings, and how long a silent socket lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    pub(crate) keep_alive: std::time::Duration,
    pub(crate) idle_timeout: std::time::Duration,
}

/// Starts serving `socket`: a reader and a writer task, ending with the socket.
pub(crate) fn start(
    socket: WebSocket,
    remote: IpAddr,
    liveness: Liveness,
    tracker: &tokio_util::task::TaskTracker,
) -> WsLink {
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let (bi_tx, bi_rx) = mpsc::channel(1);
    let (uni_tx, uni_rx) = mpsc::channel(1);
    let inner = Arc::new(Inner {
        remote,
        out: out_tx,
        next_stream: AtomicU32::new(1),
        written: AtomicU64::new(0),
        ended: CancellationToken::new(),
        closing: CancellationToken::new(),
        close_frame: Mutex::new(None),
        normal: AtomicBool::new(false),
        heard: Mutex::new(tokio::time::Instant::now()),
        bi: tokio::sync::Mutex::new(bi_rx),
        uni: tokio::sync::Mutex::new(uni_rx),
    });
    let (sink, stream) = socket.split();
    let link = WsLink { inner };
    tracker.spawn(write(sink, out_rx, liveness, link.clone()));
    tracker.spawn(read(stream, bi_tx, uni_tx, link.clone()));
    link
}

/// Reads the client's messages into its two streams.
async fn read(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    bi: mpsc::Sender<mpsc::Receiver<Bytes>>,
    uni: mpsc::Sender<mpsc::Receiver<Bytes>>,
    link: WsLink,
) {
    // Per client stream: not opened, open (its sender), or ended.
    let mut streams: [Option<Option<mpsc::Sender<Bytes>>>; 2] = [None, None];
    let inner = &link.inner;
    loop {
        let message = tokio::select! {
            biased;
            _ = inner.ended.cancelled() => return,
            m = stream.next() => m,
        };
        *lock(&inner.heard) = tokio::time::Instant::now();
        let mut data = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| f.code);
                if matches!(code, Some(1000) | Some(CLOSE_BASE)) {
                    inner.normal.store(true, Ordering::Release);
                }
                break;
            }
            Some(Ok(Message::Text(_))) => {
                link.close(
                    CloseCode::ProtocolError,
                    "text messages are not part of signalbox/1",
                );
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "WebSocket read failed");
                break;
            }
            None => break,
        };
        let Some(id) = varint(&mut data).filter(|&id| id < 2) else {
            link.close(
                CloseCode::ProtocolError,
                "a client opens only stream 0 (control) and stream 1 (signals)",
            );
            break;
        };
        let slot = &mut streams[id as usize];
        if slot.is_none() {
            let (tx, rx) = mpsc::channel(IN_QUEUE);
            let accept = if id == 0 { &bi } else { &uni };
            if accept.try_send(rx).is_err() {
                break;
            }
            *slot = Some(Some(tx));
        }
        let Some(Some(tx)) = slot else {
            link.close(
                CloseCode::ProtocolError,
                "data on a stream the client ended",
            );
            break;
        };
        if data.is_empty() {
            // The client ended this stream.
            *slot = Some(None);
            continue;
        }
        // Waits while the relay has not read the stream's earlier messages: the client's
        // messages stay in its socket meanwhile.
        if tx.send(data).await.is_err() {
            // Nobody reads this stream any more (the connection task is gone).
            *slot = Some(None);
        }
    }
    inner.ended.cancel();
}

/// Writes what the relay sends, and a ping every `keep_alive`; ends a socket silent for
/// `idle_timeout`; sends the close frame when the relay closes the link.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<Out>,
    liveness: Liveness,
    link: WsLink,
) {
    let inner = &link.inner;
    let mut ping = tokio::time::interval(liveness.keep_alive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let next = tokio::select! {
            biased;
            _ = inner.closing.cancelled() => break,
            _ = inner.ended.cancelled() => break,
            // Before the data, so a busy socket is pinged (and checked) all the same: a
            // browser that only receives answers nothing but pings.
            _ = ping.tick() => {
                let silent = lock(&inner.heard).elapsed();
                if silent >= liveness.idle_timeout {
                    tracing::debug!(?silent, "WebSocket silent past the idle timeout");
                    // Not a close: as far as anyone can tell, the network is gone.
                    inner.ended.cancel();
                    return;
                }
                let sent = tokio::select! {
                    _ = inner.closing.cancelled() => break,
                    sent = sink.send(Message::Ping(Bytes::new())) => sent,
                };
                if sent.is_err() {
                    break;
                }
                continue;
            }
            next = out.recv() => next,
        };
        let (message, done) = match next {
            Some(Out::Data(id, bytes)) => (Message::Binary(prefixed(id, &bytes)), None),
            Some(Out::Fin(id, done)) => (Message::Binary(prefixed(id, &[])), Some(done)),
            None => break,
        };
        let sent = tokio::select! {
            _ = inner.closing.cancelled() => break,
            sent = sink.send(message) => sent,
        };
        if sent.is_err() {
            break;
        }
        inner.written.fetch_add(1, Ordering::Release);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
    let frame = lock(&inner.close_frame).take();
    if let Some((code, reason)) = frame {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close)).await;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    inner.ended.cancel();
}

/// `id` as a varint, then `bytes`.
fn prefixed(id: u32, bytes: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + bytes.len());
    let mut v = id;
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
    buf.extend_from_slice(bytes);
    buf.freeze()
}

/// Takes a varint stream id off the front of `data`.
fn varint(data: &mut Bytes) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        if !data.has_remaining() {
            return None;
        }
        let byte = data.get_u8();
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A WebSocket close frame's reason is at most 123 bytes.
fn short_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

impl WsLink {
    pub(crate) fn remote_ip(&self) -> IpAddr {
        self.inner.remote
    }

    /// Messages the socket has taken so far.
    pub(crate) fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.ended.is_cancelled() || self.inner.closing.is_cancelled()
    }

    pub(crate) fn closed_normally(&self) -> bool {
        self.inner.normal.load(Ordering::Acquire)
    }

    pub(crate) async fn closed(&self) {
        tokio::select! {
            _ = self.inner.ended.cancelled() => {}
            _ = self.inner.closing.cancelled() => {}
        }
    }

    /// Closes the socket with `4000 + code` and `reason` (the first close wins).
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        {
            let mut frame = lock(&self.inner.close_frame);
            if self.inner.closing.is_cancelled() {
                return;
            }
            *frame = Some((CLOSE_BASE + code.as_u32() as u16, short_reason(reason)));
        }
        self.inner.closing.cancel();
    }

    async fn accept(
        &self,
        streams: &tokio::sync::Mutex<mpsc::Receiver<mpsc::Receiver<Bytes>>>,
    ) -> Result<WsRecv, Closed> {
        let mut streams = streams.lock().await;
        tokio::select! {
            _ = self.closed() => Err(Closed),
            rx = streams.recv() => rx.map(|rx| WsRecv { rx, buf: Bytes::new() }).ok_or(Closed),
        }
    }

    pub(crate) async fn accept_bi(&self) -> Result<(WsSend, WsRecv), Closed> {
        let recv = self.accept(&self.inner.bi).await?;
        Ok((self.send_stream(0), recv))
    }

    pub(crate) async fn accept_uni(&self) -> Result<WsRecv, Closed> {
        self.accept(&self.inner.uni).await
    }

    pub(crate) fn open_uni(&self) -> Result<WsSend, Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        let id = self.inner.next_stream.fetch_add(1, Ordering::AcqRel);
        Ok(self.send_stream(id))
    }

    fn send_stream(&self, id: u32) -> WsSend {
        WsSend {
            link: self.clone(),
            id,
            fin: None,
        }
    }
}

/// The link has ended.
#[derive(Debug, thiserror::Error)]
#[error("the WebSocket is closed")]
pub(crate) struct Closed;

/// A stream toward the client, inside the socket.
#[derive(Debug)]
pub(crate) struct WsSend {
    link: WsLink,
    id: u32,
    /// Fires once the socket took the stream's end.
    fin: Option<oneshot::Receiver<()>>,
}

impl WsSend {
    pub(crate) async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let inner = &self.link.inner;
        tokio::select! {
            _ = self.link.closed() => Err(Closed),
            sent = inner.out.send(Out::Data(self.id, chunk)) => sent.map_err(|_| Closed),
        }
    }

    pub(crate) fn finish(&mut self) {
        if self.fin.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.fin = Some(rx);
        let out = self.link.inner.out.clone();
        let id = self.id;
        // The queue may be full: the end follows what is queued, in its own task.
        tokio::spawn(async move {
            let _ = out.send(Out::Fin(id, tx)).await;
        });
    }

    pub(crate) async fn stopped(&mut self) -> Result<(), Closed> {
        let Some(fin) = self.fin.as_mut() else {
            // Not finished: it ends with the link.
            self.link.closed().await;
            return Err(Closed);
        };
        tokio::select! {
            _ = self.link.closed() => Err(Closed),
            done = fin => done.map_err(|_| Closed),
        }
    }
}

/// A stream from the client, inside the socket.
#[derive(Debug)]
pub(crate) struct WsRecv {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl WsRecv {
    /// The next message's bytes on this stream; `None` once the client ended it or the
    /// socket is gone.
    pub(crate) async fn read_chunk(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            return Some(std::mem::take(&mut self.buf));
        }
        self.rx.recv().await
    }
}

impl AsyncRead for WsRecv {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.buf.is_empty() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => this.buf = b,
                // The client ended the stream, or the socket is gone: end of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_as_varints() {
        for id in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut m = prefixed(id, b"xy");
            assert_eq!(varint(&mut m), Some(id));
            assert_eq!(&m[..], b"xy");
        }
        assert_eq!(varint(&mut Bytes::from_static(&[0x80])), None);
        assert_eq!(varint(&mut Bytes::new()), None);
        assert_eq!(varint(&mut Bytes::from_static(&[0xff; 6])), None);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let short = short_reason(&long);
        assert!(short.len() <= 123);
        assert!(long.starts_with(&short));
    }
}
