//! The harness on a tiny workload, checking itself: every system it can start here delivers
//! every message, in order. No timing is asserted.

#![allow(clippy::unwrap_used)]

#[test]
fn the_harness_runs_and_finds_no_loss() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signalbox-bench"))
        .args(["--smoke", "--no-pin", "--latency-rounds", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("| 1→3 broadcast, 64 B |"), "{stdout}");
    assert!(
        stdout.contains("Every run: no message lost, none out of order."),
        "{stdout}"
    );
    for backend in ["signalbox", "quinn"] {
        assert!(
            stderr.contains(&format!("{backend:<9} 1→3 broadcast, 64 B")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("scale: 50 clients joined"), "{stderr}");
    // The fixed-rate latency in two alternated rounds: one row per system, and each round.
    assert!(
        stdout.contains("| signalbox 1→10 broadcast, 64 B | 1000/s | 2 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| 1000/s, round "), "{stdout}");
    assert!(stdout.contains("\n| 2 | "), "{stdout}");
}
