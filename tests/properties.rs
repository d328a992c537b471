//! Property tests of the host's input handling: duration and size parsers, lock name patterns,
//! and the CLI fed random arguments. Nothing panics; every rejection says why.

mod common;

use lockbydir::NamePattern;
use lockbydir_cli::duration::parse_ms;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn durations_parse_or_explain(s in "[0-9.]{0,6}(ms|s|m|h|d|x|)?|\\PC{0,12}") {
        match parse_ms(&s) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().contains("invalid duration")),
        }
    }

    #[test]
    fn whole_milliseconds_round_trip(n in 0u64..1_000_000_000) {
        prop_assert_eq!(parse_ms(&format!("{n}ms")), Ok(n));
        prop_assert_eq!(parse_ms(&format!("{n}s")), Ok(n * 1000));
    }

    #[test]
    fn fractions_and_bare_numbers_are_seconds_to_the_millisecond(whole in 0u64..1_000_000, thousandths in 0u64..1000) {
        let ms = whole * 1000 + thousandths;
        prop_assert_eq!(parse_ms(&format!("{whole}.{thousandths:03}s")), Ok(ms));
        prop_assert_eq!(parse_ms(&format!("{whole}.{thousandths:03}")), Ok(ms));
        prop_assert_eq!(parse_ms(&format!("{whole}")), Ok(whole * 1000));
    }

    #[test]
    fn patterns_without_stars_match_only_themselves(name in "[a-z0-9.-]{1,20}", other in "[a-z0-9.-]{1,20}") {
        if let Ok(p) = NamePattern::parse(&name) {
            prop_assert!(p.matches(&name));
            prop_assert_eq!(p.matches(&other), name == other);
        }
    }

    #[test]
    fn a_prefix_star_pattern_matches_exactly_its_prefix(prefix in "[a-z]{1,8}", rest in "[a-z0-9]{0,8}", other in "[a-z0-9]{1,12}") {
        let p = NamePattern::parse(&format!("{prefix}*")).unwrap();
        let with_prefix = format!("{prefix}{rest}");
        prop_assert!(p.matches(&with_prefix));
        prop_assert_eq!(p.matches(&other), other.starts_with(&prefix));
    }

    #[test]
    fn patterns_parse_or_explain(s in "\\PC{0,12}|[*/.\\x00]{0,4}") {
        if let Err(e) = NamePattern::parse(&s) {
            prop_assert!(e.to_string().contains("invalid lock name pattern"));
        }
    }
}

/// Random argument vectors for the CLI: never a panic, and a failure always says something.
#[test]
fn the_cli_never_panics_on_random_arguments() {
    let words = [
        "run",
        "exec",
        "status",
        "demo",
        "component",
        "compose",
        "-o",
        "--locks",
        "--dir",
        "--env",
        "--timeout",
        "--patience",
        "--deadline",
        "--max-memory",
        "--allow-lock",
        "--instances",
        "--json",
        "--out",
        "--wit",
        "--",
        "x",
        "",
        "..",
        "/",
        "0",
        "-1",
        "1e99",
        "9999999999999999999999",
        "a=b",
        "::",
        "inf",
        "\u{0}",
        "ünï",
        "--holder",
        "--max-locks",
        "--no-cache",
        "--help",
    ];
    let scratch = common::Scratch::new("cli-fuzz");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&proptest::collection::vec(0..words.len(), 0..7), |picks| {
            let args: Vec<&str> = picks.iter().map(|&i| words[i]).collect();
            // Demos are long; everything else is quick or refused.
            if args.first() == Some(&"demo") {
                return Ok(());
            }
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lockbydir"));
            cmd.env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
                .env_remove("LOCKBYDIR_DIR")
                .current_dir(&scratch.0)
                .args(args.iter().map(|a| a.replace('\u{0}', "")))
                .stdin(std::process::Stdio::null());
            let out = common::output(&mut cmd);
            let err = common::stderr(&out);
            prop_assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
            prop_assert_ne!(out.status.code(), Some(101), "{:?}: {}", args, err);
            if !out.status.success() {
                prop_assert!(!err.trim().is_empty(), "{:?} failed silently", args);
            }
            Ok(())
        })
        .unwrap();
}
