//! Nothing to use: this crate holds the benches that run tenant-guard beside its peers
//! (`benches/`), so that the peers' dependencies stay out of the library's own builds.
//!
//! Run: `cargo bench -p tenant-guard-peers --bench session_vs_tower_sessions`.
