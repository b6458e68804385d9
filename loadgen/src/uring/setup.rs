//! Ring setup: probing what the kernel supports, building the ring, its
//! registered-file table and the eventfd that wakes a parked executor.

use super::*;

pub(super) const SQ_ENTRIES: u32 = 256;
pub(super) const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// Receive buffer per socket: one RECV takes a typical response whole.
pub(super) const RECV_BUF: usize = 16 * 1024;
/// The largest length one SQE can carry.
pub(super) const MAX_OP_LEN: usize = u32::MAX as usize;
/// How long teardown waits for in-flight operations before leaking their memory.
pub(super) const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);
/// IORING_RECVSEND_POLL_FIRST (Linux 5.19, which `available` requires through
/// cancel by fd); the crate keeps its constants private.
pub(super) const RECVSEND_POLL_FIRST: u16 = 1;
/// Size of the ring's registered-file table (it cannot grow): sockets in slots
/// past it, or past RLIMIT_NOFILE, use plain fds.
pub(super) const FILE_TABLE: u32 = 4096;

/// user_data = kind << 56 | generation << 32 | slot index: a CQE for a slot that
/// was freed (and maybe reused) since its op was pushed carries a stale
/// generation and is ignored.
pub(super) const GEN_MASK: u32 = (1 << 24) - 1;
pub(super) const WAKE_USER_DATA: u64 = (Kind::Wake as u64) << 56 | u32::MAX as u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Kind {
    Connect = 1,
    /// The SEND of a pair; it posts a CQE only when it fails or falls short,
    /// and then its RECV posts none (the kernel skips the CQEs of the rest of
    /// a link whose skip-on-success head failed).
    LinkedSend,
    /// The RECV of a pair, started by the kernel once the send has completed.
    LinkedRecv,
    Recv,
    Send,
    Cancel,
    /// The read armed on the eventfd that wakes a parked executor.
    Wake,
}

impl Kind {
    pub(super) fn of(user_data: u64) -> Option<Kind> {
        Some(match (user_data >> 56) as u8 {
            1 => Kind::Connect,
            2 => Kind::LinkedSend,
            3 => Kind::LinkedRecv,
            4 => Kind::Recv,
            5 => Kind::Send,
            6 => Kind::Cancel,
            7 => Kind::Wake,
            _ => return None,
        })
    }

    pub(super) fn user_data(self, idx: usize, gen: u32) -> u64 {
        (self as u64) << 56 | u64::from(gen & GEN_MASK) << 32 | idx as u64
    }
}

pub(super) fn unsupported(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring: {what}"))
}

/// Sets the ring up as the design wants it (one issuing thread, completions run
/// only when we ask), or plainly where the kernel refuses those flags.
pub(super) fn build_ring() -> io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        // Says in the SQ flags when deferred completions wait for an enter, so
        // a turn with nothing to submit can skip the syscall.
        .setup_taskrun_flag()
        .build(SQ_ENTRIES);
    let ring = match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)?,
        other => other?,
    };
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(unsupported(
            "no timeout on waits (IORING_FEAT_EXT_ARG, Linux 5.11)",
        ));
    }
    if !params.is_feature_skip_cqe_on_success() {
        return Err(unsupported(
            "no IOSQE_CQE_SKIP_SUCCESS (IORING_FEAT_CQE_SKIP, Linux 5.17)",
        ));
    }
    Ok(ring)
}

/// Registers a sparse file table for the ring's sockets; returns its size, 0
/// where the kernel refuses (sockets then use plain fds).
pub(super) fn register_file_table(ring: &IoUring, want: u32) -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live local it is given.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    };
    // The kernel refuses a table larger than RLIMIT_NOFILE.
    let size = u64::from(want).min(nofile) as u32;
    if size == 0 {
        return 0;
    }
    match ring.submitter().register_files_sparse(size) {
        Ok(()) => size,
        Err(e) => {
            tracing::debug!("io_uring: no registered files ({e}); using plain fds");
            0
        }
    }
}

pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd that
    // nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: the fd is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Can this process use io_uring with the ops we need? (setup may be refused:
/// seccomp in containers, old kernels, io_uring_disabled sysctl). Cheap enough to
/// call once per run.
pub(crate) fn available() -> Result<(), io::Error> {
    let mut ring = build_ring()?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(unsupported(format!("no {name} op")));
        }
    }
    // Cancelling by fd (Linux 5.19) cannot be probed: ask for it on an fd with
    // nothing in flight, which says 0 or ENOENT where supported, EINVAL where not.
    let efd = eventfd()?;
    let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(efd.as_raw_fd())).all())
        .build()
        .user_data(0);
    // SAFETY: a cancel carries no pointers into our memory.
    unsafe { ring.submission().push(&cancel) }.map_err(|_| unsupported("empty SQ is full"))?;
    ring.submit_and_wait(1)?;
    let res = ring.completion().next().map(|c| c.result());
    match res {
        Some(r) if r >= 0 || r == -libc::ENOENT => Ok(()),
        Some(r) => Err(unsupported(format!(
            "no cancel by fd: {}",
            io::Error::from_raw_os_error(-r)
        ))),
        None => Err(unsupported("cancel posted no completion")),
    }
}
