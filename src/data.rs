//! "Moving shapes": a synthetic video data set of UCF11's shape and size, generated
//! deterministically, since UCF11 itself cannot be downloaded everywhere kcp runs.
//!
//! A clip is [`FRAMES`] frames of [`WIDTH`] x [`HEIGHT`] RGB, f32 in [0, 1], stored
//! `[T, 120, 160, 3]` row-major, so that one frame is the 57,600 = 8x20x20x18 input of the UCF11
//! layer. Its class is the motion of a target object (a disc, a square or a triangle, of random
//! size, colour, start and speed): one of the eleven [`Motion`]s. A distractor object of another
//! shape and colour crosses the frame on a random straight line, over a smooth random colour
//! gradient with pixel noise, so that no single pixel or colour gives the class away. Objects are
//! lit: their colours (each channel in [0.55, 0.95)) are brighter than the background's ([0.05,
//! 0.45)), so that they stand out with the same sign whatever their colour.
//!
//! Clip `k` of a [`Split`] is made from the split's seed and `k` alone ([`Split::clip`]): any clip
//! can be generated without the others, on any thread, identically on every machine. Classes are
//! balanced: clip `k` is of class `k % 11`.

use std::f64::consts::PI;

use kcp_runtime::Rng;

mod noise;

/// Frames per clip, T.
pub const FRAMES: usize = 16;
/// Pixels per row.
pub const WIDTH: usize = 160;
/// Rows per frame.
pub const HEIGHT: usize = 120;
/// Colour channels.
pub const CHANNELS: usize = 3;
/// Floats per frame: 57,600, the input of the UCF11 layer.
pub const FRAME: usize = WIDTH * HEIGHT * CHANNELS;
/// Floats per clip.
pub const CLIP: usize = FRAMES * FRAME;
/// Classes: the eleven motions.
pub const CLASSES: usize = 11;
/// The standard deviation of the pixel noise.
pub const NOISE: f64 = 0.1;

/// The motion of the target object: the class of a clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Motion {
    /// Moves right.
    Right,
    /// Moves left.
    Left,
    /// Moves up.
    Up,
    /// Moves down.
    Down,
    /// Moves down and right.
    DownRight,
    /// Moves up and left.
    UpLeft,
    /// Circles clockwise (on the screen).
    Clockwise,
    /// Circles anticlockwise.
    Anticlockwise,
    /// Grows in place.
    Growing,
    /// Shrinks in place.
    Shrinking,
    /// Bounces vertically, two bounces per clip.
    Bouncing,
}

impl Motion {
    /// Every motion, in class order.
    pub const ALL: [Motion; CLASSES] = [
        Motion::Right,
        Motion::Left,
        Motion::Up,
        Motion::Down,
        Motion::DownRight,
        Motion::UpLeft,
        Motion::Clockwise,
        Motion::Anticlockwise,
        Motion::Growing,
        Motion::Shrinking,
        Motion::Bouncing,
    ];

    /// The class index.
    pub fn class(self) -> usize {
        Motion::ALL.iter().position(|&m| m == self).unwrap_or(0)
    }
}

/// A split of the data set: `len` clips from one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    /// The seed every clip of the split derives from.
    pub seed: u64,
    /// The number of clips.
    pub len: usize,
}

impl Split {
    /// The training split: 1,100 clips, 100 per class.
    pub const TRAIN: Split = Split { seed: 0x7EA1_0000_0001, len: 1100 };
    /// The test split: 550 clips, 50 per class, from another seed.
    pub const TEST: Split = Split { seed: 0x7E57_0000_0002, len: 550 };

    /// The class of clip `k`: `k % 11` (the splits are balanced).
    pub fn label(&self, k: usize) -> usize {
        k % CLASSES
    }

    /// Clip `k` (`[T, 120, 160, 3]`, [`CLIP`] floats) and its class.
    pub fn clip(&self, k: usize) -> (Vec<f32>, usize) {
        let mut frames = vec![0.0; CLIP];
        let label = self.clip_into(k, &mut frames);
        (frames, label)
    }

