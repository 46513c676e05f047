//! GHL simulator (filled in by the GHL sandbox work).
