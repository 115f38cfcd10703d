//! Which common client configurations will fail against the probed host, with the symptom the
//! user sees, the cause id from the catalog ([`crate::session::causes`]) and its remedies.
//!
//! Rules as data: each [`ClientModel`] says what that client sends and tolerates; [`judge`]
//! walks the probe's findings in connection order (TCP, X.224, TLS, certificate, CredSSP,
//! Standard RDP Security) and stops at the first step the client cannot pass.

use serde::Serialize;

use super::legacy_tls::Offer;
use super::nego::{self, NegoAnswer, NegoResult, NegoSummary, NlaSupport};
use super::ntlm::{KERBEROS_MAX_SKEW_SECS, NtlmOutcome, NtlmReport};
use super::rdp_sec::RdpSecSummary;
use super::tls::{CertReport, TlsSummary};
use super::{Reachability, connect_cause};
use crate::session::causes;
use crate::wire::gcc::EncryptionMethods;
use crate::wire::tls as wtls;
use crate::wire::x224::{FailureCode, Protocols};

/// How a client configuration fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Connects (as far as the probe can tell without credentials).
    Works,
    /// Probably connects, with a caveat (a prompt, a policy that would make it fail).
    Warning,
    /// The probe could not tell.
    Unknown,
    /// Fails.
    Fails,
}

impl Fate {
    pub fn label(self) -> &'static str {
        match self {
            Fate::Works => "OK",
            Fate::Warning => "WARN",
            Fate::Unknown => "?",
            Fate::Fails => "FAILS",
        }
    }
}

/// Which TLS suites a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// TLS 1.2/1.3 with Windows' default Schannel suites (RSA key exchange and CBC included).
    Windows,
    /// TLS 1.2/1.3 with ECDHE + AEAD suites only.
    Strict,
    /// TLS 1.2/1.3 with FIPS-approved suites only (no ChaCha20, RC4, DES).
    Fips,
}

/// A common client configuration.
#[derive(Debug, Clone, Copy)]
pub struct ClientModel {
    pub id: &'static str,
    pub title: &'static str,
    /// Index in [`nego::REQUESTS`] of the request this client sends.
    pub request: usize,
    pub tls: TlsPolicy,
    /// Goes on when the host selects Standard RDP Security (after an identity warning).
    pub accepts_rdp_security: bool,
    /// Encryption methods offered for Standard RDP Security.
    pub rdp_methods: EncryptionMethods,
    /// Judges the host certificate like mstsc (expired, untrusted, wrong name, weak).
    pub checks_certificate: bool,
    /// Counts for the exit status ("a current client fails").
    pub current: bool,
}

/// The configurations judged, in the order reported.
pub const CLIENTS: [ClientModel; 4] = [
    ClientModel {
        id: "mstsc",
        title: "Windows 11 mstsc, defaults (SSL|HYBRID|HYBRID_EX, TLS 1.2/1.3, NLA)",
        request: nego::idx::MSTSC,
        tls: TlsPolicy::Windows,
        accepts_rdp_security: true,
        rdp_methods: EncryptionMethods(0x1b),
        checks_certificate: true,
        current: true,
    },
    ClientModel {
        id: "no_nla",
        title: "client with NLA disabled (enablecredsspsupport:i:0: SSL only)",
        request: nego::idx::SSL,
        tls: TlsPolicy::Windows,
        accepts_rdp_security: true,
        rdp_methods: EncryptionMethods(0x1b),
        checks_certificate: true,
        current: false,
    },
    ClientModel {
        id: "tls12_plus",
        title: "hardened client: TLS 1.2+ only, ECDHE+AEAD suites, no Standard RDP Security",
        request: nego::idx::SSL_HYBRID,
        tls: TlsPolicy::Strict,
        accepts_rdp_security: false,
        rdp_methods: EncryptionMethods(0),
        checks_certificate: true,
        current: true,
    },
    ClientModel {
        id: "fips",
        title: "FIPS-policy client (\"Use FIPS compliant algorithms\": FIPS suites, 3DES RDP encryption)",
        request: nego::idx::MSTSC,
        tls: TlsPolicy::Fips,
        accepts_rdp_security: true,
        rdp_methods: EncryptionMethods::FIPS,
        checks_certificate: true,
        current: false,
    },
];

