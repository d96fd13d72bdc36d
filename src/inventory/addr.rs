//! Addresses: a configured host name resolved (the system resolver, with a deadline: a
//! resolver that never answers must not hang a command), and the control machine's own
//! interface addresses (`getifaddrs`), which make it the machine a CellServDB line or VLDB
//! entry with one of them is.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every name's addresses (an address is itself; a name that does not resolve in time has
/// none). Names are resolved at once, each on a thread of its own, all within `deadline`.
pub fn resolve_all(names: &[String], deadline: Duration) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out = BTreeMap::new();
    let (tx, rx) = mpsc::channel();
    let mut waiting = 0;
    for n in names {
        if out.contains_key(n) {
            continue;
        }
        if let Ok(a) = n.parse::<IpAddr>() {
            out.insert(n.clone(), vec![a]);
            continue;
        }
        out.insert(n.clone(), vec![]);
        let (tx, n) = (tx.clone(), n.clone());
        waiting += 1;
        // A thread left waiting on the resolver past the deadline ends with the process.
        std::thread::spawn(move || {
            let addrs: Vec<IpAddr> = (n.as_str(), 0)
                .to_socket_addrs()
                .map(|it| it.map(|s| s.ip()).collect())
                .unwrap_or_default();
            let _ = tx.send((n, addrs));
        });
    }
    let end = Instant::now() + deadline;
    while waiting > 0 {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((n, addrs)) => {
                out.insert(n, addrs);
                waiting -= 1;
            }
            Err(_) => break,
        }
    }
    out
}

/// This machine's interface addresses (loopback included).
pub fn local_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match (*a).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_themselves_and_loopback_is_local() {
        let m = resolve_all(
            &[
                "127.0.0.1".into(),
                "localhost".into(),
                "no-such-host.invalid".into(),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(m["127.0.0.1"], vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(m["localhost"].iter().any(|a| a.is_loopback()));
        assert!(m["no-such-host.invalid"].is_empty());
        assert!(local_addrs().contains(&"127.0.0.1".parse().unwrap()));
    }
}
