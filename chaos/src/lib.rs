//! chaos: process and network fault injection — seeded, scheduled, always reverted.
