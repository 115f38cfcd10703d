//! Hostile peers against the real proxy on 127.0.0.1: lying TPKT and TLS lengths from either
//! side, a flood of garbage, a 1-byte-per-second sender, half-open connections, a reset in every
//! phase, a client that never reads, a host that never answers.
//!
//! Each case checks that the proxy stays up (a new connection still works afterwards), that a
//! healthy transfer running alongside is relayed byte-exact (SHA-256 at both ends), that the
//! hostile connection's own bytes are relayed exactly as sent, that memory stays bounded, and
//! that the report gives a clear verdict (never `internal_error`).
//!
//! The peers are scripted: a connection whose first byte is `H` is a healthy echo; any other
//! connection the host plays the next [`Script`] queued by the test. Cases run one at a time
//! (they measure the process's RSS), each with its own proxy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdpdiag::relay::{Proxy, ProxyConfig};
use rdpdiag::report::ConnectionReport;
use rdpdiag::session::{CloseKind, EventKind, Outcome, Phase, Side};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Guards against a hung test; never an assertion on speed.
const GUARD: Duration = Duration::from_secs(120);

/// The proxy's stall timeout in these tests.
const STALL: Duration = Duration::from_secs(2);

/// Bytes an [`Act::Flood`] wrote before its writes blocked, plus one (0: not blocked yet).
static FLOODED: AtomicU64 = AtomicU64::new(0);

/// Cases run one at a time: they compare the process's RSS before and after.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress for {GUARD:?}"))
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reference E1: CR requesting SSL|HYBRID|HYBRID_EX.
const CR: &str = "03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69 65 3a 20 6d 73 74 73 68 61
                  73 68 3d 61 6c 69 63 65 0d 0a 01 00 08 00 0b 00 00 00";
/// CC selecting HYBRID (TLS, then CredSSP).
const CC_HYBRID: &str = "03 00 00 13 0e d0 00 00 12 34 00 02 1f 08 00 02 00 00 00";

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Peers.

/// One step of a scripted peer.
#[derive(Debug, Clone)]
enum Act {
    Send(Vec<u8>),
    /// Read until this many bytes have arrived in total, checking they are the expected ones.
    RecvTotal(u64),
    /// Read until EOF or reset (whichever the other side does).
    Drain,
    /// Half-close: FIN, keep reading.
    Fin,
    /// Reset: SO_LINGER 0 and close.
    Rst,
    /// Write until writes block for a second; the count goes to the flood channel.
    Flood,
    Sleep(Duration),
    /// Tell the other peer this one has got everything so far ...
    Signal,
    /// ... and wait for that (so that a reset comes after every byte was delivered).
    AwaitSignal,
}

static SIGNAL: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// What a scripted peer saw.
#[derive(Debug, Default)]
struct Seen {
    /// Bytes received, hashed, and the count.
    hash: Vec<u8>,
    received: u64,
    /// The bytes sent, hashed.
    sent_hash: Vec<u8>,
    sent: u64,
    /// How the reading ended: EOF (Some(false)), reset or other error (Some(true)).
    ended_with_error: Option<bool>,
    flooded: Option<u64>,
}

type Script = Vec<Act>;

