//! Test kit shared by the test suites and the load generator: access to the labelled
//! development photos in `../shared/faces` (never copied into the repository), and head
//! turns synthesised from them.

pub mod attacks;
pub mod bad_images;
pub mod dataset;
pub mod frames;
pub mod headturn;
pub mod idcard;
pub mod pad_set;
pub mod pki;
pub mod redis_server;
pub mod splat;
pub mod tls;
