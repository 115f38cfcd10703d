//! T.125 MCS PDUs as RDP uses them during connection establishment (MS-RDPBCGR 2.2.1.3–2.2.1.9;
//! reference §2.13, §2.15, §2.17, §3.13).
//!
//! The input is the X.224 DT user data: a TPKT PDU without its 4-byte header and `02 F0 80`.
//! Two encodings share it:
//!
//! ```text
//! BER (connect PDUs)       7F 65 len  Connect-Initial   { selectors, upwardFlag, 3 x params, userData }
//!                          7F 66 len  Connect-Response  { result, calledConnectId, params, userData }
//!                          userData = GCC ConnectData (see `gcc`)
//! PER (domain PDUs)        first byte = choice << 2 | 2 option bits
//!                          04 Erect Domain Request        28 Attach User Request
//!                          2E Attach User Confirm         38 Channel Join Request
//!                          3E Channel Join Confirm        20/21 Disconnect Provider Ultimatum
//!                          64 Send Data Request           68 Send Data Indication
//! ```
//!
//! Offsets in errors and in returned structs are relative to the start of the MCS bytes.
//! The caller has framed the PDU with TPKT already, so input that ends early is an error
//! naming the missing field, never "needs more bytes".

use serde::Serialize;

use super::DecodeError;
use super::cursor::ReadCursor;
use super::gcc;

/// One decoded MCS PDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pdu", rename_all = "snake_case")]
pub enum McsPdu {
    /// Client MCS Connect-Initial with the GCC Conference Create Request (2.2.1.3).
    ConnectInitial(ConnectInitial),
    /// Server MCS Connect-Response with the GCC Conference Create Response (2.2.1.4).
    ConnectResponse(ConnectResponse),
    /// Another BER connect PDU (Connect-Additional 103, Connect-Result 104): RDP never sends
    /// them; the application tag number is kept.
    OtherConnect { tag: u8 },
    /// Erect Domain Request (2.2.1.5).
    ErectDomainRequest,
    /// Attach User Request (2.2.1.6).
    AttachUserRequest,
    /// Attach User Confirm (2.2.1.7); `result` is an MCS result (§3.13).
    AttachUserConfirm { result: u8 },
    /// Channel Join Request (2.2.1.8).
    ChannelJoinRequest { channel_id: u16 },
    /// Channel Join Confirm (2.2.1.9): `channel_id` is channelId, or the requested one when
    /// channelId is absent.
    ChannelJoinConfirm { result: u8, channel_id: u16 },
    /// Disconnect Provider Ultimatum (T.125 §11.15); reason name via [`dpu_reason_name`].
    DisconnectProviderUltimatum { reason: u8 },
    /// Send Data Request: client to server data on a channel.
    SendDataRequest { channel_id: u16, data_len: usize },
    /// Send Data Indication: server to client data on a channel.
    SendDataIndication { channel_id: u16, data_len: usize },
    /// Any other DomainMCSPDU; name via [`domain_choice_name`].
    Other { choice: u8 },
}

impl McsPdu {
    /// The T.125 name, as Wireshark prints it (`connect-initial`, `attachUserConfirm` ...).
    pub fn name(&self) -> &'static str {
        match self {
            McsPdu::ConnectInitial(_) => "connect-initial",
            McsPdu::ConnectResponse(_) => "connect-response",
            McsPdu::OtherConnect { tag } => match tag {
                103 => "connect-additional",
                104 => "connect-result",
                _ => "unknown connect pdu",
            },
            McsPdu::ErectDomainRequest => domain_choice_name(ERECT_DOMAIN_REQUEST),
            McsPdu::AttachUserRequest => domain_choice_name(ATTACH_USER_REQUEST),
            McsPdu::AttachUserConfirm { .. } => domain_choice_name(ATTACH_USER_CONFIRM),
            McsPdu::ChannelJoinRequest { .. } => domain_choice_name(CHANNEL_JOIN_REQUEST),
            McsPdu::ChannelJoinConfirm { .. } => domain_choice_name(CHANNEL_JOIN_CONFIRM),
            McsPdu::DisconnectProviderUltimatum { .. } => {
                domain_choice_name(DISCONNECT_PROVIDER_ULTIMATUM)
            }
            McsPdu::SendDataRequest { .. } => domain_choice_name(SEND_DATA_REQUEST),
            McsPdu::SendDataIndication { .. } => domain_choice_name(SEND_DATA_INDICATION),
            McsPdu::Other { choice } => domain_choice_name(*choice),
        }
    }
}

/// MCS Connect-Initial (T.125 §11.1) with what the GCC client data says (MS-RDPBCGR 2.2.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectInitial {
    /// CS_CORE.
    pub client_core: Option<gcc::ClientCore>,
    /// CS_SECURITY.
    pub client_security: Option<gcc::ClientSecurity>,
    /// CS_NET channel names (`rdpdr`, `cliprdr` ...).
    pub channels: Vec<String>,
    /// CS_CLUSTER Flags.
    pub cluster_flags: Option<u32>,
    /// CS_MULTITRANSPORT flags: present = the client may open UDP side channels.
    pub multitransport_flags: Option<u32>,
    /// Odd but not fatal: trailing bytes, inner lengths that disagree, broken blocks.
    pub anomalies: Vec<String>,
}

/// MCS Connect-Response (T.125 §11.2) with what the GCC server data says (MS-RDPBCGR 2.2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectResponse {
    /// MCS result: 0 rt-successful; name via [`result_name`].
    pub result: u8,
    /// SC_CORE.
    pub server_core: Option<gcc::ServerCore>,
    /// SC_SECURITY.
    pub server_security: Option<gcc::ServerSecurity>,
    /// SC_NET: the I/O channel and the static channels' IDs.
    pub server_net: Option<gcc::ServerNet>,
    /// GCC ConferenceCreateResponse.result, when readable (0 success).
    pub gcc_result: Option<u8>,
    /// SC_MULTITRANSPORT flags: present = the server offers UDP transports.
    pub multitransport_flags: Option<u32>,
    pub anomalies: Vec<String>,
}

/// DomainMCSPDU choice numbers (T.125 §7, the CHOICE index).
pub const ERECT_DOMAIN_REQUEST: u8 = 1;
pub const DISCONNECT_PROVIDER_ULTIMATUM: u8 = 8;
pub const ATTACH_USER_REQUEST: u8 = 10;
pub const ATTACH_USER_CONFIRM: u8 = 11;
pub const CHANNEL_JOIN_REQUEST: u8 = 14;
pub const CHANNEL_JOIN_CONFIRM: u8 = 15;
pub const SEND_DATA_REQUEST: u8 = 25;
pub const SEND_DATA_INDICATION: u8 = 26;

/// BER tag of the connect PDUs: APPLICATION class, constructed, high tag number form.
const BER_APPLICATION_HIGH_TAG: u8 = 0x7F;
const TAG_CONNECT_INITIAL: u8 = 101;
const TAG_CONNECT_RESPONSE: u8 = 102;
const BER_BOOLEAN: u8 = 0x01;
const BER_INTEGER: u8 = 0x02;
const BER_OCTET_STRING: u8 = 0x04;
const BER_ENUMERATED: u8 = 0x0A;
const BER_SEQUENCE: u8 = 0x30;
/// Option bit of a domain PDU's first byte: initiator (Attach User Confirm) or channelId
/// (Channel Join Confirm) present.
const OPTIONAL_FIELD_PRESENT: u8 = 0x02;

/// Decodes one MCS PDU. `mcs` = the bytes after the X.224 DT header (TPKT(4) + 02 F0 80
/// stripped), offsets in errors and in returned structs relative to the start of `mcs`.
pub fn decode(mcs: &[u8]) -> Result<McsPdu, DecodeError> {
    match mcs.first() {
        None => Err(DecodeError::new(0, "MCS PDU", "1 byte or more", "0 bytes")),
        Some(&BER_APPLICATION_HIGH_TAG) => decode_connect(mcs),
        Some(_) => decode_domain(mcs),
    }
}

