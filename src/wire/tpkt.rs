//! TPKT framing (RFC 1006 §6, ITU-T T.123 §8).
//!
//! ```text
//!  0        1        2                 4
//! +--------+--------+-----------------+------------
//! | 0x03   | 0x00   | length (u16be)  | X.224 TPDU ...
//! +--------+--------+-----------------+------------
//! ```
//! `length` counts the whole PDU including these 4 bytes.

use super::{DecodeError, Decoded};

/// TPKT version byte.
pub const VERSION: u8 = 0x03;
/// Size of the TPKT header.
pub const HEADER_LEN: usize = 4;
/// Shortest legal TPKT: header + the shortest X.224 TPDU (DT: `02 F0 80`).
pub const MIN_LEN: usize = 7;

/// A TPKT header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TpktHeader {
    /// Total PDU length, header included.
    pub length: u16,
}

/// Does `buf` start like a TPKT (version 3)? `None` when no byte is there yet.
pub fn looks_like_tpkt(buf: &[u8]) -> Option<bool> {
    buf.first().map(|&b| b == VERSION)
}

/// Reads the header at the start of `buf`.
///
/// `Ok(None)` when fewer than 4 bytes are present. A version other than 3 or a length below
/// [`MIN_LEN`] is an error naming the field.
pub fn decode_header(buf: &[u8]) -> Decoded<TpktHeader> {
    let Some(&[version, _, l0, l1]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let length = u16::from_be_bytes([l0, l1]);
    if version != VERSION {
        return Err(DecodeError::new(
            0,
            "TPKT.version",
            "0x03",
            format!("{version:#04x}"),
        ));
    }
    if usize::from(length) < MIN_LEN {
        return Err(DecodeError::new(
            2,
            "TPKT.length",
            format!(">= {MIN_LEN}"),
            length.to_string(),
        ));
    }
    Ok(Some(TpktHeader { length }))
}

/// Splits one whole TPKT PDU off the front of `buf`: `Ok(Some(pdu))` (header included),
/// `Ok(None)` if it is not all there yet.
pub fn split_pdu(buf: &[u8]) -> Decoded<&[u8]> {
    match decode_header(buf)? {
        None => Ok(None),
        Some(h) => Ok(buf.get(..usize::from(h.length))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // MS-RDPBCGR 4.1.1 spec example CR (cookie "eltons").
    const SPEC_CR: &[u8] = &[
        0x03, 0x00, 0x00, 0x2c, // TPKT v3, length 44
        0x27, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, // X.224 CR header
        0x43, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x3a, 0x20, 0x6d, 0x73, 0x74, 0x73, 0x68, 0x61, 0x73,
        0x68, 0x3d, 0x65, 0x6c, 0x74, 0x6f, 0x6e, 0x73, 0x0d, 0x0a, // cookie
        0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // RDP_NEG_REQ
    ];

    #[test]
    fn spec_example_header() {
        let h = decode_header(SPEC_CR).unwrap().unwrap();
        assert_eq!(h.length, 44);
        assert_eq!(split_pdu(SPEC_CR).unwrap().unwrap().len(), 44);
    }

    #[test]
    fn every_cut_needs_more_bytes() {
        for n in 0..SPEC_CR.len() {
            assert_eq!(split_pdu(&SPEC_CR[..n]), Ok(None), "cut at {n}");
        }
    }

    #[test]
    fn lying_lengths_are_errors_with_offsets() {
        for bad in [0u16, 3, 4, 6] {
            let b = bad.to_be_bytes();
            let e = decode_header(&[3, 0, b[0], b[1]]).unwrap_err();
            assert_eq!((e.field, e.offset), ("TPKT.length", 2));
        }
        // 65535 claims more than is there: wait (the caller caps the wait).
        assert_eq!(split_pdu(&[3, 0, 0xff, 0xff, 0, 0, 0]), Ok(None));
        let e = decode_header(&[5, 1, 0, 0x2b]).unwrap_err();
        assert_eq!((e.field, e.offset), ("TPKT.version", 0));
    }
}
