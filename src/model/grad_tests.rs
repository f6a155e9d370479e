use super::*;
use crate::backend::cpu::Cpu;
use crate::model::KvCache;

/// A tiny random Llama (or Qwen2) in Hugging Face layout.
fn tiny(arch: Arch, tied: bool, seed: u64) -> (Config, Vec<Vec<f32>>) {
    let config = Config {
        arch,
        vocab_size: 13,
        hidden: 8,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 2,
        ffn: 12,
        rope_base: 10_000.0,
        rope_dims: 2,
        rope_style: RopeStyle::HalfSplit,
        rms_eps: 1e-5,
        context_length: 64,
    };
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let tensors = hf_layout(&config, tied)
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            if name.ends_with("layernorm.weight") || name.ends_with("norm.weight") {
                (0..n).map(|_| (0.8 + 0.4 * next()) as f32).collect()
            } else {
                (0..n).map(|_| ((next() - 0.5) * 1.2) as f32).collect()
            }
        })
        .collect();
    (config, tensors)
}

fn batch() -> Packed {
    let mut b = Packed::default();
    b.push(&[1, 5, 7, 2, 9, 4], &[false, false, true, true, true, true]);
    b.push(&[3, 12], &[false, true]);
    b.push(&[8, 0, 11, 6, 6], &[false, true, true, false, true]);
    b
}

fn loss(cpu: &Cpu, config: &Config, tied: bool, tensors: &[Vec<f32>], batch: &Packed) -> f64 {
    let m = Trainable::from_tensors(cpu, config.clone(), tied, tensors).unwrap();
    let n = batch.n_targets() as f64;
    m.losses(cpu, batch).unwrap().iter().map(|&l| f64::from(l)).sum::<f64>() / n
}

#[test]
fn packing_targets_skip_the_first_token_and_the_boundaries() {
    let b = batch();
    assert_eq!(b.seq_lens, vec![6, 2, 5]);
    let i = IGNORE;
    assert_eq!(b.targets, vec![i, 7, 2, 9, 4, i, 12, i, 0, 11, i, 6, i]);
    assert_eq!(b.n_targets(), 8);
}

#[test]
fn gradients_match_finite_differences_for_every_tensor() {
    let cpu = Cpu::new(1).unwrap();
    for (arch, tied) in [(Arch::Llama, true), (Arch::Llama, false), (Arch::Qwen2, false)] {
        let (config, tensors) = tiny(arch, tied, 3);
        let b = batch();
        let m = Trainable::from_tensors(&cpu, config.clone(), tied, &tensors).unwrap();
        let mut grads = m.zeros_like(&cpu);
        let scale = 1.0 / b.n_targets() as f32;
        m.forward_backward(&cpu, &b, scale, &mut grads).unwrap();
        let layout = m.layout();
        let h = 1e-2f32;
        for (ti, (name, _)) in layout.iter().enumerate() {
            let mut worst = 0f64;
            for i in 0..tensors[ti].len() {
                let mut t = tensors.clone();
                t[ti][i] += h;
                let up = loss(&cpu, &config, tied, &t, &b);
                t[ti][i] -= 2.0 * h;
                let down = loss(&cpu, &config, tied, &t, &b);
                let num = (up - down) / (2.0 * f64::from(h));
                let got = f64::from(grads[ti][i]);
                let err = (num - got).abs() / (2e-3 + num.abs());
                worst = worst.max(err);
                assert!(err < 3e-2, "{arch:?} tied={tied} {name}[{i}]: backward {got} vs finite difference {num}");
            }
            // Every tensor has a gradient that is not all zero (the check above could not fail otherwise).
            assert!(grads[ti].iter().any(|&g| g.abs() > 1e-6), "{arch:?} {name}: zero gradient");
            assert!(worst < 3e-2);
        }
    }
}

#[test]
fn losses_equal_the_inference_pass_on_each_sequence_alone() {
    let cpu = Cpu::new(2).unwrap();
    for (arch, tied) in [(Arch::Llama, true), (Arch::Qwen2, false)] {
        let (config, tensors) = tiny(arch, tied, 5);
        let b = batch();
        let m = Trainable::from_tensors(&cpu, config.clone(), tied, &tensors).unwrap();
        let packed = m.losses(&cpu, &b).unwrap();
        let model = m.to_model(&cpu).unwrap();
        let v = config.vocab_size;
        let mut start = 0;
        for &len in &b.seq_lens {
            let tokens = &b.tokens[start..start + len];
            let logits = model.forward_all(tokens, &mut KvCache::new(&config, 64)).unwrap();
            for r in 0..len {
                let target = b.targets[start + r];
                if target == IGNORE {
                    assert_eq!(packed[start + r], 0.0);
                    continue;
                }
                let row: Vec<f64> = logits[r * v..][..v].iter().map(|&x| f64::from(x)).collect();
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ce = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() - row[target as usize];
                assert!((ce - f64::from(packed[start + r])).abs() < 1e-4, "{arch:?} row {}: inference {ce} vs trainer {}", start + r, packed[start + r]);
            }
            start += len;
        }
    }
}

#[test]
fn two_sequences_packed_give_the_losses_and_gradients_of_each_alone() {
    let cpu = Cpu::new(2).unwrap();
    let (config, tensors) = tiny(Arch::Llama, false, 9);
    let m = Trainable::from_tensors(&cpu, config, false, &tensors).unwrap();
    let (a, b) = ((vec![2u32, 7, 1, 9, 4], vec![false, true, true, false, true]), (vec![5u32, 5, 3], vec![false, true, true]));
    let mut both = Packed::default();
    both.push(&a.0, &a.1);
    both.push(&b.0, &b.1);
    let (mut pa, mut pb) = (Packed::default(), Packed::default());
    pa.push(&a.0, &a.1);
    pb.push(&b.0, &b.1);
    let (mut g_both, mut g_alone) = (m.zeros_like(&cpu), m.zeros_like(&cpu));
    let packed = m.forward_backward(&cpu, &both, 0.25, &mut g_both).unwrap();
    let mut alone = m.forward_backward(&cpu, &pa, 0.25, &mut g_alone).unwrap();
    alone.extend(m.forward_backward(&cpu, &pb, 0.25, &mut g_alone).unwrap());
    for (x, y) in packed.iter().zip(&alone) {
        assert!((x - y).abs() < 1e-5, "packed {packed:?} vs alone {alone:?}");
    }
    for (gb, ga) in g_both.iter().zip(&g_alone) {
        for (x, y) in gb.iter().zip(ga) {
            assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "gradient {x} vs {y}");
        }
    }
}

#[test]
fn bad_batches_are_errors() {
    let cpu = Cpu::new(1).unwrap();
    let (config, tensors) = tiny(Arch::Llama, true, 1);
    let m = Trainable::from_tensors(&cpu, config, true, &tensors).unwrap();
    let mut b = Packed::default();
    b.push(&[1, 99], &[false, true]);
    assert!(m.losses(&cpu, &b).unwrap_err().to_string().contains("token id 99"));
    assert!(m.losses(&cpu, &Packed::default()).is_err());
}
