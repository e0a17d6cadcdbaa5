//! Head pose invariances: mirroring negates yaw and roll and keeps pitch; rotating the image
//! in plane moves roll by the rotation and leaves yaw and pitch.

use ekyc_testkit::dataset::photos;
use ekyc_vision::geometry::Affine;
use ekyc_vision::imgops::warp_affine;
use image::RgbImage;

use crate::common::{angle_diff, decode, largest};

#[test]
fn mirroring_negates_yaw_and_keeps_pitch() {
    for p in photos().into_iter().filter(|p| p.is_whole_single_face()) {
        let img = decode(&p.bytes());
        let a = largest(&img).pose;
        let b = largest(&image::imageops::flip_horizontal(&img)).pose;
        assert!((a.yaw + b.yaw).abs() < 4.0, "{}: yaw {} mirrored {}", p.file, a.yaw, b.yaw);
        assert!((a.pitch - b.pitch).abs() < 3.0, "{}: pitch {} mirrored {}", p.file, a.pitch, b.pitch);
        assert!((a.roll + b.roll).abs() < 3.0, "{}: roll {} mirrored {}", p.file, a.roll, b.roll);
    }
}

/// `img` rotated clockwise by `deg` about its centre, on a canvas large enough to hold it.
fn rotate(img: &RgbImage, deg: f64) -> RgbImage {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let (s, c) = deg.to_radians().sin_cos();
    let (nw, nh) = ((w * c.abs() + h * s.abs()).ceil(), (w * s.abs() + h * c.abs()).ceil());
    // dst -> src: rotate back by -deg about the centres.
    let back = Affine::similarity(1.0, -deg.to_radians(), 0.0, 0.0);
    let t = back.apply(ekyc_vision::Point::new((nw / 2.0) as f32, (nh / 2.0) as f32));
    let m = Affine([back.0[0], back.0[1], w / 2.0 - f64::from(t.x), back.0[3], back.0[4], h / 2.0 - f64::from(t.y)]);
    warp_affine(img, &m, nw as usize, nh as usize).to_rgb8()
}

#[test]
fn rotating_in_plane_changes_roll_by_the_rotation() {
    let files = ["obama_1.jpg", "biden_2.jpg", "rose_leslie_2.jpg", "kit_harington_2.jpg", "alex_lacamoire_3.jpg"];
    for p in photos().into_iter().filter(|p| files.contains(&p.file.as_str())) {
        let img = decode(&p.bytes());
        let a = largest(&img).pose;
        let quarter = largest(&image::imageops::rotate90(&img)).pose;
        let half = largest(&image::imageops::rotate180(&img)).pose;
        for (deg, b) in
            [(90.0f32, quarter), (180.0, half), (25.0, largest(&rotate(&img, 25.0)).pose), (-40.0, largest(&rotate(&img, -40.0)).pose)]
        {
            let moved = angle_diff(b.roll, a.roll);
            assert!(angle_diff(moved, deg).abs() < 2.5, "{}: roll {} -> {} after {deg} deg", p.file, a.roll, b.roll);
            assert!((a.yaw - b.yaw).abs() < 3.0, "{}: yaw {} -> {} after {deg} deg", p.file, a.yaw, b.yaw);
            assert!((a.pitch - b.pitch).abs() < 3.0, "{}: pitch {} -> {} after {deg} deg", p.file, a.pitch, b.pitch);
        }
    }
}

#[test]
fn a_face_turned_to_the_image_left_has_negative_yaw() {
    // obama_2.jpg: he faces towards the image's left (his own right).
    let p = photos().into_iter().find(|p| p.file == "obama_2.jpg").expect("labelled");
    let pose = largest(&decode(&p.bytes())).pose;
    assert!(pose.yaw < -8.0, "{pose:?}");
}
