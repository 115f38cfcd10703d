//! CredSSP (NLA) TSRequest (MS-CSSP 2.2.1; reference §2.8) over a lenient DER TLV walker.
//!
//! ```text
//! TSRequest ::= SEQUENCE {                          30 LL
//!     version     [0] INTEGER,                      A0 03 02 01 vv
//!     negoTokens  [1] NegoData        OPTIONAL,     A1 LL 30 LL 30 LL A0 LL 04 LL <token>
//!     authInfo    [2] OCTET STRING    OPTIONAL,     A2 LL 04 LL <sealed TSCredentials>
//!     pubKeyAuth  [3] OCTET STRING    OPTIONAL,     A3 LL 04 LL <sealed key or hash>
//!     errorCode   [4] INTEGER         OPTIONAL,     A4 LL 02 LL <NTSTATUS>
//!     clientNonce [5] OCTET STRING    OPTIONAL }    A5 22 04 20 <32 bytes>
//! NegoData ::= SEQUENCE OF SEQUENCE { negoToken [0] OCTET STRING }
//! ```
//!
//! Each TSRequest is written to the TLS stream as is: the outer DER length delimits it. The
//! walker accepts BER's non-minimal lengths (`82 00 60`), reports every problem with the offset
//! of the offending byte, and never allocates more than the bytes present.

use serde::{Serialize, Serializer};

use super::{DecodeError, Decoded};

/// Largest TSRequest accepted (reference §2.8.1: "a sane bound such as 64 KiB"; real ones are
/// a few hundred bytes, a Kerberos AP-REQ a few KB).
pub const MAX_TSREQUEST_LEN: usize = 65536;

/// The CredSSP version current Windows speaks (MS-CSSP 2.2.1, reference §3.7).
pub const CURRENT_VERSION: u32 = 6;

/// Universal and context tags used here.
pub mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const SEQUENCE: u8 = 0x30;
    /// Context-specific, constructed: `[n]` is `CONTEXT | n`.
    pub const CONTEXT: u8 = 0xA0;
}

/// One DER (or BER definite-length) TLV.
///
/// ```text
/// tag(1) | length (0x00-0x7F, or 0x8N + N bytes big-endian) | value(length)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag byte (single-byte tags only: CredSSP and SPNEGO need no other).
    pub tag: u8,
    /// Offset of the tag byte, relative to the base the caller gave.
    pub offset: usize,
    /// Tag + length bytes.
    pub header_len: usize,
    /// The value bytes.
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Offset of the first value byte.
    pub fn value_offset(&self) -> usize {
        self.offset.saturating_add(self.header_len)
    }

    /// Header + value.
    pub fn total_len(&self) -> usize {
        self.header_len.saturating_add(self.value.len())
    }

    /// Bit 6 of the tag: the value is a sequence of TLVs.
    pub fn is_constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The TLVs inside the value.
    pub fn children(&self) -> TlvIter<'a> {
        TlvIter {
            buf: self.value,
            pos: 0,
            base: self.value_offset(),
            failed: false,
        }
    }
}

/// Reads a TLV header at the start of `buf`: `Ok(None)` when the header is cut, else the tag,
/// the header length and the value length. `base` is added to error offsets.
///
/// Errors: a multi-byte tag (`xx1F`), the indefinite length `0x80`, more than 4 length bytes,
/// or a length above [`MAX_TSREQUEST_LEN`].
pub fn read_header(buf: &[u8], base: usize) -> Decoded<(u8, usize, usize)> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    if tag & 0x1F == 0x1F {
        return Err(DecodeError::new(
            base,
            "DER tag",
            "a single-byte tag",
            format!("{tag:#04x} (multi-byte tag)"),
        ));
    }
    let Some(&first) = buf.get(1) else {
        return Ok(None);
    };
    let len_at = base.saturating_add(1);
    if first < 0x80 {
        return Ok(Some((tag, 2, usize::from(first))));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 {
        return Err(DecodeError::new(
            len_at,
            "DER length",
            "a definite length",
            "0x80 (indefinite length)",
        ));
    }
    if n > 4 {
        return Err(DecodeError::new(
            len_at,
            "DER length",
            "at most 4 length bytes",
            format!("{n} length bytes"),
        ));
    }
    let Some(bytes) = buf.get(2..2 + n) else {
        return Ok(None);
    };
    let len = bytes.iter().fold(0usize, |acc, &b| {
        acc.saturating_mul(256).saturating_add(usize::from(b))
    });
    if len > MAX_TSREQUEST_LEN {
        return Err(DecodeError::new(
            len_at,
            "DER length",
            format!("<= {MAX_TSREQUEST_LEN}"),
            len.to_string(),
        ));
    }
    Ok(Some((tag, 2 + n, len)))
}

