//! The mix report: rows per mix, source and leaf; what was left out and why; the length
//! histogram of each mix as a table and as a PNG chart. Written as `mix_report.json` (for
//! tools), `mix_report.md` (for people) and `mix_lengths.png`, then `mix_manifest.json`.

use crate::engine::report::FileEntry;
use crate::mix::build::Omitted;
use crate::mix::recipe::Recipe;
use crate::mix::{Measure, MixError, MIX_MANIFEST};
use crate::store::dataset;
use crate::store::Location;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Rows of one mix from one source and leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    /// `knowledge` or `skills`.
    pub mix: String,
    /// The source (`skills`, `knowledge_raft`, …).
    pub source: String,
    /// The leaf, or a dataset's path.
    pub leaf: String,
    /// Records.
    pub rows: u64,
}

/// One mix's record lengths (every turn's text), in power-of-two bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// The mix.
    pub mix: String,
    /// `words` or `tokens`.
    pub unit: String,
    /// `(from, to, rows)`: lengths in `[from, to)`; the last bin's `to` is `None`.
    pub bins: Vec<(usize, Option<usize>, u64)>,
    /// The longest record.
    pub max: usize,
}

/// Bin edges of the histogram.
const EDGES: [usize; 10] = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/// Counts gathered while a mix streams: records per (mix, source, leaf), lengths, omissions.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: BTreeMap<(usize, &'static str, String), u64>,
    bins: [[u64; EDGES.len()]; 2],
    max: [usize; 2],
    /// Rows left out.
    pub omitted: Vec<Omitted>,
    /// Things to know.
    pub warnings: Vec<String>,
}

impl Tally {
    /// Count one record of mix `mix` (0 knowledge, 1 skills) of length `len`.
    pub fn add(&mut self, mix: usize, source: &'static str, leaf: &str, len: usize) {
        match self.counts.get_mut(&(mix, source, leaf.to_string())) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert((mix, source, leaf.to_string()), 1);
            }
        }
        self.max[mix] = self.max[mix].max(len);
        self.bins[mix][EDGES.iter().rposition(|&e| len >= e).unwrap_or(0)] += 1;
    }

    /// Add `other`'s counts to these (its omissions and warnings after these).
    pub fn merge(&mut self, other: Tally) {
        for (key, n) in other.counts {
            *self.counts.entry(key).or_default() += n;
        }
        for m in 0..2 {
            self.max[m] = self.max[m].max(other.max[m]);
            for (b, n) in self.bins[m].iter_mut().zip(other.bins[m]) {
                *b += n;
            }
        }
        self.omitted.extend(other.omitted);
        self.warnings.extend(other.warnings);
    }
}

/// A [`Tally`] as the parts index stores it (`crate::mix::parts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTally {
    counts: Vec<(usize, String, String, u64)>,
    bins: [[u64; EDGES.len()]; 2],
    max: [usize; 2],
    omitted: Vec<Omitted>,
    warnings: Vec<String>,
}

impl From<&Tally> for SavedTally {
    fn from(t: &Tally) -> SavedTally {
        SavedTally {
            counts: t.counts.iter().map(|((m, s, l), n)| (*m, s.to_string(), l.clone(), *n)).collect(),
            bins: t.bins,
            max: t.max,
            omitted: t.omitted.clone(),
            warnings: t.warnings.clone(),
        }
    }
}

impl SavedTally {
    /// The tally again; `None` when it names a mix or source this version does not have.
    pub fn restore(self) -> Option<Tally> {
        let mut counts = BTreeMap::new();
        for (m, source, leaf, n) in self.counts {
            let source = crate::mix::recipe::SourceSpec::NAMES.into_iter().find(|s| *s == source)?;
            (m < 2).then_some(())?;
            counts.insert((m, source, leaf), n);
        }
        Some(Tally { counts, bins: self.bins, max: self.max, omitted: self.omitted, warnings: self.warnings })
    }
}

const MIXES: [&str; 2] = ["knowledge", "skills"];

