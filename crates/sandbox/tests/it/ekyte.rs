//! eKyte simulator tests.
