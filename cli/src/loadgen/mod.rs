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

pub use endpoint::{matches_request, parse_cost, Cost};
pub use plan::{schedule, Endpoint, LoadPlan, Planned, Target, TenantLoad};
pub use report::{max_in_window, Report, Series, StreamTimes, TenantReport};
pub use rules::{costs_from_policy, RuleCheck};
pub use run::{run, run_with, Live, LoadError};
pub use scenario::{Scenario, ScenarioEndpoint, ScenarioTenant};
