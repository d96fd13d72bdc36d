//! `afskeys.toml`: the cell, the token lifetime (absent: the KDC's, plus `clock_skew`) and
//! rotation interval, the auth DB backend, SSH settings and the other server machines. An absent file means the embedded defaults:
//! one local server (the conf dir itself) and the file auth DB.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CONFIG_FILE: &str = "afskeys.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// Not a file afskeys may take decisions from (`store::trust`).
    #[error(transparent)]
    Trust(#[from] crate::store::trust::TrustError),
}

impl crate::error::Kinded for ConfigError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Config
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cell name; default: ThisCell in the conf dir.
    pub cell: Option<String>,
    /// Maximum token lifetime: the grace before an old key may be removed.
    #[serde(with = "humantime_serde_shim", default = "default_lifetime")]
    pub token_lifetime: Duration,
    /// `check` warns when the current key is older than this.
    #[serde(with = "humantime_serde_shim", default = "default_interval")]
    pub rotation_interval: Duration,
    /// The clock skew the KDC allows: added to its maximum ticket life when that is the
    /// grace (no `token_lifetime`, a KDC backend). Default 300 s, MIT's.
    #[serde(with = "humantime_serde_shim", default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// True when the file sets `token_lifetime` (not a key of the file itself).
    #[serde(skip)]
    pub token_lifetime_set: bool,
    #[serde(default)]
    pub authdb: AuthDbConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub ssh: SshConfig,
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub distribution: DistributionConfig,
    #[serde(default)]
    pub inventory: InventoryConfig,
    #[serde(default)]
    pub running_proof: RunningProofConfig,
}

/// `[running_proof]`: the programs that ask the running servers before the afs entry moves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningProofConfig {
    #[serde(default = "default_bos")]
    pub bos: PathBuf,
    #[serde(default = "default_udebug")]
    pub udebug: PathBuf,
    /// `pts` and `vos`, which ask a database server's ptserver and vlserver, and a file
    /// server's volserver.
    #[serde(default = "default_pts")]
    pub pts: PathBuf,
    #[serde(default = "default_vos")]
    pub vos: PathBuf,
    /// How long each of them may take.
    #[serde(with = "humantime_serde_shim", default = "default_vos_timeout")]
    pub timeout: Duration,
    /// How long a machine restarted before a removal may take to come back, its ubik
    /// quorum whole again (an election takes about 75 s).
    #[serde(with = "humantime_serde_shim", default = "default_restart_wait")]
    pub restart_wait: Duration,
}

fn default_restart_wait() -> Duration {
    Duration::from_secs(240)
}

impl Default for RunningProofConfig {
    fn default() -> Self {
        RunningProofConfig {
            bos: default_bos(),
            udebug: default_udebug(),
            pts: default_pts(),
            vos: default_vos(),
            timeout: default_vos_timeout(),
            restart_wait: default_restart_wait(),
        }
    }
}

fn default_pts() -> PathBuf {
    PathBuf::from("pts")
}

fn default_udebug() -> PathBuf {
    PathBuf::from("udebug")
}

/// `[inventory]`: how afskeys learns the machines the cell names (its CellServDB and the
/// VLDB), and the machines it leaves out on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// The `vos` program that lists the VLDB's file servers (`vos listaddrs -noauth`).
    #[serde(default = "default_vos")]
    pub vos: PathBuf,
    /// How long `vos listaddrs` may take before the VLDB counts as unreachable.
    #[serde(with = "humantime_serde_shim", default = "default_vos_timeout")]
    pub timeout: Duration,
    /// Machines the operator adds to those the cell names (host names or addresses).
    #[serde(default)]
    pub also: Vec<String>,
    /// Machines the cell names that hold no keys afskeys must keep, each with the reason.
    #[serde(default)]
    pub left_out: Vec<LeftOutConfig>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            vos: default_vos(),
            timeout: default_vos_timeout(),
            also: Vec::new(),
            left_out: Vec::new(),
        }
    }
}

/// `[[inventory.left_out]]`: a machine of the cell afskeys leaves alone, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOutConfig {
    pub host: String,
    pub reason: String,
}

