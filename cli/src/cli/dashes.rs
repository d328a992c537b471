//! A hint for a command (`exec`) or plugin arguments (`run`) given without the `--` that
//! must come before them: the same command line with `--` in its place, checked to parse.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use lockbydir::{escape, is_unsafe_char};

/// Add to `error` (clap's refusal of `args`, the whole command line) a tip with the command
/// line as it should have been, if inserting one `--` makes it parse. `parse` says whether a
/// command line parses, with the subcommand it runs.
pub fn add_hint(
    error: &mut clap::Error,
    args: &[String],
    parse: impl Fn(&[String]) -> Option<String>,
) {
    if error.kind() != ErrorKind::UnknownArgument {
        return;
    }
    let Some(ContextValue::String(stray)) = error.get(ContextKind::InvalidArg) else {
        return;
    };
    let Some((fixed, subcommand)) = with_dashes(args, stray, parse) else {
        return;
    };
    let line: Vec<String> = std::iter::once("lockbydir".to_owned())
        .chain(fixed[1..].iter().map(|a| quote(a)))
        .collect();
    let what = match subcommand.as_str() {
        "exec" => "the command to run goes",
        "run" => "the plugin's arguments go",
        _ => "those arguments go",
    };
    let tip = format!("{what} after `--`: {}", line.join(" "));
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
}

/// `args` with `--` inserted before an occurrence of `stray` (the first that makes it parse),
/// if there is no `--` before it already; and the subcommand it runs.
fn with_dashes(
    args: &[String],
    stray: &str,
    parse: impl Fn(&[String]) -> Option<String>,
) -> Option<(Vec<String>, String)> {
    let before_dashes = args.iter().position(|a| a == "--").unwrap_or(args.len());
    (2..before_dashes)
        .filter(|&i| args[i] == stray)
        .map(|i| {
            let mut fixed = args.to_vec();
            fixed.insert(i, "--".to_owned());
            fixed
        })
        .find_map(|fixed| parse(&fixed).map(|sub| (fixed, sub)))
}

/// An argument as a POSIX shell reads it back: as it is if it needs no quoting, else in
/// single quotes. One holding characters a terminal must not get is escaped instead, as
/// everything lockbydir prints.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    let quoted = format!("'{}'", arg.replace('\'', r"'\''"));
    match (plain, arg.chars().any(is_unsafe_char)) {
        (true, _) => arg.to_owned(),
        (false, false) => quoted,
        (false, true) => escape(&quoted).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn the_dashes_go_before_the_first_occurrence_that_parses() {
        // `echo` is both the lock and the command: only the second place parses.
        let parses = |a: &[String]| a[3].eq("--").then(|| a[1].clone());
        assert_eq!(
            with_dashes(&args("lockbydir exec echo echo hi"), "echo", parses),
            Some((args("lockbydir exec echo -- echo hi"), "exec".to_owned()))
        );
        let anything = |a: &[String]| Some(a[1].clone());
        assert_eq!(
            with_dashes(&args("lockbydir exec job -- echo"), "echo", anything),
            None
        );
    }

    #[test]
    fn arguments_are_quoted_as_a_shell_reads_them() {
        assert_eq!(quote("ls"), "ls");
        assert_eq!(quote("-w"), "-w");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a\\b c"), r"'a\b c'");
        assert_eq!(quote("a\nb"), r"'a\nb'");
    }
}
