//! Generated Rust code for the `ekyc.v1` gRPC API (see `proto/`), plus the encoded file
//! descriptor set that the services hand to gRPC reflection.

#![allow(clippy::all, clippy::pedantic, missing_debug_implementations, unused_qualifications)]

pub mod v1 {
    tonic::include_proto!("ekyc.v1");
}

/// Encoded `FileDescriptorSet` of the whole API, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ekyc_descriptor");

impl v1::ReasonCode {
    /// The code's name as status messages and evidence records write it, without the enum
    /// prefix: `FACE_MISMATCH`.
    pub fn name(self) -> &'static str {
        self.as_str_name().trim_start_matches("REASON_CODE_")
    }

    /// The code [`Self::name`] calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::from_str_name(&format!("REASON_CODE_{name}"))
    }
}

/// The name of the reason code numbered `code` ([`v1::ReasonCode::name`]), or the number
/// itself when this version does not know it.
pub fn reason_name(code: i32) -> String {
    v1::ReasonCode::try_from(code).map_or_else(|_| code.to_string(), |c| c.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::v1::ReasonCode;

    #[test]
    fn reason_names_round_trip_without_the_prefix() {
        assert_eq!(ReasonCode::FaceMismatch.name(), "FACE_MISMATCH");
        assert_eq!(ReasonCode::from_name("CERT_REVOKED"), Some(ReasonCode::CertRevoked));
        assert_eq!(ReasonCode::from_name("NO_SUCH_CODE"), None);
        assert_eq!(super::reason_name(ReasonCode::Glare as i32), "GLARE");
        assert_eq!(super::reason_name(9999), "9999");
    }
}