fn default_vos() -> PathBuf {
    PathBuf::from("vos")
}
fn default_vos_timeout() -> Duration {
    Duration::from_secs(30)
}

impl InventoryConfig {
    /// Hosts are plain words; a reason is one line of text, not blank.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message: m,
        };
        for h in self
            .also
            .iter()
            .chain(self.left_out.iter().map(|l| &l.host))
        {
            if not_a_word(h) || !host_or_user(h) {
                return Err(bad(format!(
                    "inventory: host {h:?} must be one plain word (no spaces, control \
                     characters or leading '-'), a host name or address"
                )));
            }
        }
        for l in &self.left_out {
            if l.reason.trim().is_empty() || l.reason.chars().any(char::is_control) {
                return Err(bad(format!(
                    "inventory.left_out {:?}: give the reason it is left out, on one line",
                    l.host
                )));
            }
        }
        if self.timeout.is_zero() {
            return Err(bad("inventory.timeout must be more than zero".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    File,
    Kadmin,
    /// Heimdal's kadmin (`kadmin -l`, or kadmind with `server`).
    Heimdal,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthDbConfig {
    #[serde(default)]
    pub backend: Backend,
    /// file backend: where the auth DB file is [default: <confdir>/afskeys-authdb.json]
    pub path: Option<PathBuf>,
    /// kadmin backend: the afs principal [default: afs/<cell>@<CELL>]
    pub principal: Option<String>,
    /// kadmin backend: the command to run [default: kadmin.local; kadmin with `server`]
    pub kadmin: Option<String>,
    /// kadmin backend: kadmind's `host[:port]`; absent = the local database (kadmin.local)
    pub server: Option<String>,
    /// kadmin backend: who kadmin logs in as, and who gets tickets for the ticket proof
    pub admin_principal: Option<String>,
    /// kadmin backend: that principal's keytab (no prompt)
    pub admin_keytab: Option<PathBuf>,
    /// How long one kadmin, kinit or kvno run may take before it is killed (default 60 s).
    #[serde(default, with = "humantime_serde_shim_opt")]
    pub timeout: Option<Duration>,
}

impl AuthDbConfig {
    /// The `[authdb]` rules: a server needs the admin principal and keytab; those two go
    /// together, only with the kadmin backend, and hold no spaces or quotes.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message: m,
        };
        let admin = (self.admin_principal.is_some(), self.admin_keytab.is_some());
        if self.backend == Backend::File && (self.server.is_some() || admin.0 || admin.1) {
            return Err(bad(
                "authdb.server, admin_principal and admin_keytab need backend = \"kadmin\" \
                 or \"heimdal\""
                    .into(),
            ));
        }
        if admin.0 != admin.1 {
            return Err(bad(
                "authdb.admin_principal and admin_keytab go together".into()
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("authdb.timeout must be more than zero".into()));
        }
        if self.server.is_some() && !admin.0 {
            return Err(bad(
                "authdb.server needs admin_principal and admin_keytab (kadmin logs in to \
                 kadmind with the keytab; nothing may prompt)"
                    .into(),
            ));
        }
        let odd = |v: &str| not_a_word(v) || v.chars().any(|c| "\"'\\".contains(c));
        for (name, v) in [
            ("server", self.server.as_deref()),
            ("admin_principal", self.admin_principal.as_deref()),
        ] {
            if v.is_some_and(odd) {
                return Err(bad(format!(
                    "authdb.{name} must be one plain word (no spaces, quotes or leading '-')"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// [default: <confdir>/afskeys-audit.log]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Which SSH client reaches the servers (`ssh2`, the default, or `openssh`).
    #[serde(default)]
    pub transport: Transport,
    /// An ssh_config file for the `openssh` transport (`ssh -F`); absent: the user's.
    pub config: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    #[serde(with = "humantime_serde_shim", default = "default_timeout")]
    pub timeout: Duration,
}

/// `[ssh] transport`: libssh2 (the ssh2 crate) or the system's OpenSSH client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Ssh2,
    Openssh,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            transport: Transport::default(),
            config: None,
            identity: None,
            known_hosts: None,
            parallel: default_parallel(),
            timeout: default_timeout(),
        }
    }
}

/// `[distribution]`: how the other servers get the control machine's KeyFiles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionConfig {
    /// `ssh` (afskeys pushes, the default) or `upserver` (the servers' upclientetc pulls).
    #[serde(default)]
    pub method: Method,
    /// upclient's `-t`: how often each server fetches (default 300 s).
    #[serde(with = "humantime_serde_shim", default = "default_upclient_interval")]
    pub interval: Duration,
    /// How long `rotate` waits for every server to fetch; default three intervals.
    #[serde(default, with = "humantime_serde_shim_opt")]
    pub deadline: Option<Duration>,
    /// How often the fetch state is polled while waiting; default a tenth of the interval
    /// (at least 1 s, at most 30 s).
    #[serde(default, with = "humantime_serde_shim_opt")]
    pub poll: Option<Duration>,
    /// The servers' conf dir as `bos getdate -dir` names it.
    #[serde(default = "default_server_confdir")]
    pub dir: PathBuf,
    /// The `bos` program.
    #[serde(default = "default_bos")]
    pub bos: PathBuf,
    /// The bos instance that runs upclient for the conf dir.
    #[serde(default = "default_upclient_instance")]
    pub instance: String,
    /// Where afskeys keeps its journal, audit log and file auth DB in such cells: outside the
    /// conf dir, which upclient copies whole to every server.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The servers fed by upclient: a name and the host bos reaches.
    #[serde(default)]
    pub upclients: Vec<UpclientConfig>,
}

/// `[distribution] method`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Ssh,
    Upserver,
}

/// One server fed by upclient.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpclientConfig {
    pub name: String,
    pub host: String,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            method: Method::default(),
            interval: default_upclient_interval(),
            deadline: None,
            poll: None,
            dir: default_server_confdir(),
            bos: default_bos(),
            instance: default_upclient_instance(),
            state_dir: default_state_dir(),
            upclients: Vec::new(),
        }
    }
}

