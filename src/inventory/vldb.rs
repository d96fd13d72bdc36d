//! The file servers registered in the VLDB: `vos listaddrs -noauth -printuuid -noresolve`
//! (it answers without authentication), run with the control machine's conf dir as vos's
//! `-config`, so it asks the database servers the control machine's CellServDB names.
//!
//! With `-printuuid`, vos prints each server entry as `UUID: <uuid>`, one address per line,
//! then a blank line; a multi-homed file server is one entry with several addresses.
//! Without a quorum or a reachable vlserver it prints `vos: could not list the server
//! addresses` and exits non-zero (seen: 255, after about 2 s).

use crate::child;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// One VLDB server entry: a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VldbEntry {
    pub uuid: Option<String>,
    pub addrs: Vec<IpAddr>,
}

/// Ask the VLDB. `Err` says why it could not be asked, in words for the operator.
pub fn list(
    vos: &Path,
    confdir: &Path,
    cell: &str,
    deadline: Duration,
) -> Result<Vec<VldbEntry>, String> {
    let conf = confdir.to_string_lossy();
    let mut args = vec!["listaddrs", "-noauth", "-printuuid", "-noresolve"];
    args.extend(["-config", &conf]);
    if !cell.is_empty() {
        args.extend(["-cell", cell]);
    }
    let f = child::run(vos, &args, &[], deadline, 1 << 20).map_err(|e| e.to_string())?;
    let said = child::clean(f.text().trim());
    if !f.status.success() {
        return Err(match said.is_empty() {
            true => format!("vos listaddrs exited with {}", f.status),
            false => format!(
                "vos listaddrs: {}",
                said.lines().collect::<Vec<_>>().join(" ")
            ),
        });
    }
    if f.truncated {
        return Err("vos listaddrs printed more than 1 MiB".into());
    }
    parse(&f.stdout)
}

/// The entries in `vos listaddrs -printuuid -noresolve`'s output.
pub fn parse(text: &str) -> Result<Vec<VldbEntry>, String> {
    let mut out: Vec<VldbEntry> = Vec::new();
    let mut open = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            open = false;
        } else if let Some(u) = line.strip_prefix("UUID:") {
            out.push(VldbEntry {
                uuid: Some(u.trim().to_string()),
                addrs: vec![],
            });
            open = true;
        } else {
            let addr: IpAddr = line.parse().map_err(|_| {
                format!(
                    "vos listaddrs printed {:?}, which is not an address",
                    child::clean(line)
                )
            })?;
            match out.last_mut() {
                Some(e) if open => e.addrs.push(addr),
                _ => out.push(VldbEntry {
                    uuid: None,
                    addrs: vec![addr],
                }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_group_a_multihomed_servers_addresses() {
        let t = "UUID: 0022e6ae-a7cb-1f0b-9d-4c-4e0a4e0a\n10.78.0.4\n192.168.1.4\n\n\
                 UUID: 0033e6ae-a7cb-1f0b-9d-4c-4e0a4e0b\n10.78.0.5\n\n";
        let v = parse(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].addrs.len(), 2);
        assert_eq!(
            v[1].uuid.as_deref(),
            Some("0033e6ae-a7cb-1f0b-9d-4c-4e0a4e0b")
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(parse("UUID: x\nfs1.example.com\n").is_err());
        // Entries without a UUID line are a machine each.
        assert_eq!(parse("10.0.0.1\n10.0.0.2\n").unwrap().len(), 2);
    }

    #[test]
    fn an_unreachable_vldb_is_said_with_voss_own_words() {
        let d = tempfile::tempdir().unwrap();
        let vos = d.path().join("vos");
        std::fs::write(
            &vos,
            "#!/bin/sh\necho 'vos: could not list the server addresses' >&2\n\
             echo 'Possible communication failure' >&2\nexit 255\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&vos, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = list(&vos, d.path(), "c.org", Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e,
            "vos listaddrs: vos: could not list the server addresses Possible communication \
             failure"
        );
    }
}
