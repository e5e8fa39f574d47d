//! The relay's configuration: one struct, set from the command line, from `relay.toml`, or
//! in code (tests and the desktop app).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signalbox_proto::Limits;
use signalbox_proto::signal::{DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_CEILING};

/// The shortest secret the relay signs or checks anything with (its token secret, the
/// Vonage API secret): shorter ones can be guessed.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// Everything a relay can be told. Every field has a default; `relay.toml` may set any of
/// them (unknown keys are an error), and command-line flags override the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// UDP address for QUIC.
    #[arg(long, default_value_t = RelayConfig::default().listen)]
    pub listen: SocketAddr,

    /// Address of the REST API and metrics, or `off`.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_http,
          default_value = "127.0.0.1:4480")]
    #[serde(with = "http_addr")]
    // Spelled out so that clap takes `off` → `None` from the parser instead of treating
    // the field as an optional flag.
    pub http: std::option::Option<SocketAddr>,

    /// Serve the HTTP listener over TLS (HTTPS and WSS) with the relay's certificate
    /// (`--cert`/`--key`, or its self-signed identity): a page from it is a secure context on
    /// the LAN, so browsers there may use WebTransport.
    #[arg(long)]
    pub http_tls: bool,

    /// Directory for the relay's identity and token secret (default: the platform's data dir,
    /// or `$SIGNALBOX_HOME/data`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Accept joins without a token (LAN convenience). Tokens are still honoured.
    #[arg(long)]
    pub open: bool,

    /// Announce the relay on the LAN (mDNS / DNS-SD, `_signalbox._udp.local.`) so that the
    /// app and `signalbox discover` find it. Bound to 0.0.0.0 it announces every LAN address;
    /// bound to loopback, on loopback only.
    #[arg(long)]
    pub announce: bool,

    /// The relay's name in its announcement (default: this machine's host name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// A session to publish in the announcement, so people nearby can join it by name
    /// (repeatable).
    #[arg(long = "announce-session", value_name = "SESSION")]
    pub announce_sessions: Vec<String>,

    /// The UDP port of mDNS: 5353, or another one to keep a test or a private group apart.
    #[arg(long, default_value_t = RelayConfig::default().mdns_port)]
    pub mdns_port: u16,

    /// Share sessions with other relay nodes through this NATS server
    /// (`nats://HOST:PORT`, `nats://USER:PASS@HOST:PORT`, or `tls://HOST:PORT`). Without it
    /// the relay stands alone. The nodes must share the data directory's `token-secret`: the
    /// key that authenticates every cluster message derives from it.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,

    /// A NATS credentials file (JWT and NKey seed) for `--cluster`.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_creds: Option<PathBuf>,

    /// A CA certificate (PEM) to check the NATS server's TLS certificate against; makes
    /// TLS to NATS required.
    #[arg(long, value_name = "PEM", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,

    /// This node's name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// TLS certificate chain (PEM) instead of the self-signed identity.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM) for `--cert`.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Longest signal data in bytes (at most 65536).
    #[arg(long, default_value_t = RelayConfig::default().max_data_bytes)]
    pub max_data_bytes: u32,

    /// Connections a session holds.
    #[arg(long, default_value_t = RelayConfig::default().max_connections_per_session)]
    pub max_connections_per_session: u32,

    /// Sessions the relay holds.
    #[arg(long, default_value_t = RelayConfig::default().max_sessions)]
    pub max_sessions: u32,

    /// Connections the relay holds in all.
    #[arg(long, default_value_t = RelayConfig::default().max_connections)]
    pub max_connections: u32,

    /// Signals per second per connection; 0 = unlimited.
    #[arg(long, default_value_t = RelayConfig::default().signals_per_second)]
    pub signals_per_second: u32,

    /// Signals a connection may send at once beyond its rate.
    #[arg(long, default_value_t = RelayConfig::default().signal_burst)]
    pub signal_burst: u32,

    /// Bytes per second a connection may make the relay deliver: each signal's frame bytes
    /// times the receivers it reaches here (also the bucket's size); 0 = unlimited.
    #[arg(long, default_value_t = RelayConfig::default().fanout_bytes_per_second)]
    pub fanout_bytes_per_second: u32,

    /// Time a new connection has to complete its join.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,

    /// Time a connection has, after its QUIC handshake, to send `Hello`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,

    /// Connections that have not joined yet (handshaking or before `Hello`), at most: a
    /// budget apart from `max_connections`, so unauthenticated ones cannot fill the relay.
    #[arg(long, default_value_t = RelayConfig::default().max_pending)]
    pub max_pending: u32,

    /// Connections from one IP address that have not joined yet, at most.
    #[arg(long, default_value_t = RelayConfig::default().max_pending_per_source)]
    pub max_pending_per_source: u32,

    /// Joined connections from one IP address, at most.
    #[arg(long, default_value_t = RelayConfig::default().max_connections_per_source)]
    pub max_connections_per_source: u32,

    /// Connections joined with one token at the same time, at most (a leaked invite admits
    /// no crowd).
    #[arg(long, default_value_t = RelayConfig::default().max_connections_per_token)]
    pub max_connections_per_token: u32,

    /// A connection removed by a moderator or the server may not join that session again
    /// with the same token for this long. 0 turns it off.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    #[serde(with = "humantime_serde")]
    pub kick_ban: Duration,

    /// A connection silent for this long is gone (keep-alives keep live ones talking).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,

    /// Interval of QUIC keep-alive packets.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,

    /// Bytes that may wait for one receiver; past this it is disconnected as `slowConsumer`.
    #[arg(long, default_value_t = RelayConfig::default().receiver_queue_bytes)]
    pub receiver_queue_bytes: usize,

    /// Signals that may wait for one receiver from one sender.
    #[arg(long, default_value_t = RelayConfig::default().receiver_queue_signals)]
    pub receiver_queue_signals: usize,

    /// Bytes of signals the relay holds in all — half for receivers' queues, half kept for
    /// resumes. Over the replay half the oldest kept go first; over the queue half a receiver
    /// that is behind by its share is a `slowConsumer`.
    #[arg(long, default_value_t = RelayConfig::default().held_bytes)]
    pub held_bytes: usize,

    /// Bytes of signals held for one session, split and enforced as `held_bytes`.
    #[arg(long, default_value_t = RelayConfig::default().session_held_bytes)]
    pub session_held_bytes: usize,

    /// A receiver that takes no data for this long while signals wait is a `slowConsumer`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,

    /// The API key of the Vonage-compatible surface (default: made on first start in the
    /// data directory). Set with `vonage_api_secret`, in `relay.toml`.
    #[arg(skip)]
    pub vonage_api_key: Option<String>,

    /// The API secret of the Vonage-compatible surface (see `vonage_api_key`).
    #[arg(skip)]
    pub vonage_api_secret: Option<String>,

    /// A client whose connection is lost may resume within this time as the same connection
    /// (peers see nothing; what was sent to it meanwhile is delivered). 0 turns it off.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    #[serde(with = "humantime_serde")]
    pub resume_grace: Duration,

    /// A delivery stream idle for this long is finished (a new one opens on the next signal).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "humantime_serde")]
    pub stream_idle: Duration,

    /// The congestion controller of the relay's QUIC connections: how fast it sends toward
    /// each client when the path is shared or lossy.
    #[arg(long, value_enum, default_value_t = Congestion::default())]
    pub congestion: Congestion,
}

