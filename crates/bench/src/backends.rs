//! The client side of each system under test: publishers that send payloads to everyone or
//! to one subscriber, and subscribers that record what they get.

use std::sync::Arc;

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use signalbox_client::{Client, ConnectOptions, Event, Signal};
use signalbox_proto::{ConnectionId, Fingerprint, SessionId};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::payload::Stamp;
use crate::quinn_fwd::ALL;
use crate::stats::{Stats, SubRecorder};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// The Signalbox relay.
    Signalbox,
    /// nats-server, plain TCP.
    Nats,
    /// nats-server with TLS.
    NatsTls,
    /// A bare quinn forwarder.
    Quinn,
    /// Three Signalbox relay nodes joined through nats-server (clients spread over them).
    Cluster,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Signalbox => "signalbox",
            Kind::Nats => "nats",
            Kind::NatsTls => "nats-tls",
            Kind::Quinn => "quinn",
            Kind::Cluster => "signalbox-3",
        }
    }
}

/// Where a started server listens and how to trust it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) fingerprint: Option<Fingerprint>,
    /// For nats-tls: the CA (self-signed) certificate file.
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// For a cluster: every node (client `i` joins node `i % n`).
    pub(crate) nodes: Vec<(std::net::SocketAddr, Fingerprint)>,
}

/// A connected publisher.
pub(crate) enum Publisher {
    Signalbox {
        client: Client,
        subs: Arc<Vec<ConnectionId>>,
    },
    Nats {
        client: async_nats::Client,
        session: String,
    },
    Quinn {
        tx: mpsc::Sender<Bytes>,
    },
}

impl Publisher {
    /// Sends the payload `stamp` describes to subscriber `to`, or to every subscriber
    /// (`buf`: where payloads in bytes are cut from).
    pub(crate) async fn send(
        &mut self,
        to: Option<usize>,
        stamp: Stamp,
        buf: &mut BytesMut,
    ) -> anyhow::Result<()> {
        match self {
            Publisher::Signalbox { client, subs } => {
                let data = stamp.text();
                let signal = match to {
                    None => Signal::to_all("b", data),
                    Some(i) => Signal::to_one(subs[i], "b", data),
                };
                client.send_unconfirmed(signal).await?;
            }
            Publisher::Nats { client, session } => {
                let subject = match to {
                    None => format!("{session}.all"),
                    Some(i) => format!("{session}.c.{i}"),
                };
                client.publish(subject, stamp.bytes(buf)).await?;
            }
            Publisher::Quinn { tx } => {
                let target = to.map_or(ALL, |i| i as u32);
                let payload = stamp.bytes(buf);
                let mut f = BytesMut::with_capacity(payload.len() + 8);
                f.put_u32(payload.len() as u32 + 4);
                f.put_u32(target);
                f.put_slice(&payload);
                tx.send(f.freeze()).await.context("forwarder gone")?;
            }
        }
        Ok(())
    }

    /// Closes the publisher's connection.
    pub(crate) async fn close(self) {
        match self {
            Publisher::Signalbox { client, .. } => client.close(),
            Publisher::Nats { client, .. } => {
                let _ = client.flush().await;
            }
            Publisher::Quinn { .. } => {}
        }
    }
}

/// Connections of one run: publishers, and subscriber tasks recording into `stats`.
pub(crate) struct Connected {
    pub(crate) publishers: Vec<Publisher>,
    pub(crate) subscribers: Vec<tokio::task::JoinHandle<()>>,
    /// Things that must live as long as the run (endpoints, clients).
    pub(crate) keep: Vec<Box<dyn std::any::Any + Send>>,
}

/// The load generator's endpoints, for every QUIC backend alike: the client library's, with
/// its large UDP buffers.
fn client_endpoint() -> anyhow::Result<quinn::Endpoint> {
    Ok(signalbox_client::client_endpoint("127.0.0.1:0".parse()?)?)
}

/// Connects `subs` subscribers then `pubs` publishers to `target`, session `session`.
pub(crate) async fn connect(
    target: &Target,
    session: &str,
    pubs: usize,
    subs: usize,
    stats: Arc<Stats>,
    latency: bool,
) -> anyhow::Result<Connected> {
    match target.kind {
        Kind::Signalbox | Kind::Cluster => {
            connect_signalbox(target, session, pubs, subs, stats, latency).await
        }
        Kind::Nats | Kind::NatsTls => {
            connect_nats(target, session, pubs, subs, stats, latency).await
        }
        Kind::Quinn => connect_quinn(target, pubs, subs, stats, latency).await,
    }
}

