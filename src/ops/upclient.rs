//! Emergency edits on a server fed by the Update Server: its upclientetc overwrites the
//! server's KeyFiles from the control machine at its next fetch, so afskeys warns, and on
//! request stops that instance through bos before the edit (`--upclient-pause`, left stopped
//! until the control machine holds what the server should) or starts it again after the edit
//! (`--upclient-resume`).

use super::edit::Target;
use super::Warn;
use crate::cell::Cell;
use crate::error::Error;
use crate::fleet::upserver::{Upclient, Upserver};

/// What to do with the edited server's upclientetc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpclientAction {
    /// Leave it as it is (warned about when it feeds the server).
    #[default]
    Leave,
    /// Stop it through bos before the edit, and leave it stopped.
    Pause,
    /// Start it through bos after the edit.
    Resume,
}

/// An upclient this edit acts on: restarted if the edit fails after a pause, or started
/// after a successful edit with `Resume`.
pub struct Acting<'a> {
    up: &'a Upserver,
    client: &'a Upclient,
    action: UpclientAction,
}

/// Before an emergency edit on `target`: warn when upclient feeds it, stop it if asked.
pub fn before_edit<'a>(
    cell: &'a Cell,
    target: &Target,
    action: UpclientAction,
    warn: Warn,
) -> Result<Option<Acting<'a>>, Error> {
    let Target::Server(s) = target else {
        return Ok(None);
    };
    let Some((up, client)) = cell
        .upserver
        .as_ref()
        .and_then(|up| up.client(s.name()).map(|c| (up, c)))
    else {
        return Ok(None);
    };
    match action {
        UpclientAction::Leave => {
            warn(&format!(
                "{} is fed by the Update Server ([distribution] in afskeys.toml): its \
                 upclientetc replaces this edit within {} unless stopped; \
                 --upclient-pause stops it through bos first",
                client.name,
                humantime::format_duration(up.interval)
            ));
            return Ok(None);
        }
        UpclientAction::Pause => {
            up.set_running(client, false).map_err(Error::failed_by)?;
            warn(&format!(
                "stopped {}'s upclientetc through bos; it stays stopped: once the control \
                 machine holds the keys this server should hold, start it again (an edit with \
                 --upclient-resume, or `bos start -server {} -instance {} -localauth`)",
                client.name, client.host, up.instance
            ));
        }
        UpclientAction::Resume => {}
    }
    Ok(Some(Acting { up, client, action }))
}

/// After the edit: start the upclient again when asked, or when the edit failed after a
/// pause (the server is unchanged, so nothing needs protecting).
pub fn after_edit(
    cell: &Cell,
    target: &Target,
    acting: Option<Acting>,
    edited: bool,
    warn: Warn,
) -> Result<(), Error> {
    let Some(a) = acting else {
        return Ok(());
    };
    if a.action == UpclientAction::Resume || !edited {
        if let (Target::Server(s), Some(kvno)) = (target, newest_unknown(cell, target)) {
            warn(&format!(
                "{}'s newest key, kvno {kvno}, is not on the control machine: its upclient \
                 authenticates with it and upserver refuses it (upclient logs `Operation not \
                 permitted calling FetchFile`) until that server's newest key is one the \
                 control machine holds",
                s.name()
            ));
        }
        a.up.set_running(a.client, true).map_err(Error::failed_by)?;
        warn(&format!(
            "started {}'s upclientetc again through bos: it fetches the control machine's \
             conf dir within {}",
            a.client.name,
            humantime::format_duration(a.up.interval)
        ));
    }
    Ok(())
}

/// The target server's newest kvno when the control machine lacks any of its keys there (an
/// upclient started on that server is locked out), else None.
fn newest_unknown(cell: &Cell, target: &Target) -> Option<i32> {
    let Target::Server(s) = target else {
        return None;
    };
    let theirs = s.read_keys().ok()?;
    let mine = cell.control.read().ok()?.keys;
    let top = theirs.iter().map(|k| k.kvno()).max()?;
    let newest: Vec<_> = theirs.iter().filter(|k| k.kvno() == top).cloned().collect();
    (!crate::fleet::holds(&mine, &newest)).then_some(top)
}
