//! How many threads a parallel call may use.

use std::num::NonZeroUsize;

/// The threads a parallel call (`forward_par`, `forward_train`, `backward`, ...) may use: all of
/// the current rayon pool, or at most a given number (never more than the pool has). A call
/// too small to pay for threads runs on the calling thread whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Threads {
    /// Every thread of the current rayon pool.
    #[default]
    All,
    /// At most this many threads.
    AtMost(NonZeroUsize),
}

impl Threads {
    /// The calling thread alone.
    pub const ONE: Threads = Threads::AtMost(NonZeroUsize::MIN);

    /// At most `n` threads; `None` for 0.
    pub const fn at_most(n: usize) -> Option<Threads> {
        match NonZeroUsize::new(n) {
            Some(n) => Some(Threads::AtMost(n)),
            None => None,
        }
    }

    /// The threads a call may use in the current rayon pool: the pool's size, or the bound if
    /// that is smaller.
    pub fn count(self) -> usize {
        let pool = rayon::current_num_threads();
        match self {
            Threads::All => pool,
            Threads::AtMost(n) => n.get().min(pool),
        }
    }
}

impl From<NonZeroUsize> for Threads {
    fn from(n: NonZeroUsize) -> Threads {
        Threads::AtMost(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_pool() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            assert_eq!(Threads::All.count(), 3);
            assert_eq!(Threads::ONE.count(), 1);
            assert_eq!(Threads::at_most(2).map(Threads::count), Some(2));
            assert_eq!(Threads::at_most(8).map(Threads::count), Some(3));
            assert_eq!(Threads::at_most(0), None);
        });
    }
}
