//! `FaultyLink`: a loopback UDP proxy between clients and a relay that drops, delays,
//! reorders, duplicates and blackholes datagrams, driven by a seeded random generator — bad
//! networks on demand, without root or `tc netem` (which this kernel lacks).
//!
//! ```ignore
//! let link = FaultyLink::start(relay_addr, 7, Faults { drop: 0.05, ..Faults::default() }).await;
//! // connect clients to link.addr() instead of the relay
//! link.blackhole(true);  // the network is gone…
//! link.blackhole(false); // …and back
//! ```
//!
//! Each client address seen on the front socket gets its own upstream socket, so the relay
//! sees one peer per client as usual. Faults apply in both directions, per datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::registry::lock;

/// What goes wrong, each a probability per datagram (0 to 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Lost.
    pub drop: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// Held back 1–3 ms, so later datagrams overtake it.
    pub reorder: f64,
    /// Added to every datagram.
    pub delay: Duration,
    /// Added to every datagram back to a client, on top of `delay`: the relay's answers come
    /// late while what clients send arrives at once.
    pub delay_to_clients: Duration,
}

#[derive(Debug)]
struct State {
    faults: Mutex<Faults>,
    blackhole: AtomicBool,
    rng: Mutex<StdRng>,
}

impl State {
    /// The delays at which to send copies of one datagram (none: dropped), going to a client
    /// or to the relay.
    fn plan(&self, to_client: bool) -> Vec<Duration> {
        if self.blackhole.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let f = *lock(&self.faults);
        let mut rng = lock(&self.rng);
        if rng.random::<f64>() < f.drop {
            return Vec::new();
        }
        let one = |rng: &mut StdRng| {
            let mut d = f.delay;
            if to_client {
                d += f.delay_to_clients;
            }
            if rng.random::<f64>() < f.reorder {
                d += Duration::from_micros(rng.random_range(1000..3000));
            }
            d
        };
        let mut copies = vec![one(&mut rng)];
        if rng.random::<f64>() < f.duplicate {
            copies.push(one(&mut rng));
        }
        copies
    }
}

/// The proxy. Dropping it stops it.
#[derive(Debug)]
pub struct FaultyLink {
    addr: SocketAddr,
    state: Arc<State>,
    _tasks: JoinSet<()>,
}

/// Where a datagram goes: up to the relay, or back to one client.
#[derive(Clone)]
enum To {
    Relay(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

impl To {
    async fn send(&self, data: &[u8]) {
        // Awaited, not `try_send`: a fresh socket is not yet known to be writable.
        let _ = match self {
            To::Relay(up) => up.send(data).await,
            To::Client(front, client) => front.send_to(data, client).await,
        };
    }
}

/// Sends the copies a plan asks for, each after its delay.
async fn send_with(plan: Vec<Duration>, data: Vec<u8>, to: To) {
    for d in plan {
        if d.is_zero() {
            to.send(&data).await;
        } else {
            let (to, data) = (to.clone(), data.clone());
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                to.send(&data).await;
            });
        }
    }
}

/// A loopback socket with the relay's large buffers: the proxy must not drop datagrams of
/// its own when a burst arrives (only the ones its faults say).
fn bind() -> UdpSocket {
    let socket =
        crate::udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a loopback socket");
    socket.set_nonblocking(true).expect("a non-blocking socket");
    UdpSocket::from_std(socket).expect("a socket in the runtime")
}

impl FaultyLink {
    /// A proxy to `upstream` on a fresh loopback port, with faults from `seed`.
    pub async fn start(upstream: SocketAddr, seed: u64, faults: Faults) -> Self {
        let front = Arc::new(bind());
        let addr = front.local_addr().expect("a bound socket");
        let state = Arc::new(State {
            faults: Mutex::new(faults),
            blackhole: AtomicBool::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        });
        let mut tasks = JoinSet::new();
        let st = state.clone();
        tasks.spawn(async move {
            let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut readers = JoinSet::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let up = match flows.get(&client) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(bind());
                        u.connect(upstream).await.expect("a loopback route");
                        // Relay → client, with faults.
                        let (u2, front2, st2) = (u.clone(), front.clone(), st.clone());
                        readers.spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = u2.recv(&mut buf).await {
                                send_with(
                                    st2.plan(true),
                                    buf[..n].to_vec(),
                                    To::Client(front2.clone(), client),
                                )
                                .await;
                            }
                        });
                        flows.insert(client, u.clone());
                        u
                    }
                };
                // Client → relay, with faults.
                send_with(st.plan(false), buf[..n].to_vec(), To::Relay(up)).await;
            }
        });
        Self {
            addr,
            state,
            _tasks: tasks,
        }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every datagram both ways while on: the network is gone.
    pub fn blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::Relaxed);
    }

    /// Changes the faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.state.faults) = faults;
    }
}
