//! `rdpdiag demo`: the failure scenarios of DESIGN.md played by simulated hosts and clients
//! through the real proxy, each with its verdict, then a summary against the expected ones.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::Global;
use crate::report::render_text;
use crate::sim::demo;

const AFTER_HELP: &str = "\
Every scenario runs on loopback with a simulated host, the real proxy and a simulated client;
no RDP machine is needed. The summary compares each verdict with the one the scenario expects.

Exit status:
  0  every verdict is the expected one
  1  at least one verdict differs (MISMATCH)
  2  usage error, or a scenario could not be set up";

/// Play the failure scenarios through the proxy and show each verdict.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// One JSON object per scenario and line on stdout (scenario, expected verdict, report)
    #[arg(long)]
    pub json: bool,
    /// Only the scenarios whose name contains NAME, or that expect cause id NAME
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let results = super::runtime()?
        .block_on(demo::run_detailed(args.only.as_deref()))
        .context("the demo could not set up a scenario")?;
    if results.is_empty() {
        eprintln!(
            "rdpdiag: no scenario matches {:?}",
            args.only.unwrap_or_default()
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let mut out = std::io::stdout().lock();
    let mut mismatches = 0usize;
    for (s, r) in &results {
        let ok = r.matches(s);
        mismatches += usize::from(!ok);
        if args.json {
            let line = serde_json::json!({
                "scenario": s.name,
                "design_row": s.design_row,
                "description": s.description,
                "expected": {
                    "cause": s.expect.cause,
                    "phase_reached": s.expect.phase,
                    "closed_by": s.expect.closed_by,
                    "close_kind": s.expect.close_kind,
                },
                "ok": ok,
                "report": r.report,
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "=== {} (DESIGN row {}) ===", s.name, s.design_row)?;
            writeln!(out, "{}", s.description)?;
            out.write_all(render_text(&r.report).as_bytes())?;
            writeln!(out)?;
        }
    }
    if !args.json {
        write_summary(&mut out, &results)?;
    }
    out.flush()?;
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_summary(
    out: &mut impl Write,
    results: &[(crate::sim::Scenario, demo::DemoRun)],
) -> std::io::Result<()> {
    let width = results
        .iter()
        .map(|(s, _)| s.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(out, "Summary")?;
    writeln!(
        out,
        "{:<width$}  row  {:<42}  {:<15}  {:<9}  result",
        "scenario", "cause", "phase", "closed by"
    )?;
    let mut matched = 0usize;
    for (s, r) in results {
        let v = &r.report.verdict;
        let ok = r.matches(s);
        matched += usize::from(ok);
        let closed = v.closed_by.map_or("-", |c| c.name());
        let result = if ok {
            "ok".to_owned()
        } else {
            format!(
                "MISMATCH (expected {} / {} / {})",
                s.expect.cause,
                s.expect.phase,
                s.expect.closed_by.name()
            )
        };
        writeln!(
            out,
            "{:<width$}  {:>3}  {:<42}  {:<15}  {:<9}  {result}",
            s.name,
            s.design_row,
            v.cause,
            v.phase_reached.name(),
            closed
        )?;
    }
    writeln!(
        out,
        "{matched} of {} scenarios gave the expected verdict.",
        results.len()
    )
}
