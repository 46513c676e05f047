//! Helpers of the end-to-end suite (being built).
