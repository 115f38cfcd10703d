//! Fuzz entry points: one function per cargo-fuzz target (`fuzz_targets/<name>.rs` calls
//! `rdpdiag_fuzz::<name>`). `tests/fuzz_regression.rs` includes this file and replays every
//! saved crash through the same function, so a fixed crash stays fixed in `cargo test`.
//!
//! Beyond "no panic", the entry points assert what the project promises of the values it
//! produces: a rewritten request decodes to the value written, a patched GCC echo reads back.

use rdpdiag::capture::analyze::{AnalyzeConfig, Analyzer};
use rdpdiag::capture::reader::{CaptureReader, ReaderConfig};
use rdpdiag::report::{ConnectionReport, render_text};
use rdpdiag::session::{
    CloseKind, ConnectFailure, Direction, Micros, Session, SessionConfig, Side,
};
use rdpdiag::wire::tls::{self, ContentType, HandshakeReassembler};
use rdpdiag::wire::x224::{self, Protocols, X224Pdu};
use rdpdiag::wire::{gcc, mcs, x509};

/// `x224`: every TPKT/X.224 PDU of `data` in turn; each Connection Request with an
/// RDP_NEG_REQ is rewritten (as `--security` does) and must decode to the value written.
pub fn x224(data: &[u8]) {
    if x224::decode(data).is_err() {
        // Malformed is a fine answer; the point is not to panic.
    }
    let mut rest = data;
    while let Ok(Some((pdu, used))) = x224::decode_next(rest) {
        let whole = rest.get(..used).unwrap_or_default();
        if let X224Pdu::ConnectionRequest(cr) = &pdu {
            for to in [
                Protocols::RDP,
                Protocols::SSL,
                Protocols(0x0b),
                Protocols(u32::MAX),
            ] {
                check_rewrite(whole, cr, to);
            }
        }
        match rest.get(used..) {
            Some(next) if used > 0 => rest = next,
            _ => break,
        }
    }
}

fn check_rewrite(pdu: &[u8], cr: &x224::ConnectionRequest, to: Protocols) {
    let Some(out) = x224::rewrite_requested(pdu, cr, to) else {
        assert!(
            cr.neg_req.is_none(),
            "a CR with RDP_NEG_REQ was not rewritten"
        );
        return;
    };
    assert_eq!(out.len(), pdu.len(), "a rewrite changes no length");
    match x224::decode(&out) {
        Ok(X224Pdu::ConnectionRequest(again)) => {
            assert_eq!(again.requested(), to, "rewritten requestedProtocols");
            assert_eq!(again.cookie, cr.cookie, "cookie after a rewrite");
            assert_eq!(again.routing_token, cr.routing_token);
            assert_eq!(again.correlation_id, cr.correlation_id);
        }
        other => panic!("a rewritten CR decodes as {other:?}"),
    }
}

/// `tls_records`: `data` as one direction of a TLS stream: records split off in turn,
/// handshake fragments reassembled, every message parsed, every certificate summarized.
pub fn tls_records(data: &[u8]) {
    let mut reassembler = HandshakeReassembler::new();
    let mut rest = data;
    let mut offset = 0u64;
    let mut tls13 = false;
    if tls::looks_like_record(rest).is_none() {
        return;
    }
    while let Ok(Some((header, payload))) = tls::split_record(rest) {
        let used = header.total_len();
        match header.content_type {
            ContentType::HANDSHAKE => {
                for msg in reassembler.push(payload, offset.saturating_add(5)) {
                    let Ok(msg) = msg else { continue };
                    assert!(msg.body.len() <= tls::MAX_HANDSHAKE_LEN);
                    let name = msg.type_name();
                    assert!(!name.is_empty());
                    handshake_message(msg.msg_type, &msg.body, &mut tls13);
                }
            }
            ContentType::ALERT => {
                if let Some(alert) = tls::parse_alert(payload) {
                    assert!(!alert.name().is_empty() && !alert.level_name().is_empty());
                }
            }
            _ => {
                if reassembler.pending() > 0 {
                    reassembler.reset();
                }
            }
        }
        offset = offset.saturating_add(used as u64);
        match rest.get(used..) {
            Some(next) if used > 0 => rest = next,
            _ => break,
        }
    }
}

