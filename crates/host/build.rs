//! Builds the container init as a static executable and leaves it in
//! `OUT_DIR/hutch-init`, where `src/init_binary.rs` embeds it.
//!
//! The init crate is built by a nested cargo with its own target directory
//! (sharing the outer one would wait forever on its lock), the `init`
//! profile, and `+crt-static` passed to the final rustc invocation only
//! (with, on x86_64, `--cfg hutch_nolibc` and the flags of an executable
//! without a C library).
//! Everything the outer build set for itself is removed from the nested
//! build's environment.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SCRUBBED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "OUT_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "NUM_JOBS",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let crates = manifest_dir.parent().expect("crates/host has a parent");
    let init_manifest = crates.join("init").join("Cargo.toml");
    for watched in [
        "init/src",
        "init/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", crates.join(watched).display());
    }
    // The workspace manifest holds init's build profile.
    println!(
        "cargo:rerun-if-changed={}",
        crates
            .parent()
            .expect("workspace root")
            .join("Cargo.toml")
            .display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        crates
            .parent()
            .expect("workspace root")
            .join("Cargo.lock")
            .display()
    );

    let target_dir = out_dir.join("init-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("rustc")
        .arg("--manifest-path")
        .arg(&init_manifest)
        .args(["--bin", "hutch-init", "--profile", "init", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--", "-C", "target-feature=+crt-static"]);
    // On x86_64 init links no C library: its own entry point and heap
    // (crates/init/src/rt.rs), in a static executable that needs no
    // relocation. Elsewhere it is a static glibc program.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        command.args([
            "--cfg",
            "hutch_nolibc",
            "-C",
            "relocation-model=static",
            "-C",
            "link-arg=-nostartfiles",
        ]);
    }
    for (key, _) in env::vars_os() {
        let key_str = key.to_string_lossy();
        if SCRUBBED.contains(&key_str.as_ref())
            || key_str.starts_with("CARGO_CFG_")
            || key_str.starts_with("CARGO_FEATURE_")
        {
            command.env_remove(&key);
        }
    }
    let status = command
        .status()
        .expect("cannot run cargo to build the container init");
    assert!(
        status.success(),
        "building the container init (crates/init) failed: {status}"
    );
    let built = target_dir.join("init").join("hutch-init");
    std::fs::copy(&built, out_dir.join("hutch-init"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}
