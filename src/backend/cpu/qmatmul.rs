//! Quantised matrix product `y = x · Wᵀ` with Q8_0 weights and Q8 activations: the decode fast
//! path. A weight row is cut into blocks of 32 values, each stored as `i8` with one f32 scale
//! (`w ≈ d · q`, `d = max|w| / 127`); activations are quantised the same way per block just before
//! the product, so each block's dot product is an integer sum `Σ qw · qa` scaled by `dw · da`.
//! Weights are read once per call whatever the number of activation rows, which is what makes a
//! batched decode step cheap.
//!
//! The reference, [`qmatmul_wt_ref`], dequantises both sides and sums in f64; the SIMD kernels
//! (AVX-VNNI, AVX2, chosen at run time) and the portable loop are tested against it. Against the
//! plain f32 product the error is the quantisation error of both sides (see the model tests).

use super::bands::fill_bands;

/// Values per quantisation block.
pub const QK: usize = 32;

/// A weight matrix `[N, K]` in Q8_0 blocks, `K` a multiple of [`QK`].
#[derive(Clone)]
pub struct QMatrix {
    /// Rows (output features) `N`.
    pub n: usize,
    /// Columns (input features) `K`.
    pub k: usize,
    /// `[N, K]` quantised values.
    qs: Vec<i8>,
    /// `[N, K / QK]` block scales.
    d: Vec<f32>,
    /// `[N, K / QK]`: `128 · d · Σ qs` of each block (the VNNI kernel's offset correction).
    dsum128: Vec<f32>,
}

/// Activations `[T, K]` quantised per block, ready for [`qmatmul_wt`].
#[derive(Clone, Default)]
pub struct QActs {
    /// Columns `K`.
    pub k: usize,
    /// `[T, K]` quantised values.
    qs: Vec<i8>,
    /// `[T, K / QK]` block scales.
    d: Vec<f32>,
}

/// Quantises one block: `d = max|x| / 127`, `q = round(x / d)` (halves away from zero, as
/// `f32::round`). Written so that it compiles to vector instructions without SSE4.1's rounding
/// (`f32::round` is a library call on baseline x86-64): lane-wise maxima, and the rounding as
/// truncation plus a carry on the exact fraction.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let mut lanes = [0f32; 8];
    for chunk in x.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().chain(&x[x.len() / 8 * 8..]).fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        let r = v * inv;
        // |r| ≤ 127 (up to rounding), so the truncation and the fraction are exact.
        let t = r as i32;
        let frac = r - t as f32;
        *q = (t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)).clamp(-127, 127) as i8;
    }
    d
}

impl QMatrix {
    /// Quantises `w: [N, K]` row-major f32.
    pub fn from_f32(w: &[f32], k: usize) -> QMatrix {
        assert!(k.is_multiple_of(QK) && w.len().is_multiple_of(k), "invariant: K is a multiple of {QK}");
        let n = w.len() / k;
        let mut qs = vec![0i8; w.len()];
        let d: Vec<f32> = w.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).map(|(x, q)| quantize_block(x, q)).collect();
        let dsum128 = qs.chunks_exact(QK).zip(&d).map(|(q, &d)| 128.0 * d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32).collect();
        QMatrix { n, k, qs, d, dsum128 }
    }

    /// Stacks matrices with the same `K` row-wise: `[N1 + N2 + …, K]`.
    pub fn concat(parts: &[QMatrix]) -> QMatrix {
        let k = parts[0].k;
        assert!(parts.iter().all(|p| p.k == k), "invariant: concatenated matrices share K");
        QMatrix {
            n: parts.iter().map(|p| p.n).sum(),
            k,
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            dsum128: parts.iter().flat_map(|p| p.dsum128.iter().copied()).collect(),
        }
    }

    /// The dequantised weights `[N, K]`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.qs.chunks_exact(QK).zip(&self.d).flat_map(|(q, &d)| q.iter().map(move |&v| d * f32::from(v))).collect()
    }
}

