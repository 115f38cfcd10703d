//! CredSSP at both ends (MS-CSSP 3.1.5): the two legs rdpdiag runs under `--nla-user`.
//!
//! ```text
//! client  ──C1 NEGOTIATE──▶ rdpdiag ──H1 NEGOTIATE──▶ host
//!         ◀─C2 CHALLENGE──          ◀─H2 CHALLENGE──        (host's names, time, version)
//!         ──C3 AUTHENTICATE + pubKeyAuth──▶ (verified against the given credentials)
//!                                   ──H3 AUTHENTICATE + pubKeyAuth──▶
//!                                   ◀─H4 pubKeyAuth (or errorCode)──
//!         ◀─C4 pubKeyAuth──
//!         ──C5 authInfo (TSCredentials)──▶ ──H5 authInfo──▶
//! ```
//!
//! pubKeyAuth binds each leg to the TLS key that leg sees: the client's to rdpdiag's certificate,
//! the host leg's to the host's. Version 5 and later hash the key with the client nonce
//! (`CredSSP Client-To-Server Binding Hash`), earlier versions seal the key itself and the server
//! answers with its first byte plus one.

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::ntlm::{self, ClientLogon, Credentials, NtlmError, ServerIdentity};
use crate::wire::credssp::{self as wire, TsRequest, encode_tlv, encode_u32};

/// The CredSSP version rdpdiag speaks (the current one).
pub const OUR_VERSION: u32 = 6;

const CLIENT_MAGIC: &[u8] = b"CredSSP Client-To-Server Binding Hash\0";
const SERVER_MAGIC: &[u8] = b"CredSSP Server-To-Client Binding Hash\0";

/// What went wrong on one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegError {
    /// The peer sent TSRequest.errorCode.
    ErrorCode(u32),
    /// NTLM refused or could not read something.
    Ntlm(NtlmError),
    /// A TSRequest that does not fit this step.
    Protocol(String),
    /// The peer's pubKeyAuth does not match the TLS key rdpdiag sees on that leg: something
    /// else is terminating TLS in between.
    Binding(String),
}

impl std::fmt::Display for LegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LegError::ErrorCode(c) => write!(f, "errorCode {}", wire::status_name(*c)),
            LegError::Ntlm(e) => write!(f, "{e}"),
            LegError::Protocol(s) => write!(f, "CredSSP protocol: {s}"),
            LegError::Binding(s) => write!(f, "public key binding: {s}"),
        }
    }
}

impl From<NtlmError> for LegError {
    fn from(e: NtlmError) -> Self {
        LegError::Ntlm(e)
    }
}

fn protocol(s: impl Into<String>) -> LegError {
    LegError::Protocol(s.into())
}

fn check_error(ts: &TsRequest) -> Result<(), LegError> {
    match ts.error_code {
        Some(c) if c != 0 => Err(LegError::ErrorCode(c)),
        _ => Ok(()),
    }
}

fn token(ts: &TsRequest, what: &str) -> Result<Vec<u8>, LegError> {
    let t = ts
        .nego_tokens
        .first()
        .ok_or_else(|| protocol(format!("no negoToken where the {what} was expected")))?;
    match ntlm_of(t) {
        Some(m) => Ok(m.to_vec()),
        None => Err(protocol(format!(
            "the {what} is not raw NTLM (SPNEGO/Kerberos is not brokered; the client must fall back to NTLM)"
        ))),
    }
}

/// A raw NTLM message (what mstsc and FreeRDP put in negoTokens).
fn ntlm_of(t: &[u8]) -> Option<&[u8]> {
    t.starts_with(crate::wire::ntlm::SIGNATURE).then_some(t)
}

/// The SubjectPublicKey (the BIT STRING's content, e.g. the RSAPublicKey DER) of a certificate:
/// what pubKeyAuth binds.
pub fn subject_public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

fn binding_hash(magic: &[u8], nonce: &[u8], key: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(magic);
    h.update(nonce);
    h.update(key);
    h.finalize().to_vec()
}

/// What the client side seals into pubKeyAuth.
fn client_binding(version: u32, nonce: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    match nonce {
        Some(n) if version >= 5 => binding_hash(CLIENT_MAGIC, n, key),
        _ => key.to_vec(),
    }
}

