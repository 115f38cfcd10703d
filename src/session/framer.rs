//! Per-direction framing: splits a byte stream into PDUs / records according to the phase.
