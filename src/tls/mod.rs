//! TLS termination helpers for `proxy --fresh-cert` and `cert`: certificates (rcgen), the
//! recording verifier for the host leg, and the per-connection key log.
//!
//! I/O-free except for [`cert::Ca::load`] / [`cert::Ca::write`] (files); the relay does the
//! handshakes (`relay/terminate.rs`).

pub mod cert;
pub mod keylog;
pub mod verifier;

use std::sync::Arc;

/// The crypto provider every rdpdiag TLS config uses (aws-lc-rs: it also generates the RSA
/// keys, see [`cert`]).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
