//! `keel serve --config FILE` refuses a bad configuration before doing anything: a non-zero
//! exit, a message naming the offending key, no listening socket and no data directory.
//! Also `keel passwd`: its output is a hash the configuration accepts.

// A failed unwrap or assertion in a test is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serve_support::{keel, password_hash};

/// A valid configuration; `{data_dir}` and `{hash}` are filled in.
const BASE: &str = r#"[server]
listen = "127.0.0.1:0"
data_dir = "{data_dir}"
durability = "async"

[[instrument]]
id = 1
symbol = "BTC-PERP"

[[user]]
username = "alice"
password_hash = "{hash}"
account = 1

[[user]]
username = "bob"
password_hash = "{hash}"
account = 2
"#;

/// Runs `keel serve` on `text` and returns (exit success, standard error, data dir created).
fn serve_with(text: &str) -> (bool, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let text = text
        .replace("{data_dir}", &data_dir.display().to_string())
        .replace("{hash}", password_hash());
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(keel())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bad configuration fails at once; a good one would serve forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr, data_dir.exists())
}

#[test]
fn the_base_configuration_is_valid() {
    // The mutations below are meaningful only if the base itself is accepted: check it
    // parses with the library (starting a node here would serve forever).
    let text = BASE
        .replace("{data_dir}", "/nonexistent")
        .replace("{hash}", password_hash());
    keel_node::config::Config::parse(&text).unwrap();
}

#[test]
fn bad_configurations_fail_at_start_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        // (replace, with, the error must mention)
        ("listen =", "listen_addr =", "listen_addr"),
        (
            "durability = \"async\"",
            "durability = \"async\"\nfsync_every = 3",
            "fsync_every",
        ),
        (
            "symbol = \"BTC-PERP\"",
            "symbol = \"BTC-PERP\"\ntick = 1",
            "tick",
        ),
        ("account = 1", "account = 1\npassword = \"x\"", "password"),
        ("[server]", "[servr]", "servr"),
        (
            "durability = \"async\"",
            "durability = \"sometimes\"",
            "durability",
        ),
        ("listen = \"127.0.0.1:0\"", "listen = \"nowhere\"", "listen"),
        (
            "durability = \"async\"",
            "durability = \"async\"\noutbound_buffer_bytes = 10",
            "outbound_buffer_bytes",
        ),
        (
            "durability = \"async\"",
            "durability = \"async\"\nsegment_size_bytes = \"big\"",
            "segment_size_bytes",
        ),
        (
            "durability = \"async\"",
            "durability = \"async\"\nsession = \"WAY-TOO-LONG-NAME\"",
            "server.session",
        ),
        (
            "username = \"alice\"",
            "username = \"alice12\"",
            "user[0].username",
        ),
        (
            "username = \"bob\"",
            "username = \"ALICE\"",
            "user[1].username",
        ),
        (
            "password_hash = \"{hash}\"\naccount = 1",
            "password_hash = \"hunter2\"\naccount = 1",
            "user[0].password_hash",
        ),
        (
            "password_hash = \"{hash}\"\naccount = 2",
            "password_hash = \"\"\naccount = 2",
            "user[1].password_hash",
        ),
        ("account = 1", "account = -1", "account"),
        ("account = 1", "account = 1\nstp = \"sometimes\"", "stp"),
        (
            "account = 1",
            "account = 1\ncancel_on_disconnect = \"yes\"",
            "cancel_on_disconnect",
        ),
        (
            "symbol = \"BTC-PERP\"",
            "symbol = \"BTC-PERPETUAL\"",
            "instrument[0].symbol",
        ),
        (
            "symbol = \"BTC-PERP\"",
            "symbol = \"BTC-PERP\"\nprice_scale = 0",
            "instrument[0].price_scale",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(BASE.contains(from), "bad case: {from}");
        let (ok, stderr, created) = serve_with(&BASE.replacen(from, to, 1));
        assert!(!ok, "{to}: accepted\n{stderr}");
        assert!(
            stderr.contains(needle),
            "{to}: the error does not name {needle}:\n{stderr}"
        );
        assert!(stderr.contains("keel: error"), "{to}: {stderr}");
        assert!(
            !stderr.contains("listening on"),
            "{to}: it listened:\n{stderr}"
        );
        assert!(!created, "{to}: the data directory was created");
    }
}

#[test]
fn a_missing_configuration_file_is_an_error() {
    let output = Command::new(keel())
        .args(["serve", "--config", "/nonexistent/keel.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/keel.toml"), "{stderr}");
}

#[test]
fn passwd_prints_a_hash_the_configuration_accepts() {
    let mut child = Command::new(keel())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2"), "{hash}");
    assert!(!hash.contains("s3cret"));
    assert!(keel_node::config::verify_password("s3cret", hash));
    assert!(!keel_node::config::verify_password("s3cre", hash));
    let text = BASE
        .replace("{data_dir}", "/nonexistent")
        .replace("{hash}", hash);
    keel_node::config::Config::parse(&text).unwrap();

    // SoupBinTCP passwords are at most 10 characters: a longer one could never log in.
    let mut child = Command::new(keel())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"much-too-long-password\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
}

#[test]
fn without_a_configuration_it_runs_the_embedded_demo_and_says_so() {
    // The demo listens on 127.0.0.1:9000 and keeps its data in ./keel-data: run it in a
    // temporary directory. If something else holds port 9000, only the announcement and
    // the refusal are checked.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(keel())
        .arg("serve")
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let listening = loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains("listening on") {
                    break true;
                }
                if line.contains("keel: error") {
                    break false;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("keel serve neither started nor failed:\n{text}");
            }
        }
    };
    for needle in [
        "embedded demo configuration",
        "127.0.0.1:9000",
        "keel-data",
        "BTC-PERP",
        "alice/alicepass",
        "bob/bobpass",
    ] {
        assert!(text.contains(needle), "{needle} not announced:\n{text}");
    }
    if !listening {
        let _ = child.wait();
        assert!(text.contains("in use"), "{text}");
        eprintln!("port 9000 is busy: checked the announcement only");
        return;
    }
    assert!(text.contains("listening on 127.0.0.1:9000"), "{text}");
    assert!(dir.path().join("keel-data").is_dir());
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
