//! The afskeys.toml parser, fed the input as (lossily decoded) UTF-8 text. No input may panic
//! it; every error is a parse error naming the file; an accepted config satisfies what
//! `validate` promises.
#![no_main]

use afskeys::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::path::Path;

const PATH: &str = "/nonexistent/afskeys.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = match Config::parse(&text, Path::new(PATH)) {
        Ok(c) => c,
        Err(e @ ConfigError::Parse { .. }) => {
            assert!(
                e.to_string().starts_with(PATH),
                "error does not name the file: {e}"
            );
            return;
        }
        Err(e) => panic!("parse failed with a non-Parse error: {e}"),
    };
    assert!(!c.token_lifetime.is_zero());
    assert!(!c.rotation_interval.is_zero());
    assert!(c.ssh.parallel >= 1);
    let mut names = BTreeSet::new();
    for s in &c.servers {
        assert!(!s.name.is_empty());
        assert!(
            names.insert(s.name.as_str()),
            "duplicate server {:?}",
            s.name
        );
    }
});
