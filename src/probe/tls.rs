//! TLS over RDP: which versions the host accepts and the suite it picks for each, the
//! certificate it presents, and the rustls pieces the driver uses where a full handshake is
//! needed (the NTLM check, and the certificate of a TLS-1.3-only host).
//!
//! Each version check is one connection: an X.224 Connection Request for a TLS-based protocol,
//! then a [`legacy_tls`](super::legacy_tls) ClientHello offering exactly that version, then the
//! host's clear answer (reference §2.7, §4 F5-F7).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use serde::Serialize;

use super::legacy_tls::{self, HelloAnswer, HelloRandom, Offer, ServerFlight};
use super::nego::{NegoAnswer, NegoDialogue};
use super::{Dialogue, End, Step};
use crate::session::ConnectFailure;
use crate::wire::tls::{self as wtls, Alert};
use crate::wire::x224::Protocols;
use crate::wire::x509::{self, CertProblem, CertSummary};

/// CR, then a ClientHello for one version, then the host's first flight.
#[derive(Debug, Clone)]
pub struct TlsVersionDialogue {
    offer: Offer,
    hello: Vec<u8>,
    nego: NegoDialogue,
    flight: Option<ServerFlight>,
    nego_answer: Option<NegoAnswer>,
    answer: Option<HelloAnswer>,
}

impl TlsVersionDialogue {
    /// `requested`: the protocols to ask for (one the host selected TLS for); `sni`: the host
    /// name as given (IP literals are not sent).
    pub fn new(offer: Offer, requested: Protocols, random: &HelloRandom, sni: &str) -> Self {
        Self {
            offer,
            hello: legacy_tls::client_hello(offer, random, Some(sni)),
            nego: NegoDialogue::new(Some(requested)),
            flight: None,
            nego_answer: None,
            answer: None,
        }
    }

    /// The result once the driver has run the dialogue.
    pub fn result(&self) -> TlsVersionResult {
        let outcome = match (&self.answer, &self.nego_answer) {
            (Some(a), _) => TlsOutcome::from_answer(self.offer, a),
            (None, Some(n)) => TlsOutcome::NotNegotiated { answer: n.clone() },
            (None, None) => TlsOutcome::NotNegotiated {
                answer: self.nego.answer(),
            },
        };
        TlsVersionResult::new(self.offer, outcome)
    }
}

impl Dialogue for TlsVersionDialogue {
    fn opening(&mut self) -> Vec<u8> {
        self.nego.opening()
    }

    fn on_data(&mut self, data: &[u8]) -> Step {
        if let Some(f) = &mut self.flight {
            if f.push(data) {
                self.answer = Some(f.finish(None));
                return Step::Done;
            }
            return Step::Read;
        }
        match self.nego.on_data(data) {
            Step::Done => {
                let answer = self.nego.answer();
                let tls = answer.selected().is_some_and(Protocols::uses_tls);
                self.nego_answer = Some(answer);
                if !tls {
                    return Step::Done;
                }
                let mut f = ServerFlight::new();
                // Anything the host sent after its CC belongs to the TLS answer.
                let early = f.push(self.nego.leftover());
                if early {
                    self.answer = Some(f.finish(None));
                    self.flight = Some(f);
                    return Step::Done;
                }
                self.flight = Some(f);
                Step::Send(self.hello.clone())
            }
            s => s,
        }
    }

    fn on_end(&mut self, end: End) {
        match &mut self.flight {
            Some(f) => {
                if self.answer.is_none() {
                    self.answer = Some(f.finish(Some(end)));
                }
            }
            None => {
                self.nego.on_end(end);
                self.nego_answer = Some(self.nego.answer());
            }
        }
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure) {
        self.nego_answer = Some(NegoAnswer::ConnectFailed { failure });
    }
}

/// What one version check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TlsOutcome {
    /// The host negotiated the offered version.
    Accepted {
        version: String,
        cipher: String,
        cipher_id: u16,
        /// `tls::cipher_suite_weaknesses` of the suite.
        weaknesses: Vec<&'static str>,
        /// TLS 1.3 answered with a HelloRetryRequest (it wants another key share group).
        hello_retry: bool,
        anomalies: Vec<String>,
    },
    /// The host chose another version than the one offered.
    OtherVersion { version: String, cipher: String },
    /// A clear alert instead of a ServerHello.
    Alert { alert: String, description: u8 },
    /// An RDP PDU where the ServerHello belongs (xrdp with an unusable key).
    RdpInsteadOfTls { detail: String },
    /// The host closed, reset or stayed silent after the ClientHello.
    Ended { end: End },
    /// Bytes that are not a readable TLS answer.
    Garbled { detail: String },
    /// The X.224 step did not select a TLS-based protocol.
    NotNegotiated { answer: NegoAnswer },
}

