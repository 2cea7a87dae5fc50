//! The workload's console, where a stop's console control events go.
//!
//! The child is created with a console of its own, without a window (CREATE_NO_WINDOW; its
//! standard handles stay damon's), and every console process it starts inherits it. Windows
//! delivers CTRL_C_EVENT only to a whole console, never to a process group, and a process
//! generates events only on the console it is attached to: so damon.exe, which keeps its own
//! console (Nomad's Ctrl+Break arrives there), runs itself as a short-lived helper
//! (`damon --console-event-helper EVENT PID`) that attaches to the workload's console and
//! generates the event for all of it. The event reaches every console process of the job
//! (those that did not leave the console, or start on another one with DETACHED_PROCESS or
//! CREATE_NEW_CONSOLE) and no process outside it: nothing else is attached to that console
//! but the helper, which ignores it.

use std::ffi::OsString;
use std::io;
use std::time::Duration;

use super::ffi;

/// The helper's flag, first on its command line. Not in `damon --help`: damon.exe alone runs it.
const HELPER_FLAG: &str = "--console-event-helper";

/// How long damon waits for the helper: it makes four system calls.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit code of a helper given arguments it does not take.
const HELPER_USAGE: i32 = 125;

/// A failed helper's exit code: the failed call's place in [`ffi::CONSOLE_EVENT_STEPS`]
/// (from 1) times this, plus its Win32 error code (all below 16,000).
const HELPER_STEP: u32 = 0x1_0000;

/// Sends console control event `event` to every console process of the workload, through the
/// console of `child_id`.
pub fn send(event: u32, child_id: u32) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let line = super::command_line::join(&[
        exe.into_os_string(),
        OsString::from(HELPER_FLAG),
        OsString::from(event.to_string()),
        OsString::from(child_id.to_string()),
    ]);
    match ffi::run_detached(&line, HELPER_TIMEOUT)? {
        0 => Ok(()),
        code if code == HELPER_USAGE as u32 => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "the console-event helper refused its arguments"))
        }
        code => {
            let call = (code / HELPER_STEP).checked_sub(1).and_then(|i| ffi::CONSOLE_EVENT_STEPS.get(i as usize));
            let error = io::Error::from_raw_os_error((code % HELPER_STEP) as i32);
            Err(io::Error::new(
                error.kind(),
                format!("{} in the console-event helper: {}", call.unwrap_or(&"a call"), error),
            ))
        }
    }
}

/// When damon runs as the console-event helper (`args` are its whole command line), does
/// that and returns its exit code: 0, the failed call's error code, or 125 for arguments it
/// does not take.
pub fn helper(args: &[OsString]) -> Option<i32> {
    if args.get(1).map_or(true, |flag| flag != HELPER_FLAG) {
        return None;
    }
    let number = |i: usize| args.get(i).and_then(|a| a.to_str()).and_then(|a| a.parse::<u32>().ok());
    let code = match (number(2), number(3), args.len()) {
        (Some(event), Some(process_id), 4) => match ffi::deliver_console_event(event, process_id) {
            Ok(()) => 0,
            Err(e) => {
                let step = ffi::console_event_step(&e).map_or(0, |i| i as u32 + 1);
                let code = ffi::error_code(&e).unwrap_or(1) % HELPER_STEP;
                (step * HELPER_STEP + code) as i32
            }
        },
        _ => HELPER_USAGE,
    };
    Some(code)
}