fn default_upclient_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_bos() -> PathBuf {
    PathBuf::from("bos")
}
fn default_upclient_instance() -> String {
    "upclientetc".into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/afskeys")
}

/// Another server machine. Without `host` it is a directory on this machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    pub host: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_server_confdir")]
    pub confdir: PathBuf,
    /// The name or address the cell knows this machine by (CellServDB, the VLDB, `bos
    /// -server`) when `host` is not it (an ssh_config alias, a directory server).
    pub afs_host: Option<String>,
    /// Ask this server's running bosserver (and ubik services) before the afs entry moves
    /// (default); false where the control machine cannot reach its Rx ports.
    #[serde(default = "default_true")]
    pub running_proof: bool,
}

fn default_true() -> bool {
    true
}

impl ServerConfig {
    /// A server's name, host and user reach messages, the audit log and ssh's command line:
    /// each one plain word, no control characters, no leading '-' (an ssh option).
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (what, v) in [
            ("name", Some(self.name.as_str())),
            ("host", self.host.as_deref()),
            ("afs_host", self.afs_host.as_deref()),
            ("user", Some(self.user.as_str())),
        ] {
            if v.is_some_and(not_a_word) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "server {:?}: its {what} must be one plain word (no spaces, control \
                         characters or leading '-')",
                        self.name
                    ),
                });
            }
            if what != "name" && v.is_some_and(|v| !host_or_user(v)) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "server {:?}: its {what} {:?} holds characters a shell or ssh would \
                         interpret (letters, digits, '.', '-' and '_' only; a host may also \
                         hold ':', '%', '[' and ']')",
                        self.name,
                        v.unwrap_or_default()
                    ),
                });
            }
        }
        if RESERVED.iter().any(|r| self.name.eq_ignore_ascii_case(r)) {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "server {:?}: afskeys calls the control machine that (`--server control` or \
                     `localhost`, and every report); give this server another name",
                    self.name
                ),
            });
        }
        Ok(())
    }
}

