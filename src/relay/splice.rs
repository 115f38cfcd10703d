//! Zero-copy hot path (Linux): each direction moves socket → kernel pipe → socket with
//! `splice(2)`, so relayed bytes never enter user space.
//!
//! rustix's `splice` is a safe function: no `unsafe` here. Readiness comes from tokio
//! (`try_io` clears it on `EAGAIN`), so the loop in `pipe.rs` drives both movers alike.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{
    PipeFlags, SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe::{Half, Mover};
use crate::session::Direction;

/// One kernel pipe per direction.
pub(crate) struct Splice {
    c2s: Chan,
    s2c: Chan,
}

struct Chan {
    read: OwnedFd,
    write: OwnedFd,
    /// Most bytes one splice into the pipe may move (the pipe's capacity).
    cap: usize,
}

impl Chan {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // Bigger pipes mean fewer syscalls; the kernel may refuse (per-user pipe quota,
        // /proc/sys/fs/pipe-max-size): keep its default then.
        if let Err(e) = fcntl_setpipe_size(&write, PIPE_SIZE) {
            tracing::debug!(error = %e, "Pipe size unchanged");
        }
        let cap = fcntl_getpipe_size(&write)?;
        Ok(Self { read, write, cap })
    }
}

/// Wanted pipe capacity.
const PIPE_SIZE: usize = 256 * 1024;

const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

impl Splice {
    /// Two pipes; fails when the process is out of file descriptors (use the copy loop then).
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            c2s: Chan::new()?,
            s2c: Chan::new()?,
        })
    }

    fn chan(&self, dir: Direction) -> &Chan {
        match dir {
            Direction::ClientToHost => &self.c2s,
            Direction::HostToClient => &self.s2c,
        }
    }
}

impl Mover for Splice {
    fn read(&mut self, dir: Direction, src: &TcpStream, half: &mut Half) -> io::Result<usize> {
        let chan = self.chan(dir);
        // The pipe is empty here (the loop reads only when a half holds nothing), so EAGAIN can
        // only mean "socket not readable": a full pipe, which also says EAGAIN, cannot happen.
        let n = src.try_io(Interest::READABLE, || {
            Ok(splice(src, None, &chan.write, None, chan.cap, FLAGS)?)
        })?;
        half.queued = half.queued.saturating_add(n);
        Ok(n)
    }

    fn write(&mut self, dir: Direction, dst: &TcpStream, half: &mut Half) -> io::Result<usize> {
        // Bytes read in user space before the hand-off go first, in order.
        if !half.pending().is_empty() {
            return half.write_to(dst);
        }
        let chan = self.chan(dir);
        // The pipe holds `queued` bytes, so EAGAIN means "socket buffer full".
        let n = dst.try_io(Interest::WRITABLE, || {
            Ok(splice(&chan.read, None, dst, None, half.queued, FLAGS)?)
        })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        half.queued = half.queued.saturating_sub(n);
        half.delivered(n);
        Ok(n)
    }
}
