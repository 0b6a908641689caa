//! Where Keel's cgroups live: the choice between cgroup v1 and v2 on this machine, the
//! mount point of each controller, and Keel's root cgroup (`<mount>/<root>`).
//!
//! Choice, in order (cgroups-rs finds the mounts):
//! 1. `/sys/fs/cgroup` is a cgroup2 mount (a v2-only machine): v2, if its
//!    `cgroup.controllers` offers cpu, memory and pids;
//! 2. the v1 controllers cpu, cpuacct, memory, pids and freezer are all mounted: v1.
//!    This is the hybrid layout (v1 controllers plus an empty v2 hierarchy at
//!    `/sys/fs/cgroup/unified`), where cgroups-rs's `auto()` also picks v1;
//! 3. another cgroup2 mount offers the controllers (hybrid with controllers moved to
//!    v2): v2 there.
//!
//! Otherwise cgroups are not usable and the reason names what is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cgroups_rs::hierarchies::{self, V1};
use cgroups_rs::Controllers;

use crate::config::ContainerId;
use crate::error::IsolationError;

/// The cgroup version in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

/// A controller Keel uses. On v2, cpu accounting is part of `cpu` and freezing is core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Cpu,
    CpuAcct,
    Memory,
    Pids,
    Freezer,
}

impl Controller {
    /// Every controller, in the order a process joins them.
    pub const ALL: [Controller; 5] =
        [Controller::Cpu, Controller::CpuAcct, Controller::Memory, Controller::Pids, Controller::Freezer];

    fn index(self) -> usize {
        self as usize
    }

    fn v1_key(self) -> Controllers {
        match self {
            Controller::Cpu => Controllers::Cpu,
            Controller::CpuAcct => Controllers::CpuAcct,
            Controller::Memory => Controllers::Mem,
            Controller::Pids => Controllers::Pids,
            Controller::Freezer => Controllers::Freezer,
        }
    }
}

/// The v2 controllers Keel enables for its subtree.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The mount point of a v2-only machine's unified hierarchy.
const UNIFIED_MOUNT: &str = hierarchies::UNIFIED_MOUNTPOINT;

/// Where Keel's cgroups are on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// v1 or v2.
    pub version: Version,
    /// Mount point of each controller, indexed by [`Controller`] (v2: all the same).
    mounts: [PathBuf; 5],
    /// Keel's root cgroup, relative to each mount (e.g. `keel`).
    root: PathBuf,
}

impl Layout {
    /// Finds the hierarchy to use (see the module doc) with Keel's cgroups under `root`;
    /// the error says why none is usable. Reads mount tables only; creates nothing.
    pub fn detect(root: &Path) -> Result<Layout, String> {
        let v2_layout = |mount: PathBuf| Layout {
            version: Version::V2,
            mounts: std::array::from_fn(|_| mount.clone()),
            root: root.to_owned(),
        };
        if hierarchies::is_cgroup2_unified_mode() {
            let mount = PathBuf::from(UNIFIED_MOUNT);
            return match missing_v2_controllers(&mount) {
                None => Ok(v2_layout(mount)),
                Some(missing) => Err(format!("cgroup v2 at {UNIFIED_MOUNT} does not offer {missing}")),
            };
        }
        let v1 = V1::new();
        let mounts = Controller::ALL.map(|controller| v1.get_mount_point(controller.v1_key()));
        if mounts.iter().all(Option::is_some) {
            return Ok(Layout {
                version: Version::V1,
                mounts: mounts.map(Option::unwrap_or_default),
                root: root.to_owned(),
            });
        }
        let missing_v1: Vec<&str> = Controller::ALL
            .iter()
            .zip(&mounts)
            .filter(|(_, mount)| mount.is_none())
            .map(|(controller, _)| controller.name())
            .collect();
        let mut reasons = vec![format!("cgroup v1 lacks {}", missing_v1.join(", "))];
        for mount in cgroup2_mounts() {
            match missing_v2_controllers(&mount) {
                None => return Ok(v2_layout(mount)),
                Some(missing) => {
                    reasons.push(format!("cgroup v2 at {} does not offer {missing}", mount.display()))
                }
            }
        }
        Err(reasons.join("; "))
    }

    /// A v2 layout at `mount`, whatever controllers it offers (for tests of the v2
    /// mechanics on the hybrid layout's controller-less `/sys/fs/cgroup/unified`).
    #[cfg(test)]
    pub fn v2_at(mount: PathBuf, root: &Path) -> Layout {
        Layout { version: Version::V2, mounts: std::array::from_fn(|_| mount.clone()), root: root.to_owned() }
    }

