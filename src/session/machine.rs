//! The phase machine.

use super::events::{Event, EventKind};
use super::verdict::{Facts, Outcome, Verdict};
use super::{CloseKind, ConnectFailure, Direction, Micros, Phase, Side};

/// Knobs of the diagnosis.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A phase with no progress for this long ends with cause `stall`.
    pub stall_timeout: Micros,
    /// Most bytes buffered per direction while inspecting.
    pub max_inspect_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            stall_timeout: Micros(30_000_000),
            max_inspect_bytes: 256 * 1024,
        }
    }
}

/// One connection's diagnosis state.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    events: Vec<Event>,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            phase: Phase::TcpConnect,
            events: Vec::new(),
        }
    }

    /// The TCP connection to the host succeeded or failed.
    pub fn on_connect_result(&mut self, result: Result<(), ConnectFailure>, at: Micros) {
        let kind = match result {
            Ok(()) => {
                self.phase = Phase::X224;
                EventKind::TcpConnected
            }
            Err(failure) => EventKind::ConnectFailed { failure },
        };
        self.events.push(Event {
            at,
            dir: None,
            offset: None,
            phase: self.phase,
            kind,
        });
    }

    /// Bytes seen in one direction.
    pub fn feed(&mut self, _dir: Direction, _bytes: &[u8], _at: Micros) {}

    /// A side closed (FIN) or reset its connection.
    pub fn on_close(&mut self, side: Side, kind: CloseKind, at: Micros) {
        self.events.push(Event {
            at,
            dir: None,
            offset: None,
            phase: self.phase,
            kind: EventKind::Closed { side, kind },
        });
    }

    /// Lets time pass; returns true when the connection should be ended because a phase stalled.
    pub fn tick(&mut self, _at: Micros) -> bool {
        false
    }

    /// When `tick` next needs to be called, if ever.
    pub fn next_deadline(&self) -> Option<Micros> {
        None
    }

    /// True once nothing more can be learned from the bytes: the driver may stop feeding them
    /// (it must still report closes and may report byte counts).
    pub fn inspection_done(&self) -> bool {
        false
    }

    /// Events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The verdict, from what has been seen so far.
    pub fn verdict(&self) -> Verdict {
        let _ = &self.cfg;
        Verdict {
            outcome: Outcome::Unknown,
            phase_reached: self.phase,
            closed_by: None,
            close_kind: None,
            cause: "closed_early",
            summary: String::new(),
            inferred: false,
            evidence: Vec::new(),
            likely_causes: Vec::new(),
            remedies: Vec::new(),
            confirm_with: Vec::new(),
            facts: Facts::default(),
        }
    }
}
