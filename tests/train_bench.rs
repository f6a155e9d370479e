//! labflow's side of the trainer throughput benchmark (benches/run_train.sh runs it beside
//! benches/train_torch.py and benches/README.md records both): full fine-tuning of SmolLM2-135M
//! in f32 on the CPU backend, one packed row of LABFLOW_BENCH_SEQ_LEN tokens (default 1024) per
//! step — sequences of random lengths in [64, 512], the last cut to fill the row, every token
//! after the first of each trained — then global-norm clipping and AdamW, as the PyTorch script
//! does. One untimed warm-up step, LABFLOW_BENCH_STEPS timed ones (default 5), on
//! LABFLOW_BENCH_THREADS threads (default 2). Prints one JSON line: median tokens/s and seconds
//! per step, the split into forward+backward and optimizer, and the process's peak RSS.
//!
//! Ignored by `cargo test` (minutes of compute); run with
//!   cargo test --test train_bench -- --ignored --nocapture

mod common;

use std::time::Instant;

use labflow::backend::cpu::adamw::clip_factor;
use labflow::backend::cpu::Cpu;
use labflow::backend::{AdamW, Backend};
use labflow::model::grad::{Packed, Trainable};
use labflow::model::Model;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
#[ignore = "benchmark: minutes of compute; benches/run_train.sh runs it"]
fn bench_train_step() {
    let Some(path) = common::model() else { return };
    let (seq_len, steps, threads) = (env("LABFLOW_BENCH_SEQ_LEN", 1024), env("LABFLOW_BENCH_STEPS", 5), env("LABFLOW_BENCH_THREADS", 2));
    let cpu = Cpu::new(threads).unwrap();
    let mut m = Trainable::from_model(&cpu, &Model::load(&path).unwrap()).unwrap();
    let vocab = m.config().vocab_size as u32;
    let mut rng = StdRng::seed_from_u64(0);
    let rows: Vec<Packed> = (0..=steps)
        .map(|_| {
            let mut p = Packed::default();
            let mut left = seq_len;
            while left > 0 {
                let n = rng.random_range(64..=512).min(left);
                let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab)).collect();
                p.push(&ids, &vec![true; n]);
                left -= n;
            }
            p
        })
        .collect();
    let (mut grads, mut mo, mut ve) = (m.zeros_like(&cpu), m.zeros_like(&cpu), m.zeros_like(&cpu));
    let h = AdamW { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 };
    let (mut secs, mut fb, mut opt, mut losses) = (vec![], vec![], vec![], vec![]);
    for (k, row) in rows.iter().enumerate() {
        let t0 = Instant::now();
        grads.iter_mut().for_each(|g| cpu.zero(g));
        let n = row.n_targets();
        let l = m.forward_backward(&cpu, row, 1.0 / n as f32, &mut grads).unwrap();
        let t1 = Instant::now();
        let (g, w) = (&grads, &mut m.weights);
        cpu.run(|| {
            let clip = clip_factor(g.iter().map(|x| cpu.sum_squares(x)).sum::<f64>().sqrt(), 1.0);
            for ((w, g), (mm, vv)) in w.iter_mut().zip(g).zip(mo.iter_mut().zip(ve.iter_mut())) {
                cpu.adamw(w, g, mm, vv, h, k as u64 + 1, clip);
            }
        });
        let t2 = Instant::now();
        let loss = l.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        eprintln!("step {k}{}: {:.2}s, loss {loss:.4}", if k == 0 { " (warm-up)" } else { "" }, (t2 - t0).as_secs_f64());
        if k > 0 {
            secs.push((t2 - t0).as_secs_f64());
            fb.push((t1 - t0).as_secs_f64());
            opt.push((t2 - t1).as_secs_f64());
            losses.push(loss);
        }
    }
    let s = median(secs.clone());
    let out = serde_json::json!({
        "impl": "labflow", "threads": threads, "seq_len": seq_len, "steps": steps,
        "median_step_seconds": s, "median_tokens_per_s": seq_len as f64 / s,
        "median_forward_backward_seconds": median(fb), "median_optimizer_seconds": median(opt),
        "step_seconds": secs, "losses": losses, "peak_rss_mib": peak_rss_mib(),
    });
    println!("{out}");
}
