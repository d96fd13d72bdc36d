//! Running another program (vos, bos, udebug, pts, kadmin, kinit, kvno) with a deadline and
//! bounded output.
//!
//! Every child afskeys starts here: gets stdin from `/dev/null`; runs in a process group of
//! its own and is killed with it (SIGKILL to the group) when its deadline passes; dies when
//! the thread that started it dies (`PR_SET_PDEATHSIG`), so it never outlives afskeys; has
//! its stdout and stderr drained while afskeys waits (a child writing more than a pipe holds
//! never blocks), keeping at most `cap` bytes of each and discarding the rest. The waiting
//! is the `wait-timeout` crate's; the rest is a few system calls no crate bundles this way.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// What a child printed and how it ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    /// At most the cap; `truncated` says whether more was written.
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub elapsed: Duration,
}

impl Finished {
    /// stdout then stderr, as a terminal would show them (tools print errors on either).
    pub fn text(&self) -> String {
        let mut t = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&self.stderr);
        }
        t
    }
}

/// Why a child gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} did not finish within {} (killed)", program.display(), humantime::format_duration(*deadline))]
    Timeout {
        program: PathBuf,
        deadline: Duration,
    },
    #[error("waiting for {}: {source}", program.display())]
    Wait {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default cap on each of stdout and stderr: 1 MiB.
pub const OUTPUT_CAP: usize = 1 << 20;

/// Run `program args…` with this deadline, keeping at most `cap` bytes of each stream.
pub fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
    cap: usize,
) -> Result<Finished, ChildError> {
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env.iter().copied());
    run_command(cmd, None, deadline, cap)
}

/// Run a command built by the caller (its program, arguments, environment, and any
/// `pre_exec` of its own such as `setsid`) the same way, writing `input` to its stdin (from a
/// thread of its own, then closed; a child that exits without reading it is not an error) or
/// giving it `/dev/null`.
pub fn run_command(
    mut cmd: Command,
    input: Option<&[u8]>,
    deadline: Duration,
    cap: usize,
) -> Result<Finished, ChildError> {
    let program = PathBuf::from(cmd.get_program());
    cmd.stdin(match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: setpgid and prctl are async-signal-safe and touch only the child itself (after
    // a caller's setsid, setpgid fails harmlessly: the child already leads its own group).
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ChildError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id() as i32;
    if let (Some(input), Some(mut w)) = (input, child.stdin.take()) {
        let input = zeroize::Zeroizing::new(input.to_vec());
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&input);
        });
    }
    let out = drain(child.stdout.take(), cap);
    let err = drain(child.stderr.take(), cap);
    let waited = child.wait_timeout(deadline);
    let status = match waited {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => {
            // SAFETY: kill(2) on the child's own process group (setpgid above).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = (out.join(), err.join());
            return Err(match waited {
                Err(source) => ChildError::Wait { program, source },
                _ => ChildError::Timeout { program, deadline },
            });
        }
    };
    // Whatever the child left behind in its group goes with it (it would hold the pipes).
    // SAFETY: as above.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let (stdout, t1) = out.join().unwrap_or_default();
    let (stderr, t2) = err.join().unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stderr,
        truncated: t1 || t2,
        elapsed: start.elapsed(),
    })
}

/// Read a stream to its end on a thread of its own, keeping the first `cap` bytes.
fn drain<R: Read + Send + 'static>(
    r: Option<R>,
    cap: usize,
) -> std::thread::JoinHandle<(String, bool)> {
    std::thread::spawn(move || {
        let Some(mut r) = r else {
            return (String::new(), false);
        };
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut truncated = false;
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        (String::from_utf8_lossy(&kept).into_owned(), truncated)
    })
}

/// Text from another program, fit for a terminal: control characters (but newlines and
/// tabs) become U+FFFD, so a tool's error text cannot move the cursor or retitle a window.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_drained_past_the_cap_and_kept_up_to_it() {
        // 4 MiB through a pipe of 64 KiB: the child finishes because afskeys drains it.
        let f = run(
            Path::new("/bin/sh"),
            &["-c", "head -c 4194304 /dev/zero | tr '\\0' x; echo err >&2"],
            &[],
            Duration::from_secs(20),
            1000,
        )
        .unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout.len(), 1000);
        assert!(f.truncated);
        assert_eq!(f.stderr, "err\n");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_with_its_children() {
        let start = Instant::now();
        let e = run(
            Path::new("/bin/sh"),
            &["-c", "sleep 30 & sleep 30"],
            &[],
            Duration::from_millis(300),
            OUTPUT_CAP,
        )
        .unwrap_err();
        assert!(matches!(e, ChildError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("did not finish within 300ms"), "{e}");
        // Had the grandchild kept the pipes, the readers would have waited 30 s.
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = run(
            Path::new("/nonexistent/vos"),
            &[],
            &[],
            Duration::from_secs(1),
            10,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/vos:"),
            "{e}"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(
            clean("a\x1b]52;c;x\x07b\n\tc"),
            "a\u{fffd}]52;c;x\u{fffd}b\n\tc"
        );
    }
}