/// A QUIC congestion controller (quinn's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Congestion {
    /// CUBIC (RFC 9438): loss-based, the default of Linux TCP and quinn.
    #[default]
    Cubic,
    /// NewReno (RFC 9002's reference controller): loss-based, halves on each loss.
    NewReno,
    /// BBR: model-based, paces to the measured bottleneck bandwidth (experimental in quinn).
    Bbr,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            announce: false,
            name: None,
            cluster: None,
            cluster_creds: None,
            cluster_ca: None,
            node_name: None,
            announce_sessions: Vec::new(),
            mdns_port: 5353,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 4480))),
            data_dir: None,
            open: false,
            cert: None,
            key: None,
            http_tls: false,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES as u32,
            max_connections_per_session: limits.max_connections_per_session,
            max_sessions: 10_000,
            max_connections: 20_000,
            signals_per_second: limits.signals_per_second,
            signal_burst: limits.signal_burst,
            fanout_bytes_per_second: 128 << 20,
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(2),
            max_pending: 1024,
            max_pending_per_source: 256,
            max_connections_per_source: 4096,
            max_connections_per_token: 64,
            kick_ban: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            receiver_queue_bytes: 8 << 20,
            receiver_queue_signals: 16_384,
            held_bytes: 1 << 30,
            session_held_bytes: 256 << 20,
            write_timeout: Duration::from_secs(10),
            resume_grace: Duration::from_secs(15),
            vonage_api_key: None,
            vonage_api_secret: None,
            stream_idle: Duration::from_secs(10),
            congestion: Congestion::default(),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `max_data_bytes` is above the ceiling.
    #[error("max_data_bytes is {0}; the limit is {MAX_DATA_BYTES_CEILING}")]
    DataLimit(u32),
    /// A limit that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A session in `announce_sessions` is not a valid session id.
    #[error("announce_sessions: {0}")]
    AnnounceSession(String),
    /// Only one of `vonage_api_key` and `vonage_api_secret` is set.
    #[error("vonage_api_key and vonage_api_secret must be set together")]
    VonageHalf,
    /// A value is outside the range the relay can work with.
    #[error("{key} = {value} is out of range: allowed {range}")]
    OutOfRange {
        /// The key (as in `relay.toml`; the flag is the same with dashes).
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        range: String,
    },
    /// The TOML file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not a valid configuration.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
}

