//! Tensors and ops per device. `cpu/` holds the plainly-correct reference of every op (and, later,
//! its fast CPU twin); a `cuda/` room will hold the GPU launchers behind the `cuda` feature. The
//! model room ([`crate::model`]) builds its forward pass from these ops and never knows which
//! device runs them.

pub mod cpu;
mod dtype;

pub use dtype::GgmlType;
