//! End-to-end tests: the services over real gRPC on loopback.

mod health;
mod orchestrator;
mod trust;
