//! `keel client` as a subprocess against a real `keel serve`: one-shot orders, cancel,
//! replace, rejects, `watch`, `script`, and usage errors.
// Tests fail by panicking; unwrap/expect/panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use client_support::{dead_endpoint, Server, USERS};

fn password(user: &str) -> &'static str {
    USERS.iter().find(|(name, _)| *name == user).unwrap().1
}

fn client(server: &str, user: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args([
            "client", "--server", server, "--user", user, "--quiet", "0.3",
        ])
        .args(args)
        .env_remove("KEEL_PASSWORD")
        .stdin(Stdio::null());
    command
}

fn run(server: &Server, user: &str, args: &[&str]) -> Output {
    let output = client(&server.addr.to_string(), user, args)
        .args(["--password", password(user)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "keel client {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn one_shot_orders_print_one_readable_line_per_message() {
    let server = Server::start("async");
    let out = run(
        &server,
        "alice",
        &["buy", "BTC-PERP", "10", "@", "100.25", "--token", "A1"],
    );
    assert_eq!(
        stdout(&out),
        "#2 accepted A1 buy 10 BTC-PERP @ 100.2500 ref 1\n"
    );

    // The password from the environment; the order crosses and is done at once.
    let out = client(
        &server.addr.to_string(),
        "bob",
        &["sell", "BTC-PERP", "4", "@100.20"],
    )
    .args(["--token", "B1"])
    .env("KEEL_PASSWORD", password("bob"))
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "#2 accepted B1 sell 4 BTC-PERP @ 100.2000 ref 2\n\
         #3 executed B1 4 @ 100.2500 (removed liquidity) match 1\n"
    );

    let out = run(&server, "alice", &["cancel", "A1"]);
    assert_eq!(stdout(&out), "#4 canceled A1 6 (user requested)\n");

    let out = run(
        &server,
        "bob",
        &["buy", "NOPE", "1", "@", "1", "--token", "B2"],
    );
    assert_eq!(stdout(&out), "#4 rejected B2 (invalid stock)\n");

    // A market order with nothing to trade against: accepted, then its remainder canceled.
    let out = run(
        &server,
        "bob",
        &["buy", "ETH-PERP", "3", "market", "--token", "B3"],
    );
    assert_eq!(
        stdout(&out),
        "#5 accepted B3 buy 3 ETH-PERP market ioc ref 3\n\
         #6 canceled B3 3 (immediate or cancel)\n"
    );

    // `watch --from 1` prints alice's whole stream and follows it.
    let mut watch = client(&server.addr.to_string(), "alice", &["watch", "--from", "1"])
        .args(["--password", password("alice")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    for _ in 0..4 {
        lines.push(
            rx.recv_timeout(Duration::from_secs(15))
                .expect("watch line"),
        );
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(
        lines,
        [
            "#1 system event: start of day",
            "#2 accepted A1 buy 10 BTC-PERP @ 100.2500 ref 1",
            "#3 executed A1 4 @ 100.2500 (added liquidity) match 1",
            "#4 canceled A1 6 (user requested)",
        ]
    );
}

#[test]
fn watch_follows_live_messages() {
    let server = Server::start("async");
    run(
        &server,
        "alice",
        &["sell", "BTC-PERP", "5", "@", "200", "--token", "ASK"],
    );
    let mut watch = client(&server.addr.to_string(), "alice", &["watch", "--from", "3"])
        .args(["--password", password("alice")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Nothing from 3 on yet.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    run(
        &server,
        "bob",
        &["buy", "BTC-PERP", "2", "@", "200", "--ioc"],
    );
    let line = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(
        line,
        "#3 executed ASK 2 @ 200.0000 (added liquidity) match 1"
    );
}

#[test]
fn scripts_run_line_by_line() {
    let server = Server::start("async");
    let script = server.dir.join("orders.txt");
    std::fs::write(
        &script,
        "# alice's morning\n\
         buy ETH-PERP 5 @ 10 --token S1\n\
         \n\
         replace S1 S2 6 @ 10.5\n\
         cancel S2 3\n\
         sleep 0.1\n\
         cancel S2\n\
         cancel S2\n\
         buy NOPE 1 @ 1 --token S4 --post-only\n",
    )
    .unwrap();
    let out = run(&server, "alice", &["script", script.to_str().unwrap()]);
    assert_eq!(
        stdout(&out),
        "#2 accepted S1 buy 5 ETH-PERP @ 10.0000 ref 1\n\
         #3 replaced S1 -> S2 buy 6 ETH-PERP @ 10.5000 ref 1\n\
         #4 canceled S2 3 (user requested)\n\
         #5 canceled S2 3 (user requested)\n\
         #6 cancel rejected S2 (no such live order, or nothing to cancel)\n\
         #7 rejected S4 (invalid stock)\n"
    );
}

#[test]
fn usage_errors_are_reported_before_anything_is_sent() {
    let server = Server::start("async");
    let addr = server.addr.to_string();
    let failure = |mut command: Command| -> String {
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
        String::from_utf8(output.stderr).unwrap()
    };
    let mut bad_price = client(&addr, "alice", &["buy", "BTC-PERP", "1", "@", "1.00001"]);
    bad_price.args(["--password", "alicepass"]);
    assert!(failure(bad_price).contains("at most 4 decimals"));

    let mut wrong = client(&addr, "alice", &["buy", "BTC-PERP", "1", "@", "1"]);
    wrong.args(["--password", "nope"]);
    assert!(failure(wrong).contains("not authorized"));

    let mut dead = client(&dead_endpoint().to_string(), "alice", &["cancel", "X"]);
    dead.args(["--password", "alicepass"]);
    assert!(failure(dead).contains("refused"));

    let script = server.dir.join("bad.txt");
    std::fs::write(&script, "buy BTC-PERP 1 @ 1\nsell BTC-PERP lots @ 1\n").unwrap();
    let mut bad_script = client(&addr, "alice", &["script", script.to_str().unwrap()]);
    bad_script.args(["--password", "alicepass"]);
    let message = failure(bad_script);
    assert!(message.contains("bad.txt:2:"), "{message}");

    // Nothing was sent by any of these: alice's stream holds only the start of day.
    let out = run(&server, "alice", &["cancel", "NEVER"]);
    assert_eq!(
        stdout(&out),
        "#2 cancel rejected NEVER (no such live order, or nothing to cancel)\n"
    );
}
