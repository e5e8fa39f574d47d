//! A client's connection, whatever carries it.
//!
//! Native clients speak `signalbox/1` over QUIC. Browsers speak the same protocol — the
//! same streams and the same frames — over WebTransport on the same QUIC endpoint (ALPN
//! `h3`), or, where that is unavailable, over a WebSocket on the HTTP listener, where the
//! streams are carried as tagged binary messages ([`crate::transport::ws`]). The connection task and the
//! delivery routes see only a [`Link`]: open a stream toward the client, accept the client's
//! streams, tell whether the client is reading, close.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use signalbox_proto::{CloseCode, LeftReason};
use tokio::io::{AsyncRead, ReadBuf};

use crate::transport::ws;

/// A client's connection.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// A native client: `signalbox/1` over QUIC.
    Quic(quinn::Connection),
    /// A browser over WebTransport (HTTP/3 on the same QUIC endpoint).
    WebTransport(Box<web_transport_quinn::Session>),
    /// A browser over a WebSocket on the HTTP listener.
    WebSocket(ws::WsLink),
}

/// The link failed: the client's connection is going.
#[derive(Debug)]
pub(crate) struct LinkError(pub(crate) String);

impl<E: std::fmt::Display> From<E> for LinkError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

impl Link {
    /// The client's address.
    pub(crate) fn remote_ip(&self) -> IpAddr {
        match self {
            Link::Quic(c) => c.remote_address().ip(),
            Link::WebTransport(s) => s.remote_address().ip(),
            Link::WebSocket(w) => w.remote_ip(),
        }
    }

    /// Which kind of link this is, for logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Link::Quic(_) => "quic",
            Link::WebTransport(_) => "webtransport",
            Link::WebSocket(_) => "websocket",
        }
    }

    /// Accepts the client's control stream.
    pub(crate) async fn accept_bi(&self) -> Result<(LinkSend, LinkRecv), LinkError> {
        Ok(match self {
            Link::Quic(c) => {
                let (s, r) = c.accept_bi().await?;
                (LinkSend::Quic(s), LinkRecv::Quic(r))
            }
            Link::WebTransport(w) => {
                let (s, r) = Box::pin(w.accept_bi()).await?;
                (LinkSend::WebTransport(s), LinkRecv::WebTransport(r))
            }
            Link::WebSocket(w) => {
                let (s, r) = Box::pin(w.accept_bi()).await?;
                (LinkSend::WebSocket(s), LinkRecv::WebSocket(r))
            }
        })
    }

    /// Accepts the client's send stream.
    pub(crate) async fn accept_uni(&self) -> Result<LinkRecv, LinkError> {
        Ok(match self {
            Link::Quic(c) => LinkRecv::Quic(c.accept_uni().await?),
            Link::WebTransport(w) => LinkRecv::WebTransport(Box::pin(w.accept_uni()).await?),
            Link::WebSocket(w) => LinkRecv::WebSocket(Box::pin(w.accept_uni()).await?),
        })
    }

    /// Opens a delivery stream toward the client.
    pub(crate) async fn open_uni(&self) -> Result<LinkSend, LinkError> {
        Ok(match self {
            Link::Quic(c) => LinkSend::Quic(c.open_uni().await?),
            Link::WebTransport(w) => LinkSend::WebTransport(Box::pin(w.open_uni()).await?),
            Link::WebSocket(w) => LinkSend::WebSocket(w.open_uni()?),
        })
    }

    /// A number that grows whenever the client reads (on any stream): QUIC's flow-control
    /// credit it granted, or the WebSocket messages its socket took.
    pub(crate) fn read_credit(&self) -> u64 {
        let quic = |c: &quinn::Connection| {
            let rx = c.stats().frame_rx;
            rx.max_data + rx.max_stream_data + rx.max_streams_uni
        };
        match self {
            Link::Quic(c) => quic(c),
            Link::WebTransport(w) => quic(w),
            Link::WebSocket(w) => w.written(),
        }
    }

    /// Closes the connection with `code` and `reason`.
    ///
    /// A WebTransport session is closed at the QUIC level, at once, never with the session's
    /// own close (a goodbye carrying the code on the session's stream, with the connection
    /// open until the browser answers or 100 ms or more have passed):
    /// Chromium's renderer can hang for good when that goodbye arrives while the page reads a
    /// stream — a page that signalled to everyone and left hung within a few rounds, a page
    /// removed by a moderator in the first. A QUIC-level close reaches the page as
    /// "Connection lost", with no code, so the page is told why first, in a `Closing` message
    /// ([`Link::tells_close`]), or knows already (it left, or was refused).
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        match self {
            Link::Quic(c) => c.close(code.as_u32().into(), reason.as_bytes()),
            Link::WebTransport(w) => {
                let conn: &quinn::Connection = w;
                let code = web_transport_quinn::proto::error_to_http3(code.as_u32());
                let code = quinn::VarInt::try_from(code).unwrap_or(quinn::VarInt::MAX);
                conn.close(code, reason.as_bytes());
            }
            Link::WebSocket(w) => w.close(code, reason),
        }
    }

    /// Whether its client is told why the connection closes with `code` in a `Closing`
    /// message rather than by the close itself: over WebTransport (see [`Link::close`]), unless
    /// the client left (`Normal`: after its `Leave`), and so knows why.
    pub(crate) fn tells_close(&self, code: CloseCode) -> bool {
        matches!(self, Link::WebTransport(_)) && code != CloseCode::Normal
    }

    /// Waits until the connection has ended.
    pub(crate) async fn closed(&self) {
        match self {
            Link::Quic(c) => {
                c.closed().await;
            }
            Link::WebTransport(w) => {
                Box::pin(w.closed()).await;
            }
            Link::WebSocket(w) => Box::pin(w.closed()).await,
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Link::Quic(c) => c.close_reason().is_some(),
            Link::WebTransport(w) => w.close_reason().is_some(),
            Link::WebSocket(w) => w.is_closed(),
        }
    }

    /// Why a connection that nobody on the relay closed has ended: a close with code 0 is the
    /// client leaving; anything else is the network (the member may resume).
    pub(crate) fn left_reason(&self) -> LeftReason {
        let normal = match self {
            Link::Quic(c) => match c.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(close)) => {
                    close.error_code.into_inner() == u64::from(CloseCode::Normal.as_u32())
                }
                _ => false,
            },
            Link::WebTransport(w) => matches!(
                w.close_reason(),
                Some(web_transport_quinn::SessionError::WebTransportError(
                    web_transport_quinn::WebTransportError::Closed(0, _)
                ))
            ),
            Link::WebSocket(w) => w.closed_normally(),
        };
        if normal {
            LeftReason::ClientDisconnected
        } else {
            LeftReason::NetworkDisconnected
        }
    }
}