/// Everything a mix did.
#[derive(Debug, Clone, Serialize)]
pub struct MixReport {
    /// The recipe's name.
    pub recipe: String,
    /// The recipe's fingerprint.
    pub fingerprint: String,
    /// Its seed.
    pub seed: u64,
    /// The run folder read.
    pub run: String,
    /// Leaves read.
    pub leaves: usize,
    /// Records per mix.
    pub rows: BTreeMap<String, u64>,
    /// Records per mix and source.
    pub sources: Vec<CountRow>,
    /// Records per mix, source and leaf.
    pub counts: Vec<CountRow>,
    /// Rows left out per reason.
    pub omitted_by_reason: BTreeMap<String, u64>,
    /// Every row left out.
    pub omitted: Vec<Omitted>,
    /// Length histograms.
    pub lengths: Vec<Histogram>,
    /// Files written (the manifest aside).
    pub files: Vec<FileEntry>,
    /// Leaves whose records were taken unchanged from the previous mix in the folder.
    pub reused: usize,
    /// Things to know.
    pub warnings: Vec<String>,
    /// Wall time.
    pub wall_seconds: f64,
}

impl MixReport {
    /// The report of a finished mix.
    pub fn new(recipe: &Recipe, run: &str, leaves: usize, tally: Tally, measure: &Measure) -> MixReport {
        let mut omitted_by_reason = BTreeMap::new();
        for o in &tally.omitted {
            let key = o.reason.split(':').next().unwrap_or(&o.reason).to_string();
            *omitted_by_reason.entry(key).or_default() += 1;
        }
        let mut rows: BTreeMap<String, u64> = MIXES.iter().map(|m| (m.to_string(), 0)).collect();
        let mut sources: BTreeMap<(usize, &str), u64> = BTreeMap::new();
        let mut counts = Vec::new();
        for ((mix, source, leaf), n) in &tally.counts {
            *rows.entry(MIXES[*mix].to_string()).or_default() += n;
            *sources.entry((*mix, source)).or_default() += n;
            counts.push(CountRow { mix: MIXES[*mix].into(), source: source.to_string(), leaf: leaf.clone(), rows: *n });
        }
        let lengths = (0..2)
            .map(|m| Histogram {
                mix: MIXES[m].into(),
                unit: measure.unit().into(),
                bins: EDGES.iter().enumerate().map(|(i, &from)| (from, EDGES.get(i + 1).copied(), tally.bins[m][i])).collect(),
                max: tally.max[m],
            })
            .collect();
        MixReport {
            recipe: recipe.name.clone().unwrap_or_else(|| "recipe".into()),
            fingerprint: recipe.fingerprint(),
            seed: recipe.seed,
            run: run.to_string(),
            leaves,
            rows,
            sources: sources
                .into_iter()
                .map(|((m, source), rows)| CountRow { mix: MIXES[m].into(), source: source.into(), leaf: String::new(), rows })
                .collect(),
            counts,
            omitted_by_reason,
            omitted: tally.omitted,
            lengths,
            files: Vec::new(),
            reused: 0,
            warnings: tally.warnings,
            wall_seconds: 0.0,
        }
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Mix report: recipe `{}` (seed {}) over `{}`\n\n", self.recipe, self.seed, self.run);
        let _ = writeln!(s, "{} leaves read. Records: {}.\n", self.leaves, self.rows.iter().map(|(m, n)| format!("{m} {n}")).collect::<Vec<_>>().join(", "));
        s.push_str("## Records per source\n\n| mix | source | records |\n|---|---|---:|\n");
        for c in &self.sources {
            let _ = writeln!(s, "| {} | {} | {} |", c.mix, c.source, c.rows);
        }
        s.push_str("\n## Records per leaf\n\n| mix | source | leaf | records |\n|---|---|---|---:|\n");
        for c in &self.counts {
            let _ = writeln!(s, "| {} | {} | {} | {} |", c.mix, c.source, c.leaf, c.rows);
        }
        s.push_str("\n## Left out\n\n");
        if self.omitted_by_reason.is_empty() {
            s.push_str("Nothing.\n");
        } else {
            s.push_str("| reason | rows |\n|---|---:|\n");
            for (r, n) in &self.omitted_by_reason {
                let _ = writeln!(s, "| {r} | {n} |");
            }
            s.push_str("\nEvery row with its reason is in `mix_report.json` (`omitted`).\n");
        }
        for h in &self.lengths {
            let _ = writeln!(s, "\n## Length of `{}` records ({}, every turn; longest {})\n", h.mix, h.unit, h.max);
            s.push_str("| from | to | records |\n|---:|---:|---:|\n");
            for (from, to, n) in &h.bins {
                let _ = writeln!(s, "| {from} | {} | {n} |", to.map_or("∞".to_string(), |t| t.to_string()));
            }
        }
        s.push_str("\nChart: `mix_lengths.png` (one panel per mix, bars in the table's bins).\n");
        if !self.warnings.is_empty() {
            s.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(s, "- {w}");
            }
        }
        s
    }

    /// Write the report files, then the manifest listing every file of the mix.
    pub async fn write(&mut self, out: &Location) -> Result<(), MixError> {
        let md = self.markdown();
        let png = chart(&self.lengths).map_err(|e| MixError::Records(format!("mix_lengths.png: {e}")))?;
        let n = png.len();
        dataset::write_bytes(out, "mix_lengths.png", png).await?;
        self.files.push(FileEntry { path: "mix_lengths.png".into(), rows: 0, bytes: n as u64 });
        let n = md.len();
        dataset::write_bytes(out, "mix_report.md", md.into_bytes()).await?;
        self.files.push(FileEntry { path: "mix_report.md".into(), rows: 0, bytes: n as u64 });
        let bytes = dataset::write_json(out, "mix_report.json", self).await?;
        let mut files = self.files.clone();
        files.push(FileEntry { path: "mix_report.json".into(), rows: 0, bytes });
        let manifest = serde_json::json!({"recipe": self.recipe, "fingerprint": self.fingerprint, "seed": self.seed, "files": files});
        dataset::write_json(out, MIX_MANIFEST, &manifest).await?;
        Ok(())
    }
}

