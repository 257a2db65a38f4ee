//! The Leasehold client library (being written).
