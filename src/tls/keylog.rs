//! SSLKEYLOGFILE lines (RFC 9850) for both legs of a terminated connection.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The key log of one connection: `<LABEL> <client_random hex> <secret hex>` lines, both legs
/// in one buffer (each line names its own client random, so Wireshark matches them itself).
///
/// Cloned into the rustls configs of both legs; the relay hands [`KeyLogBuffer::contents`] to the
/// report (`ConnectionReport::tls_keylog`) for the recorder and `--keylog`.
#[derive(Debug, Clone, Default)]
pub struct KeyLogBuffer(pub Arc<Mutex<String>>);

impl KeyLogBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines logged so far.
    pub fn contents(&self) -> String {
        match self.0.lock() {
            Ok(s) => s.clone(),
            // A panic while holding the lock left whole lines behind: still usable.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl rustls::KeyLog for KeyLogBuffer {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Writing into a String cannot fail.
        writeln!(
            guard,
            "{label} {} {}",
            hex::encode(client_random),
            hex::encode(secret)
        )
        .ok();
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::KeyLog;

    #[test]
    fn lines_are_sslkeylogfile_format() {
        let k = KeyLogBuffer::new();
        k.log("CLIENT_RANDOM", &[0xab; 32], &[0x01; 48]);
        let s = k.contents();
        let parts: Vec<&str> = s.trim_end().split(' ').collect();
        assert_eq!(parts[0], "CLIENT_RANDOM");
        assert_eq!(parts[1].len(), 64);
        assert_eq!(parts[2].len(), 96);
        assert!(s.ends_with('\n'));
    }
}