    /// Write clip `k` into `frames` (at least [`CLIP`] floats; the rest is left alone) and
    /// return its class.
    ///
    /// # Panics
    /// If `frames` is shorter than a clip.
    pub fn clip_into(&self, k: usize, frames: &mut [f32]) -> usize {
        self.render_into(k, frames)
    }

    /// Clip `k` as bytes, each value `round(255 v)` of the [`Split::clip_into`] value `v`: a
    /// quarter of the memory (a training split is 1 GB so), and what the training examples
    /// and the Python package store. Writes [`CLIP`] bytes and returns the class.
    ///
    /// # Panics
    /// If `bytes` is shorter than a clip.
    pub fn clip_bytes_into(&self, k: usize, bytes: &mut [u8]) -> usize {
        self.render_into(k, bytes)
    }

    fn render_into<P: Pixel>(&self, k: usize, frames: &mut [P]) -> usize {
        let label = self.label(k);
        // One stream per clip, from the split's seed and k alone.
        let mut rng = Rng::new(self.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let scene = Scene::new(Motion::ALL[label], &mut rng);
        for (t, frame) in frames[..CLIP].chunks_exact_mut(FRAME).enumerate() {
            scene.render(t, frame, &mut rng);
        }
        label
    }
}

/// How a channel's value in [0, 1] is stored: as it is, or as a byte.
trait Pixel: Copy {
    fn store(value: f32) -> Self;
}

impl Pixel for f32 {
    #[inline(always)]
    fn store(value: f32) -> f32 {
        value
    }
}

impl Pixel for u8 {
    /// `round(255 v)` for v in [0, 1]: the integer read from the mantissa of itself plus 2^23
    /// (exact below 2^23), since `as u8` saturates and its checks would not vectorise.
    #[inline(always)]
    fn store(value: f32) -> u8 {
        ((value * 255.0).round() + 8_388_608.0).to_bits() as u8
    }
}

/// A shape an object is drawn as.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Disc,
    Square,
    Triangle,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Disc, Shape::Square, Shape::Triangle];

    /// Whether the point (dx, dy) from the centre lies inside the shape of size `s` (radius,
    /// half side, or half base of an upward triangle as tall as its base).
    fn contains(self, dx: f64, dy: f64, s: f64) -> bool {
        match self {
            Shape::Disc => dx * dx + dy * dy <= s * s,
            Shape::Square => dx.abs() <= s && dy.abs() <= s,
            // Apex at (0, -s), base from (-s, s) to (s, s): |dx| <= (dy + s) / 2.
            Shape::Triangle => dy <= s && dy >= -s && dx.abs() <= (dy + s) / 2.0,
        }
    }
}

/// An object's look and path: its centre and size at frame t.
#[derive(Clone, Copy, Debug)]
struct Object {
    shape: Shape,
    colour: [f64; 3],
    size: f64,
    /// The path's start (x, y) and its parameters: a velocity, or an orbit's radius and
    /// angular speed, or a growth per frame, by the motion.
    start: (f64, f64),
    velocity: (f64, f64),
    motion: Option<Motion>,
    orbit: f64,
}

impl Object {
    /// The centre and size at frame t.
    fn at(&self, t: usize) -> (f64, f64, f64) {
        let (t, (x0, y0), (vx, vy)) = (t as f64, self.start, self.velocity);
        let last = (FRAMES - 1) as f64;
        match self.motion {
            Some(Motion::Clockwise | Motion::Anticlockwise) => {
                // Screen y points down: clockwise on screen is increasing angle.
                let sign = if self.motion == Some(Motion::Clockwise) { 1.0 } else { -1.0 };
                let angle = vx + sign * vy * t;
                (x0 + self.orbit * angle.cos(), y0 + self.orbit * angle.sin(), self.size)
            }
            Some(Motion::Growing) => (x0, y0, self.size * (1.0 + t / last)),
            Some(Motion::Shrinking) => (x0, y0, self.size * (2.0 - t / last)),
            Some(Motion::Bouncing) => {
                let height = self.orbit * (2.0 * PI * t / last).sin().abs();
                (x0, y0 - height, self.size)
            }
            _ => (x0 + vx * t, y0 + vy * t, self.size),
        }
    }
}

