//! NTLMv2 at both ends (MS-NLMP 3.1–3.4): rdpdiag is the NTLM client toward the host and the
//! NTLM server toward the client, with the one set of credentials it was given.
//!
//! Sans-IO: challenges, session keys and the time come from the caller, so the spec's test
//! vectors (MS-NLMP 4.2.4) reproduce exactly. Only NTLMv2 with extended session security and
//! 128-bit RC4 sealing (what every current client and host negotiates) is implemented; an
//! NTLMv1 response from a client is refused with a reason.
//!
//! ```text
//! AUTHENTICATE 0 "NTLMSSP\0" | 8 u32 3 | 12 LmChallengeResponseFields | 20 NtChallengeResponseFields
//!              | 28 DomainNameFields | 36 UserNameFields | 44 WorkstationFields
//!              | 52 EncryptedRandomSessionKeyFields | 60 NegotiateFlags | 64 Version(8)
//!              | 72 MIC(16) | 88 payload
//! ```

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{KeyInit, Rc4, StreamCipher, consts::U16};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::wire::ntlm::{self as wire, NegotiateFlags as F, Version};

type HmacMd5 = Hmac<Md5>;

/// Flags rdpdiag asks for as a client (mstsc's set: reference E10).
pub const CLIENT_FLAGS: u32 = F::UNICODE
    | F::REQUEST_TARGET
    | F::SIGN
    | F::SEAL
    | F::NTLM
    | F::ALWAYS_SIGN
    | F::EXTENDED_SESSIONSECURITY
    | F::VERSION
    | F::N128
    | F::KEY_EXCH
    | F::N56;

/// Flags rdpdiag's CHALLENGE can grant (the client's request is intersected with these).
const SERVER_FLAGS: u32 = CLIENT_FLAGS | F::TARGET_INFO | F::TARGET_TYPE_SERVER;

/// MsvAvFlags bit: the AUTHENTICATE carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;
const MIC_OFFSET: usize = 72;
const AUTH_PAYLOAD_OFFSET: usize = 88;

/// rdpdiag's own Version field: Windows 10/11 build 19041, NTLM revision 15.
pub const OUR_VERSION: Version = Version {
    major: 10,
    minor: 0,
    build: 19041,
    revision: 15,
};

/// The account rdpdiag logs on with. The NT hash is kept, not the password; both are zeroed
/// when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    pub user: String,
    pub domain: String,
    nt_hash: [u8; 16],
    /// The password itself, needed only for TSCredentials (forwarded to the host).
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// `USER`, `USER@DOMAIN` or `DOMAIN\USER`, and the password (taken: the caller's copy is
    /// zeroed).
    pub fn new(spec: &str, mut password: String) -> Self {
        let (user, domain) = split_user(spec);
        let nt_hash = nt_hash(&password);
        let c = Self {
            user,
            domain,
            nt_hash,
            password: password.clone(),
        };
        password.zeroize();
        c
    }

    /// `DOMAIN\user` or `user`.
    pub fn display(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// Whether a client's logon name is this account (case-insensitive, as Windows compares).
    pub fn same_user(&self, user: &str) -> bool {
        let (u, _) = split_user(user);
        u.to_lowercase() == self.user.to_lowercase()
    }
}

/// Splits `user@domain` / `domain\user`.
pub fn split_user(spec: &str) -> (String, String) {
    if let Some((d, u)) = spec.split_once('\\') {
        (u.to_owned(), d.to_owned())
    } else if let Some((u, d)) = spec.rsplit_once('@') {
        (u.to_owned(), d.to_owned())
    } else {
        (spec.to_owned(), String::new())
    }
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

pub(crate) fn from_utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|p| match p {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        })
        .collect();
    String::from_utf16_lossy(&units)
}

/// NTOWFv1: MD4(UNICODE(password)).
pub fn nt_hash(password: &str) -> [u8; 16] {
    let mut u = utf16le(password);
    let h: [u8; 16] = Md4::digest(&u).into();
    u.zeroize();
    h
}

/// NTOWFv2: HMAC_MD5(NT hash, UNICODE(Uppercase(user) || domain)).
pub fn ntowfv2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    hmac_md5(nt_hash, &[&utf16le(&(user.to_uppercase() + domain))])
}

