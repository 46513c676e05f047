//! `ghl::webhook::parse_event` on any bytes: never panics; what it accepts is a complete
//! event (the ids the engine needs) with a non-empty webhook id, and a location event's
//! location or a company event's company is non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ports::ghl::Webhook;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ghl::webhook::parse_event(data) {
        assert!(!event.webhook_id().trim().is_empty());
        let _ = event.type_name();
        match event {
            Webhook::Location(e) => {
                assert!(!e.location.as_str().is_empty());
                let _ = e.kind.contact();
            }
            Webhook::Company(e) => assert!(!e.company_id.trim().is_empty()),
        }
    }
});