/// The verdict for one client configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientVerdict {
    pub id: &'static str,
    pub client: &'static str,
    pub fate: Fate,
    /// One line: what happens.
    pub summary: String,
    /// The catalog id of the (first) failure or caveat.
    pub cause: Option<&'static str>,
    /// What the user sees.
    pub symptom: Option<String>,
    /// Supporting facts.
    pub details: Vec<String>,
    /// From the catalog, first to try first.
    pub remedies: Vec<String>,
}

/// The probe's conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeVerdict {
    /// One line.
    pub summary: String,
    pub clients: Vec<ClientVerdict>,
    /// Host-level security findings (obsolete TLS, weak suites, no NLA, certificate expiry).
    pub findings: Vec<String>,
    /// 0: no current client fails; 1: one does; 2: the host cannot be reached.
    pub exit_code: u8,
}

/// Everything [`judge`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub reachability: &'a Reachability,
    pub protocols: &'a [NegoResult],
    pub nego: &'a NegoSummary,
    pub tls: Option<&'a TlsSummary>,
    pub certificate: Option<&'a CertReport>,
    pub ntlm: Option<&'a NtlmReport>,
    pub rdp: Option<&'a RdpSecSummary>,
}

/// What the user sees for a cause (reference §3.4, §3.14, §4).
pub fn symptom(cause: &str) -> Option<&'static str> {
    Some(match cause {
        "tcp.connect_refused" | "tcp.connect_timeout" | "tcp.connect_failed" => {
            "\"Remote Desktop can't connect to the remote computer for one of these reasons\" (0x204)"
        }
        "x224.host_closed_after_request" => {
            "\"This computer can't connect to the remote computer\" right away: error 0x904, extended 0x7 (the host closes after the request)"
        }
        "stall" => "the client waits, then times out",
        "x224.not_rdp" | "x224.malformed" => {
            "an immediate protocol error: the port does not speak RDP as expected"
        }
        "nego.hybrid_required_by_server" => {
            "\"The remote computer requires Network Level Authentication, which your computer does not support\" (0xB09)"
        }
        "nego.ssl_required_by_server" => "the client gives up at once: the host requires TLS",
        "nego.ssl_not_allowed_by_server" => {
            "the host allows Standard RDP Security only: mstsc retries with it, stricter clients stop"
        }
        "nego.ssl_cert_not_on_server" => {
            "a security error right after connecting (0x904 / extended 0x7 is commonly reported)"
        }
        "nego.inconsistent_flags"
        | "nego.ssl_with_user_auth_required_by_server"
        | "nego.unknown_failure" => "the client gives up with a security negotiation error",
        "nego.client_refused_selected_protocol" => {
            "the client refuses the Standard RDP Security the host selects (no server authentication)"
        }
        "tls.no_common_version"
        | "tls.no_common_cipher"
        | "tls.host_aborted_handshake"
        | "tls.alert_from_host"
        | "tls.closed_during_handshake" => {
            "error 0x904, extended 0x7 during the TLS handshake (sometimes \"An authentication error has occurred\")"
        }
        "tls.client_rejected_certificate" => {
            "\"The identity of the remote computer cannot be verified\" / \"... problems with its security certificate\": the user must accept it, or cannot connect where policy forbids it"
        }
        "credssp.failed" => {
            "\"An authentication error has occurred. The function requested is not supported\" (CredSSP / NLA)"
        }
        "rdp_security.encryption_mismatch" => {
            "disconnect while connecting (\"invalid encryption method\", 0x506, is plausible)"
        }
        _ => return None,
    })
}

fn remedies(cause: Option<&str>) -> Vec<String> {
    cause
        .and_then(causes::lookup)
        .map(|c| c.remedies.iter().map(|r| (*r).to_owned()).collect())
        .unwrap_or_default()
}

/// Collects a client's fate step by step: the first failure decides the cause.
struct Judgement {
    fate: Fate,
    summary: String,
    cause: Option<&'static str>,
    details: Vec<String>,
}

impl Judgement {
    fn new() -> Self {
        Self {
            fate: Fate::Works,
            summary: String::new(),
            cause: None,
            details: Vec::new(),
        }
    }

    /// Records a finding; a worse fate replaces the summary and cause.
    fn note(&mut self, fate: Fate, cause: Option<&'static str>, text: String) {
        if fate > self.fate || (fate == self.fate && self.summary.is_empty()) {
            self.fate = fate;
            self.summary = text;
            if cause.is_some() || fate > Fate::Works {
                self.cause = cause;
            }
        } else {
            self.details.push(text);
        }
    }
}

