//! afskeys: administer the server encryption keys of an AFS cell.
//!
//! Layers, lowest first (a module imports only modules on lower lines; none imports one that
//! imports it back):
//! 1. `keys` (the model: key types, enctypes and `is_single_des`, keys, key sets, the afs
//!    principal's default name), `time` (RFC 3339 as afskeys writes it)
//! 2. `crypto` (algorithms); `format` (bytes <-> key sets)
//! 3. `checksum` (the checksum people compare, and how it is shown); `keygen`, `keytabs`
//! 4. `store` (locked atomic edits of a conf dir)
//! 5. `journal` (rotation journal, grace records, cell lock); `authdb` (the afs entry);
//!    `audit`
//! 6. `policy` (grace and interval: the role of each kvno) — from plain values, not the config
//! 7. `config` (`afskeys.toml`, read only by `cell`); `fleet` (servers, fan-out, progress
//!    callback)
//! 8. `cell` (the composition root: reads `Config`, builds everything above)
//! 9. `rotation` (the ordered key change, status and check); `admin`
//! 10. `cli` (arguments, rendering, the progress bar, exit codes)

pub mod audit;
pub mod authdb;
pub mod cell;
pub mod checksum;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod error;
pub mod fleet;
pub mod format;
pub mod journal;
pub mod keygen;
pub mod keyring;
pub mod keys;
pub mod keytabs;
pub mod ops;
pub mod policy;
pub mod rotation;
pub mod store;
pub mod time;
pub mod unix_user;
