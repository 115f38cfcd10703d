//! DESIGN.md's failure-scenario table as data: each scenario names its row, configures a host
//! and a client, and states the verdict the proxy must reach (cause, phase, who closed).
//!
//! Expected phases and closers follow the reference's taxonomy (§4.2, "Mapping to the user's
//! symptom"): the phase is the last one the connection reached, the closer is the side whose
//! close (FIN, RST, alert) ended it — `proxy` when rdpdiag itself gave up (stall, connect
//! timeout).

use std::time::Duration;

use rustls::crypto::aws_lc_rs::cipher_suite;

use super::TlsVersions;
use super::certs::CertChoice;
use super::client::{CertCheck, ClientConfig};
use super::host::{
    CredsspFailure, CredsspStep, HostConfig, HostTls, RdpSecurityHost, ServeTls, X224Answer,
};
use super::io::CloseStyle;
use super::pdus::{self, enc};
use crate::session::{CloseKind, Phase, Side};
use crate::wire::x224::{FailureCode, Protocols};

/// What the proxy's verdict must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Cause id (see `session::causes`).
    pub cause: &'static str,
    pub phase: Phase,
    pub closed_by: Side,
    /// Checked only when given.
    pub close_kind: Option<CloseKind>,
}

/// Where the proxy connects instead of a simulated host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOverride {
    /// A loopback port nothing listens on (the kernel answers the SYN with RST).
    NothingListening,
    /// A listener with backlog 1 that never accepts, its queue filled: the next SYN is dropped.
    BlackHole,
}

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Stable name (`rdpdiag demo --only NAME`, test names).
    pub name: &'static str,
    /// Row of DESIGN.md's failure-scenario table.
    pub design_row: u8,
    pub description: &'static str,
    pub host: HostConfig,
    pub client: ClientConfig,
    /// The proxy's stall timeout for this scenario (None: the proxy default).
    pub proxy_stall_timeout: Option<Duration>,
    /// The proxy's connect timeout for this scenario (None: the proxy default).
    pub proxy_connect_timeout: Option<Duration>,
    pub target_override: Option<TargetOverride>,
    /// `proxy --fresh-cert --nla-user`: rdpdiag brokers CredSSP with this account (user,
    /// password); the client then sees rdpdiag's fresh certificate.
    pub proxy_nla: Option<(&'static str, &'static str)>,
    pub expect: Expect,
}

fn expect(cause: &'static str, phase: Phase, closed_by: Side, kind: Option<CloseKind>) -> Expect {
    Expect {
        cause,
        phase,
        closed_by,
        close_kind: kind,
    }
}

fn base(name: &'static str, row: u8, description: &'static str, exp: Expect) -> Scenario {
    Scenario {
        name,
        design_row: row,
        description,
        host: HostConfig::default(),
        client: ClientConfig::default(),
        proxy_stall_timeout: None,
        proxy_connect_timeout: None,
        target_override: None,
        proxy_nla: None,
        expect: exp,
    }
}

const SSL: Protocols = Protocols::SSL;
const SSL_HYBRID: Protocols = Protocols(0x3);
const SSL_HYBRID_EX: Protocols = Protocols(0xb);

fn serve(versions: TlsVersions, cert: CertChoice) -> HostTls {
    HostTls::Serve(ServeTls {
        versions,
        suites: None,
        cert,
    })
}

fn neg_failure(
    name: &'static str,
    description: &'static str,
    requested: Protocols,
    code: FailureCode,
    cause: &'static str,
) -> Scenario {
    let mut s = base(
        name,
        3,
        description,
        expect(cause, Phase::X224, Side::Host, Some(CloseKind::Fin)),
    );
    s.client = ClientConfig::requesting(requested);
    s.host.answer = X224Answer::Failure(code);
    s
}