/// Is the suite FIPS-approved (no ChaCha20, RC4, DES, NULL, EXPORT, anonymous, MD5)?
fn fips_suite(id: u16) -> bool {
    let name = wtls::cipher_suite_name(id);
    !["CHACHA20", "RC4", "_DES_", "NULL", "EXPORT", "anon", "MD5"]
        .iter()
        .any(|bad| name.contains(bad))
}

fn judge_client(m: &ClientModel, e: &Evidence<'_>) -> ClientVerdict {
    let mut j = Judgement::new();
    if let Reachability::Unreachable(f) = e.reachability {
        j.note(
            Fate::Fails,
            Some(connect_cause(f)),
            format!("cannot connect: {}", super::describe_connect_failure(f)),
        );
        return finish(m, j);
    }
    let Some(result) = e.protocols.get(m.request) else {
        j.note(Fate::Unknown, None, "the request was not sent".to_owned());
        return finish(m, j);
    };
    let asked = result.request.label;
    match &result.answer {
        NegoAnswer::Selected { protocol, .. } if protocol.uses_tls() => {
            judge_tls(m, e, &mut j, *protocol);
        }
        NegoAnswer::Selected { .. } | NegoAnswer::NoNegotiation => judge_rdp(m, e, &mut j),
        // mstsc reconnects asking for Standard RDP Security only (reference §1.4).
        NegoAnswer::Failure {
            code: FailureCode::SSL_NOT_ALLOWED_BY_SERVER,
        } if m.accepts_rdp_security => {
            let retry = e.protocols.get(nego::idx::RDP).map(|r| &r.answer);
            match retry {
                Some(NegoAnswer::Selected { .. } | NegoAnswer::NoNegotiation) => {
                    j.details.push(format!(
                        "the host answers its request ({asked}) with SSL_NOT_ALLOWED_BY_SERVER; it retries with Standard RDP Security"
                    ));
                    judge_rdp(m, e, &mut j);
                }
                Some(a) => j.note(
                    Fate::Fails,
                    a.cause(),
                    format!(
                        "SSL_NOT_ALLOWED_BY_SERVER, and the retry with Standard RDP Security gets {}",
                        a.describe()
                    ),
                ),
                None => j.note(
                    Fate::Fails,
                    result.answer.cause(),
                    "SSL_NOT_ALLOWED_BY_SERVER".to_owned(),
                ),
            }
        }
        a => j.note(
            Fate::Fails,
            a.cause(),
            format!(
                "the host answers its request ({asked}) with {}",
                a.describe()
            ),
        ),
    }
    finish(m, j)
}

fn judge_tls(m: &ClientModel, e: &Evidence<'_>, j: &mut Judgement, selected: Protocols) {
    j.note(
        Fate::Works,
        None,
        format!("the host selects {}", selected.names()),
    );
    let Some(tls) = e.tls.filter(|t| t.any_answered()) else {
        j.note(
            Fate::Unknown,
            None,
            "TLS versions were not probed".to_owned(),
        );
        return;
    };
    if let Some(cause) = tls.modern_client_cause() {
        let got = if tls.accepted.is_empty() {
            "no TLS version at all".to_owned()
        } else {
            format!("only {}", tls.accepted.join(", "))
        };
        let why = tls
            .result(Offer::Tls12)
            .map(|r| format!(" (TLS 1.2: {})", r.outcome.describe()))
            .unwrap_or_default();
        j.note(
            Fate::Fails,
            Some(cause),
            format!("no TLS 1.2/1.3 handshake: the host accepts {got}{why}"),
        );
        return;
    }
    let modern: Vec<_> = [Offer::Tls13, Offer::Tls12]
        .into_iter()
        .filter_map(|o| tls.result(o).filter(|r| r.accepted))
        .collect();
    match m.tls {
        TlsPolicy::Windows => {}
        TlsPolicy::Strict => {
            if !tls.accepts(Offer::Tls13)
                && tls
                    .result(Offer::Tls12)
                    .is_some_and(|r| !r.weaknesses().is_empty())
            {
                match tls.result(Offer::Tls12Strict) {
                    Some(s) if s.accepted => {}
                    Some(s) => j.note(
                        Fate::Fails,
                        Some("tls.no_common_cipher"),
                        format!(
                            "no ECDHE+AEAD suite for TLS 1.2 and no TLS 1.3: {}",
                            s.outcome.describe()
                        ),
                    ),
                    None => j.note(
                        Fate::Warning,
                        Some("tls.no_common_cipher"),
                        "the host prefers a weak TLS 1.2 suite; ECDHE+AEAD-only offers were not tried"
                            .to_owned(),
                    ),
                }
            }
        }
        TlsPolicy::Fips => {
            if !modern.iter().any(|r| r.cipher_id().is_some_and(fips_suite)) {
                j.note(
                    Fate::Warning,
                    Some("tls.no_common_cipher"),
                    "the host picks no FIPS-approved suite from a Windows offer; a FIPS-only offer may still find one"
                        .to_owned(),
                );
            }
        }
    }
    if m.checks_certificate
        && let Some(c) = e.certificate
        && !c.problems.is_empty()
    {
        let hits: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        j.note(
            Fate::Fails,
            Some("tls.client_rejected_certificate"),
            format!(
                "it rejects the certificate ({}): {}",
                c.problem_ids().join(", "),
                hits.join("; ")
            ),
        );
    }
    if selected.uses_credssp() {
        judge_credssp(e, j);
    }
}

