//! A compute team: every worker of a pool runs the same step function on its own share of each
//! phase (a band of a product's weight rows, some sequences' attention heads), and the members
//! meet at a spinning barrier between phases. This is how llama.cpp's thread pool runs a graph,
//! and what a decode step needs: its ~180 phases last microseconds each, too short for a worker
//! to be put to sleep and woken between them (rayon's idle workers sleep within microseconds, and
//! each wake is a futex call; a per-thread profile showed the second worker idle half the time).
//!
//! [`run_team`] starts the members once per step (one rayon broadcast); [`Team::sync`] is the
//! barrier; [`Shared`] is a buffer the members write in disjoint parts and read whole after a
//! barrier. Between two barriers each element of a [`Shared`] buffer is written by at most one
//! member and then read by no other — the contract every `unsafe` use below keeps.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Spins before a waiting member starts yielding its core (a few tens of microseconds: longer
/// than a phase's imbalance, shorter than a time slice).
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// A reusable barrier for a fixed number of members that waits by spinning, then yielding.
struct Barrier {
    members: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// Set when a member panicked: the others stop waiting for it and panic too.
    poisoned: AtomicBool,
}

impl Barrier {
    fn new(members: usize) -> Barrier {
        Barrier { members, arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0), poisoned: AtomicBool::new(false) }
    }

    fn wait(&self) {
        if self.members == 1 {
            return;
        }
        // Read before arriving: the generation cannot move on until this member has arrived.
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.members {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.store(generation.wrapping_add(1), Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Relaxed) {
                panic!("another member of the compute team panicked");
            }
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// One member's view of the team.
pub struct Team<'a> {
    index: usize,
    size: usize,
    barrier: &'a Barrier,
}

impl Team<'_> {
    /// This member's index in `0..size`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Members in the team.
    pub fn size(&self) -> usize {
        self.size
    }

    /// This member's share of `0..n`: contiguous, the shares of all members in order cover it,
    /// and they differ in length by at most `ceil(n / size)`.
    pub fn share(&self, n: usize) -> Range<usize> {
        let per = n.div_ceil(self.size);
        (self.index * per).min(n)..((self.index + 1) * per).min(n)
    }

    /// Waits until every member has reached this point; what each wrote before is visible to all
    /// after.
    pub fn sync(&self) {
        self.barrier.wait();
    }
}

/// Marks the barrier poisoned when a member unwinds, so the others do not spin forever.
struct PoisonOnPanic<'a>(&'a Barrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs `body` once per worker of `pool` (once on the calling thread when `None`), each with its
/// [`Team`] handle, and returns when every member has returned. A panic in one member makes the
/// others panic at their next barrier, and the panic reaches the caller.
pub fn run_team(pool: Option<&rayon::ThreadPool>, body: impl Fn(&Team) + Sync) {
    match pool {
        None => body(&Team { index: 0, size: 1, barrier: &Barrier::new(1) }),
        Some(pool) => {
            let barrier = Barrier::new(pool.current_num_threads());
            pool.broadcast(|ctx| {
                let _guard = PoisonOnPanic(&barrier);
                body(&Team { index: ctx.index(), size: ctx.num_threads(), barrier: &barrier });
            });
        }
    }
}

/// A buffer the members of a team write in disjoint parts and read whole between barriers.
pub struct Shared<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: access goes through `part` and `whole`, whose callers keep the disjointness contract
// (module docs); `T: Send` so the values may be written from any member's thread.
unsafe impl<T: Send> Sync for Shared<'_, T> {}
unsafe impl<T: Send> Send for Shared<'_, T> {}

impl<'a, T> Shared<'a, T> {
    /// Shares `buf` for as long as this value lives.
    pub fn new(buf: &'a mut [T]) -> Shared<'a, T> {
        Shared { ptr: buf.as_mut_ptr(), len: buf.len(), _borrow: PhantomData }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `range`, to write.
    ///
    /// # Safety
    /// Until the next barrier, no other member touches `range` (neither `part` over it nor
    /// `whole`), and this member holds no other reference into it.
    #[allow(clippy::mut_from_ref, reason = "disjoint parts of one buffer, one member each (module docs)")]
    pub unsafe fn part(&self, range: Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len, "invariant: part {range:?} inside a buffer of {}", self.len);
        // SAFETY: inside the buffer (checked), borrowed for 'a; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }

    /// Every element, to read.
    ///
    /// # Safety
    /// Until the next barrier, no member writes any part of the buffer.
    pub unsafe fn whole(&self) -> &[T] {
        // SAFETY: the whole buffer, borrowed for 'a; no writer by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_see_each_others_writes_after_every_barrier() {
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut buf = vec![0usize; 37];
            let shared = Shared::new(&mut buf);
            let wrong = AtomicUsize::new(0);
            run_team((threads > 1).then_some(&pool), |team| {
                assert_eq!(team.size(), threads);
                for round in 1..=200 {
                    // SAFETY: shares are disjoint; everyone reads only after the barrier.
                    unsafe { shared.part(team.share(shared.len())) }.iter_mut().for_each(|v| *v = round);
                    team.sync();
                    if unsafe { shared.whole() }.iter().any(|&v| v != round) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    team.sync();
                }
            });
            assert_eq!(wrong.load(Ordering::Relaxed), 0, "{threads} members");
            assert!(buf.iter().all(|&v| v == 200));
        }
    }

    #[test]
    fn shares_cover_the_range_in_order() {
        let barrier = Barrier::new(3);
        for n in 0..20 {
            let parts: Vec<Range<usize>> = (0..3).map(|index| Team { index, size: 3, barrier: &barrier }.share(n)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[2].end, n);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start), "{parts:?}");
        }
    }

    #[test]
    fn a_panicking_member_does_not_hang_the_others() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_team(Some(&pool), |team| {
                if team.index() == 1 {
                    panic!("member 1 fails");
                }
                team.sync();
            })
        }));
        assert!(result.is_err());
    }
}
