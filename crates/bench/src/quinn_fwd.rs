//! The floor: a bare quinn forwarder with the same framing and the same write-path habits as
//! the relay (one stream per sender toward each receiver, queued frames merged per write),
//! and nothing else — no sessions, tokens, validation, acknowledgements or presence.
//!
//! Client → forwarder: one uni stream; first frame `[role u8][id u32]` (role 0 publisher,
//! 1 subscriber), then frames `[target u32][payload]` (`u32::MAX`: every subscriber).
//! Forwarder → subscriber: one uni stream per publisher; header `[id u32]`, then frames
//! `[payload]`. Frames are `LengthDelimitedCodec` (u32 big-endian length).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

const MAX_BATCH: usize = 64 * 1024;
pub(crate) const ALL: u32 = u32::MAX;

#[derive(Default)]
struct Registry {
    subs: HashMap<u32, quinn::Connection>,
}

/// Runs the forwarder on `endpoint` until the process ends, accepting each connection with
/// the relay's settings for its path.
pub(crate) async fn serve(endpoint: quinn::Endpoint, config: signalbox_relay::ServerConfigs) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    while let Some(incoming) = endpoint.accept().await {
        let registry = registry.clone();
        let config = config.for_peer(incoming.remote_address().ip());
        tokio::spawn(async move {
            let Ok(connecting) = incoming.accept_with(config) else {
                return;
            };
            let Ok(conn) = connecting.await else { return };
            let Ok(recv) = conn.accept_uni().await else {
                return;
            };
            let mut frames = FramedRead::new(recv, LengthDelimitedCodec::new());
            let Some(Ok(mut hello)) = frames.next().await else {
                return;
            };
            if hello.len() < 5 {
                return;
            }
            let role = hello.get_u8();
            let id = hello.get_u32();
            if role == 1 {
                if let Ok(mut r) = registry.lock() {
                    r.subs.insert(id, conn.clone());
                }
                let _ = conn.closed().await;
                if let Ok(mut r) = registry.lock()
                    && r.subs
                        .get(&id)
                        .is_some_and(|c| c.stable_id() == conn.stable_id())
                {
                    r.subs.remove(&id);
                }
                return;
            }
            let mut routes: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
            while let Some(Ok(mut frame)) = frames.next().await {
                if frame.len() < 4 {
                    return;
                }
                let target = frame.get_u32();
                let mut out = BytesMut::with_capacity(frame.len() + 4);
                out.put_u32(frame.len() as u32);
                out.put_slice(&frame);
                let out = out.freeze();
                let targets: Vec<(u32, quinn::Connection)> = match registry.lock() {
                    Ok(r) if target == ALL => r.subs.iter().map(|(k, c)| (*k, c.clone())).collect(),
                    Ok(r) => r
                        .subs
                        .get(&target)
                        .map(|c| vec![(target, c.clone())])
                        .unwrap_or_default(),
                    Err(_) => return,
                };
                for (sub, c) in targets {
                    let tx = routes.entry(sub).or_insert_with(|| spawn_route(c, id));
                    let _ = tx.try_send(out.clone());
                }
            }
        });
    }
}

fn spawn_route(conn: quinn::Connection, from: u32) -> mpsc::Sender<Bytes> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16_384);
    tokio::spawn(async move {
        let Ok(mut stream) = conn.open_uni().await else {
            return;
        };
        if stream.write_all(&from.to_be_bytes()).await.is_err() {
            return;
        }
        let mut buf = BytesMut::new();
        while let Some(first) = rx.recv().await {
            let chunk = match rx.try_recv() {
                Err(_) => first,
                Ok(second) => {
                    buf.extend_from_slice(&first);
                    buf.extend_from_slice(&second);
                    while buf.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(f) => buf.extend_from_slice(&f),
                            Err(_) => break,
                        }
                    }
                    buf.split().freeze()
                }
            };
            if stream.write_chunk(chunk).await.is_err() {
                return;
            }
        }
    });
    tx
}
