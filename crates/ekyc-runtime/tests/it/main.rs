//! Integration tests of the runtime: real servers on loopback, real clients.

mod trace;
mod transport;