/// What the server side seals into its pubKeyAuth answer.
fn server_binding(version: u32, nonce: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    match nonce {
        Some(n) if version >= 5 => binding_hash(SERVER_MAGIC, n, key),
        _ => {
            let mut k = key.to_vec();
            if let Some(b) = k.first_mut() {
                *b = b.wrapping_add(1);
            }
            k
        }
    }
}

/// TSCredentials with TSPasswordCreds (MS-CSSP 2.2.1.2), UTF-16LE strings.
pub fn encode_password_credentials(domain: &str, user: &str, password: &str) -> Zeroizing<Vec<u8>> {
    let s = |n: u8, v: &str| {
        let mut u = ntlm::utf16le(v);
        let t = encode_tlv(0xa0 | n, &encode_tlv(0x04, &u));
        u.zeroize();
        t
    };
    let mut inner = [s(0, domain), s(1, user), s(2, password)].concat();
    let mut creds = encode_tlv(0x30, &inner);
    inner.zeroize();
    let mut body = encode_tlv(0xa0, &encode_u32(1));
    let mut octets = encode_tlv(0x04, &creds);
    creds.zeroize();
    body.extend(encode_tlv(0xa1, &octets));
    octets.zeroize();
    let out = Zeroizing::new(encode_tlv(0x30, &body));
    body.zeroize();
    out
}

/// The logon a client's TSCredentials carry (the password is never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedLogon {
    /// 1 password, 2 smart card, 6 remote guard.
    pub cred_type: u32,
    pub domain: String,
    pub user: String,
    /// Whether the password in it is the one rdpdiag was given.
    pub password_matches: Option<bool>,
}

/// Reads TSCredentials; compares (never copies) the password with `creds`.
pub fn decode_credentials(b: &[u8], creds: &Credentials) -> Result<DelegatedLogon, LegError> {
    let bad = |what: &str| protocol(format!("TSCredentials: {what}"));
    let outer = wire::parse_tlv(b, 0).map_err(|e| bad(&e.to_string()))?;
    let mut cred_type = None;
    let mut inner = None;
    for f in outer.children() {
        let f = f.map_err(|e| bad(&e.to_string()))?;
        let v = f.children().next().and_then(Result::ok);
        match (f.tag, v) {
            (0xa0, Some(v)) => {
                cred_type =
                    Some(wire::integer_u32(&v, "credType").map_err(|e| bad(&e.to_string()))?)
            }
            (0xa1, Some(v)) => inner = Some(v.value.to_vec()),
            _ => {}
        }
    }
    let cred_type = cred_type.ok_or_else(|| bad("no credType"))?;
    let mut logon = DelegatedLogon {
        cred_type,
        domain: String::new(),
        user: String::new(),
        password_matches: None,
    };
    if cred_type != 1 {
        return Ok(logon);
    }
    let inner = Zeroizing::new(inner.ok_or_else(|| bad("no credentials"))?);
    let seq = wire::parse_tlv(&inner, 0).map_err(|e| bad(&e.to_string()))?;
    for f in seq.children() {
        let f = f.map_err(|e| bad(&e.to_string()))?;
        let Some(Ok(v)) = f.children().next() else {
            continue;
        };
        match f.tag {
            0xa0 => logon.domain = ntlm::from_utf16le(v.value),
            0xa1 => logon.user = ntlm::from_utf16le(v.value),
            0xa2 => {
                let mut given = ntlm::utf16le(creds.password());
                logon.password_matches = Some(given.as_slice() == v.value);
                given.zeroize();
            }
            _ => {}
        }
    }
    Ok(logon)
}

/// rdpdiag as the CredSSP client toward the host.
#[derive(Debug)]
pub struct HostLeg {
    version: u32,
    peer_version: u32,
    ntlm: ntlm::Client,
    session: Option<ntlm::Session>,
    nonce: [u8; 32],
    host_key: Vec<u8>,
}

