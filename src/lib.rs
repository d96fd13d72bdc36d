//! afskeys: administer the server encryption keys of an AFS cell.
//!
//! Layers, lowest first (a lower layer never imports a higher one):
//! `keys` (the model), `crypto` (algorithms), `format` (bytes <-> key sets),
//! `store` (locked atomic edits of a conf dir), `cli` (argument parsing and rendering).

pub mod admin;
pub mod audit;
pub mod authdb;
pub mod cell;
pub mod checksum;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod fleet;
pub mod format;
pub mod keygen;
pub mod keyring;
pub mod keys;
pub mod keytabs;
pub mod rotation;
pub mod store;
pub mod unix_user;
