//! A schema file: any text is a catalog or a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = dataforge_schema_toml::parse_catalog(&[("fuzz.toml".to_owned(), text)]);
});
