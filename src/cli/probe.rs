//! `rdpdiag probe HOST[:PORT]`: ask the host itself what it accepts, and which clients it will
//! fail.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{EXIT_USAGE, Global, parse_secs};
use crate::probe::verdict::Fate;
use crate::probe::{ProbeOptions, ProbeReport, Reachability, Target};

const AFTER_HELP: &str = "\
One TCP connection per question (about 20 in all, a few at a time): an X.224 Connection Request
per security protocol (RDP, SSL, HYBRID, SSL|HYBRID, SSL|HYBRID|HYBRID_EX, RDSTLS, RDSAAD, and one
without negotiation data); a ClientHello for exactly TLS 1.0, 1.1, 1.2 and 1.3; an NTLM NEGOTIATE
inside CredSSP to read the host's names, OS build and clock (no credentials are sent); and one
MCS Connect-Initial per Standard RDP Security encryption method. Then it judges which common
client configurations fail, with the cause, the symptom and the remedies.

Exit status:
  0  a current client (Windows 11 mstsc, a TLS 1.2+ hardened client) connects
  1  a current client fails (the verdict says why)
  2  the host cannot be reached at all (refused, timeout, unknown name), or a usage error";

/// Ask an RDP host what it accepts, and which clients it will fail.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The RDP host (port 3389 unless given; [v6addr]:port for IPv6)
    #[arg(value_name = "HOST[:PORT]")]
    pub target: String,
    /// One JSON object on stdout instead of the readable report
    #[arg(long)]
    pub json: bool,
    /// Seconds each step of each connection may take (connect, each answer)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Connections open at the same time
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub parallel: u64,
    /// The name users connect with, when probing by another name or address: sent as SNI and
    /// checked against the certificate (default: HOST as given)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let target: Target = match args.target.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rdpdiag: {}: {e}", args.target);
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let tty = std::io::stderr().is_terminal();
    let progress: Option<crate::probe::driver::Progress> = tty.then(|| {
        Arc::new(|msg: &str| {
            let mut line: String = msg.chars().take(100).collect();
            line.retain(|c| !c.is_control());
            eprint!("\r\x1b[2K{line}");
        }) as crate::probe::driver::Progress
    });
    let opts = ProbeOptions {
        timeout: args.timeout,
        parallel: usize::try_from(args.parallel).unwrap_or(3),
        server_name: args.name,
        progress,
    };
    let report = super::runtime()?.block_on(crate::probe::run(&target, &opts));
    if tty {
        eprint!("\r\x1b[2K");
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &report)?;
        stdout.write_all(b"\n")?;
    } else {
        stdout.write_all(render_text(&report).as_bytes())?;
    }
    stdout.flush()?;
    Ok(ExitCode::from(report.exit_code()))
}