/// MCS result names (T.125 Result; reference §3.13).
pub fn result_name(result: u8) -> &'static str {
    match result {
        0 => "rt-successful",
        1 => "rt-domain-merging",
        2 => "rt-domain-not-hierarchical",
        3 => "rt-no-such-channel",
        4 => "rt-no-such-domain",
        5 => "rt-no-such-user",
        6 => "rt-not-admitted",
        7 => "rt-other-user-id",
        8 => "rt-parameters-unacceptable",
        9 => "rt-token-not-available",
        10 => "rt-token-not-possessed",
        11 => "rt-too-many-channels",
        12 => "rt-too-many-tokens",
        13 => "rt-too-many-users",
        14 => "rt-unspecified-failure",
        15 => "rt-user-rejected",
        _ => "unknown",
    }
}

/// Disconnect Provider Ultimatum reasons (T.125 Reason; reference §2.17).
pub fn dpu_reason_name(reason: u8) -> &'static str {
    match reason {
        0 => "rn-domain-disconnected",
        1 => "rn-provider-initiated",
        2 => "rn-token-purged",
        3 => "rn-user-requested",
        4 => "rn-channel-purged",
        _ => "unknown",
    }
}

/// DomainMCSPDU names by CHOICE index (T.125 §7).
pub fn domain_choice_name(choice: u8) -> &'static str {
    const NAMES: [&str; 43] = [
        "plumbDomainIndication",
        "erectDomainRequest",
        "mergeChannelsRequest",
        "mergeChannelsConfirm",
        "purgeChannelsIndication",
        "mergeTokensRequest",
        "mergeTokensConfirm",
        "purgeTokensIndication",
        "disconnectProviderUltimatum",
        "rejectMCSPDUUltimatum",
        "attachUserRequest",
        "attachUserConfirm",
        "detachUserRequest",
        "detachUserIndication",
        "channelJoinRequest",
        "channelJoinConfirm",
        "channelLeaveRequest",
        "channelConveneRequest",
        "channelConveneConfirm",
        "channelDisbandRequest",
        "channelDisbandIndication",
        "channelAdmitRequest",
        "channelAdmitIndication",
        "channelExpelRequest",
        "channelExpelIndication",
        "sendDataRequest",
        "sendDataIndication",
        "uniformSendDataRequest",
        "uniformSendDataIndication",
        "tokenGrabRequest",
        "tokenGrabConfirm",
        "tokenInhibitRequest",
        "tokenInhibitConfirm",
        "tokenGiveRequest",
        "tokenGiveIndication",
        "tokenGiveResponse",
        "tokenGiveConfirm",
        "tokenPleaseRequest",
        "tokenPleaseIndication",
        "tokenReleaseRequest",
        "tokenReleaseConfirm",
        "tokenTestRequest",
        "tokenTestConfirm",
    ];
    NAMES.get(usize::from(choice)).copied().unwrap_or("unknown")
}

// ---------------------------------------------------------------------------------------------
// BER connect PDUs

/// BER definite length (X.690 8.1.3): short form, or `0x81..=0x84` + that many bytes. The
/// indefinite form (`0x80`) is not used by MCS and is refused.
fn read_ber_len(c: &mut ReadCursor<'_>, field: &'static str) -> Result<usize, DecodeError> {
    let at = c.pos();
    let first = c.read_u8(field)?;
    if first < 0x80 {
        return Ok(usize::from(first));
    }
    let n = first & 0x7F;
    if n == 0 || n > 4 {
        return Err(DecodeError::new(
            at,
            field,
            "a definite BER length of at most 4 bytes",
            format!("{first:#04x}"),
        ));
    }
    let mut len = 0u32;
    for _ in 0..n {
        len = len << 8 | u32::from(c.read_u8(field)?);
    }
    Ok(usize::try_from(len).unwrap_or(usize::MAX))
}

/// Reads `tag length value`, checking the tag and that the value is all there. Returns the
/// value's offset and bytes.
fn read_tlv<'a>(
    c: &mut ReadCursor<'a>,
    tag: u8,
    field: &'static str,
    len_field: &'static str,
) -> Result<(usize, &'a [u8]), DecodeError> {
    let at = c.pos();
    let found = c.read_u8(field)?;
    if found != tag {
        return Err(DecodeError::new(
            at,
            field,
            format!("tag {tag:#04x}"),
            format!("{found:#04x}"),
        ));
    }
    read_len_and_value(c, len_field)
}

/// Reads a BER length and that many bytes; a length beyond the bytes present is an error at
/// the length's offset.
fn read_len_and_value<'a>(
    c: &mut ReadCursor<'a>,
    len_field: &'static str,
) -> Result<(usize, &'a [u8]), DecodeError> {
    let len_at = c.pos();
    let len = read_ber_len(c, len_field)?;
    if len > c.remaining() {
        return Err(DecodeError::new(
            len_at,
            len_field,
            format!("<= {} (bytes present)", c.remaining()),
            len.to_string(),
        ));
    }
    let start = c.pos();
    Ok((start, c.read_slice(len, len_field)?))
}

/// A BER INTEGER/ENUMERATED read as unsigned (Windows writes 65535 as `02 02 ff ff`, which is
/// strictly −1; every implementation reads it as 65535, reference §2.13).
fn ber_unsigned(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 5 {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |acc, &b| Some(acc << 8 | u64::from(b)))
        .and_then(|v| u32::try_from(v).ok())
}

fn decode_connect(mcs: &[u8]) -> Result<McsPdu, DecodeError> {
    let mut c = ReadCursor::new(mcs);
    c.skip(1, "MCS connect PDU tag")?;
    let tag_at = c.pos();
    let tag = c.read_u8("MCS connect PDU tag")?;
    let (field, len_field) = match tag {
        TAG_CONNECT_INITIAL => ("Connect-Initial", "Connect-Initial.length"),
        TAG_CONNECT_RESPONSE => ("Connect-Response", "Connect-Response.length"),
        // High tag numbers above 127 would take more bytes; none exists in T.125.
        t if t & 0x80 != 0 => {
            return Err(DecodeError::new(
                tag_at,
                "MCS connect PDU tag",
                "a one-byte application tag number",
                format!("{t:#04x}"),
            ));
        }
        t => return Ok(McsPdu::OtherConnect { tag: t }),
    };
    let (start, body) = read_len_and_value(&mut c, len_field)?;
    let mut anomalies = Vec::new();
    if c.remaining() > 0 {
        anomalies.push(format!(
            "{} trailing byte(s) after the {field} at offset {}",
            c.remaining(),
            c.pos()
        ));
    }
    // A cursor over the PDU up to the end of the BER value, positioned at its start, so that
    // every offset stays relative to the MCS start.
    let mut body_c = ReadCursor::new(mcs.get(..start + body.len()).unwrap_or(mcs));
    body_c.skip(start, field)?;
    if tag == TAG_CONNECT_INITIAL {
        connect_initial(&mut body_c, anomalies).map(McsPdu::ConnectInitial)
    } else {
        connect_response(&mut body_c, anomalies).map(McsPdu::ConnectResponse)
    }
}

/// Connect-Initial (T.125 §11.1; reference §2.13):
///
/// ```text
/// 7F 65 len
///   04 len  callingDomainSelector
///   04 len  calledDomainSelector
///   01 01   upwardFlag
///   30 len  targetParameters   (8 INTEGERs)
///   30 len  minimumParameters
///   30 len  maximumParameters
///   04 len  userData           GCC ConferenceCreateRequest
/// ```
fn connect_initial(
    c: &mut ReadCursor<'_>,
    mut anomalies: Vec<String>,
) -> Result<ConnectInitial, DecodeError> {
    read_tlv(
        c,
        BER_OCTET_STRING,
        "Connect-Initial.callingDomainSelector",
        "Connect-Initial.callingDomainSelector.length",
    )?;
    read_tlv(
        c,
        BER_OCTET_STRING,
        "Connect-Initial.calledDomainSelector",
        "Connect-Initial.calledDomainSelector.length",
    )?;
    read_tlv(
        c,
        BER_BOOLEAN,
        "Connect-Initial.upwardFlag",
        "Connect-Initial.upwardFlag.length",
    )?;
    read_tlv(
        c,
        BER_SEQUENCE,
        "Connect-Initial.targetParameters",
        "Connect-Initial.targetParameters.length",
    )?;
    read_tlv(
        c,
        BER_SEQUENCE,
        "Connect-Initial.minimumParameters",
        "Connect-Initial.minimumParameters.length",
    )?;
    read_tlv(
        c,
        BER_SEQUENCE,
        "Connect-Initial.maximumParameters",
        "Connect-Initial.maximumParameters.length",
    )?;
    let (ud_at, ud) = read_tlv(
        c,
        BER_OCTET_STRING,
        "Connect-Initial.userData",
        "Connect-Initial.userData.length",
    )?;
    if c.remaining() > 0 {
        anomalies.push(format!(
            "{} byte(s) after the Connect-Initial userData at offset {}",
            c.remaining(),
            c.pos()
        ));
    }
    let mut data = gcc::decode_conference_create_request(ud, ud_at)?;
    anomalies.append(&mut data.anomalies);
    Ok(ConnectInitial {
        client_core: data.core,
        client_security: data.security,
        channels: data.channels,
        cluster_flags: data.cluster_flags,
        multitransport_flags: data.multitransport_flags,
        anomalies,
    })
}

