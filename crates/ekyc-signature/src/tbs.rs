//! The bytes a client signs: defined by the server and bound to the deployment (issuer),
//! the session, the policy, the nonce and the session's expiry, so that a signature made
//! for another session or deployment does not fit this one. The format is documented in
//! `proto/ekyc/v1/orchestrator.proto` at `StartSessionResponse.to_be_signed`:
//!
//! ```text
//! ekyc-signature/v1
//! issuer=<orchestrator.issuer>
//! session=<session_id>
//! policy=<policy name>@<policy version>
//! nonce=<nonce, lower-case hex>
//! expires=<expires_at_unix_ms>
//! ```
//!
//! UTF-8, one `key=value` a line, `\n` after each line, nothing else.

use std::fmt;

/// The first line of every to-be-signed text.
pub const TO_BE_SIGNED_HEADER: &str = "ekyc-signature/v1";

/// Longest to-be-signed text [`ToBeSigned::parse`] looks at, in bytes; anything longer is
/// not one (a session id is at most 128 bytes, a nonce 32).
pub const MAX_TO_BE_SIGNED_BYTES: usize = 4096;

/// Longest issuer [`ToBeSigned::validate_issuer`] accepts, in bytes.
pub const MAX_ISSUER_BYTES: usize = 256;

/// The session context a signature is bound to. Build it from the session when it starts,
/// hand [`ToBeSigned::to_bytes`] to the client as `to_be_signed`, and pass the same bytes
/// to [`crate::TrustStore::verify`].
///
/// The session id is a bearer secret: [`fmt::Debug`] does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ToBeSigned {
    /// The deployment (`orchestrator.issuer`). Must not contain `\n`.
    pub issuer: String,
    /// The session id (URL-safe ASCII).
    pub session_id: String,
    /// The policy name (no `@`, no `\n`).
    pub policy: String,
    /// The policy version (no `\n`).
    pub policy_version: String,
    /// The session nonce, raw bytes (written as lower-case hex).
    pub nonce: Vec<u8>,
    /// When the session expires, Unix milliseconds.
    pub expires_at_unix_ms: i64,
}

impl fmt::Debug for ToBeSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToBeSigned")
            .field("issuer", &self.issuer)
            .field("session_id", &"<redacted>")
            .field("policy", &self.policy)
            .field("policy_version", &self.policy_version)
            .field("nonce", &hex::encode(&self.nonce))
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .finish()
    }
}

/// The fields two to-be-signed texts can differ in, named for messages (never their values:
/// session ids are bearer secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextField {
    Issuer,
    Session,
    Policy,
    Nonce,
    Expiry,
}

impl ContextField {
    /// The field's name in messages: `issuer`, `session`, `policy`, `nonce`, `expiry`.
    pub fn name(self) -> &'static str {
        match self {
            ContextField::Issuer => "issuer",
            ContextField::Session => "session",
            ContextField::Policy => "policy",
            ContextField::Nonce => "nonce",
            ContextField::Expiry => "expiry",
        }
    }
}

impl ToBeSigned {
    /// The exact bytes to sign (see the module documentation). Values containing `\n` (or
    /// a policy name containing `@`) give bytes that [`ToBeSigned::parse`] refuses; the
    /// orchestrator's settings validation keeps them out.
    pub fn to_bytes(&self) -> Vec<u8> {
        format!(
            "{TO_BE_SIGNED_HEADER}\nissuer={}\nsession={}\npolicy={}@{}\nnonce={}\nexpires={}\n",
            self.issuer,
            self.session_id,
            self.policy,
            self.policy_version,
            hex::encode(&self.nonce),
            self.expires_at_unix_ms
        )
        .into_bytes()
    }

