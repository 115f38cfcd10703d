//! `proxy --record DIR`: a recording tap per connection and the task that writes its bundle.
//!
//! The relay hands each chunk it reads to [`Tap::chunk`], which never waits: it copies the chunk
//! into a [`Bytes`] only when the bounded queue to the writer has room ([`mpsc::Sender::try_reserve`])
//! and the connection is under its recording limit; otherwise it counts the bytes as lost, with
//! where and why, and the bundle says so. The writer task collects the chunks and, when the
//! connection has ended ([`Tap::finish`] with the report), builds the bundle with
//! [`record::write_bundle`] and writes it on a blocking thread. A slow disk therefore delays only
//! the bundle, never a byte of the relay.
//!
//! After inspection the relay keeps copying through user space with the tap
//! ([`record_rest`]) until the recording limit, then moves on to its hot path (splice) and
//! records nothing more: bulk session traffic is recorded up to the limit, then counted only.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use super::inspect::Clock;
use super::pipe::{Copying, Relay, Step};
use crate::record::{self, Chunk, Leg, Loss, LossReason, Options, Trace};
use crate::report::ConnectionReport;
use crate::session::{CloseKind, Direction, Micros, Side};

/// Bytes recorded per connection (both legs and directions) unless told otherwise.
pub const DEFAULT_RECORD_LIMIT: u64 = 4 * 1024 * 1024;

/// Chunks queued to a connection's writer at most (each at most one relay buffer).
pub const DEFAULT_QUEUE: usize = 256;

/// Where and how to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Bundles go to `dir/<time>-<client>-<id>/`.
    pub dir: PathBuf,
    pub options: Options,
    /// Bytes recorded per connection; past it they are counted only.
    pub limit: u64,
    /// Chunks queued to the writer at most; when full, chunks are counted as lost.
    pub queue: usize,
    writers: Arc<Writers>,
}

impl RecordConfig {
    pub fn new(dir: impl Into<PathBuf>, options: Options) -> Self {
        Self {
            dir: dir.into(),
            options,
            limit: DEFAULT_RECORD_LIMIT,
            queue: DEFAULT_QUEUE,
            writers: Arc::default(),
        }
    }

    /// Waits until the bundles of every connection that has ended are written (call it after
    /// `Proxy::run` returns, before exiting).
    pub async fn flush(&self) {
        loop {
            let idle = self.writers.idle.notified();
            if self.writers.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Writer tasks still running.
#[derive(Debug, Default)]
struct Writers {
    running: AtomicUsize,
    idle: Notify,
}

/// Counts a writer task as running until dropped (even if the task panics).
struct WriterGuard(Arc<Writers>);

impl WriterGuard {
    fn new(w: &Arc<Writers>) -> Self {
        w.running.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(w))
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.idle.notify_waiters();
    }
}

/// What the tap sends for each recorded chunk.
#[derive(Debug)]
struct Msg {
    leg: Leg,
    chunk: Chunk,
}

/// What the writer learns when the connection has ended.
#[derive(Debug)]
struct Finish {
    report: ConnectionReport,
    host: Option<SocketAddr>,
    proxy_local: Option<SocketAddr>,
    losses: Vec<Loss>,
    key_log: Option<String>,
}

/// Fixed facts of the connection, known at accept.
#[derive(Debug, Clone)]
struct Meta {
    id: u64,
    client: SocketAddr,
    listen: SocketAddr,
    started_unix_micros: i64,
}

/// One connection's recording tap.
#[derive(Debug)]
pub struct Tap {
    tx: mpsc::Sender<Msg>,
    finish: oneshot::Sender<Finish>,
    limit: u64,
    recorded: u64,
    /// Next offset per leg and direction: client c2s, client s2c, host c2s, host s2c.
    offsets: [u64; 4],
    losses: Vec<Loss>,
    /// When the recording limit was reached.
    limit_at: Option<Micros>,
    key_log: Option<String>,
    host: Option<SocketAddr>,
    proxy_local: Option<SocketAddr>,
}

impl Tap {
    /// Starts recording a connection accepted from `client` on `listen`: spawns its writer.
    pub fn start(cfg: &RecordConfig, id: u64, client: SocketAddr, listen: SocketAddr) -> Tap {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (finish, finished) = oneshot::channel();
        let started_unix_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_micros()).ok())
            .unwrap_or(0);
        let meta = Meta {
            id,
            client,
            listen,
            started_unix_micros,
        };
        let guard = WriterGuard::new(&cfg.writers);
        tokio::spawn(writer(rx, finished, meta, cfg.clone(), guard));
        Tap {
            tx,
            finish,
            limit: cfg.limit,
            recorded: 0,
            offsets: [0; 4],
            losses: Vec::new(),
            limit_at: None,
            key_log: None,
            host: None,
            proxy_local: None,
        }
    }

