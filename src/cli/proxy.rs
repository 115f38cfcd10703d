//! `rdpdiag proxy`: relay mstsc to the host, print one verdict per connection.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use super::{EXIT_USAGE, Global, parse_secs};
use crate::relay::{Proxy, ProxyConfig, parse_target};
use crate::report::{ConnectionReport, render_text};
use crate::session::Outcome;

const AFTER_HELP: &str = "\
Point mstsc at the listening address (mstsc /v:127.0.0.1) and reproduce the failure: each
connection gets a verdict when it ends. Expect a certificate name warning: the host's
certificate names the host, not localhost. To keep the name, map an alias to the proxy
(hosts file: 127.0.0.2 rds01) and use --listen 127.0.0.2:3389 --target <real address>.

Exit status:
  0  every connection reported was healthy
  1  at least one connection failed, or its outcome is unknown
  2  usage error, or the proxy could not start (address in use, invalid target...)";

/// Relay to an RDP host and diagnose each connection.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The RDP host to relay to (port 3389 unless given)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub target: String,
    /// The address mstsc connects to
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3389")]
    pub listen: SocketAddr,
    /// Allow a --listen address other than loopback: anyone who reaches it can use the relay
    #[arg(long)]
    pub allow_remote: bool,
    /// Seconds to wait for the host to accept the TCP connection
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Seconds without progress after which a phase counts as stalled
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub stall_timeout: Duration,
    /// Exit after N connections have ended (for scripts)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Connections relayed at once (more wait to be accepted)
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent: u64,
    /// One JSON object per connection and line on stdout, instead of readable blocks
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        eprintln!(
            "rdpdiag: refusing to listen on {}: not a loopback address, so anyone who can reach \
             it could relay through this machine to {}; add --allow-remote if that is intended",
            args.listen, args.target
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if parse_target(&args.target).is_none() {
        eprintln!(
            "rdpdiag: invalid --target {:?}: expected HOST[:PORT]",
            args.target
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let cfg = ProxyConfig {
        connect_timeout: args.connect_timeout,
        stall_timeout: args.stall_timeout,
        max_connections: args.max_connections,
        max_concurrent: usize::try_from(args.max_concurrent).unwrap_or(usize::MAX),
        ..ProxyConfig::new(args.listen, args.target.clone())
    };
    super::runtime()?.block_on(serve(cfg, args.json))
}

async fn serve(cfg: ProxyConfig, json: bool) -> anyhow::Result<ExitCode> {
    let target = cfg.target.clone();
    let proxy = Proxy::bind(cfg)
        .await
        .with_context(|| "cannot start the proxy".to_owned())?;
    let local = proxy.local_addr();
    eprintln!("rdpdiag: listening on {local}, relaying to {target}");
    eprintln!(
        "rdpdiag: point the Remote Desktop client at it: mstsc /v:{}",
        mstsc_address(local)
    );
    let (tx, mut rx) = mpsc::channel::<ConnectionReport>(64);
    let shutdown = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "No Ctrl-C handler; stop with a signal");
            std::future::pending::<()>().await;
        }
    };
    let running = tokio::spawn(proxy.run(tx, shutdown));
    let mut all_healthy = true;
    let mut stdout = std::io::stdout().lock();
    while let Some(report) = rx.recv().await {
        all_healthy &= report.verdict.outcome == Outcome::Healthy;
        if json {
            serde_json::to_writer(&mut stdout, &report)?;
            stdout.write_all(b"\n")?;
        } else {
            stdout.write_all(render_text(&report).as_bytes())?;
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
    }
    running.await??;
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What to type after `mstsc /v:` (the port only when it is not 3389).
fn mstsc_address(local: SocketAddr) -> String {
    let ip = match local.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    if local.port() == crate::relay::DEFAULT_RDP_PORT {
        ip
    } else {
        format!("{ip}:{}", local.port())
    }
}
