//! Property tests of the key file formats: generated valid key sets survive
//! write → read unchanged, written bytes are stable and canonical, every strict prefix of a
//! written file is refused, and no byte string panics a reader (a cheap, non-coverage-guided
//! fuzz that runs with the normal test suite; the coverage-guided fuzzers are in fuzz/, see
//! docs/fuzzing.md).

use afskeys::authdb::file::FileAuthDb;
use afskeys::config::Config;
use afskeys::format::{read_keyfile, read_keyfileext, write_keyfile, write_keyfileext};
use afskeys::journal::State;
use afskeys::keys::{Enctype, Key, KeyId, KeySet, KeyType};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// The DES weak and semi-weak keys (and the all-zero key): a KeyFile must carry them as is.
const WEAK: [[u8; 8]; 17] = [
    [0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01],
    [0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe],
    [0xe0, 0xe0, 0xe0, 0xe0, 0xf1, 0xf1, 0xf1, 0xf1],
    [0x1f, 0x1f, 0x1f, 0x1f, 0x0e, 0x0e, 0x0e, 0x0e],
    [0x01, 0xfe, 0x01, 0xfe, 0x01, 0xfe, 0x01, 0xfe],
    [0xfe, 0x01, 0xfe, 0x01, 0xfe, 0x01, 0xfe, 0x01],
    [0x1f, 0xe0, 0x1f, 0xe0, 0x0e, 0xf1, 0x0e, 0xf1],
    [0xe0, 0x1f, 0xe0, 0x1f, 0xf1, 0x0e, 0xf1, 0x0e],
    [0x01, 0xe0, 0x01, 0xe0, 0x01, 0xf1, 0x01, 0xf1],
    [0xe0, 0x01, 0xe0, 0x01, 0xf1, 0x01, 0xf1, 0x01],
    [0x1f, 0xfe, 0x1f, 0xfe, 0x0e, 0xfe, 0x0e, 0xfe],
    [0xfe, 0x1f, 0xfe, 0x1f, 0xfe, 0x0e, 0xfe, 0x0e],
    [0x01, 0x1f, 0x01, 0x1f, 0x01, 0x0e, 0x01, 0x0e],
    [0x1f, 0x01, 0x1f, 0x01, 0x0e, 0x01, 0x0e, 0x01],
    [0xe0, 0xfe, 0xe0, 0xfe, 0xf1, 0xfe, 0xf1, 0xfe],
    [0xfe, 0xe0, 0xfe, 0xe0, 0xfe, 0xf1, 0xfe, 0xf1],
    [0x00; 8],
];

fn des_key() -> impl Strategy<Value = [u8; 8]> {
    prop_oneof![any::<[u8; 8]>(), select(&WEAK[..])]
}

/// 0–8 rxkad keys with distinct kvnos in 0–255.
fn rxkad_keys() -> impl Strategy<Value = Vec<Key>> {
    btree_map(0..=255i32, des_key(), 0..=8).prop_map(|m| {
        m.into_iter()
            .map(|(kvno, k)| Key::rxkad(kvno, &k))
            .collect()
    })
}

/// (enctype, key bytes): 17 and 18 with their lengths, or an enctype afskeys does not know
/// with a key of any length.
fn enctype_and_bytes() -> impl Strategy<Value = (i32, Vec<u8>)> {
    prop_oneof![
        vec(any::<u8>(), 16).prop_map(|b| (17, b)),
        vec(any::<u8>(), 32).prop_map(|b| (18, b)),
        (
            any::<i32>().prop_filter("unknown enctype", |&e| Enctype(e).key_len().is_none()),
            vec(any::<u8>(), 0..48)
        ),
    ]
}

/// 0–8 typed keys (rxkad_krb5 and rxgk), kvnos ≥ 0, distinct ids.
fn typed_keys() -> impl Strategy<Value = Vec<Key>> {
    let one = (
        prop_oneof![Just(KeyType::RxkadKrb5), Just(KeyType::Rxgk)],
        prop_oneof![0..8i32, 0..=i32::MAX],
        enctype_and_bytes(),
    );
    vec(one, 0..=8).prop_map(|v| {
        let by_id: BTreeMap<KeyId, Vec<u8>> = v
            .into_iter()
            .map(|(key_type, kvno, (subtype, bytes))| {
                let id = KeyId {
                    key_type,
                    kvno,
                    subtype,
                };
                (id, bytes)
            })
            .collect();
        by_id
            .into_iter()
            .map(|(id, b)| Key::new(id, Zeroizing::new(b)))
            .collect()
    })
}

fn set_of(keys: impl IntoIterator<Item = Key>) -> KeySet {
    let mut s = KeySet::new();
    for k in keys {
        s.insert(k).expect("generated keys are valid and distinct");
    }
    s
}

/// A valid key set of both kinds.
fn key_set() -> impl Strategy<Value = KeySet> {
    (rxkad_keys(), typed_keys()).prop_map(|(r, t)| set_of(r.into_iter().chain(t)))
}

