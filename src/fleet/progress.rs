//! How the fan-out reports its advance: a callback the caller supplies. The library never
//! draws; the CLI's implementation (`cli::progress`) draws a bar on a terminal.

/// Told as a push goes: how many servers, each one done, a change of phase, the end.
/// Called from worker threads. Every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// A push to `total` servers begins (phase "staging").
    fn start(&self, _total: usize) {}
    /// The push moved to another phase: "discarding" or "committing".
    fn phase(&self, _name: &str) {}
    /// One server finished staging.
    fn done(&self, _server: &str, _ok: bool) {}
    /// The push is over.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