/// The names reports and `--server` give the control machine: no other server may take them.
const RESERVED: [&str; 2] = ["control", "localhost"];

/// A host name or address (IPv6 in brackets, a zone after '%'), or a user name: nothing a
/// shell or ssh would interpret (`$(…)`, `;`, `${IFS}`, quotes, '/').
fn host_or_user(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:%[]".contains(c))
}

fn default_lifetime() -> Duration {
    crate::policy::DEFAULT_TOKEN_LIFETIME
}
fn default_interval() -> Duration {
    crate::policy::DEFAULT_ROTATION_INTERVAL
}
fn default_clock_skew() -> Duration {
    crate::policy::DEFAULT_CLOCK_SKEW
}
fn default_parallel() -> usize {
    16
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_port() -> u16 {
    22
}
fn default_user() -> String {
    "root".into()
}
fn default_server_confdir() -> PathBuf {
    PathBuf::from("/usr/afs/etc")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cell: None,
            token_lifetime: default_lifetime(),
            rotation_interval: default_interval(),
            clock_skew: default_clock_skew(),
            token_lifetime_set: false,
            authdb: AuthDbConfig::default(),
            audit: AuditConfig::default(),
            ssh: SshConfig::default(),
            servers: Vec::new(),
            distribution: DistributionConfig::default(),
            inventory: InventoryConfig::default(),
            running_proof: RunningProofConfig::default(),
        }
    }
}

impl Config {
    /// Parse the text of a config file; `path` is for the error message.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at line {})", line_of(text, s.start)))
                    .unwrap_or_default(),
        })?;
        let mut c = c;
        c.token_lifetime_set =
            toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("token_lifetime"));
        c.validate(path)?;
        Ok(c)
    }

    /// Load `path`; an absent file gives the embedded defaults when `required` is false.
    /// Relative paths in the file are taken from the file's own directory.
    /// Read through the one checked open (`store::trust`): a config another user could
    /// have written is refused.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        use crate::store::trust;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        match trust::read(path, trust::CONFIG)? {
            Some(bytes) => {
                let t = std::str::from_utf8(&bytes).map_err(|e| {
                    read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
                let mut c = Config::parse(t, path)?;
                if let Some(base) = path.parent() {
                    c.resolve_relative(base);
                }
                Ok(c)
            }
            None if !required => Ok(Config::default()),
            None => Err(read_err(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// Make every relative path in the config relative to `base` (the config file's dir).
    pub fn resolve_relative(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for s in &mut self.servers {
            if s.host.is_none() {
                fix(&mut s.confdir);
            }
        }
        for p in [
            self.authdb.path.as_mut(),
            self.authdb.admin_keytab.as_mut(),
            self.audit.path.as_mut(),
            self.ssh.identity.as_mut(),
            self.ssh.known_hosts.as_mut(),
            self.ssh.config.as_mut(),
            Some(&mut self.distribution.state_dir),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message: m,
        };
        if self.token_lifetime.is_zero() {
            return Err(bad("token_lifetime must be more than zero".into()));
        }
        if self.rotation_interval.is_zero() {
            return Err(bad("rotation_interval must be more than zero".into()));
        }
        let century = Duration::from_secs(36500 * 86400);
        if self.clock_skew > Duration::from_secs(86400) {
            return Err(bad("clock_skew must be at most 1d".into()));
        }
        if self.token_lifetime > century || self.rotation_interval > century {
            return Err(bad(
                "token_lifetime and rotation_interval must be at most 36500d (100 years)".into(),
            ));
        }
        self.authdb.validate(path)?;
        self.inventory.validate(path)?;
        if self.ssh.parallel == 0 {
            return Err(bad("ssh.parallel must be at least 1".into()));
        }
        if let Some(c) = &self.cell {
            if !crate::store::is_cell_name(c) {
                return Err(bad(format!(
                    "cell {c:?} is not a cell name (letters, digits, '.', '-' and '_'; \
                     not starting with '-' or '.')"
                )));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.servers {
            if s.name.is_empty() {
                return Err(bad("a [[servers]] entry has an empty name".into()));
            }
            if !names.insert(&s.name) {
                return Err(bad(format!("server {:?} is listed twice", s.name)));
            }
            s.validate(path)?;
        }
        self.validate_upclients(path)
    }

    /// `[distribution] upclients`: each name and host one plain word (the host goes on bos's
    /// command line), names unique.
    fn validate_upclients(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message: m,
        };
        let mut names = std::collections::BTreeSet::new();
        for u in &self.distribution.upclients {
            let as_server = ServerConfig {
                name: u.name.clone(),
                host: Some(u.host.clone()),
                port: default_port(),
                user: default_user(),
                confdir: default_server_confdir(),
                afs_host: None,
                running_proof: true,
            };
            as_server.validate(path)?;
            if !names.insert(&u.name) {
                return Err(bad(format!("upclient {:?} is listed twice", u.name)));
            }
        }
        if self.distribution.method == Method::Upserver && self.distribution.upclients.is_empty() {
            return Err(bad(
                "[distribution] method = \"upserver\" needs its upclients (name and host)".into(),
            ));
        }
        Ok(())
    }
}

/// Not one plain word: empty, a leading '-' (an option to ssh or bos), a space or a control
/// character (values that reach messages, the audit log and command lines).
fn not_a_word(v: &str) -> bool {
    v.is_empty() || v.starts_with('-') || v.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Durations written as "25h", "30d", "10s" (humantime).
mod humantime_serde_shim {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"25h\" or \"30d\""
            ))
        })
    }
}

