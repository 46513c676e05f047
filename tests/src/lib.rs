//! Helpers shared by the end-to-end suite, the chaos suite and the benchmarks.
pub mod bench;
pub mod chaos;
pub mod security;
pub mod support;
