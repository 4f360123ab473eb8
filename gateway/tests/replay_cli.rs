//! Runs the real `keel` binary the way a user does.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = keel()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn quickstart_example_matches_its_golden_output() {
    let output = keel()
        .args(["replay", "--book"])
        .arg(repo_file("examples/quickstart.jsonl"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected =
        std::fs::read_to_string(repo_file("examples/quickstart.expected.jsonl")).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}

#[test]
fn standard_input_gives_the_same_result_as_a_file() {
    let input = std::fs::read_to_string(repo_file("examples/quickstart.jsonl")).unwrap();
    let output = run_with_stdin(&["replay", "--book"], &input);
    assert!(output.status.success());
    let expected =
        std::fs::read_to_string(repo_file("examples/quickstart.expected.jsonl")).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}

#[test]
fn malformed_line_stops_after_earlier_events_with_its_line_number() {
    let input = concat!(
        "{\"type\":\"instrument\",\"instrument\":1,\"symbol\":\"X\"}\n",
        "{\"type\":\"new\",\"order_id\":1,\"account\":1,\"instrument\":1,\"side\":\"buy\",\"price\":5,\"qty\":1}\n",
        "{\"type\":\"new\",\"order_id\":2,\"account\":1,\"instrument\":1,\"side\":\"buy\",\"price\":5,\"qty\":1\n",
        "{\"type\":\"new\",\"order_id\":3,\"account\":1,\"instrument\":1,\"side\":\"buy\",\"price\":5,\"qty\":1}\n",
    );
    let output = run_with_stdin(&["replay", "--book"], input);
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\"type\":\"accepted\",\"order_id\":1}\n",
        "events before the bad line are printed, nothing after it, and no book"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let output = keel()
        .args(["replay", "/nonexistent/commands.jsonl"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/commands.jsonl"), "{stderr}");
}
