//! NTLM messages as CredSSP carries them (MS-NLMP 2.2.1; reference §2.10): the NEGOTIATE a
//! client sends first, and the CHALLENGE that tells who the host is (NetBIOS/DNS names, OS
//! build, clock).
//!
//! ```text
//! NEGOTIATE  0 "NTLMSSP\0" | 8 u32 1 | 12 NegotiateFlags | 16 DomainNameFields
//!            | 24 WorkstationFields | 32 Version(8) | 40 payload
//! CHALLENGE  0 "NTLMSSP\0" | 8 u32 2 | 12 TargetNameFields | 20 NegotiateFlags
//!            | 24 ServerChallenge(8) | 32 Reserved(8) | 40 TargetInfoFields | 48 Version(8)
//!            | 56 payload (TargetName, TargetInfo AV pairs)
//! fields     Len(u16le) | MaxLen(u16le) | BufferOffset(u32le, from the message start)
//! AV_PAIR    AvId(u16le) | AvLen(u16le) | value
//! ```
//! All integers are little-endian; offsets in errors are relative to the message start.

use serde::Serialize;

use super::DecodeError;
use super::cursor::ReadCursor;

/// "NTLMSSP\0".
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
pub const NEGOTIATE_MESSAGE: u32 = 1;
pub const CHALLENGE_MESSAGE: u32 = 2;
pub const AUTHENTICATE_MESSAGE: u32 = 3;
/// Fixed part of a CHALLENGE including Version.
const CHALLENGE_FIXED_LEN: usize = 56;
/// 100-ns ticks between 1601-01-01 and 1970-01-01 (11644473600 s).
const FILETIME_UNIX_EPOCH_SECS: i64 = 11_644_473_600;

/// NegotiateFlags (MS-NLMP 2.2.2.5; reference §2.10). Open: unknown bits survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NegotiateFlags(pub u32);

impl NegotiateFlags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const OEM: u32 = 0x0000_0002;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const DATAGRAM: u32 = 0x0000_0040;
    pub const LM_KEY: u32 = 0x0000_0080;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ANONYMOUS: u32 = 0x0000_0800;
    pub const OEM_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
    pub const OEM_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const IDENTIFY: u32 = 0x0010_0000;
    pub const REQUEST_NON_NT_SESSION_KEY: u32 = 0x0040_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;

    /// The flags of reference E10's NEGOTIATE (what mstsc sends): 0xE20882B7.
    pub const CLIENT_DEFAULT: NegotiateFlags = NegotiateFlags(0xE208_82B7);

    const NAMES: [(u32, &'static str); 22] = [
        (Self::UNICODE, "UNICODE"),
        (Self::OEM, "OEM"),
        (Self::REQUEST_TARGET, "REQUEST_TARGET"),
        (Self::SIGN, "SIGN"),
        (Self::SEAL, "SEAL"),
        (Self::DATAGRAM, "DATAGRAM"),
        (Self::LM_KEY, "LM_KEY"),
        (Self::NTLM, "NTLM"),
        (Self::ANONYMOUS, "ANONYMOUS"),
        (Self::OEM_DOMAIN_SUPPLIED, "OEM_DOMAIN_SUPPLIED"),
        (Self::OEM_WORKSTATION_SUPPLIED, "OEM_WORKSTATION_SUPPLIED"),
        (Self::ALWAYS_SIGN, "ALWAYS_SIGN"),
        (Self::TARGET_TYPE_DOMAIN, "TARGET_TYPE_DOMAIN"),
        (Self::TARGET_TYPE_SERVER, "TARGET_TYPE_SERVER"),
        (Self::EXTENDED_SESSIONSECURITY, "EXTENDED_SESSIONSECURITY"),
        (Self::IDENTIFY, "IDENTIFY"),
        (
            Self::REQUEST_NON_NT_SESSION_KEY,
            "REQUEST_NON_NT_SESSION_KEY",
        ),
        (Self::TARGET_INFO, "TARGET_INFO"),
        (Self::VERSION, "VERSION"),
        (Self::N128, "128"),
        (Self::KEY_EXCH, "KEY_EXCH"),
        (Self::N56, "56"),
    ];

    pub fn contains(self, bit: u32) -> bool {
        self.0 & bit == bit
    }

    /// `UNICODE|NTLM|...`, unknown bits as hex.
    pub fn names(self) -> String {
        let mut parts = Vec::new();
        let mut rest = self.0;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                parts.push(name.to_owned());
                rest &= !bit;
            }
        }
        if rest != 0 {
            parts.push(format!("{rest:#x}"));
        }
        parts.join("|")
    }
}

