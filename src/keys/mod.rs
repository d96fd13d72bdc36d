//! The model: key types, enctypes, one key (zeroized on drop), the key set of a conf dir
//! with the invariants every file we write must satisfy, and the afs principal's default name.

mod enctype;
mod key;
mod keyset;
mod principal;

pub use enctype::{Enctype, ParseError};
pub use key::{Key, KeyId, KeyType, BCRYPT_KVNO, MAX_RXKAD_KEYS};
pub use keyset::{KeySet, KeySetError};
pub use principal::{default_principal, FALLBACK_PRINCIPAL};