fn judge_credssp(e: &Evidence<'_>, j: &mut Judgement) {
    let Some(n) = e.ntlm else {
        return;
    };
    match &n.outcome {
        NtlmOutcome::Challenge(i) => {
            if (2..=4).contains(&i.credssp_version) {
                j.note(
                    Fate::Fails,
                    Some("credssp.failed"),
                    format!(
                        "CredSSP version {} (pre-2018): refused by patched clients (encryption oracle remediation)",
                        i.credssp_version
                    ),
                );
            }
            if let Some(s) = i.clock_skew_secs
                && s.abs() > KERBEROS_MAX_SKEW_SECS
            {
                j.note(
                    Fate::Warning,
                    Some("credssp.failed"),
                    format!(
                        "the host's clock is {} this machine's: Kerberos logons fail (NTLM works)",
                        super::ntlm::skew_words(s)
                    ),
                );
            }
        }
        NtlmOutcome::ErrorCode { code, name, .. } => j.note(
            Fate::Warning,
            Some("credssp.failed"),
            format!(
                "the host answers an NTLM NEGOTIATE with errorCode {code:#010x}{} (NTLM refused?)",
                name.map(|n| format!(" {n}")).unwrap_or_default()
            ),
        ),
        NtlmOutcome::Ended { end, .. } => j.note(
            Fate::Warning,
            Some("credssp.failed"),
            format!(
                "CredSSP: {} after an NTLM NEGOTIATE (NTLM may be refused by policy; Kerberos clients may still work)",
                end.describe()
            ),
        ),
        _ => {}
    }
}

fn judge_rdp(m: &ClientModel, e: &Evidence<'_>, j: &mut Judgement) {
    if !m.accepts_rdp_security {
        j.note(
            Fate::Fails,
            Some("nego.client_refused_selected_protocol"),
            "the host selects Standard RDP Security, which this client refuses".to_owned(),
        );
        return;
    }
    j.note(
        Fate::Warning,
        Some("nego.client_refused_selected_protocol"),
        "the host selects Standard RDP Security: no server authentication, an identity warning, and a failure where policy requires server authentication"
            .to_owned(),
    );
    let Some(r) = e.rdp else {
        j.note(
            Fate::Unknown,
            None,
            "encryption methods were not probed".to_owned(),
        );
        return;
    };
    let ok = r
        .methods
        .iter()
        .any(|x| x.accepted && m.rdp_methods.contains(x.method));
    if !ok {
        let level = r
            .level
            .map(|l| format!(", host level {l}"))
            .unwrap_or_default();
        j.note(
            Fate::Fails,
            Some("rdp_security.encryption_mismatch"),
            format!(
                "no encryption method in common: it offers {}, the host accepts {}{level}",
                m.rdp_methods.names(),
                if r.accepted.is_empty() {
                    "none of those tried".to_owned()
                } else {
                    r.accepted.join(", ")
                }
            ),
        );
    } else if r.unencrypted {
        j.details
            .push("the session would not be encrypted at all".to_owned());
    }
}

