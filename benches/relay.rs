//! Throughput through the proxy's hot path: direct (no proxy) vs copy loop vs splice (Linux),
//! with 1 and 50 concurrent connections. A plain program (harness = false) printing figures:
//! `cargo bench --bench relay`. Tests never time; this does.
//!
//! Each connection sends a fixed amount one way to a sink that reads to EOF and closes; the
//! time is from the first connect to the last EOF seen by the senders. The proxy runs on its
//! own one-thread runtime (its CPU is what is compared); senders and sinks on another. The
//! proxy inspects the first 64 KiB (as a negotiation would), then hands over to the hot path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdpdiag::relay::{HotPath, Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};

const CHUNK: usize = 256 * 1024;

fn main() {
    let load = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = load.block_on(start_sink());
    let mut paths: Vec<(&str, Option<HotPath>)> =
        vec![("direct", None), ("copy", Some(HotPath::Copy))];
    if cfg!(target_os = "linux") {
        paths.push(("splice", Some(HotPath::Splice)));
    }
    println!("relay throughput, best of 3 (MB/s = 10^6 bytes/s; ratio to direct)");
    for (conns, per_conn) in [(1usize, 768u64 << 20), (50, 16 << 20)] {
        let mut direct = 0.0;
        for (name, path) in &paths {
            // A fresh proxy runtime per variant: nothing carries over.
            let proxy_rt = Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let target = match path {
                None => sink,
                Some(p) => start_proxy(&proxy_rt, sink, *p),
            };
            let best = (0..3)
                .map(|_| load.block_on(run(target, conns, per_conn)))
                .fold(0.0_f64, f64::max);
            if path.is_none() {
                direct = best;
            }
            println!(
                "  {conns:>2} conn x {:>4} MiB  {name:<7} {best:>8.0} MB/s  {:>5.2}x",
                per_conn >> 20,
                best / direct
            );
            proxy_rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn start_proxy(rt: &Runtime, sink: SocketAddr, hot_path: HotPath) -> SocketAddr {
    rt.block_on(async {
        let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), sink.to_string());
        cfg.hot_path = hot_path;
        cfg.inspect_limit = 64 * 1024;
        let proxy = Proxy::bind(cfg).await.unwrap();
        let addr = proxy.local_addr();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        tokio::spawn(proxy.run(tx, std::future::pending()));
        addr
    })
}

/// Reads every connection to EOF, then closes it.
async fn start_sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                while s.read(&mut buf).await.unwrap() > 0 {}
            });
        }
    });
    addr
}

/// MB/s for `conns` connections each sending `per_conn` bytes.
async fn run(target: SocketAddr, conns: usize, per_conn: u64) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(target).await.unwrap();
                let buf = vec![0x5a_u8; CHUNK];
                let mut left = per_conn;
                while left > 0 {
                    let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
                    s.write_all(&buf[..n]).await.unwrap();
                    left -= n as u64;
                }
                s.shutdown().await.unwrap();
                // The sink closes after EOF: everything went through.
                let mut end = [0u8; 1];
                assert_eq!(s.read(&mut end).await.unwrap(), 0);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    (per_conn * conns as u64) as f64 / secs / 1e6
}
