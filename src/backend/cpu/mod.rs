//! CPU ops, one per file. Each is the plainly-correct reference that faster paths (blocked,
//! quantised, CUDA) are tested against; where a file also has a fast path (`matmul`), the slow
//! reference sits beside it and a test compares them.

pub mod adamw;
pub mod attention;
pub mod attention_packed;
pub mod bands;
pub mod cross_entropy;
pub mod dequant;
mod device;
pub mod matmul;
pub mod matvec;
pub mod qmatmul;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod team;

pub use device::Cpu;