pub(crate) fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // INVARIANT: HMAC takes keys of any length.
    let mut mac = <HmacMd5 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn rc4(key: &[u8; 16]) -> Rc4<U16> {
    Rc4::new(key.into())
}

/// RC4K: one-shot RC4 with a 16-byte key.
pub fn rc4k(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    rc4(key).apply_keystream(&mut out);
    out
}

/// Why a NTLM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmError {
    /// A message that is not what NTLM allows at this point.
    Malformed(String),
    /// The client logged on as another user than rdpdiag was given.
    UserMismatch { client: String, expected: String },
    /// The NTLMv2 proof does not verify: the client's password is not rdpdiag's.
    PasswordMismatch { client: String },
    /// The client answered with NTLMv1 (or LM) only.
    NtlmV1 { client: String },
    /// An anonymous logon (empty responses).
    Anonymous,
    /// The MIC does not verify (the messages were altered, or the client computes it otherwise).
    MicMismatch { client: String },
    /// The peer's sealed message does not verify.
    BadSignature,
}

impl std::fmt::Display for NtlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NtlmError::Malformed(s) => write!(f, "malformed NTLM message: {s}"),
            NtlmError::UserMismatch { client, expected } => write!(
                f,
                "the client logged on as '{client}' but rdpdiag was given '{expected}'"
            ),
            NtlmError::PasswordMismatch { client } => write!(
                f,
                "the client's password for '{client}' is not the one rdpdiag was given (its NTLMv2 proof does not verify)"
            ),
            NtlmError::NtlmV1 { client } => write!(
                f,
                "the client sent an NTLMv1/LM response for '{client}'; rdpdiag accepts NTLMv2 only (LmCompatibilityLevel < 3 on the client?)"
            ),
            NtlmError::Anonymous => write!(f, "the client attempted an anonymous logon"),
            NtlmError::MicMismatch { client } => write!(
                f,
                "the MIC of '{client}''s AUTHENTICATE does not verify (messages altered in transit?)"
            ),
            NtlmError::BadSignature => {
                write!(
                    f,
                    "a sealed CredSSP field does not verify (wrong session key)"
                )
            }
        }
    }
}

impl std::error::Error for NtlmError {}

fn malformed(s: impl Into<String>) -> NtlmError {
    NtlmError::Malformed(s.into())
}

/// One direction of NTLM session security (MS-NLMP 3.4.3, extended session security, key
/// exchange): an RC4 handle that runs across messages, a signing key and a sequence number.
struct SealDir {
    rc4: Rc4<U16>,
    sign_key: [u8; 16],
    seq: u32,
}

impl SealDir {
    fn new(session_key: &[u8; 16], to_server: bool) -> Self {
        let (sign, seal): (&[u8], &[u8]) = if to_server {
            (
                b"session key to client-to-server signing key magic constant\0",
                b"session key to client-to-server sealing key magic constant\0",
            )
        } else {
            (
                b"session key to server-to-client signing key magic constant\0",
                b"session key to server-to-client sealing key magic constant\0",
            )
        };
        Self {
            rc4: rc4(&md5(&[session_key, seal])),
            sign_key: md5(&[session_key, sign]),
            seq: 0,
        }
    }
}

/// NTLM session security after authentication: seal what we send, unseal what we receive.
pub struct Session {
    out: SealDir,
    inn: SealDir,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ntlm::Session")
    }
}

impl Session {
    /// `client`: rdpdiag is the NTLM client on this leg.
    pub fn new(exported_session_key: &[u8; 16], client: bool) -> Self {
        Self {
            out: SealDir::new(exported_session_key, client),
            inn: SealDir::new(exported_session_key, !client),
        }
    }