impl Serialize for NegotiateFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#010x} {}", self.0, self.names()))
    }
}

/// VERSION (MS-NLMP 2.2.2.10): the sender's OS version.
///
/// ```text
/// ProductMajorVersion(1) | ProductMinorVersion(1) | ProductBuild(u16le) | Reserved(3)
/// | NTLMRevisionCurrent(1, 0x0F)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    pub revision: u8,
}

impl Version {
    /// Windows 10 2004 (10.0.19041), as in reference E10.
    pub const CLIENT_DEFAULT: Version = Version {
        major: 10,
        minor: 0,
        build: 19041,
        revision: 15,
    };

    pub fn to_bytes(self) -> [u8; 8] {
        let [b0, b1] = self.build.to_le_bytes();
        [self.major, self.minor, b0, b1, 0, 0, 0, self.revision]
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        let [major, minor, b0, b1, _, _, _, revision] = b;
        Version {
            major,
            minor,
            build: u16::from_le_bytes([b0, b1]),
            revision,
        }
    }

    /// The Windows release with this version (reference §3.9), `None` when unknown.
    pub fn windows_name(self) -> Option<&'static str> {
        windows_name(self.major, self.minor, self.build)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// Windows release names by major.minor.build (reference §3.9); for an unlisted 10.0 build, the
/// family it falls in.
pub fn windows_name(major: u8, minor: u8, build: u16) -> Option<&'static str> {
    Some(match (major, minor, build) {
        (5, 0, 2195) => "Windows 2000",
        (5, 1, 2600) => "Windows XP",
        (5, 2, 3790) => "Windows Server 2003 / XP x64",
        (6, 0, 6000..=6002) => "Windows Vista / Server 2008",
        (6, 1, 7600) => "Windows 7 / Server 2008 R2",
        (6, 1, 7601) => "Windows 7 SP1 / Server 2008 R2 SP1",
        (6, 2, 9200) => "Windows 8 / Server 2012",
        (6, 3, 9600) => "Windows 8.1 / Server 2012 R2",
        (10, 0, 10240) => "Windows 10 1507",
        (10, 0, 10586) => "Windows 10 1511",
        (10, 0, 14393) => "Windows 10 1607 / Server 2016",
        (10, 0, 15063) => "Windows 10 1703",
        (10, 0, 16299) => "Windows 10 1709",
        (10, 0, 17134) => "Windows 10 1803",
        (10, 0, 17763) => "Windows 10 1809 / Server 2019",
        (10, 0, 18362) => "Windows 10 1903",
        (10, 0, 18363) => "Windows 10 1909",
        (10, 0, 19041) => "Windows 10 2004",
        (10, 0, 19042) => "Windows 10 20H2",
        (10, 0, 19043) => "Windows 10 21H1",
        (10, 0, 19044) => "Windows 10 21H2",
        (10, 0, 19045) => "Windows 10 22H2",
        (10, 0, 20348) => "Windows Server 2022",
        (10, 0, 22000) => "Windows 11 21H2",
        (10, 0, 22621) => "Windows 11 22H2",
        (10, 0, 22631) => "Windows 11 23H2",
        (10, 0, 25398) => "Windows Server, version 23H2",
        (10, 0, 26100) => "Windows 11 24H2 / Server 2025",
        (10, 0, 0..22000) => "Windows 10 / Server (unlisted build)",
        (10, 0, _) => "Windows 11 / Server (unlisted build)",
        _ => return None,
    })
}

