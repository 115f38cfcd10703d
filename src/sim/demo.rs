//! `rdpdiag demo`: every scenario of DESIGN.md's table through the real proxy on loopback.
//!
//! For each scenario: a simulated host on 127.0.0.1:0 (or an unreachable target), a real
//! [`relay::Proxy`](crate::relay::Proxy) on 127.0.0.1:0 relaying to it, the simulated client
//! through the proxy, and the proxy's report for that one connection. Scenarios run
//! concurrently; results come back in table order.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::certs;
use super::client::{self, ClientOutcome};
use super::host;
use super::scenarios::{self, Scenario, TargetOverride};
pub use super::targets::{BlackHole, nothing_listening};
use crate::relay::{Proxy, ProxyConfig};
use crate::report::ConnectionReport;

/// Proxy stall timeout when a scenario does not set one: long enough never to fire.
const DEFAULT_STALL: Duration = Duration::from_secs(30);
/// Proxy connect timeout when a scenario does not set one.
const DEFAULT_CONNECT: Duration = Duration::from_secs(5);
/// Most one scenario may take, end to end.
const SCENARIO_LIMIT: Duration = Duration::from_secs(40);

/// What went wrong setting a scenario up (not a verdict: the proxy's report is the result).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("scenario {scenario}: {source}")]
    Io {
        scenario: &'static str,
        source: std::io::Error,
    },
    #[error("scenario {0}: the proxy sent no report")]
    NoReport(&'static str),
    #[error("scenario {0}: did not finish within {SCENARIO_LIMIT:?}")]
    TimedOut(&'static str),
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct DemoRun {
    pub report: ConnectionReport,
    /// How the simulated client saw it.
    pub client: ClientOutcome,
}

impl DemoRun {
    /// Does the proxy's verdict say what the scenario expects?
    pub fn matches(&self, s: &Scenario) -> bool {
        let v = &self.report.verdict;
        v.cause == s.expect.cause
            && v.phase_reached == s.expect.phase
            && v.closed_by == Some(s.expect.closed_by)
            && s.expect.close_kind.is_none_or(|k| v.close_kind == Some(k))
    }
}

/// Does `filter` select this scenario? An exact name, a part of a name, or a cause id.
pub fn selects(filter: &str, s: &Scenario) -> bool {
    s.name == filter || s.name.contains(filter) || s.expect.cause == filter
}

/// Runs the scenarios `filter` selects (all when None) through the proxy, concurrently, and
/// returns each with the proxy's report, in table order.
pub async fn run(filter: Option<&str>) -> Result<Vec<(Scenario, ConnectionReport)>, DemoError> {
    Ok(run_detailed(filter)
        .await?
        .into_iter()
        .map(|(s, r)| (s, r.report))
        .collect())
}

/// Like [`run`], with the client's view of each scenario too.
pub async fn run_detailed(filter: Option<&str>) -> Result<Vec<(Scenario, DemoRun)>, DemoError> {
    // Generate the shared test PKI (RSA keys) once, off the async workers.
    let pki = tokio::task::spawn_blocking(|| certs::pki().map(|_| ())).await;
    if let Ok(Err(e)) = pki {
        return Err(DemoError::Io {
            scenario: "(certificates)",
            source: e.into(),
        });
    }
    let chosen: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| filter.is_none_or(|f| selects(f, s)))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in chosen.iter().cloned().enumerate() {
        tasks.spawn(async move { (i, run_one(&s).await) });
    }
    let mut results: Vec<Option<DemoRun>> = vec![None; chosen.len()];
    while let Some(done) = tasks.join_next().await {
        let Ok((i, r)) = done else {
            continue;
        };
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(r?);
        }
    }
    chosen
        .into_iter()
        .zip(results)
        .map(|(s, r)| match r {
            Some(r) => Ok((s, r)),
            None => Err(DemoError::NoReport(s.name)),
        })
        .collect()
}

/// Runs one scenario through a fresh proxy.
pub async fn run_one(s: &Scenario) -> Result<DemoRun, DemoError> {
    match tokio::time::timeout(SCENARIO_LIMIT, run_one_inner(s)).await {
        Ok(r) => r,
        Err(_) => Err(DemoError::TimedOut(s.name)),
    }
}

async fn run_one_inner(s: &Scenario) -> Result<DemoRun, DemoError> {
    let io = |source: std::io::Error| DemoError::Io {
        scenario: s.name,
        source,
    };
    // The target: a simulated host, or somewhere unreachable.
    let mut host_task = None;
    let mut _hole = None;
    let target = match s.target_override {
        None => {
            let mut cfg = s.host.clone();
            cfg.max_connections = Some(1);
            let (addr, handle) = host::spawn(cfg).await.map_err(io)?;
            host_task = Some(handle);
            addr
        }
        Some(TargetOverride::NothingListening) => nothing_listening().await.map_err(io)?,
        Some(TargetOverride::BlackHole) => {
            let hole = BlackHole::new().await.map_err(io)?;
            let addr = hole.addr;
            _hole = Some(hole);
            addr
        }
    };

    let mut cfg = ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), target.to_string());
    cfg.connect_timeout = s.proxy_connect_timeout.unwrap_or(DEFAULT_CONNECT);
    cfg.stall_timeout = s.proxy_stall_timeout.unwrap_or(DEFAULT_STALL);
    cfg.max_connections = Some(1);
    if let Some((user, password)) = s.proxy_nla {
        let issued = crate::tls::cert::fresh("127.0.0.1", None)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        cfg.fresh_cert = Some(crate::relay::FreshCertConfig {
            issued: std::sync::Arc::new(issued),
            nla: Some(std::sync::Arc::new(crate::nla::ntlm::Credentials::new(
                user,
                password.to_owned(),
            ))),
        });
    }
    if cfg.session.now_unix.is_none() {
        // The verdict judges certificate validity against this (the core has no clock).
        cfg.session.now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
    }
    let proxy = Proxy::bind(cfg).await.map_err(io)?;
    let proxy_addr = proxy.local_addr();
    let (tx, mut rx) = mpsc::channel(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy_task = tokio::spawn(proxy.run(tx, async {
        let _ = stopped.await;
    }));

    let client = client::run(s.client.clone(), proxy_addr).await;
    let report = rx.recv().await;

    // Tear down: the proxy has ended its one connection; the host may still wait for a peer.
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), proxy_task).await;
    if let Some(h) = host_task {
        h.abort();
    }
    match report {
        Some(report) => Ok(DemoRun { report, client }),
        None => Err(DemoError::NoReport(s.name)),
    }
}
