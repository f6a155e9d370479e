//! The training loop. Per phase: read the data files, render and filter the samples, hold out
//! a seeded share to score checkpoints, then step through seeded epochs — each step accumulates
//! the gradients of its packed minibatches with the loss scaled by 1 / the step's target count,
//! clips them to a global norm, and applies AdamW at the scheduled learning rate. Checkpoints go
//! out by sample count, per epoch and at the end, each with its held-out loss; the full state
//! goes with each, so a rerun after a crash resumes from the newest one and ends with the same
//! weights as a run that never stopped (the data order, packing and every op are deterministic
//! for a given seed and thread count). The next phase starts from the chosen checkpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use super::base::{self, Loaded};
use super::checkpoint::{self, Checkpoint, State};
use super::data::Sample;
use super::pack;
use super::recipe::{Phase, Recipe, Select};
use super::report::{loss_chart, PhaseReport, TrainReport};
use super::TrainError;
use crate::backend::cpu::adamw::clip_factor;
use crate::backend::cpu::Cpu;
use crate::backend::{AdamW, Backend};
use crate::model::grad::Trainable;
use crate::store::{dataset, Location};

/// What to train, where.
pub struct TrainJob<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The folder its relative paths start from (None: the current directory).
    pub recipe_dir: Option<PathBuf>,
    /// The output folder or URL.
    pub out: &'a Location,
    /// Compute threads.
    pub threads: usize,
    /// Cap on each phase's optimizer steps (a quick look at any recipe).
    pub max_steps: Option<u64>,
    /// What to do when the output holds a run of another recipe, other data or another
    /// `max_steps`.
    pub on_change: OnChange,
}

/// See [`TrainJob::on_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop with an error that says so (nothing is deleted).
    Refuse,
    /// Delete what the output holds and train from the base again (training cannot be
    /// incremental: new data means new weights from the first step).
    Restart,
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A phase starts (or resumes at `done` of `total` steps).
    Phase {
        /// Its name.
        name: String,
        /// Steps already done.
        done: u64,
        /// Steps in all.
        total: u64,
        /// Samples trained on and held out.
        samples: (usize, usize),
    },
    /// A step finished.
    Step {
        /// Steps of the phase done.
        step: u64,
        /// Mean loss per target.
        loss: f64,
        /// Its learning rate.
        lr: f32,
        /// Tokens per second of the step.
        tokens_per_s: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its folder.
        dir: String,
        /// Its held-out loss.
        heldout_loss: Option<f64>,
    },
}

/// Trains `job` on the CPU backend.
pub async fn train(job: TrainJob<'_>, progress: &mut (dyn FnMut(&Progress) + Send)) -> Result<TrainReport, TrainError> {
    let cpu = Cpu::new(job.threads).map_err(|e| TrainError::Plan(format!("cannot start {} compute threads: {e}", job.threads)))?;
    train_on(&cpu, job, progress).await
}

