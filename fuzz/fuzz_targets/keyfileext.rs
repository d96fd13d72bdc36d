//! The KeyFileExt reader. No input may panic it; whatever it accepts must be written back (meta
//! length 16, sorted by type, kvno, subtype) to bytes that re-read as the same set and re-write
//! to the same bytes.
#![no_main]

use afskeys::format::{read_keyfile, read_keyfileext, write_keyfile, write_keyfileext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(set) = read_keyfileext(data) else {
        return;
    };
    assert!(set.iter().all(|k| k.key_type().is_typed()));
    let count = i32::from_be_bytes(data[..4].try_into().unwrap());
    assert_eq!(
        count as usize,
        set.len(),
        "the count must be the number of keys read"
    );
    assert!(set.iter().all(|k| k.kvno() >= 0));

    let out = write_keyfileext(&set);
    let want = 4 + set.iter().map(|k| 20 + k.bytes().len()).sum::<usize>();
    assert_eq!(out.len(), want);
    // Meta lengths are at least 16 and trailing bytes are dropped: never longer than the input.
    assert!(out.len() <= data.len());

    let back = read_keyfileext(&out).expect("a written KeyFileExt must re-read");
    assert_eq!(back, set);
    assert_eq!(
        *write_keyfileext(&back),
        *out,
        "written bytes must be stable"
    );
    // Typed keys never leak into the KeyFile.
    let kf = write_keyfile(&set);
    assert_eq!(kf, [0, 0, 0, 0]);
    assert!(read_keyfile(&kf).unwrap().is_empty());
});