/// A stream toward the client: the control stream's sending half, or a delivery stream.
#[derive(Debug)]
pub(crate) enum LinkSend {
    Quic(quinn::SendStream),
    WebTransport(web_transport_quinn::SendStream),
    WebSocket(ws::WsSend),
}

impl LinkSend {
    /// Writes `chunk` (waiting for flow-control credit).
    pub(crate) async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), LinkError> {
        match self {
            LinkSend::Quic(s) => s.write_chunk(chunk).await?,
            LinkSend::WebTransport(s) => Box::pin(s.write_chunk(chunk)).await?,
            LinkSend::WebSocket(s) => Box::pin(s.write_chunk(chunk)).await?,
        }
        Ok(())
    }

    /// Writes `chunks` in order, each as it is (no copy; QUIC takes them under one lock).
    /// Written chunks are left empty.
    pub(crate) async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), LinkError> {
        match self {
            LinkSend::Quic(s) => s.write_all_chunks(chunks).await?,
            _ => {
                for chunk in chunks {
                    self.write_chunk(std::mem::take(chunk)).await?;
                }
            }
        }
        Ok(())
    }

    /// How much of the stream the client has surely read (its application took), in bytes
    /// from the stream's start; `None` where the transport does not say. A QUIC client grants
    /// a delivery stream credit as it reads, with a receive window of at most
    /// `CLIENT_STREAM_WINDOW` (the protocol's rule), so it has read at least its limit minus
    /// that; as of the stream's last write. A browser's WebTransport stack sizes its windows
    /// itself, and a WebSocket says nothing of reads.
    pub(crate) fn read_at_least(&self) -> Option<u64> {
        match self {
            LinkSend::Quic(s) => Some(
                s.peer_limit()
                    .saturating_sub(signalbox_proto::CLIENT_STREAM_WINDOW.into()),
            ),
            LinkSend::WebTransport(_) | LinkSend::WebSocket(_) => None,
        }
    }

    /// Ends the stream after what was written.
    pub(crate) fn finish(&mut self) {
        match self {
            LinkSend::Quic(s) => {
                let _ = s.finish();
            }
            LinkSend::WebTransport(s) => {
                let _ = s.finish();
            }
            LinkSend::WebSocket(s) => s.finish(),
        }
    }

    /// Waits until the finished stream is acknowledged (or the client stopped it).
    pub(crate) async fn stopped(&mut self) -> Result<(), LinkError> {
        match self {
            LinkSend::Quic(s) => {
                s.stopped().await?;
            }
            LinkSend::WebTransport(s) => {
                Box::pin(s.stopped()).await?;
            }
            LinkSend::WebSocket(s) => Box::pin(s.stopped()).await?,
        }
        Ok(())
    }
}

/// A stream from the client: its control stream's receiving half, or its send stream.
#[derive(Debug)]
pub(crate) enum LinkRecv {
    Quic(quinn::RecvStream),
    WebTransport(web_transport_quinn::RecvStream),
    WebSocket(ws::WsRecv),
}

impl LinkRecv {
    /// The next piece of the stream as the transport received it (no copy into a read
    /// buffer); `None` at its end.
    pub(crate) async fn read_chunk(&mut self) -> Result<Option<Bytes>, LinkError> {
        Ok(match self {
            LinkRecv::Quic(r) => r.read_chunk(usize::MAX, true).await?.map(|c| c.bytes),
            LinkRecv::WebTransport(r) => Box::pin(r.read_chunk(usize::MAX, true))
                .await?
                .map(|c| c.bytes),
            LinkRecv::WebSocket(r) => Box::pin(r.read_chunk()).await,
        })
    }
}

impl AsyncRead for LinkRecv {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LinkRecv::Quic(r) => Pin::new(r).poll_read(cx, buf),
            LinkRecv::WebTransport(r) => Pin::new(r).poll_read(cx, buf),
            LinkRecv::WebSocket(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}