    /// GSS_WrapEx: the 16-byte signature followed by the encrypted message (what CredSSP puts
    /// in pubKeyAuth and authInfo).
    pub fn seal(&mut self, msg: &[u8]) -> Vec<u8> {
        let d = &mut self.out;
        let seq = d.seq.to_le_bytes();
        let mut data = msg.to_vec();
        d.rc4.apply_keystream(&mut data);
        let mac = hmac_md5(&d.sign_key, &[&seq, msg]);
        let mut checksum = [0_u8; 8];
        checksum.copy_from_slice(mac.get(..8).unwrap_or(&[0; 8]));
        d.rc4.apply_keystream(&mut checksum);
        d.seq = d.seq.wrapping_add(1);
        let mut out = Vec::with_capacity(16 + data.len());
        out.extend_from_slice(&1_u32.to_le_bytes());
        out.extend_from_slice(&checksum);
        out.extend_from_slice(&seq);
        out.extend_from_slice(&data);
        out
    }

    /// GSS_UnwrapEx: decrypts and checks the signature.
    pub fn unseal(&mut self, token: &[u8]) -> Result<Vec<u8>, NtlmError> {
        let (sig, data) = token
            .split_at_checked(16)
            .ok_or_else(|| malformed("sealed field shorter than its 16-byte signature"))?;
        let d = &mut self.inn;
        let seq = d.seq.to_le_bytes();
        let mut plain = data.to_vec();
        d.rc4.apply_keystream(&mut plain);
        let mac = hmac_md5(&d.sign_key, &[&seq, &plain]);
        let mut checksum = [0_u8; 8];
        checksum.copy_from_slice(mac.get(..8).unwrap_or(&[0; 8]));
        d.rc4.apply_keystream(&mut checksum);
        d.seq = d.seq.wrapping_add(1);
        let want: Vec<u8> = [&1_u32.to_le_bytes()[..], &checksum, &seq].concat();
        if sig != want.as_slice() {
            return Err(NtlmError::BadSignature);
        }
        Ok(plain)
    }
}

/// The AV pairs of a TargetInfo as (AvId, value), EOL excluded.
pub fn av_pairs(info: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, NtlmError> {
    let mut out = Vec::new();
    let mut at = 0_usize;
    loop {
        let &[a, b, c, d] = info
            .get(at..)
            .and_then(|r| r.first_chunk::<4>())
            .ok_or_else(|| malformed(format!("TargetInfo ends at {at} without MsvAvEOL")))?;
        let id = u16::from_le_bytes([a, b]);
        let len = usize::from(u16::from_le_bytes([c, d]));
        if id == 0 {
            return Ok(out);
        }
        let v = info
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| malformed(format!("AV pair {id} at {at} runs past TargetInfo")))?;
        out.push((id, v.to_vec()));
        at += 4 + len;
        if out.len() > 64 {
            return Err(malformed("more than 64 AV pairs"));
        }
    }
}

pub fn encode_av_pairs(pairs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, v) in pairs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(v.get(..usize::from(u16::MAX)).unwrap_or(v));
    }
    out.extend_from_slice(&[0; 4]);
    out
}

/// A `Len, MaxLen, Offset` triple's bytes inside `msg`.
fn field(msg: &[u8], at: usize, name: &str) -> Result<Vec<u8>, NtlmError> {
    let &[l0, l1, _, _, o0, o1, o2, o3] = msg
        .get(at..)
        .and_then(|r| r.first_chunk::<8>())
        .ok_or_else(|| malformed(format!("{name} fields cut")))?;
    let len = usize::from(u16::from_le_bytes([l0, l1]));
    let off = usize::try_from(u32::from_le_bytes([o0, o1, o2, o3])).unwrap_or(usize::MAX);
    if len == 0 {
        return Ok(Vec::new());
    }
    msg.get(off..off.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| malformed(format!("{name} points outside the message")))
}

fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    msg.get(at..)?
        .first_chunk::<4>()
        .map(|b| u32::from_le_bytes(*b))
}

/// Appends payload fields after a fixed header: returns the header triples in order.
struct Payload {
    base: usize,
    bytes: Vec<u8>,
}

impl Payload {
    fn new(base: usize) -> Self {
        Self {
            base,
            bytes: Vec::new(),
        }
    }

