//! The ticket proof's parsing glue: a credential cache (`afskeys::authdb::ccache`), then each
//! credential's ticket decoded (`decode_ticket`, picky-krb's DER) and tried with a key of the
//! right length. No input may panic them; a ticket that decodes names a kvno >= 0 and one of
//! the enctypes afskeys opens, and a key made of the input's bytes never panics the opening.
#![no_main]

use afskeys::authdb::ccache;
use afskeys::authdb::ticket::decode_ticket;
use afskeys::authdb::ticket::Opening;
use libfuzzer_sys::fuzz_target;

fn try_ticket(der: &[u8], end: u32) {
    let Ok(t) = decode_ticket(der, end) else {
        return;
    };
    assert!(t.kvno >= 0);
    assert!(matches!(t.enctype, 16..=18), "enctype {}", t.enctype);
    assert_eq!(t.end_time, end);
    assert_eq!(t.open(&[]), Opening::NoKey);
    for len in [0, 16, 24, 32, 33] {
        let key: Vec<u8> = der.iter().copied().cycle().take(len).collect();
        let _ = t.opens_with(&key);
    }
}

fuzz_target!(|data: &[u8]| {
    match ccache::parse(data) {
        Ok(creds) => {
            for c in &creds {
                assert!(!c.server.ends_with("@X-CACHECONF:"));
                try_ticket(&c.ticket, c.end_time);
            }
        }
        Err(_) => try_ticket(data, 0),
    }
});