/// The readable report: one short section per check, then the findings and the verdict.
pub fn render_text(r: &ProbeReport) -> String {
    let mut o = String::new();
    let w = &mut o;
    let address = match &r.reachability {
        Reachability::Reachable { address } => address.clone(),
        Reachability::Unreachable(_) => "unreachable".to_owned(),
    };
    let _ = writeln!(
        w,
        "rdpdiag probe {} ({address}): {} connection(s), {:.1} s",
        r.target,
        r.connections,
        Duration::from_millis(r.elapsed_ms).as_secs_f64()
    );

    if r.reachability.is_reachable() {
        let _ = writeln!(w, "\nSecurity protocols");
        for p in &r.protocols {
            let _ = writeln!(w, "  {:<22} {}", p.request.label, p.answer.describe());
            for a in &p.anomalies {
                let _ = writeln!(w, "  {:<22}   ({a})", "");
            }
        }
        for c in &r.protocol_summary.conclusions {
            let _ = writeln!(w, "  -> {c}");
        }
    }

    if let Some(t) = &r.tls {
        let _ = writeln!(
            w,
            "\nTLS (after an X.224 request for {})",
            t.requested.names()
        );
        for v in &t.versions {
            let _ = writeln!(w, "  {:<22} {}", v.label, v.outcome.describe());
        }
    }

    if let Some(c) = &r.certificate {
        let _ = writeln!(w, "\nCertificate (from the {})", c.source);
        for (i, s) in c.chain.iter().enumerate() {
            let _ = writeln!(
                w,
                "  {} {}",
                if i == 0 { "leaf" } else { "  ca" },
                s.one_line()
            );
        }
        if let Some(leaf) = c.chain.first() {
            if !leaf.ekus.is_empty() {
                let _ = writeln!(w, "  EKU  {}", leaf.ekus.join(", "));
            }
            let names = leaf.host_names();
            let _ = writeln!(
                w,
                "  names {}",
                if names.is_empty() {
                    "(none)".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        match c.days_left {
            Some(d) if d < 0 => {
                let _ = writeln!(w, "  expired {} day(s) ago", -d);
            }
            Some(d) => {
                let _ = writeln!(w, "  valid for {d} more day(s)");
            }
            None => {}
        }
        for u in &c.unreadable {
            let _ = writeln!(w, "  unreadable: {u}");
        }
        if c.problems.is_empty() {
            let _ = writeln!(
                w,
                "  no problem for a current Windows client (name {})",
                c.expected_name
            );
        }
        for p in &c.problems {
            let _ = writeln!(w, "  problem {}: {p}", p.id());
        }
    }

    if let Some(n) = &r.ntlm {
        let tls = n
            .tls
            .as_deref()
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "\nNTLM (CredSSP after an X.224 request for {}{tls})",
            n.requested.names()
        );
        match n.outcome.info() {
            Some(i) => {
                let _ = writeln!(w, "  {:<22} {}", "CredSSP version", i.credssp_version);
                let rows = [
                    ("target name", &i.target_name),
                    ("NetBIOS computer", &i.nb_computer_name),
                    ("NetBIOS domain", &i.nb_domain_name),
                    ("DNS computer", &i.dns_computer_name),
                    ("DNS domain", &i.dns_domain_name),
                    ("DNS tree", &i.dns_tree_name),
                ];
                for (k, v) in rows {
                    if let Some(v) = v {
                        let _ = writeln!(w, "  {k:<22} {v}");
                    }
                }
                if let Some(v) = &i.product_version {
                    let _ = writeln!(
                        w,
                        "  {:<22} {v}{}",
                        "OS version",
                        i.windows.map(|n| format!(" ({n})")).unwrap_or_default()
                    );
                }
                if let (Some(t), Some(s)) = (&i.host_time, i.clock_skew_secs) {
                    let _ = writeln!(
                        w,
                        "  {:<22} {t} ({} this machine)",
                        "host clock",
                        crate::probe::ntlm::skew_words(s)
                    );
                }
                for a in &i.anomalies {
                    let _ = writeln!(w, "  ({a})");
                }
            }
            None => {
                let _ = writeln!(w, "  {}", n.outcome.describe());
            }
        }
    }

    if let Some(s) = &r.rdp_security {
        let req = s
            .requested
            .map(|p| format!("an X.224 request for {}", p.names()))
            .unwrap_or_else(|| "a request without negotiation data".to_owned());
        let _ = writeln!(w, "\nStandard RDP Security (after {req})");
        for m in &s.methods {
            let _ = writeln!(w, "  {:<22} {}", m.label, m.outcome.describe());
        }
        if let Some(l) = s.level {
            let _ = writeln!(w, "  {:<22} {l}", "host encryption level");
        }
    }

    if !r.verdict.findings.is_empty() {
        let _ = writeln!(w, "\nFindings");
        for f in &r.verdict.findings {
            let _ = writeln!(w, "  - {f}");
        }
    }

    let _ = writeln!(w, "\nVerdict: {}", r.verdict.summary);
    // Causes whose symptom and remedies were printed already (several clients often fail the
    // same way).
    let mut explained: Vec<&str> = Vec::new();
    for c in &r.verdict.clients {
        let _ = writeln!(w, "  {:<5}  {}", c.fate.label(), c.client);
        let _ = writeln!(w, "         {}", c.summary);
        if c.fate == Fate::Works {
            continue;
        }
        let (cause, symptom) = if c.fate == Fate::Fails {
            ("cause", "symptom")
        } else {
            ("risk", "if it fails")
        };
        for d in &c.details {
            let _ = writeln!(w, "         also: {d}");
        }
        let Some(id) = c.cause else {
            continue;
        };
        let seen = explained.contains(&id);
        let again = if seen { " (see above)" } else { "" };
        let _ = writeln!(w, "         {cause}: {id}{again}");
        if seen {
            continue;
        }
        if let Some(s) = &c.symptom {
            let _ = writeln!(w, "         {symptom}: {s}");
        }
        if c.fate == Fate::Fails {
            explained.push(id);
            for (i, rem) in c.remedies.iter().enumerate() {
                let _ = writeln!(w, "         {}. {rem}", i + 1);
            }
        }
    }
    o
}
