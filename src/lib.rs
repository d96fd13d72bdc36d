//! afskeys: administer the server encryption keys of an AFS cell — the `KeyFile` and
//! `KeyFileExt` on every server machine, and the `afs` entry of the Kerberos KDC.
//!
//! The layers as they are (each module imports only modules on lines below it; no module
//! imports one that imports it back: `tests/architecture.rs` checks this, and that only `cell`
//! reads the configuration, that only `cli` chooses exit codes, and the size of
//! every file and function):
//!
//! ```text
//! cli/        arguments -> options -> one ops call -> render (text, bos/asetkey, JSON); exit codes
//! ops/        one use case per file (edit, prune, rotate, authdb, push, verify, servers,
//!             keytab, status, list): typed options in, a typed Serialize report out
//! rotation/   the ordered key change: plan, steps (add, distribute, activate, prove, finish),
//!             status and check's verdict
//! cell        the composition root: reads afskeys.toml, builds the conf dir, the servers
//!             (transport targets), the auth DB backend, the policy
//! config      afskeys.toml (read only by `cell`)
//! inventory/  the machines the cell names (CellServDB, the VLDB) matched to afskeys.toml
//! restarts    restarts that keep ubik quorum before a removal: bos restart, udebug
//! running     proof from the running servers: bos -localauth with the new kvno, udebug
//! policy      grace and interval: the role of each kvno (from plain values or the KDC's
//!             max ticket life)
//! authdb/     the afs entry: file (embedded default), MIT kadmin (local or kadmind), Heimdal
//!             (kadmin -l or kadmind); the ticket proof (kinit + kvno, picky-krb opens it)
//! fleet/      the Server trait: local dir, ssh2 (ssh/), OpenSSH (openssh/); fan-out with a
//!             progress callback (the library never draws)
//! journal     the rotation journal, grace records, the cell lock
//! audit       the audit log
//! store/      one set of conf-dir rules (rules.rs) for every transport; the checked open of
//!             every state file (trust.rs); locked atomic replace, backups, the CellServDB bump
//! keytabs     keys in and out of keytabs (asetkey add, akeyconvert, export)
//! format/     bytes <-> key sets: KeyFile, KeyFileExt, keytab; pure, no I/O
//! checksum, keygen, keyring   the bos checksum; making keys; the kernel keyring
//! crypto/     AFS and RFC 3962 string-to-key, DES parity, random keys
//! keys/       the model: KeyType, Enctype (is_single_des), Key (zeroized), KeySet
//! child       other programs run with a deadline and bounded, drained output
//! error, time, unix_user      one error type with a kind; RFC 3339; getpwuid_r
//! ```
//!
//! A library user opens a [`Cell`] (or gives [`ops::CellPaths`] to an `ops` function) and gets
//! a typed report or an [`Error`] whose [`Kind`] says refused, failed or configuration.

pub use cell::Cell;
pub use error::{Error, Kind};

pub(crate) mod audit;
pub mod authdb;
pub mod cell;
pub(crate) mod checksum;
pub mod child;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod error;
pub mod fleet;
pub mod format;
pub mod inventory;
pub mod journal;
pub mod keygen;
pub(crate) mod keyring;
pub mod keys;
pub(crate) mod keytabs;
pub mod ops;
pub(crate) mod policy;
pub mod restarts;
pub mod rotation;
pub mod running;
pub mod store;
pub(crate) mod time;
pub(crate) mod unix_user;
