//! `rdpdiag analyze FILE`: the same diagnosis from a capture taken elsewhere.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_USAGE, Global, parse_secs};
use crate::capture::{AnalysisReport, AnalyzeConfig, Analyzer, ConnectionAnalysis};
use crate::report::{ConnectionReport, render_text};
use crate::session::{Micros, Outcome};

const AFTER_HELP: &str = "\
Reads pcap or pcapng (tcpdump, Wireshark/dumpcap, pktmon etl2pcap, etl2pcapng), gzip-compressed
or not, whatever the file name says. RDP is found on any port by its X.224 Connection Request
(also after a SOCKS or pre-connection preamble); each RDP connection gets the verdict the proxy
would give. Windows ETL traces must be converted first:
  pktmon etl2pcap trace.etl --out trace.pcapng      (pktmon; capture with --pkt-size 0)
  etl2pcapng trace.etl trace.pcapng                 (netsh trace)

Exit status:
  0  every RDP connection in the capture was healthy (or there was none)
  1  at least one RDP connection failed, or its outcome is unknown
  2  usage error, or the file cannot be read as a capture";

/// Diagnose the RDP connections in a packet capture.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The capture file (pcap, pcapng, optionally gzip-compressed); - for standard input
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// One JSON object per RDP connection and line on stdout, instead of readable blocks
    #[arg(long)]
    pub json: bool,
    /// Also list the TCP connections that are not RDP
    #[arg(long)]
    pub all: bool,
    /// Seconds without progress after which a phase counts as stalled
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub stall_timeout: Duration,
    /// Include each connection's decoded event list in the JSON objects
    #[arg(long)]
    pub events: bool,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let mut cfg = AnalyzeConfig {
        keep_events: args.events,
        ..AnalyzeConfig::default()
    };
    cfg.session.stall_timeout =
        Micros(u64::try_from(args.stall_timeout.as_micros()).unwrap_or(u64::MAX));
    let report = match read(&args.file, cfg) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("rdpdiag: {}: {msg}", args.file.display());
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        for c in &report.connections {
            serde_json::to_writer(&mut stdout, c)?;
            stdout.write_all(b"\n")?;
        }
        if args.all {
            for o in &report.other_tcp {
                serde_json::to_writer(&mut stdout, o)?;
                stdout.write_all(b"\n")?;
            }
        }
        for w in &report.warnings {
            eprintln!("rdpdiag: {w}");
        }
    } else {
        stdout.write_all(
            render_report(&report, &args.file.display().to_string(), args.all).as_bytes(),
        )?;
    }
    stdout.flush()?;
    let all_healthy = report
        .connections
        .iter()
        .all(|c| c.verdict.outcome == Outcome::Healthy);
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Streams the file through the analyzer (memory does not grow with the file size).
fn read(path: &PathBuf, cfg: AnalyzeConfig) -> Result<AnalysisReport, String> {
    let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| e.to_string())?)
    };
    let mut analyzer = Analyzer::new(cfg);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        analyzer.push(buf.get(..n).unwrap_or_default());
    }
    analyzer.finish().map_err(|e| e.to_string())
}