/// Every scenario, in DESIGN.md table order.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();

    // Row 1: host unreachable / port closed.
    let mut s = base(
        "tcp-refused",
        1,
        "nothing listens on the target port: the SYN is answered with RST",
        expect(
            "tcp.connect_refused",
            Phase::TcpConnect,
            Side::Host,
            Some(CloseKind::ConnectError),
        ),
    );
    s.target_override = Some(TargetOverride::NothingListening);
    v.push(s);

    let mut s = base(
        "tcp-timeout",
        1,
        "the target drops the SYN (full backlog of a listener that never accepts): no SYN-ACK before the proxy's 1 s connect timeout",
        expect(
            "tcp.connect_timeout",
            Phase::TcpConnect,
            Side::Proxy,
            Some(CloseKind::ConnectError),
        ),
    );
    s.target_override = Some(TargetOverride::BlackHole);
    s.proxy_connect_timeout = Some(Duration::from_secs(1));
    v.push(s);

    // Row 2: host drops the connection request.
    let mut s = base(
        "x224-fin-after-cr",
        2,
        "the host closes (FIN) right after the X.224 Connection Request (testbed raw-fin-after-cr)",
        expect(
            "x224.host_closed_after_request",
            Phase::X224,
            Side::Host,
            Some(CloseKind::Fin),
        ),
    );
    s.host.answer = X224Answer::CloseFin;
    v.push(s);

    let mut s = base(
        "x224-rst-after-cr",
        2,
        "the host resets right after the X.224 Connection Request (testbed raw-rst-after-cr)",
        expect(
            "x224.host_closed_after_request",
            Phase::X224,
            Side::Host,
            Some(CloseKind::Rst),
        ),
    );
    s.host.answer = X224Answer::CloseRst;
    v.push(s);

    let mut s = base(
        "x224-not-rdp",
        2,
        "the port answers the Connection Request with something that is not TPKT (another service)",
        expect("x224.not_rdp", Phase::X224, Side::Host, None),
    );
    s.host.answer =
        X224Answer::Garbage(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n".to_vec());
    v.push(s);

    // Row 3: RDP_NEG_FAILURE, each code.
    v.push(neg_failure(
        "nego-ssl-required",
        "the client offers only Standard RDP Security (requestedProtocols 0); the host requires TLS",
        Protocols::RDP,
        FailureCode::SSL_REQUIRED_BY_SERVER,
        "nego.ssl_required_by_server",
    ));
    v.push(neg_failure(
        "nego-ssl-not-allowed",
        "the client insists on TLS; the host is pinned to Standard RDP Security (FreeRDP /sec:rdp: testbed (a))",
        SSL,
        FailureCode::SSL_NOT_ALLOWED_BY_SERVER,
        "nego.ssl_not_allowed_by_server",
    ));
    v.push(neg_failure(
        "nego-ssl-cert-not-on-server",
        "the host cannot read its certificate's private key before answering (xrdp, key unreadable: testbed (e))",
        SSL_HYBRID,
        FailureCode::SSL_CERT_NOT_ON_SERVER,
        "nego.ssl_cert_not_on_server",
    ));
    v.push(neg_failure(
        "nego-inconsistent-flags",
        "the host answers INCONSISTENT_FLAGS (synthetic, as testbed raw-neg-failure-4)",
        SSL,
        FailureCode::INCONSISTENT_FLAGS,
        "nego.inconsistent_flags",
    ));
    v.push(neg_failure(
        "nego-hybrid-required",
        "the host requires NLA; the client offers TLS only (CredSSP disabled)",
        SSL,
        FailureCode::HYBRID_REQUIRED_BY_SERVER,
        "nego.hybrid_required_by_server",
    ));
    v.push(neg_failure(
        "nego-ssl-with-user-auth-required",
        "the host requires TLS client certificates (synthetic, as testbed raw-neg-failure-6)",
        SSL_HYBRID,
        FailureCode::SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER,
        "nego.ssl_with_user_auth_required_by_server",
    ));

    // Row 4: the host picks a layer the client then refuses.
    let mut s = base(
        "nego-client-refuses-rdp",
        4,
        "the client requests TLS only; the host selects Standard RDP Security (xrdp security_layer=rdp: testbed (a)); the client closes",
        expect(
            "nego.client_refused_selected_protocol",
            Phase::X224,
            Side::Client,
            Some(CloseKind::Fin),
        ),
    );
    s.client = ClientConfig::requesting(SSL);
    s.host = HostConfig::selecting(Protocols::RDP);
    v.push(s);

    let mut s = base(
        "nego-client-refuses-unrequested",
        4,
        "the client requests TLS only; the host selects HYBRID, which the client did not request; the client closes",
        expect(
            "nego.client_refused_selected_protocol",
            Phase::X224,
            Side::Client,
            Some(CloseKind::Fin),
        ),
    );
    s.client = ClientConfig::requesting(SSL);
    s.host = HostConfig::selecting(Protocols::HYBRID);
    v.push(s);

    // Row 5: the host cannot use its certificate / private key.
    let mut s = base(
        "tls-host-rst-after-client-hello",
        5,
        "the host selects TLS, then resets right after the ClientHello (Schannel with an unreadable key: reference F5 (b))",
        expect(
            "tls.host_aborted_handshake",
            Phase::TlsHandshake,
            Side::Host,
            Some(CloseKind::Rst),
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::ResetAfterClientHello;
    s.client = ClientConfig::requesting(SSL_HYBRID);
    v.push(s);

    let mut s = base(
        "tls-host-ultimatum-after-client-hello",
        5,
        "the host answers the ClientHello with a clear MCS Disconnect-Provider-Ultimatum and RST (xrdp with a mismatched key: testbed (e))",
        expect(
            "tls.host_aborted_handshake",
            Phase::TlsHandshake,
            Side::Host,
            Some(CloseKind::Rst),
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::UltimatumAfterClientHello;
    s.client = ClientConfig::requesting(SSL);
    v.push(s);

    let mut s = base(
        "tls-host-alert-internal-error",
        5,
        "the host answers the ClientHello with a clear fatal alert internal_error (80) instead of a ServerHello",
        expect("tls.alert_from_host", Phase::TlsHandshake, Side::Host, None),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::AlertAfterClientHello { description: 80 };
    s.client = ClientConfig::requesting(SSL);
    v.push(s);

    // Row 6: no common TLS version or cipher.
    let mut s = base(
        "tls-version-host-alert",
        6,
        "a TLS-1.2-only client meets a TLS-1.3-only host: the host sends alert protocol_version (70) (testbed xrdp-tls13-only)",
        expect(
            "tls.no_common_version",
            Phase::TlsHandshake,
            Side::Host,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = serve(TlsVersions::Tls13, CertChoice::Good);
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.versions = TlsVersions::Tls12;
    v.push(s);

    let mut s = base(
        "tls-version-legacy-host",
        6,
        "a TLS-1.0-only host selects TLS 1.0; the client (TLS 1.2+) answers with alert protocol_version (70) (testbed xrdp-tls10-legacy)",
        expect(
            "tls.no_common_version",
            Phase::TlsHandshake,
            Side::Client,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::Tls10ServerFlight {
        cert: CertChoice::Good,
    };
    s.client = ClientConfig::requesting(SSL);
    v.push(s);

    let mut s = base(
        "tls-no-common-cipher",
        6,
        "the client offers only ChaCha20-Poly1305, the host only AES-256-GCM (TLS 1.2): the host sends alert handshake_failure (40) (testbed xrdp-cipher-legacy)",
        expect(
            "tls.no_common_cipher",
            Phase::TlsHandshake,
            Side::Host,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::Serve(ServeTls {
        versions: TlsVersions::Tls12,
        suites: Some(vec![cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]),
        cert: CertChoice::Good,
    });
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.versions = TlsVersions::Tls12;
    s.client.tls.suites = Some(vec![
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]);
    v.push(s);

    // Row 7: the client rejects the host certificate (and other client alerts).
    let mut s = base(
        "tls-client-alert-illegal-parameter",
        7,
        "the client answers the host's TLS 1.2 flight with a clear fatal alert illegal_parameter (47)",
        expect(
            "tls.alert_from_client",
            Phase::TlsHandshake,
            Side::Client,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = serve(TlsVersions::Tls12, CertChoice::Good);
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.alert_after_server_flight = Some(47);
    v.push(s);

    let mut s = base(
        "cert-expired-tls12",
        7,
        "TLS 1.2 with an expired certificate (in clear on the wire); the client completes the handshake, then sends close_notify + FIN without application data (xfreerdp /cert:deny: testbed (d))",
        expect(
            "tls.client_rejected_certificate",
            Phase::TlsHandshake,
            Side::Client,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = serve(TlsVersions::Tls12, CertChoice::Expired);
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.cert_check = CertCheck::CompleteThenClose;
    v.push(s);

    let mut s = base(
        "cert-wrong-name-tls12-alert",
        7,
        "TLS 1.2 with a certificate for another name; the client's verifier rejects it with a clear alert bad_certificate (42)",
        expect(
            "tls.client_rejected_certificate",
            Phase::TlsHandshake,
            Side::Client,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = serve(TlsVersions::Tls12, CertChoice::WrongName);
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.cert_check = CertCheck::Reject;
    v.push(s);

    let mut s = base(
        "cert-untrusted-tls13",
        7,
        "TLS 1.3 with a self-signed certificate; the client's verifier rejects it with an encrypted alert: only inferable from the record sequence",
        expect(
            "tls.client_rejected_certificate",
            Phase::TlsHandshake,
            Side::Client,
            None,
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = serve(TlsVersions::Tls13, CertChoice::SelfSigned);
    s.client = ClientConfig::requesting(SSL);
    s.client.tls.cert_check = CertCheck::Reject;
    v.push(s);

    // Row 8: NLA / CredSSP fails.
    let mut s = base(
        "nla-wrong-password",
        8,
        "HYBRID over TLS 1.3: the host closes TLS (close_notify + FIN) after the client's AUTHENTICATE, without errorCode (FreeRDP server, wrong password: testbed (g))",
        expect("credssp.failed", Phase::Credssp, Side::Host, None),
    );
    s.host.credssp_failure = Some(CredsspFailure {
        after: CredsspStep::AfterC2,
        error_code: None,
        close: CloseStyle::CloseNotifyFin,
    });
    v.push(s);

    let mut s = base(
        "nla-logon-failure-error-code",
        8,
        "HYBRID over TLS 1.2: the host answers AUTHENTICATE with a 15-byte TSRequest errorCode STATUS_LOGON_FAILURE, then closes (Windows)",
        expect("credssp.failed", Phase::Credssp, Side::Host, None),
    );
    s.host.tls = serve(TlsVersions::Tls12, CertChoice::Good);
    s.host.credssp_failure = Some(CredsspFailure {
        after: CredsspStep::AfterC2,
        error_code: Some(0xc000_006d),
        close: CloseStyle::CloseNotifyFin,
    });
    v.push(s);

    // Row 8 through `proxy --fresh-cert --nla-user`: rdpdiag is the CredSSP endpoint on both
    // legs (real NTLMv2 on every leg), so the host's own verdict is read in clear.
    let nla = |name, description, exp, proxy_pw: &'static str, client_pw: &'static str| {
        let mut s = base(name, 8, description, exp);
        s.host.nla_account = Some(("alice", "Right-Passw0rd"));
        s.proxy_nla = Some(("alice", proxy_pw));
        s.client.nla_logon = Some(("alice", client_pw));
        s
    };
    v.push(nla(
        "nla-user-healthy",
        "--nla-user: rdpdiag accepts the client's NTLMv2 logon, logs on to the host with the same account, forwards the TSCredentials and relays the session",
        expect("healthy", Phase::Active, Side::Client, None),
        "Right-Passw0rd",
        "Right-Passw0rd",
    ));
    v.push(nla(
        "nla-user-wrong-password",
        "--nla-user with a password the host refuses (the client typed the same): the host's own errorCode STATUS_LOGON_FAILURE, read in clear and passed on to the client",
        expect("credssp.failed", Phase::Credssp, Side::Host, None),
        "Wrong-Passw0rd",
        "Wrong-Passw0rd",
    ));
    let mut s = nla(
        "nla-user-password-expired",
        "--nla-user: the credentials are right but the host answers STATUS_PASSWORD_EXPIRED: change it on another path",
        expect("credssp.failed", Phase::Credssp, Side::Host, None),
        "Right-Passw0rd",
        "Right-Passw0rd",
    );
    s.host.credssp_failure = Some(CredsspFailure {
        after: CredsspStep::AfterC2,
        error_code: Some(0xc000_0071),
        close: CloseStyle::CloseNotifyFin,
    });
    v.push(s);
    v.push(nla(
        "nla-user-proxy-refused",
        "--nla-user: the client's password is not the one rdpdiag was given: rdpdiag refuses it (STATUS_LOGON_FAILURE toward the client) and says it was rdpdiag, not the host",
        expect("credssp.proxy_refused", Phase::Credssp, Side::Proxy, None),
        "Right-Passw0rd",
        "typo-Passw0rd",
    ));

    // Row 9: Early User Authorization denied.
    let mut s = base(
        "early-auth-denied",
        9,
        "HYBRID_EX: CredSSP completes, the host sends the 4-byte result AUTHZ_ACCESS_DENIED (05000000), then FIN",
        expect("early_auth.denied", Phase::EarlyUserAuth, Side::Host, None),
    );
    s.client = ClientConfig::requesting(SSL_HYBRID_EX);
    s.host = HostConfig::selecting(Protocols::HYBRID_EX);
    s.host.early_auth_result = pdus::AUTHZ_ACCESS_DENIED;
    v.push(s);

    // Row 10: Standard RDP Security encryption mismatch.
    let mut s = base(
        "rdp-encryption-fips-vs-128",
        10,
        "Standard RDP Security: the client offers 128BIT only, the host answers FIPS at level FIPS (testbed xrdp-rdp-fips); the client (mstsc-like) closes",
        expect(
            "rdp_security.encryption_mismatch",
            Phase::Mcs,
            Side::Client,
            None,
        ),
    );
    s.client = ClientConfig::requesting(Protocols::RDP);
    s.client.encryption_methods = enc::BIT128;
    s.host = HostConfig::selecting(Protocols::RDP);
    s.host.rdp_security = RdpSecurityHost {
        encryption_method: enc::FIPS,
        encryption_level: enc::LEVEL_FIPS,
        close_after_connect_initial: false,
    };
    v.push(s);

    let mut s = base(
        "rdp-encryption-host-closes",
        10,
        "Standard RDP Security: the client offers 40BIT only, the host (level HIGH) closes after the Connect-Initial (MS-RDPBCGR 5.3.2.1)",
        expect(
            "rdp_security.encryption_mismatch",
            Phase::Mcs,
            Side::Host,
            None,
        ),
    );
    s.client = ClientConfig::requesting(Protocols::RDP);
    s.client.encryption_methods = enc::BIT40;
    s.host = HostConfig::selecting(Protocols::RDP);
    s.host.rdp_security = RdpSecurityHost {
        encryption_method: enc::BIT128,
        encryption_level: enc::LEVEL_HIGH,
        close_after_connect_initial: true,
    };
    v.push(s);

    // Row 11: a phase stalls.
    let mut s = base(
        "stall-silent-host",
        11,
        "the host accepts TCP and never answers the Connection Request (testbed silent); the proxy gives up after 1 s",
        expect("stall", Phase::X224, Side::Proxy, Some(CloseKind::Timeout)),
    );
    s.host.answer = X224Answer::Silent;
    s.proxy_stall_timeout = Some(Duration::from_secs(1));
    v.push(s);

    let mut s = base(
        "stall-after-cc",
        11,
        "the host selects TLS, then never answers the ClientHello (testbed raw-stall-after-cc; a PMTU black hole looks the same); the proxy gives up after 1 s",
        expect(
            "stall",
            Phase::TlsHandshake,
            Side::Proxy,
            Some(CloseKind::Timeout),
        ),
    );
    s.host = HostConfig::selecting(SSL);
    s.host.tls = HostTls::StallAfterClientHello;
    s.client = ClientConfig::requesting(SSL);
    s.proxy_stall_timeout = Some(Duration::from_secs(1));
    v.push(s);

    // Row 12: healthy.
    let healthy = || expect("healthy", Phase::Active, Side::Client, None);
    let mut s = base(
        "healthy-tls",
        12,
        "TLS (SSL) with TLS 1.3, MCS, licensing, capabilities and an active session; the client closes in order",
        healthy(),
    );
    s.client = ClientConfig::requesting(SSL);
    s.host = HostConfig::selecting(SSL);
    v.push(s);

    let mut s = base(
        "healthy-nla",
        12,
        "NLA (HYBRID) over TLS 1.3 with CredSSP C1 S1 C2 S2 C3, then MCS and an active session",
        healthy(),
    );
    s.client.tls.cert_check = CertCheck::CompleteThenClose;
    v.push(s);

    let mut s = base(
        "healthy-nla-ex-tls12",
        12,
        "HYBRID_EX over TLS 1.2 with Early User Authorization allowed (00000000), then MCS and an active session",
        healthy(),
    );
    s.client = ClientConfig::requesting(SSL_HYBRID_EX);
    s.client.tls.cert_check = CertCheck::Reject;
    s.host = HostConfig::selecting(Protocols::HYBRID_EX);
    s.host.tls = serve(TlsVersions::Tls12, CertChoice::Good);
    v.push(s);

    let mut s = base(
        "healthy-rdp-security",
        12,
        "Standard RDP Security: legacy request, legacy confirm, clear MCS with 128-bit RC4 at level CLIENT_COMPATIBLE, then a session",
        healthy(),
    );
    s.client.request = None;
    s.host.answer = X224Answer::Legacy;
    v.push(s);

    v
}

/// The scenario with this name.
pub fn by_name(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::causes;

    const REQUIRED: [&str; 21] = [
        "tcp.connect_refused",
        "tcp.connect_timeout",
        "x224.host_closed_after_request",
        "nego.ssl_required_by_server",
        "nego.ssl_not_allowed_by_server",
        "nego.ssl_cert_not_on_server",
        "nego.inconsistent_flags",
        "nego.hybrid_required_by_server",
        "nego.ssl_with_user_auth_required_by_server",
        "nego.client_refused_selected_protocol",
        "tls.host_aborted_handshake",
        "tls.alert_from_host",
        "tls.alert_from_client",
        "tls.no_common_version",
        "tls.no_common_cipher",
        "tls.client_rejected_certificate",
        "credssp.failed",
        "early_auth.denied",
        "rdp_security.encryption_mismatch",
        "stall",
        "healthy",
    ];

    #[test]
    fn every_required_cause_has_a_scenario_and_names_are_unique() {
        let all = all();
        for id in REQUIRED {
            assert!(
                all.iter().any(|s| s.expect.cause == id),
                "no scenario for {id}"
            );
        }
        for (i, s) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|o| o.name != s.name),
                "duplicate {}",
                s.name
            );
            assert!(
                causes::lookup(s.expect.cause).is_some(),
                "unknown cause {}",
                s.expect.cause
            );
            assert!((1..=12).contains(&s.design_row));
        }
        // Table order.
        assert!(all.windows(2).all(|w| w[0].design_row <= w[1].design_row));
        // Every row of the table is covered.
        for row in 1..=12u8 {
            assert!(all.iter().any(|s| s.design_row == row), "row {row}");
        }
    }
}
