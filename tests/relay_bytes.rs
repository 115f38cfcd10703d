//! The relay on loopback: byte-exact both ways (also across the inspect → hot-path hand-off and
//! after a half-close), closes mirrored and reported in order, connect failures reset the
//! client, and the `rdpdiag proxy` command-line contract.
//!
//! Peers are plain TCP programs, not RDP: with any session implementation these tests assert
//! transport facts only (bytes, hashes, close kinds and their order, exit status, JSON fields),
//! and causes only where that is the point (traffic that is not RDP is judged so, and relayed).

// Test helpers, not only #[test] functions, may unwrap and panic: a failure is the point there;
// chunk sizes are at most 64 KiB, so the u64 -> usize casts cannot truncate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdpdiag::relay::{HotPath, Proxy, ProxyConfig};
use rdpdiag::report::ConnectionReport;
use rdpdiag::session::{CloseKind, ConnectFailure, EventKind, Side};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Guards against a hung test; never an assertion on speed.
const GUARD: Duration = Duration::from_secs(120);

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress for {GUARD:?}"))
}

struct Harness {
    addr: SocketAddr,
    reports: mpsc::Receiver<ConnectionReport>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    async fn start(target: SocketAddr, tweak: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
        tweak(&mut cfg);
        let proxy = Proxy::bind(cfg).await.unwrap();
        let addr = proxy.local_addr();
        let (tx, reports) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.run(tx, async move {
            // A dropped sender also stops the proxy.
            stopped.await.ok();
        }));
        Harness {
            addr,
            reports,
            stop: Some(stop),
            task,
        }
    }

    async fn report(&mut self) -> ConnectionReport {
        guard("report", self.reports.recv())
            .await
            .expect("proxy ended without a report")
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        guard("proxy stop", self.task).await.unwrap().unwrap();
    }
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

/// xorshift64*: reproducible chunk sizes and contents without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes `total` pseudo-random bytes in pseudo-random chunk sizes (1 B to 64 KiB, small ones
/// often), adding them to `hash`.
async fn send_random(
    w: &mut (impl AsyncWrite + Unpin),
    rng: &mut Rng,
    total: u64,
    hash: &mut Sha256,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let max = if rng.below(4) == 0 { 64 } else { 64 * 1024 };
        let n = (rng.below(max) + 1).min(total - sent) as usize;
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        hash.update(&buf[..n]);
        sent += n as u64;
    }
}

/// [`send_random`] from a seed, returning the SHA-256.
async fn send_seeded(w: &mut (impl AsyncWrite + Unpin), seed: u64, total: u64) -> Vec<u8> {
    let mut hash = Sha256::new();
    send_random(w, &mut Rng(seed), total, &mut hash).await;
    hash.finalize().to_vec()
}

/// Reads to EOF; returns the byte count and SHA-256.
async fn recv_all(r: &mut (impl AsyncRead + Unpin)) -> (u64, Vec<u8>) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (total, hash.finalize().to_vec());
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
}

const C2S: u64 = 11 * 1024 * 1024 + 17;
const S2C: u64 = 11 * 1024 * 1024 + 5;
const S2C_AFTER_HALF_CLOSE: u64 = 1024 * 1024 + 3;

/// Both ways at once (> 10 MB each), then the client half-closes and the host keeps sending
/// before it closes too. Hashes must match at both ends, and the report must say who closed
/// first.
async fn byte_exact(hot_path: HotPath, inspect_limit: u64) {
    byte_exact_with(hot_path, inspect_limit, None).await;
}

/// [`byte_exact`] with a bound on the splice pipes (`Some(0)`: the pool is always exhausted).
async fn byte_exact_with(hot_path: HotPath, inspect_limit: u64, max_pipes: Option<usize>) {
    byte_exact_cfg(|c| {
        c.hot_path = hot_path;
        c.inspect_limit = inspect_limit;
        c.max_pipes = max_pipes;
    })
    .await;
}

