//! Tensors and ops per device. `cpu/` holds the plainly-correct reference of every op and its
//! fast CPU twin; a `cuda/` room will hold the GPU launchers behind the `cuda` feature. The
//! model room ([`crate::model`]) builds its passes from these ops and never knows which device
//! runs them.
//!
//! The trainer's passes ([`crate::model::grad`]) are written against [`Backend`]: buffers live on
//! the device (`Backend::Buf`), token ids and sequence lengths are host data, and every op a
//! forward or backward pass needs is one method. [`cpu::Cpu`] implements it with the fast CPU
//! ops; the CUDA backend will implement the same trait over device memory.

pub mod cpu;
mod dtype;

pub use dtype::GgmlType;

pub use cpu::adamw::AdamW;
pub use cpu::attention::AttnShape;
pub use cpu::rope::RopeStyle;

/// Rope settings of one model, for [`Backend::rope`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Head size `D`.
    pub head_dim: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// Base frequency.
    pub base: f32,
    /// Which dimensions rotate together.
    pub style: RopeStyle,
}

/// The ops of a training step, on one device. Shapes are in each op's documentation in
/// [`cpu`]; every matrix is row-major, every weight `[out, in]`.
#[allow(clippy::too_many_arguments)]
pub trait Backend: Send + Sync {
    /// A device buffer of f32.
    type Buf: Send + Sync;

    /// A name for reports (`cpu`, `cuda:0`).
    fn name(&self) -> String;
    /// Runs `f` where this backend's threads are (the CPU's pool); ops must be called inside.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R;

    /// `n` zeros.
    fn zeros(&self, n: usize) -> Self::Buf;
    /// Hands a buffer back for a later [`Backend::zeros`] to reuse (a pass allocates the same
    /// shapes every step; reusing them saves the page faults of fresh memory). Default: dropped.
    fn recycle(&self, buf: Self::Buf) {
        drop(buf);
    }
    /// A copy of host data.
    fn upload(&self, data: &[f32]) -> Self::Buf;
    /// The buffer's contents, on the host.
    fn download(&self, buf: &Self::Buf) -> Vec<f32>;
    /// Its length in elements.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Sets every element to 0.
    fn zero(&self, buf: &mut Self::Buf);
    /// `dst ← src`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf);
    /// `dst += src`.
    fn add_assign(&self, dst: &mut Self::Buf, src: &Self::Buf);

    /// Rows `tokens[t]` of `table: [V, C]` into `out: [T, C]`.
    fn embed(&self, table: &Self::Buf, tokens: &[u32], out: &mut Self::Buf);
    /// `dtable[tokens[t]] += dout[t]`.
    fn embed_backward(&self, dout: &Self::Buf, tokens: &[u32], dtable: &mut Self::Buf);
    /// `y = x · Wᵀ` (`x: [T, K]`).
    fn matmul_wt(&self, x: &Self::Buf, w: &Self::Buf, y: &mut Self::Buf, k: usize);
    /// `dx (+)= dy · W` (`dy: [T, N]`).
    fn matmul_nn(&self, dy: &Self::Buf, w: &Self::Buf, dx: &mut Self::Buf, n: usize, accumulate: bool);
    /// `dW += dyᵀ · x` (`x: [T, K]`).
    fn matmul_tn_acc(&self, dy: &Self::Buf, x: &Self::Buf, dw: &mut Self::Buf, k: usize);
    /// `x[t] += b` for every row.
    fn add_rows(&self, x: &mut Self::Buf, b: &Self::Buf);
    /// `db += Σ_t dy[t]`.
    fn sum_rows_acc(&self, dy: &Self::Buf, db: &mut Self::Buf);
    /// RMSNorm forward, keeping each row's reciprocal RMS.
    fn rmsnorm(&self, x: &Self::Buf, w: &Self::Buf, eps: f32, y: &mut Self::Buf, rstd: &mut Self::Buf);
    /// RMSNorm backward: adds to `dx` and `dw`.
    fn rmsnorm_backward(&self, x: &Self::Buf, w: &Self::Buf, rstd: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf, dw: &mut Self::Buf);
    /// Rotates `x: [T, heads, D]` in place, positions restarting per sequence; `inverse` for the
    /// backward pass.
    fn rope(&self, x: &mut Self::Buf, heads: usize, seq_lens: &[usize], rope: Rope, inverse: bool);
    /// Packed causal attention forward.
    fn attention(&self, q: &Self::Buf, k: &Self::Buf, v: &Self::Buf, seq_lens: &[usize], shape: AttnShape, o: &mut Self::Buf, lse: &mut Self::Buf);
    /// Packed causal attention backward (overwrites `dq, dk, dv`).
    fn attention_backward(
        &self,
        saved: [&Self::Buf; 5],
        dout: &Self::Buf,
        seq_lens: &[usize],
        shape: AttnShape,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
    );
    /// `h = silu(gate) ⊙ up`.
    fn swiglu(&self, gate: &Self::Buf, up: &Self::Buf, h: &mut Self::Buf);
    /// SwiGLU backward (overwrites `dgate, dup`).
    fn swiglu_backward(&self, gate: &Self::Buf, up: &Self::Buf, dh: &Self::Buf, dgate: &mut Self::Buf, dup: &mut Self::Buf);
    /// The LM head and cross-entropy: per-row losses (host), and with `grads = Some((dh, dw,
    /// scale))` the gradients of `scale · Σ loss` (`dh` overwritten, `dw` added to).
    fn head_cross_entropy(&self, h: &Self::Buf, w: &Self::Buf, targets: &[u32], grads: Option<(&mut Self::Buf, &mut Self::Buf, f32)>) -> Vec<f32>;
    /// `Σ x²` in f64.
    fn sum_squares(&self, x: &Self::Buf) -> f64;
    /// One AdamW step on `p` with gradient `grad_scale · g`.
    fn adamw(&self, p: &mut Self::Buf, g: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf, h: AdamW, step: u64, grad_scale: f32);
}