fn handshake_message(msg_type: u8, body: &[u8], tls13: &mut bool) {
    match msg_type {
        1 => {
            if let Ok(ch) = tls::parse_client_hello(body) {
                for v in ch.offered_versions() {
                    assert!(ch.offers_version(v), "an offered version is offered");
                    tls::version_name(v);
                }
                tls::version_name(ch.max_version());
            }
        }
        2 => {
            if let Ok(sh) = tls::parse_server_hello(body) {
                *tls13 = sh.is_tls13();
                tls::version_name(sh.version());
            }
        }
        11 => {
            for flavour in [*tls13, !*tls13] {
                if let Ok(chain) = tls::parse_certificate(body, flavour) {
                    for der in chain {
                        x509(&der);
                    }
                }
            }
        }
        _ => {}
    }
}

/// `x509`: one DER certificate, summarized and judged at extreme clocks and names.
pub fn x509(data: &[u8]) {
    let Ok(summary) = x509::summarize(data) else {
        return;
    };
    summary.one_line();
    summary.host_names();
    summary.matches_name("rds01.corp.example");
    summary.matches_name("");
    for now in [i64::MIN, -1, 0, 1_700_000_000, i64::MAX] {
        for name in [None, Some("rds01.corp.example"), Some(""), Some("*.")] {
            for problem in x509::problems(&summary, now, name) {
                assert!(!problem.id().is_empty());
            }
        }
    }
}

/// `mcs`: `data` as an MCS PDU, as a whole TPKT + X.224 DT + MCS PDU, and as GCC user-data
/// blocks; each decoded GCC echo offset is patched and must read back the value written.
pub fn mcs(data: &[u8]) {
    mcs_pdu(data);
    if let Ok(X224Pdu::Data { payload_offset }) = x224::decode(data)
        && let Some(inner) = data.get(payload_offset..)
    {
        mcs_pdu(inner);
    }
    gcc::decode_client_blocks(data, 0);
    gcc::decode_server_blocks(data, 0);
}

fn mcs_pdu(data: &[u8]) {
    let Ok(pdu) = mcs::decode(data) else {
        return;
    };
    assert!(!pdu.name().is_empty());
    let value = Protocols(0x0a0b_0c0d);
    match pdu {
        mcs::McsPdu::ConnectInitial(ci) => {
            let Some(at) = ci
                .client_core
                .and_then(|c| c.server_selected_protocol_offset)
            else {
                return;
            };
            let mut patched = data.to_vec();
            assert!(gcc::patch_server_selected_protocol(&mut patched, at, value));
            match mcs::decode(&patched) {
                Ok(mcs::McsPdu::ConnectInitial(again)) => assert_eq!(
                    again.client_core.and_then(|c| c.server_selected_protocol),
                    Some(value),
                    "patched serverSelectedProtocol"
                ),
                other => panic!("a patched Connect-Initial decodes as {other:?}"),
            }
        }
        mcs::McsPdu::ConnectResponse(cr) => {
            let Some(at) = cr
                .server_core
                .and_then(|c| c.client_requested_protocols_offset)
            else {
                return;
            };
            let mut patched = data.to_vec();
            assert!(gcc::patch_client_requested_protocols(
                &mut patched,
                at,
                value
            ));
            match mcs::decode(&patched) {
                Ok(mcs::McsPdu::ConnectResponse(again)) => assert_eq!(
                    again.server_core.and_then(|c| c.client_requested_protocols),
                    Some(value),
                    "patched clientRequestedProtocols"
                ),
                other => panic!("a patched Connect-Response decodes as {other:?}"),
            }
        }
        _ => {}
    }
}

/// Byte-code of the `session` target (also used to build its seeds, see `fuzz/seeds.py`).
///
/// Byte 0 configures the session: bit 0 inspection cap 64 bytes (else the default), bit 1 a
/// clock for certificate checks, bit 2 a host name, bit 3 no connect result up front (else
/// `on_connect_result(Ok)` at 0), bits 4-7 stall timeout in seconds (0 = the default 30 s).
/// Then operations until the data ends:
/// - `0x00..=0x7F` feed: bit 6 = host to client; bits 0-5 = length, `0x3F` = a big-endian u16
///   length follows; the bytes follow (fewer if the data ends). Time moves 1 ms.
/// - `0x80..=0x9F` close: bits 3-4 side (client, host, proxy, proxy), bits 0-2 kind (mod 5).
/// - `0xA0..=0xBF` tick after bits 0-4 seconds.
/// - `0xC0..=0xCF` connect result: bits 0-1 = ok, refused, timeout, other.
/// - `0xD0..=0xFF` time moves by the next byte × 100 ms.
pub fn session(data: &[u8]) {
    let session = run_session(data);
    let verdict = session.verdict();
    assert!(!verdict.cause.is_empty() && !verdict.summary.is_empty());
    session.phase();
    session.inspection_done();
    session.next_deadline();
    let report = ConnectionReport {
        id: 1,
        client: "127.0.0.1:50000".into(),
        target: "rds01".into(),
        host_addr: None,
        started_at: String::new(),
        duration_ms: 0,
        bytes_client_to_host: 0,
        bytes_host_to_client: 0,
        verdict,
        events: session.events().to_vec(),
        tls_keylog: None,
    };
    assert!(render_text(&report).ends_with('\n'));
}

