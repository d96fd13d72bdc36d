//! The KeyFile reader. No input may panic it; whatever it accepts must be written back as the
//! same records sorted by kvno in the compact layout (4 + 12 n bytes, what followed them in the
//! input being zero padding), and the written bytes must re-read as the same set and re-write
//! to the same bytes.
#![no_main]

use afskeys::format::{read_keyfile, write_keyfile};
use afskeys::keys::{KeyType, MAX_RXKAD_KEYS};
use libfuzzer_sys::fuzz_target;

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(set) = read_keyfile(data) else {
        return;
    };
    let n = set.len();
    assert!(n <= MAX_RXKAD_KEYS);
    assert!(set.iter().all(|k| k.key_type() == KeyType::Rxkad));
    assert_eq!(
        be32(data) as usize,
        n,
        "the count must be the number of keys read"
    );

    let out = write_keyfile(&set);
    assert_eq!(out.len(), 4 + 12 * n);
    assert_eq!(&out[..4], &data[..4]);
    // Differential: the input's records, sorted by kvno, are the output's records.
    let mut recs: Vec<&[u8]> = data[4..4 + 12 * n].chunks(12).collect();
    recs.sort_by_key(|r| be32(r));
    assert_eq!(out[4..], recs.concat()[..]);
    assert!(
        data[4 + 12 * n..].iter().all(|&b| b == 0),
        "trailing bytes accepted"
    );

    let back = read_keyfile(&out).expect("a written KeyFile must re-read");
    assert_eq!(back, set);
    assert_eq!(write_keyfile(&back), out, "written bytes must be stable");
});
