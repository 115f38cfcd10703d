//! The proxy: accept, connect to the host, inspect until the session has decided, then relay
//! without looking. The only tokio code of the core; it prints nothing (reports go out over a
//! channel, logs through `tracing`, never with payload bytes).
//!
//! Per connection:
//! 1. accept, start connecting to the host at once while buffering what the client sends
//!    (`inspect.rs`); a failed connect resets the client like a closed port would;
//! 2. relay with a tap feeding every chunk to the [`Session`] (`inspect.rs`), ticking it at
//!    its deadlines; a stall ends both connections;
//! 3. once the session has learned all it can, relay the rest with the hot path
//!    (`pipe.rs`, with `splice(2)` on Linux: `splice.rs`), still reporting each close in order;
//! 4. send a [`ConnectionReport`] with the verdict.

mod inspect;
mod nla;
mod pipe;
mod rewrite;
#[cfg(target_os = "linux")]
mod splice;
pub mod tap;
mod tapped;
mod terminate;

pub use rewrite::{SecurityRewrite, plan as plan_rewrite, warnings as experiment_warnings};
pub use terminate::{FreshCertConfig, classify as classify_tls_error, host_leg_config};

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{self, JoinSet};
use tracing::Instrument;

use crate::record::Leg;
use crate::report::ConnectionReport;
use crate::session::{
    CloseKind, Direction, Micros, Outcome, Session, SessionConfig, Side, Verdict,
};
use inspect::{Clock, Connected, Inspected};
use pipe::{Half, Relay};

/// The port RDP listens on unless told otherwise.
pub const DEFAULT_RDP_PORT: u16 = 3389;

/// How bytes move once inspection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotPath {
    /// User-space copies through one reused buffer per direction.
    Copy,
    /// `splice(2)` through a kernel pipe per direction (Linux; the copy loop elsewhere, or when
    /// pipes cannot be created).
    Splice,
}

impl Default for HotPath {
    /// `splice(2)` on Linux (faster in `benches/relay.rs`), the copy loop elsewhere.
    fn default() -> Self {
        if cfg!(target_os = "linux") {
            HotPath::Splice
        } else {
            HotPath::Copy
        }
    }
}

/// What the proxy does.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The host, `HOST[:PORT]` (port 3389 by default); resolved for each connection.
    pub target: String,
    /// How long to wait for the host's SYN-ACK (and name resolution).
    pub connect_timeout: Duration,
    /// A phase with no progress for this long ends the connection (cause `stall`); copied into
    /// `session.stall_timeout` by [`Proxy::bind`].
    pub stall_timeout: Duration,
    /// Return from [`Proxy::run`] after this many connections have ended (and accept no more
    /// than that).
    pub max_connections: Option<u64>,
    /// Connections relayed at once; more wait in the listen backlog.
    pub max_concurrent: usize,
    /// Bytes (both directions) fed to the session at most; past that the hot path takes over
    /// even if the session has not said it is done (a safety net for long sessions).
    pub inspect_limit: u64,
    pub hot_path: HotPath,
    /// Splice pipes that may exist at once, shared by all connections (each direction holds one
    /// only while bytes are in it); past that, reads are copied. `None`: `max_concurrent`.
    pub max_pipes: Option<usize>,
    /// Capacity asked of each splice pipe (see [`DEFAULT_PIPE_SIZE`]).
    pub pipe_size: usize,
    pub session: SessionConfig,
    /// `--record DIR`: write a trace bundle per connection.
    pub record: Option<tap::RecordConfig>,
    /// `--security`: rewrite the client's requestedProtocols (`relay/rewrite.rs`).
    pub security: Option<SecurityRewrite>,
    /// `--fresh-cert`: terminate TLS on both legs (`relay/terminate.rs`).
    pub fresh_cert: Option<FreshCertConfig>,
}

impl ProxyConfig {
    /// The defaults of `rdpdiag proxy`, for `listen` and `target`.
    pub fn new(listen: SocketAddr, target: impl Into<String>) -> Self {
        Self {
            listen,
            target: target.into(),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            max_connections: None,
            max_concurrent: 256,
            inspect_limit: 1024 * 1024,
            hot_path: HotPath::default(),
            max_pipes: None,
            pipe_size: pipe_size_from_env(),
            session: SessionConfig::default(),
            record: None,
            security: None,
            fresh_cert: None,
        }
    }
}