/// [`byte_exact`] with any proxy configuration; returns the connection's report.
async fn byte_exact_cfg(tweak: impl FnOnce(&mut ProxyConfig)) -> ConnectionReport {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = host.accept().await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let (eof_tx, eof_rx) = oneshot::channel();
        let reader = async move {
            let got = recv_all(&mut rd).await;
            eof_tx.send(()).unwrap();
            got
        };
        let writer = async move {
            let (mut rng, mut hash) = (Rng(0xbad5eed), Sha256::new());
            send_random(&mut wr, &mut rng, S2C, &mut hash).await;
            // Keep sending after the client's half-close has arrived.
            eof_rx.await.unwrap();
            send_random(&mut wr, &mut rng, S2C_AFTER_HALF_CLOSE, &mut hash).await;
            wr.shutdown().await.unwrap();
            hash.finalize().to_vec()
        };
        tokio::join!(reader, writer)
    });

    let mut h = Harness::start(host_addr, tweak).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    let writer = async move {
        let sent = send_seeded(&mut wr, 0x5eed, C2S).await;
        wr.shutdown().await.unwrap();
        sent
    };
    let (client_sent, (client_got_n, client_got)) =
        guard("client", async { tokio::join!(writer, recv_all(&mut rd)) }).await;
    let ((server_got_n, server_got), server_sent) = guard("server", server).await.unwrap();

    assert_eq!(server_got_n, C2S);
    assert_eq!(server_got, client_sent, "client -> host bytes differ");
    assert_eq!(client_got_n, S2C + S2C_AFTER_HALF_CLOSE);
    assert_eq!(client_got, server_sent, "host -> client bytes differ");

    let r = h.report().await;
    assert_eq!(r.bytes_client_to_host, C2S);
    assert_eq!(r.bytes_host_to_client, S2C + S2C_AFTER_HALF_CLOSE);
    assert_eq!(r.host_addr.as_deref(), Some(host_addr.to_string().as_str()));
    assert_eq!(
        closes(&r),
        [(Side::Client, CloseKind::Fin), (Side::Host, CloseKind::Fin)]
    );
    h.stop().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_inspecting_all_the_way() {
    byte_exact(HotPath::Copy, u64::MAX).await;
}

/// Traffic that is not RDP at all is judged so and relayed untouched, never dropped: the
/// session gives up on it at once and the hot path takes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_rdp_is_relayed_untouched() {
    let r = byte_exact_cfg(|c| c.hot_path = HotPath::Splice).await;
    assert_eq!(r.verdict.cause, "x224.not_rdp", "{:?}", r.verdict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_across_hand_off_to_copy_loop() {
    // The hand-off happens mid-stream, with bytes buffered in both directions.
    byte_exact(HotPath::Copy, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_across_hand_off_to_splice() {
    byte_exact(HotPath::Splice, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_hot_path_from_the_start() {
    byte_exact(HotPath::Copy, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_splice_from_the_start() {
    byte_exact(HotPath::Splice, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_splice_without_pipes_copies() {
    // No pipe can be had: every read falls back to the user-space buffer.
    byte_exact_with(HotPath::Splice, 100_000, Some(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_splice_with_one_pipe_for_two_directions() {
    // Both directions flow at once and share one pipe: each read splices when the other
    // direction's pipe is back in the pool and copies when it is not, so the two movers
    // alternate within one direction, and their bytes must stay in order.
    byte_exact_with(HotPath::Splice, 100_000, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_recording_up_to_the_limit_then_splice() {
    // `--record --record-limit`: user-space copies with the tap until the limit, then the
    // splice hot path, mid-stream in both directions.
    let dir = tempfile::tempdir().unwrap();
    let mut record = rdpdiag::relay::tap::RecordConfig::new(dir.path(), Default::default());
    record.limit = 300_000;
    let flushed = record.clone();
    byte_exact_cfg(|c| {
        c.hot_path = HotPath::Splice;
        c.inspect_limit = 100_000;
        c.record = Some(record);
    })
    .await;
    guard("bundle", flushed.flush()).await;
    let bundles = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(bundles, 1, "one bundle for the one connection");
}

/// Many connections at once, each echoed, each checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_stay_separate() {
    concurrent_connections(None).await;
}

/// The same with fewer pipes than directions in flight: pooled pipes go from connection to
/// connection (never with bytes in them), and reads without a pipe are copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_share_an_exhausted_pipe_pool() {
    concurrent_connections(Some(3)).await;
}

async fn concurrent_connections(max_pipes: Option<usize>) {
    const N: usize = 40;
    const LEN: u64 = 200_000;
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = host.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut rd, mut wr) = s.split();
                tokio::io::copy(&mut rd, &mut wr).await.unwrap();
                wr.shutdown().await.unwrap();
            });
        }
    });
    let mut h = Harness::start(host_addr, |c| {
        c.max_concurrent = 8;
        c.hot_path = HotPath::Splice;
        c.inspect_limit = 10_000;
        c.max_pipes = max_pipes;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..N {
        let addr = h.addr;
        clients.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let w = async move {
                let sent = send_seeded(&mut wr, 1000 + i as u64, LEN).await;
                wr.shutdown().await.unwrap();
                sent
            };
            let (sent, (n, got)) = tokio::join!(w, recv_all(&mut rd));
            assert_eq!(n, LEN);
            assert_eq!(sent, got, "connection {i} echoed other bytes");
        }));
    }
    for c in clients {
        guard("client", c).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..N {
        let r = h.report().await;
        assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (LEN, LEN));
        ids.push(r.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=N as u64).collect::<Vec<_>>());
    h.stop().await;
}

/// Where the relay is when the interesting thing happens.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Still feeding the session.
    Inspecting,
    /// In the hot path from the first byte.
    Hot(HotPath),
    /// Splicing from the first byte with no pipe to be had: the copy fallback.
    NoPipes,
}

const MODES: [Mode; 4] = [
    Mode::Inspecting,
    Mode::Hot(HotPath::Copy),
    Mode::Hot(HotPath::Splice),
    Mode::NoPipes,
];

impl Mode {
    fn apply(self, c: &mut ProxyConfig) {
        match self {
            Mode::Inspecting => c.inspect_limit = u64::MAX,
            Mode::Hot(p) => {
                c.inspect_limit = 0;
                c.hot_path = p;
            }
            Mode::NoPipes => {
                c.inspect_limit = 0;
                c.hot_path = HotPath::Splice;
                c.max_pipes = Some(0);
            }
        }
    }
}

#[tokio::test]
async fn server_speaks_first() {
    for mode in MODES {
        server_speaks_first_in(mode).await;
    }
}

async fn server_speaks_first_in(mode: Mode) {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        s.write_all(b"220 host ready\r\n").await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(b"bye\r\n").await.unwrap();
        got
    });
    let mut h = Harness::start(host_addr, |c| mode.apply(c)).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let mut banner = [0u8; 16];
    c.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"220 host ready\r\n");
    c.write_all(b"HELO\r\n").await.unwrap();
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye\r\n");
    assert_eq!(guard("server", server).await.unwrap(), b"HELO\r\n");

    let r = h.report().await;
    assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (6, 21));
    assert_eq!(
        closes(&r),
        [(Side::Client, CloseKind::Fin), (Side::Host, CloseKind::Fin)]
    );
    h.stop().await;
}

