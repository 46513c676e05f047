//! eKyte simulator (filled in by the eKyte sandbox work).