impl HostLeg {
    /// `version`: what rdpdiag offers the host (the client's own, so the host sees the same
    /// offer); `host_key`: the SubjectPublicKey of the host's TLS certificate.
    pub fn new(version: u32, host_key: Vec<u8>, nonce: [u8; 32]) -> Self {
        Self {
            version: version.clamp(2, OUR_VERSION),
            peer_version: 0,
            ntlm: ntlm::Client::new(),
            session: None,
            nonce,
            host_key,
        }
    }

    /// `TERMSRV/host` in the AUTHENTICATE (MsvAvTargetName), as mstsc sends it.
    pub fn with_target_name(mut self, spn: &str) -> Self {
        self.ntlm = std::mem::take(&mut self.ntlm).with_target_name(spn);
        self
    }

    /// H1: the NEGOTIATE.
    pub fn negotiate(&self) -> TsRequest {
        TsRequest::with_token(self.version, self.ntlm.negotiate().to_vec())
    }

    /// H2 → H3: the host's CHALLENGE; returns the AUTHENTICATE with pubKeyAuth.
    #[allow(clippy::too_many_arguments)]
    pub fn on_challenge(
        &mut self,
        ts: &TsRequest,
        creds: &Credentials,
        now: u64,
        client_challenge: [u8; 8],
        session_key: [u8; 16],
        workstation: &str,
    ) -> Result<TsRequest, LegError> {
        check_error(ts)?;
        self.peer_version = ts.version;
        let challenge = token(ts, "host's NTLM CHALLENGE")?;
        let a = self.ntlm.authenticate(
            creds,
            &challenge,
            now,
            client_challenge,
            session_key,
            workstation,
        )?;
        let mut session = a.session;
        let v = self.version.min(ts.version);
        let nonce = (v >= 5).then_some(self.nonce);
        let binding = client_binding(v, nonce.as_ref().map(|n| &n[..]), &self.host_key);
        let req = TsRequest {
            version: self.version,
            nego_tokens: vec![a.message],
            pub_key_auth: Some(session.seal(&binding)),
            client_nonce: nonce.map(|n| n.to_vec()),
            ..TsRequest::default()
        };
        self.session = Some(session);
        Ok(req)
    }

    /// H4 → H5: checks the host's pubKeyAuth; returns the TSCredentials to send.
    pub fn on_pubkey_reply(
        &mut self,
        ts: &TsRequest,
        creds: &Credentials,
    ) -> Result<TsRequest, LegError> {
        check_error(ts)?;
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| protocol("pubKeyAuth before the AUTHENTICATE"))?;
        let sealed = ts
            .pub_key_auth
            .as_ref()
            .ok_or_else(|| protocol("the host's answer has no pubKeyAuth"))?;
        let got = session.unseal(sealed)?;
        let v = self.version.min(self.peer_version);
        let want = server_binding(v, (v >= 5).then_some(&self.nonce[..]), &self.host_key);
        if got != want {
            return Err(LegError::Binding("the host's pubKeyAuth does not match its TLS certificate's key: another TLS endpoint sits between rdpdiag and the host".to_owned()));
        }
        let plain = encode_password_credentials(&creds.domain, &creds.user, creds.password());
        Ok(TsRequest {
            version: self.version,
            auth_info: Some(session.seal(&plain)),
            ..TsRequest::default()
        })
    }
}

/// rdpdiag as the CredSSP server toward the client.
#[derive(Debug)]
pub struct ClientLeg {
    peer_version: u32,
    our_key: Vec<u8>,
    server: Option<ntlm::Server>,
    session: Option<ntlm::Session>,
    nonce: Option<Vec<u8>>,
}

impl ClientLeg {
    /// `our_key`: the SubjectPublicKey of rdpdiag's own (fresh) certificate.
    pub fn new(our_key: Vec<u8>) -> Self {
        Self {
            peer_version: 0,
            our_key,
            server: None,
            session: None,
            nonce: None,
        }
    }

    /// The version the client offered (C1).
    pub fn peer_version(&self) -> u32 {
        self.peer_version
    }

    fn version(&self) -> u32 {
        self.peer_version.clamp(2, OUR_VERSION)
    }

    /// C1 (the client's NEGOTIATE): remember its version and token.
    pub fn on_negotiate(&mut self, ts: &TsRequest) -> Result<Vec<u8>, LegError> {
        self.peer_version = ts.version;
        token(ts, "client's NTLM NEGOTIATE")
    }

