//! The kadmin output parsers: MIT's `getprinc -terse` record and Heimdal's `get` record, as
//! the KDC backends read them (local and through kadmind). No input may panic them; what they
//! accept is a record whose keys have the kvnos it lists, and Heimdal's enctype names map back
//! to their numbers.
#![no_main]

use afskeys::authdb::getprinc::parse_terse;
use afskeys::authdb::heimdal_get::{enctype_number, parse_get, parse_life};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(info)) = parse_terse(text) {
        let held = info.kvnos_held();
        assert!(held.windows(2).all(|w| w[0] > w[1]), "kvnos_held sorted, distinct");
        for k in &info.keys {
            assert!(held.contains(&k.kvno));
        }
        let _ = info.changed();
        assert!(info.max_life >= 0, "a life is never negative");
    }
    if let Ok(info) = parse_get(text) {
        assert!(info.max_life >= 0, "a life is never negative");
        for k in &info.keys {
            assert!(info.kvnos_held().contains(&k.kvno));
        }
    }
    if let Ok(secs) = parse_life(text) {
        assert!(secs >= 0);
    }
    let _ = enctype_number(text);
});