/// Plays `script` on `s`.
async fn play(mut s: TcpStream, script: Script) -> Seen {
    let mut seen = Seen::default();
    let (mut rx_hash, mut tx_hash) = (Sha256::new(), Sha256::new());
    let mut buf = vec![0u8; 64 * 1024];
    for act in script {
        match act {
            Act::Send(bytes) => {
                if s.write_all(&bytes).await.is_err() {
                    seen.ended_with_error = Some(true);
                    break;
                }
                tx_hash.update(&bytes);
                seen.sent += bytes.len() as u64;
            }
            Act::RecvTotal(total) => {
                while seen.received < total {
                    let want = ((total - seen.received) as usize).min(buf.len());
                    match s.read(&mut buf[..want]).await {
                        Ok(0) => {
                            seen.ended_with_error = Some(false);
                            break;
                        }
                        Ok(n) => {
                            rx_hash.update(&buf[..n]);
                            seen.received += n as u64;
                        }
                        Err(_) => {
                            seen.ended_with_error = Some(true);
                            break;
                        }
                    }
                }
            }
            Act::Drain => loop {
                match s.read(&mut buf).await {
                    Ok(0) => {
                        seen.ended_with_error = Some(false);
                        break;
                    }
                    Ok(n) => {
                        rx_hash.update(&buf[..n]);
                        seen.received += n as u64;
                    }
                    Err(_) => {
                        seen.ended_with_error = Some(true);
                        break;
                    }
                }
            },
            Act::Fin => s.shutdown().await.unwrap(),
            Act::Rst => {
                s.set_zero_linger().unwrap();
                break;
            }
            Act::Flood => {
                let chunk = vec![0x5a; 64 * 1024];
                let mut n = 0u64;
                loop {
                    let wrote = tokio::time::timeout(Duration::from_secs(1), s.write(&chunk)).await;
                    match wrote {
                        Ok(Ok(k)) => {
                            tx_hash.update(&chunk[..k]);
                            n += k as u64;
                        }
                        Ok(Err(e)) => panic!("flood write failed: {e}"),
                        Err(_blocked) => break,
                    }
                }
                seen.sent += n;
                seen.flooded = Some(n);
                FLOODED.store(n + 1, Ordering::SeqCst);
            }
            Act::Sleep(d) => tokio::time::sleep(d).await,
            Act::Signal => SIGNAL.notify_one(),
            Act::AwaitSignal => SIGNAL.notified().await,
        }
    }
    seen.hash = rx_hash.finalize().to_vec();
    seen.sent_hash = tx_hash.finalize().to_vec();
    seen
}

/// The host behind the proxy: an echo for connections starting with `H`, else the next queued
/// script (an echo when none is queued). What each scripted connection saw goes to `seen`.
struct Host {
    addr: SocketAddr,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Host {
    async fn start() -> Host {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scripts: Arc<Mutex<VecDeque<Script>>> = Arc::default();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let queue = Arc::clone(&scripts);
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let queue = Arc::clone(&queue);
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    // The host's side of a connection whose client never sends gets the next
                    // script only when something arrives: such cases queue none.
                    let healthy = matches!(s.peek(&mut first).await, Ok(1) if first[0] == b'H');
                    if healthy {
                        echo(s).await;
                        return;
                    }
                    let script = queue.lock().unwrap().pop_front();
                    match script {
                        Some(script) => {
                            seen_tx.send(play(s, script).await).ok();
                        }
                        None => echo(s).await,
                    }
                });
            }
        });
        Host {
            addr,
            scripts,
            seen,
        }
    }

    fn queue(&self, script: Script) {
        self.scripts.lock().unwrap().push_back(script);
    }

    async fn seen(&mut self) -> Seen {
        guard("host script", self.seen.recv()).await.unwrap()
    }
}

async fn echo(mut s: TcpStream) {
    let (mut rd, mut wr) = s.split();
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        wr.shutdown().await.ok();
    }
}

/// The proxy under test, with its reports.
struct Harness {
    addr: SocketAddr,
    reports: mpsc::Receiver<ConnectionReport>,
    early: Vec<ConnectionReport>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    async fn start(target: SocketAddr, tweak: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
        cfg.stall_timeout = STALL;
        tweak(&mut cfg);
        let proxy = Proxy::bind(cfg).await.unwrap();
        let addr = proxy.local_addr();
        let (tx, reports) = mpsc::channel(64);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.run(tx, async move {
            stopped.await.ok();
        }));
        Harness {
            addr,
            reports,
            early: Vec::new(),
            stop: Some(stop),
            task,
        }
    }

    /// The report of the connection from `client` (the client's local address).
    async fn report_for(&mut self, client: SocketAddr) -> ConnectionReport {
        let client = client.to_string();
        if let Some(i) = self.early.iter().position(|r| r.client == client) {
            return self.early.remove(i);
        }
        loop {
            let r = guard("report", self.reports.recv()).await.unwrap();
            if r.client == client {
                return r;
            }
            self.early.push(r);
        }
    }

    async fn stop(mut self) {
        assert!(!self.task.is_finished(), "the proxy stopped by itself");
        self.stop.take().unwrap().send(()).unwrap();
        guard("proxy stop", self.task).await.unwrap().unwrap();
    }
}

