//! GHL simulator tests.
