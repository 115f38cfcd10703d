//! 1,000 concurrent connections through the proxy with random-sized traffic both ways, every
//! byte hashed and matched at both ends, then fd count and RSS back to where they started.
//! A few seconds here (`RDPDIAG_LOAD_SECS`, default 5); the 60 s run and the soak are
//! `benches/load.rs` (docs/ROBUSTNESS.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(unreachable_pub, dead_code)]
#[path = "support/load.rs"]
mod load;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_every_byte_matched_nothing_leaked() {
    if let Ok(filter) = std::env::var("RDPDIAG_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let secs = std::env::var("RDPDIAG_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let f = load::run(load::Load {
        connections: 1000,
        duration: Duration::from_secs(secs),
        max_chunk: 4096,
        max_pause: Duration::from_millis(200),
    })
    .await;
    eprintln!("{f:#?}");
    // The priming round's connections report too.
    assert_eq!(f.reports, 3 * f.connections, "one report per connection");
    assert_eq!(f.internal_errors, 0);
    // Each connection holds 4 sockets in this process (client, proxy's two, host) plus the
    // hot path's pipes: the peak proves they were all open at once.
    assert!(f.fds_peak >= f.fds_before + 3 * f.connections, "{f:#?}");
    assert!(f.fds_after <= f.fds_before, "fds leaked: {f:#?}");
    // Against the baseline taken after two priming rounds: a leak of 32 KiB per connection
    // (half a relay buffer) would show.
    assert!(
        f.rss_after_kib < f.rss_before_kib + 32 * 1024,
        "RSS did not come back: {f:#?}"
    );
}