    /// The TCP connection to the host is up.
    pub fn connected(&mut self, host: Option<SocketAddr>, local: Option<SocketAddr>) {
        self.host = host;
        self.proxy_local = local;
    }

    /// The TLS key log of the sessions rdpdiag terminated (`--fresh-cert`), SSLKEYLOGFILE lines.
    pub fn set_key_log(&mut self, key_log: String) {
        self.key_log = Some(key_log);
    }

    /// Still under the recording limit.
    pub fn recording(&self) -> bool {
        self.recorded < self.limit
    }

    /// A chunk the relay read on `leg` (the client leg's chunks stand for both legs unless
    /// rdpdiag terminated TLS and records the host leg too). Never waits.
    pub fn chunk(&mut self, leg: Leg, dir: Direction, data: &[u8], at: Micros) {
        if data.is_empty() {
            return;
        }
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let slot = match (leg, dir) {
            (Leg::Client, Direction::ClientToHost) => 0,
            (Leg::Client, Direction::HostToClient) => 1,
            (Leg::Host, Direction::ClientToHost) => 2,
            (Leg::Host, Direction::HostToClient) => 3,
        };
        let Some(offset) = self.offsets.get_mut(slot) else {
            return;
        };
        let start = *offset;
        *offset = offset.saturating_add(len);
        if !self.recording() {
            self.limit_at.get_or_insert(at);
            return self.lost(leg, dir, at, start, len, LossReason::RecordLimit);
        }
        let sent = match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Msg {
                    leg,
                    chunk: Chunk {
                        at,
                        dir,
                        data: Bytes::copy_from_slice(data),
                    },
                });
                true
            }
            Err(_) => false,
        };
        if sent {
            self.recorded = self.recorded.saturating_add(len);
            if !self.recording() {
                self.limit_at = Some(at);
            }
        } else {
            self.lost(leg, dir, at, start, len, LossReason::QueueFull);
        }
    }

    /// Counts bytes not recorded, merged with the previous loss when contiguous.
    fn lost(
        &mut self,
        leg: Leg,
        dir: Direction,
        at: Micros,
        offset: u64,
        len: u64,
        reason: LossReason,
    ) {
        if let Some(last) = self
            .losses
            .iter_mut()
            .rev()
            .find(|l| l.leg == leg && l.dir == dir)
            && last.reason == reason
            && last.offset.saturating_add(last.len) == offset
        {
            last.len = last.len.saturating_add(len);
            return;
        }
        self.losses.push(Loss {
            leg,
            dir,
            at,
            offset,
            len,
            reason,
        });
    }

    /// The connection has ended: the writer builds and writes the bundle. Bytes the relay
    /// delivered past what the tap saw (the hot path after the recording limit) are counted as
    /// not recorded.
    pub fn finish(mut self, report: &ConnectionReport) {
        let end = Micros(report.duration_ms.saturating_mul(1000));
        for (slot, dir, delivered) in [
            (0, Direction::ClientToHost, report.bytes_client_to_host),
            (1, Direction::HostToClient, report.bytes_host_to_client),
        ] {
            let seen = self.offsets.get(slot).copied().unwrap_or(0);
            if delivered > seen {
                let at = self.limit_at.unwrap_or(end);
                self.lost(
                    Leg::Client,
                    dir,
                    at,
                    seen,
                    delivered - seen,
                    LossReason::RecordLimit,
                );
            }
        }
        let Tap {
            tx,
            finish,
            losses,
            key_log,
            host,
            proxy_local,
            ..
        } = self;
        // Closing the queue first tells the writer every chunk is in.
        drop(tx);
        let fin = Finish {
            report: report.clone(),
            host,
            proxy_local,
            losses,
            key_log,
        };
        if finish.send(fin).is_err() {
            tracing::debug!("Bundle writer gone");
        }
    }
}

