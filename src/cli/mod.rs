//! The command line: parses arguments, sets up logging, runs one verb. The only code that
//! prints.
//!
//! Adding a verb: a module with an `Args` struct (clap `Args`) and a
//! `run(args, &Global) -> anyhow::Result<ExitCode>` function, one [`Command`] variant, one
//! match arm in [`main`].

pub mod analyze;
pub mod cert;
pub mod demo;
pub mod probe;
pub mod proxy;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

const EXIT_STATUS: &str = "\
Exit status:
  0  every connection reported was healthy
  1  at least one connection failed, or its outcome is unknown
  2  usage error, or rdpdiag could not start (address in use, invalid target...)";

/// Diagnose Remote Desktop (RDP) negotiation failures ("0x904, extended 0x7") from the bytes on
/// the wire.
#[derive(Debug, Parser)]
#[command(name = "rdpdiag", version, after_help = EXIT_STATUS)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// More logs on stderr: -v debug, -vv trace (RUST_LOG overrides both)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay mstsc to an RDP host and diagnose each connection
    Proxy(proxy::Args),
    /// Diagnose the RDP connections in a capture file (pcap, pcapng)
    Analyze(analyze::Args),
    /// Play the failure scenarios with simulated hosts and clients through the proxy
    Demo(demo::Args),
    /// Ask an RDP host what it accepts, and which clients it will fail
    Probe(probe::Args),
    /// Certificates: a local CA for --fresh-cert, or inspect a certificate
    Cert(cert::Args),
}

/// Exit status for usage errors and failures to start.
pub const EXIT_USAGE: u8 = 2;

/// Runs the command line; the status to exit with.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo relays dozens of connections: its reports are the output, not their info logs.
    init_logs(cli.global.verbose, matches!(cli.command, Command::Demo(_)));
    let result = match cli.command {
        Command::Proxy(args) => proxy::run(args, &cli.global),
        Command::Analyze(args) => analyze::run(args, &cli.global),
        Command::Demo(args) => demo::run(args, &cli.global),
        Command::Probe(args) => probe::run(args, &cli.global),
        Command::Cert(args) => cert::run(args, &cli.global),
    };
    result.unwrap_or_else(|e| {
        eprintln!("rdpdiag: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Logs go to stderr; stdout is for reports.
fn init_logs(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn,rustls=error",
        // rustls warns about every client that sends an IP address as SNI (xfreerdp, mstsc to
        // an address): noise under --fresh-cert.
        0 => "warn,rdpdiag=info,rustls=error",
        1 => "info,rdpdiag=debug",
        _ => "debug,rdpdiag=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// A multi-threaded tokio runtime for the verbs that do I/O.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s}"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("seconds must be positive: {s}"))
}
