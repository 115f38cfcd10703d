//! X.509 certificate summaries and the problems a Windows RDP client objects to
//! (RFC 5280; reference §2.7.8, §4 F7, §6.1).
//!
//! Decoding is x509-parser's; this module picks the fields an administrator needs to answer
//! "why does mstsc refuse this host's certificate": validity, names, EKU, key, signature
//! algorithm, self-signed. Nothing here reads a clock: `now` is passed in.

use core::net::IpAddr;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::X509Name;

use super::DecodeError;

/// Remote Desktop Authentication EKU (reference §2.7.8, §6.1).
pub const OID_REMOTE_DESKTOP_AUTH: &str = "1.3.6.1.4.1.311.54.1.2";
/// id-kp-serverAuth (RFC 5280 §4.2.1.12).
pub const OID_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";

/// Signature algorithms built on MD2, MD5 or SHA-1 (RFC 3279 §2.2, RFC 5758).
const WEAK_SIGNATURE_OIDS: [&str; 6] = [
    "1.2.840.113549.1.1.2", // md2WithRSAEncryption
    "1.2.840.113549.1.1.4", // md5WithRSAEncryption
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
];

const SECONDS_PER_DAY: i64 = 86_400;

/// The facts about one certificate that rdpdiag reports (reference §2.7.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject, RFC 4514 style (`CN=host`).
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// First commonName (2.5.4.3) of the subject.
    pub subject_cn: Option<String>,
    /// subjectAltName entries: `DNS:x`, `IP:1.2.3.4`, `email:x`, `URI:x`, `DirName:x`, `other`.
    pub sans: Vec<String>,
    /// serialNumber, upper-case hex without leading zero bytes.
    pub serial: String,
    /// validity.notBefore, unix seconds.
    pub not_before: i64,
    /// validity.notAfter, unix seconds.
    pub not_after: i64,
    /// Outer signatureAlgorithm name (`sha256WithRSAEncryption`), or its OID.
    pub signature_algorithm: String,
    /// Outer signatureAlgorithm OID, dotted.
    pub signature_algorithm_oid: String,
    /// `RSA`, `EC P-256`, `EC P-384`, `EC P-521`, `Ed25519`, `Ed448`, `DSA`, or the SPKI OID.
    pub key_type: String,
    /// Key size in bits (RSA modulus, DSA p, curve size); 0 if unknown.
    pub key_bits: u32,
    /// The extendedKeyUsage extension is present (absent = any purpose).
    pub eku_present: bool,
    /// EKU purposes: `serverAuth`, `clientAuth`, `codeSigning`, `emailProtection`,
    /// `timeStamping`, `OCSPSigning`, `anyExtendedKeyUsage`,
    /// `Remote Desktop Authentication (1.3.6.1.4.1.311.54.1.2)`, or other dotted OIDs.
    pub ekus: Vec<String>,
    /// Issuer equals subject and the certificate is signed by its own key (see [`summarize`]).
    pub self_signed: bool,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256_fingerprint: String,
    /// SHA-1 of the DER (what Windows shows as "Thumbprint"), lower-case hex.
    pub sha1_fingerprint: String,
    /// Extensions that did not parse, trailing bytes and the like.
    pub anomalies: Vec<String>,
}