impl TlsOutcome {
    fn from_answer(offer: Offer, a: &HelloAnswer) -> Self {
        match a {
            HelloAnswer::ServerHello {
                version,
                cipher_suite,
                hello_retry,
                anomalies,
                ..
            } => {
                if *version == offer.version() {
                    TlsOutcome::Accepted {
                        version: wtls::version_name(*version),
                        cipher: wtls::cipher_suite_name(*cipher_suite),
                        cipher_id: *cipher_suite,
                        weaknesses: wtls::cipher_suite_weaknesses(*cipher_suite),
                        hello_retry: *hello_retry,
                        anomalies: anomalies.clone(),
                    }
                } else {
                    TlsOutcome::OtherVersion {
                        version: wtls::version_name(*version),
                        cipher: wtls::cipher_suite_name(*cipher_suite),
                    }
                }
            }
            HelloAnswer::Alert { level, description } => TlsOutcome::Alert {
                alert: Alert {
                    level: *level,
                    description: *description,
                }
                .to_string(),
                description: *description,
            },
            HelloAnswer::RdpInsteadOfTls { detail } => TlsOutcome::RdpInsteadOfTls {
                detail: detail.clone(),
            },
            HelloAnswer::Ended { end } => TlsOutcome::Ended { end: end.clone() },
            HelloAnswer::NotTls { first_bytes } => TlsOutcome::Garbled {
                detail: format!("not TLS: {first_bytes}"),
            },
            HelloAnswer::Malformed { detail } => TlsOutcome::Garbled {
                detail: detail.clone(),
            },
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            TlsOutcome::Accepted {
                cipher,
                weaknesses,
                hello_retry,
                ..
            } => {
                let mut s = format!("accepted, {cipher}");
                if *hello_retry {
                    s.push_str(" (after a HelloRetryRequest)");
                }
                if !weaknesses.is_empty() {
                    s.push_str(&format!(" [weak: {}]", weaknesses.join(", ")));
                }
                s
            }
            TlsOutcome::OtherVersion { version, cipher } => {
                format!("refused: the host answered with {version} ({cipher})")
            }
            TlsOutcome::Alert { alert, .. } => format!("refused: alert {alert}"),
            TlsOutcome::RdpInsteadOfTls { detail } => {
                format!("refused: the host sent {detail} instead of a ServerHello")
            }
            TlsOutcome::Ended { end } => format!("refused: {}", end.describe()),
            TlsOutcome::Garbled { detail } => format!("unreadable answer: {detail}"),
            TlsOutcome::NotNegotiated { answer } => {
                format!("not tried: X.224 answer {}", answer.describe())
            }
        }
    }
}

/// One version check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsVersionResult {
    pub offer: Offer,
    /// `TLS 1.2`, `TLS 1.2 (ECDHE+AEAD only)`.
    pub label: String,
    pub accepted: bool,
    pub outcome: TlsOutcome,
    /// What stops a client that offers only this.
    pub cause: Option<&'static str>,
}

impl TlsVersionResult {
    pub fn new(offer: Offer, outcome: TlsOutcome) -> Self {
        let cause = match &outcome {
            TlsOutcome::Accepted { .. } => None,
            TlsOutcome::OtherVersion { .. } => Some("tls.no_common_version"),
            TlsOutcome::Alert { description, .. } => Some(match (*description, offer) {
                (70, _) => "tls.no_common_version",
                // A host without TLS 1.3 reads our 1.3-only hello as TLS 1.2 with no suite.
                (40 | 71, Offer::Tls13) => "tls.no_common_version",
                (40 | 71, _) => "tls.no_common_cipher",
                _ => "tls.alert_from_host",
            }),
            TlsOutcome::RdpInsteadOfTls { .. } => Some("tls.host_aborted_handshake"),
            TlsOutcome::Ended { end: End::Timeout } => Some("stall"),
            TlsOutcome::Ended { .. } => Some("tls.host_aborted_handshake"),
            TlsOutcome::Garbled { .. } => Some("tls.closed_during_handshake"),
            TlsOutcome::NotNegotiated { answer } => answer.cause(),
        };
        Self {
            offer,
            label: offer.label(),
            accepted: matches!(outcome, TlsOutcome::Accepted { .. }),
            outcome,
            cause,
        }
    }

