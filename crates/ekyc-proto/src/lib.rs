//! Generated Rust code for the `ekyc.v1` gRPC API (see `proto/`), plus the encoded file
//! descriptor set that the services hand to gRPC reflection.

#![allow(clippy::all, clippy::pedantic, missing_debug_implementations, unused_qualifications)]

pub mod v1 {
    tonic::include_proto!("ekyc.v1");
}

/// Encoded `FileDescriptorSet` of the whole API, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ekyc_descriptor");