    /// C2: the CHALLENGE, naming the host as the host named itself.
    pub fn challenge(
        &mut self,
        negotiate: &[u8],
        server_challenge: [u8; 8],
        now: u64,
        id: &ServerIdentity,
    ) -> Result<TsRequest, LegError> {
        let s = ntlm::Server::challenge(negotiate, server_challenge, now, id)?;
        let req = TsRequest::with_token(self.version(), s.message().to_vec());
        self.server = Some(s);
        Ok(req)
    }

    /// C3: the client's AUTHENTICATE and pubKeyAuth, checked against `creds` and rdpdiag's key.
    pub fn on_authenticate(
        &mut self,
        ts: &TsRequest,
        creds: &Credentials,
    ) -> Result<ClientLogon, LegError> {
        check_error(ts)?;
        let server = self
            .server
            .as_ref()
            .ok_or_else(|| protocol("AUTHENTICATE before the CHALLENGE"))?;
        let auth = token(ts, "client's NTLM AUTHENTICATE")?;
        let (logon, mut session) = server.verify(creds, &auth)?;
        let sealed = ts
            .pub_key_auth
            .as_ref()
            .ok_or_else(|| protocol("the client's AUTHENTICATE has no pubKeyAuth"))?;
        let got = session.unseal(sealed)?;
        let v = self.version();
        self.nonce = ts.client_nonce.clone();
        if v >= 5 && self.nonce.is_none() {
            return Err(protocol(format!(
                "CredSSP version {v} without a clientNonce"
            )));
        }
        let want = client_binding(v, self.nonce.as_deref(), &self.our_key);
        if got != want {
            return Err(LegError::Binding("the client's pubKeyAuth is not bound to rdpdiag's certificate: another TLS endpoint sits between the client and rdpdiag".to_owned()));
        }
        self.session = Some(session);
        Ok(logon)
    }