/// Windows FILETIME (100-ns ticks since 1601-01-01 UTC) to unix seconds.
pub fn filetime_to_unix(ticks: u64) -> i64 {
    i64::try_from(ticks / 10_000_000)
        .unwrap_or(i64::MAX)
        .saturating_sub(FILETIME_UNIX_EPOCH_SECS)
}

/// Time since the unix epoch as a Windows FILETIME (MsvAvTimestamp).
pub fn unix_to_filetime(since_epoch: std::time::Duration) -> u64 {
    let secs = since_epoch
        .as_secs()
        .saturating_add(FILETIME_UNIX_EPOCH_SECS.unsigned_abs());
    secs.saturating_mul(10_000_000)
        .saturating_add(u64::from(since_epoch.subsec_nanos() / 100))
}

/// The NegotiateFlags of a NEGOTIATE_MESSAGE (`None` when it is not one, or is cut).
pub fn negotiate_flags(msg: &[u8]) -> Option<NegotiateFlags> {
    if message_type(msg)? != NEGOTIATE_MESSAGE {
        return None;
    }
    let b = msg.get(12..16)?.first_chunk::<4>()?;
    Some(NegotiateFlags(u32::from_le_bytes(*b)))
}

/// AvId names (MS-NLMP 2.2.2.1).
pub fn av_id_name(id: u16) -> &'static str {
    match id {
        0 => "MsvAvEOL",
        1 => "MsvAvNbComputerName",
        2 => "MsvAvNbDomainName",
        3 => "MsvAvDnsComputerName",
        4 => "MsvAvDnsDomainName",
        5 => "MsvAvDnsTreeName",
        6 => "MsvAvFlags",
        7 => "MsvAvTimestamp",
        8 => "MsvAvSingleHost",
        9 => "MsvAvTargetName",
        10 => "MsvAvChannelBindings",
        _ => "unknown",
    }
}

/// Builds a NEGOTIATE_MESSAGE without domain or workstation (reference E10's 40 bytes when
/// `version` is given; the VERSION flag follows `version`).
pub fn encode_negotiate(flags: NegotiateFlags, version: Option<Version>) -> Vec<u8> {
    let flags = match version {
        Some(_) => flags.0 | NegotiateFlags::VERSION,
        None => flags.0 & !NegotiateFlags::VERSION,
    };
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&NEGOTIATE_MESSAGE.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // DomainNameFields: empty
    out.extend_from_slice(&[0; 8]); // WorkstationFields: empty
    out.extend_from_slice(&version.map_or([0; 8], Version::to_bytes));
    out
}

/// The NTLM message type, if `msg` starts with the signature.
pub fn message_type(msg: &[u8]) -> Option<u32> {
    let rest = msg.strip_prefix(SIGNATURE)?;
    let &[a, b, c, d] = rest.first_chunk::<4>()?;
    Some(u32::from_le_bytes([a, b, c, d]))
}

/// Finds an NTLM message inside a token: at its start (raw NTLM, what mstsc and FreeRDP send)
/// or wrapped in SPNEGO (the signature somewhere inside). Returns its offset and bytes.
pub fn find_message(token: &[u8]) -> Option<(usize, &[u8])> {
    let at = token
        .windows(SIGNATURE.len())
        .position(|w| w == SIGNATURE)?;
    token.get(at..).map(|m| (at, m))
}

