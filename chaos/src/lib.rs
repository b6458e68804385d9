//! chaos: process and network fault injection — seeded, scheduled, always reverted.
//! The fault proxy and toxics are network faults; process faults act on pids.

pub mod control;
pub mod duration;
pub mod fault;
pub mod injector;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod schedule;
pub mod toxic;

pub use fault::{Fault, FaultError, FaultParams, FaultRequest};
pub use injector::{FaultEvent, InjectError, Injector, InjectorOptions, RevertGuard, Stamp};
pub use ledger::{Ledger, Recovery};
pub use process::{Component, ComponentError, ComponentKind, Components, ProcStat};
pub use proxy::{FaultProxy, ProxyError, ProxyHandle, ProxyOptions};
pub use schedule::{Plan, PlannedFault, ScheduleEntry, ScheduleError};
pub use toxic::{ActiveToxic, Direction, Toxic, ToxicError};