    /// C4: rdpdiag's pubKeyAuth answer.
    pub fn pubkey_reply(&mut self) -> Result<TsRequest, LegError> {
        let v = self.version();
        let binding = server_binding(v, self.nonce.as_deref(), &self.our_key);
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| protocol("pubKeyAuth answer before the client authenticated"))?;
        Ok(TsRequest {
            version: v,
            pub_key_auth: Some(session.seal(&binding)),
            ..TsRequest::default()
        })
    }

    /// C5: the client's TSCredentials (read, compared, dropped).
    pub fn on_credentials(
        &mut self,
        ts: &TsRequest,
        creds: &Credentials,
    ) -> Result<DelegatedLogon, LegError> {
        check_error(ts)?;
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| protocol("authInfo before pubKeyAuth"))?;
        let sealed = ts
            .auth_info
            .as_ref()
            .ok_or_else(|| protocol("the client's last TSRequest has no authInfo"))?;
        let plain = Zeroizing::new(session.unseal(sealed)?);
        decode_credentials(&plain, creds)
    }

    /// A TSRequest carrying `code` (clients from version 3 read it; older ones see the close).
    pub fn error(&self, code: u32) -> TsRequest {
        TsRequest {
            version: self.version(),
            error_code: Some(code),
            ..TsRequest::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id() -> ServerIdentity {
        ServerIdentity {
            nb_domain: "WG".into(),
            nb_computer: "HOST".into(),
            dns_domain: "host".into(),
            dns_computer: "host".into(),
        }
    }

    /// Both legs against each other: rdpdiag's client leg talks to rdpdiag's server leg as if
    /// it were the host, for versions 2 to 6.
    #[test]
    fn legs_interoperate_for_every_version() {
        for v in 2..=6 {
            let key = b"\x30\x0a fake rsa public key".to_vec();
            let creds = Credentials::new("CORP\\alice", "S3cret!".to_owned());
            let mut host = HostLeg::new(v, key.clone(), [7; 32]).with_target_name("TERMSRV/host");
            let mut server = ClientLeg::new(key.clone());
            let h1 = wire::encode(&host.negotiate());
            let (h1, _) = wire::decode(&h1).unwrap().unwrap();
            let neg = server.on_negotiate(&h1).unwrap();
            let h2 = server
                .challenge(&neg, [1; 8], 133_000_000_000_000_000, &id())
                .unwrap();
            let h3 = host
                .on_challenge(&h2, &creds, 0, [2; 8], [3; 16], "WS")
                .unwrap();
            assert_eq!(h3.client_nonce.is_some(), v >= 5);
            let logon = server.on_authenticate(&h3, &creds).unwrap();
            assert_eq!(logon.user, "alice");
            let h4 = server.pubkey_reply().unwrap();
            let h5 = host.on_pubkey_reply(&h4, &creds).unwrap();
            let d = server.on_credentials(&h5, &creds).unwrap();
            assert_eq!(d.user, "alice");
            assert_eq!(d.domain, "CORP");
            assert_eq!(d.password_matches, Some(true));
        }
    }

    #[test]
    fn wrong_key_is_a_binding_error() {
        let creds = Credentials::new("bob", "pw".to_owned());
        let host = HostLeg::new(6, b"host key".to_vec(), [7; 32]);
        let mut host = host;
        let mut server = ClientLeg::new(b"other key".to_vec());
        let neg = server.on_negotiate(&host.negotiate()).unwrap();
        let h2 = server.challenge(&neg, [1; 8], 0, &id()).unwrap();
        let h3 = host
            .on_challenge(&h2, &creds, 0, [2; 8], [3; 16], "")
            .unwrap();
        assert!(matches!(
            server.on_authenticate(&h3, &creds),
            Err(LegError::Binding(_))
        ));
    }

    #[test]
    fn error_code_is_read() {
        let creds = Credentials::new("bob", "pw".to_owned());
        let mut host = HostLeg::new(6, vec![1], [0; 32]);
        let ts = TsRequest {
            version: 6,
            error_code: Some(0xC000_006D),
            ..TsRequest::default()
        };
        assert_eq!(
            host.on_challenge(&ts, &creds, 0, [0; 8], [0; 16], ""),
            Err(LegError::ErrorCode(0xC000_006D))
        );
        assert!(host.on_pubkey_reply(&ts, &creds).is_err());
    }

    #[test]
    fn spnego_is_refused_with_a_reason() {
        let mut s = ClientLeg::new(vec![1]);
        let ts = TsRequest::with_token(6, vec![0x60, 0x03, 0x06, 0x01, 0x00]);
        let e = s.on_negotiate(&ts).unwrap_err();
        assert!(e.to_string().contains("SPNEGO"), "{e}");
    }

    #[test]
    fn credentials_round_trip_and_compare() {
        let creds = Credentials::new("u", "right".to_owned());
        let b = encode_password_credentials("D", "u", "wrong");
        let d = decode_credentials(&b, &creds).unwrap();
        assert_eq!(d.password_matches, Some(false));
        assert!(decode_credentials(&[0x30, 0x05, 0xa0], &creds).is_err());
    }

    proptest::proptest! {
        /// Whatever a peer sends, the legs answer with an error, never a panic.
        #[test]
        fn arbitrary_tokens_never_panic(token in proptest::collection::vec(proptest::num::u8::ANY, 0..600), prefix in proptest::bool::ANY) {
            let mut t = if prefix { b"NTLMSSP\0".to_vec() } else { Vec::new() };
            t.extend_from_slice(&token);
            let creds = Credentials::new("u", "p".to_owned());
            let mut server = ClientLeg::new(vec![1]);
            let ts = TsRequest::with_token(6, t.clone());
            if let Ok(neg) = server.on_negotiate(&ts)
                && server.challenge(&neg, [1; 8], 0, &id()).is_ok()
            {
                let _ = server.on_authenticate(&ts, &creds);
            }
            let _ = ntlm::Server::logon(&t);
            let _ = ntlm::av_pairs(&t);
            let _ = decode_credentials(&t, &creds);
            let mut host = HostLeg::new(6, vec![1], [0; 32]);
            let _ = host.on_challenge(&ts, &creds, 0, [0; 8], [0; 16], "");
            let _ = host.on_pubkey_reply(&TsRequest { pub_key_auth: Some(t), ..TsRequest::default() }, &creds);
        }
    }
}