/// What a CHALLENGE's TargetInfo says (MS-NLMP 2.2.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// MsvAvNbComputerName.
    pub nb_computer_name: Option<String>,
    /// MsvAvNbDomainName.
    pub nb_domain_name: Option<String>,
    /// MsvAvDnsComputerName.
    pub dns_computer_name: Option<String>,
    /// MsvAvDnsDomainName.
    pub dns_domain_name: Option<String>,
    /// MsvAvDnsTreeName.
    pub dns_tree_name: Option<String>,
    /// MsvAvFlags.
    pub flags: Option<u32>,
    /// MsvAvTimestamp as FILETIME ticks.
    pub timestamp: Option<u64>,
    /// MsvAvTargetName (sent by clients; hosts do not).
    pub target_name: Option<String>,
    /// Every pair as (AvId, offset of the pair in the message, AvLen), EOL included.
    pub pairs: Vec<(u16, usize, u16)>,
}

impl TargetInfo {
    /// MsvAvTimestamp in unix seconds.
    pub fn timestamp_unix(&self) -> Option<i64> {
        self.timestamp.map(filetime_to_unix)
    }
}

/// CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Challenge {
    pub flags: NegotiateFlags,
    /// TargetName (the domain, or the server name for a workgroup host).
    pub target_name: Option<String>,
    #[serde(serialize_with = "ser_hex8")]
    pub server_challenge: [u8; 8],
    pub target_info: TargetInfo,
    /// Version (meaningful when NEGOTIATE_VERSION is set).
    pub version: Option<Version>,
    /// Odd but not fatal: fields pointing outside the message, broken AV pairs, odd UTF-16.
    pub anomalies: Vec<String>,
}

fn ser_hex8<S: serde::Serializer>(v: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// The `Len, MaxLen, BufferOffset` triple at `at` (inside the fixed part, already checked),
/// resolved against the message: `None` when empty or pointing outside (an anomaly).
fn payload<'a>(
    msg: &'a [u8],
    at: usize,
    field: &'static str,
    anomalies: &mut Vec<String>,
) -> Option<(usize, &'a [u8])> {
    let &[l0, l1, _, _, o0, o1, o2, o3] = msg.get(at..)?.first_chunk::<8>()?;
    let len = usize::from(u16::from_le_bytes([l0, l1]));
    let offset = usize::try_from(u32::from_le_bytes([o0, o1, o2, o3])).unwrap_or(usize::MAX);
    if len == 0 {
        return None;
    }
    let b = msg.get(offset..offset.saturating_add(len));
    if b.is_none() {
        anomalies.push(format!(
            "{field} at offset {at} points at {len} byte(s) at {offset}, beyond the {}-byte message",
            msg.len()
        ));
    }
    b.map(|b| (offset, b))
}

/// UTF-16LE (or OEM bytes when `unicode` is false) to a String; odd bytes are an anomaly.
fn text(b: &[u8], unicode: bool, what: &str, anomalies: &mut Vec<String>) -> String {
    if !unicode {
        return String::from_utf8_lossy(b).into_owned();
    }
    if !b.len().is_multiple_of(2) {
        anomalies.push(format!("{what} has an odd UTF-16 length {}", b.len()));
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|p| match p {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        })
        .collect();
    String::from_utf16_lossy(&units)
}