/// Summarizes one DER certificate.
///
/// `self_signed`: issuer == subject, and the signature verifies with the certificate's own
/// key; when the verifier cannot judge (an algorithm or key size aws-lc refuses, such as RSA
/// below 2048 with SHA-256), matching authority/subject key identifiers (or their absence)
/// decide instead.
pub fn summarize(der: &[u8]) -> Result<CertSummary, DecodeError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| {
        DecodeError::new(0, "Certificate", "a DER X.509 certificate", e.to_string())
    })?;
    let mut anomalies = Vec::new();
    let used = der.len().saturating_sub(rest.len());
    if !rest.is_empty() {
        anomalies.push(format!(
            "{} byte(s) after the certificate at offset {used}",
            rest.len()
        ));
    }
    let cert_der = der.get(..used).unwrap_or(der);

    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);

    let mut sans = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(ext)) => sans.extend(ext.value.general_names.iter().map(general_name)),
        Ok(None) => {}
        Err(e) => anomalies.push(format!("subjectAltName: {e}")),
    }

    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    let signature_algorithm = signature_name(&cert.signature_algorithm.algorithm);
    let (key_type, key_bits) = key_info(&cert, &mut anomalies);

    let (eku_present, ekus) = match cert.extended_key_usage() {
        Ok(Some(ext)) => (true, eku_names(ext.value)),
        Ok(None) => (false, Vec::new()),
        Err(e) => {
            anomalies.push(format!("extendedKeyUsage: {e}"));
            (true, Vec::new())
        }
    };
    let is_ca = match cert.basic_constraints() {
        Ok(bc) => bc.is_some_and(|b| b.value.ca),
        Err(e) => {
            anomalies.push(format!("basicConstraints: {e}"));
            false
        }
    };
    let self_signed = is_self_signed(&cert, &key_type, key_bits);

    Ok(CertSummary {
        subject: name_string(cert.subject()),
        issuer: name_string(cert.issuer()),
        subject_cn,
        sans,
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        signature_algorithm,
        signature_algorithm_oid: sig_oid,
        key_type,
        key_bits,
        eku_present,
        ekus,
        self_signed,
        is_ca,
        sha256_fingerprint: digest_hex(&aws_lc_rs::digest::SHA256, cert_der),
        sha1_fingerprint: digest_hex(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der),
        anomalies,
    })
}

fn digest_hex(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(alg, data).as_ref())
}

fn name_string(n: &X509Name<'_>) -> String {
    n.to_string()
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode_upper(raw.get(start..).unwrap_or(raw))
}

fn general_name(g: &GeneralName<'_>) -> String {
    match g {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
            Some(ip) => format!("IP:{ip}"),
            None => format!("IP:{}", hex::encode(b)),
        },
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        GeneralName::RegisteredID(oid) => format!("RID:{}", oid.to_id_string()),
        GeneralName::OtherName(oid, _) => format!("othername:{}", oid.to_id_string()),
        GeneralName::X400Address(_) => "X400Address".to_owned(),
        GeneralName::EDIPartyName(_) => "EDIPartyName".to_owned(),
        GeneralName::Invalid(tag, _) => format!("invalid({})", tag.0),
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::from(a));
    }
    <[u8; 16]>::try_from(b).ok().map(IpAddr::from)
}

fn signature_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let id = oid.to_id_string();
    let known = match id.as_str() {
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.3.14.3.2.29" => "sha1WithRSASignature",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10040.4.3" => "dsa-with-sha1",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        _ => {
            return x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
                .map_or(id.clone(), str::to_owned);
        }
    };
    known.to_owned()
}

/// Bits of a big-endian unsigned integer (leading zero bytes and bits ignored).
fn uint_bits(b: &[u8]) -> u32 {
    let Some(start) = b.iter().position(|&x| x != 0) else {
        return 0;
    };
    let rest = b.get(start..).unwrap_or(&[]);
    let lead = rest.first().map_or(0, |x| x.leading_zeros());
    u32::try_from(rest.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(8)
        .saturating_sub(lead)
}

fn key_info(cert: &X509Certificate<'_>, anomalies: &mut Vec<String>) -> (String, u32) {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    match alg.as_str() {
        // id-ecPublicKey: the named curve says the size.
        "1.2.840.10045.2.1" => match curve.as_deref() {
            Some("1.2.840.10045.3.1.7") => ("EC P-256".to_owned(), 256),
            Some("1.3.132.0.34") => ("EC P-384".to_owned(), 384),
            Some("1.3.132.0.35") => ("EC P-521".to_owned(), 521),
            Some("1.3.132.0.10") => ("EC secp256k1".to_owned(), 256),
            Some(other) => (format!("EC {other}"), 0),
            None => ("EC".to_owned(), 0),
        },
        "1.3.101.112" => ("Ed25519".to_owned(), 256),
        "1.3.101.113" => ("Ed448".to_owned(), 456),
        _ => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => ("RSA".to_owned(), uint_bits(rsa.modulus)),
            Ok(PublicKey::DSA(_)) => {
                // DSA parameters p, q, g: the size is that of p.
                let bits = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_sequence().ok())
                    .and_then(|s| {
                        x509_parser::der_parser::der::parse_der_integer(&s.content)
                            .ok()
                            .and_then(|(_, p)| p.as_slice().ok().map(uint_bits))
                    })
                    .unwrap_or(0);
                ("DSA".to_owned(), bits)
            }
            Ok(_) => (alg, 0),
            Err(e) => {
                anomalies.push(format!("subjectPublicKeyInfo: {e}"));
                (alg, 0)
            }
        },
    }
}

