//! Build script: generates the C header from `src/ffi/` and sets the shared object's
//! SONAME and exported symbols.
//!
//! The generated header is written to `$OUT_DIR/rmqraft.h` on every build. The committed
//! copy `include/rmqraft.h` is only rewritten when `RMQRAFT_UPDATE_HEADER=1`; with
//! `RMQRAFT_CHECK_HEADER=1` a stale committed copy fails the build (the unit test
//! `ffi::tests::committed_header_is_current` checks the same in every test run).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in [
        "src/ffi",
        "cbindgen.toml",
        "include/rmqraft.h",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=RMQRAFT_UPDATE_HEADER");
    println!("cargo:rerun-if-env-changed=RMQRAFT_CHECK_HEADER");

    link_args(&crate_dir);
    let header = generate_header(&crate_dir);
    fs::write(out_dir.join("rmqraft.h"), &header).expect("write $OUT_DIR/rmqraft.h");

    let committed_path = crate_dir.join("include/rmqraft.h");
    let committed = fs::read_to_string(&committed_path).unwrap_or_default();
    if committed == header {
        return;
    }
    if env::var_os("RMQRAFT_UPDATE_HEADER").is_some_and(|v| v == "1") {
        fs::create_dir_all(crate_dir.join("include")).expect("create include/");
        fs::write(&committed_path, &header).expect("write include/rmqraft.h");
    } else if env::var_os("RMQRAFT_CHECK_HEADER").is_some_and(|v| v == "1") {
        panic!("include/rmqraft.h differs from the header generated from src/ffi; run `RMQRAFT_UPDATE_HEADER=1 cargo build` and commit it");
    } else {
        println!(
            "cargo:warning=include/rmqraft.h is stale; run `RMQRAFT_UPDATE_HEADER=1 cargo build`"
        );
    }
}

fn link_args(crate_dir: &std::path::Path) {
    // Only the shared object: the staticlib and rlib take no link arguments.
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librmqraft.so.0");
        let map = crate_dir.join("src/ffi/exports.map");
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            map.display()
        );
    }
}

fn generate_header(crate_dir: &std::path::Path) -> String {
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let part = |name: &str| env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
    config.after_includes = Some(format!(
        "\n/** The version of the library this header belongs to (rmqraft_version() tells the loaded one). */\n\
         #define RMQRAFT_VERSION_MAJOR {}\n\
         /** See RMQRAFT_VERSION_MAJOR. */\n\
         #define RMQRAFT_VERSION_MINOR {}\n\
         /** See RMQRAFT_VERSION_MAJOR. */\n\
         #define RMQRAFT_VERSION_PATCH {}\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    ));
    let mut bytes = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("generate the C header from src/ffi")
        .write(&mut bytes);
    String::from_utf8(bytes).expect("the header is UTF-8")
}
