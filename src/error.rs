//! The library's one error type. An [`Error`] carries the message operators read (the very
//! words of the module that found the problem, or of the use case that gave it context), a
//! [`Kind`] (refused by policy, failed, configuration) and the cause chain behind it
//! (`source()`). Module errors say their kind through [`Kinded`]; only the CLI turns a kind
//! into an exit code.

use std::error::Error as StdError;
use std::fmt;

/// What sort of failure: the CLI maps each to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Refused by policy: grace not over, order would break, `--if-cksum` mismatch.
    Refused,
    /// Failed: I/O, corrupt input, unreachable, bad input, stopped part way.
    Failed,
    /// The configuration (afskeys.toml, the conf dir's cell) is unusable.
    Config,
}

/// An error that knows its kind. Module errors implement it, so `?` turns them into
/// [`Error`] with their message and cause chain intact.
pub trait Kinded {
    fn kind(&self) -> Kind;
}

type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// The library's error: a kind, a message, and the cause chain.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    repr: Repr,
}

#[derive(Debug)]
enum Repr {
    /// A module's error, shown as it is (its own cause chain follows it).
    Module(Cause),
    /// A message of the use case's own, and the error that led to it, if any.
    Message {
        message: String,
        source: Option<Cause>,
    },
}

impl Error {
    /// A message of the given kind, with no cause behind it.
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            repr: Repr::Message {
                message: message.into(),
                source: None,
            },
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(Kind::Failed, message)
    }

    /// A refusal by policy: the message is prefixed with `refused: `.
    pub fn refused(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Refused,
            repr: Repr::Message {
                message: format!("refused: {}", message.into()),
                source: None,
            },
        }
    }

    /// A configuration problem.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    /// The same error, caused by `source` (its message should already say what `source`
    /// said, when that helps the operator).
    pub fn with_source(mut self, source: impl Into<Cause>) -> Error {
        if let Repr::Message { source: slot, .. } = &mut self.repr {
            *slot = Some(source.into());
        }
        self
    }

    /// A failure whose message is `source`'s own (for errors that do not say their kind).
    pub fn failed_by(source: impl StdError + Send + Sync + 'static) -> Error {
        Error::failed(source.to_string()).with_source(source)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Module(e) => fmt::Display::fmt(e, f),
            Repr::Message { message, .. } => f.write_str(message),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.repr {
            // Transparent: the module error's own message is this one's, so its cause is next.
            Repr::Module(e) => e.source(),
            Repr::Message { source, .. } => source.as_deref().map(|e| e as &dyn StdError),
        }
    }
}

impl<E: Kinded + StdError + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        Error {
            kind: e.kind(),
            repr: Repr::Module(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] std::io::Error);

    impl Kinded for Outer {
        fn kind(&self) -> Kind {
            Kind::Refused
        }
    }

    #[test]
    fn module_errors_keep_message_kind_and_chain() {
        let e: Error = Outer(std::io::Error::other("disk")).into();
        assert_eq!(e.kind(), Kind::Refused);
        assert_eq!(e.to_string(), "outer: disk");
        assert_eq!(e.source().unwrap().to_string(), "disk");
    }

    #[test]
    fn context_keeps_its_cause() {
        let e = Error::failed("cannot").with_source(std::io::Error::other("x"));
        assert_eq!((e.kind(), e.to_string()), (Kind::Failed, "cannot".into()));
        assert_eq!(e.source().unwrap().to_string(), "x");
        assert_eq!(Error::refused("no").to_string(), "refused: no");
    }
}