    /// Creates Keel's root cgroup in every hierarchy (and on v2 enables the controllers
    /// for it and its children), then creates and removes a probe cgroup, which proves
    /// the hierarchies are writable.
    pub fn prepare(&self) -> Result<(), IsolationError> {
        if self.version == Version::V2 {
            let mount = &self.mounts[0];
            enable_v2_controllers(mount)?;
            let mut dir = mount.clone();
            for component in self.root.components() {
                dir.push(component);
                create_dir(&dir)?;
                enable_v2_controllers(&dir)?;
            }
        } else {
            for dir in self.root_dirs() {
                fs::create_dir_all(&dir).map_err(|error| {
                    IsolationError::io(format!("creating cgroup {}", dir.display()), error)
                })?;
            }
        }
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let probe = format!(".probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed));
        for dir in self.root_dirs() {
            let probe = dir.join(&probe);
            create_dir(&probe)?;
            fs::remove_dir(&probe)
                .map_err(|error| IsolationError::io(format!("removing cgroup {}", probe.display()), error))?;
        }
        Ok(())
    }

    /// Keel's root cgroup directory in each hierarchy (one on v2), without duplicates
    /// (co-mounted v1 controllers share a directory).
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        dedup(self.mounts.iter().map(|mount| mount.join(&self.root)))
    }

    /// The directory of container `id`'s cgroup for `controller`.
    pub fn dir(&self, controller: Controller, id: &ContainerId) -> PathBuf {
        self.mounts[controller.index()].join(&self.root).join(&id.0)
    }

    /// The directories of container `id`'s cgroups, without duplicates.
    pub fn container_dirs(&self, id: &ContainerId) -> Vec<PathBuf> {
        dedup(Controller::ALL.iter().map(|controller| self.dir(*controller, id)))
    }

    /// The ids of the containers found under the root cgroup in any hierarchy, sorted.
    pub fn list_containers(&self) -> Result<Vec<ContainerId>, IsolationError> {
        let mut ids = Vec::new();
        for dir in self.root_dirs() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(IsolationError::io(format!("listing cgroup {}", dir.display()), error))
                }
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false);
                if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                    if !name.starts_with(".probe-") {
                        ids.push(ContainerId(name.to_owned()));
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The containerizer's name for this version.
    pub fn name(&self) -> &'static str {
        match self.version {
            Version::V1 => "cgroups-v1",
            Version::V2 => "cgroups-v2",
        }
    }

    /// One line for the agent's start-up log.
    pub fn describe(&self) -> String {
        match self.version {
            Version::V1 => format!(
                "cgroups-v1 (cpu, cpuacct, memory, pids, freezer) under {}",
                self.root_dirs().iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            Version::V2 => format!(
                "cgroups-v2 (cpu, memory, pids; freeze and kill) under {}",
                self.mounts[0].join(&self.root).display()
            ),
        }
    }
}

impl Controller {
    /// The controller's name in the kernel.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// Every cgroup2 mount of this process, other than `/sys/fs/cgroup`.
fn cgroup2_mounts() -> Vec<PathBuf> {
    let Ok(mounts) = procfs::process::Process::myself().and_then(|me| me.mountinfo()) else {
        return Vec::new();
    };
    mounts
        .into_iter()
        .filter(|mount| mount.fs_type == "cgroup2" && mount.mount_point != Path::new(UNIFIED_MOUNT))
        .map(|mount| mount.mount_point)
        .collect()
}

/// The v2 controllers Keel needs that `mount` does not offer, as a list, or `None`.
fn missing_v2_controllers(mount: &Path) -> Option<String> {
    let offered = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let missing: Vec<&str> = V2_CONTROLLERS.iter().copied().filter(|c| !offered.contains(c)).collect();
    if missing.is_empty() {
        return None;
    }
    let listed = if offered.is_empty() { "none".to_owned() } else { offered.join(" ") };
    Some(format!("{} (cgroup.controllers: {listed})", missing.join(", ")))
}

/// Enables Keel's v2 controllers for the children of `dir`.
fn enable_v2_controllers(dir: &Path) -> Result<(), IsolationError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&path).unwrap_or_default();
    for controller in V2_CONTROLLERS {
        if enabled.split_whitespace().any(|c| c == controller) {
            continue;
        }
        fs::write(&path, format!("+{controller}")).map_err(|error| {
            IsolationError::io(format!("enabling {controller} in {}", path.display()), error)
        })?;
    }
    Ok(())
}

/// Creates one cgroup directory; an existing one is fine.
fn create_dir(dir: &Path) -> Result<(), IsolationError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(IsolationError::io(format!("creating cgroup {}", dir.display()), error)),
    }
}

/// `paths` without duplicates, in first-seen order.
fn dedup(paths: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut unique: Vec<PathBuf> = Vec::new();
    for path in paths {
        if !unique.contains(&path) {
            unique.push(path);
        }
    }
    unique
}
