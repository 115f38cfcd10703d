//! Decoder micro-benchmarks (divan: time and allocations): `cargo bench --bench decoders`.
//!
//! The inputs are real: an X.224 Connection Request as mstsc sends it, and a TLS handshake
//! between rustls peers in memory (the client's ClientHello, the test PKI's RSA-2048 leaf and
//! CA), fed to the same decoders and phase machine the proxy runs during inspection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::sync::{Arc, LazyLock};

use divan::counter::{BytesCount, ItemsCount};
use divan::{AllocProfiler, Bencher, black_box};
use rdpdiag::session::{Direction, Micros, Session, SessionConfig};
use rdpdiag::sim::pdus::{CcNeg, connection_confirm, connection_request};
use rdpdiag::wire::x224::Protocols;
use rdpdiag::wire::{tls, x224, x509};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// One connection's opening, as the proxy sees it: (direction, bytes of one read).
struct Exchange {
    chunks: Vec<(Direction, Vec<u8>)>,
    cr: Vec<u8>,
    client_hello_body: Vec<u8>,
    chain: Vec<Vec<u8>>,
}

static EXCHANGE: LazyLock<Exchange> = LazyLock::new(exchange);

fn exchange() -> Exchange {
    use rustls::{ClientConnection, ServerConnection};
    let pki = rdpdiag::sim::certs::pki().unwrap();
    let provider = rdpdiag::tls::provider();
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.good.chain(), pki.good.key())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(rdpdiag::tls::verifier::RecordingVerifier::new(
            provider,
        )))
        .with_no_client_auth();
    let mut c = ClientConnection::new(Arc::new(client), "rds01".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();

    let cr = connection_request(
        Some("bench"),
        Some((0, Protocols(Protocols::SSL.0 | Protocols::HYBRID.0))),
    );
    let cc = connection_confirm(CcNeg::Response {
        flags: 0,
        selected: Protocols::SSL,
    });
    let mut chunks = vec![
        (Direction::ClientToHost, cr.clone()),
        (Direction::HostToClient, cc),
    ];
    // Some application data once the handshake is done, as a session would send.
    c.writer().write_all(&[0x5a; 300]).unwrap();
    s.writer().write_all(&[0xa5; 1200]).unwrap();
    loop {
        let mut moved = false;
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            let mut rd = &out[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            chunks.push((Direction::ClientToHost, out));
            moved = true;
        }
        let mut out = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            let mut rd = &out[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            chunks.push((Direction::HostToClient, out));
            moved = true;
        }
        if !moved {
            break;
        }
    }
    // The ClientHello: record header (5 bytes), handshake header (4 bytes), then the body.
    let first = &chunks[2].1;
    let len = usize::from(first[6]) << 16 | usize::from(first[7]) << 8 | usize::from(first[8]);
    let client_hello_body = first[9..9 + len].to_vec();
    let chain = vec![pki.good.der.to_vec(), pki.ca.to_vec()];
    Exchange {
        chunks,
        cr,
        client_hello_body,
        chain,
    }
}

#[divan::bench]
fn x224_connection_request(b: Bencher) {
    let cr = &EXCHANGE.cr;
    b.counter(BytesCount::of_slice(cr))
        .bench(|| x224::decode(black_box(cr)).unwrap());
}

#[divan::bench]
fn tls_client_hello(b: Bencher) {
    let body = &EXCHANGE.client_hello_body;
    b.counter(BytesCount::of_slice(body))
        .bench(|| tls::parse_client_hello(black_box(body)).unwrap());
}

/// The host's chain, leaf (RSA-2048, like a Windows host's) and CA.
#[divan::bench]
fn x509_certificate_chain(b: Bencher) {
    let chain = &EXCHANGE.chain;
    b.counter(ItemsCount::new(chain.len())).bench(|| {
        chain
            .iter()
            .map(|der| x509::summarize(black_box(der)).unwrap())
            .collect::<Vec<_>>()
    });
}

/// The whole opening through the phase machine (X.224, TLS handshake, application data), then
/// the verdict: counted per event the session records.
#[divan::bench]
fn session_per_event(b: Bencher) {
    let chunks = &EXCHANGE.chunks;
    let feed = || {
        let mut s = Session::new(SessionConfig {
            host_name: Some("rds01".into()),
            now_unix: Some(1_800_000_000),
            ..SessionConfig::default()
        });
        s.on_connect_result(Ok(()), Micros(0));
        for (i, (dir, bytes)) in chunks.iter().enumerate() {
            s.feed(*dir, bytes, Micros(i as u64 * 100));
        }
        s
    };
    let events = feed().events().len();
    assert!(events > 3, "the exchange yields events");
    b.counter(ItemsCount::new(events)).bench(|| {
        let s = feed();
        black_box(s.verdict())
    });
}