impl RelayConfig {
    /// A relay for tests and for embedding: QUIC on 127.0.0.1 with an OS-chosen port, no
    /// HTTP, files in `data_dir`.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            data_dir: Some(data_dir.into()),
            ..Self::default()
        }
    }

    /// Checks every value against its range and the values against each other: a bad one is
    /// an error naming the key, the value and what is allowed (nothing fails later, at run
    /// time, because of a setting).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_data_bytes as usize > MAX_DATA_BYTES_CEILING {
            return Err(ConfigError::DataLimit(self.max_data_bytes));
        }
        for (name, v) in [
            (
                "max_connections_per_session",
                self.max_connections_per_session as usize,
            ),
            ("max_sessions", self.max_sessions as usize),
            ("max_connections", self.max_connections as usize),
            ("receiver_queue_bytes", self.receiver_queue_bytes),
            ("receiver_queue_signals", self.receiver_queue_signals),
            ("signal_burst", self.signal_burst as usize),
            ("max_pending", self.max_pending as usize),
            (
                "max_pending_per_source",
                self.max_pending_per_source as usize,
            ),
            (
                "max_connections_per_source",
                self.max_connections_per_source as usize,
            ),
            (
                "max_connections_per_token",
                self.max_connections_per_token as usize,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let counts: &[(&'static str, u64, u64)] = &[
            (
                "max_connections_per_session",
                self.max_connections_per_session.into(),
                65_536,
            ),
            ("max_sessions", self.max_sessions.into(), 10_000_000),
            ("max_connections", self.max_connections.into(), 10_000_000),
            (
                "signals_per_second",
                self.signals_per_second.into(),
                10_000_000,
            ),
            ("signal_burst", self.signal_burst.into(), 10_000_000),
            (
                "receiver_queue_bytes",
                self.receiver_queue_bytes as u64,
                1 << 30,
            ),
            (
                "receiver_queue_signals",
                self.receiver_queue_signals as u64,
                10_000_000,
            ),
            ("held_bytes", self.held_bytes as u64, 1 << 40),
            (
                "session_held_bytes",
                self.session_held_bytes as u64,
                1 << 40,
            ),
            ("max_pending", self.max_pending.into(), 1_000_000),
            (
                "max_pending_per_source",
                self.max_pending_per_source.into(),
                1_000_000,
            ),
            (
                "max_connections_per_source",
                self.max_connections_per_source.into(),
                10_000_000,
            ),
            (
                "max_connections_per_token",
                self.max_connections_per_token.into(),
                10_000_000,
            ),
        ];
        for &(key, value, most) in counts {
            if value > most {
                return Err(ConfigError::OutOfRange {
                    key,
                    value: value.to_string(),
                    range: format!("at most {most}"),
                });
            }
        }
        // Room for a few full-size frames in every half, and a session within the whole.
        let least = 1 << 20;
        for (key, value) in [
            ("held_bytes", self.held_bytes),
            ("session_held_bytes", self.session_held_bytes),
        ] {
            if value < least {
                return Err(ConfigError::OutOfRange {
                    key,
                    value: value.to_string(),
                    range: format!("at least {least}"),
                });
            }
        }
        if self.session_held_bytes > self.held_bytes {
            return Err(ConfigError::OutOfRange {
                key: "session_held_bytes",
                value: self.session_held_bytes.to_string(),
                range: format!("at most held_bytes ({})", self.held_bytes),
            });
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        let durations = [
            (
                "handshake_timeout",
                self.handshake_timeout,
                ms(100),
                secs(60),
            ),
            ("hello_timeout", self.hello_timeout, ms(100), secs(60)),
            ("idle_timeout", self.idle_timeout, ms(100), secs(3600)),
            ("keep_alive", self.keep_alive, ms(10), secs(3600)),
            ("write_timeout", self.write_timeout, ms(100), secs(600)),
            ("resume_grace", self.resume_grace, Duration::ZERO, secs(600)),
            ("stream_idle", self.stream_idle, ms(10), secs(3600)),
            (
                "kick_ban",
                self.kick_ban,
                Duration::ZERO,
                secs(7 * 24 * 3600),
            ),
        ];
        for (key, value, least, most) in durations {
            if value < least || value > most {
                return Err(ConfigError::OutOfRange {
                    key,
                    value: humantime::format_duration(value).to_string(),
                    range: format!(
                        "{} to {}",
                        humantime::format_duration(least),
                        humantime::format_duration(most)
                    ),
                });
            }
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(ConfigError::OutOfRange {
                key: "keep_alive",
                value: humantime::format_duration(self.keep_alive).to_string(),
                range: format!(
                    "less than idle_timeout ({}), or connections time out between keep-alives",
                    humantime::format_duration(self.idle_timeout)
                ),
            });
        }
        if let Some(secret) = &self.vonage_api_secret
            && secret.len() < MIN_SECRET_BYTES
        {
            return Err(ConfigError::OutOfRange {
                key: "vonage_api_secret",
                value: format!("({} characters)", secret.len()),
                range: format!("at least {MIN_SECRET_BYTES} characters"),
            });
        }
        for s in &self.announce_sessions {
            signalbox_proto::SessionId::new(s.as_str())
                .map_err(|e| ConfigError::AnnounceSession(e.to_string()))?;
        }
        if self.vonage_api_key.is_some() != self.vonage_api_secret.is_some() {
            return Err(ConfigError::VonageHalf);
        }
        Ok(())
    }

    /// The limits clients are told in `Welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_data_bytes: self.max_data_bytes,
            signals_per_second: self.signals_per_second,
            signal_burst: self.signal_burst.max(1),
            max_connections_per_session: self.max_connections_per_session,
        }
    }

    /// Reads a `relay.toml`.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// This configuration with the fields named in `explicit` taken from `overrides`: how
    /// command-line flags that were actually given win over `relay.toml`.
    pub fn merged(&self, overrides: &Self, explicit: &[&str]) -> Self {
        let (Ok(toml::Value::Table(mut base)), Ok(toml::Value::Table(over))) = (
            toml::Value::try_from(self),
            toml::Value::try_from(overrides),
        ) else {
            return self.clone();
        };
        for key in explicit {
            match over.get(*key) {
                Some(v) => {
                    base.insert((*key).to_owned(), v.clone());
                }
                None => {
                    // An Option set to None on the command line (e.g. `--http off`).
                    base.remove(*key);
                }
            }
        }
        toml::Value::Table(base)
            .try_into()
            .unwrap_or_else(|_| self.clone())
    }
}

