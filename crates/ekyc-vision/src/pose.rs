//! Head pose from the FaceMesh points: a weighted rigid fit (Horn's method) of the 468
//! observed 3-D points onto the project's canonical frontal face.
//!
//! Sign convention, in an unmirrored camera image (what the camera saw, not a selfie
//! preview):
//! - **yaw > 0** when the person turns to their own left, so the nose points towards the
//!   image's right;
//! - **pitch > 0** when the person looks up;
//! - **roll > 0** when the head tilts so that the eye on the image's right is lower
//!   (clockwise on screen). Rotating the image clockwise by `a` degrees adds `a` to roll.
//!
//! Mirroring an image negates yaw and roll and keeps pitch.

use serde::{Deserialize, Serialize};

use crate::canonical::CANONICAL_FACE;
use crate::geometry::{Mat3, fit_rotation};
use crate::models::Mesh;

/// Head orientation in degrees (see the module docs for the signs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

/// The rotation taking the canonical face onto `mesh` (camera axes: x right, y down,
/// z away from the camera).
pub fn rotation(mesh: &Mesh) -> Mat3 {
    let model: Vec<[f64; 3]> = CANONICAL_FACE.iter().map(|p| p.map(f64::from)).collect();
    let observed: Vec<[f64; 3]> = mesh.points.iter().map(|p| p.map(f64::from)).collect();
    let weights = vec![1.0; model.len()];
    fit_rotation(&model, &observed, &weights)
}

/// Yaw, pitch and roll of `mesh`.
pub fn estimate(mesh: &Mesh) -> HeadPose {
    from_rotation(&rotation(mesh))
}

/// Decomposes `r = Rz(roll) · Ry(b) · Rx(a)` with `yaw = -b`, `pitch = -a`.
///
/// Roll is the outermost rotation, about the camera axis, so rotating the image in plane
/// changes roll alone, and yaw and pitch are turns about the head's own axes.
pub fn from_rotation(r: &Mat3) -> HeadPose {
    let b = (-r[2][0]).clamp(-1.0, 1.0).asin();
    let a = r[2][1].atan2(r[2][2]);
    let roll = r[1][0].atan2(r[0][0]);
    HeadPose { yaw: (-b).to_degrees() as f32, pitch: (-a).to_degrees() as f32, roll: roll.to_degrees() as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{mat_mul, rot_x, rot_y, rot_z};

    #[test]
    fn decomposition_inverts_composition() {
        for (yaw, pitch, roll) in [(20.0f64, 0.0f64, 0.0f64), (-30.0, 10.0, 5.0), (0.0, -15.0, -20.0), (12.0, 18.0, 30.0)] {
            let r = mat_mul(&rot_z(roll.to_radians()), &mat_mul(&rot_y(-yaw.to_radians()), &rot_x(-pitch.to_radians())));
            let p = from_rotation(&r);
            assert!((f64::from(p.yaw) - yaw).abs() < 1e-3, "{p:?}");
            assert!((f64::from(p.pitch) - pitch).abs() < 1e-3, "{p:?}");
            assert!((f64::from(p.roll) - roll).abs() < 1e-3, "{p:?}");
        }
    }

    #[test]
    fn turning_left_points_the_nose_to_the_image_right() {
        // A person turning to their own left rotates the forward vector (0,0,-1) towards +x.
        let r = rot_y(-20f64.to_radians());
        let f = [-r[0][2], -r[1][2], -r[2][2]];
        assert!(f[0] > 0.0);
        assert!(from_rotation(&r).yaw > 0.0);
    }
}