/// A healthy client: sends `H` then pseudo-random chunks until told to stop, reads the echo,
/// and checks it byte for byte (SHA-256). Returns the bytes relayed each way.
struct Healthy {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(SocketAddr, u64)>,
}

impl Healthy {
    async fn start(proxy: SocketAddr) -> Healthy {
        let s = TcpStream::connect(proxy).await.unwrap();
        let local = s.local_addr().unwrap();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (mut rd, mut wr) = s.into_split();
        let task = tokio::spawn(async move {
            let writer = async move {
                let mut hash = Sha256::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                let mut chunk = vec![0u8; 16 * 1024];
                chunk[0] = b'H';
                let mut sent = 0u64;
                loop {
                    wr.write_all(&chunk).await.unwrap();
                    hash.update(&chunk);
                    sent += chunk.len() as u64;
                    if stopped.try_recv().is_ok() {
                        break;
                    }
                    for b in chunk.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                wr.shutdown().await.unwrap();
                (sent, hash.finalize().to_vec())
            };
            let reader = async move {
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0u64;
                loop {
                    let n = rd.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return (got, hash.finalize().to_vec());
                    }
                    hash.update(&buf[..n]);
                    got += n as u64;
                }
            };
            let ((sent, sent_hash), (got, got_hash)) = tokio::join!(writer, reader);
            assert_eq!(got, sent, "healthy connection: echo length");
            assert_eq!(
                got_hash, sent_hash,
                "healthy connection: echoed bytes differ"
            );
            (local, sent)
        });
        Healthy { stop, task }
    }

    /// Stops sending, checks the echo and the report.
    async fn finish(self, h: &mut Harness) {
        self.stop.send(()).unwrap();
        let (local, sent) = guard("healthy connection", self.task).await.unwrap();
        let r = h.report_for(local).await;
        assert_eq!(
            (r.bytes_client_to_host, r.bytes_host_to_client),
            (sent, sent)
        );
        assert_ne!(r.verdict.cause, "internal_error");
    }
}

/// Runs `case` with a fresh host and proxy, a healthy connection alongside, and checks that
/// the proxy still serves a new connection afterwards and that RSS came back near where it
/// started.
async fn with_proxy<F, Fut>(tweak: impl FnOnce(&mut ProxyConfig), case: F)
where
    F: FnOnce(Host, Harness) -> Fut,
    Fut: Future<Output = (Host, Harness)>,
{
    let _serial = SERIAL.lock().await;
    let host = Host::start().await;
    let mut h = Harness::start(host.addr, tweak).await;
    // Warm up (allocator arenas, the runtime's threads) before measuring.
    let warm = Healthy::start(h.addr).await;
    warm.finish(&mut h).await;
    let rss_before = rss_kib();

    let healthy = Healthy::start(h.addr).await;
    let (host, mut h) = case(host, h).await;
    healthy.finish(&mut h).await;

    let after = Healthy::start(h.addr).await;
    after.finish(&mut h).await;
    let rss_after = rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    h.stop().await;
    drop(host);
}

fn closes(r: &ConnectionReport) -> Vec<(Side, CloseKind)> {
    r.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Closed { side, kind } => Some((*side, *kind)),
            _ => None,
        })
        .collect()
}