/// Decodes a CHALLENGE_MESSAGE. `Err` when the signature, type or fixed part is wrong or cut;
/// a TargetName/TargetInfo pointing outside the message and broken AV pairs are anomalies.
pub fn decode_challenge(msg: &[u8]) -> Result<Challenge, DecodeError> {
    let mut c = ReadCursor::new(msg);
    let sig = c.read_array::<8>("NTLM Signature")?;
    if &sig != SIGNATURE {
        return Err(DecodeError::new(
            0,
            "NTLM Signature",
            "NTLMSSP\\0",
            hex::encode(sig),
        ));
    }
    let ty = c.read_u32_le("NTLM MessageType")?;
    if ty != CHALLENGE_MESSAGE {
        return Err(DecodeError::new(
            8,
            "NTLM MessageType",
            "2 (CHALLENGE)",
            ty.to_string(),
        ));
    }
    let mut anomalies = Vec::new();
    c.skip(8, "TargetNameFields")?;
    let flags = NegotiateFlags(c.read_u32_le("NegotiateFlags")?);
    let server_challenge = c.read_array::<8>("ServerChallenge")?;
    c.skip(8, "Reserved")?;
    c.skip(8, "TargetInfoFields")?;
    let unicode = flags.contains(NegotiateFlags::UNICODE);
    let target_name = payload(msg, 12, "TargetNameFields", &mut anomalies)
        .map(|(_, b)| text(b, unicode, "TargetName", &mut anomalies));
    let info = payload(msg, 40, "TargetInfoFields", &mut anomalies);
    // Version sits at 48..56 unless the payload starts earlier (MS-NLMP: meaningful only with
    // NEGOTIATE_VERSION; servers that omit it may start the payload at 48).
    let payload_start = [first_offset(msg, 12), first_offset(msg, 40)]
        .into_iter()
        .flatten()
        .min();
    let version = if payload_start.is_none_or(|p| p >= CHALLENGE_FIXED_LEN) {
        c.read_array::<8>("Version").ok().map(Version::from_bytes)
    } else {
        None
    };
    if version.is_some() != flags.contains(NegotiateFlags::VERSION) {
        anomalies.push(format!(
            "NEGOTIATE_VERSION is {} but a Version is {}",
            if flags.contains(NegotiateFlags::VERSION) {
                "set"
            } else {
                "clear"
            },
            if version.is_some() {
                "present"
            } else {
                "absent"
            }
        ));
    }
    let target_info = match info {
        Some((off, b)) => decode_av_pairs(b, off, &mut anomalies),
        None => TargetInfo::default(),
    };
    Ok(Challenge {
        flags,
        target_name,
        server_challenge,
        target_info,
        version,
        anomalies,
    })
}

/// BufferOffset of the fields triple at `at` (when non-empty).
fn first_offset(msg: &[u8], at: usize) -> Option<usize> {
    let &[l0, l1, _, _, o0, o1, o2, o3] = msg.get(at..)?.first_chunk::<8>()?;
    if u16::from_le_bytes([l0, l1]) == 0 {
        return None;
    }
    usize::try_from(u32::from_le_bytes([o0, o1, o2, o3])).ok()
}