/// Reads the TLV at the start of `buf` as a stream decoder: `Ok(None)` when it is not all
/// there yet (the TLS stream may deliver a TSRequest in pieces).
pub fn read_tlv(buf: &[u8], base: usize) -> Decoded<Tlv<'_>> {
    let Some((tag, header_len, len)) = read_header(buf, base)? else {
        return Ok(None);
    };
    Ok(buf
        .get(header_len..header_len.saturating_add(len))
        .map(|value| Tlv {
            tag,
            offset: base,
            header_len,
            value,
        }))
}

/// Reads the TLV at the start of `buf` when the enclosing value is complete: a cut header or a
/// length beyond the bytes present is an error (a lying length).
pub fn parse_tlv(buf: &[u8], base: usize) -> Result<Tlv<'_>, DecodeError> {
    match read_tlv(buf, base)? {
        Some(t) => Ok(t),
        None => {
            let (field, expected) = match read_header(buf, base) {
                Ok(Some((_, _, len))) => ("DER length", format!("{len} value byte(s)")),
                _ => ("DER header", "a tag and a length".to_owned()),
            };
            Err(DecodeError::new(
                if field == "DER length" {
                    base.saturating_add(1)
                } else {
                    base
                },
                field,
                expected,
                format!("{} byte(s) left", buf.len()),
            ))
        }
    }
}

/// Iterates the TLVs of a constructed value; stops after the first error.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> TlvIter<'a> {
    /// Walks `buf` (a complete value) whose first byte sits at stream offset `base`.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let r = parse_tlv(rest, self.base.saturating_add(self.pos));
        match &r {
            Ok(t) => self.pos = self.pos.saturating_add(t.total_len()),
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// Reads an INTEGER's content as an unsigned 32-bit value the way CredSSP peers write it
/// (reference §2.8.5): one leading `00` of a 5-byte content is dropped, then the last (up to) 4
/// bytes are taken big-endian.
pub fn integer_u32(t: &Tlv<'_>, field: &'static str) -> Result<u32, DecodeError> {
    if t.tag != tag::INTEGER {
        return Err(DecodeError::new(
            t.offset,
            field,
            "INTEGER (0x02)",
            format!("tag {:#04x}", t.tag),
        ));
    }
    let v = match t.value {
        [] => {
            return Err(DecodeError::new(
                t.offset.saturating_add(1),
                field,
                "1 to 4 content bytes",
                "0",
            ));
        }
        [0, rest @ ..] if rest.len() == 4 => rest,
        v if v.len() <= 4 => v,
        v => {
            return Err(DecodeError::new(
                t.offset.saturating_add(1),
                field,
                "1 to 4 content bytes",
                v.len().to_string(),
            ));
        }
    };
    Ok(v.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// The single TLV inside an explicit context tag `[n]`, and whether bytes follow it.
fn explicit_inner<'a>(t: &Tlv<'a>) -> Result<(Tlv<'a>, usize), DecodeError> {
    let inner = parse_tlv(t.value, t.value_offset())?;
    Ok((inner, t.value.len().saturating_sub(inner.total_len())))
}

fn octets<'a>(t: &Tlv<'a>, field: &'static str) -> Result<&'a [u8], DecodeError> {
    if t.tag == tag::OCTET_STRING {
        Ok(t.value)
    } else {
        Err(DecodeError::new(
            t.offset,
            field,
            "OCTET STRING (0x04)",
            format!("tag {:#04x}", t.tag),
        ))
    }
}

fn ser_hex_opt<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

fn ser_hex_vec<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}

/// A TSRequest (MS-CSSP 2.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TsRequest {
    /// version: 2..6 (reference §3.7).
    pub version: u32,
    /// negoTokens: each NegoDataItem's negoToken (raw NTLM or SPNEGO).
    #[serde(serialize_with = "ser_hex_vec")]
    pub nego_tokens: Vec<Vec<u8>>,
    /// authInfo: the sealed TSCredentials.
    #[serde(serialize_with = "ser_hex_opt")]
    pub auth_info: Option<Vec<u8>>,
    /// pubKeyAuth: the sealed public key (v2-4) or hash (v5+).
    #[serde(serialize_with = "ser_hex_opt")]
    pub pub_key_auth: Option<Vec<u8>>,
    /// errorCode: an NTSTATUS or HRESULT, read as u32 (reference §2.8.5, §3.8).
    pub error_code: Option<u32>,
    /// clientNonce: 32 bytes (v5+).
    #[serde(serialize_with = "ser_hex_opt")]
    pub client_nonce: Option<Vec<u8>>,
    /// Odd but not fatal: unknown fields, bytes after a field's value, broken NegoData items.
    /// Ignored by [`encode`].
    pub anomalies: Vec<String>,
}