/// Splice pipe capacity: pipes are pooled and held only while bytes are in them, so a big
/// pipe costs kernel memory only while it is full; 256 KiB moves a loopback burst in fewer
/// splices than the kernel's 64 KiB default (figures in README "Performance").
pub const DEFAULT_PIPE_SIZE: usize = 256 * 1024;

/// [`DEFAULT_PIPE_SIZE`], or `RDPDIAG_PIPE_SIZE` (bytes) when set: a tuning knob for
/// `benches/relay.rs`, which compares pipe sizes.
fn pipe_size_from_env() -> usize {
    std::env::var("RDPDIAG_PIPE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PIPE_SIZE)
}

/// Splits `HOST[:PORT]` (`[v6]:port`, a bare IPv6 address, a name, an IPv4 address).
pub fn parse_target(target: &str) -> Option<(String, u16)> {
    let target = target.trim();
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return (addr.port() != 0).then(|| (addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = target
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(target)
        .parse::<IpAddr>()
    {
        return Some((ip.to_string(), DEFAULT_RDP_PORT));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => (target, DEFAULT_RDP_PORT),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    valid.then(|| (host.to_owned(), port))
}

/// A bound proxy, ready to [`run`](Proxy::run).
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    local: SocketAddr,
    cfg: Arc<ProxyConfig>,
    host: String,
    port: u16,
}

impl Proxy {
    /// Checks the target, binds the listener, and refuses a target that is this very listener
    /// (a hosts-file alias pointing back at the proxy would relay to itself forever).
    pub async fn bind(mut cfg: ProxyConfig) -> io::Result<Proxy> {
        let (host, port) = parse_target(&cfg.target).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid target {:?}: expected HOST[:PORT]", cfg.target),
            )
        })?;
        cfg.session.stall_timeout =
            Micros(u64::try_from(cfg.stall_timeout.as_micros()).unwrap_or(u64::MAX));
        let listener = TcpListener::bind(cfg.listen).await?;
        let local = listener.local_addr()?;
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        match tokio::time::timeout(cfg.connect_timeout, lookup).await {
            Ok(Ok(addrs)) => {
                for addr in addrs {
                    if is_self(addr, local) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "target {} resolves to {addr}, this proxy's own listening address",
                                cfg.target
                            ),
                        ));
                    }
                }
            }
            // Resolution is retried for each connection; a failure then is a verdict.
            Ok(Err(e)) => {
                tracing::warn!(target = %cfg.target, error = %e, "Target does not resolve now")
            }
            Err(_) => tracing::warn!(target = %cfg.target, "Target resolution timed out"),
        }
        Ok(Proxy {
            listener,
            local,
            cfg: Arc::new(cfg),
            host,
            port,
        })
    }

    /// The address clients connect to (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts and relays until `shutdown` completes or `max_connections` connections have
    /// ended (and their reports are sent), sending one report per ended connection.
    /// Connections still running when `shutdown` completes are dropped without a report.
    ///
    /// A failing or panicking connection never takes the others or the listener down (a panic
    /// still yields a report, with cause `internal_error`).
    pub async fn run(
        self,
        reports: mpsc::Sender<ConnectionReport>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let conn = Arc::new(ConnCtx {
            cfg: Arc::clone(&self.cfg),
            host: self.host,
            port: self.port,
            #[cfg(target_os = "linux")]
            pipes: splice::PipePool::new(
                self.cfg.max_pipes.unwrap_or(self.cfg.max_concurrent),
                self.cfg.pipe_size,
            ),
        });
        let permits = Arc::new(Semaphore::new(self.cfg.max_concurrent.max(1)));
        let limit = self.cfg.max_connections;
        let mut tasks = JoinSet::new();
        let mut running: HashMap<task::Id, Meta> = HashMap::new();
        let (mut next_id, mut accepted, mut ended) = (1_u64, 0_u64, 0_u64);
        let mut backoff = MIN_BACKOFF;
        tokio::pin!(shutdown);
        loop {
            if limit.is_some_and(|n| ended >= n) {
                return Ok(());
            }
            let accepting = limit.is_none_or(|n| accepted < n);
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::debug!(running = tasks.len(), "Shutting down");
                    return Ok(());
                }
                Some(joined) = tasks.join_next_with_id() => {
                    ended += 1;
                    match joined {
                        Ok((tid, ())) => {
                            running.remove(&tid);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "Connection task failed");
                            let meta = running.remove(&e.id());
                            let report = internal_error_report(meta, &self.cfg, &e.to_string());
                            if reports.send(report).await.is_err() {
                                tracing::debug!("Report receiver gone");
                            }
                        }
                    }
                }
                (stream, peer, permit) = accept(&self.listener, &permits, &mut backoff), if accepting => {
                    let id = next_id;
                    next_id += 1;
                    accepted += 1;
                    let ctx = Arc::clone(&conn);
                    let reports = reports.clone();
                    let span = tracing::info_span!("conn", id);
                    let started_at = now_rfc3339();
                    let meta = Meta { id, peer, started_at: started_at.clone() };
                    let handle = tasks.spawn(
                        async move {
                            let report = serve(stream, peer, id, started_at, &ctx).await;
                            drop(permit);
                            // Each task waits for the receiver itself: a slow reader of reports
                            // never stops the listener.
                            if reports.send(report).await.is_err() {
                                tracing::debug!("Report receiver gone");
                            }
                        }
                        .instrument(span),
                    );
                    running.insert(handle.id(), meta);
                }
            }
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Takes a permit, then a connection; accept errors (EMFILE, ENOBUFS...) back off
/// exponentially instead of spinning.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    backoff: &mut Duration,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
            // INVARIANT: the semaphore is never closed; should it be, stop accepting.
            return std::future::pending().await;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                *backoff = MIN_BACKOFF;
                return (stream, peer, permit);
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis(), "Accept failed");
                drop(permit);
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn is_self(addr: SocketAddr, local: SocketAddr) -> bool {
    addr == local
        || (local.ip().is_unspecified()
            && addr.port() == local.port()
            && (addr.ip().is_loopback() || addr.ip().is_unspecified()))
}