    /// The accepted suite's weaknesses (empty when refused or sound).
    pub fn weaknesses(&self) -> &[&'static str] {
        match &self.outcome {
            TlsOutcome::Accepted { weaknesses, .. } => weaknesses,
            _ => &[],
        }
    }

    /// The accepted suite's IANA number.
    pub fn cipher_id(&self) -> Option<u16> {
        match &self.outcome {
            TlsOutcome::Accepted { cipher_id, .. } => Some(*cipher_id),
            _ => None,
        }
    }
}

/// Should the probe check TLS 1.2 with ECDHE+AEAD suites only? When TLS 1.2 is the best the
/// host does and it picked a weak suite from a Windows-like offer, only that tells whether a
/// hardened client can connect at all.
pub fn needs_strict_check(results: &[TlsVersionResult]) -> bool {
    let get = |o: Offer| results.iter().find(|r| r.offer == o);
    let tls13 = get(Offer::Tls13).is_some_and(|r| r.accepted);
    let weak12 = get(Offer::Tls12).is_some_and(|r| r.accepted && !r.weaknesses().is_empty());
    weak12 && !tls13
}

/// All version checks and what they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSummary {
    /// The X.224 request used before each ClientHello.
    pub requested: Protocols,
    pub versions: Vec<TlsVersionResult>,
    /// Accepted versions, oldest first (`TLS 1.2`).
    pub accepted: Vec<String>,
    /// Security findings: obsolete versions, weak suites.
    pub findings: Vec<String>,
}

impl TlsSummary {
    pub fn new(requested: Protocols, versions: Vec<TlsVersionResult>) -> Self {
        let mut accepted: Vec<String> = Vec::new();
        let mut findings = Vec::new();
        for r in &versions {
            if r.accepted && r.offer != Offer::Tls12Strict {
                accepted.push(r.label.clone());
                if matches!(r.offer, Offer::Tls10 | Offer::Tls11) {
                    findings.push(format!(
                        "{} accepted: deprecated (RFC 8996), disabled by default on current Windows clients",
                        r.label
                    ));
                }
            }
            if let TlsOutcome::Accepted {
                cipher, weaknesses, ..
            } = &r.outcome
                && !weaknesses.is_empty()
            {
                findings.push(format!(
                    "{}: the host picks {cipher} ({})",
                    r.label,
                    weaknesses.join(", ")
                ));
            }
        }
        Self {
            requested,
            versions,
            accepted,
            findings,
        }
    }

    pub fn result(&self, offer: Offer) -> Option<&TlsVersionResult> {
        self.versions.iter().find(|r| r.offer == offer)
    }

    pub fn accepts(&self, offer: Offer) -> bool {
        self.result(offer).is_some_and(|r| r.accepted)
    }

    /// Does any version check get as far as the host's TLS answer?
    pub fn any_answered(&self) -> bool {
        self.versions
            .iter()
            .any(|r| !matches!(r.outcome, TlsOutcome::NotNegotiated { .. }))
    }

    /// What stops a client limited to TLS 1.2 and 1.3 (`None`: one of them works): the cause
    /// of the TLS 1.2 check, or of the 1.3 check when 1.2 says nothing more specific.
    pub fn modern_client_cause(&self) -> Option<&'static str> {
        if self.accepts(Offer::Tls12) || self.accepts(Offer::Tls13) {
            return None;
        }
        let old = self.accepts(Offer::Tls10) || self.accepts(Offer::Tls11);
        if old {
            return Some("tls.no_common_version");
        }
        let c12 = self.result(Offer::Tls12).and_then(|r| r.cause);
        let c13 = self.result(Offer::Tls13).and_then(|r| r.cause);
        c12.or(c13).or(Some("tls.closed_during_handshake"))
    }
}