impl TsRequest {
    /// A client's first TSRequest: `version` and one negoToken (reference §2.8.3 C1).
    pub fn with_token(version: u32, token: Vec<u8>) -> Self {
        Self {
            version,
            nego_tokens: vec![token],
            ..Self::default()
        }
    }
}

/// Splits one whole TSRequest off the front of a TLS plaintext stream: `Ok(Some(len))` when
/// the first `len` bytes are one complete TLV, `Ok(None)` when more are needed.
pub fn split(buf: &[u8]) -> Decoded<usize> {
    Ok(read_tlv(buf, 0)?.map(|t| t.total_len()))
}

/// Decodes the TSRequest at the start of `buf`: `Ok(Some((request, consumed)))`, `Ok(None)`
/// while the outer TLV is incomplete, `Err` for a malformed message (offsets from `buf[0]`).
///
/// A missing or unreadable version, a non-SEQUENCE outer tag and lengths that run past their
/// enclosing value are errors; unknown fields and broken negoTokens items are anomalies.
pub fn decode(buf: &[u8]) -> Decoded<(TsRequest, usize)> {
    let Some(outer) = read_tlv(buf, 0)? else {
        return Ok(None);
    };
    if outer.tag != tag::SEQUENCE {
        return Err(DecodeError::new(
            0,
            "TSRequest",
            "SEQUENCE (0x30)",
            format!("tag {:#04x}", outer.tag),
        ));
    }
    let mut req = TsRequest::default();
    let mut version = None;
    for field in outer.children() {
        let field = field?;
        if field.tag & 0xE0 != tag::CONTEXT {
            req.anomalies.push(format!(
                "unexpected tag {:#04x} at offset {} in TSRequest",
                field.tag, field.offset
            ));
            continue;
        }
        let n = field.tag & 0x1F;
        let (inner, trailing) = explicit_inner(&field)?;
        if trailing > 0 {
            req.anomalies.push(format!(
                "{trailing} byte(s) after the value of TSRequest [{n}] at offset {}",
                inner.offset.saturating_add(inner.total_len())
            ));
        }
        match n {
            0 => version = Some(integer_u32(&inner, "TSRequest.version")?),
            1 => decode_nego_data(&inner, &mut req)?,
            2 => req.auth_info = Some(octets(&inner, "TSRequest.authInfo")?.to_vec()),
            3 => req.pub_key_auth = Some(octets(&inner, "TSRequest.pubKeyAuth")?.to_vec()),
            4 => req.error_code = Some(integer_u32(&inner, "TSRequest.errorCode")?),
            5 => {
                let nonce = octets(&inner, "TSRequest.clientNonce")?;
                if nonce.len() != 32 {
                    req.anomalies.push(format!(
                        "clientNonce is {} byte(s), not 32 (offset {})",
                        nonce.len(),
                        inner.value_offset()
                    ));
                }
                req.client_nonce = Some(nonce.to_vec());
            }
            _ => req.anomalies.push(format!(
                "unknown TSRequest field [{n}] at offset {}",
                field.offset
            )),
        }
    }
    req.version = version.ok_or_else(|| {
        DecodeError::new(
            outer.value_offset(),
            "TSRequest.version",
            "[0] INTEGER",
            "absent",
        )
    })?;
    Ok(Some((req, outer.total_len())))
}

