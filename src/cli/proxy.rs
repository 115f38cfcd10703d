//! `rdpdiag proxy`: relay mstsc to the host, print one verdict per connection.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use super::{EXIT_USAGE, Global, parse_secs};
use crate::nla::ntlm::Credentials;
use crate::record;
use crate::relay::tap::RecordConfig;
use crate::relay::{
    FreshCertConfig, Proxy, ProxyConfig, SecurityRewrite, experiment_warnings, parse_target,
};
use crate::report::{ConnectionReport, render_text};
use crate::session::Outcome;
use crate::tls::cert::Ca;

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
    /// Write a trace bundle per connection under DIR: capture.pcapng (Wireshark), events.jsonl,
    /// verdict.json, report.txt, report.html, host-cert.pem
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// With --record: replace user, host and domain names and IP addresses by tokens in every
    /// file of the bundle (the capture included); never write TLS keys
    #[arg(long, requires = "record")]
    pub redact: bool,
    /// With --record: never embed TLS keys in the capture
    #[arg(long, requires = "record")]
    pub no_secrets: bool,
    /// With --record: bytes recorded per connection; more are relayed and counted, not recorded
    #[arg(long, value_name = "BYTES", requires = "record")]
    pub record_limit: Option<u64>,
    /// Offer the host this security layer instead of the client's request (the experiment that
    /// confirms "NLA / TLS is what fails")
    #[arg(long, value_enum, value_name = "LAYER")]
    pub security: Option<Security>,
    /// Terminate TLS on both legs, presenting a fresh certificate to the client (RSA-2048,
    /// serverAuth + Remote Desktop Authentication EKU); removes NLA unless --security nla or
    /// --nla-user
    #[arg(long)]
    pub fresh_cert: bool,
    /// Name in the fresh certificate (default: the target host as given)
    #[arg(long, value_name = "NAME", requires = "fresh_cert")]
    pub cert_name: Option<String>,
    /// Sign the fresh certificate with the CA in DIR (from `rdpdiag cert ca --out DIR`)
    #[arg(long, value_name = "DIR", requires = "fresh_cert")]
    pub ca: Option<std::path::PathBuf>,
    /// Append the TLS secrets of both legs to FILE (SSLKEYLOGFILE format, mode 0600)
    #[arg(long, value_name = "FILE", requires = "fresh_cert")]
    pub keylog: Option<std::path::PathBuf>,
    /// With --fresh-cert: keep NLA on and broker CredSSP (NTLM) on both legs as USER, USER@DOMAIN
    /// or DOMAIN\USER, so the host's own CredSSP verdict is read in clear. The password comes
    /// from --nla-password-file, else the RDPDIAG_NLA_PASSWORD environment variable, else a
    /// prompt; never from the command line
    #[arg(long, value_name = "USER", requires = "fresh_cert")]
    pub nla_user: Option<String>,
    /// With --nla-user: read the password from the first line of FILE
    #[arg(long, value_name = "FILE", requires = "nla_user")]
    pub nla_password_file: Option<std::path::PathBuf>,
}

/// The environment variable `--nla-user` reads the password from when no file is given.
pub const PASSWORD_ENV: &str = "RDPDIAG_NLA_PASSWORD";

/// The `--nla-user` password: file, environment, or prompt (no echo). The caller's copy is
/// moved into [`Credentials`], which zeroes it.
fn nla_password(args: &Args) -> anyhow::Result<String> {
    use zeroize::Zeroize;
    if let Some(path) = &args.nla_password_file {
        let mut text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --nla-password-file {}", path.display()))?;
        let pw = text.lines().next().unwrap_or_default().to_owned();
        text.zeroize();
        return Ok(pw);
    }
    if let Some(v) = std::env::var_os(PASSWORD_ENV) {
        return v
            .into_string()
            .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"));
    }
    let user = args.nla_user.as_deref().unwrap_or_default();
    rpassword::prompt_password(format!("rdpdiag: password for {user} (NLA, never stored): "))
        .context("cannot read the password from the terminal: use --nla-password-file or RDPDIAG_NLA_PASSWORD")
}

/// `--security` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// Standard RDP Security only
    Rdp,
    /// TLS only (no NLA)
    Tls,
    /// NLA (CredSSP over TLS)
    Nla,
    /// The client's request without NLA
    NoNla,
    /// The client's request without plain TLS (NLA kept)
    NoTls,
}