fn eku_names(e: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut v = Vec::new();
    let flags = [
        (e.server_auth, "serverAuth"),
        (e.client_auth, "clientAuth"),
        (e.code_signing, "codeSigning"),
        (e.email_protection, "emailProtection"),
        (e.time_stamping, "timeStamping"),
        (e.ocsp_signing, "OCSPSigning"),
        (e.any, "anyExtendedKeyUsage"),
    ];
    v.extend(
        flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| (*n).to_owned()),
    );
    for oid in &e.other {
        let id = oid.to_id_string();
        v.push(if id == OID_REMOTE_DESKTOP_AUTH {
            format!("Remote Desktop Authentication ({id})")
        } else {
            id
        });
    }
    v
}

fn is_self_signed(cert: &X509Certificate<'_>, key_type: &str, key_bits: u32) -> bool {
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return false;
    }
    match cert.verify_signature(None) {
        Ok(()) => true,
        // aws-lc refuses RSA below 2048 bits for SHA-2 and some algorithms outright: then the
        // verdict says nothing, so fall back to the key identifiers.
        Err(x509_parser::error::X509Error::SignatureVerificationError)
            if !(key_type == "RSA" && key_bits < 2048) =>
        {
            false
        }
        Err(_) => key_ids_match(cert),
    }
}

/// authorityKeyIdentifier.keyIdentifier equals subjectKeyIdentifier, or either is absent.
fn key_ids_match(cert: &X509Certificate<'_>) -> bool {
    use x509_parser::extensions::ParsedExtension;
    let mut aki = None;
    let mut ski = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0);
            }
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
            _ => {}
        }
    }
    match (aki, ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

impl CertSummary {
    /// `CN=host, issuer CN=host (self-signed), RSA 2048, sha256WithRSAEncryption,
    /// valid 2024-01-01..2025-01-01`.
    pub fn one_line(&self) -> String {
        let issuer = if self.self_signed {
            format!("issuer {} (self-signed)", self.issuer)
        } else {
            format!("issuer {}", self.issuer)
        };
        let key = if self.key_type == "RSA" || self.key_type == "DSA" {
            format!("{} {}", self.key_type, self.key_bits)
        } else {
            self.key_type.clone()
        };
        format!(
            "{}, {issuer}, {key}, {}, valid {}..{}",
            self.subject,
            self.signature_algorithm,
            date(self.not_before),
            date(self.not_after)
        )
    }

    /// The names a client can match: DNS and IP subjectAltNames without their prefix, or the
    /// subject CN when there is none of those (RFC 6125 §6.4.4).
    pub fn host_names(&self) -> Vec<String> {
        let sans: Vec<String> = self
            .sans
            .iter()
            .filter_map(|s| s.strip_prefix("DNS:").or_else(|| s.strip_prefix("IP:")))
            .map(str::to_owned)
            .collect();
        if sans.is_empty() {
            self.subject_cn.iter().cloned().collect()
        } else {
            sans
        }
    }

    /// Does the certificate name `host` (DNS name or IP literal)? Case-insensitive; a `*`
    /// leftmost label matches exactly one label; IP literals match IP SANs (or a CN fallback).
    pub fn matches_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        let host_ip: Option<IpAddr> = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        let from_sans = self
            .sans
            .iter()
            .any(|s| s.starts_with("DNS:") || s.starts_with("IP:"));
        let candidates: Vec<(bool, String)> = if from_sans {
            self.sans
                .iter()
                .filter_map(|s| {
                    s.strip_prefix("DNS:")
                        .map(|d| (false, d.to_owned()))
                        .or_else(|| s.strip_prefix("IP:").map(|i| (true, i.to_owned())))
                })
                .collect()
        } else {
            self.subject_cn
                .iter()
                .map(|cn| (cn.parse::<IpAddr>().is_ok(), cn.clone()))
                .collect()
        };
        candidates
            .iter()
            .any(|(is_ip, name)| match (host_ip, is_ip) {
                (Some(ip), true) => name.parse::<IpAddr>().is_ok_and(|n| n == ip),
                (Some(_), false) | (None, true) => false,
                (None, false) => dns_matches(name, host),
            })
    }
}