fn finish(m: &ClientModel, j: Judgement) -> ClientVerdict {
    let cause = if j.fate == Fate::Works { None } else { j.cause };
    let summary = match j.fate {
        Fate::Works => format!("connects ({})", j.summary),
        _ => j.summary,
    };
    ClientVerdict {
        id: m.id,
        client: m.title,
        fate: j.fate,
        summary,
        cause,
        symptom: cause.and_then(symptom).map(str::to_owned),
        details: j.details,
        remedies: remedies(cause),
    }
}

/// Host-level findings, worst first.
fn findings(e: &Evidence<'_>) -> Vec<String> {
    let mut out = Vec::new();
    match e.nego.nla {
        NlaSupport::Supported => out.push(
            "NLA is not required: anyone can reach the host's logon screen (set 'Require user authentication ... Network Level Authentication')"
                .to_owned(),
        ),
        NlaSupport::NotOffered => out.push("NLA (CredSSP) is not offered at all".to_owned()),
        _ => {}
    }
    if e.nego.rdp_security_allowed {
        out.push(
            "Standard RDP Security is allowed: no server authentication (man-in-the-middle possible)"
                .to_owned(),
        );
    }
    for r in e.protocols {
        for a in &r.anomalies {
            out.push(format!("request {}: {a}", r.request.label));
        }
    }
    if let Some(c) = e.certificate
        && let Some(d) = c.days_left
        && (0..30).contains(&d)
    {
        out.push(format!("the certificate expires in {d} day(s)"));
    }
    if let Some(t) = e.tls {
        out.extend(t.findings.iter().cloned());
    }
    if let Some(n) = e.ntlm {
        out.extend(n.findings.iter().cloned());
        if let Some(i) = n.outcome.info()
            && let Some(v) = i
                .product_version
                .as_deref()
                .filter(|v| v.starts_with("6.1."))
        {
            let modern_tls = e
                .tls
                .is_some_and(|t| t.accepts(Offer::Tls12) || t.accepts(Offer::Tls13));
            out.push(if modern_tls && i.credssp_version >= 5 {
                format!(
                    "NTLM reports {v} (Windows 7 / Server 2008 R2) but the host speaks TLS 1.2+ and CredSSP {}: probably not Windows (FreeRDP's WinPR reports this version)",
                    i.credssp_version
                )
            } else {
                format!(
                    "NTLM reports {v}: Windows 7 / Server 2008 R2 serve RDP over TLS 1.0 only unless KB3080079 is installed"
                )
            });
        }
    }
    if let Some(r) = e.rdp {
        out.extend(r.findings.iter().cloned());
    }
    out
}

