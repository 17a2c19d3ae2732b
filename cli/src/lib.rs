//! # tenant-guard-cli
//!
//! The `tenant-guard` command and what it drives, kept out of the library so that users of
//! the `tenant-guard` layers build none of it (no clap, HTTP client, histograms, progress
//! bars or log subscriber in their dependency tree):
//!
//! * [`demo`] — the demo multi-tenant app behind `tenant-guard serve` and `tenant-guard demo`:
//!   every layer of the library on a few routes.
//! * [`loadgen`] — the open-loop load generator behind `tenant-guard load` and `demo`.
//! * [`sizing`] — the Redis memory-sizing fill behind `tenant-guard size`.
//!
//! This library target exists so that the crate's tests and benches can use those pieces;
//! it is not a stable API.

pub mod demo;
pub mod loadgen;
pub mod sizing;
