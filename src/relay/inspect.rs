//! The first part of a connection: connect to the host while buffering what the client sends,
//! then relay with a tap that feeds a copy of every chunk to the [`Session`] until it has
//! learned all it can (or the byte cap is reached), then hand over to the hot path.
//!
//! Bytes are never held back for decoding: each chunk is fed (synchronously) and then forwarded
//! by the next step of the same loop.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use super::pipe::{Copying, Half, Relay, Step};
use super::tap::Tap;
use crate::record::Leg;
use crate::session::{ConnectFailure, Micros, Session};

/// The connection's clock: [`Micros`] since accept, from tokio's clock (pausable in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    t0: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self { t0: Instant::now() }
    }

    pub(crate) fn now(&self) -> Micros {
        Micros(u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Micros) -> Option<Instant> {
        self.t0.checked_add(Duration::from_micros(at.0))
    }
}

/// How the connection to the host went.
#[derive(Debug)]
pub(crate) enum Connected {
    Host(TcpStream),
    Failed(ConnectFailure),
    /// The host accepted and reset before the connection could be used (tokio reports the
    /// reset as the connect's error): a close by the host, not a failed connect.
    HostReset(io::Error),
    /// The client reset while we were connecting: the attempt is abandoned.
    ClientReset(io::Error),
}

/// Connects to `host:port` within `timeout`, meanwhile reading what the client sends into `c2s`
/// (until its buffer is full; the kernel holds the rest) and noting a FIN in `c2s.eof`.
pub(crate) async fn connect(
    client: &TcpStream,
    c2s: &mut Half,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Connected {
    let connecting = tokio::time::timeout(timeout, TcpStream::connect((host, port)));
    tokio::pin!(connecting);
    loop {
        tokio::select! {
            done = &mut connecting => return match done {
                Ok(Ok(stream)) => Connected::Host(stream),
                Ok(Err(e)) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                    Connected::HostReset(e)
                }
                Ok(Err(e)) => Connected::Failed(classify(&e)),
                Err(_elapsed) => Connected::Failed(ConnectFailure::Timeout),
            },
            ready = client.readable(), if !c2s.eof && c2s.has_room() => {
                match ready.and_then(|()| c2s.append_from(client)) {
                    Ok(0) => c2s.eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Connected::ClientReset(e),
                }
            }
        }
    }
}

fn classify(e: &io::Error) -> ConnectFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut => ConnectFailure::Timeout,
        _ => ConnectFailure::Other(e.to_string()),
    }
}

/// How inspection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inspected {
    /// Both directions ended (or a side reset) while inspecting.
    Done,
    /// The session says a phase stalled: end both connections.
    Stalled,
    /// Nothing more to learn: relay the rest without looking.
    HandOff,
}

/// Relays with a tap into `session` (and the recording `tap`, if any) until it is done, stalls,
/// or `limit` bytes were fed. `fed` counts bytes already fed (those buffered while connecting).
pub(crate) async fn inspect(
    relay: &mut Relay,
    session: &mut Session,
    mut tap: Option<&mut Tap>,
    clock: Clock,
    mut fed: u64,
    limit: u64,
) -> Inspected {
    // A deadline `tick` has already been given; a session that keeps returning it is not
    // ticked again until something else happens (no busy loop).
    let mut ticked: Option<Micros> = None;
    let mut copying = Copying;
    loop {
        if session.inspection_done() || fed >= limit {
            return Inspected::HandOff;
        }
        let deadline = session
            .next_deadline()
            .filter(|d| Some(*d) != ticked)
            .and_then(|d| Some((d, clock.instant(d)?)));
        let wake = deadline.map_or_else(Instant::now, |(_, i)| i);
        let step = tokio::select! {
            step = relay.step(&mut copying, true) => step,
            () = sleep_until(wake), if deadline.is_some() => {
                ticked = deadline.map(|(d, _)| d);
                if session.tick(clock.now()) {
                    return Inspected::Stalled;
                }
                continue;
            }
        };
        ticked = None;
        match step {
            Step::Read(dir) => {
                let chunk = relay.half(dir).pending();
                fed = fed.saturating_add(chunk.len() as u64);
                let at = clock.now();
                if let Some(t) = tap.as_deref_mut() {
                    t.chunk(Leg::Client, dir, chunk, at);
                }
                session.feed(dir, chunk, at);
            }
            Step::Closed(side, kind) => session.on_close(side, kind, clock.now()),
            Step::Done => return Inspected::Done,
        }
    }
}
