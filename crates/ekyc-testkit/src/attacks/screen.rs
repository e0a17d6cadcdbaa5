//! Screen-replay attacks: the person's photo shown on a phone, tablet or monitor and
//! filmed by the camera.
//!
//! How a frame is made, following the light ([`screen_with`]):
//! 1. **The display.** The photo, zoomed around the face as a viewer app would, is resampled
//!    to the screen's native resolution (phone 1080 x 2340, tablet 1536 x 2048, laptop
//!    1920 x 1080, monitor 2560 x 1440). Each screen pixel emits through three vertical
//!    sub-pixel stripes (red, green, blue) separated by the black matrix, with the display's
//!    own gamma (1.9-2.6), a limited gamut (each primary leaks into the others), a tinted
//!    white point, and a black level that glows on LCDs.
//! 2. **The glass.** The room reflects in the cover glass: a soft glare spot and a veil over
//!    screen and bezel alike.
//! 3. **The device in the room** (method `bezel`): the screen sits in a dark bezel with
//!    rounded corners, held by a hand whose fingers wrap around its sides, in front of the
//!    room. Method `full_frame`: the screen fills the whole view.
//! 4. **The camera** sees the screen slightly rotated and in perspective; each camera pixel
//!    integrates the emitted light exactly over its footprint on the sub-pixel stripes (the
//!    footprint is the pixel's aperture widened by the lens, 1.0-1.5 px, mapped onto the
//!    screen). The screen's pixel pitch is 0.15-0.7 camera pixels, so the beat between the
//!    two grids appears as moiré where it would on a real sensor; then mosaic, noise and
//!    demosaicing ([`Camera::capture`]).
//!
//! Everything is drawn from the seed; the same source, face and seed give the same pixels.

use ekyc_vision::geometry::{BBox, Homography, Point};
use image::RgbImage;
use image::imageops::FilterType;

use super::Attack;
use super::camera::{Camera, Plane, paint_finger, room, skin};
use crate::idcard::Rng;

/// The bezel and the hand around a screen that does not fill the view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bezel {
    /// Width of the bezel, in screen pixels.
    pub width: f32,
    /// Corner radius of the device, in screen pixels.
    pub corner: f32,
    /// The bezel's colour (linear, lit by the room).
    pub colour: [f32; 3],
    /// Radius of the holding fingers, in screen pixels (0: no hand).
    pub finger_radius: f32,
}

/// Everything that varies between screen replays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenParams {
    /// The camera frame, pixels.
    pub frame: (u32, u32),
    /// The screen's native resolution (width, height).
    pub resolution: (u32, u32),
    /// The screen's width as seen by the camera, camera pixels.
    pub screen_width: f32,
    /// Where the screen's centre lands, as fractions of the frame.
    pub screen_centre: (f32, f32),
    pub rotation_deg: f32,
    /// Perspective: each corner moves by up to this fraction of the screen's size.
    pub perspective: f32,
    /// The face's width as a fraction of the screen's width (how far the viewer zooms).
    pub face_width: f32,
    /// Lit fraction of each sub-pixel stripe's width and of each pixel row.
    pub stripe_fill: f32,
    pub row_fill: f32,
    pub gamma: f32,
    /// Leak of each primary into the other two channels.
    pub crosstalk: f32,
    pub white: [f32; 3],
    /// Black level as a fraction of white.
    pub black: f32,
    /// Screen white in the camera's exposure (linear, 1.0 = clipping).
    pub brightness: f32,
    /// Peak of the glare spot and its centre and radius as fractions of the frame.
    pub glare: f32,
    pub glare_centre: (f32, f32),
    pub glare_radius: f32,
    /// Uniform reflection of the room in the glass.
    pub veil: f32,
    /// Width of each camera pixel's footprint, camera pixels.
    pub aperture: f32,
    pub bezel: Option<Bezel>,
    pub camera: Camera,
}

