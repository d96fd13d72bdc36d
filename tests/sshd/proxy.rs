//! A delaying TCP proxy for the latency bench: it listens on a free loopback port, and for
//! every connection opens one to the upstream port and forwards each chunk it reads, in
//! either direction, `delay` after it arrived (chunks keep their order; a chunk read while
//! earlier ones wait is not delayed further by them). Two proxies' worth of delay per
//! exchange: a round trip through it costs `2 × delay` more than on loopback.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running proxy; its threads live as long as the test process (they are few and idle).
pub struct DelayProxy {
    pub port: u16,
}

impl DelayProxy {
    /// Forward 127.0.0.1:`port` (returned) to 127.0.0.1:`upstream`, each way `delay` late.
    pub fn start(upstream: u16, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    delay,
                );
                pipe(server, client, delay);
            }
        });
        DelayProxy { port }
    }
}

/// Forward `from` to `to`, every chunk `delay` after it was read; EOF is forwarded the same.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            // An empty chunk is the end of the stream.
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if chunk.is_empty() || to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
