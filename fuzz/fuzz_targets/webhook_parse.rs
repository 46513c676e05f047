//! `ghl::webhook::parse_event` on any bytes: never panics; what it accepts is a complete
//! event (the ids the engine needs) whose location and webhook id are non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ghl::webhook::parse_event(data) {
        assert!(!event.webhook_id.trim().is_empty());
        assert!(!event.location.as_str().is_empty());
        let _ = event.kind.type_name();
        let _ = event.kind.contact();
    }
});
