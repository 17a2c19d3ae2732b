//! Where the limiter's counters live: the memory store (one table under one lock, the
//! algorithms of [`super::algo`] applied to it) and the Redis store (one Lua script that
//! mirrors them; batch.rs puts checks that wait at the same time in one call). The limiter
//! picks one per check; no other file knows either's layout.

pub(crate) mod batch;
pub(crate) mod memory;
pub(crate) mod redis;
