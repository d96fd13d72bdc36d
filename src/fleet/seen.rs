//! What each server held when last seen: `afskeys-servers.json` in the control machine's conf
//! dir (mode 0600, written atomically), so `afskeys servers` can still say what an unreachable
//! server held. Checksums only, never keys.

use crate::checksum::key_checksum;
use crate::keys::{KeyId, KeySet};
use crate::store::{atomic, trust, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SEEN_FILE: &str = "afskeys-servers.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeenKey {
    pub kvno: i32,
    #[serde(rename = "type")]
    pub key_type: String,
    pub enctype: Option<i32>,
    pub cksum: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub last_seen: DateTime<Utc>,
    pub keys: Vec<SeenKey>,
}

/// The record file.
pub struct SeenFile {
    path: PathBuf,
}

impl SeenFile {
    pub fn new(dir: &Path) -> SeenFile {
        SeenFile {
            path: dir.join(SEEN_FILE),
        }
    }

    /// The records, read through the one checked open (`store::trust`): a file another
    /// user could have written is refused. A missing or unparsable file is an empty record
    /// (it is only a cache).
    pub fn load(&self) -> Result<BTreeMap<String, Seen>, StoreError> {
        Ok(trust::read(&self.path, trust::SERVERS_CACHE)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Record what each named server holds now.
    pub fn record(
        &self,
        seen: Vec<(String, Vec<SeenKey>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut all = self.load()?;
        for (name, keys) in seen {
            all.insert(
                name,
                Seen {
                    last_seen: now,
                    keys,
                },
            );
        }
        let mut bytes = serde_json::to_vec_pretty(&all).expect("serializable");
        bytes.push(b'\n');
        atomic::replace_file_cleaning(&self.path, &bytes)
    }
}

/// What a key set looks like in the record.
pub fn summary(keys: &KeySet) -> Vec<SeenKey> {
    let sums: Vec<(KeyId, Option<u32>)> = keys.iter().map(|k| (k.id, key_checksum(k))).collect();
    from_checksums(&sums)
}

/// The record of (key id, checksum) pairs, as `fanout::verify` reports them.
pub fn from_checksums(sums: &[(KeyId, Option<u32>)]) -> Vec<SeenKey> {
    sums.iter()
        .map(|(id, cksum)| SeenKey {
            kvno: id.kvno,
            key_type: id.key_type.name().to_string(),
            enctype: id.key_type.is_typed().then_some(id.subtype),
            cksum: *cksum,
        })
        .collect()
}
