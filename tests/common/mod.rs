//! Shared test support.

#![allow(dead_code)]

pub mod conformance;
pub mod counting;
#[cfg(feature = "postgres")]
pub mod postgres;
