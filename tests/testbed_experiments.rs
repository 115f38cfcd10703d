//! The experiments against real peers from `testbed/` (xrdp, FreeRDP shadow server, xfreerdp):
//! `--fresh-cert --ca` gets xfreerdp past an expired host certificate that it rejects directly;
//! `--security tls` against an NLA-only host shows the experiment; a TLS 1.0-only xrdp is
//! `tls.no_common_version` on the host leg.
//!
//! They need root and the test bed's packages (`testbed/install.sh`, run by `.ci/run`): a missing
//! tool fails them; nothing is skipped.

// Test helpers may unwrap and panic: a failure is the point there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdpdiag::nla::ntlm::Credentials;
use rdpdiag::relay::{FreshCertConfig, Proxy, ProxyConfig, SecurityRewrite};
use rdpdiag::report::{ConnectionReport, render_text};
use rdpdiag::session::{Phase, Side};
use rdpdiag::tls::cert::{Ca, fresh};
use tokio::sync::mpsc;

fn testbed(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testbed")
        .join(script)
}

/// `KEY=VALUE` lines of a test-bed script's stdout.
fn run(script: &str, args: &[&str]) -> HashMap<String, String> {
    let out = Command::new(testbed(script)).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A host scenario, stopped when dropped.
struct Host(HashMap<String, String>);

impl Host {
    fn start(scenario: &str, port: u16) -> Host {
        let env = run("host.sh", &["start", scenario, &port.to_string()]);
        assert!(
            env.contains_key("STATE"),
            "{scenario} did not start: {env:?}"
        );
        Host(env)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(state) = self.0.get("STATE") {
            run("host.sh", &["stop", state]);
        }
    }
}

/// Starts the proxy on `listen` in its own runtime; the receiver yields its one report.
fn proxy(
    rt: &tokio::runtime::Runtime,
    listen: u16,
    target: u16,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> mpsc::Receiver<ConnectionReport> {
    let mut cfg = ProxyConfig::new(
        format!("127.0.0.1:{listen}").parse().unwrap(),
        format!("127.0.0.1:{target}"),
    );
    cfg.max_connections = Some(1);
    tweak(&mut cfg);
    let p = rt.block_on(Proxy::bind(cfg)).unwrap();
    let (tx, rx) = mpsc::channel(4);
    rt.spawn(p.run(tx, std::future::pending()));
    rx
}

fn report(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<ConnectionReport>,
) -> ConnectionReport {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(90), rx.recv())
            .await
            .unwrap()
            .unwrap()
    })
}

#[test]
fn fresh_cert_gets_xfreerdp_past_an_expired_host_certificate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = Host::start("xrdp-cert-expired", 26101);
    let direct = run(
        "client.sh",
        &["--sec", "tls", "--ca", &host.0["CA"], "26101"],
    );
    assert_eq!(direct["RESULT"], "cert-rejected", "{direct:?}");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate().unwrap();
    let (ca_crt, _) = ca.write(dir.path()).unwrap();
    let issued = Arc::new(fresh("127.0.0.1", Some(&ca)).unwrap());
    let mut rx = proxy(&rt, 26102, 26101, |c| {
        c.fresh_cert = Some(FreshCertConfig::new(issued));
    });
    let via = run(
        "client.sh",
        &["--sec", "tls", "--ca", ca_crt.to_str().unwrap(), "26102"],
    );
    assert_eq!(via["RESULT"], "ok", "{via:?}");
    let r = report(&rt, &mut rx);
    let text = render_text(&r);
    assert!(
        r.verdict
            .facts
            .certificate_problems
            .iter()
            .any(|p| p.contains("expired")),
        "{text}"
    );
    let x = r.verdict.experiment.as_ref().unwrap();
    assert!(
        x.conclusion.contains("the host certificate is the cause"),
        "{text}"
    );
    assert!(
        r.tls_keylog.as_deref().unwrap().contains("CLIENT_RANDOM"),
        "{text}"
    );
}

#[test]
fn security_tls_against_an_nla_only_host_shows_the_experiment() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _host = Host::start("shadow-nla", 26103);
    let mut rx = proxy(&rt, 26104, 26103, |c| {
        c.security = Some(SecurityRewrite::Tls);
    });
    let via = run(
        "client.sh",
        &["--user", "test", "--pass", "Passw0rd!", "26104"],
    );
    assert_eq!(via["RESULT"], "nego-failure", "{via:?}");
    let r = report(&rt, &mut rx);
    let text = render_text(&r);
    assert_eq!(r.verdict.cause, "nego.hybrid_required_by_server", "{text}");
    let x = r.verdict.experiment.as_ref().unwrap();
    assert_eq!(x.offered_rewritten.as_deref(), Some("SSL(0x1)"), "{text}");
    assert!(x.conclusion.contains("insists on NLA"), "{text}");
}

