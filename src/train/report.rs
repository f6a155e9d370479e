//! The run report (`train_report.json` and `.md` at the output's root) and the loss curve
//! of each phase (`phase-N-name/loss.png`).

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::data::Dropped;
use super::TrainError;
use crate::mix::report::rgb_png;
use crate::store::{dataset, Location};

/// One phase of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// Its output folder.
    pub dir: String,
    /// Records read.
    pub records: usize,
    /// Samples trained on.
    pub train_samples: usize,
    /// Samples held out to score checkpoints.
    pub heldout_samples: usize,
    /// Records dropped, by reason.
    pub dropped: Dropped,
    /// Optimizer steps of the phase in all.
    pub steps: u64,
    /// Mean loss per target of the first and the last step.
    pub first_loss: Option<f64>,
    /// See `first_loss`.
    pub last_loss: Option<f64>,
    /// Every checkpoint written and kept, with its held-out loss.
    pub checkpoints: Vec<Checkpoint>,
    /// The one the next phase starts from.
    pub chosen: Checkpoint,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrainReport {
    /// The recipe's name.
    pub recipe: String,
    /// The base model.
    pub base: String,
    /// The backend.
    pub backend: String,
    /// The output.
    pub output: String,
    /// Phases finished, in order (those finished by earlier invocations included).
    pub phases: Vec<PhaseReport>,
    /// Optimizer steps this invocation ran (0 when everything was already done).
    pub train_steps: u64,
    /// The state this invocation resumed from, if any.
    pub resumed_from: Option<String>,
    /// The final model: the last phase's chosen checkpoint.
    pub final_checkpoint: Option<String>,
}

impl TrainReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Training report: {}\n\nBase: {}  \nBackend: {}  \nOutput: {}\n\n", self.recipe, self.base, self.backend, self.output);
        s += "| phase | records | trained | held out | dropped (short / long / nothing to train / unrenderable) | steps | first loss | last loss | chosen | held-out loss |\n|---|---|---|---|---|---|---|---|---|---|\n";
        let f = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        for p in &self.phases {
            let d = &p.dropped;
            s += &format!(
                "| {} | {} | {} | {} | {} / {} / {} / {} | {} | {} | {} | {} | {} |\n",
                p.name, p.records, p.train_samples, p.heldout_samples, d.too_short, d.too_long, d.nothing_to_train, d.unrenderable, p.steps,
                f(p.first_loss), f(p.last_loss), p.chosen.dir, f(p.chosen.heldout_loss)
            );
        }
        s += &format!("\nSteps run by this invocation: {}\n", self.train_steps);
        if let Some(c) = &self.final_checkpoint {
            s += &format!("\nFinal model: `{c}`\n");
        }
        s
    }

    /// Writes `train_report.json` and `train_report.md`.
    pub async fn write(&self, out: &Location) -> Result<(), TrainError> {
        dataset::write_json(out, "train_report.json", self).await?;
        dataset::write_bytes(out, "train_report.md", self.markdown().into_bytes()).await?;
        Ok(())
    }
}

/// A line chart of `losses` (one point per step) as PNG bytes: no text (the numbers are in
/// `metrics.jsonl`); the vertical axis spans the values' range.
pub fn loss_chart(losses: &[f64]) -> Result<Vec<u8>, TrainError> {
    const W: usize = 480;
    const H: usize = 240;
    const PAD: usize = 20;
    let mut px = vec![255u8; W * H * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| px[(y * W + x) * 3..][..3].copy_from_slice(&c);
    for x in PAD..W - PAD {
        put(x, H - PAD, [60, 60, 60]);
    }
    for y in PAD..=H - PAD {
        put(PAD, y, [60, 60, 60]);
    }
    let finite: Vec<f64> = losses.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() >= 1 {
        let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-9);
        let (iw, ih) = ((W - 2 * PAD - 1) as f64, (H - 2 * PAD - 1) as f64);
        let point = |i: usize, v: f64| {
            let x = PAD + 1 + (i as f64 / (losses.len().max(2) - 1) as f64 * iw) as usize;
            let y = H - PAD - 1 - ((v - lo) / span * ih) as usize;
            (x, y)
        };
        let mut prev: Option<(usize, usize)> = None;
        for (i, &v) in losses.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let (x, y) = point(i, v);
            if let Some((px0, py0)) = prev {
                // A straight segment, stepped along its longer axis.
                let n = px0.abs_diff(x).max(py0.abs_diff(y)).max(1);
                for s in 0..=n {
                    let xi = px0 as f64 + (x as f64 - px0 as f64) * s as f64 / n as f64;
                    let yi = py0 as f64 + (y as f64 - py0 as f64) * s as f64 / n as f64;
                    put(xi.round() as usize, yi.round() as usize, [70, 110, 190]);
                }
            } else {
                put(x, y, [70, 110, 190]);
            }
            prev = Some((x, y));
        }
    }
    rgb_png(W, H, &px).map_err(|e| TrainError::Checkpoint(format!("loss chart: {e}")))
}
