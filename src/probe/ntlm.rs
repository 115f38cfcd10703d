//! NTLM target info without credentials: inside TLS, a TSRequest (version 6) carrying an NTLM
//! NEGOTIATE; the host answers with a TSRequest carrying its CHALLENGE, whose target info names
//! the host (NetBIOS/DNS computer and domain, tree), its OS build and its clock (reference §2.8.3
//! C1/S1, §2.10, §3.7, §3.9). The probe closes after the CHALLENGE: nothing is authenticated.
//!
//! nmap's `rdp-ntlm-info` does the same; FreeRDP and Windows accept a raw NTLM token in
//! negoTokens (no SPNEGO needed).

use serde::Serialize;

use super::nego::NegoAnswer;
use super::{Dialogue, End, Step};
use crate::session::ConnectFailure;
use crate::wire::credssp::{self, TsRequest};
use crate::wire::ntlm::{self, NegotiateFlags, Version};
use crate::wire::x224::Protocols;

/// Kerberos' default maximum clock skew (5 minutes): beyond it, Kerberos logons fail with
/// KRB_AP_ERR_SKEW and clients fall back to NTLM or fail (reference §3.8 SEC_E_TIME_SKEW).
pub const KERBEROS_MAX_SKEW_SECS: i64 = 300;

/// The client's first TSRequest: version 6 with a raw NTLM NEGOTIATE (reference E10, 57 bytes).
pub fn first_request() -> Vec<u8> {
    credssp::encode(&TsRequest::with_token(
        credssp::CURRENT_VERSION,
        ntlm::encode_negotiate(
            NegotiateFlags::CLIENT_DEFAULT,
            Some(Version::CLIENT_DEFAULT),
        ),
    ))
}

/// What the host's CHALLENGE says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NtlmInfo {
    /// The host's TSRequest.version (reference §3.7: ≤ 4 means pre-2018 CredSSP).
    pub credssp_version: u32,
    /// TargetName (the domain, or the host name of a workgroup host).
    pub target_name: Option<String>,
    pub nb_computer_name: Option<String>,
    pub nb_domain_name: Option<String>,
    pub dns_computer_name: Option<String>,
    pub dns_domain_name: Option<String>,
    pub dns_tree_name: Option<String>,
    /// `10.0.20348` from the NTLM VERSION.
    pub product_version: Option<String>,
    /// The Windows release of that version (reference §3.9).
    pub windows: Option<&'static str>,
    /// MsvAvTimestamp, unix seconds.
    pub host_time_unix: Option<i64>,
    /// The same in RFC 3339.
    pub host_time: Option<String>,
    /// Host clock minus this machine's clock, seconds (positive: the host is ahead).
    pub clock_skew_secs: Option<i64>,
    pub flags: NegotiateFlags,
    pub anomalies: Vec<String>,
}

/// How the NTLM check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum NtlmOutcome {
    /// The CHALLENGE, decoded.
    Challenge(Box<NtlmInfo>),
    /// A TSRequest with errorCode instead of a CHALLENGE.
    ErrorCode {
        credssp_version: u32,
        code: u32,
        name: Option<&'static str>,
    },
    /// A TSRequest without a readable NTLM CHALLENGE (SPNEGO reject, another mechanism).
    NoChallenge {
        credssp_version: u32,
        detail: String,
    },
    /// The answer does not parse.
    Malformed { detail: String },
    /// The host closed, reset or stayed silent after the NEGOTIATE.
    Ended { end: End, received: usize },
    /// The TLS handshake (rustls) failed.
    TlsFailed { error: String },
    /// The X.224 step did not select CredSSP.
    NotNegotiated { answer: NegoAnswer },
}

impl NtlmOutcome {
    pub fn describe(&self) -> String {
        match self {
            NtlmOutcome::Challenge(i) => {
                format!("CHALLENGE received (CredSSP version {})", i.credssp_version)
            }
            NtlmOutcome::ErrorCode { code, name, .. } => format!(
                "errorCode {code:#010x}{}",
                name.map(|n| format!(" {n}")).unwrap_or_default()
            ),
            NtlmOutcome::NoChallenge { detail, .. } => format!("no NTLM CHALLENGE: {detail}"),
            NtlmOutcome::Malformed { detail } => format!("unreadable answer: {detail}"),
            NtlmOutcome::Ended { end, received } => {
                format!(
                    "{} after the NEGOTIATE ({received} byte(s) received)",
                    end.describe()
                )
            }
            NtlmOutcome::TlsFailed { error } => format!("TLS handshake failed: {error}"),
            NtlmOutcome::NotNegotiated { answer } => {
                format!("not tried: X.224 answer {}", answer.describe())
            }
        }
    }

