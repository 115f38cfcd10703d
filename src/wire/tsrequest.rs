//! The minimal CredSSP TSRequest reading `proxy --fresh-cert` needs (MS-CSSP 2.2.1), over
//! decrypted TLS application data. A fuller DER walker lives in the `credssp` branch
//! (`wire/credssp.rs`); this module only answers: which fields are present, the version, the
//! NTLM message type inside negoTokens, and the errorCode.
//!
//! ```text
//! TSRequest ::= SEQUENCE {
//!   version    [0] INTEGER,
//!   negoTokens [1] NegoData  OPTIONAL,   -- SPNEGO / NTLM messages
//!   authInfo   [2] OCTET STRING OPTIONAL, -- encrypted credentials
//!   pubKeyAuth [3] OCTET STRING OPTIONAL, -- binds the TLS server public key
//!   errorCode  [4] INTEGER OPTIONAL,      -- NTSTATUS / SEC_E (version >= 3)
//!   clientNonce [5] OCTET STRING OPTIONAL }
//! ```

use serde::Serialize;

use super::{DecodeError, Decoded};

/// What a TSRequest says, as far as rdpdiag reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TsRequest {
    pub version: Option<u32>,
    /// NTLM message type in negoTokens (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE), when an
    /// `NTLMSSP\0` signature is present.
    pub ntlm_message: Option<u32>,
    pub nego_tokens: bool,
    pub auth_info: bool,
    pub pub_key_auth: bool,
    pub error_code: Option<u32>,
    pub client_nonce: bool,
}

impl TsRequest {
    /// A short label: `TSRequest v6 NTLM CHALLENGE + pubKeyAuth`.
    pub fn label(&self) -> String {
        let mut s = format!(
            "TSRequest v{}",
            self.version.map_or("?".to_owned(), |v| v.to_string())
        );
        if let Some(t) = self.ntlm_message {
            s.push_str(match t {
                1 => " NTLM NEGOTIATE",
                2 => " NTLM CHALLENGE",
                3 => " NTLM AUTHENTICATE",
                _ => " NTLM ?",
            });
        } else if self.nego_tokens {
            s.push_str(" negoTokens");
        }
        if self.pub_key_auth {
            s.push_str(" + pubKeyAuth");
        }
        if self.auth_info {
            s.push_str(" + authInfo (credentials)");
        }
        if let Some(e) = self.error_code {
            s.push_str(&format!(" errorCode {}", status_name(e)));
        }
        s
    }
}

/// One DER TLV at the start of `buf`: (tag, header length, content length).
fn tlv(buf: &[u8]) -> Decoded<(u8, usize, usize)> {
    let (Some(&tag), Some(&l0)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if l0 < 0x80 {
        return Ok(Some((tag, 2, usize::from(l0))));
    }
    let n = usize::from(l0 & 0x7f);
    if n == 0 || n > 4 {
        return Err(DecodeError::new(
            1,
            "DER length",
            "1 to 4 length octets",
            format!("0x{l0:02x}"),
        ));
    }
    let Some(bytes) = buf.get(2..2 + n) else {
        return Ok(None);
    };
    let len = bytes
        .iter()
        .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok(Some((tag, 2 + n, len)))
}

/// Length of the whole DER element at the start of `buf` (`Ok(None)`: need more bytes).
pub fn element_len(buf: &[u8]) -> Decoded<usize> {
    Ok(tlv(buf)?.map(|(_, h, l)| h.saturating_add(l)))
}

fn uint(content: &[u8]) -> Option<u32> {
    // INTEGER content: big-endian two's complement; errorCode values like 0xC000006D are
    // encoded as 5 bytes with a leading 0x00, or as 4 bytes (negative) by some encoders.
    if content.is_empty() || content.len() > 5 {
        return None;
    }
    Some(
        content
            .iter()
            .fold(0_u64, |acc, b| (acc << 8) | u64::from(*b))
            .to_le_bytes()
            .iter()
            .take(4)
            .enumerate()
            .fold(0_u32, |acc, (i, b)| acc | (u32::from(*b) << (8 * i))),
    )
}

/// Decodes one whole TSRequest (`buf` = exactly the element, see [`element_len`]).
pub fn decode(buf: &[u8]) -> Result<TsRequest, DecodeError> {
    let Some((tag, h, len)) = tlv(buf)? else {
        return Err(DecodeError::new(
            0,
            "TSRequest",
            "a DER SEQUENCE",
            "too few bytes",
        ));
    };
    if tag != 0x30 {
        return Err(DecodeError::new(
            0,
            "TSRequest",
            "SEQUENCE (0x30)",
            format!("0x{tag:02x}"),
        ));
    }
    let body = buf
        .get(h..h.saturating_add(len))
        .ok_or_else(|| DecodeError::new(1, "TSRequest length", format!("{len} bytes"), "fewer"))?;
    let mut t = TsRequest::default();
    let mut pos = 0;
    while pos < body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        let Some((ctag, ch, clen)) = tlv(rest).map_err(|e| e.shifted(h + pos))? else {
            break;
        };
        let Some(content) = rest.get(ch..ch.saturating_add(clen)) else {
            return Err(DecodeError::new(
                h + pos,
                "TSRequest field",
                format!("{clen} content bytes"),
                "fewer",
            ));
        };
        // Each field is [n] EXPLICIT: the content is one inner TLV.
        let inner = tlv(content)
            .ok()
            .flatten()
            .and_then(|(_, ih, il)| content.get(ih..ih.saturating_add(il)));
        match ctag {
            0xa0 => t.version = inner.and_then(uint),
            0xa1 => {
                t.nego_tokens = true;
                t.ntlm_message = ntlm_type(content);
            }
            0xa2 => t.auth_info = true,
            0xa3 => t.pub_key_auth = true,
            0xa4 => t.error_code = inner.and_then(uint),
            0xa5 => t.client_nonce = true,
            _ => {}
        }
        pos = pos.saturating_add(ch).saturating_add(clen);
    }
    Ok(t)
}