fn parse_http(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        s.parse()
            .map(Some)
            .map_err(|e| format!("'{s}' is not an address or 'off': {e}"))
    }
}

/// `http = "127.0.0.1:4480"` or `http = "off"` in TOML.
mod http_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_http(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let cfg = RelayConfig::default();
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<RelayConfig>(&text).unwrap(), cfg);
        let partial: RelayConfig =
            toml::from_str("open = true\nhttp = \"off\"\nidle_timeout = \"1m\"").unwrap();
        assert!(partial.open);
        assert_eq!(partial.http, None);
        assert_eq!(partial.idle_timeout, Duration::from_secs(60));
        assert_eq!(partial.listen, cfg.listen);
        assert!(toml::from_str::<RelayConfig>("nonsense = 1").is_err());
        let bbr: RelayConfig = toml::from_str("congestion = \"bbr\"").unwrap();
        assert_eq!(bbr.congestion, Congestion::Bbr);
        let reno: RelayConfig = toml::from_str("congestion = \"new-reno\"").unwrap();
        assert_eq!(reno.congestion, Congestion::NewReno);
        assert!(toml::from_str::<RelayConfig>("congestion = \"vegas\"").is_err());
    }

    #[test]
    fn explicit_flags_win_over_the_file() {
        let file: RelayConfig = toml::from_str("open = true\nmax_data_bytes = 100").unwrap();
        let cli = RelayConfig {
            max_data_bytes: 200,
            http: None,
            ..RelayConfig::default()
        };
        let merged = file.merged(&cli, &["max_data_bytes", "http"]);
        assert_eq!(merged.max_data_bytes, 200);
        assert_eq!(merged.http, None);
        assert!(merged.open, "a flag not given keeps the file's value");
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/relay.toml");
        let file = RelayConfig::from_toml_file(std::path::Path::new(path)).unwrap();
        assert_eq!(file, RelayConfig::default());
    }

    #[test]
    fn every_duration_and_size_is_checked_at_start() {
        let bad = |f: fn(&mut RelayConfig)| {
            let mut c = RelayConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.stream_idle = Duration::ZERO),
            "stream_idle = 0s is out of range: allowed 10ms to 1h"
        );
        assert!(
            bad(|c| c.write_timeout = Duration::from_secs(3600)).starts_with("write_timeout = 1h")
        );
        assert!(bad(|c| c.handshake_timeout = Duration::ZERO).starts_with("handshake_timeout"));
        assert!(bad(|c| c.keep_alive = Duration::from_secs(60)).starts_with("keep_alive = 1m"));
        assert!(bad(|c| c.receiver_queue_signals = 0).contains("receiver_queue_signals"));
        assert!(bad(|c| c.signal_burst = 0).contains("signal_burst"));
        assert!(bad(|c| c.receiver_queue_bytes = 2 << 30).starts_with("receiver_queue_bytes"));
        assert!(
            bad(|c| {
                c.vonage_api_key = Some("1".into());
                c.vonage_api_secret = Some("short".into());
            })
            .starts_with("vonage_api_secret")
        );
        // From a file too: the same check runs on whatever the settings came from.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "stream_idle = \"0s\"\n").unwrap();
        let file = RelayConfig::from_toml_file(&path).unwrap();
        assert!(
            file.validate()
                .unwrap_err()
                .to_string()
                .starts_with("stream_idle = 0s")
        );
    }

    #[test]
    fn validation() {
        assert!(RelayConfig::default().validate().is_ok());
        let big = RelayConfig {
            max_data_bytes: 70_000,
            ..RelayConfig::default()
        };
        assert_eq!(
            big.validate().unwrap_err().to_string(),
            "max_data_bytes is 70000; the limit is 65536"
        );
    }
}
