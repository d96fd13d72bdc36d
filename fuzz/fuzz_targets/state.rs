//! The rotation journal/state parser. No input may panic it; every error names the file; an
//! accepted state is version 1 with decodable journal keys, and what `StateFile::save` would
//! write for it (pretty JSON) parses back and re-serializes to the same bytes.
#![no_main]

use afskeys::journal::State;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const PATH: &str = "/nonexistent/afskeys-state.json";

fuzz_target!(|data: &[u8]| {
    let path = Path::new(PATH);
    let s = match State::parse(data, path) {
        Ok(s) => s,
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with(PATH), "error does not name the file: {e}");
            return;
        }
    };
    assert_eq!(s.version, 1);
    if let Some(r) = &s.rotation {
        r.keys()
            .expect("journal keys of an accepted state must decode");
    }
    let out = serde_json::to_vec_pretty(&s).unwrap();
    let back = State::parse(&out, path).unwrap_or_else(|e| {
        panic!(
            "saved state does not re-parse: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(
        serde_json::to_vec_pretty(&back).unwrap(),
        out,
        "state bytes must be stable"
    );
});
