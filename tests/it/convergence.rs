//! Convergence (being built).
