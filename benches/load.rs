//! Load and soak through the proxy: `cargo bench --bench load` runs 1,000 concurrent
//! connections for 60 s with random-sized traffic both ways, checks every byte at both ends,
//! and prints bytes, fd count and RSS before / peak / after. A soak is the same with other
//! figures: `RDPDIAG_LOAD_SECS=3600 RDPDIAG_LOAD_CONNS=1000 cargo bench --bench load`
//! (docs/ROBUSTNESS.md). Panics on any mismatch, leak or internal error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(unreachable_pub, dead_code)]
#[path = "../tests/support/load.rs"]
mod load;

use std::time::Duration;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this as a test: skip.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load = load::Load {
        connections: env("RDPDIAG_LOAD_CONNS", 1000) as usize,
        duration: Duration::from_secs(env("RDPDIAG_LOAD_SECS", 60)),
        max_chunk: env("RDPDIAG_LOAD_MAX_CHUNK", 16 * 1024) as usize,
        max_pause: Duration::from_millis(env("RDPDIAG_LOAD_MAX_PAUSE_MS", 100)),
    };
    println!("load: {load:?}");
    let f = rt.block_on(load::run(load));
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{} connections for {:.1} s: {:.1} MB client->host, {:.1} MB host->client, every byte matched",
        f.connections,
        f.elapsed.as_secs_f64(),
        mb(f.bytes_c2s),
        mb(f.bytes_s2c)
    );
    println!(
        "fds: {} before, {} peak, {} after; RSS: {} KiB before, {} KiB peak, {} KiB after",
        f.fds_before, f.fds_peak, f.fds_after, f.rss_before_kib, f.rss_peak_kib, f.rss_after_kib
    );
    println!(
        "reports: {} ({} internal_error)",
        f.reports, f.internal_errors
    );
    assert_eq!(
        f.reports,
        3 * f.connections,
        "two priming rounds + the measured round"
    );
    assert_eq!(f.internal_errors, 0);
    assert!(f.fds_after <= f.fds_before, "fds leaked");
    assert!(
        f.rss_after_kib < f.rss_before_kib + 32 * 1024,
        "RSS did not come back"
    );
}