/// Judges every client configuration and computes the exit status.
pub fn judge(e: &Evidence<'_>) -> ProbeVerdict {
    let clients: Vec<ClientVerdict> = CLIENTS.iter().map(|m| judge_client(m, e)).collect();
    let reachable = e.reachability.is_reachable();
    let current_fails = CLIENTS
        .iter()
        .zip(&clients)
        .any(|(m, v)| m.current && v.fate == Fate::Fails);
    let exit_code = if !reachable {
        2
    } else if current_fails {
        1
    } else {
        0
    };
    let failing: Vec<String> = clients
        .iter()
        .filter(|c| c.fate == Fate::Fails)
        .map(|c| format!("{} ({})", c.id, c.cause.unwrap_or("?")))
        .collect();
    let summary = if !reachable {
        match e.reachability {
            Reachability::Unreachable(f) => format!(
                "cannot connect to the host: {}",
                super::describe_connect_failure(f)
            ),
            Reachability::Reachable { .. } => String::new(),
        }
    } else if failing.is_empty() {
        "no common client configuration fails".to_owned()
    } else {
        format!(
            "{} of {} client configurations fail: {}",
            failing.len(),
            clients.len(),
            failing.join(", ")
        )
    };
    ProbeVerdict {
        summary,
        clients,
        findings: findings(e),
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::End;
    use crate::probe::nego::{REQUESTS, summarize};
    use crate::probe::ntlm::NtlmInfo;
    use crate::probe::rdp_sec::{EncryptionOutcome, EncryptionResult, METHODS};
    use crate::probe::tls::{TlsOutcome, TlsVersionResult};
    use crate::session::ConnectFailure;
    use crate::wire::gcc::EncryptionLevel;
    use crate::wire::ntlm::NegotiateFlags;

    fn sel(p: u32) -> NegoAnswer {
        NegoAnswer::Selected {
            protocol: Protocols(p),
            flags: 0,
        }
    }
    fn fail(c: u32) -> NegoAnswer {
        NegoAnswer::Failure {
            code: FailureCode(c),
        }
    }
    fn results(a: [NegoAnswer; 8]) -> Vec<NegoResult> {
        REQUESTS
            .iter()
            .zip(a)
            .map(|(r, a)| NegoResult::new(*r, a))
            .collect()
    }
    fn acc(o: Offer, suite: u16) -> TlsVersionResult {
        TlsVersionResult::new(
            o,
            TlsOutcome::Accepted {
                version: wtls::version_name(o.version()),
                cipher: wtls::cipher_suite_name(suite),
                cipher_id: suite,
                weaknesses: wtls::cipher_suite_weaknesses(suite),
                hello_retry: false,
                anomalies: vec![],
            },
        )
    }
    fn refused(o: Offer) -> TlsVersionResult {
        TlsVersionResult::new(
            o,
            TlsOutcome::Alert {
                alert: "fatal protocol_version(70)".into(),
                description: 70,
            },
        )
    }
    fn reachable() -> Reachability {
        Reachability::Reachable {
            address: "127.0.0.1:3389".into(),
        }
    }

    struct World {
        reach: Reachability,
        protocols: Vec<NegoResult>,
        nego: NegoSummary,
        tls: Option<TlsSummary>,
        cert: Option<CertReport>,
        ntlm: Option<NtlmReport>,
        rdp: Option<RdpSecSummary>,
    }

    impl World {
        fn new(a: [NegoAnswer; 8]) -> Self {
            let protocols = results(a);
            Self {
                reach: reachable(),
                nego: summarize(&protocols),
                protocols,
                tls: None,
                cert: None,
                ntlm: None,
                rdp: None,
            }
        }
        fn judge(&self) -> ProbeVerdict {
            judge(&Evidence {
                reachability: &self.reach,
                protocols: &self.protocols,
                nego: &self.nego,
                tls: self.tls.as_ref(),
                certificate: self.cert.as_ref(),
                ntlm: self.ntlm.as_ref(),
                rdp: self.rdp.as_ref(),
            })
        }
    }

    fn client<'a>(v: &'a ProbeVerdict, id: &str) -> &'a ClientVerdict {
        v.clients.iter().find(|c| c.id == id).unwrap()
    }

    fn good_tls() -> TlsSummary {
        TlsSummary::new(
            Protocols::SSL,
            vec![
                refused(Offer::Tls10),
                refused(Offer::Tls11),
                acc(Offer::Tls12, 0xc030),
                acc(Offer::Tls13, 0x1302),
            ],
        )
    }

    #[test]
    fn healthy_tls_host() {
        let mut w = World::new([
            fail(1),
            sel(1),
            fail(1),
            sel(1),
            sel(1),
            fail(1),
            fail(1),
            NegoAnswer::NoNegotiation,
        ]);
        w.tls = Some(good_tls());
        let v = w.judge();
        assert_eq!(v.exit_code, 0, "{v:#?}");
        assert!(v.clients.iter().all(|c| c.fate == Fate::Works), "{v:#?}");
        assert_eq!(v.summary, "no common client configuration fails");
        assert!(v.findings.iter().any(|f| f.contains("not offered")));
    }

    #[test]
    fn nla_required_host_fails_the_no_nla_client_only() {
        let mut w = World::new([
            fail(5),
            fail(5),
            sel(2),
            sel(2),
            sel(2),
            fail(5),
            fail(5),
            fail(5),
        ]);
        w.tls = Some(good_tls());
        w.ntlm = Some(NtlmReport::new(
            Protocols(3),
            None,
            NtlmOutcome::Challenge(Box::new(NtlmInfo {
                credssp_version: 6,
                target_name: None,
                nb_computer_name: Some("RDS01".into()),
                nb_domain_name: None,
                dns_computer_name: None,
                dns_domain_name: None,
                dns_tree_name: None,
                product_version: None,
                windows: None,
                host_time_unix: Some(1000),
                host_time: None,
                clock_skew_secs: Some(-600),
                flags: NegotiateFlags(0),
                anomalies: vec![],
            })),
        ));
        let v = w.judge();
        let c = client(&v, "no_nla");
        assert_eq!(c.fate, Fate::Fails);
        assert_eq!(c.cause, Some("nego.hybrid_required_by_server"));
        assert!(
            c.symptom
                .as_deref()
                .unwrap()
                .contains("Network Level Authentication")
        );
        assert!(!c.remedies.is_empty());
        let m = client(&v, "mstsc");
        assert_eq!(m.fate, Fate::Warning, "{m:#?}");
        assert!(m.summary.contains("Kerberos"));
        assert_eq!(v.exit_code, 0);
    }

    #[test]
    fn expired_certificate_fails_mstsc() {
        let mut w = World::new([
            fail(1),
            sel(1),
            fail(1),
            sel(1),
            sel(1),
            fail(1),
            fail(1),
            NegoAnswer::NoNegotiation,
        ]);
        w.tls = Some(good_tls());
        let pem = std::fs::read_to_string("tests/fixtures/x509/selfsigned.pem").unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let leaf = crate::wire::x509::summarize(&der).unwrap();
        w.cert = CertReport::new(&[der], leaf.not_after + 86_400 * 10, "127.0.0.1", "test");
        let v = w.judge();
        let m = client(&v, "mstsc");
        assert_eq!(m.fate, Fate::Fails);
        assert_eq!(m.cause, Some("tls.client_rejected_certificate"));
        assert!(m.summary.contains("expired"), "{}", m.summary);
        assert_eq!(v.exit_code, 1);
        assert!(
            v.summary.starts_with("4 of 4 client configurations fail"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn legacy_tls10_host() {
        let mut w = World::new([
            fail(1),
            sel(1),
            fail(1),
            sel(1),
            sel(1),
            fail(1),
            fail(1),
            NegoAnswer::NoNegotiation,
        ]);
        w.tls = Some(TlsSummary::new(
            Protocols::SSL,
            vec![
                acc(Offer::Tls10, 0xc014),
                refused(Offer::Tls11),
                refused(Offer::Tls12),
                refused(Offer::Tls13),
            ],
        ));
        let v = w.judge();
        let m = client(&v, "mstsc");
        assert_eq!(
            (m.fate, m.cause),
            (Fate::Fails, Some("tls.no_common_version"))
        );
        assert!(m.summary.contains("only TLS 1.0"), "{}", m.summary);
        assert!(v.findings.iter().any(|f| f.contains("TLS 1.0 accepted")));
    }

    #[test]
    fn weak_suite_only_host_fails_the_strict_client() {
        let mut w = World::new([
            fail(1),
            sel(1),
            fail(1),
            sel(1),
            sel(1),
            fail(1),
            fail(1),
            NegoAnswer::NoNegotiation,
        ]);
        let strict = TlsVersionResult::new(
            Offer::Tls12Strict,
            TlsOutcome::Alert {
                alert: "fatal handshake_failure(40)".into(),
                description: 40,
            },
        );
        w.tls = Some(TlsSummary::new(
            Protocols::SSL,
            vec![
                refused(Offer::Tls10),
                refused(Offer::Tls11),
                acc(Offer::Tls12, 0x002f),
                refused(Offer::Tls13),
                strict,
            ],
        ));
        let v = w.judge();
        assert_eq!(client(&v, "mstsc").fate, Fate::Works);
        let s = client(&v, "tls12_plus");
        assert_eq!(
            (s.fate, s.cause),
            (Fate::Fails, Some("tls.no_common_cipher"))
        );
        assert_eq!(v.exit_code, 1);
    }

    fn rdp_summary(level: u32, accepted: &[EncryptionMethods]) -> RdpSecSummary {
        RdpSecSummary::new(
            Some(Protocols::RDP),
            METHODS
                .iter()
                .map(|&m| {
                    if accepted.contains(&m) {
                        EncryptionResult::new(
                            m,
                            EncryptionOutcome::Accepted {
                                method: m,
                                level: EncryptionLevel(level),
                            },
                        )
                    } else {
                        EncryptionResult::new(m, EncryptionOutcome::Ended { end: End::Closed })
                    }
                })
                .collect(),
        )
    }

    #[test]
    fn rdp_only_host() {
        // xrdp security_layer=rdp, crypt_level=high.
        let mut w = World::new([
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            NegoAnswer::NoNegotiation,
        ]);
        w.rdp = Some(rdp_summary(3, &[EncryptionMethods::BIT_128]));
        let v = w.judge();
        assert_eq!(client(&v, "mstsc").fate, Fate::Warning);
        let s = client(&v, "tls12_plus");
        assert_eq!(
            (s.fate, s.cause),
            (Fate::Fails, Some("nego.client_refused_selected_protocol"))
        );
        let f = client(&v, "fips");
        assert_eq!(
            (f.fate, f.cause),
            (Fate::Fails, Some("rdp_security.encryption_mismatch"))
        );
        assert!(f.summary.contains("128-bit RC4"), "{}", f.summary);
        assert_eq!(v.exit_code, 1);
        // A FIPS level host: the FIPS client works.
        w.rdp = Some(rdp_summary(4, &[EncryptionMethods::FIPS]));
        assert_eq!(client(&w.judge(), "fips").fate, Fate::Warning);
    }

    #[test]
    fn ssl_not_allowed_makes_mstsc_retry_with_rdp_security() {
        // FreeRDP shadow /sec:rdp: failure code 2 to every TLS request, method NONE.
        let mut w = World::new([
            sel(0),
            fail(2),
            fail(2),
            fail(2),
            fail(2),
            fail(2),
            fail(2),
            sel(0),
        ]);
        w.rdp = Some(RdpSecSummary::new(
            Some(Protocols::RDP),
            METHODS
                .iter()
                .map(|&m| {
                    EncryptionResult::new(
                        m,
                        EncryptionOutcome::NoEncryption {
                            level: EncryptionLevel(0),
                        },
                    )
                })
                .collect(),
        ));
        let v = w.judge();
        let m = client(&v, "mstsc");
        assert_eq!(m.fate, Fate::Warning, "{m:#?}");
        assert!(m.details.iter().any(|d| d.contains("retries")), "{m:#?}");
        assert!(
            m.details.iter().any(|d| d.contains("not be encrypted")),
            "{m:#?}"
        );
        let s = client(&v, "tls12_plus");
        assert_eq!(s.cause, Some("nego.ssl_not_allowed_by_server"));
        assert!(
            !v.findings.iter().any(|f| f.contains("weak Standard RDP")),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn unreachable_and_dropping_hosts() {
        let c = NegoAnswer::ConnectFailed {
            failure: ConnectFailure::Refused,
        };
        let mut w = World::new([
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c,
        ]);
        w.reach = Reachability::Unreachable(ConnectFailure::Refused);
        let v = w.judge();
        assert_eq!(v.exit_code, 2);
        assert!(
            v.clients
                .iter()
                .all(|c| c.cause == Some("tcp.connect_refused"))
        );
        assert!(v.summary.contains("refused"));
        let e = NegoAnswer::Ended { end: End::Reset };
        let w = World::new([
            e.clone(),
            e.clone(),
            e.clone(),
            e.clone(),
            e.clone(),
            e.clone(),
            e.clone(),
            e,
        ]);
        let v = w.judge();
        assert_eq!(
            client(&v, "mstsc").cause,
            Some("x224.host_closed_after_request")
        );
        assert_eq!(v.exit_code, 1);
    }

    #[test]
    fn every_cause_used_is_in_the_catalog_with_a_symptom() {
        for id in [
            "tcp.connect_refused",
            "tcp.connect_timeout",
            "tcp.connect_failed",
            "x224.host_closed_after_request",
            "stall",
            "x224.not_rdp",
            "x224.malformed",
            "nego.hybrid_required_by_server",
            "nego.ssl_required_by_server",
            "nego.ssl_not_allowed_by_server",
            "nego.ssl_cert_not_on_server",
            "nego.inconsistent_flags",
            "nego.ssl_with_user_auth_required_by_server",
            "nego.unknown_failure",
            "nego.client_refused_selected_protocol",
            "tls.no_common_version",
            "tls.no_common_cipher",
            "tls.host_aborted_handshake",
            "tls.alert_from_host",
            "tls.closed_during_handshake",
            "tls.client_rejected_certificate",
            "credssp.failed",
            "rdp_security.encryption_mismatch",
        ] {
            assert!(causes::lookup(id).is_some(), "{id} not in the catalog");
            assert!(symptom(id).is_some(), "{id} has no symptom");
        }
        assert!(fips_suite(0xc030) && !fips_suite(0xcca8) && !fips_suite(0x0005));
    }
}
