//! Run untrusted programs in pre-forked Linux containers.

#![deny(missing_docs)]

pub use hutch_protocol as protocol;
