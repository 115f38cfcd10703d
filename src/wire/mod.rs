//! Sans-IO decoders, one module per layer.
//!
//! Every decoder is lenient: it never panics, answers `Ok(None)` when it needs more bytes,
//! and reports malformed input as a [`DecodeError`] that names the field and its offset.
//! Unknown values are kept (open newtypes with consts), never rejected.
//!
//! Nothing here knows about sockets, files or clocks.

pub mod credssp;
pub mod cursor;
pub mod gcc;
pub mod mcs;
pub mod ntlm;
pub mod tls;
pub mod tpkt;
pub mod x224;
pub mod x509;

use serde::Serialize;

/// A decode error: which field, at which byte offset, what was expected and what was found.
///
/// Offsets are relative to the start of the buffer handed to the decoder; callers that know the
/// stream position add it (see [`DecodeError::shifted`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field} at offset {offset}: expected {expected}, found {found}")]
pub struct DecodeError {
    /// Byte offset of the offending field.
    pub offset: usize,
    /// Spec name of the field.
    pub field: &'static str,
    /// What the decoder expected.
    pub expected: String,
    /// What it found.
    pub found: String,
}

impl DecodeError {
    pub fn new(
        offset: usize,
        field: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            offset,
            field,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The same error with its offset moved by `base` (decoder offset -> stream offset).
    #[must_use]
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset = self.offset.saturating_add(base);
        self
    }
}

/// `Ok(Some(x))` decoded, `Ok(None)` needs more bytes, `Err` malformed.
pub type Decoded<T> = Result<Option<T>, DecodeError>;