impl QActs {
    /// Quantises `x: [T, K]` into `self` (buffers reused).
    pub fn quantize(&mut self, x: &[f32], k: usize) {
        assert!(k.is_multiple_of(QK) && x.len().is_multiple_of(k), "invariant: K is a multiple of {QK}");
        self.k = k;
        self.qs.resize(x.len(), 0);
        self.d.clear();
        self.d.extend(x.chunks_exact(QK).zip(self.qs.chunks_exact_mut(QK)).map(|(x, q)| quantize_block(x, q)));
    }

    /// Rows `T`.
    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.k).unwrap_or(0)
    }

    /// The dequantised activations `[T, K]`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.qs.chunks_exact(QK).zip(&self.d).flat_map(|(q, &d)| q.iter().map(move |&v| d * f32::from(v))).collect()
    }
}

/// `y[t, n] = Σ_k x[t, k] · w[n, k]` on quantised values, `y: [T, N]` overwritten; rows of `W`
/// are split into `threads` bands on the current rayon pool ([`super::bands`]; 1: the calling
/// thread only); the result does not depend on `threads`.
pub fn qmatmul_wt(x: &QActs, w: &QMatrix, y: &mut [f32], threads: usize) {
    let t = x.rows();
    assert!(x.k == w.k && y.len() == t * w.n, "invariant: qmatmul shapes agree");
    if t == 0 || w.n == 0 {
        return;
    }
    let kernel = Kernel::detect();
    fill_bands(y, w.n, threads, |rows, out| rows_into(kernel, x, w, rows, out));
}

/// One band of [`qmatmul_wt`]: `out: [T, |rows|]` = every activation row times weight rows
/// `rows` (a thread's share of the product in a decode step, [`super::team`]).
pub fn qmatmul_band(x: &QActs, w: &QMatrix, rows: std::ops::Range<usize>, out: &mut [f32]) {
    assert!(x.k == w.k && rows.end <= w.n && out.len() == x.rows() * rows.len(), "invariant: qmatmul shapes agree");
    rows_into(Kernel::detect(), x, w, rows, out);
}