impl ScreenParams {
    /// Parameters drawn from `seed`; even seeds show the device with its bezel and a hand,
    /// odd ones fill the frame with the screen.
    pub fn random(seed: u64) -> ScreenParams {
        let mut r = Rng::new(seed ^ 0x5343_5245_454e);
        let frame: (u32, u32) = if r.chance(0.5) { (640, 480) } else { (1280, 720) };
        let (fw, fh) = (frame.0 as f32, frame.1 as f32);
        let framed = seed.is_multiple_of(2);
        let (resolution, screen_width, face_width, bezel) = if framed {
            // A phone or tablet held in front of the camera, upright.
            let phone = r.chance(0.6);
            let resolution = if phone { (1080, 2340) } else { (1536, 2048) };
            let height = r.range(0.6, 0.88) * fh;
            let width = height * resolution.0 as f32 / resolution.1 as f32;
            let px_per_cm = resolution.0 as f32 / if phone { 6.8 } else { 16.0 };
            let bezel = Bezel {
                width: r.range(0.25, 0.8) * px_per_cm,
                corner: r.range(0.5, 1.0) * px_per_cm,
                colour: [r.range(0.01, 0.05); 3],
                finger_radius: if r.chance(0.8) { r.range(0.75, 1.0) * px_per_cm } else { 0.0 },
            };
            (resolution, width, r.range(0.4, 0.75), Some(bezel))
        } else {
            // A laptop, monitor or tablet filling the view.
            let resolution = match r.next_u64() % 3 {
                0 => (1920, 1080),
                1 => (2560, 1440),
                _ => (2048, 1536),
            };
            let aspect = resolution.0 as f32 / resolution.1 as f32;
            let width = fw.max(fh * aspect) * r.range(1.12, 1.35);
            let face_cam = r.range(0.22, 0.42) * fw;
            (resolution, width, face_cam / width, None)
        };
        ScreenParams {
            frame,
            resolution,
            screen_width,
            screen_centre: if framed { (r.range(0.35, 0.65), r.range(0.45, 0.55)) } else { (r.range(0.47, 0.53), r.range(0.47, 0.53)) },
            rotation_deg: r.range(-4.0, 4.0),
            perspective: r.range(0.0, 0.04),
            face_width,
            stripe_fill: r.range(0.6, 0.85),
            row_fill: r.range(0.75, 0.95),
            gamma: r.range(1.9, 2.6),
            crosstalk: r.range(0.03, 0.12),
            white: [r.range(0.88, 0.98), 1.0, r.range(1.0, 1.12)],
            black: if r.chance(0.3) { 0.0 } else { r.range(0.005, 0.04) },
            brightness: r.range(0.75, 1.05),
            glare: if r.chance(0.7) { r.range(0.03, 0.3) } else { 0.0 },
            glare_centre: (r.range(0.1, 0.9), r.range(0.1, 0.9)),
            glare_radius: r.range(0.08, 0.35),
            veil: r.range(0.005, 0.04),
            aperture: r.range(1.0, 1.5),
            bezel,
            camera: Camera::random(&mut r),
        }
    }

    /// The method name in attack sets: `bezel` or `full_frame`.
    pub fn method(&self) -> &'static str {
        if self.bezel.is_some() { "bezel" } else { "full_frame" }
    }

    /// The screen's pixel pitch in camera pixels.
    pub fn pitch(&self) -> f32 {
        self.screen_width / self.resolution.0 as f32
    }
}

/// A screen replay of `src` whose face is `face` (pixels of `src`), drawn from `seed`.
pub fn screen_replay(src: &RgbImage, face: BBox, seed: u64) -> Attack {
    let params = ScreenParams::random(seed);
    Attack { image: screen_with(src, face, &params, seed), method: params.method(), jpeg_quality: params.camera.jpeg_quality }
}