/// Connect-Response (T.125 §11.2; reference §2.15):
///
/// ```text
/// 7F 66 len
///   0A 01 rr  result            ENUMERATED, 0 = rt-successful
///   02 len    calledConnectId
///   30 len    domainParameters
///   04 len    userData          GCC ConferenceCreateResponse
/// ```
///
/// A response that ends after its result (a refusal with nothing else to say) is reported with
/// an anomaly rather than refused: the result is what matters.
fn connect_response(
    c: &mut ReadCursor<'_>,
    mut anomalies: Vec<String>,
) -> Result<ConnectResponse, DecodeError> {
    let (result_at, result) = read_tlv(
        c,
        BER_ENUMERATED,
        "Connect-Response.result",
        "Connect-Response.result.length",
    )?;
    let result = ber_unsigned(result)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| {
            DecodeError::new(
                result_at,
                "Connect-Response.result",
                "an enumerated value of 0..255",
                format!("{result:02x?}"),
            )
        })?;
    let mut resp = ConnectResponse {
        result,
        server_core: None,
        server_security: None,
        server_net: None,
        gcc_result: None,
        multitransport_flags: None,
        anomalies: Vec::new(),
    };
    if c.remaining() == 0 {
        anomalies.push(format!(
            "Connect-Response ends after its result at offset {}: no calledConnectId, \
             domainParameters or userData",
            c.pos()
        ));
        resp.anomalies = anomalies;
        return Ok(resp);
    }
    read_tlv(
        c,
        BER_INTEGER,
        "Connect-Response.calledConnectId",
        "Connect-Response.calledConnectId.length",
    )?;
    read_tlv(
        c,
        BER_SEQUENCE,
        "Connect-Response.domainParameters",
        "Connect-Response.domainParameters.length",
    )?;
    let (ud_at, ud) = read_tlv(
        c,
        BER_OCTET_STRING,
        "Connect-Response.userData",
        "Connect-Response.userData.length",
    )?;
    if c.remaining() > 0 {
        anomalies.push(format!(
            "{} byte(s) after the Connect-Response userData at offset {}",
            c.remaining(),
            c.pos()
        ));
    }
    let mut data = gcc::decode_conference_create_response(ud, ud_at)?;
    anomalies.append(&mut data.anomalies);
    resp.server_core = data.core;
    resp.server_security = data.security;
    resp.server_net = data.net;
    resp.gcc_result = data.gcc_result;
    resp.multitransport_flags = data.multitransport_flags;
    resp.anomalies = anomalies;
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// PER domain PDUs

/// Decodes a DomainMCSPDU (aligned PER, T.125 §7; reference §2.17). The CHOICE index is the
/// first byte's top 6 bits.
fn decode_domain(mcs: &[u8]) -> Result<McsPdu, DecodeError> {
    let mut c = ReadCursor::new(mcs);
    let b0 = c.read_u8("DomainMCSPDU choice")?;
    let choice = b0 >> 2;
    Ok(match choice {
        ERECT_DOMAIN_REQUEST => {
            // subHeight and subInterval: INTEGER (0..MAX), a length byte and the value.
            per_integer(&mut c, "ErectDomainRequest.subHeight")?;
            per_integer(&mut c, "ErectDomainRequest.subInterval")?;
            McsPdu::ErectDomainRequest
        }
        DISCONNECT_PROVIDER_ULTIMATUM => {
            // reason: 3 bits straddling the byte boundary, b0 bits 1..0 and b1 bit 7.
            let b1 = c.read_u8("DisconnectProviderUltimatum.reason")?;
            McsPdu::DisconnectProviderUltimatum {
                reason: (b0 & 0x03) << 1 | b1 >> 7,
            }
        }
        ATTACH_USER_REQUEST => McsPdu::AttachUserRequest,
        ATTACH_USER_CONFIRM => {
            let result = per_result(&mut c, b0, "AttachUserConfirm.result")?;
            if b0 & OPTIONAL_FIELD_PRESENT != 0 {
                c.skip(2, "AttachUserConfirm.initiator")?;
            }
            McsPdu::AttachUserConfirm { result }
        }
        CHANNEL_JOIN_REQUEST => {
            c.skip(2, "ChannelJoinRequest.initiator")?;
            let channel_id = c.read_u16_be("ChannelJoinRequest.channelId")?;
            McsPdu::ChannelJoinRequest { channel_id }
        }
        CHANNEL_JOIN_CONFIRM => {
            let result = per_result(&mut c, b0, "ChannelJoinConfirm.result")?;
            c.skip(2, "ChannelJoinConfirm.initiator")?;
            let requested = c.read_u16_be("ChannelJoinConfirm.requested")?;
            let channel_id = if b0 & OPTIONAL_FIELD_PRESENT != 0 {
                c.read_u16_be("ChannelJoinConfirm.channelId")?
            } else {
                requested
            };
            McsPdu::ChannelJoinConfirm { result, channel_id }
        }
        SEND_DATA_REQUEST => {
            let (channel_id, data_len) = send_data(&mut c, &SEND_DATA_REQUEST_FIELDS)?;
            McsPdu::SendDataRequest {
                channel_id,
                data_len,
            }
        }
        SEND_DATA_INDICATION => {
            let (channel_id, data_len) = send_data(&mut c, &SEND_DATA_INDICATION_FIELDS)?;
            McsPdu::SendDataIndication {
                channel_id,
                data_len,
            }
        }
        other => McsPdu::Other { choice: other },
    })
}

/// A PER semi-constrained INTEGER: a length byte, then that many value bytes (skipped).
fn per_integer(c: &mut ReadCursor<'_>, field: &'static str) -> Result<(), DecodeError> {
    let len = c.read_u8(field)?;
    c.skip(usize::from(len), field)
}

/// The MCS Result of an Attach User / Channel Join Confirm.
///
/// Aligned PER puts this 16-value ENUMERATED in 4 bits: bit 0 of the first byte and the top 3
/// bits of the second, then 5 padding bits. FreeRDP and rdesktop instead write and read the
/// whole second byte as the result. Valid results (0..15) tell the two apart: a whole-byte
/// result other than 0 sets one of the low 5 bits, which are padding in proper PER.
fn per_result(c: &mut ReadCursor<'_>, b0: u8, field: &'static str) -> Result<u8, DecodeError> {
    let b1 = c.read_u8(field)?;
    Ok(if b1 & 0x1F == 0 {
        (b0 & 0x01) << 3 | b1 >> 5
    } else {
        b1
    })
}