/// The mean of a clip's frames (`clip`: `[T, 120, 160, 3]`, whole frames): each pixel's mean
/// over time, [`FRAME`] values (zeros for an empty clip).
pub fn mean_frame(clip: &[f32]) -> Vec<f32> {
    let mut mean = vec![0.0f32; FRAME];
    let frames = clip.len() / FRAME;
    for frame in clip.chunks_exact(FRAME) {
        mean.iter_mut().zip(frame).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= frames.max(1) as f32);
    mean
}

/// Subtract a clip's mean frame ([`mean_frame`]) from each of its frames: a static background
/// goes, what moves stays. The input the training example feeds its models (a linear
/// projection of raw frames sees mostly the background, which differs from clip to clip and
/// says nothing of the class).
pub fn subtract_mean_frame(clip: &mut [f32]) {
    let mean = mean_frame(clip);
    for frame in clip.chunks_exact_mut(FRAME) {
        frame.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
    }
}

/// Everything random about a clip but the noise: the background and both objects.
struct Scene {
    /// The gradient's colour at its two ends and its unit direction.
    from: [f64; 3],
    to: [f64; 3],
    direction: (f64, f64),
    target: Object,
    distractor: Object,
}

/// Uniform in [lo, hi).
fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    uniform_of(rng.next_u64(), lo, hi)
}

/// The value in [lo, hi) that [`uniform`] makes of the stream's next bits.
#[inline(always)]
fn uniform_of(bits: u64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (Rng::signed_unit(bits) + 1.0) / 2.0
}

/// The range of each channel of the background's colours.
const DIM: (f64, f64) = (0.05, 0.45);
/// The range of each channel of the objects' colours: lit brighter than any background, so that
/// an object stands out with the same sign on every channel (its colour is random all the same).
const LIT: (f64, f64) = (0.55, 0.95);

/// A random colour, each channel uniform in `range`.
fn colour(rng: &mut Rng, range: (f64, f64)) -> [f64; 3] {
    [0; 3].map(|_| uniform(rng, range.0, range.1))
}

impl Scene {
    fn new(motion: Motion, rng: &mut Rng) -> Scene {
        let angle = uniform(rng, 0.0, 2.0 * PI);
        let (from, to) = (colour(rng, DIM), colour(rng, DIM));
        let shape = Shape::ALL[(rng.next_u64() % 3) as usize];
        let size = uniform(rng, 7.0, 13.0);
        let (w, h, last) = (WIDTH as f64, HEIGHT as f64, (FRAMES - 1) as f64);
        // Straight motions travel 2 to 4 pixels a frame; the start keeps the path in frame.
        let speed = uniform(rng, 2.0, 4.0);
        let (dx, dy) = match motion {
            Motion::Right => (1.0, 0.0),
            Motion::Left => (-1.0, 0.0),
            Motion::Up => (0.0, -1.0),
            Motion::Down => (0.0, 1.0),
            Motion::DownRight => (0.7, 0.7),
            Motion::UpLeft => (-0.7, -0.7),
            _ => (0.0, 0.0),
        };
        let (vx, vy) = (dx * speed, dy * speed);
        let span = |v: f64, extent: f64, margin: f64| {
            let (lo, hi) = (margin - v.min(0.0) * last, extent - margin - v.max(0.0) * last);
            (lo, hi.max(lo + 1.0))
        };
        let orbit = uniform(rng, 15.0, 30.0);
        let margin = match motion {
            Motion::Clockwise | Motion::Anticlockwise => orbit + size,
            Motion::Growing | Motion::Shrinking => 2.0 * size,
            _ => size,
        };
        let (xs, ys) = (span(vx, w, margin), span(vy, h, margin));
        let mut start = (uniform(rng, xs.0, xs.1), uniform(rng, ys.0, ys.1));
        let mut velocity = (vx, vy);
        match motion {
            // Start angle, angular speed (one turn in 16 to 24 frames).
            Motion::Clockwise | Motion::Anticlockwise => {
                velocity = (uniform(rng, 0.0, 2.0 * PI), 2.0 * PI / uniform(rng, 16.0, 24.0));
            }
            // The bounce's height; its floor leaves room above.
            Motion::Bouncing => start.1 = uniform(rng, size + orbit.min(h / 2.0), h - size),
            _ => {}
        }
        let target = Object { shape, colour: colour(rng, LIT), size, start, velocity, motion: Some(motion), orbit };
        // The distractor: another shape, entering on one side and crossing on a straight line.
        let other = Shape::ALL[((shape as usize) + 1 + (rng.next_u64() % 2) as usize) % 3];
        let (from_x, to_x) = if rng.next_u64().is_multiple_of(2) { (-10.0, w + 10.0) } else { (w + 10.0, -10.0) };
        let (from_y, to_y) = (uniform(rng, 0.0, h), uniform(rng, 0.0, h));
        let distractor = Object {
            shape: other,
            colour: colour(rng, LIT),
            size: uniform(rng, 6.0, 11.0),
            start: (from_x, from_y),
            velocity: ((to_x - from_x) / last, (to_y - from_y) / last),
            motion: None,
            orbit: 0.0,
        };
        Scene { from, to, direction: (angle.cos(), angle.sin()), target, distractor }
    }

