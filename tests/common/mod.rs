//! Shared test support.

#![allow(dead_code)]

pub mod conformance;
pub mod counting;
