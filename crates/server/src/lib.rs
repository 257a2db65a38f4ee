//! The Leasehold license server.
#![forbid(unsafe_code)]

pub mod allocator;
