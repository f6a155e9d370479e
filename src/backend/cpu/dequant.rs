//! Dequantisation of GGML tensor data to `f32`: the reference for every quantised matmul that
//! may come later (a fast path must agree with `dequantize` followed by an f32 matmul).
//!
//! Each block type is decoded by one plain function that follows the GGML block layout given in
//! its doc comment. All multi-byte fields are little-endian; `d`, `m`, `dmin` are f16.

use half::{bf16, f16};

use crate::backend::GgmlType;

/// Why data could not be dequantised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot dequantise {n} {ty} elements from {bytes} bytes (needs {needed:?} bytes)")]
pub struct DequantError {
    /// Element type.
    pub ty: &'static str,
    /// Elements asked for.
    pub n: usize,
    /// Bytes given.
    pub bytes: usize,
    /// Bytes needed, `None` when `n` is not a whole number of blocks.
    pub needed: Option<usize>,
}

/// Decodes `out.len()` elements of type `ty` from `data` (which must hold exactly that many).
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    let needed = ty.bytes_for(out.len());
    if needed != Some(data.len()) {
        return Err(DequantError { ty: ty.name(), n: out.len(), bytes: data.len(), needed });
    }
    let blocks = data.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(ty.block_len()));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, y)| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| block_q8_0(b, y)),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| block_q4_0(b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| block_q4_1(b, y)),
        GgmlType::Q4K => blocks.for_each(|(b, y)| block_q4_k(b, y)),
        GgmlType::Q5K => blocks.for_each(|(b, y)| block_q5_k(b, y)),
        GgmlType::Q6K => blocks.for_each(|(b, y)| block_q6_k(b, y)),
    }
    Ok(())
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q8_0, 34 bytes for 32 values: `d: f16`, `qs: [i8; 32]`; `y[i] = d · qs[i]`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * f32::from(q as i8);
    }
}

/// Q4_0, 18 bytes for 32 values: `d: f16`, `qs: [u8; 16]`. Byte `j` holds value `j` in its low
/// nibble and value `j + 16` in its high nibble; `y = d · (nibble − 8)`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = d * (f32::from(q & 0x0f) - 8.0);
        y[j + 16] = d * (f32::from(q >> 4) - 8.0);
    }
}

/// Q4_1, 20 bytes for 32 values: `d: f16`, `m: f16`, `qs: [u8; 16]`, nibbles as in Q4_0;
/// `y = d · nibble + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = d * f32::from(q & 0x0f) + m;
        y[j + 16] = d * f32::from(q >> 4) + m;
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) from the 12 packed bytes of Q4_K / Q5_K:
/// sub-blocks 0..4 keep theirs in the low 6 bits of bytes `j` (scale) and `j + 4` (min); sub-blocks
/// 4..8 take their low 4 bits from byte `j + 4` (scale: low nibble, min: high nibble) and their top
/// 2 bits from the top bits of bytes `j − 4` (scale) and `j` (min).
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    let (sc, m) =
        if j < 4 { (s[j] & 63, s[j + 4] & 63) } else { ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)) };
    (f32::from(sc), f32::from(m))
}

/// Q4_K, 144 bytes for 256 values: `d: f16`, `dmin: f16`, `scales: [u8; 12]` (8 packed 6-bit
/// scale/min pairs, see [`scale_min_k4`]), `qs: [u8; 128]`. Values come in 4 chunks of 64: chunk
/// `c` uses bytes `qs[32c..32c+32]`, low nibbles for sub-block `2c`, high nibbles for `2c + 1`;
/// `y = d · scale · q − dmin · min`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        for l in 0..32 {
            y[64 * c + l] = d * s1 * f32::from(q[l] & 0x0f) - dmin * m1;
            y[64 * c + 32 + l] = d * s2 * f32::from(q[l] >> 4) - dmin * m2;
        }
    }
}

/// Q5_K, 176 bytes for 256 values: `d: f16`, `dmin: f16`, `scales: [u8; 12]` (as Q4_K),
/// `qh: [u8; 32]`, `qs: [u8; 128]`. Low 4 bits as in Q4_K; the fifth bit of value `l` of sub-block
/// `s` is bit `s` of `qh[l]`; `y = d · scale · q − dmin · min`.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        for l in 0..32 {
            let h1 = if qh[l] & (1 << (2 * c)) != 0 { 16 } else { 0 };
            let h2 = if qh[l] & (1 << (2 * c + 1)) != 0 { 16 } else { 0 };
            y[64 * c + l] = d * s1 * f32::from((q[l] & 0x0f) + h1) - dmin * m1;
            y[64 * c + 32 + l] = d * s2 * f32::from((q[l] >> 4) + h2) - dmin * m2;
        }
    }
}