async fn connect_signalbox(
    target: &Target,
    session: &str,
    pubs: usize,
    subs: usize,
    stats: Arc<Stats>,
    latency: bool,
) -> anyhow::Result<Connected> {
    let endpoint = client_endpoint()?;
    let options = |name: String, i: usize| {
        let (addr, fingerprint) = match target.nodes.get(i % target.nodes.len().max(1)) {
            Some((addr, fp)) => (*addr, Some(*fp)),
            None => (target.addr, target.fingerprint),
        };
        let mut o = ConnectOptions::new(
            "127.0.0.1",
            addr.port(),
            SessionId::new(session).expect("valid"),
        );
        o.fingerprint = fingerprint;
        o.name = Some(name);
        o
    };
    let mut ids = Vec::new();
    let mut subscribers = Vec::new();
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = vec![Box::new(endpoint.clone())];
    for s in 0..subs {
        let (client, mut events) =
            Client::connect_with(endpoint.clone(), options(format!("sub{s}"), s)).await?;
        ids.push(client.me().id);
        keep.push(Box::new(client));
        let stats = stats.clone();
        subscribers.push(tokio::spawn(async move {
            let mut rec = SubRecorder::new(s, pubs, latency);
            while let Some(e) = events.next().await {
                if let Event::Signal(sig) = e {
                    rec.record(&stats, sig.data.as_bytes());
                }
            }
            rec.flush(&stats);
        }));
    }
    let ids = Arc::new(ids);
    if !target.nodes.is_empty() {
        // Every node learns the others' members from their heartbeats (twice a second).
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    }
    let mut publishers = Vec::new();
    for p in 0..pubs {
        // Publishers only send, as nats-server's publishers (which subscribe to nothing).
        let o = options(format!("pub{p}"), p).with_receive_broadcasts(false);
        let (client, mut events) = Client::connect_with(endpoint.clone(), o).await?;
        tokio::spawn(async move { while events.next().await.is_some() {} });
        publishers.push(Publisher::Signalbox {
            client,
            subs: ids.clone(),
        });
    }
    Ok(Connected {
        publishers,
        subscribers,
        keep,
    })
}

async fn connect_nats(
    target: &Target,
    session: &str,
    pubs: usize,
    subs: usize,
    stats: Arc<Stats>,
    latency: bool,
) -> anyhow::Result<Connected> {
    let url = format!("nats://{}", target.addr);
    let options = || {
        let mut o = async_nats::ConnectOptions::new()
            .no_echo()
            .subscription_capacity(65_536)
            .client_capacity(65_536);
        if let Some(ca) = &target.ca_file {
            o = o.require_tls(true).add_root_certificates(ca.clone());
        }
        o
    };
    let mut subscribers = Vec::new();
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for s in 0..subs {
        let client = options().connect(&url).await?;
        let mut all = client.subscribe(format!("{session}.all")).await?;
        let mut mine = client.subscribe(format!("{session}.c.{s}")).await?;
        client.flush().await?;
        keep.push(Box::new(client));
        let stats = stats.clone();
        subscribers.push(tokio::spawn(async move {
            let mut rec = SubRecorder::new(s, pubs, latency);
            loop {
                let msg = tokio::select! {
                    m = all.next() => m,
                    m = mine.next() => m,
                };
                match msg {
                    Some(m) => rec.record(&stats, &m.payload),
                    None => break,
                }
            }
            rec.flush(&stats);
        }));
    }
    let mut publishers = Vec::new();
    for _ in 0..pubs {
        let client = options().connect(&url).await?;
        publishers.push(Publisher::Nats {
            client,
            session: session.to_owned(),
        });
    }
    Ok(Connected {
        publishers,
        subscribers,
        keep,
    })
}

async fn connect_quinn(
    target: &Target,
    pubs: usize,
    subs: usize,
    stats: Arc<Stats>,
    latency: bool,
) -> anyhow::Result<Connected> {
    let endpoint = client_endpoint()?;
    let config = signalbox_client::client_config(target.fingerprint, target.addr.ip())?;
    let connect = || async {
        let conn = endpoint
            .connect_with(config.clone(), target.addr, "localhost")?
            .await?;
        anyhow::Ok(conn)
    };
    let hello = |role: u8, id: u32| {
        let mut b = BytesMut::new();
        b.put_u32(5);
        b.put_u8(role);
        b.put_u32(id);
        b.freeze()
    };
    let mut subscribers = Vec::new();
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = vec![Box::new(endpoint.clone())];
    for s in 0..subs {
        let conn = connect().await?;
        let mut up = conn.open_uni().await?;
        up.write_chunk(hello(1, s as u32)).await?;
        keep.push(Box::new(up));
        let stats = stats.clone();
        let c2 = conn.clone();
        keep.push(Box::new(conn));
        subscribers.push(tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(mut recv) = c2.accept_uni().await {
                let stats = stats.clone();
                tasks.push(tokio::spawn(async move {
                    let mut id = [0u8; 4];
                    if recv.read_exact(&mut id).await.is_err() {
                        return;
                    }
                    let mut rec = SubRecorder::new(s, pubs, latency);
                    let mut frames = FramedRead::new(recv, LengthDelimitedCodec::new());
                    while let Some(Ok(f)) = frames.next().await {
                        rec.record(&stats, &f);
                    }
                    rec.flush(&stats);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..pubs {
        let conn = connect().await?;
        let mut up = conn.open_uni().await?;
        up.write_chunk(hello(0, p as u32)).await?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        keep.push(Box::new(conn));
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Some(first) = rx.recv().await {
                buf.extend_from_slice(&first);
                while buf.len() < 64 * 1024 {
                    match rx.try_recv() {
                        Ok(f) => buf.extend_from_slice(&f),
                        Err(_) => break,
                    }
                }
                if up.write_chunk(buf.split().freeze()).await.is_err() {
                    return;
                }
            }
        });
        publishers.push(Publisher::Quinn { tx });
    }
    Ok(Connected {
        publishers,
        subscribers,
        keep,
    })
}
