//! Zero-copy forwarding with splice(2) through a pipe.
//!
//! Written by hand on `libc` because it is the hot path and no maintained
//! crate wraps socket→pipe→socket splicing for tokio sockets: the bytes
//! never enter userspace, which is what lets the proxy keep up with a
//! direct loopback connection.

use std::io;
use std::os::fd::RawFd;

/// A non-blocking pipe used as the splice buffer of one direction.
pub struct Pipe {
    r: RawFd,
    w: RawFd,
}

/// Pipe capacity asked for (the kernel rounds; unprivileged maximum is
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
const PIPE_SIZE: libc::c_int = 1024 * 1024;

impl Pipe {
    /// Creates a pipe (O_NONBLOCK, O_CLOEXEC) and tries to enlarge it.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fds[1] is the pipe we just created; failure is harmless
        // (the pipe keeps its default 64 KiB).
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe {
            r: fds[0],
            w: fds[1],
        })
    }

    /// Moves up to `len` bytes from socket `from` into the pipe.
    /// `Ok(0)` is end of stream; `WouldBlock` means no data yet.
    pub fn fill(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.w, len)
    }

    /// Moves up to `len` bytes from the pipe into socket `to`.
    pub fn drain(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.r, to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on file descriptors the caller owns for the
    // duration of the call; null offsets are allowed for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both fds are owned by this Pipe and closed exactly once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}