/// What each connection task needs.
#[derive(Debug)]
struct ConnCtx {
    cfg: Arc<ProxyConfig>,
    host: String,
    port: u16,
    /// The splice pipes of every connection.
    #[cfg(target_os = "linux")]
    pipes: splice::PipePool,
}

/// What the listener remembers of a running connection, to report it should its task panic.
#[derive(Debug)]
struct Meta {
    id: u64,
    peer: SocketAddr,
    started_at: String,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One connection, from accept to report.
async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    id: u64,
    started_at: String,
    ctx: &ConnCtx,
) -> ConnectionReport {
    let cfg = &ctx.cfg;
    let clock = Clock::start();
    let mut tap = cfg.record.as_ref().map(|r| {
        let listen = client.local_addr().unwrap_or(cfg.listen);
        tap::Tap::start(r, id, peer, listen)
    });
    let mut scfg = cfg.session.clone();
    // Certificate checks need "now" and the name the certificate should carry (the target).
    scfg.now_unix
        .get_or_insert_with(|| time::OffsetDateTime::now_utc().unix_timestamp());
    scfg.host_name.get_or_insert_with(|| ctx.host.clone());
    let mut session = Session::new(scfg);
    let mut tls_keylog = None;
    tracing::info!(client = %peer, "Connection accepted");
    // The negotiation is latency-bound: no Nagle delays on either leg.
    if let Err(e) = client.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY failed");
    }
    let mut c2s = Half::new();
    // The connect and inspection stages are boxed: their state is freed once they are over,
    // instead of sizing the task that an idle relayed connection keeps for hours.
    let connected = Box::pin(inspect::connect(
        &client,
        &mut c2s,
        &ctx.host,
        ctx.port,
        cfg.connect_timeout,
    ))
    .await;
    let mut host_addr = None;
    let mut bytes = (0, 0);
    match connected {
        Connected::Failed(failure) => {
            tracing::info!(?failure, "Host connection failed");
            session.on_connect_result(Err(failure), clock.now());
            // Reset the client, as the closed port would have.
            if let Err(e) = client.set_zero_linger() {
                tracing::debug!(error = %e, "SO_LINGER 0 failed");
            }
            drop(client);
        }
        Connected::ClientReset(e) => {
            tracing::debug!(error = %e, "Client reset while connecting");
            session.on_close(Side::Client, CloseKind::Rst, clock.now());
        }
        Connected::HostReset(e) => {
            // The TCP handshake completed and the host reset at once (a listener that accepts
            // and resets): what the client sent is judged, then the reset is passed on.
            tracing::info!(error = %e, "Host reset the connection right after accepting it");
            session.on_connect_result(Ok(()), clock.now());
            let early = c2s.pending();
            if !early.is_empty() {
                session.feed(Direction::ClientToHost, early, clock.now());
            }
            session.on_close(Side::Host, CloseKind::Rst, clock.now());
            if let Err(e) = client.set_zero_linger() {
                tracing::debug!(error = %e, "SO_LINGER 0 failed");
            }
            drop(client);
        }
        // `--security` / `--fresh-cert`: the experiment's own relay (`rewrite.rs`).
        Connected::Host(host) if cfg.security.is_some() || cfg.fresh_cert.is_some() => {
            session.on_connect_result(Ok(()), clock.now());
            if let Err(e) = host.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY failed");
            }
            host_addr = host.peer_addr().ok().map(|a| a.to_string());
            if let Some(t) = &mut tap {
                t.connected(host.peer_addr().ok(), host.local_addr().ok());
                // What the client sent while rdpdiag connected: its socket's first bytes.
                t.chunk(
                    Leg::Client,
                    Direction::ClientToHost,
                    c2s.pending(),
                    clock.now(),
                );
            }
            // Both sockets report what crosses them (`tapped.rs`); the tap comes back after.
            let rec = Arc::new(std::sync::Mutex::new(tap.take()));
            // Boxed: the experiments' TLS state would otherwise size every connection's task
            // (tokio allocates the largest state of the whole future for each connection).
            let (c, s, keylog) = Box::pin(rewrite::serve(
                client,
                host,
                c2s,
                &mut session,
                clock,
                ctx,
                &rec,
            ))
            .await;
            tap = tapped::lock(&rec).take();
            bytes = (c, s);
            tls_keylog = keylog;
        }
        Connected::Host(host) => {
            session.on_connect_result(Ok(()), clock.now());
            if let Err(e) = host.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY failed");
            }
            host_addr = host.peer_addr().ok().map(|a| a.to_string());
            // What the client sent meanwhile reaches the host now: the session sees it then.
            let early = c2s.pending();
            if let Some(t) = &mut tap {
                t.connected(host.peer_addr().ok(), host.local_addr().ok());
                t.chunk(Leg::Client, Direction::ClientToHost, early, clock.now());
            }
            if !early.is_empty() {
                session.feed(Direction::ClientToHost, early, clock.now());
            }
            let fed = early.len() as u64;
            if c2s.eof {
                session.on_close(Side::Client, CloseKind::Fin, clock.now());
            }
            let mut relay = Relay::new(client, host, c2s);
            let inspected = Box::pin(inspect::inspect(
                &mut relay,
                &mut session,
                tap.as_mut(),
                clock,
                fed,
                cfg.inspect_limit,
            ))
            .await;
            match inspected {
                Inspected::Done => {}
                Inspected::Stalled => {
                    tracing::info!(phase = %session.phase(), "Phase stalled; ending the connection");
                }
                Inspected::HandOff => {
                    tracing::debug!(phase = %session.phase(), "Inspection over; relaying");
                    let mut on_close = |side: Side, kind| session.on_close(side, kind, clock.now());
                    // Recording: user-space copies with the tap up to the record limit first.
                    let ended = match &mut tap {
                        Some(t) => tap::record_rest(&mut relay, t, clock, &mut on_close).await,
                        None => false,
                    };
                    if !ended {
                        hot_path(&mut relay, ctx, on_close).await;
                    }
                }
            }
            bytes = (relay.c2s.bytes, relay.s2c.bytes);
            if inspected == Inspected::Stalled {
                relay.abort();
            }
        }
    }
    let verdict = session.verdict();
    tracing::debug!(
        outcome = verdict.outcome.name(),
        cause = verdict.cause,
        c2s = bytes.0,
        s2c = bytes.1,
        "Connection ended"
    );
    let report = ConnectionReport {
        id,
        client: peer.to_string(),
        target: cfg.target.clone(),
        host_addr,
        started_at,
        duration_ms: clock.now().0 / 1000,
        bytes_client_to_host: bytes.0,
        bytes_host_to_client: bytes.1,
        verdict,
        events: session.events().to_vec(),
        tls_keylog,
    };
    if let Some(mut t) = tap {
        if let Some(k) = &report.tls_keylog {
            t.set_key_log(k.clone());
        }
        t.finish(&report);
    }
    report
}

