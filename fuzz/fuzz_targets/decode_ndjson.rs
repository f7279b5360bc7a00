//! An NDJSON body: any bytes are batches or an error, within bounded memory.
#![no_main]

use dataforge_domain::records::{BatchDecoder, BodyFormat, ReadOptions};
use dataforge_formats::Formats;
use dataforge_fuzz::{WELL_PRODUCTION, panics_unwind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    panics_unwind();
    let mut body = data;
    let _ = Formats.decode(
        BodyFormat::named("ndjson"),
        &ReadOptions::default(),
        &WELL_PRODUCTION,
        &mut body,
        1024,
        &mut |_| Ok(()),
    );
});