/// The host's certificate, judged as a current Windows client would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertReport {
    /// Where the chain was read: `TLS 1.2 handshake, in clear`, `rustls handshake (TLS 1.3 ...)`.
    pub source: String,
    /// The name the problems are judged against (the host as given).
    pub expected_name: String,
    /// Leaf first.
    pub chain: Vec<CertSummary>,
    /// Chain entries that did not parse.
    pub unreadable: Vec<String>,
    /// What a current Windows client objects to in the leaf (reference §4 F7, §6.1).
    pub problems: Vec<CertProblem>,
    /// Whole days until notAfter; negative: days since it expired.
    pub days_left: Option<i64>,
    pub self_signed: bool,
}

impl CertReport {
    /// Judges a chain (DER, leaf first) at `now` (unix seconds) for `expected_name`; `None`
    /// for an empty chain.
    pub fn new(chain_der: &[Vec<u8>], now: i64, expected_name: &str, source: &str) -> Option<Self> {
        if chain_der.is_empty() {
            return None;
        }
        let mut chain = Vec::new();
        let mut unreadable = Vec::new();
        for (i, der) in chain_der.iter().enumerate() {
            match x509::summarize(der) {
                Ok(s) => chain.push(s),
                Err(e) => unreadable.push(format!("certificate #{i}: {e}")),
            }
        }
        let leaf = chain_der.first().and_then(|d| x509::summarize(d).ok());
        let problems = leaf
            .as_ref()
            .map(|l| x509::problems(l, now, Some(expected_name)))
            .unwrap_or_default();
        let days_left = leaf
            .as_ref()
            .map(|l| l.not_after.saturating_sub(now).div_euclid(86_400));
        Some(Self {
            source: source.to_owned(),
            expected_name: expected_name.to_owned(),
            self_signed: leaf.as_ref().is_some_and(|l| l.self_signed),
            chain,
            unreadable,
            problems,
            days_left,
        })
    }

    /// The problem ids (`expired`, `name_mismatch` ...).
    pub fn problem_ids(&self) -> Vec<&'static str> {
        self.problems.iter().map(CertProblem::id).collect()
    }
}

/// The first certificate chain found in the clear TLS answers, with the version it came with.
pub fn clear_chain(answers: &[(Offer, HelloAnswer)]) -> Option<(String, Vec<Vec<u8>>)> {
    // Prefer TLS 1.2 (what current clients see), then older versions.
    [Offer::Tls12, Offer::Tls12Strict, Offer::Tls11, Offer::Tls10]
        .iter()
        .find_map(|o| {
            answers.iter().find_map(|(offer, a)| match a {
                HelloAnswer::ServerHello {
                    certificates,
                    version,
                    ..
                } if offer == o && !certificates.is_empty() => Some((
                    format!("{} handshake, in clear", wtls::version_name(*version)),
                    certificates.clone(),
                )),
                _ => None,
            })
        })
}

impl TlsVersionDialogue {
    /// The raw answer (with the certificates) for [`clear_chain`].
    pub fn hello_answer(&self) -> Option<(Offer, HelloAnswer)> {
        self.answer.clone().map(|a| (self.offer, a))
    }
}

/// The probe judges certificates itself ([`CertReport`]) and must get past bad ones to learn
/// more: the same recording verifier as `--fresh-cert` and `cert inspect`.
pub use crate::tls::verifier::RecordingVerifier;

