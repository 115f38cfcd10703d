//! `rdpdiag probe` against the simulated hosts of `rdpdiag::sim` on loopback: one host
//! behaviour per branch of the probe's interpretation (every failure code, legacy and garbage
//! answers, TLS resets, alerts, Disconnect-Provider-Ultimatum, TLS 1.0-only, TLS 1.3-only,
//! expired certificates, CredSSP answers, Standard RDP Security methods and levels, stalls).
//!
//! A simulated host answers every connection the same way, whatever was requested; the
//! assertions are about what the probe makes of each answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a helper that cannot go on is a failing test"
)]

use std::time::Duration;

use rdpdiag::probe::legacy_tls::Offer;
use rdpdiag::probe::nego::{NegoAnswer, NlaSupport, idx};
use rdpdiag::probe::ntlm::NtlmOutcome;
use rdpdiag::probe::rdp_sec::EncryptionOutcome;
use rdpdiag::probe::tls::TlsOutcome;
use rdpdiag::probe::verdict::{ClientVerdict, Fate};
use rdpdiag::probe::{ProbeOptions, ProbeReport, Target};
use rdpdiag::sim::certs::CertChoice;
use rdpdiag::sim::host::{self, CredsspFailure, CredsspStep, RdpSecurityHost, ServeTls};
use rdpdiag::sim::pdus::enc;
use rdpdiag::sim::{CloseStyle, HostConfig, HostTls, TlsVersions, X224Answer};
use rdpdiag::wire::gcc::{EncryptionLevel, EncryptionMethods};
use rdpdiag::wire::x224::{FailureCode, Protocols};

async fn probe_with(cfg: HostConfig, timeout: Duration) -> ProbeReport {
    let (addr, handle) = host::spawn(cfg).await.unwrap();
    let target = Target {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let opts = ProbeOptions {
        timeout,
        ..ProbeOptions::default()
    };
    let r = rdpdiag::probe::run(&target, &opts).await;
    handle.abort();
    r
}

async fn probe(cfg: HostConfig) -> ProbeReport {
    probe_with(cfg, Duration::from_secs(3)).await
}

fn client<'a>(r: &'a ProbeReport, id: &str) -> &'a ClientVerdict {
    r.verdict.clients.iter().find(|c| c.id == id).unwrap()
}