fn ntlm_type(bytes: &[u8]) -> Option<u32> {
    const SIG: &[u8] = b"NTLMSSP\0";
    let at = bytes.windows(SIG.len()).position(|w| w == SIG)?;
    let t = bytes.get(at + 8..at + 12)?;
    Some(u32::from_le_bytes([
        *t.first()?,
        *t.get(1)?,
        *t.get(2)?,
        *t.get(3)?,
    ]))
}

/// NTSTATUS / SEC_E names for the errorCodes a host sends (MS-CSSP 2.2.1; reference §2.8).
pub fn status_name(code: u32) -> String {
    let name = match code {
        0xC000_006D => "STATUS_LOGON_FAILURE",
        0xC000_006A => "STATUS_WRONG_PASSWORD",
        0xC000_0064 => "STATUS_NO_SUCH_USER",
        0xC000_006E => "STATUS_ACCOUNT_RESTRICTION",
        0xC000_006F => "STATUS_INVALID_LOGON_HOURS",
        0xC000_0070 => "STATUS_INVALID_WORKSTATION",
        0xC000_0071 => "STATUS_PASSWORD_EXPIRED",
        0xC000_0072 => "STATUS_ACCOUNT_DISABLED",
        0xC000_0193 => "STATUS_ACCOUNT_EXPIRED",
        0xC000_0224 => "STATUS_PASSWORD_MUST_CHANGE",
        0xC000_0234 => "STATUS_ACCOUNT_LOCKED_OUT",
        0xC000_015B => "STATUS_LOGON_TYPE_NOT_GRANTED",
        0xC000_0022 => "STATUS_ACCESS_DENIED",
        0xC000_018B => "STATUS_NO_TRUST_SAM_ACCOUNT",
        0x8009_0302 => "SEC_E_UNSUPPORTED_FUNCTION",
        0x8009_0308 => "SEC_E_INVALID_TOKEN",
        0x8009_030C => "SEC_E_LOGON_DENIED",
        0x8009_0311 => "SEC_E_NO_AUTHENTICATING_AUTHORITY",
        0x8009_0322 => "SEC_E_WRONG_PRINCIPAL",
        0x8009_0324 => "SEC_E_TIME_SKEW",
        0x8009_0331 => "SEC_E_ALGORITHM_MISMATCH",
        _ => return format!("0x{code:08X}"),
    };
    format!("{name} (0x{code:08X})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_tsrequest() {
        // SEQUENCE { [0] INTEGER 6, [4] INTEGER 0x00C000006D }
        let b = [
            0x30, 0x0e, // SEQUENCE, 14 bytes
            0xa0, 0x03, 0x02, 0x01, 0x06, // version 6
            0xa4, 0x07, 0x02, 0x05, 0x00, 0xc0, 0x00, 0x00, 0x6d, // errorCode
        ];
        assert_eq!(element_len(&b).unwrap(), Some(16));
        let t = decode(&b).unwrap();
        assert_eq!(t.version, Some(6));
        assert_eq!(t.error_code, Some(0xC000_006D));
        assert!(t.label().contains("STATUS_LOGON_FAILURE"));
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err() || cut >= 2);
        }
    }

    #[test]
    fn nego_token_ntlm_type() {
        let mut inner = b"NTLMSSP\0".to_vec();
        inner.extend_from_slice(&2_u32.to_le_bytes());
        let mut b = vec![0x30, 0, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1];
        b.push(u8::try_from(inner.len()).unwrap());
        b.extend(&inner);
        b[1] = u8::try_from(b.len() - 2).unwrap();
        let t = decode(&b).unwrap();
        assert_eq!(t.ntlm_message, Some(2));
        assert!(t.label().contains("CHALLENGE"));
    }
}
