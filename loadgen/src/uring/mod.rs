//! The io_uring backend: a single-threaded executor whose reactor is an io_uring.
//! A request costs one SQE pair (a SEND linked to a RECV, the send posting no
//! completion) and one CQE, and an idle turn costs one `io_uring_enter` (the
//! cheapest variant `ci/floor` measured). Timers are a heap checked every turn,
//! with the ring's wait bounded by the earliest one, so open-model sends land
//! within microseconds of their schedule instead of tokio's millisecond ticks.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use socket2::SockAddr;

use crate::sock::{tcp_socket, Backend, Socket};

mod backend;
mod executor;
mod reactor;
mod setup;

pub(crate) use backend::*;
pub(crate) use executor::*;
use reactor::*;
pub(crate) use setup::*;

#[cfg(test)]
mod tests;
