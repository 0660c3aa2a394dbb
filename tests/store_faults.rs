//! The durable store on a disk that fills up: a real, small tmpfs (tests run as root). Every
//! add acknowledged before, during and after the disk was full is present after reopening,
//! the failed ones are not, and the store takes writes again once space is freed.
use lethe::forget::mutation::Mutation;
use lethe::forget::store::{Rollback, Store};
use lethe::forget::{Entry, Kind};
use std::path::Path;
use std::process::Command;

struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn add(id: usize) -> Mutation {
    let entry = Entry {
        id: format!("e{id}"),
        set: "s".into(),
        kind: Kind::Term,
        // About 1 KiB a record, so a 64 KiB disk fills in a few dozen adds.
        text: format!("term {id} {}", "x".repeat(1000)),
        aliases: vec![],
        term_type: None,
        fingerprints: None,
    };
    Mutation::AddEntries { set: "s".into(), entries: vec![entry] }
}

#[test]
fn a_full_disk_refuses_writes_loses_no_acknowledged_add_and_recovers_when_space_is_freed() {
    let disk = Tmpfs::mount("64k");
    let data = disk.path().join("data");
    let mut store = Store::open(&data, Rollback::Refuse).unwrap();
    // Leave room for a few records, then fill the rest.
    std::fs::write(disk.path().join("filler"), vec![0u8; 40 << 10]).unwrap();
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for id in 0..60 {
        match store.commit(&add(id)) {
            Ok(_) => acknowledged.push(id),
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("writing the forget store") && !msg.contains("xxxx"), "{msg}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0 && !acknowledged.is_empty(),
        "the disk filled: {} ok, {refused} refused",
        acknowledged.len()
    );
    // Space comes back: writes succeed again and land after the last good record.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    for id in 100..105 {
        store.commit(&add(id)).unwrap();
        acknowledged.push(id);
    }
    drop(store);
    let store = Store::open(&data, Rollback::Refuse).unwrap();
    let ids: Vec<String> = store.sets()["s"].entries.keys().cloned().collect();
    let mut expected: Vec<String> = acknowledged.iter().map(|id| format!("e{id}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(store.sequence(), acknowledged.len() as u64);
}
