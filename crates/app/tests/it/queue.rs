//! Queue tests (being built).
