//! Log lines kept by the host with the login's correlation id.
//!
//! The host bounds how much one call may log; extra lines are dropped.

/// Severity of a log line.
pub use crate::bindings::waypass::mapper::log::Level;
use crate::bindings::waypass::mapper::log::log;

/// Records `message` at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    log(level, message.as_ref());
}

/// Records `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message);
}

/// Records `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message);
}

/// Records `message` at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Records `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Records `message` at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}
