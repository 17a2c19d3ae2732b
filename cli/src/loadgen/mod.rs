//! An open-loop HTTP load generator for watching limits hold (`tenant-guard load` / `demo`).
//!
//! Requests go out on a fixed schedule — each tenant at its own constant rate — whatever
//! the server does, and latency is measured from the **scheduled** send time, so a stalling
//! server shows up as latency instead of silently lowering the load (no coordinated
//! omission). A cap on requests in flight keeps the client bounded: a request that would
//! exceed it is counted as `skipped`, not delayed. The run always ends: after the schedule,
//! stragglers get a bounded grace period.

mod chart;
mod endpoint;
mod plan;
mod report;
mod rules;
mod run;
mod scenario;

pub use endpoint::{Cost, matches_request, parse_cost};
pub use plan::{Endpoint, LoadPlan, Planned, Target, TenantLoad, schedule};
pub use report::{Report, Series, StreamTimes, TenantReport, max_in_window};
pub use rules::{RuleCheck, costs_from_policy};
pub use run::{Live, LoadError, run, run_with};
pub use scenario::{Scenario, ScenarioEndpoint, ScenarioTenant};
