//! `rdpdiag cert`: a local CA the client can trust (`cert ca`), and what rdpdiag thinks of a
//! certificate (`cert inspect FILE|HOST[:PORT]`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{EXIT_USAGE, Global};
use crate::relay::{classify_tls_error, parse_target};
use crate::tls::cert::{Ca, pem_to_der};
use crate::tls::verifier::RecordingVerifier;
use crate::wire::x509;

/// Certificates: a local CA, or inspect one
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CertCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// Make a local CA (ca.crt, ca.key with mode 0600) for `proxy --fresh-cert --ca DIR`
    Ca {
        /// Directory to write ca.crt and ca.key into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show what rdpdiag (and a Windows client) thinks of a certificate
    Inspect {
        /// A PEM or DER file, or an RDP host (HOST[:PORT], port 3389 unless given)
        #[arg(value_name = "FILE|HOST[:PORT]")]
        target: String,
        /// The name the client uses for the host (default: HOST, or none for a file)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    match args.command {
        CertCommand::Ca { out } => make_ca(&out),
        CertCommand::Inspect { target, name } => inspect(&target, name),
    }
}

fn make_ca(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let ca = Ca::generate()?;
    let (crt, key) = ca.write(out)?;
    let summary = x509::summarize(&ca.cert_der)
        .map(|s| s.one_line())
        .unwrap_or_default();
    println!("CA certificate: {} ({summary})", crt.display());
    println!(
        "CA private key: {} (mode 0600; keep it private)",
        key.display()
    );
    println!(
        "Trust it on the Windows client (PowerShell, current user), after copying ca.crt there:"
    );
    println!("  Import-Certificate -FilePath ca.crt -CertStoreLocation Cert:\\CurrentUser\\Root");
    println!(
        "Then: rdpdiag proxy --target HOST --fresh-cert --ca {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(target: &str, name: Option<String>) -> anyhow::Result<ExitCode> {
    let path = std::path::Path::new(target);
    let (chain, expected) = if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {target}"))?;
        let der = match std::str::from_utf8(&bytes) {
            Ok(text) if text.contains("-----BEGIN") => {
                pem_to_der(text).with_context(|| format!("{target}: no PEM certificate block"))?
            }
            _ => bytes,
        };
        (vec![der], name)
    } else {
        let Some((host, port)) = parse_target(target) else {
            eprintln!("rdpdiag: {target:?} is neither a file nor HOST[:PORT]");
            return Ok(ExitCode::from(EXIT_USAGE));
        };
        let chain = super::runtime()?.block_on(fetch_chain(&host, port))?;
        (chain, Some(name.unwrap_or(host)))
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut worst = ExitCode::SUCCESS;
    for (i, der) in chain.iter().enumerate() {
        let s = x509::summarize(der).context("not a certificate rdpdiag can read")?;
        let role = if i == 0 { "leaf" } else { "chain" };
        println!("{role}: {}", s.one_line());
        println!("  names: {}", s.host_names().join(", "));
        println!(
            "  extended key usage: {}",
            if s.eku_present {
                s.ekus.join(", ")
            } else {
                "absent (any purpose)".to_owned()
            }
        );
        println!("  SHA-1 thumbprint: {}", s.sha1_fingerprint);
        if i == 0 {
            let problems = x509::problems(&s, now, expected.as_deref());
            if problems.is_empty() {
                println!(
                    "  problems: none a Windows client checks locally (trust in the issuer is checked on the client)"
                );
            } else {
                worst = ExitCode::from(1);
                println!("  problems:");
                for p in problems {
                    println!("    - [{}] {p}", p.id());
                }
            }
        }
    }
    Ok(worst)
}

/// X.224 Connection Request asking for SSL (MS-RDPBCGR 2.2.1.1): TPKT (4) + X.224 CR header (7)
/// + RDP_NEG_REQ (8) = 19 bytes.
const CR_SSL: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, // TPKT v3, length 19
    0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, // X.224 CR: LI 14, CR code, dst, src, class
    0x01, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00,
    0x00, // RDP_NEG_REQ: type 1, flags, length 8, SSL
];

/// Asks the host for TLS and returns the certificate chain it presents (TLS 1.2, where the
/// certificate travels in clear as it does for most RDP clients; TLS 1.3 for a host that speaks
/// nothing else). Any certificate is accepted.
async fn fetch_chain(host: &str, port: u16) -> anyhow::Result<Vec<Vec<u8>>> {
    match fetch_chain_with(host, port, &rustls::version::TLS12).await {
        Ok(chain) => Ok(chain),
        Err(e12) => fetch_chain_with(host, port, &rustls::version::TLS13)
            .await
            .map_err(|e13| anyhow::anyhow!("TLS 1.2: {e12:#}; TLS 1.3: {e13:#}")),
    }
}

async fn fetch_chain_with(
    host: &str,
    port: u16,
    version: &'static rustls::SupportedProtocolVersion,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let limit = Duration::from_secs(10);
    let mut tcp = tokio::time::timeout(limit, TcpStream::connect((host, port)))
        .await
        .context("connect timed out")?
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    tcp.write_all(&CR_SSL).await?;
    let mut head = [0_u8; 4];
    tokio::time::timeout(limit, tcp.read_exact(&mut head))
        .await
        .context("no Connection Confirm")??;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut rest = vec![0_u8; len.saturating_sub(4)];
    tokio::time::timeout(limit, tcp.read_exact(&mut rest))
        .await
        .context("no Connection Confirm")??;
    // RDP_NEG_RSP / RDP_NEG_FAILURE are the last 8 bytes: type, flags, length, value.
    if let Some(neg) = rest.len().checked_sub(8).and_then(|at| rest.get(at..)) {
        let value = u32::from_le_bytes([neg[4], neg[5], neg[6], neg[7]]);
        match neg[0] {
            0x03 => anyhow::bail!(
                "the host refused TLS: RDP_NEG_FAILURE {}",
                crate::wire::x224::FailureCode(value)
            ),
            0x02 if value & 1 == 0 => {
                anyhow::bail!("the host did not select TLS (selectedProtocol 0x{value:x})")
            }
            _ => {}
        }
    }
    let verifier = Arc::new(RecordingVerifier::new(crate::tls::provider()));
    let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[version])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as _)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).context("invalid host name")?;
    let connect = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp);
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let chain = verifier.chain();
            if chain.is_empty() {
                anyhow::bail!("TLS handshake failed: {:?}", classify_tls_error(&e));
            }
        }
        Err(_) => anyhow::bail!("TLS handshake timed out"),
    }
    Ok(verifier.chain())
}