/// Walks AV pairs at message offset `base` until MsvAvEOL or the end.
fn decode_av_pairs(b: &[u8], base: usize, anomalies: &mut Vec<String>) -> TargetInfo {
    let mut ti = TargetInfo::default();
    let mut c = ReadCursor::new(b);
    let mut saw_eol = false;
    while c.remaining() > 0 {
        let at = base.saturating_add(c.pos());
        let (Ok(id), Ok(len)) = (c.read_u16_le("AvId"), c.read_u16_le("AvLen")) else {
            anomalies.push(format!("AV pair header cut at offset {at}"));
            break;
        };
        ti.pairs.push((id, at, len));
        let Ok(v) = c.read_slice(usize::from(len), "AV pair value") else {
            anomalies.push(format!(
                "{} at offset {at} claims {len} byte(s), {} left",
                av_id_name(id),
                c.remaining()
            ));
            break;
        };
        let name = av_id_name(id);
        let s = |anomalies: &mut Vec<String>| Some(text(v, true, name, anomalies));
        match id {
            0 => {
                saw_eol = true;
                break;
            }
            1 => ti.nb_computer_name = s(anomalies),
            2 => ti.nb_domain_name = s(anomalies),
            3 => ti.dns_computer_name = s(anomalies),
            4 => ti.dns_domain_name = s(anomalies),
            5 => ti.dns_tree_name = s(anomalies),
            6 => match v.first_chunk::<4>() {
                Some(f) => ti.flags = Some(u32::from_le_bytes(*f)),
                None => anomalies.push(format!("MsvAvFlags at offset {at} is {len} byte(s)")),
            },
            7 => match v.first_chunk::<8>() {
                Some(t) => ti.timestamp = Some(u64::from_le_bytes(*t)),
                None => anomalies.push(format!("MsvAvTimestamp at offset {at} is {len} byte(s)")),
            },
            9 => ti.target_name = s(anomalies),
            _ => {}
        }
    }
    if !saw_eol {
        anomalies.push("TargetInfo has no MsvAvEOL".to_owned());
    }
    ti
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Reference E14: CHALLENGE from host RDS01 in domain CORP, Windows Server 2022.
    pub(crate) const E14: &str = "
        4e 54 4c 4d 53 53 50 00 02 00 00 00 08 00 08 00
        38 00 00 00 35 82 89 e2 11 22 33 44 55 66 77 88
        00 00 00 00 00 00 00 00 a2 00 a2 00 40 00 00 00
        0a 00 7c 4f 00 00 00 0f 43 00 4f 00 52 00 50 00
        02 00 08 00 43 00 4f 00 52 00 50 00 01 00 0a 00
        52 00 44 00 53 00 30 00 31 00 04 00 20 00 63 00
        6f 00 72 00 70 00 2e 00 65 00 78 00 61 00 6d 00
        70 00 6c 00 65 00 2e 00 63 00 6f 00 6d 00 03 00
        2c 00 72 00 64 00 73 00 30 00 31 00 2e 00 63 00
        6f 00 72 00 70 00 2e 00 65 00 78 00 61 00 6d 00
        70 00 6c 00 65 00 2e 00 63 00 6f 00 6d 00 05 00
        20 00 63 00 6f 00 72 00 70 00 2e 00 65 00 78 00
        61 00 6d 00 70 00 6c 00 65 00 2e 00 63 00 6f 00
        6d 00 07 00 08 00 80 2c cc 38 c3 94 db 01 00 00
        00 00";

    #[test]
    fn e14_challenge() {
        let b = hex(E14);
        assert_eq!(b.len(), 226);
        assert_eq!(message_type(&b), Some(CHALLENGE_MESSAGE));
        let ch = decode_challenge(&b).unwrap();
        assert_eq!(ch.flags, NegotiateFlags(0xE289_8235));
        assert_eq!(ch.target_name.as_deref(), Some("CORP"));
        assert_eq!(
            ch.server_challenge,
            [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        let ti = &ch.target_info;
        assert_eq!(ti.nb_domain_name.as_deref(), Some("CORP"));
        assert_eq!(ti.nb_computer_name.as_deref(), Some("RDS01"));
        assert_eq!(ti.dns_domain_name.as_deref(), Some("corp.example.com"));
        assert_eq!(
            ti.dns_computer_name.as_deref(),
            Some("rds01.corp.example.com")
        );
        assert_eq!(ti.dns_tree_name.as_deref(), Some("corp.example.com"));
        assert_eq!(ti.timestamp, Some(0x01DB_94C3_38CC_2C80));
        // 2025-03-14 09:26:53 UTC.
        assert_eq!(ti.timestamp_unix(), Some(1_741_944_413));
        assert_eq!(
            ti.pairs.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            [
                (2, 0x40),
                (1, 0x4c),
                (4, 0x5a),
                (3, 0x7e),
                (5, 0xae),
                (7, 0xd2),
                (0, 0xde)
            ]
        );
        let v = ch.version.unwrap();
        assert_eq!((v.major, v.minor, v.build, v.revision), (10, 0, 20348, 15));
        assert_eq!(v.windows_name(), Some("Windows Server 2022"));
        assert!(ch.anomalies.is_empty(), "{:?}", ch.anomalies);
        assert!(
            ch.flags
                .names()
                .starts_with("UNICODE|REQUEST_TARGET|SIGN|SEAL|NTLM")
        );
    }

    #[test]
    fn e10_negotiate() {
        let b = encode_negotiate(
            NegotiateFlags::CLIENT_DEFAULT,
            Some(Version::CLIENT_DEFAULT),
        );
        assert_eq!(
            b,
            hex("4e 54 4c 4d 53 53 50 00 01 00 00 00 b7 82 08 e2
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 0a 00 61 4a 00 00 00 0f")
        );
        assert_eq!(message_type(&b), Some(NEGOTIATE_MESSAGE));
    }

    #[test]
    fn every_cut_of_the_fixed_part_is_an_error_and_later_cuts_are_anomalies() {
        let b = hex(E14);
        for n in 0..48 {
            assert!(decode_challenge(&b[..n]).is_err(), "cut at {n}");
        }
        for n in 48..b.len() {
            let ch = decode_challenge(&b[..n]).unwrap();
            assert!(!ch.anomalies.is_empty(), "cut at {n}");
        }
    }

    #[test]
    fn lying_lengths() {
        // TargetInfo claims 0xff bytes.
        let mut b = hex(E14);
        b[0x28] = 0xff;
        let ch = decode_challenge(&b).unwrap();
        assert!(
            ch.anomalies[0].contains("TargetInfoFields at offset 40"),
            "{:?}",
            ch.anomalies
        );
        assert_eq!(ch.target_info, TargetInfo::default());
        // An AV pair claims more than TargetInfo holds.
        let mut b = hex(E14);
        b[0x4e] = 0xf0;
        let ch = decode_challenge(&b).unwrap();
        assert_eq!(ch.target_info.nb_domain_name.as_deref(), Some("CORP"));
        assert_eq!(ch.target_info.nb_computer_name, None);
        assert!(ch.anomalies[0].contains("MsvAvNbComputerName at offset 76"));
        // Wrong signature / type.
        let mut b = hex(E14);
        b[0] = b'X';
        assert_eq!(decode_challenge(&b).unwrap_err().field, "NTLM Signature");
        let mut b = hex(E14);
        b[8] = 3;
        assert_eq!(decode_challenge(&b).unwrap_err().offset, 8);
    }

    #[test]
    fn spnego_wrapped_message_is_found() {
        let mut token = hex("a1 81 e9 30 81 e6 a0 03 0a 01 01 a2 81 de 04 81 db");
        token.extend(hex(E14));
        let (at, m) = find_message(&token).unwrap();
        assert_eq!(at, 17);
        assert!(decode_challenge(m).is_ok());
        assert_eq!(find_message(b"nothing here"), None);
    }

    #[test]
    fn windows_names() {
        assert_eq!(
            windows_name(6, 1, 7601),
            Some("Windows 7 SP1 / Server 2008 R2 SP1")
        );
        assert_eq!(
            windows_name(10, 0, 26100),
            Some("Windows 11 24H2 / Server 2025")
        );
        assert_eq!(
            windows_name(10, 0, 19999),
            Some("Windows 10 / Server (unlisted build)")
        );
        assert_eq!(windows_name(3, 1, 0), None);
        assert_eq!(filetime_to_unix(116_444_736_000_000_000), 0);
        assert_eq!(filetime_to_unix(0), -11_644_473_600);
        let d = std::time::Duration::new(1_795_000_000, 123_456_700);
        assert_eq!(
            unix_to_filetime(std::time::Duration::ZERO),
            116_444_736_000_000_000
        );
        assert_eq!(filetime_to_unix(unix_to_filetime(d)), 1_795_000_000);
        assert_eq!(unix_to_filetime(d) % 10_000_000, 1_234_567);
    }

    proptest! {
        #[test]
        fn no_panic_on_any_bytes(mut b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_challenge(&b);
            if b.len() >= 12 {
                b[..8].copy_from_slice(SIGNATURE);
                b[8..12].copy_from_slice(&2u32.to_le_bytes());
            }
            let _ = decode_challenge(&b);
            let _ = find_message(&b);
        }

        #[test]
        fn no_panic_on_mutated_e14(at in 0usize..226, v in any::<u8>()) {
            let mut b = hex(E14);
            b[at] = v;
            let _ = decode_challenge(&b);
        }
    }
}