/// The readable report: a header, one block per RDP connection, the rest briefly.
pub fn render_report(r: &AnalysisReport, file: &str, all: bool) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored through `ok()`.
    let format = r
        .format
        .map(|f| f.to_string())
        .unwrap_or_else(|| "unknown format".into());
    writeln!(
        out,
        "{file}: {format}{}, {} packets{}{}",
        if r.gzip { " (gzip)" } else { "" },
        r.packets,
        match (&r.first_packet, &r.last_packet) {
            (Some(a), Some(b)) => format!(", {a} .. {b}"),
            _ => String::new(),
        },
        if r.link_types.is_empty() {
            String::new()
        } else {
            format!(", {}", r.link_types.join(", "))
        }
    )
    .ok();
    for w in &r.warnings {
        writeln!(out, "warning: {w}").ok();
    }
    if r.tls_key_log_lines > 0 {
        writeln!(
            out,
            "TLS secrets: {} key-log lines in Decryption Secrets Blocks",
            r.tls_key_log_lines
        )
        .ok();
    }
    writeln!(
        out,
        "{} RDP connection(s), {} other TCP connection(s){}",
        r.connections.len(),
        r.other_tcp.len(),
        if r.other_tcp.is_empty() || all {
            ""
        } else {
            " (--all lists them)"
        }
    )
    .ok();
    for c in &r.connections {
        out.push('\n');
        out.push_str(&render_connection(c));
    }
    if all && !r.other_tcp.is_empty() {
        writeln!(out, "\nnot RDP:").ok();
        for o in &r.other_tcp {
            writeln!(
                out,
                "  tcp.stream {} {} -> {}: {}, {} packets, {} B / {} B{}",
                o.stream,
                o.client,
                o.server,
                o.state,
                o.packets,
                o.bytes_client_to_server,
                o.bytes_server_to_client,
                o.looks_like
                    .as_ref()
                    .map(|l| format!(", {l}"))
                    .unwrap_or_default()
            )
            .ok();
        }
    }
    if !r.rdp_udp.is_empty() {
        writeln!(out, "\nRDP over UDP (MS-RDPEUDP), not analysed:").ok();
        for u in &r.rdp_udp {
            writeln!(
                out,
                "  {} -> {}: {} datagrams, {} B{}",
                u.client,
                u.server,
                u.datagrams,
                u.bytes,
                if u.rdpeudp_syn { ", SYN seen" } else { "" }
            )
            .ok();
        }
    }
    out
}

/// The proxy's block for the verdict, then what only a capture shows.
fn render_connection(c: &ConnectionAnalysis) -> String {
    let duration_ms = Micros::from_secs_f64(c.duration_s).0 / 1000;
    let as_proxy = ConnectionReport {
        id: u64::from(c.stream),
        client: c.client.to_string(),
        target: c.server.to_string(),
        host_addr: Some(c.server.to_string()),
        started_at: c.first_seen.clone(),
        duration_ms,
        bytes_client_to_host: c.bytes_client_to_server,
        bytes_host_to_client: c.bytes_server_to_client,
        verdict: c.verdict.clone(),
        events: Vec::new(),
        tls_keylog: None,
    };
    let mut out = String::from("tcp.stream ");
    out.push_str(&render_text(&as_proxy));
    if !c.vlans.is_empty() {
        let v: Vec<String> = c.vlans.iter().map(u16::to_string).collect();
        writeln!(out, "  vlan {}", v.join(", ")).ok();
    }
    if let Some(p) = &c.preamble {
        writeln!(
            out,
            "  preamble: {} ({} B from the client, {} B from the server){}",
            p.kind,
            p.client_bytes,
            p.server_bytes,
            p.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )
        .ok();
    }
    for s in &c.stalls {
        writeln!(
            out,
            "  stall: {:.1} s without a byte in phase {} from {:.3} s, {}",
            s.idle_s,
            s.phase.name(),
            s.from_s,
            s.resumed_by
                .map(|side| format!("then the {} spoke", side.name()))
                .unwrap_or_else(|| "until the end".into())
        )
        .ok();
    }
    for g in &c.gaps {
        writeln!(
            out,
            "  gap: {} bytes missing from the capture at {} offset {} ({:?}, {:.3} s)",
            g.len,
            g.dir.arrow(),
            g.offset,
            g.reason,
            g.at_s
        )
        .ok();
    }
    let t = (&c.tcp_client_to_server, &c.tcp_server_to_client);
    let retrans = t.0.retransmitted_segments + t.1.retransmitted_segments;
    let ooo = t.0.out_of_order_segments + t.1.out_of_order_segments;
    if retrans + ooo > 0 {
        writeln!(
            out,
            "  tcp: {retrans} retransmitted or duplicate segment(s), {ooo} out of order"
        )
        .ok();
    }
    if c.tls_secrets {
        writeln!(out, "  TLS secrets for this connection are in the capture").ok();
    }
    for n in &c.notes {
        writeln!(out, "  note: {n}").ok();
    }
    out
}
