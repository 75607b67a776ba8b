//! The one random number generator of kcp: seeded initialisation and test data.

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast, and the same stream for the same seed
/// on every machine, which is what seeded initialisation and test data need. Not for
/// cryptography.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// The bits [`Rng::next_u64`] would return after `ahead` further calls, without moving: the
    /// stream is a counter through a mixing function, so that a loop over `ahead` needs no state
    /// from one value to the next (and vectorises).
    #[inline]
    pub fn peek(&self, ahead: u64) -> u64 {
        mix(self.0.wrapping_add(ahead.wrapping_add(1).wrapping_mul(GAMMA)))
    }

    /// Move past `calls` values, as that many calls of [`Rng::next_u64`] would.
    #[inline]
    pub fn skip(&mut self, calls: u64) {
        self.0 = self.0.wrapping_add(calls.wrapping_mul(GAMMA));
    }

    /// The next value, uniform in [-1, 1) on a grid of 2^-52.
    pub fn next_f64(&mut self) -> f64 {
        Rng::signed_unit(self.next_u64())
    }

    /// The value in [-1, 1) that [`Rng::next_f64`] makes of 64 random bits (their top 53).
    #[inline]
    pub fn signed_unit(bits: u64) -> f64 {
        (bits >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// `len` values uniform in [-1, 1).
    pub fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.next_f64()).collect()
    }

    /// `len` values uniform in [-scale, scale), rounded to f32.
    pub fn vec_f32(&mut self, len: usize, scale: f64) -> Vec<f32> {
        (0..len).map(|_| (self.next_f64() * scale) as f32).collect()
    }
}

/// SplitMix64's increment: the golden ratio's 64 bits.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function of the counter.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is SplitMix64's (the reference implementation's first outputs from seed 0),
    /// so seeded weights and test data cannot change under anyone's feet; `next_f64` maps its
    /// top 53 bits onto [-1, 1).
    #[test]
    fn the_stream_is_splitmix64() {
        let mut rng = Rng::new(0);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(first, [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4, 0x06c4_5d18_8009_454f]);
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_f64(), (0xe220_a839_7b1d_cdafu64 >> 11) as f64 / (1u64 << 52) as f64 - 1.0);
    }

    /// Peeking ahead and skipping give what the calls themselves give.
    #[test]
    fn peek_and_skip_follow_the_stream() {
        let mut rng = Rng::new(42);
        let ahead: Vec<u64> = (0..5).map(|k| rng.peek(k)).collect();
        let mut walked = rng.clone();
        assert_eq!((0..5).map(|_| walked.next_u64()).collect::<Vec<_>>(), ahead);
        rng.skip(5);
        assert_eq!(rng.next_u64(), walked.next_u64());
    }
}