/// RFC 6125 §6.4.3: `*` only as the whole leftmost label, matching exactly one label.
fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        let Some((first, rest)) = host.split_once('.') else {
            return false;
        };
        !first.is_empty() && rest.eq_ignore_ascii_case(suffix) && suffix.contains('.')
    } else {
        pattern.eq_ignore_ascii_case(host)
    }
}

fn date(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => unix.to_string(),
    }
}

/// What a current Windows client (mstsc) objects to in a host certificate (reference §4 F7,
/// §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "id", rename_all = "snake_case")]
pub enum CertProblem {
    /// notAfter is in the past (as seen from `now`: the client's clock matters).
    Expired { days_ago: i64 },
    /// notBefore is in the future.
    NotYetValid { days_ahead: i64 },
    /// Issued by itself: no trusted authority vouches for it.
    SelfSigned,
    /// The name the client used is not in the certificate.
    NameMismatch {
        expected: String,
        names: Vec<String>,
    },
    /// MD2, MD5 or SHA-1 signature.
    WeakSignature { algorithm: String },
    /// RSA or DSA key below 2048 bits.
    ShortKey { key_type: String, bits: u32 },
    /// An EKU extension without serverAuth, Remote Desktop Authentication or anyExtendedKeyUsage.
    NoServerAuthEku { ekus: Vec<String> },
}

impl CertProblem {
    /// Stable identifier for rules and JSON.
    pub fn id(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::SelfSigned => "self_signed",
            Self::NameMismatch { .. } => "name_mismatch",
            Self::WeakSignature { .. } => "weak_signature",
            Self::ShortKey { .. } => "short_key",
            Self::NoServerAuthEku { .. } => "no_server_auth_eku",
        }
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

impl std::fmt::Display for CertProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expired { days_ago } => write!(
                f,
                "the certificate expired {} ago (check the client's clock too)",
                days(*days_ago)
            ),
            Self::NotYetValid { days_ahead } => write!(
                f,
                "the certificate becomes valid only in {} (check the clocks of client and host)",
                days(*days_ahead)
            ),
            Self::SelfSigned => write!(
                f,
                "the certificate is self-signed, so the client trusts it only if it was imported or accepted before"
            ),
            Self::NameMismatch { expected, names } => write!(
                f,
                "the client connected to {expected} but the certificate names {}",
                if names.is_empty() {
                    "no host".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            Self::WeakSignature { algorithm } => write!(
                f,
                "the certificate is signed with {algorithm}, a hash clients no longer trust"
            ),
            Self::ShortKey { key_type, bits } => write!(
                f,
                "the certificate key is {key_type} {bits} bits, shorter than the 2048 bits clients expect"
            ),
            Self::NoServerAuthEku { ekus } => write!(
                f,
                "the certificate's extended key usage ({}) allows neither server authentication nor Remote Desktop Authentication",
                if ekus.is_empty() {
                    "unreadable".to_owned()
                } else {
                    ekus.join(", ")
                }
            ),
        }
    }
}

