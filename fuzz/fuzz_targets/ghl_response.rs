//! The GHL adapter's reading of any answer body on any route (byte 0 picks the route, an
//! error status included): never panics, and what it accepts maps to port types.
#![no_main]

use ghl::fuzzing::{Route, read};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let route = Route::from_byte(route);
    match read(route, body) {
        Ok(read) => {
            let _ = format!("{read:?}");
        }
        Err(e) => {
            // Errors are rendered in logs and dead letters: that must not panic either.
            let _ = e.to_string();
            let _ = format!("{e:?}");
        }
    }
});
