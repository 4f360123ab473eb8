//! Conformance with a client written independently from the public SoupBinTCP 4.0 and OUCH
//! 4.2 specifications (`independent_client.py`, which shares no code with Keel): it logs in,
//! trades, resumes after a dropped connection, and records every byte both ways; tshark's
//! `soupbintcp` and `ouch` dissectors must then decode that capture without a malformed
//! packet or an expert warning. Skips (with a message) if python3 or tshark is missing;
//! CI installs tshark.

// Test helpers unwrap: a failure there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_support;

use std::process::Command;

use serve_support::{write_config, Node, PASSWORD};

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn an_independent_client_trades_resumes_and_is_never_sent_a_malformed_byte() {
    if !available("python3") {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let setup = write_config("fsync");
    let node = Node::start(&setup.config);
    let pcap = setup.dir.path().join("independent.pcap");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent_client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(node.addr.port().to_string())
        .arg(&pcap)
        .args([PASSWORD, PASSWORD])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "independent client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("independent client: OK"), "{stdout}");

    if !available("tshark") {
        eprintln!("SKIPPED: tshark is not installed; the capture was not checked");
        return;
    }
    let port = node.addr.port();
    let decode = |extra: &[&str]| {
        let output = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-d", &format!("tcp.port=={port},soupbintcp")])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Every frame decodes as SoupBinTCP; OUCH messages are recognised inside.
    let summary = decode(&["-T", "fields", "-e", "frame.protocols"]);
    let frames: Vec<&str> = summary.lines().collect();
    assert!(frames.len() > 20, "{summary}");
    assert!(frames.iter().all(|p| p.contains("soupbintcp")), "{summary}");
    assert!(
        frames.iter().filter(|p| p.contains("ouch")).count() >= 10,
        "{summary}"
    );
    // No malformed packet and no expert warning or error anywhere in the capture.
    let verbose = decode(&["-V"]);
    assert!(!verbose.contains("Malformed"), "{verbose}");
    let expert = decode(&["-q", "-z", "expert,warn"]);
    assert!(
        !expert.contains("Warning") && !expert.contains("Error"),
        "{expert}"
    );
    // The order types the client saw, as tshark names them.
    let types = decode(&["-T", "fields", "-e", "ouch.packet_type"]);
    for wanted in ["O", "A", "E", "U", "C", "X", "J", "I", "S"] {
        assert!(
            // tshark prints character fields quoted: 'A','E'
            types
                .lines()
                .any(|line| line.split(',').any(|t| t == format!("'{wanted}'"))),
            "tshark saw no OUCH {wanted}: {types}"
        );
    }
}