impl From<Security> for SecurityRewrite {
    fn from(s: Security) -> Self {
        match s {
            Security::Rdp => SecurityRewrite::Rdp,
            Security::Tls => SecurityRewrite::Tls,
            Security::Nla => SecurityRewrite::Nla,
            Security::NoNla => SecurityRewrite::NoNla,
            Security::NoTls => SecurityRewrite::NoTls,
        }
    }
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
    let record = match &args.record {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "rdpdiag: cannot create --record directory {}: {e}",
                    dir.display()
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let options = record::Options {
                redact: args.redact,
                secrets: !args.no_secrets && !args.redact,
            };
            let mut r = RecordConfig::new(dir, options);
            r.limit = args.record_limit.unwrap_or(r.limit);
            eprintln!(
                "rdpdiag: recording each connection under {}{}",
                dir.display(),
                if args.redact { " (redacted)" } else { "" }
            );
            Some(r)
        }
        None => None,
    };
    let security = args.security.map(SecurityRewrite::from);
    let fresh_cert = if args.fresh_cert {
        let name = match &args.cert_name {
            Some(n) => n.clone(),
            None => parse_target(&args.target)
                .map(|(h, _)| h)
                .unwrap_or_default(),
        };
        let ca = match &args.ca {
            Some(dir) => Some(Ca::load(dir).with_context(|| {
                format!(
                    "cannot load the CA from {} (make one with rdpdiag cert ca --out DIR)",
                    dir.display()
                )
            })?),
            None => None,
        };
        let issued = crate::tls::cert::fresh(&name, ca.as_ref())
            .with_context(|| format!("cannot make a certificate for {name}"))?;
        eprintln!(
            "rdpdiag: --fresh-cert: presenting an RSA-2048 certificate for {name} ({}), TLS 1.2/1.3",
            match &args.ca {
                Some(dir) => format!("signed by the CA in {}", dir.display()),
                None => "self-signed: the client will warn unless you use --ca".to_owned(),
            }
        );
        let nla = match &args.nla_user {
            Some(user) => Some(std::sync::Arc::new(Credentials::new(
                user,
                nla_password(&args)?,
            ))),
            None => None,
        };
        Some(FreshCertConfig {
            issued: std::sync::Arc::new(issued),
            nla,
        })
    } else {
        None
    };
    for w in experiment_warnings(security, args.fresh_cert, args.nla_user.as_deref()) {
        eprintln!("rdpdiag: warning: {w}");
    }
    if let Some(path) = &args.keylog {
        eprintln!(
            "rdpdiag: warning: {} will hold TLS secrets that decrypt these sessions (CredSSP included): keep it private, delete it after use",
            path.display()
        );
    }
    let cfg = ProxyConfig {
        record,
        security,
        fresh_cert,
        connect_timeout: args.connect_timeout,
        stall_timeout: args.stall_timeout,
        max_connections: args.max_connections,
        max_concurrent: usize::try_from(args.max_concurrent).unwrap_or(usize::MAX),
        ..ProxyConfig::new(args.listen, args.target.clone())
    };
    super::runtime()?.block_on(serve(cfg, args.json, args.keylog))
}

/// Appends one connection's key log to `path` (created 0600).
fn append_keylog(path: &std::path::Path, lines: &str) -> anyhow::Result<()> {
    if !path.exists() {
        crate::tls::cert::write_private(path, b"")?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write the key log {}", path.display()))?;
    f.write_all(lines.as_bytes())?;
    Ok(())
}

async fn serve(
    cfg: ProxyConfig,
    json: bool,
    keylog: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let target = cfg.target.clone();
    let record = cfg.record.clone();
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
    let mut out = Vec::new();
    while let Some(first) = rx.recv().await {
        // Reports that are already waiting go out in one write (one syscall, not three per
        // report, when connections end faster than they are printed).
        out.clear();
        let mut next = Some(first);
        let mut batched = 0;
        while let Some(report) = next.take() {
            all_healthy &= report.verdict.outcome == Outcome::Healthy;
            if let (Some(path), Some(lines)) = (&keylog, &report.tls_keylog)
                && let Err(e) = append_keylog(path, lines)
            {
                eprintln!("rdpdiag: {e:#}");
            }
            if json {
                serde_json::to_writer(&mut out, &report)?;
            } else {
                out.extend_from_slice(render_text(&report).as_bytes());
            }
            out.push(b'\n');
            batched += 1;
            if batched < 64 {
                next = rx.try_recv().ok();
            }
        }
        stdout.write_all(&out)?;
        stdout.flush()?;
    }
    running.await??;
    if let Some(r) = record {
        // The bundles of the connections that ended are still being written.
        r.flush().await;
    }
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
