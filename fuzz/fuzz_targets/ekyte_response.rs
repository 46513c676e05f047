//! The eKyte adapter's reading of any answer on any surface (byte 0 picks the surface,
//! byte 1 the status and whether it is an event stream): never panics, and no text it takes
//! from an answer into an error or a refusal (which reach logs and dead letters) carries the
//! request's secret, whatever the answer echoes.
#![no_main]

use ekyte::fuzzing::{Read, Surface, leaks_secret, read};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 201, 400, 401, 403, 404, 409, 422];

fuzz_target!(|data: &[u8]| {
    let [surface, meta, body @ ..] = data else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let surface = Surface::from_byte(*surface);
    let status = STATUSES[usize::from(meta & 7)];
    let sse = meta & 8 != 0;
    let kept = match read(surface, status, sse, body) {
        // A record's own fields may hold any text, the secret's too: that is data, not a leak.
        Ok(Read::Refused(text)) => text,
        Ok(other) => {
            let _ = format!("{other:?}");
            return;
        }
        Err(e) => format!("{e} {e:?} {:#}", anyhow::anyhow!(e.to_string())),
    };
    assert!(
        !leaks_secret(&kept),
        "the secret survived into an error or refusal: {kept}"
    );
});
