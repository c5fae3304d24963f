//! The trainer's integration tests, in one binary: linking the whole stack once instead of
//! once per file is minutes of a cold build. Runs that train take turns
//! ([`support::serial`]): burn's CPU backends draw from one process-wide generator.
mod support;

mod adaptation;
mod awd_overfitting;
mod data_parallel;
mod learning;
mod resume;