    fn add(&mut self, b: &[u8]) -> [u8; 8] {
        let off = u32::try_from(self.base + self.bytes.len()).unwrap_or(u32::MAX);
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(b);
        let mut t = [0_u8; 8];
        t[..2].copy_from_slice(&len.to_le_bytes());
        t[2..4].copy_from_slice(&len.to_le_bytes());
        t[4..].copy_from_slice(&off.to_le_bytes());
        t
    }
}

/// What the client side produced for the AUTHENTICATE.
#[derive(Debug)]
pub struct Authenticated {
    /// The AUTHENTICATE_MESSAGE.
    pub message: Vec<u8>,
    /// Session security for the rest of CredSSP.
    pub session: Session,
}

/// NTLM client toward the host.
#[derive(Debug)]
pub struct Client {
    negotiate: Vec<u8>,
    /// MsvAvTargetName for the AUTHENTICATE (`TERMSRV/host`, as mstsc sends it).
    target_name: Option<String>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Self {
        Self {
            negotiate: wire::encode_negotiate(F(CLIENT_FLAGS), Some(OUR_VERSION)),
            target_name: None,
        }
    }

    /// Names the service in the AUTHENTICATE's MsvAvTargetName (`TERMSRV/host`): hosts that
    /// validate SPNs see what mstsc would send.
    pub fn with_target_name(mut self, spn: &str) -> Self {
        self.target_name = Some(spn.to_owned());
        self
    }

    /// The NEGOTIATE_MESSAGE.
    pub fn negotiate(&self) -> &[u8] {
        &self.negotiate
    }

    /// The AUTHENTICATE for `challenge` (the raw CHALLENGE_MESSAGE). `now` is a FILETIME used
    /// when the host sent no MsvAvTimestamp; `client_challenge` and `session_key` are random.
    pub fn authenticate(
        &self,
        creds: &Credentials,
        challenge: &[u8],
        now: u64,
        client_challenge: [u8; 8],
        session_key: [u8; 16],
        workstation: &str,
    ) -> Result<Authenticated, NtlmError> {
        let ch = wire::decode_challenge(challenge).map_err(|e| malformed(e.to_string()))?;
        let flags = ch.flags.0 & CLIENT_FLAGS | (CLIENT_FLAGS & F::VERSION);
        let info = field(challenge, 40, "TargetInfo")?;
        let mut pairs = av_pairs(&info)?;
        let timestamp = pairs
            .iter()
            .find(|(id, _)| *id == 7)
            .and_then(|(_, v)| v.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)));
        let with_mic = timestamp.is_some();
        if with_mic {
            match pairs.iter_mut().find(|(id, _)| *id == 6) {
                Some((_, v)) => {
                    let f = v.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b));
                    *v = (f | AV_FLAG_MIC).to_le_bytes().to_vec();
                }
                None => pairs.push((6, AV_FLAG_MIC.to_le_bytes().to_vec())),
            }
            if let Some(spn) = &self.target_name
                && !pairs.iter().any(|(id, _)| *id == 9)
            {
                pairs.push((9, utf16le(spn)));
            }
        }
        let time = timestamp.unwrap_or(now);
        let key = ntowfv2(&creds.nt_hash, &creds.user, &creds.domain);
        let temp = ntlmv2_temp(time, client_challenge, &encode_av_pairs(&pairs));
        let proof = hmac_md5(&key, &[&ch.server_challenge, &temp]);
        let nt_response = [&proof[..], &temp].concat();
        let lm_response = if with_mic {
            vec![0; 24]
        } else {
            let lm = hmac_md5(&key, &[&ch.server_challenge, &client_challenge]);
            [&lm[..], &client_challenge].concat()
        };
        let base_key = hmac_md5(&key, &[&proof]);
        let (exported, encrypted_key) = if flags & F::KEY_EXCH != 0 {
            (session_key, rc4k(&base_key, &session_key))
        } else {
            (base_key, Vec::new())
        };
        let mut p = Payload::new(AUTH_PAYLOAD_OFFSET);
        let domain = utf16le(&creds.domain);
        let user = utf16le(&creds.user);
        let ws = utf16le(workstation);
        let t_dom = p.add(&domain);
        let t_user = p.add(&user);
        let t_ws = p.add(&ws);
        let t_lm = p.add(&lm_response);
        let t_nt = p.add(&nt_response);
        let t_key = p.add(&encrypted_key);
        let mut msg = Vec::with_capacity(AUTH_PAYLOAD_OFFSET + p.bytes.len());
        msg.extend_from_slice(wire::SIGNATURE);
        msg.extend_from_slice(&wire::AUTHENTICATE_MESSAGE.to_le_bytes());
        for t in [t_lm, t_nt, t_dom, t_user, t_ws, t_key] {
            msg.extend_from_slice(&t);
        }
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&OUR_VERSION.to_bytes());
        msg.extend_from_slice(&[0; 16]);
        msg.extend_from_slice(&p.bytes);
        if with_mic {
            let mic = hmac_md5(&exported, &[&self.negotiate, challenge, &msg]);
            if let Some(m) = msg.get_mut(MIC_OFFSET..AUTH_PAYLOAD_OFFSET) {
                m.copy_from_slice(&mic);
            }
        }
        Ok(Authenticated {
            message: msg,
            session: Session::new(&exported, true),
        })
    }
}

