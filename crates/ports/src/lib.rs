//! The ports of the hexagon: the traits the sync core needs, each with the error cases an
//! adapter must return (see each module's doc), and the message envelope.
//!
//! Adapters (`ghl`, `ekyte`, `store`, the queues in `app`) implement these traits; the engine
//! is generic over them. With the `mocks` feature, every trait has a `mockall` mock
//! (`MockGhlApi`, `MockLinkStore`, …) for pinning the engine's decisions in tests.

pub mod clock;
pub mod ekyte;
pub mod error;
pub mod failure;
pub mod ghl;
pub mod queue;
pub mod scope;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use error::{ApiError, BoxError, Classify, Disposition, QueueError, StoreError};
pub use scope::{CallMeter, Priority, Scope};
