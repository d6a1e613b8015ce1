//! Shared test support.

pub mod conformance;
