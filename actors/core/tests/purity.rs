//! The cores stay pure by construction: neither they nor the crates under them
//! (protocol types, messages) nor the simulator depend on an async runtime, an
//! actor system, the kernel's node or the machine's resources. `cargo tree` says
//! what they depend on; this test fails when one of those creeps in.

use std::collections::BTreeSet;

/// Crates a pure crate must not reach, directly or through another.
const FORBIDDEN: [&str; 10] = [
    "actix",
    "actix-rt",
    "tokio",
    "keel-kernel",
    "keel-actors",
    "keel-isolation",
    "etcd-client",
    "procfs",
    "cgroups-rs",
    "mio",
];

#[test]
fn the_pure_crates_depend_on_no_runtime_actor_system_or_node() {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    for package in ["keel-message", "keel-proto", "keel-core", "keel-sim"] {
        let output = std::process::Command::new(cargo)
            .args(["tree", "--offline", "--manifest-path", manifest, "-p", package])
            .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
        let tree = String::from_utf8(output.stdout).expect("utf-8");
        let crates: BTreeSet<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
        assert!(crates.contains(package), "{package} is not in its own tree: {tree}");
        let impure: Vec<&&str> = FORBIDDEN.iter().filter(|name| crates.contains(**name)).collect();
        assert!(impure.is_empty(), "{package} depends on {impure:?}");
    }
}