/// A hash of every record every phase reads, in order: a run's state belongs to this data.
async fn data_fingerprint(recipe: &Recipe, dir: Option<&std::path::Path>) -> Result<String, TrainError> {
    let mut h = blake3::Hasher::new();
    for phase in &recipe.phases {
        for d in &phase.data {
            let mut line = Vec::new();
            for r in crate::mix::read_dataset(d, dir).await? {
                line.clear();
                r.write_json_line(&mut line);
                h.update(&line);
            }
            h.update(b"\0");
        }
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// What a run's state belongs to: the recipe, every record its phases read, and `max_steps`.
/// A state with another fingerprint is not resumed ([`OnChange`]).
pub async fn fingerprint(job: &TrainJob<'_>) -> Result<String, TrainError> {
    let data = data_fingerprint(job.recipe, job.recipe_dir.as_deref()).await?;
    Ok(format!("{}-{data}-{}", job.recipe.fingerprint(), job.max_steps.map_or("all".to_string(), |n| format!("max{n}"))))
}

/// Trains `job` on `backend`.
pub async fn train_on<B: Backend>(backend: &B, job: TrainJob<'_>, progress: &mut (dyn FnMut(&Progress) + Send)) -> Result<TrainReport, TrainError> {
    let recipe = job.recipe;
    let dir = job.recipe_dir.as_deref();
    let mut base = base::load(backend, &recipe.base, dir, recipe.seed)?;
    let fingerprint = fingerprint(&job).await?;
    if job.on_change == OnChange::Restart && checkpoint::read_progress(job.out).await?.is_some_and(|s| s.recipe != fingerprint) {
        checkpoint::delete_folder(job.out, "").await?;
    }
    let (mut state, mut resume) = match checkpoint::read_state(job.out).await? {
        Some((s, t)) if s.recipe == fingerprint => (s, Some(t)),
        Some(_) => {
            return Err(TrainError::Plan(format!(
                "{} holds a run of another recipe, other data or another --max-steps; give a new --output, or delete that folder to start over",
                job.out.display
            )))
        }
        None => (State { recipe: fingerprint, phase: 0, epoch: 0, step_in_epoch: 0, phase_step: 0, samples: 0, checkpoints: vec![], chosen: vec![], tensors: String::new(), metrics: vec![], reports: vec![] }, None),
    };
    let resumed_from = resume.as_ref().filter(|_| state.phase < recipe.phases.len()).map(|_| format!("phase {} step {}", state.phase + 1, state.phase_step));
    let mut steps_run = 0;
    while state.phase < recipe.phases.len() {
        let pi = state.phase;
        let phase = &recipe.phases[pi];
        let mut records = Vec::new();
        for d in &phase.data {
            records.extend(crate::mix::read_dataset(d, dir).await?);
        }
        let (samples, dropped) = base.renderer.prepare(&records, recipe.min_tokens, phase.max_seq_len);
        let (train, heldout) = split(samples, phase.eval_fraction, recipe.seed);
        if train.is_empty() {
            return Err(TrainError::Plan(format!(
                "phase {:?} has no sample to train: {} records read, {} dropped ({} shorter than {} tokens, {} of {} tokens or more, {} with nothing to train, {} unrenderable{})",
                phase.name, records.len(), dropped.total(), dropped.too_short, recipe.min_tokens, dropped.too_long, phase.max_seq_len,
                dropped.nothing_to_train, dropped.unrenderable, dropped.examples.first().map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        let per_epoch = train.len().div_ceil(phase.batch_size) as u64;
        let total = (per_epoch * u64::from(phase.epochs)).min(job.max_steps.unwrap_or(u64::MAX)).max(1);
        let (mut m, mut v) = (base.model.zeros_like(backend), base.model.zeros_like(backend));
        let layout = base.model.layout();
        match resume.take() {
            Some(t) if state.phase_step > 0 => {
                load_into(backend, &mut base.model.weights, &layout, &t, "w.")?;
                load_into(backend, &mut m, &layout, &t, "m.")?;
                load_into(backend, &mut v, &layout, &t, "v.")?;
            }
            _ if pi > 0 => {
                let chosen = &state.chosen[pi - 1].dir;
                let t = checkpoint::read_hf_weights(job.out, chosen).await?;
                load_into(backend, &mut base.model.weights, &layout, &t, "")?;
            }
            _ => {}
        }
        progress(&Progress::Phase { name: phase.name.clone(), done: state.phase_step, total, samples: (train.len(), heldout.len()) });
        let mut grads = base.model.zeros_like(backend);
        let phase_dir = format!("phase-{}-{}", pi + 1, phase.name);
        let mut epoch_steps: Option<(u64, Vec<pack::Step>)> = None;
        while state.phase_step < total {
            if epoch_steps.as_ref().is_none_or(|(e, _)| *e != state.epoch) {
                let steps = pack::epoch_steps(&train, phase.batch_size, phase.max_tokens_per_minibatch, recipe.seed ^ pi as u64, state.epoch);
                epoch_steps = Some((state.epoch, steps));
            }
            let steps = &epoch_steps.as_ref().expect("invariant: just computed").1;
            let st = &steps[state.step_in_epoch];
            let t0 = Instant::now();
            grads.iter_mut().for_each(|g| backend.zero(g));
            let (mut loss_sum, mut tokens) = (0f64, 0usize);
            for mb in &st.minibatches {
                let p = pack::packed(&train, mb);
                tokens += p.len();
                let losses = base.model.forward_backward(backend, &p, 1.0 / st.loss_tokens as f32, &mut grads)?;
                loss_sum += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
            }
            let step_no = state.phase_step + 1;
            let lr = phase.schedule.lr(phase.lr, step_no, phase.warmup_steps, total);
            let h = AdamW { lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: phase.weight_decay };
            let (grads_ref, weights) = (&grads, &mut base.model.weights);
            let norm = backend.run(|| {
                let norm = grads_ref.iter().map(|g| backend.sum_squares(g)).sum::<f64>().sqrt();
                let clip = clip_factor(norm, phase.clip);
                for (((w, g), m), v) in weights.iter_mut().zip(grads_ref).zip(m.iter_mut()).zip(v.iter_mut()) {
                    backend.adamw(w, g, m, v, h, step_no, clip);
                }
                norm
            });
            let secs = t0.elapsed().as_secs_f64();
            let samples_before = state.samples;
            state.phase_step = step_no;
            state.samples += st.samples as u64;
            state.step_in_epoch += 1;
            steps_run += 1;
            let loss = loss_sum / st.loss_tokens as f64;
            let line = serde_json::json!({
                "phase": phase.name, "step": step_no, "epoch": state.epoch, "lr": lr, "loss": loss, "grad_norm": norm,
                "tokens": tokens, "loss_tokens": st.loss_tokens, "samples": state.samples, "seconds": secs, "tokens_per_s": tokens as f64 / secs.max(1e-9),
            });
            state.metrics.push(line.to_string());
            progress(&Progress::Step { step: step_no, loss, lr, tokens_per_s: tokens as f64 / secs.max(1e-9) });
            let end_of_epoch = state.step_in_epoch == steps.len();
            if end_of_epoch {
                state.epoch += 1;
                state.step_in_epoch = 0;
            }
            let every = phase.save_every_samples;
            let by_count = every > 0 && state.samples / every > samples_before / every;
            if state.phase_step == total || by_count || (end_of_epoch && phase.save_per_epoch) {
                let ckpt = save(backend, &job, &base, phase, &phase_dir, &heldout, &mut state, [&m, &v]).await?;
                progress(&Progress::Checkpoint { dir: ckpt.dir.clone(), heldout_loss: ckpt.heldout_loss });
            }
        }
        // The phase is done: choose, report, move on.
        let chosen = match phase.select {
            Select::Last => state.checkpoints.last(),
            Select::HeldoutLoss | Select::Score => best(&state.checkpoints, phase.select),
        }
        .cloned()
        .ok_or_else(|| TrainError::Plan(format!("phase {:?} ended without a checkpoint", phase.name)))?;
        let losses: Vec<f64> = state.metrics.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64()).collect();
        dataset::write_bytes(job.out, &format!("{phase_dir}/loss.png"), loss_chart(&losses)?).await?;
        state.reports.push(PhaseReport {
            name: phase.name.clone(),
            dir: phase_dir,
            records: records.len(),
            train_samples: train.len(),
            heldout_samples: heldout.len(),
            dropped,
            steps: state.phase_step,
            first_loss: losses.first().copied(),
            last_loss: losses.last().copied(),
            checkpoints: state.checkpoints.clone(),
            chosen: chosen.clone(),
        });
        state.chosen.push(chosen);
        let previous = std::mem::take(&mut state.tensors);
        state.phase += 1;
        (state.epoch, state.step_in_epoch, state.phase_step, state.samples) = (0, 0, 0, 0);
        state.checkpoints.clear();
        state.metrics.clear();
        state.tensors = format!("phase-{:02}-start", state.phase + 1);
        checkpoint::write_state(job.out, &state, &[], Some(&previous)).await?;
    }
    let report = TrainReport {
        recipe: recipe.name.clone(),
        base: base.description.clone(),
        backend: backend.name(),
        output: job.out.display.clone(),
        phases: state.reports.clone(),
        train_steps: steps_run,
        resumed_from,
        final_checkpoint: state.chosen.last().map(|c| format!("{}/{}", job.out.display.trim_end_matches('/'), c.dir)),
    };
    report.write(job.out).await?;
    Ok(report)
}

/// The best checkpoint by `select`: the lowest held-out loss, or the highest score (the first
/// of equals); `None` for `last`.
fn best(checkpoints: &[Checkpoint], select: Select) -> Option<&Checkpoint> {
    let key = |c: &Checkpoint| match select {
        Select::HeldoutLoss => c.heldout_loss.unwrap_or(f64::INFINITY),
        Select::Score => -c.score.unwrap_or(f64::NEG_INFINITY),
        Select::Last => 0.0,
    };
    (select != Select::Last).then(|| checkpoints.iter().min_by(|a, b| key(a).total_cmp(&key(b)))).flatten()
}

/// Runs the phase's scorer on checkpoint `rel`: the last line it prints, as a number.
fn score(command: &[String], out: &Location, rel: &str) -> Result<f64, TrainError> {
    let Some(root) = &out.local_root else {
        return Err(TrainError::Plan(format!("select: score runs its scorer on a local checkpoint folder; {} is not a local folder", out.display)));
    };
    let dir = root.join(rel);
    let shown = format!("{} {}", command.join(" "), dir.display());
    let run = std::process::Command::new(&command[0]).args(&command[1..]).arg(&dir).output();
    let output = run.map_err(|e| TrainError::Plan(format!("scorer `{shown}` could not start: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(TrainError::Plan(format!("scorer `{shown}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    last.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| TrainError::Plan(format!("scorer `{shown}` printed {last:?} last; it must print the checkpoint's score (a number) as its last line")))
}

/// Writes a checkpoint of the current weights (with its held-out loss), rotates the old ones,
/// then writes the full state.
#[allow(clippy::too_many_arguments)]
async fn save<B: Backend>(
    backend: &B,
    job: &TrainJob<'_>,
    base: &Loaded<B>,
    phase: &Phase,
    phase_dir: &str,
    heldout: &[Sample],
    state: &mut State,
    [m, v]: [&Vec<B::Buf>; 2],
) -> Result<Checkpoint, TrainError> {
    let model = &base.model;
    let heldout_loss = heldout_loss(backend, model, heldout, phase.max_tokens_per_minibatch)?;
    let layout = model.layout();
    let weights: Vec<Vec<f32>> = model.weights.iter().map(|w| backend.download(w)).collect();
    let named: Vec<(String, Vec<usize>, &[f32])> = layout.iter().zip(&weights).map(|((n, s), w)| (n.clone(), s.clone(), &w[..])).collect();
    let rel = format!("{phase_dir}/samples_{}", state.samples);
    let config = checkpoint::hf_config_json(model.config(), model.tied(), base.bos_eos.0, base.bos_eos.1);
    checkpoint::write_hf(job.out, &rel, &named, &config, &base.tokenizer_files).await?;
    let score = match &phase.scorer {
        Some(command) if phase.select == Select::Score => Some(score(command, job.out, &rel)?),
        _ => None,
    };
    let ckpt = Checkpoint { dir: rel, samples: state.samples, step: state.phase_step, heldout_loss, score };
    state.checkpoints.push(ckpt.clone());
    // Keep the newest `keep_last`, and the best so far when choosing by held-out loss or score.
    let best = best(&state.checkpoints, phase.select).map(|c| c.dir.clone());
    let n = state.checkpoints.len();
    let mut kept = Vec::new();
    for (i, c) in std::mem::take(&mut state.checkpoints).into_iter().enumerate() {
        if i + phase.keep_last >= n || (phase.select != Select::Last && Some(&c.dir) == best.as_ref()) {
            kept.push(c);
        } else {
            checkpoint::delete_folder(job.out, &c.dir).await?;
        }
    }
    state.checkpoints = kept;
    let mut metrics = state.metrics.join("\n");
    metrics.push('\n');
    dataset::write_bytes(job.out, &format!("{phase_dir}/metrics.jsonl"), metrics.into_bytes()).await?;
    let (mv_m, mv_v): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (m.iter().map(|x| backend.download(x)).collect(), v.iter().map(|x| backend.download(x)).collect());
    let mut tensors = Vec::with_capacity(3 * layout.len());
    for (prefix, data) in [("w.", &weights), ("m.", &mv_m), ("v.", &mv_v)] {
        tensors.extend(layout.iter().zip(data).map(|((n, s), d)| (format!("{prefix}{n}"), s.clone(), &d[..])));
    }
    let previous = std::mem::replace(&mut state.tensors, format!("phase-{:02}-step-{:08}", state.phase + 1, state.phase_step));
    checkpoint::write_state(job.out, state, &tensors, Some(&previous).filter(|p| !p.is_empty()).map(|p| p.as_str())).await?;
    Ok(ckpt)
}

/// Mean loss per target over `samples` (None when there are none).
fn heldout_loss<B: Backend>(backend: &B, model: &Trainable<B>, samples: &[Sample], max_tokens: usize) -> Result<Option<f64>, TrainError> {
    if samples.is_empty() {
        return Ok(None);
    }
    let lengths: Vec<usize> = samples.iter().map(|s| s.tokens.len()).collect();
    let (mut sum, mut n) = (0f64, 0usize);
    for bin in pack::first_fit_decreasing(&lengths, max_tokens) {
        let p = pack::packed(samples, &bin);
        sum += model.losses(backend, &p)?.iter().map(|&l| f64::from(l)).sum::<f64>();
        n += p.n_targets();
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// Tensors `prefix + name` of `from` into `dst`, in `layout`'s order, each checked for shape.
fn load_into<B: Backend>(backend: &B, dst: &mut [B::Buf], layout: &[(String, Vec<usize>)], from: &HashMap<String, Vec<f32>>, prefix: &str) -> Result<(), TrainError> {
    for (buf, (name, shape)) in dst.iter_mut().zip(layout) {
        let key = format!("{prefix}{name}");
        let t = from.get(&key).ok_or_else(|| TrainError::Checkpoint(format!("tensor {key:?} is missing from the saved state or checkpoint")))?;
        if t.len() != shape.iter().product::<usize>() {
            return Err(TrainError::Checkpoint(format!("tensor {key:?} has {} values, the model's shape {shape:?} another count", t.len())));
        }
        *buf = backend.upload(t);
    }
    Ok(())
}

/// The held-out share: the `round(n · fraction)` samples (at least 1 when there are 2 or more)
/// whose seeded hash of their id and index is smallest; the rest, in their order, train.
fn split(samples: Vec<Sample>, fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    if fraction <= 0.0 || samples.len() < 2 {
        return (samples, Vec::new());
    }
    let n_held = ((samples.len() as f64 * fraction).round() as usize).clamp(1, samples.len() - 1);
    let key = |i: usize, s: &Sample| {
        let h = blake3::hash(format!("{seed}\u{0}{i}\u{0}{}", s.id).as_bytes());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("invariant: a blake3 hash has 32 bytes"))
    };
    let mut order: Vec<(u64, usize)> = samples.iter().enumerate().map(|(i, s)| (key(i, s), i)).collect();
    order.sort_unstable();
    let held: std::collections::HashSet<usize> = order[..n_held].iter().map(|&(_, i)| i).collect();
    let (mut train, mut out) = (Vec::new(), Vec::new());
    for (i, s) in samples.into_iter().enumerate() {
        if held.contains(&i) {
            out.push(s);
        } else {
            train.push(s);
        }
    }
    (train, out)
}