fn assert_clear(r: &ConnectionReport) {
    eprintln!(
        "report: {} reached {}, closes {:?}: {}",
        r.verdict.cause,
        r.verdict.phase_reached,
        closes(r),
        r.verdict.summary
    );
    assert_ne!(r.verdict.cause, "internal_error", "{:#?}", r.verdict);
    assert!(!r.verdict.summary.is_empty());
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Lying lengths.

/// A TPKT header with this length, then `body` bytes of filler.
fn tpkt(length: u16, body: usize) -> Vec<u8> {
    let mut v = vec![0x03, 0x00];
    v.extend_from_slice(&length.to_be_bytes());
    v.extend(std::iter::repeat_n(0x41, body));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpkt_lengths_0_3_4_65535_from_the_client() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            for (length, body, expected) in [
                (0u16, 60usize, "x224.not_rdp"),
                (3, 60, "x224.not_rdp"),
                (4, 60, "x224.not_rdp"),
                // A whole 65535-byte PDU of filler (X.224 code 0x41: not a request).
                (65535, 65531, "x224.client_closed_before_request"),
                // Only its start, then FIN: the session is still waiting for the rest.
                (65535, 1000, "x224.client_closed_before_request"),
            ] {
                let bytes = tpkt(length, body);
                host.queue(vec![Act::Drain, Act::Fin]);
                let s = TcpStream::connect(h.addr).await.unwrap();
                let local = s.local_addr().unwrap();
                let seen = play(s, vec![Act::Send(bytes.clone()), Act::Fin, Act::Drain]).await;
                let host_seen = host.seen().await;
                assert_eq!(host_seen.received, bytes.len() as u64);
                assert_eq!(host_seen.hash, sha(&bytes), "bytes relayed as sent");
                assert_eq!(seen.ended_with_error, Some(false));
                let r = h.report_for(local).await;
                assert_clear(&r);
                assert_eq!(
                    r.verdict.cause, expected,
                    "TPKT length {length}: {:#?}",
                    r.verdict
                );
            }
            (host, h)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpkt_lengths_0_3_4_65535_from_the_host() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let cr = hex(CR);
            for (length, body) in [
                (0u16, 60usize),
                (3, 60),
                (4, 60),
                (65535, 65531),
                (65535, 1000),
            ] {
                let bytes = tpkt(length, body);
                host.queue(vec![
                    Act::RecvTotal(cr.len() as u64),
                    Act::Send(bytes.clone()),
                    Act::Fin,
                    Act::Drain,
                ]);
                let s = TcpStream::connect(h.addr).await.unwrap();
                let local = s.local_addr().unwrap();
                let seen = play(s, vec![Act::Send(cr.clone()), Act::Drain]).await;
                assert_eq!(seen.received, bytes.len() as u64);
                assert_eq!(seen.hash, sha(&bytes), "bytes relayed as sent");
                // The client closes once it has seen the host's FIN.
                let host_seen = host.seen().await;
                assert_eq!(host_seen.hash, sha(&cr));
                let r = h.report_for(local).await;
                assert_clear(&r);
                assert_eq!(r.verdict.phase_reached, Phase::X224);
                let expected = if (length, body) == (65535, 65531) {
                    // A whole PDU that is no Connection Confirm, then FIN.
                    "x224.host_closed_after_request"
                } else {
                    "x224.not_rdp"
                };
                assert_eq!(
                    r.verdict.cause, expected,
                    "TPKT length {length}: {:#?}",
                    r.verdict
                );
            }
            (host, h)
        },
    )
    .await;
}

/// 2^14 + 2048 + 1: one more than TLSCiphertext may carry (RFC 5246 §6.2.3).
const TOO_LONG: usize = (1 << 14) + 2048 + 1;

