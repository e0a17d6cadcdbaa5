//! Challenges: a random sequence of head poses drawn with the operating system's
//! cryptographic RNG, and the MAC-bound id that carries it.
//!
//! The id is `v1.<nonce>.<issued_ms>.<expires_ms>.<steps>.<mac>`: the MAC is the liveness
//! keyring's keyed digest (HMAC-SHA-256, purpose `liveness-challenge-id`) of everything
//! before it, so a forged or altered id is refused without touching the store or any
//! image, and expiry is known from the id alone. Every key of the keyring is tried, so ids
//! issued before a key rotation stay valid for their lifetime. The store holds the sealed
//! challenge record under its nonce until it is used once or expires.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ekyc_runtime::seal::Keyring;
use serde::{Deserialize, Serialize};

/// A head pose a step asks for, named from the user's point of view: `TurnLeft` is the
/// user's own left, so in an unmirrored camera image the face then points towards the
/// image's right (yaw > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pose {
    Frontal,
    TurnLeft,
    TurnRight,
    LookUp,
    LookDown,
}

impl Pose {
    fn code(self) -> char {
        match self {
            Pose::Frontal => 'F',
            Pose::TurnLeft => 'L',
            Pose::TurnRight => 'R',
            Pose::LookUp => 'U',
            Pose::LookDown => 'D',
        }
    }

    fn from_code(c: char) -> Option<Pose> {
        Some(match c {
            'F' => Pose::Frontal,
            'L' => Pose::TurnLeft,
            'R' => Pose::TurnRight,
            'U' => Pose::LookUp,
            'D' => Pose::LookDown,
            _ => return None,
        })
    }

    /// Instructions shown to the user (Japanese, English).
    pub fn instructions(self) -> (&'static str, &'static str) {
        match self {
            Pose::Frontal => ("カメラに向かって正面を向いてください", "Look straight at the camera"),
            Pose::TurnLeft => ("顔をゆっくり左に向けてください", "Slowly turn your head to your left"),
            Pose::TurnRight => ("顔をゆっくり右に向けてください", "Slowly turn your head to your right"),
            Pose::LookUp => ("顔を少し上に向けてください", "Tilt your head slightly up"),
            Pose::LookDown => ("顔を少し下に向けてください", "Tilt your head slightly down"),
        }
    }
}

/// A challenge as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeId {
    /// 16 random bytes, URL-safe base64: the store key.
    pub nonce: String,
    pub issued_ms: i64,
    pub expires_ms: i64,
    pub steps: Vec<Pose>,
}

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    Malformed,
    BadMac,
}

/// Keyed-digest purpose of challenge-id MACs.
const PURPOSE: &str = "liveness-challenge-id";

/// Equality of two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ChallengeId {
    /// Draws `n` steps: the frontal step first, then `n - 1` poses from `poses`, never the
    /// same pose twice in a row.
    pub fn random_steps(n: usize, poses: &[Pose]) -> Result<Vec<Pose>, getrandom::Error> {
        let mut steps = vec![Pose::Frontal];
        while steps.len() < n {
            let choices: Vec<Pose> = poses.iter().copied().filter(|p| Some(p) != steps.last()).collect();
            steps.push(choices[uniform(choices.len())?]);
        }
        Ok(steps)
    }

    pub fn new_nonce() -> Result<String, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(URL_SAFE_NO_PAD.encode(b))
    }

    fn body(&self) -> String {
        let steps: String = self.steps.iter().map(|p| p.code()).collect();
        format!("v1.{}.{}.{}.{}", self.nonce, self.issued_ms, self.expires_ms, steps)
    }

    /// The id string, MAC included.
    pub fn encode(&self, keys: &Keyring) -> String {
        let body = self.body();
        let tag = URL_SAFE_NO_PAD.encode(keys.digest(PURPOSE, body.as_bytes()));
        format!("{body}.{tag}")
    }

    /// Parses and authenticates an id (constant-time MAC comparison).
    pub fn decode(id: &str, keys: &Keyring) -> Result<ChallengeId, IdError> {
        if id.len() > 512 {
            return Err(IdError::Malformed);
        }
        let parts: Vec<&str> = id.split('.').collect();
        let [v, nonce, issued, expires, steps, tag] = parts[..] else { return Err(IdError::Malformed) };
        if v != "v1" || nonce.len() != 22 {
            return Err(IdError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| IdError::Malformed)?;
        let body = &id[..id.len() - parts[5].len() - 1];
        // Every key is tried, whatever matches, so timing says nothing about which one did.
        let matched = keys.digests(PURPOSE, body.as_bytes()).iter().fold(false, |m, d| m | constant_time_eq(d, &tag));
        if !matched {
            return Err(IdError::BadMac);
        }
        let steps: Option<Vec<Pose>> = steps.chars().map(Pose::from_code).collect();
        Ok(ChallengeId {
            nonce: nonce.to_string(),
            issued_ms: issued.parse().map_err(|_| IdError::Malformed)?,
            expires_ms: expires.parse().map_err(|_| IdError::Malformed)?,
            steps: steps.filter(|s| !s.is_empty()).ok_or(IdError::Malformed)?,
        })
    }
}

/// A uniform index in `0..n` from the OS RNG (rejection sampling, no modulo bias).
fn uniform(n: usize) -> Result<usize, getrandom::Error> {
    let n = n as u32;
    let zone = u32::MAX - u32::MAX % n;
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        let v = u32::from_le_bytes(b);
        if v < zone {
            return Ok((v % n) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_tampering() {
        let key = Keyring::new(vec![("a".into(), [7u8; 32])]).expect("keys");
        let other = Keyring::new(vec![("a".into(), [8u8; 32])]).expect("keys");
        let id = ChallengeId {
            nonce: ChallengeId::new_nonce().expect("rng"),
            issued_ms: 1000,
            expires_ms: 121_000,
            steps: vec![Pose::Frontal, Pose::TurnLeft, Pose::LookUp],
        };
        let s = id.encode(&key);
        assert_eq!(ChallengeId::decode(&s, &key), Ok(id.clone()));
        assert_eq!(ChallengeId::decode(&s, &other), Err(IdError::BadMac));
        // Extending the expiry or changing a step breaks the MAC.
        let longer = s.replacen(".121000.", ".999999.", 1);
        assert_eq!(ChallengeId::decode(&longer, &key), Err(IdError::BadMac));
        let easier = s.replacen(".FLU.", ".FLL.", 1);
        assert_eq!(ChallengeId::decode(&easier, &key), Err(IdError::BadMac));
        assert_eq!(ChallengeId::decode("not-an-id", &key), Err(IdError::Malformed));
        // After a rotation, ids issued under the previous key still verify.
        let rotated = Keyring::new(vec![("b".into(), [9u8; 32]), ("a".into(), [7u8; 32])]).expect("keys");
        assert_eq!(ChallengeId::decode(&s, &rotated), Ok(id.clone()));
    }

    #[test]
    fn steps_start_frontal_and_never_repeat() {
        let poses = [Pose::TurnLeft, Pose::TurnRight, Pose::LookUp, Pose::LookDown];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..400 {
            let steps = ChallengeId::random_steps(5, &poses).expect("rng");
            assert_eq!(steps.len(), 5);
            assert_eq!(steps[0], Pose::Frontal);
            assert!(steps.windows(2).all(|w| w[0] != w[1]), "{steps:?}");
            seen.insert(steps[1..].to_vec());
        }
        assert!(seen.len() > 50, "steps are random: {} distinct sequences in 400", seen.len());
    }
}