    /// Frame t into `frame` (`[120, 160, 3]`), drawing the noise from `rng`.
    fn render<P: Pixel>(&self, t: usize, frame: &mut [P], rng: &mut Rng) {
        let objects = [self.distractor, self.target].map(|o| (o, o.at(t)));
        // The gradient's coordinate, normalised to [0, 1] over the frame.
        let (cx, cy) = self.direction;
        let reach = cx.abs() * WIDTH as f64 + cy.abs() * HEIGHT as f64;
        let offset = cx.min(0.0) * WIDTH as f64 + cy.min(0.0) * HEIGHT as f64;
        // A row's colours before the noise, channel by channel.
        let mut clean = [0.0f64; WIDTH * CHANNELS];
        for (row, pixels) in frame.chunks_exact_mut(WIDTH * CHANNELS).enumerate() {
            for (col, pixel) in clean.chunks_exact_mut(CHANNELS).enumerate() {
                let (x, y) = (col as f64 + 0.5, row as f64 + 0.5);
                let s = ((cx * x + cy * y - offset) / reach).clamp(0.0, 1.0);
                let mut c: [f64; 3] = std::array::from_fn(|k| self.from[k] + s * (self.to[k] - self.from[k]));
                // The target is drawn last, over the distractor.
                for (o, (ox, oy, size)) in &objects {
                    if o.shape.contains(x - ox, y - oy, *size) {
                        c = o.colour;
                    }
                }
                pixel.copy_from_slice(&c);
            }
            noise::add_noise(&clean, rng, pixels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class of each motion is its place in [`Motion::ALL`].
    #[test]
    fn classes_follow_the_motions() {
        for (k, m) in Motion::ALL.iter().enumerate() {
            assert_eq!(m.class(), k);
        }
    }

    /// Objects are lit: every channel of both objects is brighter than every channel of the
    /// background's gradient, in every scene.
    #[test]
    fn objects_are_brighter_than_the_background() {
        let mut rng = Rng::new(4);
        for k in 0..500 {
            let scene = Scene::new(Motion::ALL[k % CLASSES], &mut rng);
            let background = scene.from.iter().chain(&scene.to).fold(0.0f64, |m, &c| m.max(c));
            for object in [scene.target, scene.distractor] {
                assert!(object.colour.iter().all(|&c| c > background), "scene {k}");
            }
        }
    }

    /// The target's path stays (mostly) in frame for every motion, over many random scenes.
    #[test]
    fn targets_stay_in_frame() {
        let mut rng = Rng::new(3);
        for k in 0..1100 {
            let motion = Motion::ALL[k % CLASSES];
            let scene = Scene::new(motion, &mut rng);
            for t in 0..FRAMES {
                let (x, y, _) = scene.target.at(t);
                assert!((0.0..=WIDTH as f64).contains(&x), "{motion:?} x {x} at {t}");
                assert!((0.0..=HEIGHT as f64).contains(&y), "{motion:?} y {y} at {t}");
            }
        }
    }
}