    /// Reads to-be-signed bytes back, strictly: exactly the header and the five keys in the
    /// documented order, each line ending in `\n`, nothing before or after, UTF-8, a
    /// non-empty issuer, session, policy name and nonce, lower-case hex, a decimal expiry in
    /// its shortest form. Anything else (extra or missing lines, another key order, bad hex
    /// or UTF-8, `\r\n` line ends) is None: every accepted input is exactly
    /// `parse(b)?.to_bytes()`.
    pub fn parse(bytes: &[u8]) -> Option<ToBeSigned> {
        if bytes.len() > MAX_TO_BE_SIGNED_BYTES {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let body = text.strip_suffix('\n')?;
        let mut lines = body.split('\n');
        if lines.next()? != TO_BE_SIGNED_HEADER {
            return None;
        }
        let mut value = |key: &str| lines.next().and_then(|line| line.strip_prefix(key)?.strip_prefix('='));
        let issuer = value("issuer")?;
        let session_id = value("session")?;
        let (policy, policy_version) = value("policy")?.split_once('@')?;
        let nonce_hex = value("nonce")?;
        let expires = value("expires")?;
        if lines.next().is_some() {
            return None;
        }
        if issuer.is_empty() || session_id.is_empty() || policy.is_empty() || nonce_hex.is_empty() {
            return None;
        }
        if !nonce_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let nonce = hex::decode(nonce_hex).ok()?;
        let expires_at_unix_ms: i64 = expires.parse().ok()?;
        let parsed = ToBeSigned {
            issuer: issuer.to_string(),
            session_id: session_id.to_string(),
            policy: policy.to_string(),
            policy_version: policy_version.to_string(),
            nonce,
            expires_at_unix_ms,
        };
        // Canonical form only: no `+5`, `007`, `-0` in the expiry.
        (parsed.to_bytes() == bytes).then_some(parsed)
    }

    /// Checks an issuer (`orchestrator.issuer`) for use in to-be-signed bytes: not empty,
    /// no control characters (a `\n` would break the format), at most 256 bytes. For the
    /// orchestrator's settings validation; the message names the problem.
    pub fn validate_issuer(issuer: &str) -> Result<(), String> {
        if issuer.is_empty() {
            return Err("the issuer is empty; it names this deployment in the bytes clients sign".into());
        }
        if issuer.len() > MAX_ISSUER_BYTES {
            return Err(format!("the issuer is {} bytes; at most {MAX_ISSUER_BYTES} are accepted", issuer.len()));
        }
        if issuer.chars().any(char::is_control) {
            return Err("the issuer contains a control character (such as a line break); it must be one line of text".into());
        }
        Ok(())
    }

    /// The fields in which `other` differs from `self`, in the documented order.
    pub fn differences(&self, other: &ToBeSigned) -> Vec<ContextField> {
        let mut out = Vec::new();
        if self.issuer != other.issuer {
            out.push(ContextField::Issuer);
        }
        if self.session_id != other.session_id {
            out.push(ContextField::Session);
        }
        if self.policy != other.policy || self.policy_version != other.policy_version {
            out.push(ContextField::Policy);
        }
        if self.nonce != other.nonce {
            out.push(ContextField::Nonce);
        }
        if self.expires_at_unix_ms != other.expires_at_unix_ms {
            out.push(ContextField::Expiry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ToBeSigned {
        ToBeSigned {
            issuer: "ekyc.example.jp".into(),
            session_id: "s_AbC-123".into(),
            policy: "resident-certificate".into(),
            policy_version: "3".into(),
            nonce: vec![0x00, 0xab, 0xff, 0x10],
            expires_at_unix_ms: 1_764_500_000_123,
        }
    }

    const SAMPLE: &str = "ekyc-signature/v1\nissuer=ekyc.example.jp\nsession=s_AbC-123\npolicy=resident-certificate@3\nnonce=00abff10\nexpires=1764500000123\n";

    #[test]
    fn writes_exactly_the_documented_format_and_reads_it_back() {
        let t = sample();
        assert_eq!(String::from_utf8(t.to_bytes()).expect("utf-8"), SAMPLE);
        assert_eq!(ToBeSigned::parse(SAMPLE.as_bytes()), Some(t.clone()));
        let negative = ToBeSigned { expires_at_unix_ms: -5, policy_version: String::new(), ..t.clone() };
        assert_eq!(ToBeSigned::parse(&negative.to_bytes()), Some(negative));
        let unicode = ToBeSigned { issuer: "本番 ekyc".into(), policy_version: "v1@beta".into(), ..t };
        assert_eq!(ToBeSigned::parse(&unicode.to_bytes()), Some(unicode));
    }

    #[test]
    fn refuses_every_variant_of_the_format() {
        let bad: Vec<Vec<u8>> = vec![
            Vec::new(),
            SAMPLE.trim_end_matches('\n').into(),                            // last line without \n
            format!("{SAMPLE}\n").into(),                                    // an empty extra line
            format!("{SAMPLE}extra=1\n").into(),                             // an extra key
            format!("\n{SAMPLE}").into(),                                    // a line before the header
            SAMPLE.replace("ekyc-signature/v1", "ekyc-signature/v2").into(), // another version
            SAMPLE.replace('\n', "\r\n").into(),                             // CRLF
            SAMPLE.replace("issuer=ekyc.example.jp\n", "").into(),           // missing key
            SAMPLE.replace("issuer=ekyc.example.jp", "issuer=").into(),      // empty issuer
            SAMPLE.replace("session=s_AbC-123", "session=").into(),          // empty session
            SAMPLE.replace("nonce=00abff10", "nonce=").into(),               // empty nonce
            SAMPLE.replace("issuer=", "Issuer=").into(),                     // key case
            SAMPLE.replace("issuer=", "issuer =").into(),                    // spaces
            SAMPLE.replace("00abff10", "00ABFF10").into(),                   // upper-case hex
            SAMPLE.replace("00abff10", "00abff1").into(),                    // odd hex
            SAMPLE.replace("00abff10", "00abzz10").into(),                   // not hex
            SAMPLE.replace("@3", "3").into(),                                // no version separator
            SAMPLE.replace("policy=resident", "policy=@resident").into(),    // empty policy name
            SAMPLE.replace("1764500000123", "+1764500000123").into(),        // non-canonical number
            SAMPLE.replace("1764500000123", "01764500000123").into(),        // leading zero
            SAMPLE.replace("1764500000123", "99999999999999999999").into(),  // overflow
            SAMPLE.replace("1764500000123", "1.5").into(),                   // not an integer
            // Key order other than documented: session before issuer.
            SAMPLE.replace("issuer=ekyc.example.jp\nsession=s_AbC-123", "session=s_AbC-123\nissuer=ekyc.example.jp").into(),
            [SAMPLE.as_bytes(), &[0xff]].concat(), // trailing garbage
        ];
        for (i, b) in bad.iter().enumerate() {
            assert_eq!(ToBeSigned::parse(b), None, "variant {i}: {:?}", String::from_utf8_lossy(b));
        }
        let mut not_utf8 = SAMPLE.as_bytes().to_vec();
        not_utf8[25] = 0xc3; // inside the issuer value
        assert_eq!(ToBeSigned::parse(&not_utf8), None);
        let long = ToBeSigned { issuer: "x".repeat(MAX_TO_BE_SIGNED_BYTES), ..sample() };
        assert_eq!(ToBeSigned::parse(&long.to_bytes()), None);
        // Values with a newline do not round-trip.
        let newline = ToBeSigned { issuer: "a\nb".into(), ..sample() };
        assert_eq!(ToBeSigned::parse(&newline.to_bytes()), None);
    }

    #[test]
    fn issuers_must_be_one_short_line() {
        assert_eq!(ToBeSigned::validate_issuer("ekyc.city.example.jp"), Ok(()));
        assert_eq!(ToBeSigned::validate_issuer("本番"), Ok(()));
        for bad in ["", "a\nb", "tab\there", &"x".repeat(MAX_ISSUER_BYTES + 1)] {
            assert!(ToBeSigned::validate_issuer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn differences_name_fields_and_debug_hides_the_session_id() {
        let a = sample();
        let b = ToBeSigned { issuer: "other".into(), session_id: "s2".into(), nonce: vec![1], ..a.clone() };
        assert_eq!(a.differences(&b), vec![ContextField::Issuer, ContextField::Session, ContextField::Nonce]);
        let c = ToBeSigned { policy_version: "4".into(), expires_at_unix_ms: 1, ..a.clone() };
        assert_eq!(a.differences(&c).iter().map(|f| f.name()).collect::<Vec<_>>(), vec!["policy", "expiry"]);
        assert!(a.differences(&a).is_empty());
        let debug = format!("{a:?}");
        assert!(!debug.contains("s_AbC-123") && debug.contains("redacted") && debug.contains("00abff10"), "{debug}");
    }
}
