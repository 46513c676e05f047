//! In-process broker (being built).