/// What the screen shows: `src` zoomed around `face` to the screen's aspect and resolution,
/// black where the photo ends, as display light (linear, 1.0 = the camera's clipping).
fn display(src: &RgbImage, face: BBox, p: &ScreenParams) -> Vec<[f32; 3]> {
    let (rw, rh) = (p.resolution.0 as usize, p.resolution.1 as usize);
    let crop_w = face.width().max(1.0) / p.face_width;
    let crop_h = crop_w * rh as f32 / rw as f32;
    let c = face.center();
    // The face a little above the screen's centre, as people frame a portrait.
    let (x0, y0) = (c.x - crop_w / 2.0, c.y - 0.45 * crop_h);
    let t = rw as f32 / crop_w; // screen pixels per source pixel
    let (ix1, iy1) = (x0.max(0.0), y0.max(0.0));
    let (ix2, iy2) = ((x0 + crop_w).min(src.width() as f32), (y0 + crop_h).min(src.height() as f32));
    let mut canvas = RgbImage::new(rw as u32, rh as u32);
    if ix2 - ix1 >= 1.0 && iy2 - iy1 >= 1.0 {
        let sub = image::imageops::crop_imm(src, ix1 as u32, iy1 as u32, (ix2 - ix1) as u32, (iy2 - iy1) as u32).to_image();
        let (tw, th) = ((((ix2 - ix1) * t).round() as u32).clamp(1, rw as u32), (((iy2 - iy1) * t).round() as u32).clamp(1, rh as u32));
        let shown = image::imageops::resize(&sub, tw, th, FilterType::Triangle);
        image::imageops::overlay(&mut canvas, &shown, ((ix1 - x0) * t).round() as i64, ((iy1 - y0) * t).round() as i64);
    }
    let table: Vec<f32> = (0..256).map(|v| (v as f32 / 255.0).powf(p.gamma)).collect();
    canvas
        .pixels()
        .map(|px| {
            let l = px.0.map(|v| table[usize::from(v)]);
            let ct = p.crosstalk;
            let mixed = [0, 1, 2].map(|c| (1.0 - 2.0 * ct) * l[c] + ct * (l[(c + 1) % 3] + l[(c + 2) % 3]));
            [0, 1, 2].map(|c| p.brightness * (p.black + (1.0 - p.black) * mixed[c] * p.white[c]))
        })
        .collect()
}

/// Length of the overlap of `[a1, a2]` and `[b1, b2]`.
fn overlap(a1: f32, a2: f32, b1: f32, b2: f32) -> f32 {
    (a2.min(b2) - a1.max(b1)).max(0.0)
}

/// Signed distance from `(x, y)` to a rounded rectangle `[0, w] x [0, h]` grown by `grow`
/// with corner radius `radius` (negative inside).
fn device_distance(x: f32, y: f32, w: f32, h: f32, grow: f32, radius: f32) -> f32 {
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (hx, hy) = (w / 2.0 + grow - radius, h / 2.0 + grow - radius);
    let (qx, qy) = ((x - cx).abs() - hx, (y - cy).abs() - hy);
    qx.max(qy).min(0.0) + qx.max(0.0).hypot(qy.max(0.0)) - radius
}