#[test]
fn legacy_tls10_host_is_no_common_version_through_fresh_cert() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _host = Host::start("xrdp-tls10-legacy", 26105);
    let issued = Arc::new(fresh("127.0.0.1", None).unwrap());
    let mut rx = proxy(&rt, 26106, 26105, |c| {
        c.fresh_cert = Some(FreshCertConfig::new(issued));
    });
    let via = run("client.sh", &["--sec", "tls", "--cert", "ignore", "26106"]);
    assert_ne!(via["RESULT"], "ok", "{via:?}");
    let r = report(&rt, &mut rx);
    let text = render_text(&r);
    assert_eq!(r.verdict.cause, "tls.no_common_version", "{text}");
    assert!(!r.verdict.inferred, "{text}");
}

/// `--fresh-cert --nla-user` in front of FreeRDP's NLA host (SAM file: test / Passw0rd!), with
/// xfreerdp logging on as `client_password`; rdpdiag was given `proxy_password`.
fn brokered_nla(
    host_port: u16,
    proxy_port: u16,
    proxy_password: &str,
    client_password: &str,
) -> (HashMap<String, String>, ConnectionReport) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _host = Host::start("shadow-nla", host_port);
    let issued = Arc::new(fresh("127.0.0.1", None).unwrap());
    let creds = Arc::new(Credentials::new("test", proxy_password.to_owned()));
    let mut rx = proxy(&rt, proxy_port, host_port, |c| {
        c.fresh_cert = Some(FreshCertConfig {
            issued,
            nla: Some(creds),
        });
    });
    let via = run(
        "client.sh",
        &[
            "--sec",
            "nla",
            "--user",
            "test",
            "--pass",
            client_password,
            "--cert",
            "ignore",
            &proxy_port.to_string(),
        ],
    );
    (via, report(&rt, &mut rx))
}

/// The right password: xfreerdp reaches the active session through rdpdiag's two CredSSP legs.
#[test]
fn nla_user_reaches_the_active_phase_with_the_right_password() {
    let (via, r) = brokered_nla(26107, 26108, "Passw0rd!", "Passw0rd!");
    let text = render_text(&r);
    assert_eq!(via["RESULT"], "ok", "{via:?}\n{text}");
    assert_eq!(via["LAST_STATE"], "CONNECTION_STATE_ACTIVE", "{via:?}");
    assert_eq!(r.verdict.phase_reached, Phase::Active, "{text}");
    assert_eq!(r.verdict.cause, "healthy", "{text}");
    let n = r.verdict.experiment.as_ref().unwrap().nla.as_ref().unwrap();
    assert_eq!(n.client_leg.logon.as_deref(), Some("test"), "{text}");
    assert_eq!(n.client_leg.result, "accepted", "{text}");
    assert!(n.host_leg.result.starts_with("accepted"), "{text}");
    assert!(n.host_leg.ntlm_flags.is_some(), "{text}");
    assert!(
        n.host_leg.clock_skew_secs.is_some_and(|s| s.abs() < 60),
        "{text}"
    );
}

/// A wrong password (rdpdiag and the client agree, the host does not): the host's own refusal.
/// FreeRDP 2's server sends no errorCode; it closes right after the AUTHENTICATE.
#[test]
fn nla_user_with_a_wrong_password_is_the_hosts_logon_failure() {
    let (via, r) = brokered_nla(26109, 26110, "wrong", "wrong");
    let text = render_text(&r);
    assert_eq!(via["RESULT"], "auth-failure", "{via:?}\n{text}");
    assert_eq!(r.verdict.cause, "credssp.failed", "{text}");
    assert_eq!(r.verdict.closed_by, Some(Side::Host), "{text}");
    assert!(r.verdict.summary.contains("STATUS_LOGON_FAILURE"), "{text}");
    assert!(!r.verdict.inferred, "{text}");
    let n = r.verdict.experiment.as_ref().unwrap().nla.as_ref().unwrap();
    assert_eq!(n.client_leg.result, "accepted", "{text}");
}

/// The client's password is not the one rdpdiag was given: rdpdiag refuses, and says so.
#[test]
fn nla_user_refuses_a_client_with_other_credentials() {
    let (via, r) = brokered_nla(26111, 26112, "Passw0rd!", "wrong");
    let text = render_text(&r);
    assert_eq!(via["RESULT"], "auth-failure", "{via:?}\n{text}");
    assert_eq!(r.verdict.cause, "credssp.proxy_refused", "{text}");
    assert_eq!(r.verdict.closed_by, Some(Side::Proxy), "{text}");
    assert!(r.verdict.summary.contains("not the host"), "{text}");
}
