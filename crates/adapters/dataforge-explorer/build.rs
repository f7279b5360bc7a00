//! Builds the explorer's page from `web/` with npm (`npm ci` once, then `node build.mjs`) into
//! OUT_DIR, and writes the table of assets that `src/lib.rs` embeds. npm is needed already to
//! fetch the prebuilt DuckDB library, so a fresh clone builds with the same two README commands.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

const ASSETS: [(&str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
];

fn main() {
    let web = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("explorer");
    for watched in ["src", "package.json", "package-lock.json", "build.mjs"] {
        println!("cargo:rerun-if-changed={}", web.join(watched).display());
    }
    if needs_install(&web) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
            &web,
        );
    }
    run(Command::new("node").arg("build.mjs").arg(&out), &web);
    let mut table = String::from("&[\n");
    for (name, content_type) in ASSETS {
        let bytes = fs::read(out.join(name)).expect("the build writes every asset");
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        let path = out.join(name);
        writeln!(
            table,
            "    Asset {{ name: {name:?}, content_type: {content_type:?}, etag: \"W/\\\"{:016x}\\\"\", bytes: include_bytes!({path:?}) }},",
            hasher.finish(),
        )
        .expect("writing to a String");
    }
    table.push(']');
    fs::write(out.join("assets.rs"), table).expect("OUT_DIR is writable");
}

/// Whether `node_modules` is missing or older than the lockfile.
fn needs_install(web: &Path) -> bool {
    let modified = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(web.join("node_modules/.package-lock.json")),
        modified(web.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    }
}

fn run(command: &mut Command, dir: &Path) {
    let shown = format!("{command:?}");
    let status = command.current_dir(dir).status().unwrap_or_else(|e| {
        panic!("the explorer's page is built with Node.js and npm: could not run {shown}: {e}")
    });
    assert!(
        status.success(),
        "building the explorer's page: {shown} failed ({status})"
    );
}