/// After inspection: relays with the tap (user-space copies) while under the recording limit.
/// Returns true when the relay ended meanwhile; otherwise the hot path takes over.
pub(crate) async fn record_rest(
    relay: &mut Relay,
    tap: &mut Tap,
    clock: Clock,
    mut on_close: impl FnMut(Side, CloseKind),
) -> bool {
    let mut copying = Copying;
    while tap.recording() {
        match relay.step(&mut copying, true).await {
            Step::Read(dir) => tap.chunk(Leg::Client, dir, relay.half(dir).pending(), clock.now()),
            Step::Closed(side, kind) => on_close(side, kind),
            Step::Done => return true,
        }
    }
    false
}

async fn writer(
    mut rx: mpsc::Receiver<Msg>,
    finished: oneshot::Receiver<Finish>,
    meta: Meta,
    cfg: RecordConfig,
    guard: WriterGuard,
) {
    let mut client_leg = Vec::new();
    let mut host_leg = Vec::new();
    while let Some(m) = rx.recv().await {
        match m.leg {
            Leg::Client => client_leg.push(m.chunk),
            Leg::Host => host_leg.push(m.chunk),
        }
    }
    let Ok(fin) = finished.await else {
        tracing::debug!(id = meta.id, "Connection ended without a report: no bundle");
        return;
    };
    let events = fin.report.events;
    let trace = Trace {
        id: meta.id,
        client: meta.client,
        listen: meta.listen,
        target: fin.report.target,
        host: fin.host,
        proxy_local: fin.proxy_local,
        started_unix_micros: meta.started_unix_micros,
        started_at: fin.report.started_at,
        duration: Micros(fin.report.duration_ms.saturating_mul(1000)),
        client_leg,
        host_leg: (!host_leg.is_empty()).then_some(host_leg),
        connect: record::connect_from_events(&events),
        closes: record::closes_from_events(&events),
        losses: fin.losses,
        key_log: fin.key_log,
        verdict: fin.report.verdict,
        events,
        bytes_client_to_host: fin.report.bytes_client_to_host,
        bytes_host_to_client: fin.report.bytes_host_to_client,
    };
    let id = meta.id;
    let written = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        write_bundle_to(&cfg.dir, &trace, &cfg.options)
    })
    .await;
    match written {
        Ok(Ok(path)) => tracing::info!(id, path = %path.display(), "Bundle written"),
        Ok(Err(e)) => tracing::warn!(id, error = %e, "Bundle not written"),
        Err(e) => tracing::warn!(id, error = %e, "Bundle writer failed"),
    }
}

