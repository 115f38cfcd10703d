//! Zero-copy hot path (Linux): each direction moves socket → kernel pipe → socket with
//! `splice(2)`, so relayed bytes never enter user space.
//!
//! Pipes come from a bounded [`PipePool`] shared by all connections and are held only while
//! bytes are in them: a direction takes a pipe when its source is readable and gives it back as
//! soon as the pipe is drained into the destination (as HAProxy's `get_pipe`/`put_pipe` do). An
//! idle connection therefore holds no pipe and no buffer. When the pool is exhausted or a pipe
//! cannot be created (file descriptors, the per-user pipe quota), that read goes through the
//! half's user-space buffer instead: the connection degrades to copying, it never stops.
//!
//! rustix's `splice` is a safe function: no `unsafe` here. Readiness comes from tokio
//! (`try_io` clears it on `EAGAIN`), so the loop in `pipe.rs` drives both movers alike.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::pipe::{
    PipeFlags, SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe::{Half, Mover};
use crate::session::Direction;

/// A kernel pipe, empty whenever it is in the pool.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Most bytes one splice into the pipe may move (the pipe's capacity).
    cap: usize,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // The kernel may refuse the size (per-user pipe quota, /proc/sys/fs/pipe-max-size):
        // keep its default (64 KiB) then.
        if let Err(e) = fcntl_setpipe_size(&write, size) {
            tracing::debug!(error = %e, "Pipe size unchanged");
        }
        let cap = fcntl_getpipe_size(&write)?;
        Ok(Self { read, write, cap })
    }
}

/// Pipes shared by every connection of a proxy: at most `max` exist at once (in the pool or
/// lent out); idle ones are kept for reuse.
#[derive(Debug, Clone)]
pub(crate) struct PipePool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    free: Mutex<Vec<Pipe>>,
    /// Pipes that exist (free or lent out).
    live: AtomicUsize,
    max: usize,
    size: usize,
}

impl PipePool {
    /// A pool of at most `max` pipes of `size` bytes each (rounded up by the kernel to a power
    /// of two pages).
    pub(crate) fn new(max: usize, size: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                free: Mutex::new(Vec::new()),
                live: AtomicUsize::new(0),
                max,
                size,
            }),
        }
    }

    /// An empty pipe: a pooled one, or a new one while fewer than `max` exist. `None` when the
    /// pool is exhausted or the kernel refuses a new pipe.
    fn get(&self) -> Option<Pipe> {
        let s = &*self.shared;
        if let Some(p) = s.free.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Some(p);
        }
        let reserved = s
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < s.max).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            return None;
        }
        match Pipe::new(s.size) {
            Ok(p) => Some(p),
            Err(e) => {
                s.live.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "No pipe for splice; copying");
                None
            }
        }
    }

    /// Gives back a drained pipe.
    fn put(&self, pipe: Pipe) {
        let s = &*self.shared;
        s.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pipe);
    }

    /// Closes a pipe that may still hold bytes: it is never lent again.
    fn discard(&self, pipe: Pipe) {
        drop(pipe);
        self.shared.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Pipes that exist now (free or lent out).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }
}

/// One direction's state: the pipe it holds while bytes are in it.
#[derive(Debug, Default)]
struct Chan {
    pipe: Option<Pipe>,
    /// The last read went through the user-space buffer (no pipe to be had): keep the buffer
    /// rather than free and allocate it for every chunk.
    copying: bool,
}

/// The splice mover of one connection.
#[derive(Debug)]
pub(crate) struct Splice {
    pool: PipePool,
    c2s: Chan,
    s2c: Chan,
}

const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

impl Splice {
    pub(crate) fn new(pool: PipePool) -> Self {
        Self {
            pool,
            c2s: Chan::default(),
            s2c: Chan::default(),
        }
    }

    fn chan(&mut self, dir: Direction) -> (&PipePool, &mut Chan) {
        match dir {
            Direction::ClientToHost => (&self.pool, &mut self.c2s),
            Direction::HostToClient => (&self.pool, &mut self.s2c),
        }
    }
}

impl Drop for Splice {
    fn drop(&mut self) {
        // A pipe still held has bytes in it (the connection ended before they could be
        // delivered): close it rather than lend it to another connection.
        for chan in [&mut self.c2s, &mut self.s2c] {
            if let Some(p) = chan.pipe.take() {
                self.pool.discard(p);
            }
        }
    }
}

impl Mover for Splice {
    fn read(&mut self, dir: Direction, src: &TcpStream, half: &mut Half) -> io::Result<usize> {
        let (pool, chan) = self.chan(dir);
        if chan.pipe.is_none() {
            chan.pipe = pool.get();
        }
        let Some(pipe) = &chan.pipe else {
            chan.copying = true;
            return half.read_from(src);
        };
        if chan.copying {
            chan.copying = false;
            half.free_buf();
        }
        // The pipe is empty here (the loop reads only when a half holds nothing), so EAGAIN can
        // only mean "socket not readable": a full pipe, which also says EAGAIN, cannot happen.
        let read = src.try_io(Interest::READABLE, || {
            Ok(splice(src, None, &pipe.write, None, pipe.cap, FLAGS)?)
        });
        match read {
            Ok(n) if n > 0 => {
                half.queued = half.queued.saturating_add(n);
                Ok(n)
            }
            // EOF, not readable after all, or an error: the pipe is still empty.
            other => {
                if let Some(p) = chan.pipe.take() {
                    pool.put(p);
                }
                other
            }
        }
    }

    fn write(&mut self, dir: Direction, dst: &TcpStream, half: &mut Half) -> io::Result<usize> {
        let (pool, chan) = self.chan(dir);
        // Bytes read in user space (before the hand-off, or without a pipe) go first, in order.
        if !half.pending().is_empty() {
            let n = half.write_to(dst)?;
            if !chan.copying {
                // Only the bytes left from inspection: the buffer is not needed any more.
                half.free_buf();
            }
            return Ok(n);
        }
        let Some(pipe) = &chan.pipe else {
            // INVARIANT: `queued > 0` only while this direction holds its pipe.
            return Err(io::Error::other("splice: bytes queued without a pipe"));
        };
        // The pipe holds `queued` bytes, so EAGAIN means "socket buffer full".
        let n = dst.try_io(Interest::WRITABLE, || {
            Ok(splice(&pipe.read, None, dst, None, half.queued, FLAGS)?)
        })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        half.queued = half.queued.saturating_sub(n);
        half.delivered(n);
        if half.queued == 0
            && let Some(p) = chan.pipe.take()
        {
            pool.put(p);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_reuses() {
        let pool = PipePool::new(2, 64 * 1024);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "a third pipe beyond the bound");
        assert_eq!(pool.live(), 2);
        pool.put(a);
        let a = pool.get().unwrap();
        assert_eq!(pool.live(), 2, "the pooled pipe was reused");
        pool.discard(b);
        assert_eq!(pool.live(), 1);
        let b = pool.get().unwrap();
        assert_eq!(pool.live(), 2);
        drop((a, b));
    }

    #[test]
    fn empty_pool_lends_nothing() {
        let pool = PipePool::new(0, 64 * 1024);
        assert!(pool.get().is_none());
    }
}
