//! Integration tests of the simulators, over real HTTP on loopback.

mod ekyte;
mod ghl;