    pub fn info(&self) -> Option<&NtlmInfo> {
        match self {
            NtlmOutcome::Challenge(i) => Some(i),
            _ => None,
        }
    }
}

/// Reads the host's answer TSRequest; `now_unix` is this machine's clock (for the skew).
pub fn interpret(req: &TsRequest, now_unix: i64) -> NtlmOutcome {
    let version = req.version;
    if let Some(code) = req.error_code.filter(|&c| c != 0) {
        return NtlmOutcome::ErrorCode {
            credssp_version: version,
            code,
            name: credssp::error_code_name(code),
        };
    }
    let Some(token) = req.nego_tokens.first() else {
        return NtlmOutcome::NoChallenge {
            credssp_version: version,
            detail: "the TSRequest carries no negoToken".to_owned(),
        };
    };
    let Some((at, msg)) = ntlm::find_message(token) else {
        return NtlmOutcome::NoChallenge {
            credssp_version: version,
            detail: format!(
                "the negoToken ({} bytes, starting {}) holds no NTLM message",
                token.len(),
                hex::encode(token.get(..8).unwrap_or(token))
            ),
        };
    };
    match ntlm::decode_challenge(msg) {
        Ok(ch) => {
            let mut anomalies = ch.anomalies;
            anomalies.extend(req.anomalies.iter().cloned());
            if at > 0 {
                anomalies.push(format!(
                    "the CHALLENGE is wrapped (SPNEGO?) at offset {at} of the negoToken"
                ));
            }
            let ti = ch.target_info;
            let host_time_unix = ti.timestamp_unix();
            NtlmOutcome::Challenge(Box::new(NtlmInfo {
                credssp_version: version,
                target_name: ch.target_name,
                nb_computer_name: ti.nb_computer_name,
                nb_domain_name: ti.nb_domain_name,
                dns_computer_name: ti.dns_computer_name,
                dns_domain_name: ti.dns_domain_name,
                dns_tree_name: ti.dns_tree_name,
                product_version: ch.version.map(|v| v.to_string()),
                windows: ch.version.and_then(Version::windows_name),
                host_time: host_time_unix.and_then(rfc3339),
                clock_skew_secs: host_time_unix.map(|t| t.saturating_sub(now_unix)),
                host_time_unix,
                flags: ch.flags,
                anomalies,
            }))
        }
        Err(e) => NtlmOutcome::Malformed {
            detail: format!("NTLM CHALLENGE: {e}"),
        },
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// Sends the NEGOTIATE TSRequest, reads one TSRequest back (inside TLS: the driver gives it the
/// TLS plaintext).
#[derive(Debug, Clone)]
pub struct CredsspDialogue {
    now_unix: i64,
    buf: Vec<u8>,
    outcome: Option<NtlmOutcome>,
}

impl CredsspDialogue {
    pub fn new(now_unix: i64) -> Self {
        Self {
            now_unix,
            buf: Vec::new(),
            outcome: None,
        }
    }

    pub fn outcome(&self) -> NtlmOutcome {
        self.outcome.clone().unwrap_or(NtlmOutcome::Ended {
            end: End::Timeout,
            received: self.buf.len(),
        })
    }
}

impl Dialogue for CredsspDialogue {
    fn opening(&mut self) -> Vec<u8> {
        first_request()
    }

    fn on_data(&mut self, data: &[u8]) -> Step {
        self.buf.extend_from_slice(data);
        match credssp::decode(&self.buf) {
            Ok(None) => Step::Read,
            Ok(Some((req, _))) => {
                self.outcome = Some(interpret(&req, self.now_unix));
                Step::Done
            }
            Err(e) => {
                self.outcome = Some(NtlmOutcome::Malformed {
                    detail: format!("TSRequest: {e}"),
                });
                Step::Done
            }
        }
    }

    fn on_end(&mut self, end: End) {
        if self.outcome.is_none() {
            self.outcome = Some(NtlmOutcome::Ended {
                end,
                received: self.buf.len(),
            });
        }
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure) {
        self.outcome = Some(NtlmOutcome::NotNegotiated {
            answer: NegoAnswer::ConnectFailed { failure },
        });
    }
}

/// The NTLM check and what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NtlmReport {
    /// The X.224 request used.
    pub requested: Protocols,
    /// The TLS session rustls negotiated (`TLS 1.3 TLS13_AES_256_GCM_SHA384`).
    pub tls: Option<String>,
    pub outcome: NtlmOutcome,
    /// What an admin should hear: old CredSSP, clock skew, old OS.
    pub findings: Vec<String>,
}

impl NtlmReport {
    pub fn new(requested: Protocols, tls: Option<String>, outcome: NtlmOutcome) -> Self {
        let mut findings = Vec::new();
        let version = match &outcome {
            NtlmOutcome::Challenge(i) => Some(i.credssp_version),
            NtlmOutcome::ErrorCode {
                credssp_version, ..
            }
            | NtlmOutcome::NoChallenge {
                credssp_version, ..
            } => Some(*credssp_version),
            _ => None,
        };
        match version {
            Some(v @ 2..=4) => findings.push(format!(
                "CredSSP version {v}: pre-2018, not patched for CVE-2018-0886; patched clients (Encryption Oracle Remediation 'Mitigated', the default since May 2018) refuse it"
            )),
            Some(5) => findings.push(
                "CredSSP version 5: patched, but it never reports errorCode (failures are plain closes)"
                    .to_owned(),
            ),
            _ => {}
        }
        if let Some(i) = outcome.info()
            && let Some(s) = i.clock_skew_secs
            && s.abs() > KERBEROS_MAX_SKEW_SECS
        {
            findings.push(format!(
                    "the host's clock is {} this machine's: Kerberos fails beyond 5 minutes (KRB_AP_ERR_SKEW, 'There is a time and/or date difference'); NTLM still works",
                    skew_words(s)
                ));
        }
        Self {
            requested,
            tls,
            outcome,
            findings,
        }
    }
}

/// `5 min 3 s ahead of` / `2 h behind`.
pub fn skew_words(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let amount = if a >= 86_400 {
        format!("{} d {} h", a / 86_400, a % 86_400 / 3600)
    } else if a >= 3600 {
        format!("{} h {} min", a / 3600, a % 3600 / 60)
    } else if a >= 60 {
        format!("{} min {} s", a / 60, a % 60)
    } else {
        format!("{a} s")
    };
    format!("{amount} {}", if secs >= 0 { "ahead of" } else { "behind" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Reference E11: S1 = TSRequest v6 wrapping the E14 CHALLENGE.
    fn e11() -> Vec<u8> {
        let mut b = hex("30 81 f6 a0 03 02 01 06 a1 81 ee 30 81 eb 30 81 e8 a0 81 e5 04 81 e2");
        b.extend(hex(E14));
        b
    }

    const E14: &str = "
        4e 54 4c 4d 53 53 50 00 02 00 00 00 08 00 08 00 38 00 00 00 35 82 89 e2 11 22 33 44
        55 66 77 88 00 00 00 00 00 00 00 00 a2 00 a2 00 40 00 00 00 0a 00 7c 4f 00 00 00 0f
        43 00 4f 00 52 00 50 00 02 00 08 00 43 00 4f 00 52 00 50 00 01 00 0a 00 52 00 44 00
        53 00 30 00 31 00 04 00 20 00 63 00 6f 00 72 00 70 00 2e 00 65 00 78 00 61 00 6d 00
        70 00 6c 00 65 00 2e 00 63 00 6f 00 6d 00 03 00 2c 00 72 00 64 00 73 00 30 00 31 00
        2e 00 63 00 6f 00 72 00 70 00 2e 00 65 00 78 00 61 00 6d 00 70 00 6c 00 65 00 2e 00
        63 00 6f 00 6d 00 05 00 20 00 63 00 6f 00 72 00 70 00 2e 00 65 00 78 00 61 00 6d 00
        70 00 6c 00 65 00 2e 00 63 00 6f 00 6d 00 07 00 08 00 80 2c cc 38 c3 94 db 01 00 00
        00 00";

    /// E14's timestamp: 2025-03-14 09:26:53 UTC.
    const E14_TIME: i64 = 1_741_944_413;

    #[test]
    fn first_request_is_e10() {
        assert_eq!(
            first_request(),
            hex("30 37 a0 03 02 01 06 a1 30 30 2e 30 2c a0 2a 04
                 28 4e 54 4c 4d 53 53 50 00 01 00 00 00 b7 82 08
                 e2 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 00 0a 00 61 4a 00 00 00 0f")
        );
    }

    #[test]
    fn e11_challenge_in_pieces() {
        let b = e11();
        assert_eq!(b.len(), 249);
        let mut d = CredsspDialogue::new(E14_TIME - 400);
        assert_eq!(d.opening(), first_request());
        for chunk in b.chunks(50) {
            let step = d.on_data(chunk);
            assert_eq!(step == Step::Done, chunk.as_ptr() == b[200..].as_ptr());
        }
        let NtlmOutcome::Challenge(i) = d.outcome() else {
            panic!("{:?}", d.outcome())
        };
        assert_eq!(i.credssp_version, 6);
        assert_eq!(i.nb_computer_name.as_deref(), Some("RDS01"));
        assert_eq!(i.nb_domain_name.as_deref(), Some("CORP"));
        assert_eq!(
            i.dns_computer_name.as_deref(),
            Some("rds01.corp.example.com")
        );
        assert_eq!(i.dns_domain_name.as_deref(), Some("corp.example.com"));
        assert_eq!(i.dns_tree_name.as_deref(), Some("corp.example.com"));
        assert_eq!(i.product_version.as_deref(), Some("10.0.20348"));
        assert_eq!(i.windows, Some("Windows Server 2022"));
        assert_eq!(i.host_time.as_deref(), Some("2025-03-14T09:26:53Z"));
        assert_eq!(i.clock_skew_secs, Some(400));
        let r = NtlmReport::new(Protocols(3), None, d.outcome());
        assert!(
            r.findings[0].contains("6 min 40 s ahead of"),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn error_codes_old_versions_and_closes() {
        // Reference E12.
        let (req, _) = credssp::decode(&hex("30 0d a0 03 02 01 06 a4 06 02 04 c0 00 00 6d"))
            .unwrap()
            .unwrap();
        let o = interpret(&req, 0);
        assert_eq!(
            o,
            NtlmOutcome::ErrorCode {
                credssp_version: 6,
                code: 0xC000_006D,
                name: Some("STATUS_LOGON_FAILURE")
            }
        );
        // A v3 host answering with a CHALLENGE: pre-2018 CredSSP.
        let mut b = e11();
        b[7] = 3; // TSRequest.version
        let (req, _) = credssp::decode(&b).unwrap().unwrap();
        let r = NtlmReport::new(Protocols(3), None, interpret(&req, E14_TIME));
        assert!(r.findings[0].contains("CVE-2018-0886"));
        // No token at all; a token that is not NTLM.
        let o = interpret(
            &TsRequest {
                version: 6,
                ..TsRequest::default()
            },
            0,
        );
        assert!(matches!(o, NtlmOutcome::NoChallenge { .. }));
        let o = interpret(
            &TsRequest::with_token(6, vec![0xa1, 0x05, 0x30, 0x03, 0x0a, 0x01, 0x02]),
            0,
        );
        assert!(
            o.describe().contains("holds no NTLM message"),
            "{}",
            o.describe()
        );
        // Closed after the NEGOTIATE (FreeRDP refusing the mechanism, a policy).
        let mut d = CredsspDialogue::new(0);
        d.on_data(&b[..10]);
        d.on_end(End::Closed);
        assert_eq!(
            d.outcome(),
            NtlmOutcome::Ended {
                end: End::Closed,
                received: 10
            }
        );
        // Garbage.
        let mut d = CredsspDialogue::new(0);
        assert_eq!(d.on_data(b"\x31\x00"), Step::Done);
        assert!(matches!(d.outcome(), NtlmOutcome::Malformed { .. }));
    }

    #[test]
    fn skews() {
        assert_eq!(skew_words(-7300), "2 h 1 min behind");
        assert_eq!(skew_words(3), "3 s ahead of");
        assert_eq!(skew_words(90_000), "1 d 1 h ahead of");
    }

    proptest::proptest! {
        #[test]
        fn hostile_tsrequests_never_panic(at in 0usize..249, v in proptest::prelude::any::<u8>(), cut in 0usize..249) {
            let mut b = e11();
            b[at] = v;
            for bytes in [&b[..], &b[..cut]] {
                let mut d = CredsspDialogue::new(0);
                d.opening();
                d.on_data(bytes);
                d.on_end(End::Closed);
                let o = d.outcome();
                let _ = NtlmReport::new(Protocols(3), None, o.clone());
                let _ = o.describe();
            }
        }
    }
}
