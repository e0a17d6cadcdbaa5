//! The facematch service over real gRPC on loopback, with the real models and photos.

mod common;
mod embed;
mod load;
mod queue;
mod readiness;
mod recovery;
mod slow;
mod trace;