/// Runs the byte-code of [`session`] and returns the session.
pub fn run_session(data: &[u8]) -> Session {
    let Some((&config, mut ops)) = data.split_first() else {
        return Session::new(SessionConfig::default());
    };
    let mut cfg = SessionConfig::default();
    if config & 1 != 0 {
        cfg.max_inspect_bytes = 64;
    }
    if config & 2 != 0 {
        cfg.now_unix = Some(1_735_689_600);
    }
    if config & 4 != 0 {
        cfg.host_name = Some("rds01.corp.example".into());
    }
    if config >> 4 != 0 {
        cfg.stall_timeout = Micros(u64::from(config >> 4) * 1_000_000);
    }
    let mut s = Session::new(cfg);
    let mut at = Micros::ZERO;
    if config & 8 == 0 {
        s.on_connect_result(Ok(()), at);
    }
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op {
            0x00..=0x7F => {
                let dir = if op & 0x40 == 0 {
                    Direction::ClientToHost
                } else {
                    Direction::HostToClient
                };
                let mut len = usize::from(op & 0x3F);
                if len == 0x3F {
                    let (hi, lo) = (ops.first().copied(), ops.get(1).copied());
                    len = usize::from(u16::from_be_bytes([hi.unwrap_or(0), lo.unwrap_or(0)]));
                    ops = ops.get(2..).unwrap_or_default();
                }
                let (chunk, next) = ops.split_at(len.min(ops.len()));
                ops = next;
                at = Micros(at.0.saturating_add(1000));
                s.feed(dir, chunk, at);
            }
            0x80..=0x9F => {
                let side = match (op >> 3) & 3 {
                    0 => Side::Client,
                    1 => Side::Host,
                    _ => Side::Proxy,
                };
                let kind = match (op & 7) % 5 {
                    0 => CloseKind::Fin,
                    1 => CloseKind::Rst,
                    2 => CloseKind::Alert,
                    3 => CloseKind::Timeout,
                    _ => CloseKind::ConnectError,
                };
                s.on_close(side, kind, at);
            }
            0xA0..=0xBF => {
                at = Micros(at.0.saturating_add(u64::from(op & 0x1F) * 1_000_000));
                s.tick(at);
            }
            0xC0..=0xCF => {
                let result = match op & 3 {
                    0 => Ok(()),
                    1 => Err(ConnectFailure::Refused),
                    2 => Err(ConnectFailure::Timeout),
                    _ => Err(ConnectFailure::Other("no route to host".into())),
                };
                s.on_connect_result(result, at);
            }
            0xD0..=0xFF => {
                let step = ops.first().copied().unwrap_or(0);
                ops = ops.get(1..).unwrap_or_default();
                at = Micros(at.0.saturating_add(u64::from(step) * 100_000));
            }
        }
    }
    s
}

/// `capture`: byte 0 picks the read size (1..=256 bytes, or 64 KiB for 0); the rest is a
/// capture file, read with [`CaptureReader`] record by record, then analysed with events kept.
/// Decompression and block sizes are capped low so that a tiny gzip bomb stays tiny.
pub fn capture(data: &[u8]) {
    let Some((&split, file)) = data.split_first() else {
        return;
    };
    let chunk = if split == 0 {
        64 * 1024
    } else {
        usize::from(split)
    };
    let reader_cfg = ReaderConfig {
        max_block: 1024 * 1024,
        max_decompressed: 16 * 1024 * 1024,
    };
    let mut reader = CaptureReader::new(reader_cfg.clone());
    let mut records = 0usize;
    for piece in file.chunks(chunk) {
        reader.push(piece);
        while let Ok(Some(_)) = reader.next_record() {
            records += 1;
        }
    }
    reader.finish();
    while let Ok(Some(_)) = reader.next_record() {
        records += 1;
    }
    // Every record came out of bytes pushed (no loop without progress).
    assert!(records < usize::MAX);

    let mut analyzer = Analyzer::new(AnalyzeConfig {
        reader: reader_cfg,
        keep_events: true,
        max_active_flows: 64,
        ..AnalyzeConfig::default()
    });
    for piece in file.chunks(chunk) {
        analyzer.push(piece);
    }
    if let Ok(report) = analyzer.finish() {
        report.any_failed();
    }
}