/// A rustls client configuration (TLS 1.2 and 1.3, aws-lc-rs) that records and accepts any
/// certificate.
pub fn recording_client_config()
-> Result<(Arc<rustls::ClientConfig>, Arc<RecordingVerifier>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(RecordingVerifier::new(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// The rustls server name for a host as given (an IP literal sends no SNI).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned()).unwrap_or_else(|_| {
        ServerName::try_from("rdp-host".to_owned())
            .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::nego::connection_request;

    fn rnd() -> HelloRandom {
        HelloRandom {
            random: [1; 32],
            session_id: [2; 32],
            key_share: [3; 32],
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    const CC_SSL: &str = "03 00 00 13 0e d0 00 00 12 34 00 02 01 08 00 01 00 00 00";
    const CC_FAIL_5: &str = "03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 05 00 00 00";

    fn server_hello_record(version: u16, suite: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(version.to_be_bytes());
        b.extend([0x11; 32]);
        b.push(0);
        b.extend(suite.to_be_bytes());
        b.push(0);
        let mut hs = vec![2, 0, 0, u8::try_from(b.len()).unwrap()];
        hs.extend(b);
        hs.extend([14, 0, 0, 0]);
        let mut r = vec![22];
        r.extend(version.to_be_bytes());
        r.extend(u16::try_from(hs.len()).unwrap().to_be_bytes());
        r.extend(hs);
        r
    }

    fn run(
        offer: Offer,
        replies: &[Vec<u8>],
        end: Option<End>,
    ) -> (Vec<Vec<u8>>, TlsVersionResult) {
        let mut d = TlsVersionDialogue::new(offer, Protocols::SSL, &rnd(), "host.example");
        let mut sent = vec![d.opening()];
        let mut done = false;
        for r in replies {
            match d.on_data(r) {
                Step::Send(b) => sent.push(b),
                Step::Done => {
                    done = true;
                    break;
                }
                Step::Read => {}
            }
        }
        if !done {
            d.on_end(end.unwrap_or(End::Timeout));
        }
        (sent, d.result())
    }

    #[test]
    fn accepted_version_and_weak_suite() {
        let (sent, r) = run(
            Offer::Tls12,
            &[hex(CC_SSL), server_hello_record(0x0303, 0x002f)],
            None,
        );
        assert_eq!(sent[0], connection_request(Some(Protocols::SSL), "rdpdiag"));
        assert_eq!(sent[1][0], 22, "a ClientHello record follows the CC");
        assert!(r.accepted);
        assert_eq!(r.cause, None);
        assert!(
            r.weaknesses()
                .contains(&"RSA key exchange (no forward secrecy)")
        );
        assert!(r.weaknesses().contains(&"CBC mode"));
        assert!(needs_strict_check(std::slice::from_ref(&r)));
    }

    #[test]
    fn downgrade_alerts_and_closes() {
        let (_, r) = run(
            Offer::Tls12,
            &[hex(CC_SSL), server_hello_record(0x0301, 0x002f)],
            None,
        );
        assert!(!r.accepted);
        assert_eq!(r.cause, Some("tls.no_common_version"));
        let alert = |d: u8| vec![21, 3, 3, 0, 2, 2, d];
        let (_, r) = run(Offer::Tls12, &[hex(CC_SSL), alert(70)], None);
        assert_eq!(r.cause, Some("tls.no_common_version"));
        assert!(
            r.outcome.describe().contains("protocol_version"),
            "{}",
            r.outcome.describe()
        );
        let (_, r) = run(Offer::Tls12, &[hex(CC_SSL), alert(40)], None);
        assert_eq!(r.cause, Some("tls.no_common_cipher"));
        let (_, r) = run(Offer::Tls13, &[hex(CC_SSL), alert(40)], None);
        assert_eq!(r.cause, Some("tls.no_common_version"));
        let (_, r) = run(Offer::Tls10, &[hex(CC_SSL), alert(80)], None);
        assert_eq!(r.cause, Some("tls.alert_from_host"));
        let (_, r) = run(Offer::Tls12, &[hex(CC_SSL)], Some(End::Reset));
        assert_eq!(r.cause, Some("tls.host_aborted_handshake"));
        let (_, r) = run(Offer::Tls12, &[hex(CC_SSL)], Some(End::Timeout));
        assert_eq!(r.cause, Some("stall"));
        let (_, r) = run(
            Offer::Tls12,
            &[hex(CC_SSL), hex("03 00 00 09 02 f0 80 21 80")],
            None,
        );
        assert_eq!(r.cause, Some("tls.host_aborted_handshake"));
        assert!(matches!(r.outcome, TlsOutcome::RdpInsteadOfTls { .. }));
    }

    #[test]
    fn negotiation_failure_stops_before_tls() {
        let (sent, r) = run(Offer::Tls12, &[hex(CC_FAIL_5)], None);
        assert_eq!(sent.len(), 1, "no ClientHello after a failure");
        assert_eq!(r.cause, Some("nego.hybrid_required_by_server"));
        assert!(matches!(r.outcome, TlsOutcome::NotNegotiated { .. }));
    }

    #[test]
    fn cc_and_server_hello_in_one_read() {
        let mut both = hex(CC_SSL);
        both.extend(server_hello_record(0x0303, 0xc030));
        let (sent, r) = run(Offer::Tls12, &[both], None);
        assert_eq!(sent.len(), 1);
        assert!(r.accepted);
    }

    fn result(offer: Offer, outcome: TlsOutcome) -> TlsVersionResult {
        TlsVersionResult::new(offer, outcome)
    }

    fn acc(offer: Offer, suite: u16) -> TlsVersionResult {
        result(
            offer,
            TlsOutcome::Accepted {
                version: wtls::version_name(offer.version()),
                cipher: wtls::cipher_suite_name(suite),
                cipher_id: suite,
                weaknesses: wtls::cipher_suite_weaknesses(suite),
                hello_retry: false,
                anomalies: vec![],
            },
        )
    }

    fn alerted(offer: Offer, d: u8) -> TlsVersionResult {
        result(
            offer,
            TlsOutcome::Alert {
                alert: format!("fatal {d}"),
                description: d,
            },
        )
    }

    #[test]
    fn summaries() {
        // Legacy TLS 1.0-only host.
        let s = TlsSummary::new(
            Protocols::SSL,
            vec![
                acc(Offer::Tls10, 0xc014),
                alerted(Offer::Tls11, 70),
                alerted(Offer::Tls12, 70),
                alerted(Offer::Tls13, 70),
            ],
        );
        assert_eq!(s.accepted, ["TLS 1.0"]);
        assert_eq!(s.modern_client_cause(), Some("tls.no_common_version"));
        assert!(s.findings[0].contains("deprecated"));
        // TLS 1.3 only.
        let s = TlsSummary::new(
            Protocols::SSL,
            vec![
                alerted(Offer::Tls10, 70),
                alerted(Offer::Tls11, 70),
                alerted(Offer::Tls12, 70),
                acc(Offer::Tls13, 0x1302),
            ],
        );
        assert_eq!(s.modern_client_cause(), None);
        assert!(s.findings.is_empty());
        // A host that cannot use its key.
        let reset = || TlsOutcome::Ended { end: End::Reset };
        let s = TlsSummary::new(
            Protocols::SSL,
            Offer::VERSIONS
                .iter()
                .map(|o| result(*o, reset()))
                .collect(),
        );
        assert_eq!(s.modern_client_cause(), Some("tls.host_aborted_handshake"));
    }

    #[test]
    fn certificate_report() {
        let pem = std::fs::read_to_string("tests/fixtures/x509/selfsigned.pem").unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let leaf = x509::summarize(&der).unwrap();
        let r = CertReport::new(
            std::slice::from_ref(&der),
            leaf.not_after + 3 * 86_400,
            "other.example",
            "test",
        )
        .unwrap();
        assert!(r.self_signed);
        assert_eq!(r.days_left, Some(-3));
        let ids = r.problem_ids();
        assert!(
            ids.contains(&"expired")
                && ids.contains(&"self_signed")
                && ids.contains(&"name_mismatch"),
            "{ids:?}"
        );
        let r = CertReport::new(&[der, b"junk".to_vec()], leaf.not_before, "x", "test").unwrap();
        assert_eq!(r.chain.len(), 1);
        assert_eq!(r.unreadable.len(), 1);
        assert!(CertReport::new(&[], 0, "x", "t").is_none());
    }

    #[test]
    fn clear_chain_prefers_tls12() {
        let sh = |v: u16, c: &[u8]| HelloAnswer::ServerHello {
            version: v,
            cipher_suite: 0x2f,
            hello_retry: false,
            certificates: vec![c.to_vec()],
            anomalies: vec![],
        };
        let answers = vec![
            (Offer::Tls10, sh(0x0301, b"a")),
            (Offer::Tls12, sh(0x0303, b"b")),
        ];
        let (src, chain) = clear_chain(&answers).unwrap();
        assert_eq!(
            (src.as_str(), chain),
            ("TLS 1.2 handshake, in clear", vec![b"b".to_vec()])
        );
        assert!(clear_chain(&[]).is_none());
    }

    #[test]
    fn rustls_config_builds() {
        let (_cfg, v) = recording_client_config().unwrap();
        assert!(v.chain().is_empty());
        assert!(matches!(server_name("127.0.0.1"), ServerName::IpAddress(_)));
        assert!(matches!(
            server_name("rds01.example"),
            ServerName::DnsName(_)
        ));
    }

    proptest::proptest! {
        #[test]
        fn hostile_server_flights_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 0..6),
            offer in 0usize..5,
        ) {
            let offer = [Offer::Tls10, Offer::Tls11, Offer::Tls12, Offer::Tls12Strict, Offer::Tls13][offer];
            let mut replies = vec![hex(CC_SSL)];
            replies.extend(chunks);
            let (_, r) = run(offer, &replies, Some(End::Closed));
            let _ = (r.outcome.describe(), r.cause);
        }
    }
}
