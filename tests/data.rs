//! The synthetic video data set: deterministic (pinned pixels), balanced, in range, and clips
//! made from their seed and index alone.

#![allow(clippy::unwrap_used)]

use kcp::data::{Split, CLASSES, CLIP, FRAME, WIDTH};

/// A pixel's channel value: clip frame t, row y, column x, channel c.
fn at(clip: &[f32], t: usize, y: usize, x: usize, c: usize) -> f32 {
    clip[t * FRAME + (y * WIDTH + x) * 3 + c]
}

/// A few pixels of three clips, pinned: the generator may not change under a trained model or
/// a published number. (To 1e-6: the scene uses the platform's sin, cos and ln, which may
/// differ in the last bit elsewhere.)
#[test]
fn pixels_are_pinned() {
    let places = [(0, 0, 0, 0), (3, 60, 80, 1), (15, 119, 159, 2), (8, 30, 120, 0)];
    let pinned = [
        (Split::TRAIN, 0, 0, [0.036_939_036, 0.153_701_68, 0.236_458_47, 0.125_603_94]),
        (Split::TRAIN, 7, 7, [0.351_836_8, 0.310_917_6, 0.288_434_15, 0.483_605_6]),
        (Split::TEST, 549, 10, [0.245_673_09, 0.232_948_44, 0.300_305_43, 0.371_375_26]),
    ];
    for (split, k, label, values) in pinned {
        let (clip, got) = split.clip(k);
        assert_eq!((clip.len(), got), (CLIP, label));
        for ((t, y, x, c), want) in places.into_iter().zip(values) {
            let v = at(&clip, t, y, x, c);
            assert!((v - want).abs() < 1e-6, "clip {k} frame {t} ({y}, {x}, {c}): {v}, pinned {want}");
        }
    }
}

/// Both splits are balanced over the eleven classes and of the sizes of UCF11's set-up.
#[test]
fn splits_are_balanced() {
    for (split, len) in [(Split::TRAIN, 1100), (Split::TEST, 550)] {
        assert_eq!(split.len, len);
        let mut count = [0usize; CLASSES];
        (0..split.len).for_each(|k| count[split.label(k)] += 1);
        assert!(count.iter().all(|&c| c == len / CLASSES), "{count:?}");
    }
}

/// A clip depends on its split's seed and its index alone: made twice, out of order, or into
/// a buffer, it is the same; the two splits differ; every value lies in [0, 1].
#[test]
fn clips_come_from_their_seed_and_index() {
    let (a, _) = Split::TRAIN.clip(12);
    Split::TRAIN.clip(3);
    let mut b = vec![f32::NAN; CLIP + 5];
    assert_eq!(Split::TRAIN.clip_into(12, &mut b), 12 % CLASSES);
    assert_eq!(&b[..CLIP], &a[..]);
    assert!(b[CLIP..].iter().all(|v| v.is_nan()), "nothing past the clip is written");
    assert_ne!(Split::TEST.clip(12).0, a);
    assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
}

/// Subtracting the mean frame leaves every pixel's mean over the clip at zero and moves every
/// frame by the same amount.
#[test]
fn the_mean_frame_goes() {
    let (mut clip, _) = Split::TRAIN.clip(5);
    let raw = clip.clone();
    kcp::data::subtract_mean_frame(&mut clip);
    for p in (0..FRAME).step_by(997) {
        let mean: f32 = (0..CLIP / FRAME).map(|t| clip[t * FRAME + p]).sum::<f32>();
        assert!(mean.abs() < 1e-4, "pixel {p}: {mean}");
        let shift = raw[p] - clip[p];
        assert!((0..CLIP / FRAME).all(|t| (raw[t * FRAME + p] - clip[t * FRAME + p] - shift).abs() < 1e-5));
    }
}

/// A clip as bytes is the clip's values, each `round(255 v)`.
#[test]
fn bytes_are_the_rounded_values() {
    let (clip, label) = Split::TEST.clip(40);
    let mut bytes = vec![7u8; CLIP + 3];
    assert_eq!(Split::TEST.clip_bytes_into(40, &mut bytes), label);
    assert!(bytes[..CLIP].iter().zip(&clip).all(|(&b, &v)| b == (v * 255.0).round() as u8));
    assert_eq!(bytes[CLIP..], [7, 7, 7], "nothing past the clip is written");
}
