//! Integration tests of the runtime: real servers on loopback, real clients.

mod shutdown;
mod trace;
mod transport;