/// Writes a trace's bundle as `dir/<time>-<client>-<id>/` (a `-2`, `-3`... suffix if that
/// exists); files that hold secrets are created readable by the owner only (0600 on Unix).
pub fn write_bundle_to(dir: &Path, trace: &Trace, opts: &Options) -> io::Result<PathBuf> {
    let files = record::write_bundle(trace, opts);
    std::fs::create_dir_all(dir)?;
    let name = record::bundle_dir_name(trace, opts);
    let mut path = dir.join(&name);
    let mut n = 1u32;
    loop {
        match std::fs::create_dir(&path) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {
                n += 1;
                path = dir.join(format!("{name}-{n}"));
            }
            Err(e) => return Err(e),
        }
    }
    for f in &files {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(if f.private { 0o600 } else { 0o644 });
        }
        let mut file = open.open(path.join(f.name))?;
        io::Write::write_all(&mut file, &f.data)?;
        file.sync_all()?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Session, SessionConfig};

    fn report() -> ConnectionReport {
        ConnectionReport {
            id: 3,
            client: "192.0.2.10:50000".into(),
            target: "rds01".into(),
            host_addr: None,
            started_at: String::new(),
            duration_ms: 1,
            bytes_client_to_host: 0,
            bytes_host_to_client: 0,
            verdict: Session::new(SessionConfig::default()).verdict(),
            events: Vec::new(),
            tls_keylog: None,
        }
    }

    /// A writer that never gets to run (a stuck disk, a busy runtime): the tap never waits,
    /// drops what does not fit, and says where.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_never_blocks_and_counts_losses() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RecordConfig::new(dir.path(), Options::default());
        cfg.queue = 2;
        let mut tap = Tap::start(
            &cfg,
            3,
            "192.0.2.10:50000".parse().unwrap(),
            "127.0.0.1:3389".parse().unwrap(),
        );
        // The writer task has not run yet on this single-threaded runtime: nothing is consumed.
        for i in 0..10u64 {
            tap.chunk(Leg::Client, Direction::ClientToHost, &[0u8; 100], Micros(i));
        }
        tap.chunk(Leg::Client, Direction::HostToClient, &[0u8; 7], Micros(20));
        assert_eq!(tap.recorded, 200);
        assert_eq!(
            tap.losses,
            [
                Loss {
                    leg: Leg::Client,
                    dir: Direction::ClientToHost,
                    at: Micros(2),
                    offset: 200,
                    len: 800,
                    reason: LossReason::QueueFull
                },
                Loss {
                    leg: Leg::Client,
                    dir: Direction::HostToClient,
                    at: Micros(20),
                    offset: 0,
                    len: 7,
                    reason: LossReason::QueueFull
                },
            ]
        );
        tap.finish(&report());
        cfg.flush().await;
        let bundles: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(bundles.len(), 1);
        let b = bundles.into_iter().next().unwrap().unwrap().path();
        let txt = std::fs::read_to_string(b.join("report.txt")).unwrap();
        assert!(
            txt.contains("NOT RECORDED: 800 B C->S on the client leg from offset 200"),
            "{txt}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_limit_stops_recording_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RecordConfig::new(dir.path(), Options::default());
        cfg.limit = 250;
        let mut tap = Tap::start(
            &cfg,
            4,
            "192.0.2.10:50000".parse().unwrap(),
            "127.0.0.1:3389".parse().unwrap(),
        );
        for i in 0..5u64 {
            tap.chunk(Leg::Client, Direction::HostToClient, &[1u8; 100], Micros(i));
            tokio::task::yield_now().await;
        }
        assert!(!tap.recording());
        assert_eq!(
            tap.losses,
            [Loss {
                leg: Leg::Client,
                dir: Direction::HostToClient,
                at: Micros(3),
                offset: 300,
                len: 200,
                reason: LossReason::RecordLimit
            }]
        );
        tap.finish(&report());
        cfg.flush().await;
    }

    #[test]
    fn bundle_directories_never_clash_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::new(SessionConfig::default());
        session.on_connect_result(Ok(()), Micros(1));
        let trace = Trace {
            id: 1,
            client: "192.0.2.10:50000".parse().unwrap(),
            listen: "127.0.0.1:3389".parse().unwrap(),
            target: "rds01".into(),
            host: Some("198.51.100.20:3389".parse().unwrap()),
            proxy_local: None,
            started_unix_micros: 1_795_290_223_000_000,
            started_at: record::rfc3339(1_795_290_223_000_000),
            duration: Micros(5),
            client_leg: vec![Chunk {
                at: Micros(2),
                dir: Direction::ClientToHost,
                data: Bytes::from_static(b"\x03\x00\x00\x04"),
            }],
            host_leg: None,
            connect: record::Connect::Connected { at: Micros(1) },
            closes: Vec::new(),
            losses: Vec::new(),
            key_log: Some("CLIENT_RANDOM 00 11\n".into()),
            verdict: session.verdict(),
            events: session.events().to_vec(),
            bytes_client_to_host: 4,
            bytes_host_to_client: 0,
        };
        let a = write_bundle_to(dir.path(), &trace, &Options::default()).unwrap();
        let b = write_bundle_to(dir.path(), &trace, &Options::default()).unwrap();
        assert_ne!(a, b);
        assert!(b.to_string_lossy().ends_with("-1-2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(a.join("capture.pcapng")), 0o600);
            assert_eq!(mode(a.join("events.jsonl")) & 0o600, 0o600);
        }
    }
}