/// Field names of a Send Data Request or Indication, for errors.
struct SendDataFields([&'static str; 5]);

const SEND_DATA_REQUEST_FIELDS: SendDataFields = SendDataFields([
    "SendDataRequest.initiator",
    "SendDataRequest.channelId",
    "SendDataRequest.dataPriority",
    "SendDataRequest.userData.length",
    "SendDataRequest.userData",
]);

const SEND_DATA_INDICATION_FIELDS: SendDataFields = SendDataFields([
    "SendDataIndication.initiator",
    "SendDataIndication.channelId",
    "SendDataIndication.dataPriority",
    "SendDataIndication.userData.length",
    "SendDataIndication.userData",
]);

/// Send Data Request/Indication after the choice byte (reference §2.16):
///
/// ```text
/// initiator u16be (user id − 1001) | channelId u16be | priority+segmentation (1) |
/// userData length (PER) | userData
/// ```
fn send_data(c: &mut ReadCursor<'_>, names: &SendDataFields) -> Result<(u16, usize), DecodeError> {
    let [initiator, channel, flags, length, user_data] = names.0;
    c.skip(2, initiator)?;
    let channel_id = c.read_u16_be(channel)?;
    c.skip(1, flags)?;
    let len_at = c.pos();
    let len = gcc::read_per_length(c, length)?;
    if len > c.remaining() {
        return Err(DecodeError::new(
            len_at,
            length,
            format!("<= {} (bytes present)", c.remaining()),
            len.to_string(),
        ));
    }
    c.skip(len, user_data)?;
    Ok((channel_id, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gcc::{CertKind, EncryptionLevel, EncryptionMethods};
    use crate::wire::x224::{self, Protocols, X224Pdu};
    use proptest::prelude::*;

    /// Parses a hex dump as printed in the reference (`0000  03 00 ...` rows).
    fn from_dump(dump: &str) -> Vec<u8> {
        let hex: String = dump
            .lines()
            .filter_map(|l| {
                l.trim()
                    .split_once("  ")
                    .map(|(_, bytes)| bytes.replace(' ', ""))
            })
            .collect();
        hex::decode(hex).unwrap()
    }

    /// The MCS bytes of a whole TPKT PDU: X.224 says where the DT user data starts.
    fn mcs_of(tpkt: &[u8]) -> &[u8] {
        match x224::decode(tpkt).unwrap() {
            X224Pdu::Data { payload_offset } => &tpkt[payload_offset..],
            other => panic!("not an X.224 DT: {other:?}"),
        }
    }

    fn initial(mcs: &[u8]) -> ConnectInitial {
        match decode(mcs).unwrap() {
            McsPdu::ConnectInitial(ci) => ci,
            other => panic!("not a Connect-Initial: {other:?}"),
        }
    }

    fn response(mcs: &[u8]) -> ConnectResponse {
        match decode(mcs).unwrap() {
            McsPdu::ConnectResponse(cr) => cr,
            other => panic!("not a Connect-Response: {other:?}"),
        }
    }

    /// Reference §2.13 worked example E16, the hex dump as printed there.
    const E16_DUMP: &str = "
0000  03 00 01 70 02 f0 80 7f 65 82 01 64 04 01 01 04
0010  01 01 01 01 ff 30 19 02 01 22 02 01 02 02 01 00
0020  02 01 01 02 01 00 02 01 01 02 02 ff ff 02 01 02
0030  30 19 02 01 01 02 01 01 02 01 01 02 01 01 02 01
0040  00 02 01 01 02 02 04 20 02 01 02 30 1c 02 02 ff
0050  ff 02 02 fc 17 02 02 ff ff 02 01 01 02 01 00 02
0060  01 01 02 02 ff ff 02 01 02 04 82 01 03 00 05 00
0070  14 7c 00 01 80 fa 00 08 00 10 00 01 c0 00 44 75
0080  63 61 80 ec 01 c0 d8 00 04 00 08 00 80 07 38 04
0090  01 ca 03 aa 09 04 00 00 61 4a 00 00 57 00 4b 00
00a0  53 00 30 00 31 00 00 00 00 00 00 00 00 00 00 00
00b0  00 00 00 00 00 00 00 00 00 00 00 00 04 00 00 00
00c0  00 00 00 00 0c 00 00 00 00 00 00 00 00 00 00 00
00d0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00e0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00f0  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0100  00 00 00 00 00 00 00 00 01 ca 01 00 00 00 00 00
0110  18 00 0f 00 af 07 00 00 00 00 00 00 00 00 00 00
0120  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0130  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0140  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0150  00 00 00 00 00 00 06 00 00 00 00 00 02 c0 0c 00
0160  1b 00 00 00 00 00 00 00 03 c0 08 00 00 00 00 00
";

    /// E16 again, built field by field: one comment per field.
    fn e16_by_field() -> Vec<u8> {
        [
            &[0x03, 0x00, 0x01, 0x70][..],   // TPKT version 3, length 368
            &[0x02, 0xf0, 0x80],             // X.224 DT, EOT
            &[0x7f, 0x65, 0x82, 0x01, 0x64], // Connect-Initial [APPLICATION 101], length 356
            &[0x04, 0x01, 0x01],             // callingDomainSelector
            &[0x04, 0x01, 0x01],             // calledDomainSelector
            &[0x01, 0x01, 0xff],             // upwardFlag TRUE
            // targetParameters: 34, 2, 0, 1, 0, 1, 65535, 2
            &[
                0x30, 0x19, 0x02, 0x01, 0x22, 0x02, 0x01, 0x02, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01,
            ],
            &[
                0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x02,
            ],
            // minimumParameters: 1, 1, 1, 1, 0, 1, 1056, 2
            &[
                0x30, 0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01,
            ],
            &[
                0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0x04, 0x20, 0x02, 0x01, 0x02,
            ],
            // maximumParameters: 65535, 64535, 65535, 1, 0, 1, 65535, 2
            &[
                0x30, 0x1c, 0x02, 0x02, 0xff, 0xff, 0x02, 0x02, 0xfc, 0x17, 0x02, 0x02, 0xff, 0xff,
            ],
            &[
                0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0xff, 0xff,
            ],
            &[0x02, 0x01, 0x02],
            &[0x04, 0x82, 0x01, 0x03], // userData OCTET STRING, 259 bytes
            &[0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01], // t124Identifier 0.0.20.124.0.1
            &[0x80, 0xfa],             // connectPDU length 250
            &[0x00],                   // ConnectGCCPDU: conferenceCreateRequest
            &[0x08],                   // optional fields: userData only
            &[0x00, 0x10],             // conferenceName "1"
            &[0x00],                   // terminationMethod
            &[0x01],                   // userData: one set member
            &[0xc0],                   // valuePresent, key h221NonStandard
            &[0x00, 0x44, 0x75, 0x63, 0x61], // H.221 key length 4, "Duca"
            &[0x80, 0xec],             // client data blocks, 236 bytes
            &[0x01, 0xc0, 0xd8, 0x00], // CS_CORE, 216 bytes
            &[0x04, 0x00, 0x08, 0x00], // version 0x00080004
            &[0x80, 0x07],             // desktopWidth 1920
            &[0x38, 0x04],             // desktopHeight 1080
            &[0x01, 0xca],             // colorDepth 8 bpp
            &[0x03, 0xaa],             // SASSequence
            &[0x09, 0x04, 0x00, 0x00], // keyboardLayout 0x409
            &[0x61, 0x4a, 0x00, 0x00], // clientBuild 19041
            &[0x57, 0x00, 0x4b, 0x00, 0x53, 0x00, 0x30, 0x00, 0x31, 0x00], // clientName "WKS01"
            &[0; 22],                  // clientName NUL padding to 32 bytes
            &[0x04, 0x00, 0x00, 0x00], // keyboardType 4
            &[0x00, 0x00, 0x00, 0x00], // keyboardSubType
            &[0x0c, 0x00, 0x00, 0x00], // keyboardFunctionKey 12
            &[0; 64],                  // imeFileName, empty
            &[0x01, 0xca],             // postBeta2ColorDepth
            &[0x01, 0x00],             // clientProductId 1
            &[0x00, 0x00, 0x00, 0x00], // serialNumber
            &[0x18, 0x00],             // highColorDepth 24
            &[0x0f, 0x00],             // supportedColorDepths
            &[0xaf, 0x07],             // earlyCapabilityFlags 0x07AF
            &[0; 64],                  // clientDigProductId, empty
            &[0x06],                   // connectionType LAN
            &[0x00],                   // pad1octet
            &[0x00, 0x00, 0x00, 0x00], // serverSelectedProtocol PROTOCOL_RDP
            &[0x02, 0xc0, 0x0c, 0x00], // CS_SECURITY, 12 bytes
            &[0x1b, 0x00, 0x00, 0x00], // encryptionMethods 40|128|56|FIPS
            &[0x00, 0x00, 0x00, 0x00], // extEncryptionMethods
            &[0x03, 0xc0, 0x08, 0x00], // CS_NET, 8 bytes
            &[0x00, 0x00, 0x00, 0x00], // channelCount 0
        ]
        .concat()
    }

    /// Reference §2.15 worked example E17 (Standard RDP Security, proprietary certificate).
    const E17_DUMP: &str = "
0000  03 00 01 4d 02 f0 80 7f 66 82 01 41 0a 01 00 02
0010  01 00 30 1a 02 01 22 02 01 03 02 01 00 02 01 01
0020  02 01 00 02 01 01 02 03 00 ff f8 02 01 02 04 82
0030  01 1b 00 05 00 14 7c 00 01 2a 14 76 0a 01 01 00
0040  01 c0 00 4d 63 44 6e 81 04 01 0c 10 00 0d 00 08
0050  00 00 00 00 00 0f 00 00 00 03 0c 08 00 eb 03 00
0060  00 02 0c ec 00 02 00 00 00 02 00 00 00 20 00 00
0070  00 b8 00 00 00 20 21 22 23 24 25 26 27 28 29 2a
0080  2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37 38 39 3a
0090  3b 3c 3d 3e 3f 01 00 00 00 01 00 00 00 01 00 00
00a0  00 06 00 5c 00 52 53 41 31 48 00 00 00 00 02 00
00b0  00 3f 00 00 00 01 00 01 00 01 02 03 04 05 06 07
00c0  08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17
00d0  18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27
00e0  28 29 2a 2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37
00f0  38 39 3a 3b 3c 3d 3e 3f 40 00 00 00 00 00 00 00
0100  00 08 00 48 00 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0110  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0120  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0130  a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5
0140  a5 a5 a5 a5 a5 00 00 00 00 00 00 00 00
";

    /// Reference §2.15 worked example E17t (inside TLS: method and level 0).
    const E17T: &[u8] = &[
        0x03, 0x00, 0x00, 0x6c, // TPKT, 108 bytes
        0x02, 0xf0, 0x80, // X.224 DT
        0x7f, 0x66, 0x82, 0x00, 0x60, // Connect-Response, non-minimal length 96
        0x0a, 0x01, 0x00, // result rt-successful
        0x02, 0x01, 0x00, // calledConnectId 0
        0x30, 0x1a, 0x02, 0x01, 0x22, 0x02, 0x01, 0x03, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02,
        0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03, 0x00, 0xff, 0xf8, 0x02, 0x01,
        0x02, // domainParameters 34, 3, 0, 1, 0, 1, 65528, 2
        0x04, 0x82, 0x00, 0x3a, // userData, non-minimal length 58
        0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01, // t124Identifier
        0x2a, // connectPDU length (bogus, ignored)
        0x14, // ConnectGCCPDU: conferenceCreateResponse
        0x76, 0x0a, // nodeID 31219
        0x01, 0x01, // tag 1
        0x00, // result success
        0x01, // one set member
        0xc0, // valuePresent, h221NonStandard
        0x00, 0x4d, 0x63, 0x44, 0x6e, // key "McDn"
        0x24, // server data blocks, 36 bytes
        0x01, 0x0c, 0x10, 0x00, // SC_CORE, 16 bytes
        0x0d, 0x00, 0x08, 0x00, // version 0x0008000D
        0x0b, 0x00, 0x00, 0x00, // clientRequestedProtocols SSL|HYBRID|HYBRID_EX
        0x0f, 0x00, 0x00, 0x00, // earlyCapabilityFlags
        0x03, 0x0c, 0x08, 0x00, // SC_NET, 8 bytes
        0xeb, 0x03, // MCSChannelId 1003
        0x00, 0x00, // channelCount 0
        0x02, 0x0c, 0x0c, 0x00, // SC_SECURITY, 12 bytes
        0x00, 0x00, 0x00, 0x00, // encryptionMethod NONE
        0x00, 0x00, 0x00, 0x00, // encryptionLevel NONE
    ];

    /// Reference §2.17 domain PDUs, whole TPKTs.
    const ERECT_DOMAIN: &[u8] = &[
        0x03, 0x00, 0x00, 0x0c, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x04, // choice 1 erectDomainRequest
        0x01, 0x00, // subHeight: length 1, 0
        0x01, 0x00, // subInterval: length 1, 0
    ];
    const ATTACH_USER_REQUEST_PDU: &[u8] = &[
        0x03, 0x00, 0x00, 0x08, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x28, // choice 10 attachUserRequest
    ];
    const ATTACH_USER_CONFIRM_PDU: &[u8] = &[
        0x03, 0x00, 0x00, 0x0b, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x2e, // choice 11 attachUserConfirm, initiator present
        0x00, // result rt-successful
        0x00, 0x06, // initiator 1007
    ];
    const CHANNEL_JOIN_REQUEST_PDU: &[u8] = &[
        0x03, 0x00, 0x00, 0x0c, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x38, // choice 14 channelJoinRequest
        0x00, 0x06, // initiator 1007
        0x03, 0xef, // channelId 1007
    ];
    const CHANNEL_JOIN_CONFIRM_PDU: &[u8] = &[
        0x03, 0x00, 0x00, 0x0f, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x3e, // choice 15 channelJoinConfirm, channelId present
        0x00, // result rt-successful
        0x00, 0x06, // initiator 1007
        0x03, 0xef, // requested 1007
        0x03, 0xef, // channelId 1007
    ];
    /// Also what xrdp sends in clear where a TLS ServerHello belongs (testbed README,
    /// `xrdp-key-mismatch`).
    const DPU_USER_REQUESTED: &[u8] = &[
        0x03, 0x00, 0x00, 0x09, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x21, // choice 8 disconnectProviderUltimatum, reason bits 2..1 = 01
        0x80, // reason bit 0 = 1: reason 3 rn-user-requested
    ];
    const DPU_PROVIDER_INITIATED: &[u8] = &[
        0x03, 0x00, 0x00, 0x09, 0x02, 0xf0, 0x80, // TPKT, X.224 DT
        0x20, // choice 8, reason bits 2..1 = 00
        0x80, // reason bit 0 = 1: reason 1 rn-provider-initiated
    ];
    /// Reference §2.16 E18, Security Exchange PDU.
    const E18_DUMP: &str = "
0000  03 00 00 5e 02 f0 80 64 00 06 03 eb 70 50 01 00
0010  00 00 48 00 00 00 80 81 82 83 84 85 86 87 88 89
0020  8a 8b 8c 8d 8e 8f 90 91 92 93 94 95 96 97 98 99
0030  9a 9b 9c 9d 9e 9f a0 a1 a2 a3 a4 a5 a6 a7 a8 a9
0040  aa ab ac ad ae af b0 b1 b2 b3 b4 b5 b6 b7 b8 b9
0050  ba bb bc bd be bf 00 00 00 00 00 00 00 00
";

    // Real frames (tests/corpus/README.md), extracted with tshark as whole TPKT PDUs.
    const RDP3_CI: &[u8] = include_bytes!("../../tests/fixtures/mcs/ndpi_rdp3_connect_initial.bin");
    const RDP3_CR: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/ndpi_rdp3_connect_response.bin");
    const PROP_CI: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/zeek_proprietary_connect_initial.bin");
    const PROP_CR: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/zeek_proprietary_connect_response.bin");
    const PROP_DPU: &[u8] = include_bytes!("../../tests/fixtures/mcs/zeek_proprietary_dpu.bin");
    const X509_CI: &[u8] = include_bytes!("../../tests/fixtures/mcs/zeek_x509_connect_initial.bin");
    const X509_CR: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/zeek_x509_connect_response.bin");

    // Test bed captures (testbed/run-scenario.sh, xrdp 0.9.21 and xfreerdp 2.11 on loopback):
    // `xrdp-key-mismatch --sec tls` frame 9, and `xrdp-rdp-fips --sec rdp` frames 8 and 9.
    const TB_KEY_MISMATCH_DPU: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/testbed_xrdp_key_mismatch_dpu.bin");
    const TB_XFREERDP_CI: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/testbed_xfreerdp_connect_initial.bin");
    const TB_XRDP_FIPS_CR: &[u8] =
        include_bytes!("../../tests/fixtures/mcs/testbed_xrdp_fips_connect_response.bin");

    fn examples() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("E16", from_dump(E16_DUMP)),
            ("E17", from_dump(E17_DUMP)),
            ("E17t", E17T.to_vec()),
            ("E18", from_dump(E18_DUMP)),
            ("erect domain", ERECT_DOMAIN.to_vec()),
            ("attach user request", ATTACH_USER_REQUEST_PDU.to_vec()),
            ("attach user confirm", ATTACH_USER_CONFIRM_PDU.to_vec()),
            ("channel join request", CHANNEL_JOIN_REQUEST_PDU.to_vec()),
            ("channel join confirm", CHANNEL_JOIN_CONFIRM_PDU.to_vec()),
            ("dpu user requested", DPU_USER_REQUESTED.to_vec()),
            ("dpu provider initiated", DPU_PROVIDER_INITIATED.to_vec()),
            ("ndpi_rdp3 CI", RDP3_CI.to_vec()),
            ("ndpi_rdp3 CR", RDP3_CR.to_vec()),
            ("proprietary CI", PROP_CI.to_vec()),
            ("proprietary CR", PROP_CR.to_vec()),
            ("proprietary DPU", PROP_DPU.to_vec()),
            ("x509 CI", X509_CI.to_vec()),
            ("x509 CR", X509_CR.to_vec()),
            ("testbed DPU", TB_KEY_MISMATCH_DPU.to_vec()),
            ("testbed CI", TB_XFREERDP_CI.to_vec()),
            ("testbed CR", TB_XRDP_FIPS_CR.to_vec()),
        ]
    }

    #[test]
    fn e16_field_by_field_matches_the_reference_dump() {
        let built = e16_by_field();
        assert_eq!(built.len(), 368);
        assert_eq!(built, from_dump(E16_DUMP));
    }

    #[test]
    fn e16_connect_initial() {
        let tpkt = e16_by_field();
        let ci = initial(mcs_of(&tpkt));
        let core = ci.client_core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!((core.desktop_width, core.desktop_height), (1920, 1080));
        assert_eq!(core.keyboard_layout, 0x409);
        assert_eq!(core.client_build, 19041);
        assert_eq!(core.client_name, "WKS01");
        assert_eq!(core.early_capability_flags, Some(0x07AF));
        assert_eq!(core.server_selected_protocol, Some(Protocols::RDP));
        // File offset 0x158 in the reference, minus TPKT + DT (7).
        assert_eq!(core.server_selected_protocol_offset, Some(0x158 - 7));
        let sec = ci.client_security.unwrap();
        assert_eq!(sec.encryption_methods, EncryptionMethods(0x1B));
        assert_eq!(sec.ext_encryption_methods, 0);
        assert!(ci.channels.is_empty());
        assert_eq!(ci.cluster_flags, None);
        assert_eq!(ci.multitransport_flags, None);
        assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);
        assert_eq!(decode(mcs_of(&tpkt)).unwrap().name(), "connect-initial");
    }

    #[test]
    fn e17_connect_response_with_proprietary_certificate() {
        let tpkt = from_dump(E17_DUMP);
        assert_eq!(tpkt.len(), 333);
        let cr = response(mcs_of(&tpkt));
        assert_eq!(cr.result, 0);
        assert_eq!(result_name(cr.result), "rt-successful");
        assert_eq!(cr.gcc_result, Some(0));
        let core = cr.server_core.unwrap();
        assert_eq!(core.version, 0x0008_000D);
        assert_eq!(core.client_requested_protocols, Some(Protocols::RDP));
        // SC_CORE header at file offset 0x49, the field 8 bytes in, minus TPKT + DT (7).
        assert_eq!(core.client_requested_protocols_offset, Some(0x49 + 8 - 7));
        assert_eq!(core.early_capability_flags, Some(0x0F));
        let net = cr.server_net.unwrap();
        assert_eq!((net.io_channel, net.channel_ids.len()), (1003, 0));
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_128);
        assert_eq!(sec.encryption_level, EncryptionLevel::CLIENT_COMPATIBLE);
        assert_eq!((sec.server_random_len, sec.server_cert_len), (32, 184));
        assert_eq!(sec.cert_kind, Some(CertKind::Proprietary));
        assert!(!sec.cert_temporary);
        assert_eq!(sec.proprietary_key_bits, Some(512));
        // serverCertificate at file offset 0x95.
        let span = sec.cert.unwrap();
        assert_eq!((span.offset, span.len), (0x95 - 7, 184));
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
    }

    #[test]
    fn e17t_connect_response_under_tls() {
        let cr = response(mcs_of(E17T));
        assert_eq!(cr.result, 0);
        let core = cr.server_core.unwrap();
        assert_eq!(core.client_requested_protocols, Some(Protocols(0x0b)));
        assert_eq!(core.client_requested_protocols_offset, Some(0x50 - 7));
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::NONE);
        assert_eq!(sec.encryption_level, EncryptionLevel::NONE);
        assert_eq!((sec.server_random_len, sec.server_cert_len), (0, 0));
        assert_eq!(sec.cert_kind, None);
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
    }

    #[test]
    fn patching_the_echo_changes_only_that_field() {
        let mut mcs = mcs_of(E17T).to_vec();
        let off = response(&mcs)
            .server_core
            .unwrap()
            .client_requested_protocols_offset
            .unwrap();
        let before = mcs.clone();
        assert!(gcc::patch_client_requested_protocols(
            &mut mcs,
            off,
            Protocols::SSL
        ));
        let core = response(&mcs).server_core.unwrap();
        assert_eq!(core.client_requested_protocols, Some(Protocols::SSL));
        let changed: Vec<usize> = (0..mcs.len()).filter(|&i| mcs[i] != before[i]).collect();
        assert_eq!(changed, vec![off]);
        let len = mcs.len();
        assert!(!gcc::patch_client_requested_protocols(
            &mut mcs,
            len - 3,
            Protocols::SSL
        ));
        assert!(!gcc::patch_client_requested_protocols(
            &mut mcs,
            usize::MAX,
            Protocols::SSL
        ));
    }

    #[test]
    fn domain_pdus_from_the_reference() {
        let cases: [(&[u8], McsPdu, &str); 7] = [
            (
                ERECT_DOMAIN,
                McsPdu::ErectDomainRequest,
                "erectDomainRequest",
            ),
            (
                ATTACH_USER_REQUEST_PDU,
                McsPdu::AttachUserRequest,
                "attachUserRequest",
            ),
            (
                ATTACH_USER_CONFIRM_PDU,
                McsPdu::AttachUserConfirm { result: 0 },
                "attachUserConfirm",
            ),
            (
                CHANNEL_JOIN_REQUEST_PDU,
                McsPdu::ChannelJoinRequest { channel_id: 1007 },
                "channelJoinRequest",
            ),
            (
                CHANNEL_JOIN_CONFIRM_PDU,
                McsPdu::ChannelJoinConfirm {
                    result: 0,
                    channel_id: 1007,
                },
                "channelJoinConfirm",
            ),
            (
                DPU_USER_REQUESTED,
                McsPdu::DisconnectProviderUltimatum { reason: 3 },
                "disconnectProviderUltimatum",
            ),
            (
                DPU_PROVIDER_INITIATED,
                McsPdu::DisconnectProviderUltimatum { reason: 1 },
                "disconnectProviderUltimatum",
            ),
        ];
        for (tpkt, want, name) in cases {
            let got = decode(mcs_of(tpkt)).unwrap();
            assert_eq!(got, want);
            assert_eq!(got.name(), name);
        }
        assert_eq!(dpu_reason_name(3), "rn-user-requested");
        assert_eq!(dpu_reason_name(1), "rn-provider-initiated");
        assert_eq!(dpu_reason_name(9), "unknown");
    }

    #[test]
    fn e18_send_data_request() {
        let tpkt = from_dump(E18_DUMP);
        assert_eq!(
            decode(mcs_of(&tpkt)).unwrap(),
            McsPdu::SendDataRequest {
                channel_id: 1003,
                data_len: 80
            }
        );
    }

    #[test]
    fn confirm_results_in_both_encodings() {
        // Aligned PER: result 14 = bit 0 of the first byte (1) and the top 3 bits of the next
        // (110), then 5 padding bits.
        assert_eq!(
            decode(&[0x2f, 0xc0, 0x00, 0x06]).unwrap(),
            McsPdu::AttachUserConfirm { result: 14 }
        );
        // FreeRDP/rdesktop style: the whole byte after the choice is the result.
        assert_eq!(
            decode(&[0x2e, 0x0e, 0x00, 0x06]).unwrap(),
            McsPdu::AttachUserConfirm { result: 14 }
        );
        // Channel Join Confirm without channelId: the requested channel is reported.
        assert_eq!(
            decode(&[0x3c, 0x03, 0x00, 0x06, 0x03, 0xec]).unwrap(),
            McsPdu::ChannelJoinConfirm {
                result: 3,
                channel_id: 1004
            }
        );
        assert_eq!(result_name(3), "rt-no-such-channel");
        assert_eq!(result_name(14), "rt-unspecified-failure");
        assert_eq!(result_name(200), "unknown");
    }

    #[test]
    fn other_domain_and_connect_pdus_are_kept() {
        // detachUserRequest (12 << 2) and an uniformSendDataRequest (27 << 2).
        assert_eq!(decode(&[0x30]).unwrap(), McsPdu::Other { choice: 12 });
        assert_eq!(
            decode(&[0x6c, 0xff]).unwrap().name(),
            "uniformSendDataRequest"
        );
        assert_eq!(decode(&[0xfc]).unwrap(), McsPdu::Other { choice: 63 });
        assert_eq!(decode(&[0xfc]).unwrap().name(), "unknown");
        // Connect-Additional [APPLICATION 103].
        let pdu = decode(&[0x7f, 0x67, 0x00]).unwrap();
        assert_eq!(pdu, McsPdu::OtherConnect { tag: 103 });
        assert_eq!(pdu.name(), "connect-additional");
    }

    #[test]
    fn every_cut_is_an_error_naming_a_field() {
        for (name, tpkt) in examples() {
            let mcs = mcs_of(&tpkt);
            assert!(decode(mcs).is_ok(), "{name} whole");
            for n in 0..mcs.len() {
                let e = decode(&mcs[..n])
                    .map(|p| format!("{p:?}"))
                    .expect_err(&format!("{name} cut at {n}"));
                assert!(!e.field.is_empty());
                assert!(e.offset <= n, "{name} cut at {n}: {e}");
            }
        }
    }

    #[test]
    fn lying_ber_lengths_name_the_field_and_offset() {
        let tpkt = e16_by_field();
        let mcs = mcs_of(&tpkt).to_vec();
        // Connect-Initial length (offset 2..5: 82 01 64) claims one byte more.
        let mut m = mcs.clone();
        m[4] = 0x65;
        let e = decode(&m).unwrap_err();
        assert_eq!((e.field, e.offset), ("Connect-Initial.length", 2));
        assert_eq!(e.found, "357");
        // userData OCTET STRING at mcs offset 0x62 (file 0x69): 04 82 01 03 -> 04 82 ff ff.
        let mut m = mcs.clone();
        assert_eq!(m[0x62..0x66], [0x04, 0x82, 0x01, 0x03]);
        m[0x64] = 0xff;
        m[0x65] = 0xff;
        let e = decode(&m).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("Connect-Initial.userData.length", 0x63)
        );
        // A 5-byte BER length form is refused, not read.
        let e = decode(&[0x7f, 0x65, 0x85, 1, 2, 3, 4, 5]).unwrap_err();
        assert_eq!((e.field, e.offset), ("Connect-Initial.length", 2));
        // targetParameters with the wrong tag.
        let mut m = mcs.clone();
        m[0x0e] = 0x31;
        let e = decode(&m).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("Connect-Initial.targetParameters", 0x0e)
        );
    }

    #[test]
    fn lying_gcc_user_data_length_is_an_error() {
        let tpkt = e16_by_field();
        let mut m = mcs_of(&tpkt).to_vec();
        // Client data blocks length after "Duca": file 0x82 `80 ec` -> `80 ed`.
        assert_eq!(m[0x7b..0x7d], [0x80, 0xec]);
        m[0x7c] = 0xed;
        let e = decode(&m).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("ConferenceCreateRequest.userData.length", 0x7b)
        );
        // Shorter than the bytes: decoded, with an anomaly for the byte left over.
        m[0x7c] = 0xeb;
        let ci = initial(&m);
        assert!(
            ci.anomalies.iter().any(|a| a.contains("trailing")),
            "{:?}",
            ci.anomalies
        );
    }

    #[test]
    fn lying_block_length_is_an_anomaly_not_an_error() {
        let tpkt = e16_by_field();
        let mut m = mcs_of(&tpkt).to_vec();
        // CS_CORE header at mcs 0x7d: 01 c0 d8 00 -> length 0xffff.
        assert_eq!(m[0x7d..0x81], [0x01, 0xc0, 0xd8, 0x00]);
        m[0x7f] = 0xff;
        m[0x80] = 0xff;
        let ci = initial(&m);
        assert_eq!(ci.client_core, None);
        assert_eq!(ci.client_security, None);
        assert!(
            ci.anomalies
                .iter()
                .any(|a| a.contains("offset 125") && a.contains("65535")),
            "{:?}",
            ci.anomalies
        );
    }

    #[test]
    fn lying_server_cert_length_keeps_method_and_level() {
        let tpkt = from_dump(E17_DUMP);
        let mut m = mcs_of(&tpkt).to_vec();
        // serverCertLen at file 0x71: b8 00 00 00 -> ff ff ff 7f.
        let at = 0x71 - 7;
        assert_eq!(m[at..at + 4], [0xb8, 0, 0, 0]);
        m[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        let cr = response(&m);
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_128);
        assert_eq!(sec.encryption_level, EncryptionLevel::CLIENT_COMPATIBLE);
        assert_eq!(sec.server_cert_len, 0x7fff_ffff);
        assert_eq!(sec.cert, None);
        assert!(
            cr.anomalies.iter().any(|a| a.contains("serverCertLen")),
            "{:?}",
            cr.anomalies
        );
    }

    #[test]
    fn lying_send_data_length_is_an_error() {
        let mut tpkt = from_dump(E18_DUMP);
        // userData length at file 0x0d: 50 -> 51 (one more than present).
        tpkt[0x0d] = 0x51;
        let e = decode(mcs_of(&tpkt)).unwrap_err();
        assert_eq!((e.field, e.offset), ("SendDataRequest.userData.length", 6));
        let e = decode(&[0x68, 0x00, 0x01, 0x03, 0xeb, 0x70, 0x81, 0x00]).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("SendDataIndication.userData.length", 6)
        );
        let e = decode(&[0x64, 0x00, 0x06, 0x03, 0xeb, 0x70, 0xc1]).unwrap_err();
        assert_eq!((e.field, e.offset), ("SendDataRequest.userData.length", 6));
    }

    #[test]
    fn refusal_without_user_data_keeps_the_result() {
        // 7F 66 03 | 0A 01 0E: rt-unspecified-failure, nothing else.
        let cr = response(&[0x7f, 0x66, 0x03, 0x0a, 0x01, 0x0e]);
        assert_eq!(cr.result, 14);
        assert_eq!(cr.server_core, None);
        assert_eq!(cr.anomalies.len(), 1, "{:?}", cr.anomalies);
        // A result that does not fit a byte is an error at the value's offset.
        let e = decode(&[0x7f, 0x66, 0x04, 0x0a, 0x02, 0x01, 0x00]).unwrap_err();
        assert_eq!((e.field, e.offset), ("Connect-Response.result", 5));
    }

    #[test]
    fn ndpi_rdp3_legacy_xp_client() {
        let ci = initial(mcs_of(RDP3_CI));
        let core = ci.client_core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!(core.client_build, 2600);
        assert_eq!(core.client_name, "SEPTU");
        assert_eq!(core.keyboard_layout, 0x409);
        // The XP client's CS_CORE (212 bytes) stops before serverSelectedProtocol.
        assert_eq!(core.server_selected_protocol, None);
        assert_eq!(core.server_selected_protocol_offset, None);
        let sec = ci.client_security.unwrap();
        assert_eq!(sec.encryption_methods, EncryptionMethods(0x0b));
        assert_eq!(sec.offered().names(), "40BIT|128BIT|56BIT");
        assert_eq!(ci.channels, ["rdpdr", "cliprdr", "rdpsnd"]);
        assert_eq!(ci.cluster_flags, Some(0x09));
        assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);

        let cr = response(mcs_of(RDP3_CR));
        assert_eq!(cr.result, 0);
        assert_eq!(cr.gcc_result, Some(0));
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_128);
        assert_eq!(sec.encryption_level, EncryptionLevel::CLIENT_COMPATIBLE);
        assert_eq!(sec.server_cert_len, 184);
        assert_eq!(sec.cert_kind, Some(CertKind::Proprietary));
        assert_eq!(sec.proprietary_key_bits, Some(512));
        let net = cr.server_net.unwrap();
        assert_eq!(net.io_channel, 1003);
        assert_eq!(net.channel_ids, [1004, 1005, 1006]);
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
    }

    #[test]
    fn ndpi_rdp3_domain_pdus() {
        // Frames 8, 9, 11, 12, 13 and 22 of ndpi_rdp3.pcap (22 cut after its data length).
        let frames: [(&str, McsPdu); 5] = [
            ("0300000c02f0800401000100", McsPdu::ErectDomainRequest),
            ("0300000802f08028", McsPdu::AttachUserRequest),
            (
                "0300000b02f0802e000006",
                McsPdu::AttachUserConfirm { result: 0 },
            ),
            (
                "0300000c02f08038000603ef",
                McsPdu::ChannelJoinRequest { channel_id: 1007 },
            ),
            (
                "0300000f02f0803e00000603ef03ef",
                McsPdu::ChannelJoinConfirm {
                    result: 0,
                    channel_id: 1007,
                },
            ),
        ];
        for (hex, want) in frames {
            let tpkt = hex::decode(hex).unwrap();
            assert_eq!(decode(mcs_of(&tpkt)).unwrap(), want, "{hex}");
        }
    }

    #[test]
    fn zeek_proprietary_encryption_high_128() {
        let ci = initial(mcs_of(PROP_CI));
        let core = ci.client_core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!(core.client_build, 6000);
        assert_eq!(core.client_name, "FROG-POND");
        assert_eq!(core.keyboard_layout, 0x409);
        assert_eq!((core.desktop_width, core.desktop_height), (1152, 864));
        assert_eq!(core.server_selected_protocol, Some(Protocols::RDP));
        let sec = ci.client_security.unwrap();
        assert_eq!(sec.encryption_methods, EncryptionMethods(0x1b));
        assert_eq!(sec.ext_encryption_methods, 0);
        assert_eq!(ci.channels, ["rdpdr", "rdpsnd", "drdynvc", "cliprdr"]);
        // Zeek's rdp-client-cluster-data baseline: Flags 0000000d.
        assert_eq!(ci.cluster_flags, Some(0x0d));
        assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);

        let cr = response(mcs_of(PROP_CR));
        assert_eq!(cr.result, 0);
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_128);
        assert_eq!(sec.encryption_level, EncryptionLevel::HIGH);
        assert_eq!(sec.encryption_level.to_string(), "HIGH(3)");
        assert_eq!((sec.server_random_len, sec.server_cert_len), (32, 184));
        assert_eq!(sec.cert_kind, Some(CertKind::Proprietary));
        // A 12-byte SC_CORE: clientRequestedProtocols 0, no earlyCapabilityFlags.
        let core = cr.server_core.unwrap();
        assert_eq!(core.client_requested_protocols, Some(Protocols::RDP));
        assert_eq!(core.early_capability_flags, None);
        assert_eq!(cr.server_net.unwrap().channel_ids, [1004, 1005, 1006, 1007]);
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);

        // Frame 538: the server's log-off ultimatum.
        assert_eq!(
            decode(mcs_of(PROP_DPU)).unwrap(),
            McsPdu::DisconnectProviderUltimatum { reason: 3 }
        );
    }

    #[test]
    fn zeek_x509_chain_client_compatible_128() {
        let ci = initial(mcs_of(X509_CI));
        let core = ci.client_core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!(core.client_build, 9600);
        assert_eq!(core.client_name, "JOHN-PC-LAPTOP");
        assert_eq!(core.keyboard_layout, 0x409);
        assert_eq!((core.desktop_width, core.desktop_height), (1920, 1080));
        assert_eq!(
            ci.client_security.unwrap().encryption_methods,
            EncryptionMethods(0x1b)
        );
        assert_eq!(ci.channels, ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"]);
        assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);

        // Frames 12 and 13 together: one TPKT split over two segments.
        let cr = response(mcs_of(X509_CR));
        assert_eq!(cr.result, 0);
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::BIT_128);
        assert_eq!(sec.encryption_level, EncryptionLevel::CLIENT_COMPATIBLE);
        assert_eq!((sec.server_random_len, sec.server_cert_len), (32, 1252));
        assert_eq!(sec.cert_kind, Some(CertKind::X509));
        assert!(sec.cert_temporary);
        assert_eq!(sec.x509_chain.len(), 2);
        let mcs = mcs_of(X509_CR);
        for span in &sec.x509_chain {
            let der = &mcs[span.offset..span.offset + span.len];
            // Each is one DER SEQUENCE with a two-byte length that covers it exactly.
            assert_eq!(der[..2], [0x30, 0x82]);
            assert_eq!(
                usize::from(u16::from_be_bytes([der[2], der[3]])) + 4,
                der.len()
            );
        }
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
    }

    #[test]
    fn testbed_xrdp_dpu_where_a_server_hello_belongs() {
        // The plain-text answer to a TLS ClientHello when xrdp's key does not fit its
        // certificate: exactly the bytes the reference gives.
        assert_eq!(TB_KEY_MISMATCH_DPU, DPU_USER_REQUESTED);
        let pdu = decode(mcs_of(TB_KEY_MISMATCH_DPU)).unwrap();
        assert_eq!(pdu, McsPdu::DisconnectProviderUltimatum { reason: 3 });
    }

    #[test]
    fn testbed_xfreerdp_and_xrdp_fips() {
        let ci = initial(mcs_of(TB_XFREERDP_CI));
        let core = ci.client_core.unwrap();
        assert_eq!(core.version, 0x0008_000C);
        assert_eq!((core.desktop_width, core.desktop_height), (800, 600));
        assert_eq!(core.keyboard_layout, 0x409);
        // A legacy CR (`/sec:rdp`, no RDP_NEG_REQ): the echo is 0.
        assert_eq!(core.server_selected_protocol, Some(Protocols::RDP));
        assert_eq!(
            ci.client_security.unwrap().encryption_methods,
            EncryptionMethods(0x1b)
        );
        assert_eq!(ci.channels, ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"]);
        assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);

        let cr = response(mcs_of(TB_XRDP_FIPS_CR));
        assert_eq!(cr.result, 0);
        // xrdp's SC_CORE is 8 bytes: no clientRequestedProtocols to check or patch.
        let core = cr.server_core.unwrap();
        assert_eq!(core.version, 0x0008_0004);
        assert_eq!(core.client_requested_protocols, None);
        assert_eq!(core.client_requested_protocols_offset, None);
        let sec = cr.server_security.unwrap();
        assert_eq!(sec.encryption_method, EncryptionMethods::FIPS);
        assert_eq!(sec.encryption_level, EncryptionLevel::FIPS);
        assert_eq!((sec.server_random_len, sec.server_cert_len), (32, 376));
        assert_eq!(sec.cert_kind, Some(CertKind::Proprietary));
        assert_eq!(sec.proprietary_key_bits, Some(2048));
        assert_eq!(cr.server_net.unwrap().channel_ids, [1004, 1005, 1006, 1007]);
        assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
    }

    #[test]
    fn serializes_readable_values() {
        let cr = response(mcs_of(RDP3_CR));
        let json = serde_json::to_value(McsPdu::ConnectResponse(cr)).unwrap();
        assert_eq!(json["pdu"], "connect_response");
        assert_eq!(json["server_security"]["encryption_method"], "128BIT(0x2)");
        assert_eq!(
            json["server_security"]["encryption_level"],
            "CLIENT_COMPATIBLE(2)"
        );
        let json = serde_json::to_value(McsPdu::DisconnectProviderUltimatum { reason: 3 }).unwrap();
        assert_eq!(json["pdu"], "disconnect_provider_ultimatum");
        assert_eq!(json["reason"], 3);
    }

    fn fixtures_mcs() -> Vec<Vec<u8>> {
        examples()
            .into_iter()
            .map(|(_, t)| mcs_of(&t).to_vec())
            .collect()
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn connect_prefixes_never_panic(
            tag in 0x65u8..=0x66,
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut m = vec![0x7f, tag];
            m.extend(bytes);
            let _ = decode(&m);
        }

        #[test]
        fn mutated_real_pdus_never_panic(
            which in 0usize..21,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let all = fixtures_mcs();
            let mut m = all[which % all.len()].clone();
            for (at, v) in edits {
                let i = at % m.len();
                m[i] = v;
            }
            let n = cut % (m.len() + 1);
            if let Ok(pdu) = decode(&m[..n]) {
                // Whatever decodes serializes.
                prop_assert!(serde_json::to_string(&pdu).is_ok());
            }
        }
    }
}
