//! The CLI's progress bar for pushes to many servers: an indicatif bar on stderr, drawn only
//! when asked for and stderr is a terminal. The library only calls the `Progress` callback.

use crate::fleet::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// A bar `{phase} [=====>   ] done/total elapsed`, created when a push starts.
#[derive(Default)]
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(pb);
        }
    }
}

impl Progress for Bar {
    fn start(&self, total: usize) {
        let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len} {elapsed}")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message("staging");
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb);
    }

    fn phase(&self, name: &str) {
        let name = name.to_string();
        self.with(|pb| pb.set_message(name));
    }

    fn done(&self, _server: &str, _ok: bool) {
        self.with(|pb| pb.inc(1));
    }

    fn finish(&self) {
        if let Some(pb) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}

/// A bar when `wanted` and stderr is a terminal, else nothing.
pub fn on_terminal(wanted: bool) -> Box<dyn Progress> {
    if wanted && std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(NoProgress)
    }
}
