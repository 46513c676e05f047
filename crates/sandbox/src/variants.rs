//! Which reading of the documents' silences the simulators play by default.
//!
//! Where the vendors' documents do not say how something behaves, each simulator has a
//! switch for it (docs/fidelity.md lists them), and its default is the pessimistic reading:
//! the one that breaks a careless client. `SANDBOX_VARIANTS=flipped` turns every such default
//! the other way, so that a suite run twice (`.ci/run` does) shows the adapters survive both
//! readings. A switch a test sets itself keeps its value.

/// The set of readings the defaults take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variants {
    /// Every silence read the way that breaks a careless client (the default).
    Pessimistic,
    /// Every switch the other way.
    Flipped,
}

impl Variants {
    /// From `SANDBOX_VARIANTS` (`pessimistic`, the default, or `flipped`). Any other value is
    /// a mistake in the environment, and stops the simulator rather than run a reading
    /// nobody asked for.
    pub fn from_env() -> Self {
        match std::env::var("SANDBOX_VARIANTS") {
            Err(std::env::VarError::NotPresent) => Self::Pessimistic,
            Ok(v) if v.is_empty() || v == "pessimistic" => Self::Pessimistic,
            Ok(v) if v == "flipped" => Self::Flipped,
            Ok(v) => panic!("SANDBOX_VARIANTS must be pessimistic or flipped, not {v:?}"),
            Err(e) => panic!("SANDBOX_VARIANTS is not readable: {e}"),
        }
    }

    pub fn flipped(self) -> bool {
        self == Self::Flipped
    }
}
