//! Splitting a product `y = x · Wᵀ` over threads by column bands: each band `[n0, n1)` is the
//! products of every `x` row with weight rows `n0..n1`, so the weights are read once in all and
//! every output is computed by the same code whatever the band boundaries are — the thread count
//! does not change a result. Used by [`super::matvec`] and [`super::qmatmul`].
//!
//! Bands run on the current rayon pool: the model's own when called inside a forward pass
//! ([`crate::model::Model::set_threads`] builds it and runs each pass inside it, so a band split
//! is a local `join` between workers that are already awake, not a thread start), rayon's global
//! pool otherwise. Batched decode steps do not come here: their threads share each product's
//! bands as a compute team ([`super::team`], `model::llama::step`), one broadcast per step.

use rayon::prelude::*;
use std::ops::Range;

/// Fills `y: [T, N]` by `band(rows, out)`, which writes `out: [T, |rows|]` (row-major) for weight
/// rows `rows`; up to `threads` bands (1: one call on the calling thread, no pool).
pub fn fill_bands(y: &mut [f32], n: usize, threads: usize, band: impl Fn(Range<usize>, &mut [f32]) + Sync) {
    let t = y.len().checked_div(n).unwrap_or(0);
    assert!(y.len() == t * n, "invariant: y is [T, N]");
    if t == 0 {
        return;
    }
    let threads = threads.clamp(1, n);
    if threads == 1 {
        band(0..n, y);
        return;
    }
    let per = n.div_ceil(threads);
    let range = |i: usize| i * per..((i + 1) * per).min(n);
    if t == 1 {
        // One row: a band is a contiguous slice of y, written in place.
        y.par_chunks_mut(per).enumerate().for_each(|(i, out)| band(range(i), out));
        return;
    }
    let mut bands: Vec<Vec<f32>> = (0..n.div_ceil(per)).map(|i| vec![0f32; t * range(i).len()]).collect();
    bands.par_iter_mut().enumerate().for_each(|(i, out)| band(range(i), out));
    for (i, out) in bands.iter().enumerate() {
        let r = range(i);
        for (yr, br) in y.chunks_exact_mut(n).zip(out.chunks_exact(r.len())) {
            yr[r.clone()].copy_from_slice(br);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_is_written_once_whatever_the_split() {
        for &(t, n) in &[(1, 1), (1, 7), (3, 7), (2, 4), (16, 13)] {
            for threads in 1..=5 {
                let mut y = vec![f32::NAN; t * n];
                fill_bands(&mut y, n, threads, |rows, out| {
                    let w = rows.len();
                    for (j, col) in rows.enumerate() {
                        for row in 0..t {
                            out[row * w + j] = (row * 1000 + col) as f32;
                        }
                    }
                });
                let want: Vec<f32> = (0..t).flat_map(|row| (0..n).map(move |col| (row * 1000 + col) as f32)).collect();
                assert_eq!(y, want, "T={t} N={n} threads={threads}");
            }
        }
    }
}
