//! The machines one rotate command works on: the control machine as it is, and every other
//! server wrapped so that its keys are read once for the whole command and read again only
//! after this process changed them (`fleet::memo` says why that keeps the activation guard's
//! guarantee). Built afresh by each `rotate` and `rotate --resume`.

use crate::cell::Cell;
use crate::fleet::{Remembered, Server};

pub(crate) struct Machines<'a> {
    cell: &'a Cell,
    /// The other servers, remembered; `None` in an Update Server cell, whose upclients
    /// change the servers without this process (every read there is real).
    remembered: Option<Vec<Remembered<'a>>>,
}

impl<'a> Machines<'a> {
    pub(crate) fn of(cell: &'a Cell) -> Machines<'a> {
        let remembered = match cell.upserver {
            Some(_) => None,
            None => Some(Remembered::all(&cell.other_servers())),
        };
        Machines { cell, remembered }
    }

    /// The servers other than the control machine.
    pub(crate) fn others(&self) -> Vec<&dyn Server> {
        match &self.remembered {
            Some(v) => v.iter().map(|s| s as &dyn Server).collect(),
            None => self.cell.other_servers(),
        }
    }

    /// Every machine, the control machine first (as `Cell::all_servers`).
    pub(crate) fn all(&self) -> Vec<&dyn Server> {
        let mut v: Vec<&dyn Server> = vec![&self.cell.control_server];
        v.extend(self.others());
        v
    }
}