/// A bar chart per histogram, side by side, as PNG bytes: bars in the bins' order, heights
/// relative to each panel's largest bin; no text (the numbers are in the report's tables).
pub fn chart(hists: &[Histogram]) -> Result<Vec<u8>, png::EncodingError> {
    const PANEL_W: usize = 400;
    const H: usize = 240;
    const PAD: usize = 20;
    let width = PANEL_W * hists.len().max(1);
    let mut px = vec![255u8; width * H * 3];
    let colours = [[70u8, 110, 190], [210, 120, 50]];
    for (p, h) in hists.iter().enumerate() {
        let x0 = p * PANEL_W + PAD;
        let inner_w = PANEL_W - 2 * PAD;
        let base = H - PAD;
        let top = h.bins.iter().map(|b| b.2).max().unwrap_or(0).max(1);
        let bar_w = inner_w / h.bins.len().max(1);
        for (i, (_, _, n)) in h.bins.iter().enumerate() {
            let bar_h = (*n as usize * (H - 2 * PAD)) / top as usize;
            for y in base.saturating_sub(bar_h)..base {
                for x in x0 + i * bar_w + 2..x0 + (i + 1) * bar_w - 2 {
                    px[(y * width + x) * 3..(y * width + x) * 3 + 3].copy_from_slice(&colours[p % colours.len()]);
                }
            }
        }
        for x in x0..x0 + inner_w {
            px[(base * width + x) * 3..(base * width + x) * 3 + 3].copy_from_slice(&[60, 60, 60]);
        }
    }
    rgb_png(width, H, &px)
}

/// PNG bytes of an 8-bit RGB image, `px` row-major (`width · height · 3` bytes).
pub fn rgb_png(width: usize, height: usize, px: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(px)?;
    }
    Ok(out)
}