fn decode_nego_data(seq: &Tlv<'_>, req: &mut TsRequest) -> Result<(), DecodeError> {
    if seq.tag != tag::SEQUENCE {
        return Err(DecodeError::new(
            seq.offset,
            "TSRequest.negoTokens",
            "SEQUENCE OF (0x30)",
            format!("tag {:#04x}", seq.tag),
        ));
    }
    for item in seq.children() {
        let item = item?;
        // NegoDataItem ::= SEQUENCE { negoToken [0] OCTET STRING }
        let token = (|| {
            if item.tag != tag::SEQUENCE {
                return Err(format!("tag {:#04x}", item.tag));
            }
            let ctx = item
                .children()
                .next()
                .ok_or_else(|| "an empty NegoDataItem".to_owned())?
                .map_err(|e| e.to_string())?;
            if ctx.tag != tag::CONTEXT {
                return Err(format!("tag {:#04x} instead of [0]", ctx.tag));
            }
            let (inner, _) = explicit_inner(&ctx).map_err(|e| e.to_string())?;
            octets(&inner, "negoToken")
                .map(<[u8]>::to_vec)
                .map_err(|e| e.to_string())
        })();
        match token {
            Ok(t) => req.nego_tokens.push(t),
            Err(e) => req.anomalies.push(format!(
                "unreadable NegoDataItem at offset {}: {e}",
                item.offset
            )),
        }
    }
    Ok(())
}

/// DER length octets, minimal form.
fn encode_len(len: usize, out: &mut Vec<u8>) {
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    match significant {
        [] => out.push(0),
        [b] if *b < 0x80 => out.push(*b),
        s => {
            // INVARIANT: a usize has at most 8 bytes, so the count fits in the low 7 bits.
            out.push(0x80 | u8::try_from(s.len()).unwrap_or(8));
            out.extend_from_slice(s);
        }
    }
}

