//! Turning damon's argument list into one Windows command line.
//!
//! Windows passes a single string to a new process, and the C runtime of the child splits it
//! again (the rules of CommandLineToArgvW). std::process::Command has this logic but does not
//! expose it, and damon calls CreateProcessW itself (to start the child inside its job), so it
//! is written out here: quote what contains blanks or quotes, double the backslashes that
//! precede a quote.

use std::ffi::{OsStr, OsString};
use std::os::windows::ffi::{OsStrExt, OsStringExt};

const QUOTE: u16 = b'"' as u16;
const BACKSLASH: u16 = b'\\' as u16;

/// The command line that makes the child's argv equal `args`.
pub fn join(args: &[OsString]) -> OsString {
    let mut line: Vec<u16> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ' as u16);
        }
        if i == 0 {
            push_program(&mut line, arg);
        } else {
            push_argument(&mut line, arg);
        }
    }
    OsString::from_wide(&line)
}

fn needs_quotes(arg: &[u16]) -> bool {
    arg.is_empty() || arg.iter().any(|&c| c == b' ' as u16 || c == b'\t' as u16 || c == b'\n' as u16 || c == QUOTE)
}

/// The program name is split on quotes only: backslashes there are path separators.
fn push_program(line: &mut Vec<u16>, program: &OsStr) {
    let program: Vec<u16> = program.encode_wide().collect();
    if needs_quotes(&program) {
        line.push(QUOTE);
        line.extend(program.iter().filter(|&&c| c != QUOTE));
        line.push(QUOTE);
    } else {
        line.extend(program);
    }
}

fn push_argument(line: &mut Vec<u16>, arg: &OsStr) {
    let arg: Vec<u16> = arg.encode_wide().collect();
    if !needs_quotes(&arg) {
        line.extend(arg);
        return;
    }
    line.push(QUOTE);
    let mut backslashes = 0;
    for &c in &arg {
        if c == BACKSLASH {
            backslashes += 1;
            continue;
        }
        // Backslashes are literal unless a quote follows them.
        let escaped = if c == QUOTE { backslashes * 2 + 1 } else { backslashes };
        line.extend(std::iter::repeat(BACKSLASH).take(escaped));
        line.push(c);
        backslashes = 0;
    }
    // Before the closing quote, every backslash must be doubled.
    line.extend(std::iter::repeat(BACKSLASH).take(backslashes * 2));
    line.push(QUOTE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        join(&args.iter().map(OsString::from).collect::<Vec<_>>()).to_string_lossy().into_owned()
    }

    #[test]
    fn plain_arguments_stay_as_they_are() {
        assert_eq!(line(&["app.exe", "-la", "x"]), "app.exe -la x");
    }

    #[test]
    fn blanks_quotes_and_backslashes_are_quoted_as_the_c_runtime_splits_them() {
        assert_eq!(
            line(&["C:\\Program Files\\a.exe", "two words", ""]),
            "\"C:\\Program Files\\a.exe\" \"two words\" \"\""
        );
        assert_eq!(line(&["a", "say \"hi\""]), "a \"say \\\"hi\\\"\"");
        assert_eq!(line(&["a", "C:\\dir with space\\"]), "a \"C:\\dir with space\\\\\"");
        assert_eq!(line(&["a", "C:\\no\\space\\"]), "a C:\\no\\space\\");
    }
}