/// Q6_K, 210 bytes for 256 values: `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]` (high 2 bits),
/// `scales: [i8; 16]`, `d: f16`. Two halves of 128 values; in half `h`, with `ql = ql[64h..]`,
/// `qh = qh[32h..]`, `sc = scales[8h..]` and `l` in 0..32, the four values at `l`, `l+32`, `l+64`,
/// `l+96` take low bits from `ql[l] & 15`, `ql[l+32] & 15`, `ql[l] >> 4`, `ql[l+32] >> 4` and high
/// bits from bit pairs 0, 2, 4, 6 of `qh[l]`; scales `sc[l/16]`, `sc[l/16+2]`, `sc[l/16+4]`,
/// `sc[l/16+6]`; `y = d · scale · (q − 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for h in 0..2 {
        let ql = &ql_all[64 * h..64 * h + 64];
        let qh = &qh_all[32 * h..32 * h + 32];
        let sc = &sc_all[8 * h..8 * h + 8];
        let y = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0f) | (qh[l] & 3) << 4) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
            let q3 = i32::from((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            let s = |k: usize| d * f32::from(sc[is + k] as i8);
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built blocks. The expected values are computed per element from the format
    //! description (which byte, which bits), independently of the loops above.
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    fn deq(ty: GgmlType, data: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; data.len() / ty.block_bytes() * ty.block_len()];
        dequantize(ty, data, &mut out).expect("dequantize");
        out
    }

    #[test]
    fn plain_floats() {
        let f32s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(deq(GgmlType::F32, &f32s), vec![1.5, -2.0]);
        let f16s: Vec<u8> = [0.5f32, -3.25].iter().flat_map(|&x| h(x)).collect();
        assert_eq!(deq(GgmlType::F16, &f16s), vec![0.5, -3.25]);
        let bf16s: Vec<u8> = [1.0f32, -0.15625].iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
        assert_eq!(deq(GgmlType::BF16, &bf16s), vec![1.0, -0.15625]);
    }

    #[test]
    fn q8_0() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let want: Vec<f32> = (0..32).map(|i| 0.5 * (i - 16) as f32).collect();
        assert_eq!(deq(GgmlType::Q8_0, &b), want);
    }

    #[test]
    fn q4_0_and_q4_1() {
        // Value i of the block is the nibble (i * 7) % 16.
        let nib = |i: usize| ((i * 7) % 16) as u8;
        let qs: Vec<u8> = (0..16).map(|j| nib(j) | nib(j + 16) << 4).collect();
        let mut b = h(0.25).to_vec();
        b.extend(&qs);
        let want: Vec<f32> = (0..32).map(|i| 0.25 * (nib(i) as f32 - 8.0)).collect();
        assert_eq!(deq(GgmlType::Q4_0, &b), want);

        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend(&qs);
        let want: Vec<f32> = (0..32).map(|i| 0.25 * nib(i) as f32 - 1.0).collect();
        assert_eq!(deq(GgmlType::Q4_1, &b), want);
    }

    /// Packs 8 (scale, min) 6-bit pairs the way Q4_K/Q5_K store them.
    fn pack_scales(sm: [(u8, u8); 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sm[j].0 | (sm[j + 4].0 >> 4) << 6;
            s[j + 4] = sm[j].1 | (sm[j + 4].1 >> 4) << 6;
            s[j + 8] = (sm[j + 4].0 & 0x0f) | (sm[j + 4].1 & 0x0f) << 4;
        }
        s
    }

    // Sub-block scales and mins that use all six bits, including the packed top bits.
    const SM: [(u8, u8); 8] = [(1, 0), (63, 5), (17, 33), (40, 2), (2, 63), (48, 16), (33, 1), (63, 63)];

    #[test]
    fn q4_k() {
        let q = |i: usize| ((i * 5 + i / 7) % 16) as u8;
        let mut qs = [0u8; 128];
        for i in 0..256 {
            let (chunk, sub, l) = (i / 64, (i / 32) % 2, i % 32);
            qs[32 * chunk + l] |= if sub == 0 { q(i) } else { q(i) << 4 };
        }
        let mut b = h(0.5).to_vec();
        b.extend(h(0.125));
        b.extend(pack_scales(SM));
        b.extend(qs);
        assert_eq!(b.len(), 144);
        let want: Vec<f32> = (0..256).map(|i| 0.5 * SM[i / 32].0 as f32 * q(i) as f32 - 0.125 * SM[i / 32].1 as f32).collect();
        assert_eq!(deq(GgmlType::Q4K, &b), want);
    }

    #[test]
    fn q5_k() {
        let q = |i: usize| ((i * 11 + i / 5) % 32) as u8;
        let (mut qh, mut qs) = ([0u8; 32], [0u8; 128]);
        for i in 0..256 {
            let (chunk, sub, l) = (i / 64, (i / 32) % 2, i % 32);
            qs[32 * chunk + l] |= if sub == 0 { q(i) & 15 } else { (q(i) & 15) << 4 };
            qh[l] |= (q(i) >> 4) << (i / 32);
        }
        let mut b = h(0.25).to_vec();
        b.extend(h(0.5));
        b.extend(pack_scales(SM));
        b.extend(qh);
        b.extend(qs);
        assert_eq!(b.len(), 176);
        let want: Vec<f32> = (0..256).map(|i| 0.25 * SM[i / 32].0 as f32 * q(i) as f32 - 0.5 * SM[i / 32].1 as f32).collect();
        assert_eq!(deq(GgmlType::Q5K, &b), want);
    }

    #[test]
    fn q6_k() {
        let q = |i: usize| ((i * 13 + i / 3) % 64) as u8;
        let scale = |s: usize| (s as i8 - 8) * 3; // 16 sub-blocks of 16 values, signed scales
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for i in 0..256 {
            let (half, r) = (i / 128, i % 128);
            let (quarter, l) = (r / 32, r % 32);
            // quarter 0: ql[l] low, 1: ql[l+32] low, 2: ql[l] high, 3: ql[l+32] high.
            let byte = 64 * half + l + if quarter % 2 == 1 { 32 } else { 0 };
            ql[byte] |= if quarter < 2 { q(i) & 15 } else { (q(i) & 15) << 4 };
            qh[32 * half + l] |= (q(i) >> 4) << (2 * quarter);
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend((0..16).map(|s| scale(s) as u8));
        b.extend(h(0.5));
        assert_eq!(b.len(), 210);
        let want: Vec<f32> = (0..256).map(|i| 0.5 * scale(i / 16) as f32 * (q(i) as f32 - 32.0)).collect();
        assert_eq!(deq(GgmlType::Q6K, &b), want);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let mut out = vec![0f32; 32];
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out).is_err());
        let mut out = vec![0f32; 31];
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], &mut out).is_err());
    }
}