#[tokio::test]
async fn client_closes_first() {
    for mode in MODES {
        client_closes_first_in(mode).await;
    }
}

async fn client_closes_first_in(mode: Mode) {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let mut got = Vec::new();
        // EOF arrives only if the client's FIN was passed on.
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut h = Harness::start(host_addr, |c| mode.apply(c)).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"x224 request").await.unwrap();
    drop(c);
    assert_eq!(guard("server", server).await.unwrap(), b"x224 request");

    let r = h.report().await;
    assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (12, 0));
    assert_eq!(
        closes(&r),
        [(Side::Client, CloseKind::Fin), (Side::Host, CloseKind::Fin)]
    );
    h.stop().await;
}

#[tokio::test]
async fn host_reset_reaches_the_client_as_reset() {
    for mode in MODES {
        host_reset_reaches_the_client_as_reset_in(mode).await;
    }
}

async fn host_reset_reaches_the_client_as_reset_in(mode: Mode) {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"pong").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ack!");
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let mut h = Harness::start(host_addr, |c| mode.apply(c)).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    c.write_all(b"ack!").await.unwrap();
    let err = guard("client read", c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    guard("server", server).await.unwrap();

    let r = h.report().await;
    assert_eq!(closes(&r), [(Side::Host, CloseKind::Rst)]);
    assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (8, 4));
    h.stop().await;
}

#[tokio::test]
async fn client_reset_reaches_the_host_as_reset() {
    for mode in MODES {
        client_reset_reaches_the_host_as_reset_in(mode).await;
    }
}

async fn client_reset_reaches_the_host_as_reset_in(mode: Mode) {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let (got_tx, got_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        got_tx.send(()).unwrap();
        s.read(&mut buf).await.unwrap_err().kind()
    });
    let mut h = Harness::start(host_addr, |c| mode.apply(c)).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    got_rx.await.unwrap();
    c.set_zero_linger().unwrap();
    drop(c);
    assert_eq!(
        guard("server", server).await.unwrap(),
        std::io::ErrorKind::ConnectionReset
    );
    let r = h.report().await;
    assert_eq!(closes(&r), [(Side::Client, CloseKind::Rst)]);
    h.stop().await;
}