/// Relays the rest with the configured mover (splice with pooled pipes on Linux, falling back
/// to copies read by read when no pipe is to be had).
async fn hot_path(relay: &mut Relay, ctx: &ConnCtx, on_close: impl FnMut(Side, CloseKind)) {
    #[cfg(target_os = "linux")]
    if ctx.cfg.hot_path == HotPath::Splice {
        // The buffers of inspection are not needed once drained: an idle connection holds none.
        relay.c2s.free_buf();
        relay.s2c.free_buf();
        let mut mover = splice::Splice::new(ctx.pipes.clone());
        return pipe::run(relay, &mut mover, on_close).await;
    }
    pipe::run(relay, &mut pipe::Copying, on_close).await;
}

/// The report of a connection whose task panicked.
fn internal_error_report(meta: Option<Meta>, cfg: &ProxyConfig, error: &str) -> ConnectionReport {
    let meta = meta.unwrap_or(Meta {
        id: 0,
        peer: cfg.listen,
        started_at: String::new(),
    });
    let verdict = Verdict {
        outcome: Outcome::Unknown,
        cause: "internal_error",
        summary: format!("rdpdiag failed while relaying this connection: {error}"),
        ..Session::new(cfg.session.clone()).verdict()
    };
    ConnectionReport {
        id: meta.id,
        client: meta.peer.to_string(),
        target: cfg.target.clone(),
        host_addr: None,
        started_at: meta.started_at,
        duration_ms: 0,
        bytes_client_to_host: 0,
        bytes_host_to_client: 0,
        verdict,
        events: Vec::new(),
        tls_keylog: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| parse_target(s);
        assert_eq!(t("rds01"), Some(("rds01".into(), 3389)));
        assert_eq!(
            t("rds01.corp.example:3390"),
            Some(("rds01.corp.example".into(), 3390))
        );
        assert_eq!(t("10.0.0.5"), Some(("10.0.0.5".into(), 3389)));
        assert_eq!(t("10.0.0.5:4000"), Some(("10.0.0.5".into(), 4000)));
        assert_eq!(t("::1"), Some(("::1".into(), 3389)));
        assert_eq!(t("[::1]"), Some(("::1".into(), 3389)));
        assert_eq!(t("[::1]:3390"), Some(("::1".into(), 3390)));
        assert_eq!(t(""), None);
        assert_eq!(t("host:"), None);
        assert_eq!(t("host:0"), None);
        assert_eq!(t("host:99999"), None);
        assert_eq!(t("a b"), None);
    }

    #[test]
    fn self_loop() {
        let l: SocketAddr = "0.0.0.0:3389".parse().unwrap();
        assert!(is_self("127.0.0.1:3389".parse().unwrap(), l));
        assert!(!is_self("127.0.0.1:3390".parse().unwrap(), l));
        let l: SocketAddr = "127.0.0.2:3389".parse().unwrap();
        assert!(!is_self("127.0.0.1:3389".parse().unwrap(), l));
        assert!(is_self("127.0.0.2:3389".parse().unwrap(), l));
    }
}