/// `out: [T, |rows|]` = the products of every activation row with weight rows `rows`.
fn rows_into(kernel: Kernel, x: &QActs, w: &QMatrix, rows: std::ops::Range<usize>, out: &mut [f32]) {
    let (k, nb) = (w.k, w.k / QK);
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512Vnni && nb % 2 == 0 {
        // SAFETY: detect() chose this kernel only where the CPU has AVX-512 F/BW/DQ/VNNI.
        unsafe { x86::rows_avx512vnni(x, w, rows, out) };
        return;
    }
    // One dot at a time (every kernel but AVX-512 VNNI, and that one on an odd block count).
    #[cfg(target_arch = "x86_64")]
    let kernel = if kernel == Kernel::Avx512Vnni && is_x86_feature_detected!("avxvnni") { Kernel::AvxVnni } else { kernel };
    let width = rows.len();
    for (j, n) in rows.enumerate() {
        let (wq, wd, ws) = (&w.qs[n * k..][..k], &w.d[n * nb..][..nb], &w.dsum128[n * nb..][..nb]);
        for t in 0..x.rows() {
            let (aq, ad) = (&x.qs[t * k..][..k], &x.d[t * nb..][..nb]);
            out[t * width + j] = kernel.dot(wq, wd, ws, aq, ad);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernel {
    /// The best kernel this CPU runs, chosen once per process.
    fn detect() -> Kernel {
        static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(Kernel::choose)
    }

    fn choose() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("LABFLOW_NO_SIMD").is_some() {
                return Kernel::Portable;
            }
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && std::env::var_os("LABFLOW_NO_AVX512").is_none()
            {
                return Kernel::Avx512Vnni;
            }
            if is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::AvxVnni;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// One weight row against one activation row: `Σ_blocks dw · da · Σ qw · qa`.
    fn dot(self, wq: &[i8], wd: &[f32], ws: &[f32], aq: &[i8], ad: &[f32]) -> f32 {
        match self {
            Kernel::Portable => dot_portable(wq, wd, aq, ad),
            // SAFETY: detect() (or `rows_into`, for AvxVnni) chose these kernels only where the CPU
            // has the features they enable; detect() requires avx2 and fma for Avx512Vnni too.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::dot_avx2(wq, wd, aq, ad) },
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => unsafe { x86::dot_avxvnni(wq, wd, ws, aq, ad) },
            // AVX-512 VNNI does not imply the VEX-encoded AVX-VNNI (AMD Zen 4 has only the
            // first; dot_avxvnni was an illegal instruction there): `rows_into` turns this kernel
            // into AvxVnni where the CPU has it, once per call.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe { x86::dot_avx2(wq, wd, aq, ad) },
        }
    }
}

fn dot_portable(wq: &[i8], wd: &[f32], aq: &[i8], ad: &[f32]) -> f32 {
    let mut total = 0f32;
    for ((wb, &dw), (ab, &da)) in wq.chunks_exact(QK).zip(wd).zip(aq.chunks_exact(QK).zip(ad)) {
        let s: i32 = wb.iter().zip(ab).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        total += dw * da * s as f32;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{QActs, QMatrix, QK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// AVX2: `|qw| · sign(qa, qw)` with `maddubs` (no saturation: |q| ≤ 127), pairs summed by
    /// `madd`, scaled per block.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(wq: &[i8], wd: &[f32], aq: &[i8], ad: &[f32]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..wd.len() {
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK).cast());
            let a = _mm256_loadu_si256(aq.as_ptr().add(b * QK).cast());
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
            let p32 = _mm256_madd_epi16(p16, ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * ad[b]), _mm256_cvtepi32_ps(p32), acc);
        }
        hsum(acc)
    }

    /// AVX-VNNI: `dpbusd` multiplies unsigned by signed bytes, so the activation is offset by
    /// 128 (`qa + 128 ∈ [1, 255]`) and `128 · dw · Σ qw` (precomputed per block) is taken back
    /// off, scaled by `da`.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn dot_avxvnni(wq: &[i8], wd: &[f32], ws: &[f32], aq: &[i8], ad: &[f32]) -> f32 {
        let off = _mm256_set1_epi8(-128);
        let mut acc = _mm256_setzero_ps();
        let mut corr = 0f32;
        for b in 0..wd.len() {
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK).cast());
            let a = _mm256_loadu_si256(aq.as_ptr().add(b * QK).cast());
            // a XOR 0x80 = a + 128 as an unsigned byte.
            let p32 = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_xor_si256(a, off), w);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(wd[b] * ad[b]), _mm256_cvtepi32_ps(p32), acc);
            corr += ws[b] * ad[b];
        }
        hsum(acc) - corr
    }

    /// AVX-512 VNNI, two blocks (64 values) per instruction, for every activation row against one
    /// weight row at a time. Per block pair, once per weight row: `−Σ 128 · qw` per lane (the
    /// offset correction, so `dpbusd` starting from it yields the exact signed lane sums) and the
    /// two weight scales; per activation row: one `dpbusd`, one conversion, one scale, one FMA.
    /// The activations are offset by 128 once per call; four activation rows share each weight
    /// load and one lane reduction ([`reduce4`]). A group of fewer rows is reduced with the
    /// same tree, so each output is computed the same way whatever the other rows are.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni")]
    pub(super) unsafe fn rows_avx512vnni(x: &QActs, w: &QMatrix, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let (k, nb) = (w.k, w.k / QK);
        let pairs = nb / 2;
        let width = rows.len();
        // Activations as unsigned bytes, a XOR 0x80 = a + 128: [T, K].
        let t_len = x.rows();
        let au: Vec<u8> = x.qs.iter().map(|&a| (a as u8) ^ 0x80).collect();
        // Activation scales as [da0 ×8 | da1 ×8] per block pair: [T, pairs].
        let mut ascale: Vec<__m512> = Vec::with_capacity(t_len * pairs);
        for b in 0..t_len * pairs {
            let lo = _mm256_set1_ps(x.d[2 * b]);
            let hi = _mm256_set1_ps(x.d[2 * b + 1]);
            ascale.push(_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
        }
        let off = _mm512_set1_epi8(-128);
        let mut negc: Vec<__m512i> = vec![_mm512_setzero_si512(); pairs];
        let mut wscale: Vec<__m512> = vec![_mm512_setzero_ps(); pairs];
        for (j, n) in rows.enumerate() {
            let wq = w.qs.as_ptr().add(n * k);
            for p in 0..pairs {
                let wv = _mm512_loadu_si512(wq.add(p * 64).cast());
                let c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, wv);
                negc[p] = _mm512_sub_epi32(_mm512_setzero_si512(), c);
                let lo = _mm256_set1_ps(w.d[n * nb + 2 * p]);
                let hi = _mm256_set1_ps(w.d[n * nb + 2 * p + 1]);
                wscale[p] = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
            }
            let row = Row { wq, negc: &negc, wscale: &wscale, au: au.as_ptr(), ascale: &ascale, k, pairs };
            let mut t = 0;
            while t < t_len {
                let acc = match t_len - t {
                    1 => pad(row.group::<1>(t)),
                    2 => pad(row.group::<2>(t)),
                    3 => pad(row.group::<3>(t)),
                    _ => row.group::<4>(t),
                };
                let sums = reduce4(acc);
                for (r, &sum) in sums.iter().take(t_len - t).enumerate() {
                    out[(t + r) * width + j] = sum;
                }
                t += 4;
            }
        }
    }

    /// One weight row's operands for [`Row::group`].
    struct Row<'a> {
        wq: *const i8,
        negc: &'a [__m512i],
        wscale: &'a [__m512],
        au: *const u8,
        ascale: &'a [__m512],
        k: usize,
        pairs: usize,
    }

    impl Row<'_> {
        /// The lane sums of activation rows `t..t + R` against this weight row.
        #[inline(always)]
        unsafe fn group<const R: usize>(&self, t: usize) -> [__m512; R] {
            let mut acc = [_mm512_setzero_ps(); R];
            for p in 0..self.pairs {
                let wv = _mm512_loadu_si512(self.wq.add(p * 64).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_loadu_si512(self.au.add((t + r) * self.k + p * 64).cast());
                    let dot = _mm512_dpbusd_epi32(self.negc[p], a, wv);
                    let scale = _mm512_mul_ps(self.wscale[p], self.ascale[(t + r) * self.pairs + p]);
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, *acc);
                }
            }
            acc
        }
    }

    /// Four accumulators from fewer, the rest zero.
    #[inline(always)]
    fn pad<const R: usize>(acc: [__m512; R]) -> [__m512; 4] {
        // SAFETY: no memory is touched; AVX-512F is enabled wherever this is inlined.
        let mut all = [unsafe { _mm512_setzero_ps() }; 4];
        all[..R].copy_from_slice(&acc);
        all
    }

    /// The sums of the 16 lanes of each of four vectors, in one tree for all four: lane i + lane
    /// i + 8, then + lane i + 4, + lane i + 2, + lane i + 1 (the order `_mm512_reduce_add_ps`
    /// sums one vector in). Lanes of different vectors never meet.
    #[inline(always)]
    pub(super) unsafe fn reduce4([a, b, c, d]: [__m512; 4]) -> [f32; 4] {
        // 128-bit chunks [a0+a2, a1+a3, b0+b2, b1+b3], and the same for c, d.
        let ab = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b));
        let cd = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(c, d), _mm512_shuffle_f32x4::<0xEE>(c, d));
        // Chunk i: vector i's four partial sums.
        let s = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(ab, cd), _mm512_shuffle_f32x4::<0xDD>(ab, cd));
        let s = _mm512_add_ps(s, _mm512_permute_ps::<0x4E>(s));
        let s = _mm512_add_ps(s, _mm512_permute_ps::<0xB1>(s));
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), s);
        [lanes[0], lanes[4], lanes[8], lanes[12]]
    }
}

