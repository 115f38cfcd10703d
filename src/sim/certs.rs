//! Test PKI for the simulated peers, generated at runtime with rcgen (aws-lc-rs).
//!
//! A test CA and host certificates in the variants DESIGN.md row 7 names: good, expired,
//! not yet valid, self-signed, wrong name. Keys are RSA-2048 by default, what Windows uses for
//! its Remote Desktop certificate; ECDSA P-256 is also possible ([`KeyAlg::EcdsaP256`]).
//! Nothing here is written to disk and no private key is committed: `certs/README.md` says so.

use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// The name the good host certificate is issued for (and the name simulated clients use).
pub const HOST_NAME: &str = "rdp-host.test";
/// The name in the wrong-name certificate.
pub const OTHER_NAME: &str = "other-host.test";

/// Key algorithm of generated certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// RSA 2048 with SHA-256 signatures (Windows' self-signed RDP certificate).
    #[default]
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
}

/// A host certificate and its private key (PKCS#8 DER).
#[derive(Clone)]
pub struct SimCert {
    /// What this variant is, for output ("expired", "self-signed", ...).
    pub label: &'static str,
    pub der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SimCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SimCert")
            .field("label", &self.label)
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl SimCert {
    /// The private key, for a rustls server.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The chain a host sends: just the leaf, like a Windows host.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }
}

/// A test CA and the host certificate variants.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (DER) a verifying client trusts.
    pub ca: CertificateDer<'static>,
    /// The CA certificate in PEM.
    pub ca_pem: String,
    /// Issued by the CA for [`HOST_NAME`], valid now.
    pub good: Arc<SimCert>,
    /// Issued by the CA for [`HOST_NAME`], expired yesterday.
    pub expired: Arc<SimCert>,
    /// Issued by the CA for [`HOST_NAME`], valid from next month.
    pub not_yet_valid: Arc<SimCert>,
    /// Self-signed for [`HOST_NAME`] (what Windows generates; untrusted by the client).
    pub self_signed: Arc<SimCert>,
    /// Issued by the CA for [`OTHER_NAME`].
    pub wrong_name: Arc<SimCert>,
}

/// Which host certificate a simulated host serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertChoice {
    Good,
    Expired,
    NotYetValid,
    SelfSigned,
    WrongName,
}

impl CertChoice {
    pub fn resolve(&self, pki: &TestPki) -> Arc<SimCert> {
        match self {
            CertChoice::Good => pki.good.clone(),
            CertChoice::Expired => pki.expired.clone(),
            CertChoice::NotYetValid => pki.not_yet_valid.clone(),
            CertChoice::SelfSigned => pki.self_signed.clone(),
            CertChoice::WrongName => pki.wrong_name.clone(),
        }
    }
}

/// Certificate generation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("test certificate generation failed: {0}")]
pub struct CertError(String);

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError(e.to_string())
    }
}

impl From<CertError> for std::io::Error {
    fn from(e: CertError) -> Self {
        std::io::Error::other(e)
    }
}

fn new_key(alg: KeyAlg) -> Result<KeyPair, CertError> {
    Ok(match alg {
        KeyAlg::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
        }
        KeyAlg::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
    })
}

fn leaf_params(
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(vec![name.to_owned()])?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.not_before = not_before;
    p.not_after = not_after;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(p)
}

/// Generates a fresh test PKI. Two key pairs (CA, host: every host variant shares one key).
pub fn generate(alg: KeyAlg) -> Result<TestPki, CertError> {
    let now = OffsetDateTime::now_utc();
    let day = Duration::days(1);

    let ca_key = new_key(alg)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rdpdiag test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - day;
    ca_params.not_after = now + day * 3650;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let host_key = new_key(alg)?;
    let key_pkcs8 = host_key.serialize_der();
    let issue =
        |label: &'static str, params: CertificateParams| -> Result<Arc<SimCert>, CertError> {
            let cert = params.signed_by(&host_key, &issuer)?;
            Ok(Arc::new(SimCert {
                label,
                der: cert.der().clone(),
                key_pkcs8: key_pkcs8.clone(),
            }))
        };

    let good = issue("good", leaf_params(HOST_NAME, now - day, now + day * 365)?)?;
    let expired = issue(
        "expired",
        leaf_params(HOST_NAME, now - day * 730, now - day)?,
    )?;
    let not_yet_valid = issue(
        "not-yet-valid",
        leaf_params(HOST_NAME, now + day * 30, now + day * 730)?,
    )?;
    let wrong_name = issue(
        "wrong-name",
        leaf_params(OTHER_NAME, now - day, now + day * 365)?,
    )?;
    let self_signed_cert =
        leaf_params(HOST_NAME, now - day, now + day * 365)?.self_signed(&host_key)?;
    let self_signed = Arc::new(SimCert {
        label: "self-signed",
        der: self_signed_cert.der().clone(),
        key_pkcs8: key_pkcs8.clone(),
    });

    Ok(TestPki {
        ca: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        good,
        expired,
        not_yet_valid,
        self_signed,
        wrong_name,
    })
}

/// The process-wide RSA-2048 test PKI, generated on first use (RSA key generation takes a
/// moment; every scenario shares it).
pub fn pki() -> Result<&'static TestPki, CertError> {
    static PKI: OnceLock<Result<TestPki, CertError>> = OnceLock::new();
    PKI.get_or_init(|| generate(KeyAlg::Rsa2048))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn variants_have_the_promised_properties() {
        let pki = pki().unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let parse = |c: &SimCert| {
            let (_, x) = X509Certificate::from_der(&c.der).unwrap();
            (
                x.validity().not_before.timestamp(),
                x.validity().not_after.timestamp(),
                x.subject().to_string(),
                x.issuer().to_string(),
                x.public_key().parsed().map(|k| k.key_size()).unwrap_or(0),
            )
        };
        let (nb, na, subj, iss, bits) = parse(&pki.good);
        assert!(nb < now && now < na);
        assert_eq!(subj, format!("CN={HOST_NAME}"));
        assert_eq!(iss, "CN=rdpdiag test CA");
        assert_eq!(bits, 2048);
        assert!(parse(&pki.expired).1 < now);
        assert!(parse(&pki.not_yet_valid).0 > now);
        let (_, _, s, i, _) = parse(&pki.self_signed);
        assert_eq!(s, i);
        assert_eq!(parse(&pki.wrong_name).2, format!("CN={OTHER_NAME}"));
    }

    #[test]
    fn ecdsa_is_possible() {
        let p = generate(KeyAlg::EcdsaP256).unwrap();
        assert!(!p.good.der.is_empty());
        assert!(format!("{:?}", p.good).contains("good"));
    }
}
