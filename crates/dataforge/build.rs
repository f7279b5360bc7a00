//! The installed binary finds `libduckdb.so` beside itself or in `../lib` (where `scripts/install`
//! puts it), with no `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN:$ORIGIN/../lib");
}