/// The reference for [`qmatmul_wt`]: dequantise both sides, multiply with f64 accumulation.
pub fn qmatmul_wt_ref(x: &QActs, w: &QMatrix, y: &mut [f32]) {
    super::matmul::matmul_wt_ref(&x.to_f32(), &w.to_f32(), y, w.k);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 17.0 * if i % 7 == 0 { 3.0 } else { 1.0 }).collect()
    }

    #[test]
    fn kernels_agree_with_reference() {
        for &(t, n, k, threads) in &[(1, 1, 32, 1), (1, 7, 64, 1), (5, 64, 576, 1), (16, 37, 160, 2), (3, 9, 96, 3), (1, 9, 64, 4)] {
            let (x, wf) = (data(t * k, 1), data(n * k, 2));
            let w = QMatrix::from_f32(&wf, k);
            let mut a = QActs::default();
            a.quantize(&x, k);
            let mut slow = vec![0.0; t * n];
            qmatmul_wt_ref(&a, &w, &mut slow);
            let mut fast = vec![f32::NAN; t * n];
            qmatmul_wt(&a, &w, &mut fast, threads);
            // The thread count does not change a result.
            let mut one = vec![f32::NAN; t * n];
            qmatmul_wt(&a, &w, &mut one, 1);
            assert_eq!(fast, one, "({t},{n},{k}): {threads} threads vs 1");
            // Nor do the rows batched with a row (the kernels group rows).
            for tt in 0..t {
                let mut row = QActs::default();
                row.quantize(&x[tt * k..][..k], k);
                let mut alone = vec![f32::NAN; n];
                qmatmul_wt(&row, &w, &mut alone, 1);
                assert_eq!(alone[..], fast[tt * n..][..n], "({t},{n},{k}): row {tt} alone vs batched");
            }
            let (wq, wd, ws) = (&w.qs, &w.d, &w.dsum128);
            for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                assert!((f - s).abs() <= 1e-4 * (1.0 + s.abs()), "({t},{n},{k}) at {i}: fast {f} vs reference {s}");
                // And the portable loop, whatever the CPU.
                let (tt, nn, nb) = (i / n, i % n, k / QK);
                let p = dot_portable(&wq[nn * k..][..k], &wd[nn * nb..][..nb], &a.qs[tt * k..][..k], &a.d[tt * nb..][..nb]);
                assert!((p - s).abs() <= 1e-4 * (1.0 + s.abs()), "portable {p} vs reference {s}");
                let _ = ws;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_four_way_lane_sum_is_the_one_vector_tree() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let lanes: Vec<[f32; 16]> = (0..4).map(|v| std::array::from_fn(|i| data(64, v)[i * 3] * (1.0 + i as f32 * 1e-3))).collect();
        let tree = |l: &[f32; 16]| {
            let v1: Vec<f32> = (0..8).map(|i| l[i] + l[i + 8]).collect();
            let v2: Vec<f32> = (0..4).map(|i| v1[i] + v1[i + 4]).collect();
            (v2[0] + v2[2]) + (v2[1] + v2[3])
        };
        // SAFETY: the CPU has AVX-512F (checked above); the loads read 16 floats each.
        let got = unsafe {
            use std::arch::x86_64::_mm512_loadu_ps;
            x86::reduce4(std::array::from_fn(|v| _mm512_loadu_ps(lanes[v].as_ptr())))
        };
        for v in 0..4 {
            assert_eq!(got[v], tree(&lanes[v]), "vector {v}");
        }
    }

    #[test]
    fn quantisation_rounds_as_f32_round() {
        // Ties, near-ties and plain values, scaled so that max|x| maps to 127.
        let mut x: Vec<f32> = vec![127.0, -127.0, 0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 3.0, 0.0];
        x.extend((0..20).map(|i| (i as f32 * 6.37 - 60.0) * 1.0001));
        let mut q = vec![0i8; x.len()];
        let d = quantize_block(&x, &mut q);
        assert_eq!(d, 1.0);
        for (&v, &qv) in x.iter().zip(&q) {
            assert_eq!(i32::from(qv), (v / d).round().clamp(-127.0, 127.0) as i32, "{v}");
        }
    }

    #[test]
    fn quantisation_error_is_small() {
        let k = 64;
        let x = data(k, 3);
        let mut a = QActs::default();
        a.quantize(&x, k);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (q, v) in a.to_f32().iter().zip(&x) {
            assert!((q - v).abs() <= amax / 127.0 / 2.0 + 1e-6);
        }
    }
}