fn long_record() -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x03];
    v.extend_from_slice(&(TOO_LONG as u16).to_be_bytes());
    v.extend(std::iter::repeat_n(0x42, TOO_LONG));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_record_longer_than_allowed_from_either_side() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let (cr, cc, record) = (hex(CR), hex(CC_HYBRID), long_record());
            // From the client, after the negotiation.
            host.queue(vec![
                Act::RecvTotal(cr.len() as u64),
                Act::Send(cc.clone()),
                Act::Drain,
                Act::Fin,
            ]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(
                s,
                vec![
                    Act::Send(cr.clone()),
                    Act::RecvTotal(cc.len() as u64),
                    Act::Send(record.clone()),
                    Act::Fin,
                    Act::Drain,
                ],
            )
            .await;
            assert_eq!(seen.hash, sha(&cc));
            let host_seen = host.seen().await;
            assert_eq!(host_seen.hash, sha(&[cr.as_slice(), &record].concat()));
            let r = h.report_for(local).await;
            assert_clear(&r);
            // No ClientHello was seen: the negotiation phase is the last one reached.
            assert_eq!(r.verdict.phase_reached, Phase::X224);
            assert!(
                r.events.iter().any(|e| matches!(&e.kind,
                    EventKind::Malformed { error } if error.field == "TLSPlaintext.length")),
                "{:#?}",
                r.events
            );

            // From the host, as its answer to the ClientHello.
            let hello = fixture_records("ndpi_rdp.client.bin").remove(0);
            host.queue(vec![
                Act::RecvTotal(cr.len() as u64),
                Act::Send(cc.clone()),
                Act::RecvTotal((cr.len() + hello.len()) as u64),
                Act::Send(record.clone()),
                Act::Fin,
                Act::Drain,
            ]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(
                s,
                vec![
                    Act::Send(cr.clone()),
                    Act::RecvTotal(cc.len() as u64),
                    Act::Send(hello.clone()),
                    Act::Drain,
                ],
            )
            .await;
            assert_eq!(seen.hash, sha(&[cc.as_slice(), &record].concat()));
            host.seen().await;
            let r = h.report_for(local).await;
            assert_clear(&r);
            assert_eq!(r.verdict.phase_reached, Phase::TlsHandshake);
            assert_eq!(r.verdict.cause, "tls.closed_during_handshake");
            assert!(
                r.verdict.summary.contains("TLSPlaintext.length"),
                "{:#?}",
                r.verdict
            );
            assert_eq!(r.verdict.outcome, Outcome::Failed, "{:#?}", r.verdict);
            (host, h)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Garbage, slow senders, half-open connections, backpressure, silence.

/// Size of the garbage case, each way: 1 GiB (measured: 4.7 s in a debug build on a loaded
/// 2-core machine, RSS +1.5 MiB); `RDPDIAG_GARBAGE_MIB` for more (docs/ROBUSTNESS.md).
fn garbage_mib() -> u64 {
    std::env::var("RDPDIAG_GARBAGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A prime-sized block of pseudo-random bytes sent cyclically: every chunk differs from its
/// neighbours, so a lost, doubled or reordered chunk changes the hash.
fn garbage_block() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..1_000_003)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Never `H` (the healthy marker) first, nor a TPKT or TLS start.
            if i == 0 { 0 } else { x as u8 }
        })
        .collect()
}

/// Streams `total` bytes of [`garbage_block`] (not held: one block, written cyclically).
async fn send_garbage(w: &mut (impl AsyncWriteExt + Unpin), total: u64) -> Vec<u8> {
    let block = garbage_block();
    let mut hash = Sha256::new();
    let (mut sent, mut at) = (0u64, 0usize);
    while sent < total {
        let n = (block.len() - at)
            .min(256 * 1024)
            .min((total - sent) as usize);
        let chunk = &block[at..at + n];
        w.write_all(chunk).await.unwrap();
        hash.update(chunk);
        sent += n as u64;
        at = (at + n) % block.len();
    }
    hash.finalize().to_vec()
}