/// A client that half-closed and then resets is seen even while nothing flows toward it.
#[tokio::test]
async fn reset_after_half_close_is_seen() {
    for mode in MODES {
        reset_after_half_close_is_seen_in(mode).await;
    }
}

async fn reset_after_half_close_is_seen_in(mode: Mode) {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let (eof_tx, eof_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        eof_tx.send(()).unwrap();
        // Keep the host's direction open; only the client's reset, passed on, ends it.
        s.ready(Interest::ERROR).await.unwrap();
        s.take_error().unwrap()
    });
    let mut h = Harness::start(host_addr, |c| mode.apply(c)).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"abc").await.unwrap();
    c.shutdown().await.unwrap();
    eof_rx.await.unwrap();
    c.set_zero_linger().unwrap();
    drop(c);
    let r = h.report().await;
    assert_eq!(
        closes(&r),
        [
            (Side::Client, CloseKind::Fin),
            (Side::Client, CloseKind::Rst)
        ]
    );
    // The host was reset too (EPIPE: Linux's errno for a reset after a FIN was received).
    let err = guard("server", server)
        .await
        .unwrap()
        .expect("no error on the host socket");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    h.stop().await;
}

/// Connects and expects a reset, at connect (the RST may beat the handshake's completion being
/// seen) or at the first read; returns the client's address.
async fn expect_reset(addr: SocketAddr) -> SocketAddr {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let me = sock.local_addr().unwrap();
    let attempt = async {
        let mut c = sock.connect(addr).await?;
        let mut buf = [0u8; 8];
        c.read(&mut buf).await
    };
    match guard("client", attempt).await {
        Ok(n) => panic!("read {n} bytes instead of a reset"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    me
}

/// A port with nothing listening (bound, then released).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn connect_refused_resets_the_client_and_is_reported() {
    let target = closed_port().await;
    let mut h = Harness::start(target, |_| {}).await;
    expect_reset(h.addr).await;

    let r = h.report().await;
    assert!(r.host_addr.is_none());
    assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (0, 0));
    let failures: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConnectFailed { failure } => Some(failure.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [ConnectFailure::Refused]);
    h.stop().await;
}

/// A listener whose accept queue is full (backlog 0, one connection queued): Linux drops
/// further SYNs, so connects to it hang until the queue has room again.
async fn unanswering_host() -> (TcpListener, TcpStream, SocketAddr) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = sock.listen(0).unwrap();
    let target = full.local_addr().unwrap();
    let filler = TcpStream::connect(target).await.unwrap();
    (full, filler, target)
}

#[tokio::test]
async fn client_reset_while_connecting_abandons_the_host() {
    let (_full, _filler, target) = unanswering_host().await;
    let mut h = Harness::start(target, |_| {}).await;
    let c = TcpStream::connect(h.addr).await.unwrap();
    c.set_zero_linger().unwrap();
    drop(c);
    let r = h.report().await;
    assert_eq!(closes(&r), [(Side::Client, CloseKind::Rst)]);
    assert!(r.host_addr.is_none());
    h.stop().await;
}

/// What the client sends (and its FIN) while the host is still connecting is delivered, in
/// order, once the host answers.
#[tokio::test]
async fn client_bytes_and_fin_while_connecting_are_delivered() {
    let (full, filler, target) = unanswering_host().await;
    let mut h = Harness::start(target, |_| {}).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"early bytes").await.unwrap();
    c.shutdown().await.unwrap();
    // Let the proxy's SYN be dropped (if it comes later, the test still checks delivery), then
    // make room: the SYN retransmission gets through.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (first, _) = full.accept().await.unwrap();
    drop((first, filler));
    let (mut s, _) = guard("host accept", full.accept()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"early bytes");
    s.write_all(b"late").await.unwrap();
    drop(s);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"late");
    let r = h.report().await;
    assert_eq!((r.bytes_client_to_host, r.bytes_host_to_client), (11, 4));
    assert_eq!(
        closes(&r),
        [(Side::Client, CloseKind::Fin), (Side::Host, CloseKind::Fin)]
    );
    h.stop().await;
}

