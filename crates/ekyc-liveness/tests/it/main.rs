//! The liveness service over real gRPC with a real Redis and synthesised head turns.

mod attestations;
mod challenges;
mod common;
mod outages;
mod pad;
mod replays;
mod sealed;
