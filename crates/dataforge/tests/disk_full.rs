//! A full disk (issue 13, item 7): writes that cannot be stored answer 507 naming the file, reads
//! keep answering from what is stored, and writes resume by themselves once space is freed. The
//! disk is a small tmpfs the test mounts, so it runs as root only (skipped with a message
//! otherwise).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::Server;

const WR: &str = "/v1/datasets/well_registry";

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file, to the last block; answers the file.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let zeros = vec![0u8; chunk];
            while file.write_all(&zeros).is_ok() {}
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn well(code: i64) -> Value {
    json!({"well_code": code, "well_name": format!("W-{code}"), "field_code": 1 + code % 5})
}

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers() {
    let Some(disk) = SmallDisk::mount(64) else {
        eprintln!("skipped: mounting a tmpfs needs root (this test checks a full disk)");
        return;
    };
    let db = disk.path().join("full.duckdb");
    let server = Server::start(&db);
    let first: Vec<Value> = (1..=100).map(well).collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(first))
            .status,
        201
    );
    // a read appends the deferred records to the table before the disk fills
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(100));
    let filler = disk.fill();

    let bulk: Vec<Value> = (1000..21_000).map(well).collect();
    let refused = server.post_json(&format!("{WR}/records"), &json!(bulk));
    assert_eq!(refused.status, 507, "{refused:?}");
    assert_eq!(refused.content_type, "application/problem+json");
    let named = refused.body["path"].as_str().unwrap_or_default().to_owned();
    assert!(
        named.starts_with(disk.path().to_str().unwrap()),
        "the answer names a file on the full disk: {refused:?}"
    );
    // reads answer from what is stored, on every path
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(100));
    assert_eq!(
        server.get(&format!("{WR}/records/42")).body["well_code"],
        json!(42)
    );
    let page = server.get(&format!("{WR}/records?field_code=eq.2&limit=5"));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["items"].as_array().unwrap().len(), 5);

    // space comes back: writes resume without a restart, and nothing refused was half written
    std::fs::remove_file(filler).unwrap();
    let accepted = server.post_json(&format!("{WR}/records"), &json!(bulk));
    assert_eq!(accepted.status, 201, "{accepted:?}");
    assert_eq!(accepted.body["inserted"], json!(20_000));
    assert_eq!(
        server.get(&format!("{WR}/count")).body["count"],
        json!(20_100)
    );
    server.stop();
}