/// [`screen_replay`] with explicit parameters; `seed` draws the noise and the room.
pub fn screen_with(src: &RgbImage, face: BBox, p: &ScreenParams, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed ^ 0x7363_7265_656e);
    let (fw, fh) = (p.frame.0 as f32, p.frame.1 as f32);
    let (rw, rh) = (p.resolution.0 as f32, p.resolution.1 as f32);
    let pitch = p.pitch();
    let (sin, cos) = p.rotation_deg.to_radians().sin_cos();
    let place = |u: f32, v: f32| {
        let (du, dv) = ((u - rw / 2.0) * pitch, (v - rh / 2.0) * pitch);
        Point::new(p.screen_centre.0 * fw + cos * du - sin * dv, p.screen_centre.1 * fh + sin * du + cos * dv)
    };
    let corners = [Point::new(0.0, 0.0), Point::new(rw, 0.0), Point::new(rw, rh), Point::new(0.0, rh)];
    let size = p.screen_width.max(rh * pitch);
    let quad = corners.map(|c| {
        let q = place(c.x, c.y);
        Point::new(q.x + p.perspective * size * rng.range(-1.0, 1.0), q.y + p.perspective * size * rng.range(-1.0, 1.0))
    });
    let to_screen = Homography::from_points(&quad, &corners).expect("a screen's corners are never collinear: this is a bug");
    let to_camera = to_screen.inverse().expect("an invertible map: this is a bug");
    let shown = display(src, face, p);
    let room_seed = rng.next_u64();

    let (w, h) = (p.frame.0 as usize, p.frame.1 as usize);
    let mut scene = Plane::new(w, h, [0.0; 3]);
    let half = p.aperture / (2.0 * pitch);
    let (stripe_margin, row_margin) = ((1.0 - p.stripe_fill) / 6.0, (1.0 - p.row_fill) / 2.0);
    let norm = 1.0 / ((2.0 * half) * (2.0 * half) * (p.stripe_fill / 3.0) * p.row_fill);
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let s = to_screen.apply(Point::new(cx, cy));
            let (u1, u2, v1, v2) = (s.x - half, s.x + half, s.y - half, s.y + half);
            // Light from the sub-pixels under the footprint.
            let mut emitted = [0.0f32; 3];
            let on_screen = overlap(u1, u2, 0.0, rw) * overlap(v1, v2, 0.0, rh) / (4.0 * half * half);
            if on_screen > 0.0 {
                let (i1, i2) = (u1.floor().max(0.0) as usize, (u2.floor().max(0.0) as usize).min(rw as usize - 1));
                let (j1, j2) = (v1.floor().max(0.0) as usize, (v2.floor().max(0.0) as usize).min(rh as usize - 1));
                for j in j1..=j2 {
                    let ly = overlap(v1, v2, j as f32 + row_margin, j as f32 + 1.0 - row_margin);
                    if ly <= 0.0 {
                        continue;
                    }
                    for i in i1..=i2 {
                        let value = shown[j * rw as usize + i];
                        for c in 0..3 {
                            let left = i as f32 + c as f32 / 3.0 + stripe_margin;
                            let lx = overlap(u1, u2, left, left + p.stripe_fill / 3.0);
                            emitted[c] += value[c] * lx * ly;
                        }
                    }
                }
                emitted = emitted.map(|e| e * norm);
            }
            // What lies beyond the screen under this pixel: the bezel, else the room.
            let beyond = if on_screen < 1.0 {
                match p.bezel {
                    Some(b) if device_distance(s.x, s.y, rw, rh, b.width, b.corner) < 0.0 => b.colour,
                    _ => room(room_seed, cx, cy, 0.15 * fw),
                }
            } else {
                [0.0; 3]
            };
            let on_glass = match p.bezel {
                Some(b) => device_distance(s.x, s.y, rw, rh, b.width, b.corner) < 0.0,
                None => true,
            };
            let reflection = if on_glass {
                let (dx, dy) = ((cx / fw - p.glare_centre.0) / p.glare_radius, (cy / fh - p.glare_centre.1) / p.glare_radius);
                p.veil + p.glare * (-(dx * dx + dy * dy) / 2.0).exp()
            } else {
                0.0
            };
            scene.px[y * w + x] = [0, 1, 2].map(|c| emitted[c] + (1.0 - on_screen) * beyond[c] + reflection);
        }
    }
    if let Some(b) = p.bezel.filter(|b| b.finger_radius > 0.0) {
        hold(&mut scene, &to_camera, (rw, rh), b, pitch, &mut rng);
    }
    p.camera.capture(&scene, &mut rng)
}

/// A hand holding the device: fingers over one side, the thumb over the other.
fn hold(scene: &mut Plane, to_camera: &Homography, (rw, rh): (f32, f32), b: Bezel, pitch: f32, rng: &mut Rng) {
    let colour = skin(rng);
    let r = b.finger_radius * pitch;
    let edge = b.width * 0.6;
    let (fingers_left, n) = (rng.chance(0.5), 2 + (rng.next_u64() % 3) as usize);
    let at = |u: f32, v: f32| {
        let q = to_camera.apply(Point::new(u, v));
        [q.x, q.y]
    };
    for k in 0..n {
        let v = rh * (0.45 + 0.12 * k as f32 + rng.range(-0.03, 0.03));
        let (outside, inside) = if fingers_left {
            (at(-edge - 8.0 * b.finger_radius, v), at(-edge + rng.range(0.2, 1.2) * b.finger_radius, v))
        } else {
            (at(rw + edge + 8.0 * b.finger_radius, v), at(rw + edge - rng.range(0.2, 1.2) * b.finger_radius, v))
        };
        paint_finger(scene, outside, inside, r, colour);
    }
    let v = rh * rng.range(0.5, 0.75);
    let (outside, inside) = if fingers_left {
        (at(rw + edge + 8.0 * b.finger_radius, v + 3.0 * b.finger_radius), at(rw + edge - rng.range(0.5, 1.5) * b.finger_radius, v))
    } else {
        (at(-edge - 8.0 * b.finger_radius, v + 3.0 * b.finger_radius), at(-edge + rng.range(0.5, 1.5) * b.finger_radius, v))
    };
    paint_finger(scene, outside, inside, r * 1.15, colour);
}
