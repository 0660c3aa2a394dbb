//! The offline commands: `lethe check` (stdin or JSON Lines) and clear errors on bad input.
use std::io::Write;
use std::process::{Command, Stdio};

fn lethe(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/forget.jsonl");

#[test]
fn check_reads_stdin_and_prints_json() {
    let text = "FOUR SCORE and seven years ago our fathers brought forth on this continent, a new nation";
    let (ok, stdout, stderr) = lethe(&["check", "--forget", LIST, "--no-semantic"], text);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["matched"], true);
    assert_eq!(v["matches"][0]["entry_id"], "gettysburg");
    assert_eq!(v["matches"][0]["layer"], "NGRAM");
    assert_eq!(v["matches"][0]["char_start"], 0);
}

#[test]
fn check_jsonl_prints_one_line_per_input() {
    let input = "{\"text\": \"call +1 555 013 4477 now\"}\n\n{\"text\": \"nothing to see\"}\n";
    let (ok, stdout, stderr) = lethe(&["check", "--forget", LIST, "--no-semantic", "--jsonl"], input);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["matches"][0]["entry_id"], "phone-voss");
    assert_eq!(lines[0]["matches"][0]["layer"], "TERM");
    assert_eq!(lines[1]["matched"], false);
}

#[test]
fn a_bad_forget_list_is_a_clear_error_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("bad.jsonl");
    std::fs::write(
        &list,
        "{\"id\": \"a\", \"set\": \"s\", \"kind\": \"term\", \"text\": \"TOP SECRET NAME\"}\n{broken\n",
    )
    .unwrap();
    let (ok, _, stderr) = lethe(&["check", "--forget", list.to_str().unwrap(), "--no-semantic"], "x");
    assert!(!ok);
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");
    let (ok, _, stderr) = lethe(&["check", "--forget", LIST, "--no-semantic", "--jsonl"], "{\"txt\": 1}\n");
    assert!(!ok);
    assert!(stderr.contains("line 1"), "{stderr}");
}

/// A reader that stops early (`lethe check --jsonl ... | head -1`) ends the command quietly, as it
/// ends any Unix tool, instead of a panic on the broken pipe.
#[test]
#[cfg(unix)]
fn closed_stdout_ends_the_command_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["check", "--forget", LIST, "--no-semantic", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line is written
    let input = "{\"text\": \"nothing to see\"}\n".repeat(100);
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?} {stderr}", out.status);
}