/// One TLV, DER (minimal length).
pub fn encode_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    encode_len(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// A non-negative INTEGER, DER (minimal two's complement: a leading `00` when the top bit is
/// set).
pub fn encode_u32(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut content = Vec::with_capacity(5);
    let significant = bytes.get(skip..).unwrap_or_default();
    if significant.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    encode_tlv(tag::INTEGER, &content)
}

fn context(n: u8, inner: Vec<u8>) -> Vec<u8> {
    encode_tlv(tag::CONTEXT | n, &inner)
}

/// Encodes a TSRequest in DER, fields in ASN.1 order (`anomalies` ignored).
pub fn encode(req: &TsRequest) -> Vec<u8> {
    let mut body = context(0, encode_u32(req.version));
    if !req.nego_tokens.is_empty() {
        let items: Vec<u8> = req
            .nego_tokens
            .iter()
            .flat_map(|t| encode_tlv(tag::SEQUENCE, &context(0, encode_tlv(tag::OCTET_STRING, t))))
            .collect();
        body.extend(context(1, encode_tlv(tag::SEQUENCE, &items)));
    }
    if let Some(a) = &req.auth_info {
        body.extend(context(2, encode_tlv(tag::OCTET_STRING, a)));
    }
    if let Some(p) = &req.pub_key_auth {
        body.extend(context(3, encode_tlv(tag::OCTET_STRING, p)));
    }
    if let Some(e) = req.error_code {
        body.extend(context(4, encode_u32(e)));
    }
    if let Some(n) = &req.client_nonce {
        body.extend(context(5, encode_tlv(tag::OCTET_STRING, n)));
    }
    encode_tlv(tag::SEQUENCE, &body)
}

/// NTSTATUS / HRESULT names a TSRequest.errorCode carries (reference §3.8), `None` otherwise.
pub fn error_code_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0xC000_006D => "STATUS_LOGON_FAILURE",
        0xC000_006A => "STATUS_WRONG_PASSWORD",
        0xC000_0064 => "STATUS_NO_SUCH_USER",
        0xC000_006C => "STATUS_PASSWORD_RESTRICTION",
        0xC000_006E => "STATUS_ACCOUNT_RESTRICTION",
        0xC000_006F => "STATUS_INVALID_LOGON_HOURS",
        0xC000_0070 => "STATUS_INVALID_WORKSTATION",
        0xC000_0071 => "STATUS_PASSWORD_EXPIRED",
        0xC000_0224 => "STATUS_PASSWORD_MUST_CHANGE",
        0xC000_0072 => "STATUS_ACCOUNT_DISABLED",
        0xC000_0193 => "STATUS_ACCOUNT_EXPIRED",
        0xC000_0234 => "STATUS_ACCOUNT_LOCKED_OUT",
        0xC000_015B => "STATUS_LOGON_TYPE_NOT_GRANTED",
        0xC000_0022 => "STATUS_ACCESS_DENIED",
        0xC000_0133 => "STATUS_TIME_DIFFERENCE_AT_DC",
        0xC000_005E => "STATUS_NO_LOGON_SERVERS",
        0xC000_018D => "STATUS_TRUSTED_RELATIONSHIP_FAILURE",
        0xC000_018C => "STATUS_TRUSTED_DOMAIN_FAILURE",
        0xC000_018B => "STATUS_NO_TRUST_SAM_ACCOUNT",
        0xC000_00BB => "STATUS_NOT_SUPPORTED",
        0xC000_0388 => "STATUS_DOWNGRADE_DETECTED",
        0xC000_0413 => "STATUS_AUTHENTICATION_FIREWALL_FAILED",
        0xC000_02C3 => "STATUS_MUTUAL_AUTHENTICATION_FAILED",
        0xC000_02FA => "STATUS_SMARTCARD_LOGON_REQUIRED",
        0xC000_000D => "STATUS_INVALID_PARAMETER",
        0x8009_0302 => "SEC_E_UNSUPPORTED_FUNCTION",
        0x8009_0308 => "SEC_E_INVALID_TOKEN",
        0x8009_030C => "SEC_E_LOGON_DENIED",
        0x8009_030F => "SEC_E_MESSAGE_ALTERED",
        0x8009_0311 => "SEC_E_NO_AUTHENTICATING_AUTHORITY",
        0x8009_0322 => "SEC_E_WRONG_PRINCIPAL",
        0x8009_0324 => "SEC_E_TIME_SKEW",
        0x8009_0331 => "SEC_E_ALGORITHM_MISMATCH",
        _ => return None,
    })
}

/// An errorCode for people: `STATUS_LOGON_FAILURE (0xC000006D)`, or the hex alone.
pub fn status_name(code: u32) -> String {
    match error_code_name(code) {
        Some(name) => format!("{name} (0x{code:08X})"),
        None => format!("0x{code:08X}"),
    }
}

impl TsRequest {
    /// The NTLM message type (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE) of the first negoToken
    /// that carries an `NTLMSSP\0` message (raw or inside SPNEGO).
    pub fn ntlm_message_type(&self) -> Option<u32> {
        self.nego_tokens.iter().find_map(|t| {
            let (_, m) = super::ntlm::find_message(t)?;
            let b: [u8; 4] = m.get(8..12)?.try_into().ok()?;
            Some(u32::from_le_bytes(b))
        })
    }

