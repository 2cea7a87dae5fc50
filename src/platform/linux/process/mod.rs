//! The child's start: the command found and started into its group between its clone and its
//! exec (spawn.rs, clone.rs), as the user and with the privileges it is given (identity.rs),
//! the signals damon handles (signals.rs), and damon's own figures (own_process.rs).

pub(super) mod clone;
pub(super) mod identity;
pub(super) mod own_process;
pub(super) mod signals;
pub(super) mod spawn;