/// temp = Responserversion, HiResponserversion, Z(6), Time, ClientChallenge, Z(4), ServerName,
/// Z(4) (MS-NLMP 3.3.2).
fn ntlmv2_temp(time: u64, client_challenge: [u8; 8], server_name: &[u8]) -> Vec<u8> {
    let mut t = vec![1, 1, 0, 0, 0, 0, 0, 0];
    t.extend_from_slice(&time.to_le_bytes());
    t.extend_from_slice(&client_challenge);
    t.extend_from_slice(&[0; 4]);
    t.extend_from_slice(server_name);
    t.extend_from_slice(&[0; 4]);
    t
}

/// Who the NTLM server says it is in its CHALLENGE (copied from the host, so the client sees
/// the host's names).
#[derive(Debug, Clone, Default)]
pub struct ServerIdentity {
    pub nb_domain: String,
    pub nb_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

/// A client's AUTHENTICATE, read by rdpdiag's NTLM server.
#[derive(Debug, Clone)]
pub struct ClientLogon {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub flags: u32,
    pub version: Option<Version>,
    pub had_mic: bool,
}

/// NTLM server toward the client.
#[derive(Debug)]
pub struct Server {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
}

impl Server {
    /// Answers the client's NEGOTIATE with a CHALLENGE (`now`: FILETIME for MsvAvTimestamp).
    pub fn challenge(
        negotiate: &[u8],
        server_challenge: [u8; 8],
        now: u64,
        id: &ServerIdentity,
    ) -> Result<Self, NtlmError> {
        if wire::message_type(negotiate) != Some(wire::NEGOTIATE_MESSAGE) {
            return Err(malformed(
                "the client's first token is not an NTLM NEGOTIATE",
            ));
        }
        let asked = wire::negotiate_flags(negotiate)
            .ok_or_else(|| malformed("NEGOTIATE cut"))?
            .0;
        if asked & F::UNICODE == 0 {
            return Err(malformed("the client does not offer Unicode"));
        }
        let flags = (asked & SERVER_FLAGS) | F::TARGET_INFO | F::TARGET_TYPE_SERVER | F::VERSION;
        let u = |s: &str| utf16le(s);
        let mut pairs = vec![
            (2, u(&id.nb_domain)),
            (1, u(&id.nb_computer)),
            (4, u(&id.dns_domain)),
            (3, u(&id.dns_computer)),
        ];
        pairs.push((7, now.to_le_bytes().to_vec()));
        let info = encode_av_pairs(&pairs);
        let mut p = Payload::new(56);
        let t_name = p.add(&u(&id.nb_domain));
        let t_info = p.add(&info);
        let mut msg = Vec::with_capacity(56 + p.bytes.len());
        msg.extend_from_slice(wire::SIGNATURE);
        msg.extend_from_slice(&wire::CHALLENGE_MESSAGE.to_le_bytes());
        msg.extend_from_slice(&t_name);
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&server_challenge);
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&t_info);
        msg.extend_from_slice(&OUR_VERSION.to_bytes());
        msg.extend_from_slice(&p.bytes);
        Ok(Self {
            negotiate: negotiate.to_vec(),
            challenge: msg,
            server_challenge,
        })
    }

    /// The CHALLENGE_MESSAGE to send.
    pub fn message(&self) -> &[u8] {
        &self.challenge
    }

    /// Who the AUTHENTICATE says is logging on, before any check (for reports).
    pub fn logon(auth: &[u8]) -> Result<ClientLogon, NtlmError> {
        if wire::message_type(auth) != Some(wire::AUTHENTICATE_MESSAGE) {
            return Err(malformed("the client's token is not an NTLM AUTHENTICATE"));
        }
        let flags = u32_at(auth, 60).ok_or_else(|| malformed("AUTHENTICATE cut"))?;
        let text = |b: Vec<u8>| {
            if flags & F::UNICODE != 0 {
                from_utf16le(&b)
            } else {
                String::from_utf8_lossy(&b).into_owned()
            }
        };
        let first_payload = [12, 20, 28, 36, 44, 52]
            .iter()
            .filter_map(|&at| {
                let len = u16::from_le_bytes([*auth.get(at)?, *auth.get(at + 1)?]);
                (len > 0).then(|| u32_at(auth, at + 4))?
            })
            .min()
            .map_or(usize::MAX, |o| usize::try_from(o).unwrap_or(usize::MAX));
        let version = (flags & F::VERSION != 0 && first_payload >= MIC_OFFSET)
            .then(|| {
                auth.get(64..72)?
                    .first_chunk::<8>()
                    .map(|b| Version::from_bytes(*b))
            })
            .flatten();
        Ok(ClientLogon {
            user: text(field(auth, 36, "UserName")?),
            domain: text(field(auth, 28, "DomainName")?),
            workstation: text(field(auth, 44, "Workstation")?),
            flags,
            version,
            had_mic: first_payload >= AUTH_PAYLOAD_OFFSET,
        })
    }

    /// Verifies the client's AUTHENTICATE against `creds`: the user, the NTLMv2 proof and the
    /// MIC. On success, the session security for the rest of CredSSP.
    pub fn verify(
        &self,
        creds: &Credentials,
        auth: &[u8],
    ) -> Result<(ClientLogon, Session), NtlmError> {
        let logon = Self::logon(auth)?;
        let client = if logon.domain.is_empty() {
            logon.user.clone()
        } else {
            format!("{}\\{}", logon.domain, logon.user)
        };
        let nt = field(auth, 20, "NtChallengeResponse")?;
        let lm = field(auth, 12, "LmChallengeResponse")?;
        if nt.is_empty() && lm.iter().all(|b| *b == 0) && logon.user.is_empty() {
            return Err(NtlmError::Anonymous);
        }
        if !creds.same_user(&logon.user) {
            return Err(NtlmError::UserMismatch {
                client,
                expected: creds.display(),
            });
        }
        if nt.len() <= 24 {
            return Err(NtlmError::NtlmV1 { client });
        }
        let (proof, temp) = nt.split_at(16);
        let key = ntowfv2(&creds.nt_hash, &logon.user, &logon.domain);
        let want = hmac_md5(&key, &[&self.server_challenge, temp]);
        if want.as_slice() != proof {
            return Err(NtlmError::PasswordMismatch { client });
        }
        let base_key = hmac_md5(&key, &[proof]);
        let enc = field(auth, 52, "EncryptedRandomSessionKey")?;
        let exported: [u8; 16] = if logon.flags & F::KEY_EXCH != 0 && enc.len() == 16 {
            let k = rc4k(&base_key, &enc);
            k.as_slice()
                .try_into()
                .map_err(|_| malformed("session key"))?
        } else {
            base_key
        };
        if logon.had_mic {
            let mic = auth
                .get(MIC_OFFSET..AUTH_PAYLOAD_OFFSET)
                .unwrap_or_default();
            let mut zeroed = auth.to_vec();
            if let Some(m) = zeroed.get_mut(MIC_OFFSET..AUTH_PAYLOAD_OFFSET) {
                m.fill(0);
            }
            let want = hmac_md5(&exported, &[&self.negotiate, &self.challenge, &zeroed]);
            // Only a MIC the client says it sent (MsvAvFlags bit 0x2 in its response) counts.
            let announced = temp
                .get(28..temp.len().saturating_sub(4))
                .and_then(|i| av_pairs(i).ok())
                .and_then(|p| p.into_iter().find(|(id, _)| *id == 6))
                .and_then(|(_, v)| v.first_chunk::<4>().map(|b| u32::from_le_bytes(*b)))
                .is_some_and(|f| f & AV_FLAG_MIC != 0);
            if announced && want.as_slice() != mic {
                return Err(NtlmError::MicMismatch { client });
            }
        }
        Ok((logon, Session::new(&exported, false)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // MS-NLMP 4.2.1 common values and 4.2.4 NTLMv2 results.
    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
    const RANDOM_SESSION_KEY: [u8; 16] = [0x55; 16];

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn spec_creds() -> Credentials {
        Credentials::new("Domain\\User", "Password".to_owned())
    }

    #[test]
    fn ntowfv2_matches_ms_nlmp_4_2_4_1_1() {
        let c = spec_creds();
        assert_eq!(c.user, "User");
        assert_eq!(c.domain, "Domain");
        assert_eq!(
            ntowfv2(&c.nt_hash, &c.user, &c.domain).to_vec(),
            h("0c 86 8a 40 3b fd 7a 93 a3 00 1e f2 2e f0 2e 3f")
        );
    }

    #[test]
    fn ntlmv2_response_matches_ms_nlmp_4_2_4_2() {
        let c = spec_creds();
        let key = ntowfv2(&c.nt_hash, &c.user, &c.domain);
        // The spec's ServerName: NbDomainName "Domain", NbComputerName "Server", EOL.
        let info = encode_av_pairs(&[(2, utf16le("Domain")), (1, utf16le("Server"))]);
        let temp = ntlmv2_temp(0, CLIENT_CHALLENGE, &info);
        let proof = hmac_md5(&key, &[&SERVER_CHALLENGE, &temp]);
        assert_eq!(
            proof.to_vec(),
            h("68 cd 0a b8 51 e5 1c 96 aa bc 92 7b eb ef 6a 1c")
        );
        let base = hmac_md5(&key, &[&proof]);
        assert_eq!(
            base.to_vec(),
            h("8d e4 0c ca db c1 4a 82 f1 5c b0 ad 0d e9 5c a3")
        );
        assert_eq!(
            rc4k(&base, &RANDOM_SESSION_KEY),
            h("c5 da d2 54 4f c9 79 90 94 ce 1c e9 0b c9 d0 3e")
        );
        let lm = hmac_md5(&key, &[&SERVER_CHALLENGE, &CLIENT_CHALLENGE]);
        assert_eq!(
            lm.to_vec(),
            h("86 c3 50 97 ac 9c ec 10 25 54 76 4a 57 cc cc 19")
        );
    }

    #[test]
    fn seal_matches_ms_nlmp_4_2_4_4() {
        let mut s = Session::new(&RANDOM_SESSION_KEY, true);
        let sealed = s.seal(&utf16le("Plaintext"));
        assert_eq!(
            sealed.get(..16).unwrap(),
            h("01 00 00 00 7f b3 8e c5 c5 5d 49 76 00 00 00 00")
        );
        assert_eq!(
            sealed.get(16..).unwrap(),
            h("54 e5 01 65 bf 19 36 dc 99 60 20 c1 81 1b 0f 06 fb 5f")
        );
        // The server side of the same key unseals it.
        let mut server = Session::new(&RANDOM_SESSION_KEY, false);
        assert_eq!(server.unseal(&sealed).unwrap(), utf16le("Plaintext"));
    }

    /// rdpdiag's client against the spec's CHALLENGE (4.2.4.3: no MsvAvTimestamp, so an LMv2
    /// response and no MIC) gives the spec's responses and encrypted session key, and its own
    /// server reads the logon back.
    #[test]
    fn client_reproduces_ms_nlmp_4_2_4_3() {
        let challenge = h(concat!(
            "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef",
            "00000000000000002400240044000000060070170000000f5300650072007600",
            "6500720002000c0044006f006d00610069006e0001000c005300650072007600",
            "6500720000000000"
        ));
        let a = Client::new()
            .authenticate(
                &spec_creds(),
                &challenge,
                0,
                CLIENT_CHALLENGE,
                RANDOM_SESSION_KEY,
                "COMPUTER",
            )
            .unwrap();
        let m = &a.message;
        assert_eq!(
            field(m, 20, "nt").unwrap(),
            h(concat!(
                "68cd0ab851e51c96aabc927bebef6a1c01010000000000000000000000000000",
                "aaaaaaaaaaaaaaaa0000000002000c0044006f006d00610069006e0001000c00",
                "530065007200760065007200000000000000000000"
            ))
            .get(..84)
            .unwrap()
        );
        assert_eq!(
            field(m, 12, "lm").unwrap(),
            h("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
        );
        assert_eq!(
            field(m, 52, "key").unwrap(),
            h("c5dad2544fc9799094ce1ce90bc9d03e")
        );
        let logon = Server::logon(m).unwrap();
        assert_eq!(
            (logon.user.as_str(), logon.domain.as_str()),
            ("User", "Domain")
        );
        assert_eq!(logon.workstation, "COMPUTER");
        assert_eq!(m.get(MIC_OFFSET..AUTH_PAYLOAD_OFFSET).unwrap(), &[0; 16]);
    }

    fn round_trip(client_pw: &str, server_user: &str) -> Result<(ClientLogon, Session), NtlmError> {
        let id = ServerIdentity {
            nb_domain: "WORKGROUP".into(),
            nb_computer: "HOST".into(),
            dns_domain: "host".into(),
            dns_computer: "host".into(),
        };
        let client = Client::new();
        let server = Server::challenge(
            client.negotiate(),
            SERVER_CHALLENGE,
            133_000_000_000_000_000,
            &id,
        )
        .unwrap();
        let cc = Credentials::new("test", client_pw.to_owned());
        let a = client
            .authenticate(
                &cc,
                server.message(),
                0,
                CLIENT_CHALLENGE,
                RANDOM_SESSION_KEY,
                "WS",
            )
            .unwrap();
        let sc = Credentials::new(server_user, "Passw0rd!".to_owned());
        let (logon, mut ss) = server.verify(&sc, &a.message)?;
        let mut cs = a.session;
        let sealed = cs.seal(b"public key");
        assert_eq!(ss.unseal(&sealed).unwrap(), b"public key");
        let back = ss.seal(b"reply");
        assert_eq!(cs.unseal(&back).unwrap(), b"reply");
        Ok((logon, ss))
    }

    #[test]
    fn client_and_server_agree() {
        let (logon, _) = round_trip("Passw0rd!", "test").unwrap();
        assert_eq!(logon.user, "test");
        assert!(logon.had_mic);
    }

    #[test]
    fn wrong_password_is_a_password_mismatch() {
        let e = round_trip("wrong", "test").unwrap_err();
        assert!(matches!(e, NtlmError::PasswordMismatch { .. }), "{e}");
    }

    #[test]
    fn other_user_is_a_user_mismatch() {
        let e = round_trip("Passw0rd!", "alice@CORP").unwrap_err();
        assert!(matches!(e, NtlmError::UserMismatch { .. }), "{e}");
        assert!(e.to_string().contains("CORP\\alice"));
    }

    #[test]
    fn tampered_seal_is_refused() {
        let mut c = Session::new(&RANDOM_SESSION_KEY, true);
        let mut s = Session::new(&RANDOM_SESSION_KEY, false);
        let mut sealed = c.seal(b"x");
        if let Some(b) = sealed.last_mut() {
            *b ^= 1;
        }
        assert_eq!(s.unseal(&sealed), Err(NtlmError::BadSignature));
        assert!(s.unseal(&[1, 2]).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("u", "hunter2-secret".to_owned());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn av_pairs_reject_lies() {
        assert!(av_pairs(&[1, 0, 200, 0, 1, 2]).is_err());
        assert!(av_pairs(&[1, 0]).is_err());
        assert_eq!(av_pairs(&[0, 0, 0, 0]).unwrap(), vec![]);
    }
}
