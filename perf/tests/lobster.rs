// Tests unwrap and panic on purpose: a failed unwrap or a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel-perf lobster` end to end: parse errors name file and line, explicit pairs work, and
//! the real GOOG/AAPL sample files give internally consistent agreement figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn keel_perf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-perf"))
        .arg("lobster")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs one explicit pair written to a temp dir; returns the output and the dir.
fn run_pair(messages: &str, book: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("X_message_1.csv");
    let b = dir.path().join("X_ob_1.csv");
    std::fs::write(&m, messages).unwrap();
    std::fs::write(&b, book).unwrap();
    let out = dir.path().join("out");
    let output = keel_perf(&[
        "--message",
        m.to_str().unwrap(),
        "--orderbook",
        b.to_str().unwrap(),
        "--runs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    (output, dir)
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("out").join("lobster.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn bad_column_count_names_file_and_line() {
    let (output, _dir) = run_pair("1.0,1,1,10,1000000,1\n2.0,1,2,10\n", "1,1,1,1\n");
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("X_message_1.csv:2: expected 6 comma-separated fields"),
        "{err}"
    );
}

#[test]
fn bad_number_names_file_and_line() {
    let (output, _dir) = run_pair("1.0,1,1,10,1000000,1\n", "1001000,30,1000000,1x\n");
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("X_ob_1.csv:1: bid size 1 \"1x\""), "{err}");
    let (output, _dir) = run_pair("1.0,1,1,ten,1000000,1\n", "1001000,30,1000000,10\n");
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("X_message_1.csv:1: size \"ten\""), "{err}");
}

#[test]
fn oversize_line_names_file_and_line() {
    let long = format!("1.0,1,1,10,1000000,1\n{}\n", "9".repeat(20_000));
    let (output, _dir) = run_pair(&long, "1001000,30,1000000,10\n");
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("X_message_1.csv:2: line longer than"), "{err}");
}

#[test]
fn mismatched_row_counts_are_refused() {
    let (output, _dir) = run_pair(
        "1.0,1,1,10,1000000,1\n",
        "1001000,30,1000000,10\n1001000,30,1000000,10\n",
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("1 messages but 2 orderbook rows"));
}

#[test]
fn an_explicit_pair_that_agrees_is_reported_as_agreeing() {
    // Bid 100.00 x 50 rests before the file (message 1 adds 10 to it); order 7 then sells
    // at 100.10 and is filled by an execution: NASDAQ's maker is the one Keel fills.
    let messages = "1.0,1,5,10,1000000,1\n2.0,1,7,20,1001000,-1\n3.0,4,7,20,1001000,-1\n";
    let book = "1002000,30,1000000,60\n1001000,20,1000000,60\n1002000,30,1000000,60\n";
    let (output, dir) = run_pair(messages, book);
    assert!(output.status.success(), "{}", stderr(&output));
    let pair = &report(dir.path())["pairs"][0];
    assert_eq!(pair["symbol"], "X");
    let executions = &pair["checks"]["executions"];
    assert_eq!(executions["checkable"], 1);
    assert_eq!(executions["matched"], 1);
    let book = &pair["checks"]["book"];
    assert_eq!(book["compared"], 3);
    assert_eq!(book["equal"], 3);
    assert!(dir.path().join("out").join("lobster.md").exists());
}

fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lobster");
    dir.canonicalize().unwrap_or_else(|_| {
        panic!(
            "the LOBSTER sample files are missing: expected the folder {} (perf/data/lobster in the repository)",
            dir.display()
        )
    })
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap()
}

fn sum(classes: &Value) -> u64 {
    classes.as_object().unwrap().values().map(count).sum()
}

/// Internal consistency of one pair's figures, whatever they are.
fn assert_consistent(pair: &Value) {
    let symbol = pair["symbol"].as_str().unwrap();
    let e = &pair["checks"]["executions"];
    assert_eq!(
        count(&e["matched"]) + count(&e["mismatched"]),
        count(&e["checkable"]),
        "{symbol}"
    );
    assert!(count(&e["checkable"]) > 0, "{symbol}");
    assert_eq!(
        sum(&e["mismatch_classes"]),
        count(&e["mismatched"]),
        "{symbol}"
    );
    let b = &pair["checks"]["book"];
    assert_eq!(
        count(&b["equal"]) + count(&b["differ"]),
        count(&b["compared"]),
        "{symbol}"
    );
    assert_eq!(
        count(&b["compared"]) + count(&b["not_compared_inside_aggressor"]),
        count(&b["rows"]),
        "{symbol}"
    );
    assert_eq!(count(&b["rows"]), count(&pair["messages"]), "{symbol}");
    assert_eq!(sum(&b["differ_classes"]), count(&b["differ"]), "{symbol}");
    let c = &pair["conversion"];
    assert_eq!(
        sum(&c["messages_by_type"]),
        count(&pair["messages"]),
        "{symbol}"
    );
    // Each type-4 row either stands in an aggressor or is skipped with a reason.
    let type4 = c["messages_by_type"]["4"].as_u64().unwrap_or(0);
    let skipped4: u64 = c["skipped"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("/4"))
        .map(|(_, v)| count(v))
        .sum();
    assert_eq!(count(&c["aggressor_rows"]) + skipped4, type4, "{symbol}");
    // And every aggressor row is either checkable or drew on a seed.
    assert_eq!(
        count(&e["checkable"]) + count(&e["seed_rows"]),
        count(&c["aggressor_rows"]),
        "{symbol}"
    );
    let t = &pair["timing"];
    assert!(t["commands_per_s"]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_real_sample_files_give_consistent_figures() {
    let dir = data_dir();
    for name in [
        "GOOG_2012-06-21_message_1.csv",
        "GOOG_2012-06-21_orderbook_1.csv",
        "AAPL_2012-06-21_message_10_first998.csv",
        "AAPL_2012-06-21_orderbook_10_first998.csv",
    ] {
        let path = dir.join(name);
        assert!(path.is_file(), "missing LOBSTER file {}", path.display());
    }
    let out = tempfile::tempdir().unwrap();
    for reconcile in [true, false] {
        let mut args = vec!["--runs", "1", "--out", out.path().to_str().unwrap()];
        if !reconcile {
            args.push("--no-reconcile");
        }
        let output = keel_perf(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = std::fs::read_to_string(out.path().join("lobster.json")).unwrap();
        let report: Value = serde_json::from_str(&text).unwrap();
        let pairs = report["pairs"].as_array().unwrap();
        let symbols: Vec<&str> = pairs
            .iter()
            .map(|p| p["symbol"].as_str().unwrap())
            .collect();
        assert_eq!(symbols, ["AAPL", "GOOG"]);
        for pair in pairs {
            assert_consistent(pair);
            assert_eq!(pair["reconciled"], reconcile);
        }
        let (aapl, goog) = (&pairs[0], &pairs[1]);
        assert_eq!(aapl["file_levels"], 10);
        assert_eq!(goog["file_levels"], 1);
        // The initial book is row 1 with message 1 undone, so after message 1 Keel's
        // levels equal row 1 exactly: AAPL's message 1 is a new order, GOOG's an execution
        // of an order that predates the file (it must draw on the seed).
        for pair in [aapl, goog] {
            let first = &pair["checks"]["book"]["first_differing_row"];
            assert!(
                first.is_null() || count(first) > 1,
                "{} row 1 differs",
                pair["symbol"]
            );
        }
        let md = std::fs::read_to_string(out.path().join("lobster.md")).unwrap();
        assert!(md.contains("| AAPL |") && md.contains("| GOOG |"));
    }
}
