//! Integration tests of the document service on the real models and generated photos: the
//! engine directly and through the real gRPC server on loopback.

mod cases;
mod common;
mod eval;
mod generated;
