//! `rdpdiag probe` against real hosts from `testbed/` (xrdp in several security layers and TLS
//! settings, the FreeRDP shadow server with NLA), on loopback ports 25500-25999.
//!
//! Each host is started with `testbed/host.sh start SCENARIO PORT` and stopped by its state
//! directory when the guard drops. A missing testbed tool fails the test and says to run
//! `testbed/install.sh`: these tests never skip silently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a helper that cannot go on is a failing test"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use rdpdiag::probe::legacy_tls::Offer;
use rdpdiag::probe::nego::{NlaSupport, idx};
use rdpdiag::probe::rdp_sec::EncryptionOutcome;
use rdpdiag::probe::verdict::Fate;
use rdpdiag::probe::{ProbeOptions, ProbeReport, Reachability, Target};
use rdpdiag::session::ConnectFailure;
use rdpdiag::wire::gcc::{EncryptionLevel, EncryptionMethods};
use rdpdiag::wire::x224::Protocols;

fn testbed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testbed")
}

/// A free loopback port in 25500-25999, distinct per test of this process.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 25500 + u16::try_from(std::process::id() % 250).unwrap();
    for _ in 0..500 {
        let p = 25500 + (base - 25500 + NEXT.fetch_add(1, Ordering::Relaxed)) % 500;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 25500-25999");
}

/// The tools a scenario needs, checked before starting it.
fn require_tools(scenario: &str) {
    let tools: &[&str] = if scenario.starts_with("shadow") {
        &[
            "freerdp-shadow-cli",
            "Xvfb",
            "winpr-hash",
            "openssl",
            "setsid",
        ]
    } else if scenario.starts_with("xrdp") {
        &["xrdp", "openssl", "setpriv", "setsid"]
    } else {
        &["perl", "setsid"]
    };
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "testbed tool {t:?} is missing (needed by scenario {scenario}): run testbed/install.sh as root"
        );
    }
}

/// A running testbed host, stopped (by state directory) on drop.
struct Host {
    port: u16,
    state: String,
}

impl Host {
    fn start(scenario: &str, extra: &[&str]) -> Host {
        require_tools(scenario);
        let mut last = String::new();
        // A port can be taken between the check and the start (other test beds run here).
        for _ in 0..3 {
            let port = free_port();
            let out = Command::new(testbed().join("host.sh"))
                .arg("start")
                .arg(scenario)
                .arg(port.to_string())
                .args(extra)
                .output()
                .expect("testbed/host.sh runs (run testbed/install.sh as root first)");
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success()
                && let Some(state) = stdout.lines().find_map(|l| l.strip_prefix("STATE="))
            {
                return Host {
                    port,
                    state: state.to_owned(),
                };
            }
            last = format!(
                "exit {:?}\n{stdout}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!(
            "testbed/host.sh start {scenario} failed (missing tools? run testbed/install.sh): {last}"
        );
    }

    fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".to_owned(),
            port: self.port,
        }
    }

    fn probe(&self) -> ProbeReport {
        probe(&self.target())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new(testbed().join("host.sh"))
            .args(["stop", &self.state])
            .output();
    }
}

fn probe(target: &Target) -> ProbeReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = ProbeOptions {
        timeout: Duration::from_secs(5),
        ..ProbeOptions::default()
    };
    rt.block_on(rdpdiag::probe::run(target, &opts))
}

fn client<'a>(r: &'a ProbeReport, id: &str) -> &'a rdpdiag::probe::verdict::ClientVerdict {
    r.verdict.clients.iter().find(|c| c.id == id).unwrap()
}

#[test]
fn xrdp_tls_with_an_expired_certificate() {
    let h = Host::start("xrdp-tls", &["--cert", "expired"]);
    let r = h.probe();
    assert!(r.reachability.is_reachable());
    let s = &r.protocol_summary;
    assert!(
        s.tls_required && s.tls_without_nla && !s.rdp_security_allowed,
        "{s:#?}"
    );
    assert_eq!(s.nla, NlaSupport::NotOffered);
    assert_eq!(
        r.protocols[idx::RDP].cause,
        Some("nego.ssl_required_by_server")
    );
    let t = r.tls.as_ref().unwrap();
    assert!(t.accepts(Offer::Tls12) && t.accepts(Offer::Tls13), "{t:#?}");
    assert!(!t.accepts(Offer::Tls10) && !t.accepts(Offer::Tls11));
    let c = r.certificate.as_ref().unwrap();
    assert!(c.source.contains("TLS 1.2"), "{}", c.source);
    assert!(c.problem_ids().contains(&"expired"), "{:?}", c.problems);
    assert!(c.days_left.unwrap() < 0);
    let m = client(&r, "mstsc");
    assert_eq!(m.fate, Fate::Fails);
    assert_eq!(m.cause, Some("tls.client_rejected_certificate"));
    assert!(m.summary.contains("expired"), "{}", m.summary);
    assert_eq!(r.exit_code(), 1);
    assert!(r.ntlm.is_none() && r.rdp_security.is_none());
}

