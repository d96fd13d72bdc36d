//! The SFTP reply parser (what an SSH server sends the client in `fleet/ssh/`). No input may
//! panic it, and it never reads past the length the packet announces (bytes after it change
//! nothing). An accepted reply carries the packet's request id, holds no more bytes than the
//! packet, prints without its file bytes, and is in the parser's normal form after one round
//! trip: encoded again it parses back to itself.
#![no_main]

use afskeys::fleet::ssh::wire::{encode_reply, parse_reply_packet, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((id, reply)) = parse_reply_packet(data) else {
        return;
    };
    let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
    assert!(data.len() >= 4 + len, "read past the packet");
    assert_eq!(id, u32::from_be_bytes(data[5..9].try_into().unwrap()));
    let mut longer = data[..4 + len].to_vec();
    longer.extend_from_slice(b"\x00\x00\x00\x05\x65trailing");
    let (id2, again) = parse_reply_packet(&longer).expect("bytes after the packet matter");
    assert!(id2 == id && again == reply, "bytes after the packet matter");

    let shown = format!("{reply:?}");
    match &reply {
        Reply::Data(d) | Reply::Handle(d) => {
            assert!(d.len() <= len);
            assert!(shown.ends_with(&format!("({} bytes)", d.len())), "{shown}");
        }
        Reply::Name(v) => assert!(v.len() <= len / 8),
        _ => {}
    }

    let out = encode_reply(id, &reply);
    let (id3, back) = parse_reply_packet(&out).expect("an encoded reply must parse");
    assert!(id3 == id && back == reply, "round trip changed the reply: {shown}");
    assert_eq!(encode_reply(id3, &back), out, "encoding is not stable");
});
