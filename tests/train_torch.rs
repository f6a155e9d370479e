//! The trainer against PyTorch: tests/fixtures/train/torch_step_smollm2.json records what
//! transformers' `LlamaForCausalLM` (float32, eager attention, a block-diagonal causal mask) and
//! `torch.optim.AdamW` compute on SmolLM2-135M for one packed batch of three sequences —
//! per-target losses, logits, every parameter's gradient (sums and sampled values), the global
//! gradient norm, and the parameters after two clipped AdamW steps. The script that made it is
//! tests/reference/train_fixture.py; the weights are labflow's own dequantisation of the GGUF
//! (the fixture's `init` values check they are the ones transformers trained).

mod common;

use labflow::backend::cpu::adamw::clip_factor;
use labflow::backend::cpu::Cpu;
use labflow::backend::{AdamW, Backend};
use labflow::model::grad::{Packed, Trainable, IGNORE};
use labflow::model::{KvCache, Model};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/train/torch_step_smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn batch(fx: &Value) -> Packed {
    let mut p = Packed::default();
    for s in fx["batch"]["sequences"].as_array().unwrap() {
        let ids: Vec<u32> = s["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let train: Vec<bool> = s["train"].as_array().unwrap().iter().map(|v| v.as_u64() == Some(1)).collect();
        p.push(&ids, &train);
    }
    p
}

/// Checks the parameters at the fixture's indices, and the sum of their change since `init`.
fn check_params(step: &Value, grads_fx: &Value, layout: &[(String, Vec<usize>)], now: &[Vec<f32>], init: &[Vec<f32>], lr: f64) {
    let mut worst = (0f64, String::new());
    for (i, (name, _)) in layout.iter().enumerate() {
        let want = &step["params"][name];
        let idx: Vec<usize> = grads_fx["params"][name]["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        for (j, &k) in idx.iter().enumerate() {
            let (got, exp) = (f64::from(now[i][k]), f(&want["values"][j]));
            // An update is about ±lr per step; elements whose gradient is within rounding of 0
            // can move the other way, so allow up to 2·lr per step on a sampled value.
            let err = (got - exp).abs() / lr;
            if err > worst.0 {
                worst = (err, format!("{name}[{k}]: labflow {got} vs torch {exp}"));
            }
        }
        let delta: f64 = now[i].iter().zip(&init[i]).map(|(&a, &b)| f64::from(a) - f64::from(b)).sum();
        let want_delta = f(&want["delta_sum"]);
        let n = now[i].len() as f64;
        assert!((delta - want_delta).abs() <= 0.02 * want_delta.abs() + 0.02 * lr * n, "{name}: Σ change {delta} vs torch {want_delta} ({n} values)");
    }
    eprintln!("worst sampled parameter: {:.3}·lr off ({})", worst.0, worst.1);
    assert!(worst.0 <= 4.0, "worst sampled parameter off by {:.2}·lr: {}", worst.0, worst.1);
}

#[test]
fn one_packed_batch_and_two_adamw_steps_match_pytorch() {
    let Some(path) = common::model() else { return };
    let fx = fixture();
    let cpu = Cpu::new(2).unwrap();
    let model = Model::load(&path).expect("load the GGUF");
    let mut m = Trainable::from_model(&cpu, &model).expect("trainable");
    let layout = m.layout();
    let grads_fx = &fx["grads"];
    assert_eq!(layout.len(), grads_fx["params"].as_object().unwrap().len(), "one gradient record per tensor");

    // The same weights transformers started from (Hugging Face layout, un-permuted Q/K).
    let init: Vec<Vec<f32>> = m.weights.iter().map(|w| cpu.download(w)).collect();
    for (i, (name, shape)) in layout.iter().enumerate() {
        let g = &grads_fx["params"][name];
        assert_eq!(g["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect::<Vec<_>>(), *shape, "{name}");
        for (k, want) in g["indices"].as_array().unwrap().iter().zip(g["init"].as_array().unwrap()) {
            let got = init[i][k.as_u64().unwrap() as usize];
            assert!((f64::from(got) - f(want)).abs() < 1e-6, "{name}[{k}]: {got} vs transformers' {want}");
        }
    }

    let b = batch(&fx);
    let n = b.n_targets();
    assert_eq!(n as u64, fx["batch"]["n_targets"].as_u64().unwrap());

    // Logits: each sequence alone through the inference pass of the same weights.
    let inference = m.to_model(&cpu).unwrap();
    let v = inference.config().vocab_size;
    let starts = [0usize, 37, 56];
    for lg in fx["logits"].as_array().unwrap() {
        let pos = lg["position"].as_u64().unwrap() as usize;
        let s = starts.iter().rposition(|&s0| s0 <= pos).unwrap();
        let len = b.seq_lens[s];
        let logits = inference.forward_all(&b.tokens[starts[s]..starts[s] + len], &mut KvCache::new(inference.config(), len)).unwrap();
        let row = &logits[(pos - starts[s]) * v..][..v];
        for pair in lg["top"].as_array().unwrap().iter().chain(lg["sample"].as_array().unwrap()) {
            let (id, want) = (pair[0].as_u64().unwrap() as usize, f(&pair[1]));
            assert!((f64::from(row[id]) - want).abs() < 2e-3, "position {pos} id {id}: labflow {} vs torch {want}", row[id]);
        }
    }

    // Loss and gradients of loss = Σ CE / N.
    let mut grads = m.zeros_like(&cpu);
    let losses = m.forward_backward(&cpu, &b, 1.0 / n as f32, &mut grads).unwrap();
    let per_target: Vec<f64> = fx["loss"]["per_target"].as_array().unwrap().iter().flat_map(|s| s.as_array().unwrap().iter().map(f)).collect();
    let ours: Vec<f64> = losses.iter().zip(&b.targets).filter(|(_, &t)| t != IGNORE).map(|(&l, _)| f64::from(l)).collect();
    assert_eq!(ours.len(), per_target.len());
    for (i, (a, e)) in ours.iter().zip(&per_target).enumerate() {
        assert!((a - e).abs() < 2e-3, "target {i}: CE {a} vs torch {e}");
    }
    let loss = ours.iter().sum::<f64>() / n as f64;
    assert!((loss - f(&fx["loss"]["value"])).abs() < 2e-4, "loss {loss} vs torch {}", fx["loss"]["value"]);
    let norm = grads.iter().map(|g| cpu.sum_squares(g)).sum::<f64>().sqrt();
    let want_norm = f(&grads_fx["global_norm_f64"]);
    eprintln!("loss {loss} vs torch {}; gradient norm {norm} vs torch {want_norm}", fx["loss"]["value"]);
    assert!((norm - want_norm).abs() < 1e-3 * want_norm, "gradient norm {norm} vs torch {want_norm}");
    for (i, (name, _)) in layout.iter().enumerate() {
        let g = &grads_fx["params"][name];
        let (sum, abs_sum): (f64, f64) = grads[i].iter().fold((0.0, 0.0), |(s, a), &x| (s + f64::from(x), a + f64::from(x).abs()));
        let (want_sum, want_abs) = (f(&g["sum"]), f(&g["abs_sum"]));
        assert!((abs_sum - want_abs).abs() <= 2e-3 * want_abs, "{name}: Σ|grad| {abs_sum} vs torch {want_abs}");
        assert!((sum - want_sum).abs() <= 2e-3 * want_abs, "{name}: Σ grad {sum} vs torch {want_sum} (Σ|grad| {want_abs})");
        let mean_abs = want_abs / grads[i].len() as f64;
        for (k, want) in g["indices"].as_array().unwrap().iter().zip(g["values"].as_array().unwrap()) {
            let got = f64::from(grads[i][k.as_u64().unwrap() as usize]);
            assert!((got - f(want)).abs() <= 1e-2 * f(want).abs() + 2e-2 * mean_abs, "{name}[{k}]: grad {got} vs torch {want}");
        }
    }

    // Two clipped AdamW steps on the same batch, as the fixture's script runs them.
    let lr = f(&fx["_meta"]["lr"]);
    let h = AdamW { lr: lr as f32, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 };
    let (mut mo, mut ve) = (m.zeros_like(&cpu), m.zeros_like(&cpu));
    for (s, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        if s > 0 {
            grads.iter_mut().for_each(|g| cpu.zero(g));
            let l = m.forward_backward(&cpu, &b, 1.0 / n as f32, &mut grads).unwrap();
            let loss = l.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
            assert!((loss - f(&step["loss_before"])).abs() < 1e-3, "loss before step {}: {loss} vs torch {}", s + 1, step["loss_before"]);
        }
        let norm = grads.iter().map(|g| cpu.sum_squares(g)).sum::<f64>().sqrt();
        let clip = clip_factor(norm, 1.0);
        for ((w, g), (mm, vv)) in m.weights.iter_mut().zip(&grads).zip(mo.iter_mut().zip(ve.iter_mut())) {
            cpu.adamw(w, g, mm, vv, h, s as u64 + 1, clip);
        }
        let now: Vec<Vec<f32>> = m.weights.iter().map(|w| cpu.download(w)).collect();
        check_params(step, grads_fx, &layout, &now, &init, lr * (s + 1) as f64);
    }
    let after = m.losses(&cpu, &b).unwrap().iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let want_after = f(&fx["loss_after"]);
    eprintln!("loss after two steps {after} vs torch {want_after}");
    assert!((after - want_after).abs() < 2e-3, "loss after two steps {after} vs torch {want_after}");
}
