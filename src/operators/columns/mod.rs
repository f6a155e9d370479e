//! Column operators: steps that reshape rows without judging them — `combine`, `duplicate`,
//! `rename`, `select`, `drop`, `flatten` (wide to long), `majority` (set to the majority value)
//! and `template` (a column rendered from the others). One verb per file; each is its own `op:`.

pub mod combine;
pub mod drop;
pub mod duplicate;
pub mod flatten;
pub mod majority;
pub mod rename;
pub mod select;
pub mod template;