fn tls_host(tls: HostTls) -> HostConfig {
    HostConfig {
        tls,
        ..HostConfig::selecting(Protocols::SSL)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_code() {
    for (code, cause) in [
        (1, "nego.ssl_required_by_server"),
        (2, "nego.ssl_not_allowed_by_server"),
        (3, "nego.ssl_cert_not_on_server"),
        (4, "nego.inconsistent_flags"),
        (5, "nego.hybrid_required_by_server"),
        (6, "nego.ssl_with_user_auth_required_by_server"),
        (9, "nego.unknown_failure"),
    ] {
        let r = probe(HostConfig {
            answer: X224Answer::Failure(FailureCode(code)),
            ..HostConfig::default()
        })
        .await;
        assert!(
            r.protocols.iter().all(|p| p.cause == Some(cause)),
            "code {code}: {:?}",
            r.protocols
        );
        assert_eq!(client(&r, "mstsc").cause, Some(cause), "code {code}");
        assert_eq!(r.exit_code(), 1);
        assert!(r.tls.is_none() && r.rdp_security.is_none() && r.ntlm.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_garbage_and_silence_after_the_request() {
    let r = probe(HostConfig {
        answer: X224Answer::CloseRst,
        ..HostConfig::default()
    })
    .await;
    assert_eq!(
        client(&r, "mstsc").cause,
        Some("x224.host_closed_after_request")
    );
    let r = probe(HostConfig {
        answer: X224Answer::CloseFin,
        ..HostConfig::default()
    })
    .await;
    assert!(
        r.protocols
            .iter()
            .all(|p| matches!(p.answer, NegoAnswer::Ended { .. }))
    );
    let r = probe(HostConfig {
        answer: X224Answer::Garbage(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
        ..HostConfig::default()
    })
    .await;
    assert_eq!(client(&r, "mstsc").cause, Some("x224.not_rdp"));
    let r = probe_with(
        HostConfig {
            answer: X224Answer::Silent,
            ..HostConfig::default()
        },
        Duration::from_millis(300),
    )
    .await;
    assert!(r.protocols.iter().all(|p| p.cause == Some("stall")));
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_host_gets_standard_rdp_security_checks() {
    let r = probe(HostConfig {
        answer: X224Answer::Legacy,
        ..HostConfig::default()
    })
    .await;
    let s = &r.protocol_summary;
    assert!(s.legacy_host && s.rdp_security_allowed, "{s:#?}");
    assert_eq!(s.nla, NlaSupport::NotOffered);
    let rdp = r.rdp_security.as_ref().unwrap();
    // The simulated host answers 128-bit / CLIENT_COMPATIBLE whatever was offered.
    assert_eq!(rdp.accepted, ["128-bit RC4"]);
    assert_eq!(rdp.level, Some(EncryptionLevel::CLIENT_COMPATIBLE));
    assert_eq!(client(&r, "mstsc").fate, Fate::Warning);
    assert_eq!(
        client(&r, "fips").cause,
        Some("rdp_security.encryption_mismatch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_rdp_security_levels_and_refusals() {
    let rdp = |method, level, close| HostConfig {
        rdp_security: RdpSecurityHost {
            encryption_method: method,
            encryption_level: level,
            close_after_connect_initial: close,
        },
        ..HostConfig::selecting(Protocols::RDP)
    };
    let r = probe(rdp(enc::FIPS, enc::LEVEL_FIPS, false)).await;
    let s = r.rdp_security.as_ref().unwrap();
    assert_eq!(s.accepted, ["FIPS (3DES)"]);
    assert_eq!(s.level, Some(EncryptionLevel::FIPS));
    assert_eq!(
        s.methods[0].outcome,
        EncryptionOutcome::OtherMethod {
            method: EncryptionMethods::FIPS,
            level: EncryptionLevel::FIPS
        }
    );
    assert_eq!(client(&r, "fips").fate, Fate::Warning);

    let r = probe(rdp(enc::NONE, enc::LEVEL_NONE, false)).await;
    let s = r.rdp_security.as_ref().unwrap();
    assert!(s.unencrypted && s.accepted.is_empty());
    assert!(
        r.verdict
            .findings
            .iter()
            .any(|f| f.contains("without any encryption"))
    );

    let r = probe(rdp(enc::BIT128, enc::LEVEL_HIGH, true)).await;
    let s = r.rdp_security.as_ref().unwrap();
    assert!(!s.any_accepted() && s.level.is_none());
    assert_eq!(
        client(&r, "mstsc").cause,
        Some("rdp_security.encryption_mismatch")
    );
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_cannot_do_tls() {
    for (tls, cause) in [
        (HostTls::ResetAfterClientHello, "tls.host_aborted_handshake"),
        (HostTls::CloseAfterClientHello, "tls.host_aborted_handshake"),
        (
            HostTls::UltimatumAfterClientHello,
            "tls.host_aborted_handshake",
        ),
        (
            HostTls::AlertAfterClientHello { description: 40 },
            "tls.no_common_cipher",
        ),
        (
            HostTls::AlertAfterClientHello { description: 80 },
            "tls.alert_from_host",
        ),
    ] {
        let what = format!("{tls:?}");
        let r = probe(tls_host(tls)).await;
        let t = r.tls.as_ref().unwrap();
        assert!(t.accepted.is_empty(), "{what}: {t:#?}");
        assert_eq!(t.result(Offer::Tls12).unwrap().cause, Some(cause), "{what}");
        assert_eq!(client(&r, "mstsc").cause, Some(cause), "{what}");
        assert!(r.certificate.is_none());
        if what.starts_with("Ultimatum") {
            assert!(matches!(
                t.result(Offer::Tls12).unwrap().outcome,
                TlsOutcome::RdpInsteadOfTls { .. }
            ));
        }
    }
    let r = probe_with(
        tls_host(HostTls::StallAfterClientHello),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        r.tls.as_ref().unwrap().result(Offer::Tls13).unwrap().cause,
        Some("stall")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_certificates() {
    // A TLS 1.0-only host: every ClientHello gets a TLS 1.0 ServerHello.
    let r = probe(tls_host(HostTls::Tls10ServerFlight {
        cert: CertChoice::Good,
    }))
    .await;
    let t = r.tls.as_ref().unwrap();
    assert_eq!(t.accepted, ["TLS 1.0"], "{t:#?}");
    assert!(matches!(
        t.result(Offer::Tls12).unwrap().outcome,
        TlsOutcome::OtherVersion { .. }
    ));
    assert!(r.certificate.as_ref().unwrap().source.contains("TLS 1.0"));
    assert_eq!(client(&r, "mstsc").cause, Some("tls.no_common_version"));

    // rustls, TLS 1.2 only, expired certificate: read in clear.
    let r = probe(tls_host(HostTls::Serve(ServeTls {
        versions: TlsVersions::Tls12,
        suites: None,
        cert: CertChoice::Expired,
    })))
    .await;
    let t = r.tls.as_ref().unwrap();
    assert_eq!(t.accepted, ["TLS 1.2"]);
    let c = r.certificate.as_ref().unwrap();
    assert!(c.source.contains("TLS 1.2"), "{}", c.source);
    assert!(c.problem_ids().contains(&"expired"));
    assert_eq!(
        client(&r, "mstsc").cause,
        Some("tls.client_rejected_certificate")
    );

    // rustls, TLS 1.3 only: the certificate comes from a full rustls handshake.
    let r = probe(tls_host(HostTls::Serve(ServeTls {
        versions: TlsVersions::Tls13,
        suites: None,
        cert: CertChoice::WrongName,
    })))
    .await;
    let t = r.tls.as_ref().unwrap();
    assert_eq!(t.accepted, ["TLS 1.3"]);
    let c = r.certificate.as_ref().unwrap();
    assert!(c.source.contains("rustls"), "{}", c.source);
    assert!(
        c.problem_ids().contains(&"name_mismatch"),
        "{:?}",
        c.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credssp_answers() {
    // A healthy NLA host: the simulated CHALLENGE is NTLMSSP-shaped, version 6. It selects
    // HYBRID even for requests without it: NLA is in effect required, and odd.
    let r = probe(HostConfig::default()).await;
    assert_eq!(r.protocol_summary.nla, NlaSupport::Required);
    assert!(r.protocols[idx::SSL].anomalies[0].contains("selected HYBRID"));
    let n = r.ntlm.as_ref().unwrap();
    match &n.outcome {
        NtlmOutcome::Challenge(i) => assert_eq!(i.credssp_version, 6),
        o => panic!("{o:?}"),
    }
    assert!(n.tls.as_deref().unwrap().starts_with("TLS 1."));
    // errorCode right after the NEGOTIATE (a host refusing NTLM).
    let r = probe(HostConfig {
        credssp_failure: Some(CredsspFailure {
            after: CredsspStep::AfterC1,
            error_code: Some(0x8009_0302),
            close: CloseStyle::Fin,
        }),
        ..HostConfig::default()
    })
    .await;
    let n = r.ntlm.as_ref().unwrap();
    assert_eq!(
        n.outcome,
        NtlmOutcome::ErrorCode {
            credssp_version: 6,
            code: 0x8009_0302,
            name: Some("SEC_E_UNSUPPORTED_FUNCTION")
        }
    );
    // The probe connects by IP, the simulated certificate names rdp-host.test: the name
    // mismatch decides, the CredSSP refusal is kept as a detail.
    assert_eq!(
        r.certificate.as_ref().unwrap().problem_ids(),
        ["name_mismatch"]
    );
    let m = client(&r, "mstsc");
    assert_eq!(
        (m.fate, m.cause),
        (Fate::Fails, Some("tls.client_rejected_certificate"))
    );
    assert!(
        m.details
            .iter()
            .any(|d| d.contains("SEC_E_UNSUPPORTED_FUNCTION")),
        "{m:#?}"
    );
    // With the name users type, the certificate is fine and the CredSSP refusal remains.
    let (addr, handle) = host::spawn(HostConfig {
        credssp_failure: Some(CredsspFailure {
            after: CredsspStep::AfterC1,
            error_code: Some(0x8009_0302),
            close: CloseStyle::Fin,
        }),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let opts = ProbeOptions {
        timeout: Duration::from_secs(3),
        server_name: Some(rdpdiag::sim::certs::HOST_NAME.to_owned()),
        ..ProbeOptions::default()
    };
    let target = Target {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let r = rdpdiag::probe::run(&target, &opts).await;
    handle.abort();
    assert!(r.certificate.as_ref().unwrap().problems.is_empty());
    let m = client(&r, "mstsc");
    assert_eq!((m.fate, m.cause), (Fate::Warning, Some("credssp.failed")));
    // A close without a word.
    let r = probe(HostConfig {
        credssp_failure: Some(CredsspFailure {
            after: CredsspStep::AfterC1,
            error_code: None,
            close: CloseStyle::Rst,
        }),
        ..HostConfig::default()
    })
    .await;
    assert!(matches!(
        r.ntlm.as_ref().unwrap().outcome,
        NtlmOutcome::Ended { .. }
    ));
    assert_eq!(
        r.protocols[idx::HYBRID].answer.selected(),
        Some(Protocols::HYBRID)
    );
}
