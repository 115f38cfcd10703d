//! One test per cause id: every scenario that must produce it runs through the real proxy on
//! loopback (simulated host ← `relay::Proxy` ← simulated client), and the proxy's verdict must
//! name that cause, the expected phase and the side that closed (and the close kind where the
//! scenario pins it).

// A failing test is the point of a panic here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdpdiag::sim::demo;
use rdpdiag::sim::scenarios;

async fn check_cause(cause: &str) {
    let chosen: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| s.expect.cause == cause)
        .collect();
    assert!(!chosen.is_empty(), "no scenario expects {cause}");
    let mut failures = Vec::new();
    for s in &chosen {
        let run = demo::run_one(s)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let v = &run.report.verdict;
        if !run.matches(s) {
            failures.push(format!(
                "{}: expected {} / {} / closed by {}{}, got {} / {} / closed by {:?} ({:?}), inferred={}\n  summary: {}\n  evidence: {}\n  client: reached {} {:?}",
                s.name,
                s.expect.cause,
                s.expect.phase,
                s.expect.closed_by.name(),
                s.expect
                    .close_kind
                    .map(|k| format!(" ({})", k.name()))
                    .unwrap_or_default(),
                v.cause,
                v.phase_reached,
                v.closed_by,
                v.close_kind,
                v.inferred,
                v.summary,
                v.evidence
                    .iter()
                    .map(|e| format!("{}={}", e.field, e.value))
                    .collect::<Vec<_>>()
                    .join("; "),
                run.client.reached,
                run.client.end,
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! cause_tests {
    ($($test:ident => $cause:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                check_cause($cause).await;
            }
        )*

        /// The list above names every cause the scenario table expects.
        #[test]
        fn every_expected_cause_has_a_test() {
            let tested = [$($cause),*];
            for s in scenarios::all() {
                assert!(tested.contains(&s.expect.cause), "no test for {}", s.expect.cause);
            }
        }
    };
}

cause_tests! {
    tcp_connect_refused => "tcp.connect_refused",
    tcp_connect_timeout => "tcp.connect_timeout",
    x224_host_closed_after_request => "x224.host_closed_after_request",
    x224_not_rdp => "x224.not_rdp",
    nego_ssl_required_by_server => "nego.ssl_required_by_server",
    nego_ssl_not_allowed_by_server => "nego.ssl_not_allowed_by_server",
    nego_ssl_cert_not_on_server => "nego.ssl_cert_not_on_server",
    nego_inconsistent_flags => "nego.inconsistent_flags",
    nego_hybrid_required_by_server => "nego.hybrid_required_by_server",
    nego_ssl_with_user_auth_required_by_server => "nego.ssl_with_user_auth_required_by_server",
    nego_client_refused_selected_protocol => "nego.client_refused_selected_protocol",
    tls_host_aborted_handshake => "tls.host_aborted_handshake",
    tls_alert_from_host => "tls.alert_from_host",
    tls_alert_from_client => "tls.alert_from_client",
    tls_no_common_version => "tls.no_common_version",
    tls_no_common_cipher => "tls.no_common_cipher",
    tls_client_rejected_certificate => "tls.client_rejected_certificate",
    credssp_failed => "credssp.failed",
    credssp_proxy_refused => "credssp.proxy_refused",
    early_auth_denied => "early_auth.denied",
    rdp_security_encryption_mismatch => "rdp_security.encryption_mismatch",
    stall => "stall",
    healthy => "healthy",
}

/// The whole table at once, as `rdpdiag demo` runs it: concurrently, in table order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_every_scenario_in_table_order() {
    let results = demo::run(None).await.unwrap();
    let names: Vec<_> = results.iter().map(|(s, _)| s.name).collect();
    let expected: Vec<_> = scenarios::all().iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    for (_, r) in &results {
        assert!(!r.target.is_empty());
    }
}
