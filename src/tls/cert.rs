//! Certificates rdpdiag makes: the fresh host certificate of `proxy --fresh-cert` and the local
//! CA of `rdpdiag cert ca`.
//!
//! Key type: **RSA-2048 with SHA-256**. Windows' RDP stack (Schannel through TermService) and
//! mstsc are built around RSA host certificates (the self-signed certificate Windows makes for
//! Remote Desktop is RSA-2048); ECDSA host certificates are not reliably accepted by older
//! clients and RDP gateways, so rdpdiag does not risk them in an experiment meant to remove
//! doubt. Reference §6.1 / CRATES.md (aws-lc-rs is what lets rcgen generate RSA keys).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Remote Desktop Authentication EKU (1.3.6.1.4.1.311.54.1.2), as arcs.
const RDP_AUTH_EKU: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 54, 1, 2];
/// The fresh certificate is valid from this long ago (clients with a slightly late clock)...
const BACKDATE: Duration = Duration::from_secs(3600);
/// ...to this long ahead: an experiment, not a deployment.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The local CA lives longer: the admin imports it once.
const CA_LIFETIME: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// The CA's subject; fixed, so that a CA loaded from `ca.key` signs with the name in `ca.crt`.
const CA_CN: &str = "rdpdiag local CA";
const CA_O: &str = "rdpdiag";

/// File names inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";

/// Errors making or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a PEM private key rdpdiag can use")]
    BadKey(PathBuf),
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A certificate and its private key (`Debug` leaves the key out).
pub struct Issued {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
    /// The issuing CA's certificate when signed by a CA (sent as the chain's second element).
    pub ca_der: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .field("signed_by_ca", &self.ca_der.is_some())
            .finish()
    }
}

impl Issued {
    /// A rustls server configuration presenting this certificate (TLS 1.2 and 1.3), logging its
    /// secrets into `keylog` when given.
    pub fn server_config(
        &self,
        keylog: Option<Arc<dyn rustls::KeyLog>>,
    ) -> Result<rustls::ServerConfig, CertError> {
        let mut chain = vec![self.cert_der.clone()];
        chain.extend(self.ca_der.clone());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        if let Some(k) = keylog {
            cfg.key_log = k;
        }
        Ok(cfg)
    }
}

/// A local CA (`rdpdiag cert ca`). `Debug` leaves the key out.
pub struct Ca {
    key: KeyPair,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, CA_O);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - BACKDATE;
    p.not_after = now + lifetime;
}

fn rsa_key() -> Result<KeyPair, CertError> {
    Ok(KeyPair::generate_rsa_for(
        &PKCS_RSA_SHA256,
        RsaKeySize::_2048,
    )?)
}

impl Ca {
    /// A new CA with an RSA-2048 key, valid for two years.
    pub fn generate() -> Result<Ca, CertError> {
        let key = rsa_key()?;
        let mut p = ca_params();
        validity(&mut p, CA_LIFETIME);
        let cert = p.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// Writes `ca.crt` and `ca.key` into `dir` (created if missing); the key file is created
    /// with mode 0600 on Unix (never world-readable, not even briefly). Returns both paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), CertError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let crt = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        write_private(&key, self.key.serialize_pem().as_bytes())?;
        std::fs::write(&crt, self.cert_pem.as_bytes()).map_err(io_err(&crt))?;
        Ok((crt, key))
    }

    /// Loads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let crt = dir.join(CA_CERT_FILE);
        let keyp = dir.join(CA_KEY_FILE);
        let cert_pem = std::fs::read_to_string(&crt).map_err(io_err(&crt))?;
        let key_pem = std::fs::read_to_string(&keyp).map_err(io_err(&keyp))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| CertError::BadKey(keyp.clone()))?;
        let der = pem_to_der(&cert_pem).ok_or_else(|| CertError::Io {
            path: crt.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no PEM certificate"),
        })?;
        Ok(Ca {
            key,
            cert_der: CertificateDer::from(der),
            cert_pem,
        })
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::new(ca_params(), &self.key)
    }
}

/// Creates `path` with mode 0600 (Unix) and writes `bytes`.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    // An existing file keeps its old mode through open(): tighten it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    f.write_all(bytes).map_err(io_err(path))
}

/// The first PEM block's DER (certificate files).
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64_decode(&body)
}

/// Standard base64 without padding checks (PEM bodies); `None` on a foreign character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0_u32, 0_u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff).to_le_bytes()[0]);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A fresh host certificate for `name` (a DNS name or an IP address, as the client will use
/// it): RSA-2048/SHA-256, EKU serverAuth + Remote Desktop Authentication, SAN = `name`, valid from
/// an hour ago for a week; signed by `ca` when given, else self-signed.
pub fn fresh(name: &str, ca: Option<&Ca>) -> Result<Issued, CertError> {
    let key = rsa_key()?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.subject_alt_names = vec![match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into()?),
    }];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::Other(RDP_AUTH_EKU.to_vec()),
    ];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut p, LIFETIME);
    let cert = match ca {
        Some(ca) => p.signed_by(&key, &ca.issuer())?,
        None => p.self_signed(&key)?,
    };
    Ok(Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
        ca_der: ca.map(|c| c.cert_der.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::x509;

    #[test]
    fn fresh_cert_has_what_mstsc_wants() {
        let ca = Ca::generate().unwrap();
        let c = fresh("rds01.corp.example", Some(&ca)).unwrap();
        let s = x509::summarize(&c.cert_der).unwrap();
        assert_eq!(s.key_type, "RSA");
        assert_eq!(s.key_bits, 2048);
        assert!(s.ekus.iter().any(|e| e == "serverAuth"));
        assert!(s.ekus.iter().any(|e| e.contains("1.3.6.1.4.1.311.54.1.2")));
        assert!(s.sans.iter().any(|n| n == "DNS:rds01.corp.example"));
        assert!(!s.self_signed);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(x509::problems(&s, now, Some("rds01.corp.example")).is_empty());
        let ip = fresh("127.0.0.1", None).unwrap();
        let s = x509::summarize(&ip.cert_der).unwrap();
        assert!(s.sans.iter().any(|n| n == "IP:127.0.0.1"), "{:?}", s.sans);
    }

    #[test]
    fn ca_round_trips_through_files_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate().unwrap();
        let (crt, key) = ca.write(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(crt.exists());
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let loaded = Ca::load(dir.path()).unwrap();
        assert_eq!(loaded.cert_der, ca.cert_der);
        let leaf = fresh("host", Some(&loaded)).unwrap();
        let s = x509::summarize(&leaf.cert_der).unwrap();
        let ca_s = x509::summarize(&ca.cert_der).unwrap();
        assert_eq!(s.issuer, ca_s.subject);
    }
}