fn only(set: &KeySet, typed: bool) -> KeySet {
    set_of(
        set.iter()
            .filter(|k| k.key_type().is_typed() == typed)
            .cloned(),
    )
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

/// What the fuzz targets check on any input a reader accepts: writing the set and reading it
/// again gives the same set, and the written bytes are stable.
fn check_accepted_keyfile(data: &[u8]) {
    if let Ok(set) = read_keyfile(data) {
        let out = write_keyfile(&set);
        assert_eq!(out.len(), 4 + 12 * set.len());
        let back = read_keyfile(&out).expect("written KeyFile re-reads");
        assert_eq!(back, set);
        assert_eq!(write_keyfile(&back), out);
    }
}

fn check_accepted_keyfileext(data: &[u8]) {
    if let Ok(set) = read_keyfileext(data) {
        let out = write_keyfileext(&set);
        let back = read_keyfileext(&out).expect("written KeyFileExt re-reads");
        assert_eq!(back, set);
        assert_eq!(*write_keyfileext(&back), *out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keyfile_write_then_read_is_the_rxkad_keys(set in key_set()) {
        let want = only(&set, false);
        let b = write_keyfile(&set);
        let n = want.len();
        prop_assert_eq!(b.len(), 4 + 12 * n);
        prop_assert_eq!(be32(&b) as usize, n);
        let kvnos: Vec<i32> = b[4..].chunks(12).map(be32).collect();
        prop_assert!(kvnos.windows(2).all(|w| w[0] < w[1]), "not sorted by kvno: {:?}", kvnos);
        let back = read_keyfile(&b).unwrap();
        prop_assert_eq!(&back, &want);
        prop_assert_eq!(write_keyfile(&back), b);
    }

    #[test]
    fn keyfileext_write_then_read_is_the_typed_keys(set in key_set()) {
        let want = only(&set, true);
        let b = write_keyfileext(&set);
        prop_assert_eq!(be32(&b) as usize, want.len());
        let size: usize = want.iter().map(|k| 20 + k.bytes().len()).sum();
        prop_assert_eq!(b.len(), 4 + size);
        let back = read_keyfileext(&b).unwrap();
        prop_assert_eq!(&back, &want);
        prop_assert_eq!(&*write_keyfileext(&back), &*b);
    }

    #[test]
    fn the_two_files_together_give_back_the_set(set in key_set()) {
        let kf = read_keyfile(&write_keyfile(&set)).unwrap();
        let kx = read_keyfileext(&write_keyfileext(&set)).unwrap();
        let back = set_of(kf.iter().chain(kx.iter()).cloned());
        prop_assert_eq!(back, set);
    }

    #[test]
    fn every_strict_prefix_of_a_written_file_is_refused(set in key_set()) {
        let kf = write_keyfile(&set);
        for cut in 0..kf.len() {
            prop_assert!(read_keyfile(&kf[..cut]).is_err(), "KeyFile cut at {} of {} read", cut, kf.len());
        }
        let kx = write_keyfileext(&set);
        for cut in 0..kx.len() {
            prop_assert!(read_keyfileext(&kx[..cut]).is_err(), "KeyFileExt cut at {} of {} read", cut, kx.len());
        }
    }

    #[test]
    fn zero_padding_is_read_and_other_trailing_bytes_are_refused(
        set in key_set(), pad in 1usize..100, junk in 1u8..=255,
    ) {
        let mut kf = write_keyfile(&set);
        let mut kx = write_keyfileext(&set).to_vec();
        kf.resize(kf.len() + pad, 0);
        kx.resize(kx.len() + pad, 0);
        prop_assert_eq!(read_keyfile(&kf).unwrap(), only(&set, false));
        prop_assert_eq!(read_keyfileext(&kx).unwrap(), only(&set, true));
        *kf.last_mut().unwrap() = junk;
        *kx.last_mut().unwrap() = junk;
        prop_assert!(read_keyfile(&kf).is_err());
        prop_assert!(read_keyfileext(&kx).is_err());
    }
}

/// A written file with a few bytes overwritten: reaches deeper than random bytes.
fn mutated(file: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    let mut f = file;
    for &(at, v) in edits {
        if !f.is_empty() {
            let i = at % f.len();
            f[i] = v;
        }
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic_the_key_file_readers(data in vec(any::<u8>(), 0..256)) {
        check_accepted_keyfile(&data);
        check_accepted_keyfileext(&data);
    }

    #[test]
    fn damaged_written_files_never_panic_the_readers(
        set in key_set(), edits in vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        check_accepted_keyfile(&mutated(write_keyfile(&set), &edits));
        check_accepted_keyfileext(&mutated(write_keyfileext(&set).to_vec(), &edits));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_other_parsers(data in vec(any::<u8>(), 0..256)) {
        let _ = FileAuthDb::new("/x/afskeys-authdb.json", "afs").parse(&data);
        let _ = State::parse(&data, Path::new("/x/afskeys-state.json"));
        let _ = Config::parse(&String::from_utf8_lossy(&data), Path::new("/x/afskeys.toml"));
    }

    #[test]
    fn arbitrary_text_never_panics_the_config_parser(text in "[\\[\\]a-z_=\"{},.0-9 \n#']{0,120}") {
        let _ = Config::parse(&text, Path::new("/x/afskeys.toml"));
    }
}

#[test]
fn weak_and_kvno_edge_keys_round_trip() {
    let set = set_of(
        WEAK[..8]
            .iter()
            .zip([0, 1, 127, 128, 200, 253, 254, 255])
            .map(|(k, kvno)| Key::rxkad(kvno, k)),
    );
    let b = write_keyfile(&set);
    assert_eq!(b.len(), 4 + 12 * 8);
    assert_eq!(read_keyfile(&b).unwrap(), set);
}