    /// A short label: `TSRequest v6 NTLM CHALLENGE + pubKeyAuth`.
    pub fn label(&self) -> String {
        let mut s = format!("TSRequest v{}", self.version);
        match self.ntlm_message_type() {
            Some(1) => s.push_str(" NTLM NEGOTIATE"),
            Some(2) => s.push_str(" NTLM CHALLENGE"),
            Some(3) => s.push_str(" NTLM AUTHENTICATE"),
            Some(_) => s.push_str(" NTLM ?"),
            None if !self.nego_tokens.is_empty() => s.push_str(" negoTokens"),
            None => {}
        }
        if self.pub_key_auth.is_some() {
            s.push_str(" + pubKeyAuth");
        }
        if self.auth_info.is_some() {
            s.push_str(" + authInfo (credentials)");
        }
        if let Some(e) = self.error_code {
            s.push_str(&format!(" errorCode {}", status_name(e)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    // Reference E10: C1, TSRequest v6 with a raw NTLM NEGOTIATE.
    const E10: &str = "30 37 a0 03 02 01 06 a1 30 30 2e 30 2c a0 2a 04
                       28 4e 54 4c 4d 53 53 50 00 01 00 00 00 b7 82 08
                       e2 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                       00 0a 00 61 4a 00 00 00 0f";
    // Reference E12: S2 failure, errorCode STATUS_LOGON_FAILURE written as 4 raw bytes.
    const E12: &str = "30 0d a0 03 02 01 06 a4 06 02 04 c0 00 00 6d";

    /// Reference E13 with an 8-byte placeholder token, a 48-byte pubKeyAuth and nonce 00..1f.
    fn e13() -> Vec<u8> {
        let mut b = hex("30 6f a0 03 02 01 06 a1 10 30 0e 30 0c a0 0a 04 08");
        b.extend([0xAA; 8]); // negoToken placeholder
        b.extend(hex("a3 32 04 30"));
        b.extend([0x01; 48]); // pubKeyAuth
        b.extend(hex("a5 22 04 20"));
        b.extend(0u8..32); // clientNonce
        b
    }

    #[test]
    fn e10_decodes_and_reencodes_byte_for_byte() {
        let b = hex(E10);
        let (req, n) = decode(&b).unwrap().unwrap();
        assert_eq!(n, 57);
        assert_eq!(req.version, 6);
        assert_eq!(req.nego_tokens.len(), 1);
        assert_eq!(&req.nego_tokens[0][..8], b"NTLMSSP\0");
        assert_eq!(req.nego_tokens[0].len(), 40);
        assert!(req.anomalies.is_empty());
        assert_eq!(encode(&req), b);
        assert_eq!(
            encode(&TsRequest::with_token(6, req.nego_tokens[0].clone())),
            b
        );
    }

    #[test]
    fn e12_error_code_as_unsigned() {
        let (req, _) = decode(&hex(E12)).unwrap().unwrap();
        assert_eq!(req.error_code, Some(0xC000_006D));
        assert_eq!(error_code_name(0xC000_006D), Some("STATUS_LOGON_FAILURE"));
        // The strict encoding (leading 00) reads the same.
        let strict = hex("30 0e a0 03 02 01 06 a4 07 02 05 00 c0 00 00 6d");
        assert_eq!(
            decode(&strict).unwrap().unwrap().0.error_code,
            Some(0xC000_006D)
        );
        // Our encoder writes the strict form.
        assert_eq!(
            encode(&TsRequest {
                version: 6,
                error_code: Some(0xC000_006D),
                ..TsRequest::default()
            }),
            strict
        );
    }

    #[test]
    fn e13_pub_key_auth_and_nonce() {
        let b = e13();
        assert_eq!(b.len(), 113);
        let (req, n) = decode(&b).unwrap().unwrap();
        assert_eq!(n, 113);
        assert_eq!(req.pub_key_auth.as_deref().map(<[u8]>::len), Some(48));
        assert_eq!(req.client_nonce.as_deref().unwrap()[31], 31);
        assert_eq!(encode(&req), b);
    }

    #[test]
    fn e11_long_form_lengths() {
        // Reference E11 header + a 226-byte token (content irrelevant to the framing).
        let mut b = hex("30 81 f6 a0 03 02 01 06 a1 81 ee 30 81 eb 30 81 e8 a0 81 e5 04 81 e2");
        b.extend([0x55; 226]);
        let (req, n) = decode(&b).unwrap().unwrap();
        assert_eq!((n, req.nego_tokens[0].len()), (249, 226));
        assert_eq!(encode(&req), b);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let b = hex("30 82 00 0d a0 03 02 01 06 a4 06 02 04 c0 00 00 6d");
        let (req, n) = decode(&b).unwrap().unwrap();
        assert_eq!((req.version, n), (6, 17));
    }

    #[test]
    fn every_cut_needs_more_bytes() {
        for b in [hex(E10), hex(E12), e13()] {
            for n in 0..b.len() {
                assert_eq!(decode(&b[..n]), Ok(None), "cut at {n}");
                assert_eq!(split(&b[..n]), Ok(None), "cut at {n}");
            }
            assert_eq!(split(&b), Ok(Some(b.len())));
        }
    }

    #[test]
    fn lying_inner_lengths_name_the_offset() {
        // [1] claims 0x40 bytes inside a 0x37 sequence.
        let mut b = hex(E10);
        b[8] = 0x40;
        let e = decode(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("DER length", 8));
        // The OCTET STRING claims one byte more than its [0] holds.
        let mut b = hex(E10);
        b[0x10] = 0x29;
        let (req, _) = decode(&b).unwrap().unwrap();
        assert!(req.nego_tokens.is_empty());
        assert!(
            req.anomalies[0].contains("offset 16"),
            "{:?}",
            req.anomalies
        );
        // Version absent.
        let e = decode(&hex("30 08 a4 06 02 04 c0 00 00 6d")).unwrap_err();
        assert_eq!((e.field, e.offset), ("TSRequest.version", 2));
        // Not a SEQUENCE.
        let e = decode(&hex("31 00")).unwrap_err();
        assert_eq!((e.field, e.offset), ("TSRequest", 0));
        // Indefinite and huge lengths.
        assert_eq!(decode(&hex("30 80 00 00")).unwrap_err().field, "DER length");
        assert_eq!(decode(&hex("30 84 7f ff ff ff")).unwrap_err().offset, 1);
        assert_eq!(decode(&hex("30 85 00 00 00 00 01")).unwrap_err().offset, 1);
        // Multi-byte tag.
        assert_eq!(decode(&hex("3f 01 00")).unwrap_err().field, "DER tag");
    }

    #[test]
    fn unknown_fields_and_trailing_bytes_are_anomalies() {
        let b = hex("30 0c a0 04 02 01 06 00 a7 04 04 02 01 02");
        let (req, _) = decode(&b).unwrap().unwrap();
        assert_eq!(req.version, 6);
        assert_eq!(req.anomalies.len(), 2, "{:?}", req.anomalies);
    }

    #[test]
    fn integers() {
        for v in [
            0u32,
            1,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff_ffff,
            0x8000_0000,
            u32::MAX,
        ] {
            let b = encode_u32(v);
            let t = parse_tlv(&b, 0).unwrap();
            assert_eq!(integer_u32(&t, "x").unwrap(), v, "{v:#x} as {b:02x?}");
        }
        assert_eq!(encode_u32(0x80), hex("02 02 00 80"));
        assert!(integer_u32(&parse_tlv(&hex("02 00"), 0).unwrap(), "x").is_err());
        assert!(integer_u32(&parse_tlv(&hex("02 05 01 00 00 00 00"), 0).unwrap(), "x").is_err());
    }

    fn arb_request() -> impl Strategy<Value = TsRequest> {
        let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
        (
            any::<u32>(),
            proptest::collection::vec(bytes(300), 0..3),
            proptest::option::of(bytes(200)),
            proptest::option::of(bytes(300)),
            proptest::option::of(any::<u32>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 32)),
        )
            .prop_map(
                |(version, nego_tokens, auth_info, pub_key_auth, error_code, client_nonce)| {
                    TsRequest {
                        version,
                        nego_tokens,
                        auth_info,
                        pub_key_auth,
                        error_code,
                        client_nonce,
                        anomalies: Vec::new(),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(req in arb_request()) {
            let b = encode(&req);
            let (back, n) = decode(&b).unwrap().unwrap();
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(back, req);
        }

        #[test]
        fn no_panic_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&b);
            let _ = split(&b);
            for t in TlvIter::new(&b, 0).flatten() {
                let _ = t.children().count();
            }
        }

        #[test]
        fn no_panic_on_mutated_requests(req in arb_request(), at in any::<usize>(), v in any::<u8>()) {
            let mut b = encode(&req);
            if !b.is_empty() {
                let i = at % b.len();
                b[i] = v;
            }
            let _ = decode(&b);
        }
    }
}