/// Problems a current Windows client objects to, in a fixed order. `now`: unix seconds from
/// the caller (no clock here); `expected_name`: the DNS name or IP the client used, if known.
pub fn problems(cert: &CertSummary, now: i64, expected_name: Option<&str>) -> Vec<CertProblem> {
    let mut out = Vec::new();
    let ceil_days = |secs: i64| {
        secs.saturating_add(SECONDS_PER_DAY - 1)
            .div_euclid(SECONDS_PER_DAY)
    };
    if now > cert.not_after {
        out.push(CertProblem::Expired {
            days_ago: ceil_days(now.saturating_sub(cert.not_after)),
        });
    }
    if now < cert.not_before {
        out.push(CertProblem::NotYetValid {
            days_ahead: ceil_days(cert.not_before.saturating_sub(now)),
        });
    }
    if cert.self_signed {
        out.push(CertProblem::SelfSigned);
    }
    if let Some(expected) = expected_name.filter(|n| !n.is_empty())
        && !cert.matches_name(expected)
    {
        out.push(CertProblem::NameMismatch {
            expected: expected.to_owned(),
            names: cert.host_names(),
        });
    }
    if WEAK_SIGNATURE_OIDS.contains(&cert.signature_algorithm_oid.as_str()) {
        out.push(CertProblem::WeakSignature {
            algorithm: cert.signature_algorithm.clone(),
        });
    }
    if (cert.key_type == "RSA" || cert.key_type == "DSA")
        && cert.key_bits > 0
        && cert.key_bits < 2048
    {
        out.push(CertProblem::ShortKey {
            key_type: cert.key_type.clone(),
            bits: cert.key_bits,
        });
    }
    if cert.eku_present {
        let ok = cert.ekus.iter().any(|e| {
            e == "serverAuth" || e == "anyExtendedKeyUsage" || e.contains(OID_REMOTE_DESKTOP_AUTH)
        });
        if !ok {
            out.push(CertProblem::NoServerAuthEku {
                ekus: cert.ekus.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tls;
    use proptest::prelude::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, SanType, date_time_ymd,
    };

    /// 2025-06-01 00:00:00 UTC.
    const NOW: i64 = 1_748_736_000;

    fn ids(p: &[CertProblem]) -> Vec<&'static str> {
        p.iter().map(CertProblem::id).collect()
    }

    /// The leaf certificate of a TLS fixture's server flight.
    fn capture_leaf(name: &str) -> Vec<u8> {
        let p = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        let stream = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut r = tls::HandshakeReassembler::new();
        let mut pos = 0;
        while let Some((h, frag)) = tls::split_record(&stream[pos..]).unwrap() {
            if h.content_type == tls::ContentType::HANDSHAKE {
                for m in r.push(frag, 0) {
                    let m = m.unwrap();
                    if m.msg_type == tls::handshake_type::CERTIFICATE {
                        return tls::parse_certificate(&m.body, false).unwrap().remove(0);
                    }
                }
            }
            pos += h.total_len();
        }
        panic!("no certificate in {name}");
    }

    fn pem_fixture(name: &str) -> CertSummary {
        let p = format!("{}/tests/fixtures/x509/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).unwrap();
        summarize(&pem.contents).unwrap()
    }

    #[test]
    fn zeek_no_cookie_certificate() {
        let s = summarize(&capture_leaf("zeek_no_cookie.server.bin")).unwrap();
        assert_eq!(s.subject, "CN=CLK-456040-D.one.phoenix.gov");
        assert_eq!(s.issuer, s.subject);
        assert_eq!(
            s.subject_cn.as_deref(),
            Some("CLK-456040-D.one.phoenix.gov")
        );
        assert!(s.sans.is_empty());
        assert_eq!(s.serial, "785897AEAAABC0BD4AC73F6EB275D540");
        assert_eq!(s.not_before, 1_730_589_559); // 2024-11-02 23:19:19 UTC
        assert_eq!(s.not_after, 1_746_400_759); // 2025-05-04 23:19:19 UTC
        assert_eq!(s.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(s.signature_algorithm_oid, "1.2.840.113549.1.1.11");
        assert_eq!((s.key_type.as_str(), s.key_bits), ("RSA", 2048));
        assert!(s.eku_present);
        assert_eq!(s.ekus, ["serverAuth"]);
        assert!(s.self_signed);
        assert!(!s.is_ca);
        assert_eq!(
            s.sha256_fingerprint,
            "2f24fa5efe1c62447b32aa41af38c4176d03a62ca9c3c8d491946ed283b86cca"
        );
        assert_eq!(
            s.sha1_fingerprint,
            "a19f39ecaa2c05a4e32403d0a718f34ed53cc526"
        );
        assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
        assert_eq!(
            s.one_line(),
            "CN=CLK-456040-D.one.phoenix.gov, issuer CN=CLK-456040-D.one.phoenix.gov \
             (self-signed), RSA 2048, sha256WithRSAEncryption, valid 2024-11-02..2025-05-04"
        );
        // At capture time (2025-02-18 15:50:44 UTC), reached by IP as in the capture.
        let p = problems(&s, 1_739_893_844, Some("10.132.153.76"));
        assert_eq!(ids(&p), ["self_signed", "name_mismatch"]);
        assert_eq!(
            p[1],
            CertProblem::NameMismatch {
                expected: "10.132.153.76".to_owned(),
                names: vec!["CLK-456040-D.one.phoenix.gov".to_owned()],
            }
        );
        assert_eq!(
            ids(&problems(
                &s,
                1_739_893_844,
                Some("clk-456040-d.ONE.phoenix.gov.")
            )),
            ["self_signed"]
        );
        // A year later it has expired.
        let p = problems(&s, 1_746_400_759 + 86_400 * 30, None);
        assert_eq!(p[0], CertProblem::Expired { days_ago: 30 });
    }

    #[test]
    fn ndpi_rdp_certificate() {
        let s = summarize(&capture_leaf("ndpi_rdp.server.bin")).unwrap();
        assert_eq!(s.subject_cn.as_deref(), Some("OFFICE-WIN10-VM"));
        assert!(s.self_signed);
        assert_eq!((s.key_type.as_str(), s.key_bits), ("RSA", 2048));
        assert_eq!(s.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(s.serial, "3DDE271223F54FA148CCA5D217D88B33");
        assert_eq!((s.not_before, s.not_after), (1_552_992_431, 1_568_803_631));
        assert_eq!(s.ekus, ["serverAuth"]);
        assert_eq!(
            s.sha1_fingerprint,
            "9ed2c4b491d40cd02ef1d87106f902ff6fc9f93d"
        );
        // The client's SNI was the IP literal 192.168.2.142; capture on 2019-05-30.
        let p = problems(&s, 1_559_207_465, Some("192.168.2.142"));
        assert_eq!(ids(&p), ["self_signed", "name_mismatch"]);
        assert_eq!(
            p[1].to_string(),
            "the client connected to 192.168.2.142 but the certificate names OFFICE-WIN10-VM"
        );
    }

    #[test]
    fn openssl_made_variants() {
        let check = |name: &str, want: &[&str]| {
            let s = pem_fixture(name);
            let p = problems(&s, s.not_before + 86_400, Some("127.0.0.1"));
            assert_eq!(ids(&p), want, "{name}: {p:?}");
            s
        };
        let sha1 = check("sha1.pem", &["weak_signature"]);
        assert_eq!(sha1.signature_algorithm, "sha1WithRSAEncryption");
        assert_eq!(sha1.sans, ["IP:127.0.0.1", "DNS:localhost"]);
        assert_eq!(sha1.issuer, "CN=rdpdiag testbed CA");
        let short = check("rsa1024.pem", &["short_key"]);
        assert_eq!(
            problems(&short, short.not_before + 86_400, None)[0],
            CertProblem::ShortKey {
                key_type: "RSA".to_owned(),
                bits: 1024
            }
        );
        let cs = check("codesign.pem", &["no_server_auth_eku"]);
        assert_eq!(cs.ekus, ["codeSigning"]);
        let ss = check("selfsigned.pem", &["self_signed"]);
        assert!(!ss.is_ca);
        let ca = pem_fixture("ca.pem");
        assert!(ca.is_ca && ca.self_signed && !ca.eku_present);
        assert_eq!(
            ids(&problems(&ca, ca.not_before + 86_400, None)),
            ["self_signed"]
        );
        // "localhost" is in the SANs; the CN (an IP) is ignored when SANs exist.
        assert!(sha1.matches_name("LOCALHOST"));
        assert!(!sha1.matches_name("127.0.0.2"));
    }

    // --- certificates made here with rcgen ---

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("rdpdiag test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: Issuer::new(params, key),
        }
    }

    fn dn(cn: &str) -> DistinguishedName {
        let mut d = DistinguishedName::new();
        d.push(DnType::CommonName, cn);
        d
    }

    /// A leaf for `rds01.corp.example.com` valid 2024-01-01..2026-01-01 with serverAuth, after
    /// `tweak`.
    fn leaf_params(tweak: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
        let mut p = CertificateParams::new(vec!["rds01.corp.example.com".to_owned()]).unwrap();
        p.distinguished_name = dn("rds01.corp.example.com");
        p.not_before = date_time_ymd(2024, 1, 1);
        p.not_after = date_time_ymd(2026, 1, 1);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        tweak(&mut p);
        p
    }

    fn signed(ca: &Ca, tweak: impl FnOnce(&mut CertificateParams)) -> CertSummary {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(tweak).signed_by(&key, &ca.issuer).unwrap();
        summarize(cert.der()).unwrap()
    }

    const HOST: Option<&str> = Some("rds01.corp.example.com");

    #[test]
    fn rcgen_ca_signed_cases() {
        let ca = ca();
        let good = signed(&ca, |_| {});
        assert!(!good.self_signed && !good.is_ca);
        assert_eq!((good.key_type.as_str(), good.key_bits), ("EC P-256", 256));
        assert_eq!(good.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(good.issuer, "CN=rdpdiag test CA");
        assert_eq!(good.sans, ["DNS:rds01.corp.example.com"]);
        assert!(good.anomalies.is_empty(), "{:?}", good.anomalies);
        assert_eq!(ids(&problems(&good, NOW, HOST)), Vec::<&str>::new());
        assert_eq!(ids(&problems(&good, NOW, None)), Vec::<&str>::new());

        let expired = signed(&ca, |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        });
        let p = problems(&expired, NOW, HOST);
        assert_eq!(ids(&p), ["expired"]);
        // 2021-01-01 .. 2025-06-01 = 1612 days.
        assert_eq!(p[0], CertProblem::Expired { days_ago: 1612 });

        let not_yet = signed(&ca, |p| {
            p.not_before = date_time_ymd(2025, 6, 11);
            p.not_after = date_time_ymd(2027, 1, 1);
        });
        let p = problems(&not_yet, NOW, HOST);
        assert_eq!(p, [CertProblem::NotYetValid { days_ahead: 10 }]);

        let wrong_name = signed(&ca, |_| {});
        let p = problems(&wrong_name, NOW, Some("rds02.corp.example.com"));
        assert_eq!(ids(&p), ["name_mismatch"]);

        let client_auth = signed(&ca, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        let p = problems(&client_auth, NOW, HOST);
        assert_eq!(
            p,
            [CertProblem::NoServerAuthEku {
                ekus: vec!["clientAuth".to_owned()]
            }]
        );

        // Remote Desktop Authentication alone is enough for RDP.
        let rda = signed(&ca, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 54, 1, 2,
            ])];
        });
        assert_eq!(
            rda.ekus,
            ["Remote Desktop Authentication (1.3.6.1.4.1.311.54.1.2)"]
        );
        assert_eq!(ids(&problems(&rda, NOW, HOST)), Vec::<&str>::new());

        // No EKU extension at all: any purpose.
        let no_eku = signed(&ca, |p| p.extended_key_usages.clear());
        assert!(!no_eku.eku_present);
        assert_eq!(ids(&problems(&no_eku, NOW, HOST)), Vec::<&str>::new());

        let ip = signed(&ca, |p| {
            p.subject_alt_names = vec![SanType::IpAddress("10.0.0.5".parse().unwrap())];
        });
        assert_eq!(ip.sans, ["IP:10.0.0.5"]);
        assert_eq!(
            ids(&problems(&ip, NOW, Some("10.0.0.5"))),
            Vec::<&str>::new()
        );
        assert_eq!(
            ids(&problems(&ip, NOW, Some("10.0.0.6"))),
            ["name_mismatch"]
        );
        // The CN names the host but a SAN exists, so the CN does not count.
        assert_eq!(ids(&problems(&ip, NOW, HOST)), ["name_mismatch"]);

        let wildcard = signed(&ca, |p| {
            p.subject_alt_names = vec![SanType::DnsName("*.corp.example.com".try_into().unwrap())];
        });
        assert!(wildcard.matches_name("RDS07.corp.example.com"));
        assert!(!wildcard.matches_name("corp.example.com"));
        assert!(!wildcard.matches_name("a.rds.corp.example.com"));

        let cn_only = signed(&ca, |p| p.subject_alt_names.clear());
        assert!(cn_only.sans.is_empty());
        assert_eq!(
            ids(&problems(&cn_only, NOW, Some("RDS01.corp.example.com"))),
            Vec::<&str>::new()
        );
        assert_eq!(
            ids(&problems(&cn_only, NOW, Some("10.0.0.5"))),
            ["name_mismatch"]
        );
    }

    #[test]
    fn rcgen_self_signed_rsa_sha256() {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = leaf_params(|_| {}).self_signed(&key).unwrap();
        let s = summarize(cert.der()).unwrap();
        assert!(s.self_signed);
        assert_eq!((s.key_type.as_str(), s.key_bits), ("RSA", 2048));
        assert_eq!(s.signature_algorithm, "sha256WithRSAEncryption");
        let p = problems(&s, NOW, HOST);
        assert_eq!(ids(&p), ["self_signed"]);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json[0]["id"], "self_signed");
        assert!(
            s.one_line()
                .contains("(self-signed), RSA 2048, sha256WithRSAEncryption")
        );
    }

    #[test]
    fn problem_ids_match_json_tags() {
        let all = [
            CertProblem::Expired { days_ago: 1 },
            CertProblem::NotYetValid { days_ahead: 2 },
            CertProblem::SelfSigned,
            CertProblem::NameMismatch {
                expected: "a".into(),
                names: vec![],
            },
            CertProblem::WeakSignature {
                algorithm: "sha1WithRSAEncryption".into(),
            },
            CertProblem::ShortKey {
                key_type: "RSA".into(),
                bits: 1024,
            },
            CertProblem::NoServerAuthEku {
                ekus: vec!["clientAuth".into()],
            },
        ];
        for p in &all {
            assert_eq!(serde_json::to_value(p).unwrap()["id"], p.id());
            let s = p.to_string();
            assert!(s.starts_with("the "), "{s}");
        }
        assert_eq!(
            all[0].to_string(),
            "the certificate expired 1 day ago (check the client's clock too)"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let e = summarize(&[0x30, 0x03, 0x02, 0x01, 0x00]).unwrap_err();
        assert_eq!((e.field, e.offset), ("Certificate", 0));
        assert!(summarize(&[]).is_err());
        let der = capture_leaf("ndpi_rdp.server.bin");
        for n in [1, 4, 100, der.len() - 1] {
            assert!(summarize(&der[..n]).is_err(), "cut at {n}");
        }
        let mut long = der.clone();
        long.extend_from_slice(&[0, 0]);
        let s = summarize(&long).unwrap();
        assert_eq!(s.anomalies.len(), 1);
        // The fingerprint covers the certificate only.
        assert_eq!(
            s.sha1_fingerprint,
            "9ed2c4b491d40cd02ef1d87106f902ff6fc9f93d"
        );
    }

    proptest! {
        #[test]
        fn summarize_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = summarize(&buf);
        }

        #[test]
        fn mutated_certificate_never_panics(i in 0usize..1000, v in any::<u8>()) {
            let mut der = capture_leaf("zeek_no_cookie.server.bin");
            let i = i % der.len();
            der[i] = v;
            if let Ok(s) = summarize(&der) {
                let _ = problems(&s, NOW, Some("x"));
                let _ = s.one_line();
            }
        }
    }
}