async fn recv_hash(r: &mut (impl AsyncReadExt + Unpin)) -> (u64, Vec<u8>) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (got, hash.finalize().to_vec());
        }
        hash.update(&buf[..n]);
        got += n as u64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_both_ways_is_streamed_byte_exact_with_bounded_memory() {
    with_proxy(
        |_| {},
        |host, mut h| async move {
            let total = garbage_mib() * 1024 * 1024;
            // The host echoes: every byte crosses the proxy twice.
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let (mut rd, mut wr) = s.into_split();
            let rss_before = rss_kib();
            let peak = Arc::new(AtomicU64::new(rss_before));
            let sampler = {
                let peak = Arc::clone(&peak);
                tokio::spawn(async move {
                    loop {
                        peak.fetch_max(rss_kib(), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            };
            let started = std::time::Instant::now();
            let writer = async move {
                let hash = send_garbage(&mut wr, total).await;
                wr.shutdown().await.unwrap();
                hash
            };
            let (sent, (got, got_hash)) =
                guard("garbage", async { tokio::join!(writer, recv_hash(&mut rd)) }).await;
            let took = started.elapsed();
            sampler.abort();
            let peak = peak.load(Ordering::Relaxed);
            eprintln!(
                "garbage: {} MiB each way in {took:?}; RSS {rss_before} KiB before, peak {peak} KiB",
                total >> 20
            );
            assert_eq!(got, total);
            assert_eq!(got_hash, sent, "garbage relayed byte-exact");
            // The proxy holds one 64 KiB buffer per direction and an inspection buffer capped
            // by max_inspect_bytes (256 KiB); the peers' 256 KiB read buffers and the 1 MB
            // garbage block add a few MiB. Holding the stream would add `total`.
            assert!(
                peak < rss_before + 32 * 1024,
                "RSS peaked at {peak} KiB (from {rss_before} KiB) while relaying {} MiB",
                total >> 20
            );
            let r = h.report_for(local).await;
            assert_clear(&r);
            assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (total, total));
            assert_eq!(r.verdict.cause, "x224.not_rdp", "{:#?}", r.verdict);
            (host, h)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_per_second_is_relayed_at_once_and_stalls_only_when_it_stops() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let cr = hex(CR);
            // The host reads each byte as it comes: the proxy never holds bytes back to decode.
            let mut host_script = Vec::new();
            let mut client_script = Vec::new();
            // One byte a second for longer than the stall timeout: progress keeps it alive.
            let slow = (STALL.as_secs() + 2) as usize;
            for (i, b) in cr.iter().take(slow).enumerate() {
                client_script.push(Act::Send(vec![*b]));
                client_script.push(Act::Sleep(Duration::from_secs(1)));
                host_script.push(Act::RecvTotal(i as u64 + 1));
            }
            host_script.push(Act::Drain);
            client_script.push(Act::Drain);
            host.queue(host_script);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(s, client_script).await;
            let host_seen = host.seen().await;
            assert_eq!(host_seen.received, slow as u64);
            assert_eq!(host_seen.hash, sha(&cr[..slow]));
            // Then the sender stops: a stall, blamed on the client, ends both connections.
            assert_eq!(seen.received, 0);
            let r = h.report_for(local).await;
            assert_eq!(r.verdict.cause, "stall", "{:#?}", r.verdict);
            assert_eq!(r.verdict.closed_by, Some(Side::Proxy));
            assert!(
                r.duration_ms >= (slow as u64 + STALL.as_secs()) * 1000 - 1000,
                "stalled after {} ms: progress did not reset the timer",
                r.duration_ms
            );
            (host, h)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let (cr, cc) = (hex(CR), hex(CC_HYBRID));
            let more: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

            // The client half-closes right after its request and keeps reading: the host still
            // answers, and everything it sends arrives.
            host.queue(vec![
                Act::Drain,
                Act::Send(cc.clone()),
                Act::Send(more.clone()),
                Act::Fin,
            ]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(s, vec![Act::Send(cr.clone()), Act::Fin, Act::Drain]).await;
            assert_eq!(seen.hash, sha(&[cc.as_slice(), &more].concat()));
            assert_eq!(seen.ended_with_error, Some(false));
            assert_eq!(host.seen().await.hash, sha(&cr));
            let r = h.report_for(local).await;
            assert_clear(&r);
            assert_eq!(
                closes(&r),
                [(Side::Client, CloseKind::Fin), (Side::Host, CloseKind::Fin)]
            );

            // The host half-closes after its answer; the client keeps sending.
            host.queue(vec![
                Act::RecvTotal(cr.len() as u64),
                Act::Send(cc.clone()),
                Act::Fin,
                Act::Drain,
            ]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(
                s,
                vec![
                    Act::Send(cr.clone()),
                    Act::Drain,
                    Act::Send(more.clone()),
                    Act::Fin,
                ],
            )
            .await;
            assert_eq!(seen.hash, sha(&cc));
            assert_eq!(
                host.seen().await.hash,
                sha(&[cr.as_slice(), &more].concat())
            );
            let r = h.report_for(local).await;
            assert_clear(&r);
            assert_eq!(
                closes(&r),
                [(Side::Host, CloseKind::Fin), (Side::Client, CloseKind::Fin)]
            );

            // A client that vanishes without FIN or RST (a dead peer): the stall timeout ends
            // the connection and both peers hear of it.
            host.queue(vec![Act::Drain]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let client = tokio::spawn(play(s, vec![Act::Send(cr.clone()), Act::Drain]));
            let host_seen = host.seen().await;
            assert_eq!(host_seen.hash, sha(&cr));
            assert!(host_seen.ended_with_error.is_some());
            let r = h.report_for(local).await;
            assert_eq!(r.verdict.cause, "stall", "{:#?}", r.verdict);
            assert_eq!(r.verdict.phase_reached, Phase::X224);
            assert!(
                guard("client", client)
                    .await
                    .unwrap()
                    .ended_with_error
                    .is_some()
            );
            (host, h)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_blocks_the_host_with_bounded_memory() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            host.queue(vec![Act::RecvTotal(1), Act::Flood, Act::Fin, Act::Drain]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let rss_before = rss_kib();
            // One garbage byte (not `H`), then no reading at all.
            let (mut rd, mut wr) = s.into_split();
            wr.write_all(&[0]).await.unwrap();
            // The host writes until its writes block for a second; meanwhile RSS stays put.
            let flooded = loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let rss = rss_kib();
                assert!(
                    rss < rss_before + 32 * 1024,
                    "RSS grew from {rss_before} KiB to {rss} KiB while the client did not read"
                );
                match FLOODED.swap(0, Ordering::SeqCst) {
                    0 => continue,
                    n => break n - 1,
                }
            };
            // Now read everything: nothing was lost while the host was blocked.
            wr.shutdown().await.unwrap();
            let (got, got_hash) = guard("drain", recv_hash(&mut rd)).await;
            let host_seen = host.seen().await;
            assert_eq!(host_seen.flooded, Some(flooded));
            eprintln!("never-reading client: host wrote {flooded} bytes before blocking");
            // Loopback socket buffers on both legs plus the proxy's 64 KiB buffer; holding
            // without bound would let the flood run on for the whole wait.
            assert!(
                flooded < 64 * 1024 * 1024,
                "host wrote {flooded} bytes before blocking"
            );
            assert_eq!(got, flooded);
            assert_eq!(got_hash, host_seen.sent_hash);
            let r = h.report_for(local).await;
            assert_clear(&r);
            (host, h)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_that_accepts_and_never_answers_stalls() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let cr = hex(CR);
            host.queue(vec![Act::RecvTotal(cr.len() as u64), Act::Drain]);
            let s = TcpStream::connect(h.addr).await.unwrap();
            let local = s.local_addr().unwrap();
            let seen = play(s, vec![Act::Send(cr.clone()), Act::Drain]).await;
            assert_eq!(seen.received, 0);
            assert!(seen.ended_with_error.is_some());
            let host_seen = host.seen().await;
            assert_eq!(host_seen.hash, sha(&cr));
            let r = h.report_for(local).await;
            assert_eq!(r.verdict.cause, "stall", "{:#?}", r.verdict);
            assert_eq!(r.verdict.phase_reached, Phase::X224);
            assert_eq!(r.verdict.closed_by, Some(Side::Proxy));
            assert_eq!(r.verdict.close_kind, Some(CloseKind::Timeout));
            (host, h)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A reset in every phase.

fn fixture_records(file: &str) -> Vec<Vec<u8>> {
    let stream = fixture(&format!("tls/{file}"));
    let mut out = Vec::new();
    let mut rest = stream.as_slice();
    while rest.len() >= 5 {
        let len = 5 + usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}

/// The records of one side up to and including its Finished (the record after its
/// ChangeCipherSpec), and the application records after.
fn flights(records: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let ccs = records.iter().position(|r| r[0] == 0x14).unwrap();
    let (a, b) = records.split_at(ccs + 2);
    (a.to_vec(), b.to_vec())
}

/// A real NLA conversation (ndpi_rdp.pcap): CR, CC, the TLS handshake, CredSSP records.
fn conversation() -> Vec<(bool, Vec<u8>)> {
    let (c_hs, c_app) = flights(fixture_records("ndpi_rdp.client.bin"));
    let (s_hs, s_app) = flights(fixture_records("ndpi_rdp.server.bin"));
    let s_ccs = s_hs.iter().position(|r| r[0] == 0x14).unwrap();
    let mut conv = vec![
        (true, hex(CR)),
        (false, hex(CC_HYBRID)),
        (true, c_hs[0].clone()),
        (false, s_hs[..s_ccs].concat()),
        (true, c_hs[1..].concat()),
        (false, s_hs[s_ccs..].concat()),
    ];
    let mut c_app = c_app.into_iter();
    let mut s_app = s_app.into_iter();
    loop {
        match (c_app.next(), s_app.next()) {
            (None, None) => break,
            (c, s) => {
                conv.extend(c.map(|c| (true, c)));
                conv.extend(s.map(|s| (false, s)));
            }
        }
    }
    conv
}

/// Client and host scripts for the first `steps` of `conv`; then `resetter` resets and the
/// other side drains.
fn scripts_until(conv: &[(bool, Vec<u8>)], steps: usize, resetter: Side) -> (Script, Script) {
    let (mut client, mut host) = (Vec::new(), Vec::new());
    let (mut c2s, mut s2c) = (0u64, 0u64);
    for (from_client, bytes) in &conv[..steps] {
        if *from_client {
            c2s += bytes.len() as u64;
            client.push(Act::Send(bytes.clone()));
            host.push(Act::RecvTotal(c2s));
        } else {
            s2c += bytes.len() as u64;
            host.push(Act::Send(bytes.clone()));
            client.push(Act::RecvTotal(s2c));
        }
    }
    match resetter {
        Side::Client => {
            host.extend([Act::Signal, Act::Drain]);
            client.extend([Act::AwaitSignal, Act::Rst]);
        }
        _ => {
            client.extend([Act::Signal, Act::Drain]);
            host.extend([Act::AwaitSignal, Act::Rst]);
        }
    }
    (client, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_in_every_phase_from_either_side() {
    with_proxy(
        |_| {},
        |mut host, mut h| async move {
            let conv = conversation();
            let app_start = 6;
            assert!(
                conv.len() >= app_start + 3,
                "the fixture has CredSSP records"
            );
            // (what, steps done, phase reached, cause when the client / the host resets)
            let cuts = [
                (
                    "after CR",
                    1,
                    Phase::X224,
                    ["closed_early", "x224.host_closed_after_request"],
                ),
                (
                    "after CC",
                    2,
                    Phase::X224,
                    ["nego.client_refused_selected_protocol", "closed_early"],
                ),
                (
                    "mid-handshake",
                    4,
                    Phase::TlsHandshake,
                    [
                        "tls.client_rejected_certificate",
                        "tls.closed_during_handshake",
                    ],
                ),
                (
                    "mid-CredSSP",
                    app_start + 2,
                    Phase::Credssp,
                    ["credssp.failed", "credssp.failed"],
                ),
            ];
            for (what, steps, phase, cause) in cuts {
                for resetter in [Side::Client, Side::Host] {
                    let (client, host_script) = scripts_until(&conv, steps, resetter);
                    host.queue(host_script);
                    let s = TcpStream::connect(h.addr).await.unwrap();
                    let local = s.local_addr().unwrap();
                    let seen = guard(what, play(s, client)).await;
                    let host_seen = host.seen().await;
                    let r = h.report_for(local).await;
                    let case = format!("{what}, {resetter:?} resets");
                    assert_clear(&r);
                    assert_eq!(r.verdict.phase_reached, phase, "{case}: {:#?}", r.verdict);
                    assert_eq!(
                        r.verdict.cause,
                        cause[usize::from(resetter == Side::Host)],
                        "{case}"
                    );
                    assert_eq!(
                        closes(&r).first(),
                        Some(&(resetter, CloseKind::Rst)),
                        "{case}"
                    );
                    assert_eq!(r.verdict.closed_by, Some(resetter), "{case}");
                    // The other side hears of it (a mirrored reset, or EOF if the kernel had
                    // nothing to reset).
                    let other = if resetter == Side::Client {
                        host_seen
                    } else {
                        seen
                    };
                    assert!(other.ended_with_error.is_some(), "{case}: {other:?}");
                }
            }

            // In the hot path: garbage past the inspection limit, then a reset.
            for resetter in [Side::Client, Side::Host] {
                let garbage = vec![0u8; 3 * 1024 * 1024];
                let (client, host_script) =
                    scripts_until(&[(true, garbage.clone()), (false, garbage)], 2, resetter);
                host.queue(host_script);
                let s = TcpStream::connect(h.addr).await.unwrap();
                let local = s.local_addr().unwrap();
                guard("hot path", play(s, client)).await;
                host.seen().await;
                let r = h.report_for(local).await;
                assert_clear(&r);
                assert_eq!(closes(&r).first(), Some(&(resetter, CloseKind::Rst)));
            }
            (host, h)
        },
    )
    .await;
}