/// An optional duration written as "10s".
mod humantime_serde_shim_opt {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_shim::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetime_set_only_when_written_and_clock_skew_defaults_to_mit() {
        let p = Path::new("/x/afskeys.toml");
        let c = Config::parse("", p).unwrap();
        assert!(!c.token_lifetime_set);
        assert_eq!(c.clock_skew, Duration::from_secs(300));
        let c = Config::parse("token_lifetime = \"25h\"\nclock_skew = \"2m\"\n", p).unwrap();
        assert!(c.token_lifetime_set);
        assert_eq!(c.clock_skew, Duration::from_secs(120));
        assert!(Config::parse("token_lifetime_set = true\n", p).is_err());
        let e = Config::parse("clock_skew = \"2d\"\n", p).unwrap_err();
        assert!(e.to_string().contains("clock_skew must be at most 1d"));
    }

    #[test]
    fn distribution_upserver_needs_its_upclients_and_defaults_to_three_intervals() {
        let p = Path::new("/x/afskeys.toml");
        let c = Config::parse("", p).unwrap();
        assert_eq!(c.distribution.method, Method::Ssh);
        assert_eq!(c.distribution.interval, Duration::from_secs(300));
        let e = Config::parse("[distribution]\nmethod = \"upserver\"\n", p).unwrap_err();
        assert!(e.to_string().contains("needs its upclients"), "{e}");
        let t = "[distribution]\nmethod = \"upserver\"\ninterval = \"2s\"\n\
                 [[distribution.upclients]]\nname = \"fs1\"\nhost = \"10.0.0.1\"\n";
        let c = Config::parse(t, p).unwrap();
        assert_eq!(c.distribution.interval, Duration::from_secs(2));
        assert_eq!(c.distribution.deadline, None);
        assert_eq!(c.distribution.upclients[0].host, "10.0.0.1");
        let bad = t.replace("10.0.0.1", "-oProxy");
        assert!(Config::parse(&bad, p).is_err());
        let twice = format!("{t}[[distribution.upclients]]\nname = \"fs1\"\nhost = \"h\"\n");
        assert!(Config::parse(&twice, p)
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
    }

    #[test]
    fn defaults_when_empty() {
        let c = Config::parse("", Path::new("x")).unwrap();
        assert_eq!(c.token_lifetime, Duration::from_secs(25 * 3600));
        assert_eq!(c.rotation_interval, Duration::from_secs(30 * 86400));
        assert_eq!(c.authdb.backend, Backend::File);
        assert!(c.servers.is_empty());
    }

    #[test]
    fn the_documented_shape_parses() {
        let t = r#"
cell = "example.com"
token_lifetime = "25h"
rotation_interval = "30d"

[authdb]
backend = "kadmin"
principal = "afs/example.com@EXAMPLE.COM"
kadmin = "kadmin.local"

[ssh]
identity = "/root/.ssh/id_ed25519"
known_hosts = "/root/.ssh/known_hosts"
parallel = 16
timeout = "10s"

[[servers]]
name = "fs1"
host = "fs1.example.com"
port = 22
user = "root"
confdir = "/usr/afs/etc"
"#;
        let c = Config::parse(t, Path::new("x")).unwrap();
        assert_eq!(c.cell.as_deref(), Some("example.com"));
        assert_eq!(c.authdb.backend, Backend::Kadmin);
        assert_eq!(c.servers[0].host.as_deref(), Some("fs1.example.com"));
        assert_eq!(c.ssh.timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_ssh_transport_is_ssh2_unless_openssh_is_asked_for() {
        let c = Config::parse("", Path::new("x")).unwrap();
        assert_eq!(c.ssh.transport, Transport::Ssh2);
        assert_eq!(c.ssh.config, None);
        let c = Config::parse(
            "[ssh]\ntransport = \"openssh\"\nconfig = \"/root/.ssh/config\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.ssh.transport, Transport::Openssh);
        assert_eq!(c.ssh.config, Some(PathBuf::from("/root/.ssh/config")));
        assert!(Config::parse("[ssh]\ntransport = \"putty\"\n", Path::new("x")).is_err());
    }

    #[test]
    fn relative_paths_are_from_the_config_files_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("afskeys.toml");
        std::fs::write(
            &p,
            "[authdb]\npath = \"db.json\"\n[[servers]]\nname = \"fs1\"\nconfdir = \"fs1\"\n\
             [[servers]]\nname = \"fs2\"\nhost = \"fs2.example.com\"\nconfdir = \"etc\"\n",
        )
        .unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.authdb.path.unwrap(), d.path().join("db.json"));
        assert_eq!(c.servers[0].confdir, d.path().join("fs1"));
        // a remote machine's confdir is a path on that machine: left alone
        assert_eq!(c.servers[1].confdir, PathBuf::from("etc"));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Config::parse("token_lifetime = \"soon\"", Path::new("/x/afskeys.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/afskeys.toml: "), "{e}");
        assert!(e.contains("not a duration"), "{e}");
        let e = Config::parse("colour = 1", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = Config::parse(
            "[[servers]]\nname=\"a\"\n[[servers]]\nname=\"a\"\n",
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = Config::parse("[authdb]\nbackend = \"ldap\"", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ldap"), "{e}");
    }

    #[test]
    fn remote_kadmin_settings() {
        let ok = "[authdb]\nbackend = \"kadmin\"\nserver = \"kdc1.example.com:749\"\n\
                  admin_principal = \"afskeys/admin@EXAMPLE.COM\"\nadmin_keytab = \"admin.keytab\"\n";
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("afskeys.toml"), ok).unwrap();
        let c = Config::load(&d.path().join("afskeys.toml"), true).unwrap();
        assert_eq!(c.authdb.server.as_deref(), Some("kdc1.example.com:749"));
        assert_eq!(
            c.authdb.admin_keytab.unwrap(),
            d.path().join("admin.keytab")
        );
        let err = |t: &str| Config::parse(t, Path::new("c")).unwrap_err().to_string();
        let no_keytab = "[authdb]\nbackend = \"kadmin\"\nserver = \"kdc1\"\n";
        assert!(err(no_keytab).contains("server needs admin_principal"));
        let half = "[authdb]\nbackend = \"kadmin\"\nadmin_principal = \"a@R\"\n";
        assert!(err(half).contains("go together"));
        let file = "[authdb]\nserver = \"kdc1\"\n";
        assert!(err(file).contains("need backend"));
        let odd = ok.replace("kdc1.example.com:749", "-oProxy");
        assert!(err(&odd).contains("authdb.server must be one plain word"));
    }
}