#[tokio::test]
async fn connect_timeout_resets_the_client_and_is_reported() {
    let (_full, _filler, target) = unanswering_host().await;
    let mut h = Harness::start(target, |c| {
        c.connect_timeout = Duration::from_millis(300);
    })
    .await;
    expect_reset(h.addr).await;
    let r = h.report().await;
    let failed = r.events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::ConnectFailed {
                failure: ConnectFailure::Timeout
            }
        )
    });
    assert!(failed, "events: {:?}", r.events);
    h.stop().await;
}

#[tokio::test]
async fn max_connections_ends_run() {
    let target = closed_port().await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
    cfg.max_connections = Some(2);
    let proxy = Proxy::bind(cfg).await.unwrap();
    let addr = proxy.local_addr();
    let (tx, mut rx) = mpsc::channel(4);
    let run = tokio::spawn(proxy.run(tx, std::future::pending()));
    for _ in 0..2 {
        // Reset (refused target): the connection has ended.
        expect_reset(addr).await;
    }
    guard("run", run).await.unwrap().unwrap();
    let ids: Vec<u64> = [rx.recv().await.unwrap(), rx.recv().await.unwrap()]
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn target_that_is_the_proxy_itself_is_refused() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let cfg = ProxyConfig::new(addr, addr.to_string());
    let err = Proxy::bind(cfg).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

// ---- the `rdpdiag proxy` command line -------------------------------------------------------

fn rdpdiag() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rdpdiag"))
}

/// Starts `rdpdiag proxy --listen 127.0.0.1:0 ARGS`; returns the child, the thread draining its
/// stderr (joined: all of stderr) and the address it listens on (from its startup line).
async fn spawn_proxy(
    args: &[&str],
) -> (
    std::process::Child,
    std::thread::JoinHandle<String>,
    SocketAddr,
) {
    let mut child = rdpdiag()
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep draining stderr after the startup line, so that logs never block the child.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr: SocketAddr = rest.split(',').next().unwrap().parse().unwrap();
                addr_tx.send(addr).unwrap();
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(GUARD).unwrap())
        .await
        .unwrap();
    (child, drain, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_text_block_per_connection() {
    let target = closed_port().await.to_string();
    let (child, drain, addr) = spawn_proxy(&["--max-connections", "1", "--target", &target]).await;
    let me = expect_reset(addr).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = drain.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout.lines().next().unwrap_or_default();
    let head = format!("#1 {me} -> {target}: ");
    assert!(
        first.starts_with(&head),
        "{first:?} does not start with {head:?}"
    );
    assert!(
        stdout.contains("0 B client->host, 0 B host->client"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_line_per_connection_and_exit_after_max_connections() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let (mut rd, mut wr) = s.split();
        tokio::io::copy(&mut rd, &mut wr).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let (child, drain, addr) = spawn_proxy(&[
        "--json",
        "--max-connections",
        "1",
        "--target",
        &host_addr.to_string(),
    ])
    .await;

    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"0123456789").await.unwrap();
    c.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    c.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"0123456789");

    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = drain.join().unwrap();
    assert!(stderr.contains("mstsc /v:127.0.0.1:"), "stderr: {stderr}");
    // A non-RDP exchange is never "healthy".
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for key in [
        "outcome",
        "phase_reached",
        "closed_by",
        "close_kind",
        "cause",
        "evidence",
        "remedies",
        "confirm_with",
        "client",
        "target",
        "host_addr",
        "started_at",
        "duration_ms",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["id"], 1);
    assert_eq!(v["bytes_client_to_host"], 10);
    assert_eq!(v["bytes_host_to_client"], 10);
    assert_eq!(v["target"], host_addr.to_string());
    assert_eq!(v["host_addr"], host_addr.to_string());
    assert_eq!(v["client"], c.local_addr().unwrap().to_string());
    let started = v["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z') && started.contains('T'), "{started}");
}

#[test]
fn cli_refuses_a_non_loopback_listen_address() {
    let out = rdpdiag()
        .args([
            "proxy",
            "--target",
            "127.0.0.1:3389",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_usage_errors_exit_2() {
    for args in [
        &["proxy"][..],
        &["proxy", "--target", "h", "--listen", "nonsense"],
        &["proxy", "--target", "h:99999"],
        &["proxy", "--target", "h", "--stall-timeout", "0"],
        &["nosuchverb"],
    ] {
        let out = rdpdiag().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn cli_help_documents_exit_status() {
    let out = rdpdiag().args(["proxy", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit status",
        "--allow-remote",
        "--max-connections",
        "--json",
    ] {
        assert!(help.contains(needle), "{needle} not in help");
    }
}