#[test]
fn xrdp_rdp_only_and_its_encryption_methods() {
    let h = Host::start("xrdp-rdp", &[]);
    let r = h.probe();
    let s = &r.protocol_summary;
    assert!(
        s.rdp_security_allowed && s.rdp_instead_of_tls && !s.tls_required,
        "{s:#?}"
    );
    assert!(r.tls.is_none(), "no request got TLS selected");
    let rdp = r.rdp_security.as_ref().unwrap();
    assert_eq!(rdp.requested, Some(Protocols::RDP));
    assert_eq!(rdp.level, Some(EncryptionLevel::HIGH));
    assert_eq!(rdp.accepted, ["128-bit RC4"]);
    let m40 = &rdp.methods[0];
    assert_eq!(
        m40.outcome,
        EncryptionOutcome::OtherMethod {
            method: EncryptionMethods::BIT_128,
            level: EncryptionLevel::HIGH
        }
    );
    assert_eq!(client(&r, "mstsc").fate, Fate::Warning);
    let f = client(&r, "fips");
    assert_eq!(f.cause, Some("rdp_security.encryption_mismatch"));
    assert_eq!(
        client(&r, "tls12_plus").cause,
        Some("nego.client_refused_selected_protocol")
    );
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn xrdp_rdp_fips_level() {
    let h = Host::start("xrdp-rdp-fips", &[]);
    let r = h.probe();
    let rdp = r.rdp_security.as_ref().unwrap();
    assert_eq!(rdp.level, Some(EncryptionLevel::FIPS));
    assert_eq!(rdp.accepted, ["FIPS (3DES)"]);
    assert_eq!(client(&r, "fips").fate, Fate::Warning);
}

#[test]
fn shadow_nla_requires_nla_and_tells_its_names() {
    let h = Host::start("shadow-nla", &[]);
    let r = h.probe();
    let s = &r.protocol_summary;
    assert_eq!(s.nla, NlaSupport::Required, "{s:#?}");
    assert_eq!(
        r.protocols[idx::SSL].cause,
        Some("nego.hybrid_required_by_server")
    );
    let n = r.ntlm.as_ref().unwrap();
    let i = n
        .outcome
        .info()
        .unwrap_or_else(|| panic!("{:?}", n.outcome));
    assert_eq!(i.credssp_version, 6);
    let host = Command::new("hostname").output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).trim().to_uppercase();
    let nb = i.nb_computer_name.as_deref().unwrap();
    assert!(!nb.is_empty());
    assert!(
        host.starts_with(nb) || nb.starts_with(&host),
        "NetBIOS name {nb} vs hostname {host}"
    );
    assert!(i.dns_computer_name.is_some() && i.nb_domain_name.is_some());
    assert!(i.product_version.is_some() && i.windows.is_some());
    let skew = i.clock_skew_secs.unwrap();
    assert!(skew.abs() <= 5, "same machine, skew {skew}");
    assert!(n.tls.is_some());
    let no_nla = client(&r, "no_nla");
    assert_eq!(no_nla.fate, Fate::Fails);
    assert_eq!(no_nla.cause, Some("nego.hybrid_required_by_server"));
    assert_eq!(client(&r, "mstsc").fate, Fate::Works);
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn xrdp_tls13_only_certificate_via_rustls() {
    let h = Host::start("xrdp-tls13-only", &[]);
    let r = h.probe();
    let t = r.tls.as_ref().unwrap();
    assert_eq!(t.accepted, ["TLS 1.3"], "{t:#?}");
    assert_eq!(
        t.result(Offer::Tls12).unwrap().cause,
        Some("tls.no_common_version")
    );
    let c = r.certificate.as_ref().unwrap();
    assert!(c.source.contains("rustls"), "{}", c.source);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(client(&r, "mstsc").fate, Fate::Works);
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn xrdp_tls10_legacy_host_fails_current_clients() {
    let h = Host::start("xrdp-tls10-legacy", &[]);
    let r = h.probe();
    let t = r.tls.as_ref().unwrap();
    assert_eq!(t.accepted, ["TLS 1.0"], "{t:#?}");
    assert!(t.findings.iter().any(|f| f.contains("TLS 1.0 accepted")));
    let c = r.certificate.as_ref().unwrap();
    assert!(c.source.contains("TLS 1.0"), "{}", c.source);
    let m = client(&r, "mstsc");
    assert_eq!(
        (m.fate, m.cause),
        (Fate::Fails, Some("tls.no_common_version"))
    );
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn closed_port_is_connect_refused_with_exit_2() {
    // A port bound but not listening refuses connections, and nothing else can take it while
    // the socket is held (a port that was merely free at the check could be taken by then:
    // seen once, with eight test-bed hosts starting in parallel).
    let (port, _held) = (0..20)
        .find_map(|_| {
            let port = free_port();
            let s = tokio::net::TcpSocket::new_v4().ok()?;
            s.bind(([127, 0, 0, 1], port).into()).ok()?;
            Some((port, s))
        })
        .expect("a port to hold closed");
    let r = probe(&Target {
        host: "127.0.0.1".to_owned(),
        port,
    });
    assert_eq!(
        r.reachability,
        Reachability::Unreachable(ConnectFailure::Refused)
    );
    assert_eq!(r.exit_code(), 2);
    // The CLI still prints the verdict, and exits 2.
    let out = Command::cargo_bin("rdpdiag")
        .unwrap()
        .args(["probe", &format!("127.0.0.1:{port}"), "--timeout", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tcp.connect_refused"), "{text}");
    assert!(text.contains("Verdict: cannot connect"), "{text}");
}

#[test]
fn cli_json_is_one_object_with_the_verdict() {
    let h = Host::start("xrdp-tls", &[]);
    let out = Command::cargo_bin("rdpdiag")
        .unwrap()
        .args(["probe", "--json", &format!("127.0.0.1:{}", h.port)])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["exit_code"], 0);
    assert_eq!(v["protocols"].as_array().unwrap().len(), 8);
    assert_eq!(
        v["tls"]["accepted"],
        serde_json::json!(["TLS 1.2", "TLS 1.3"])
    );
    assert!(v["certificate"]["chain"][0]["subject"].is_string());
    // Human output: the sections.
    let out = Command::cargo_bin("rdpdiag")
        .unwrap()
        .args(["probe", &format!("127.0.0.1:{}", h.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for section in [
        "Security protocols",
        "TLS (after",
        "Certificate (from",
        "Verdict:",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
}
