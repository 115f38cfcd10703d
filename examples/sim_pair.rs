//! Plays one scenario between a simulated client and a simulated host, without the proxy, and
//! prints how each side saw it.
//!
//! ```text
//! cargo run --example sim_pair -- healthy-nla
//! cargo run --example sim_pair -- --list
//! ```
//!
//! To watch the bytes, point the client at a proxy instead: `rdpdiag demo --only NAME`.

use std::time::Duration;

use rdpdiag::sim::scenarios;
use rdpdiag::sim::{client, host};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "healthy-nla".to_owned());
    if arg == "--list" {
        for s in scenarios::all() {
            println!("{:<40} row {:>2}  {}", s.name, s.design_row, s.description);
        }
        return Ok(());
    }
    let Some(mut s) = scenarios::by_name(&arg) else {
        return Err(format!("no scenario {arg:?} (try --list)").into());
    };
    if s.target_override.is_some() {
        return Err(
            format!("{arg} needs an unreachable target: run `rdpdiag demo --only {arg}`").into(),
        );
    }
    // Without a proxy nobody ends a stall: let the client give up instead.
    if s.proxy_stall_timeout.is_some() {
        s.client.read_timeout = Duration::from_secs(1);
    }
    s.host.max_connections = Some(1);
    println!(
        "{} (DESIGN row {}): {}",
        s.name, s.design_row, s.description
    );
    let (addr, host) = host::spawn(s.host).await?;
    let outcome = client::run(s.client, addr).await;
    println!("client: reached {} — {:?}", outcome.reached, outcome.end);
    if let Some(sel) = outcome.selected {
        println!("        selected {sel}");
    }
    if let Some(tls) = &outcome.tls {
        println!("        tls {tls}");
    }
    for log in host.await? {
        println!("host:   reached {}", log.reached);
        for step in log.steps {
            println!("        {step}");
        }
    }
    println!(
        "expected proxy verdict: cause {} / phase {} / closed by {}",
        s.expect.cause,
        s.expect.phase,
        s.expect.closed_by.name()
    );
    Ok(())
}
