//! What an agent offers when `--resources` does not say: the machine's cpus, memory
//! and work-dir disk (detected by keel-isolation) less what the system keeps, and the
//! default port range.

use std::path::Path;

use crate::resources::{Resources, ResourcesError};

/// Memory kept back for the system, like Mesos: 1 GiB, or half on small machines.
fn usable_mem_mb(total_mb: f64) -> f64 {
    if total_mb >= 2048.0 {
        total_mb - 1024.0
    } else {
        total_mb / 2.0
    }
}

/// Detects the machine's resources, then applies `overrides` (Mesos text syntax):
/// every resource name present in the overrides replaces the detected one.
pub fn agent_resources(work_dir: &Path, overrides: Option<&str>) -> Result<Resources, ResourcesError> {
    let machine = keel_isolation::detect_resources(work_dir);
    let cpus = machine.cpus;
    let mem_total_mb = machine.mem_mb as f64;
    let disk_mb = machine.disk_mb as f64;
    // Disk kept for the system, like Mesos: 5 GiB, or half on small filesystems.
    let disk_mb = (disk_mb - 5120.0).max(disk_mb / 2.0).floor();
    let detected: Resources = format!(
        "cpus:{cpus};mem:{};disk:{disk_mb};ports:[31000-32000]",
        usable_mem_mb(mem_total_mb).floor().max(0.0)
    )
    .parse()?;
    let Some(overrides) = overrides else { return Ok(detected) };
    let overrides: Resources = overrides.parse()?;
    let overridden = overrides.names();
    let kept = detected.filter(|r| !overridden.contains(r.name()));
    Ok(kept + overrides)
}

/// Parses `--attributes` (`rack:a;zone:1`).
pub fn parse_attributes(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) =
            pair.split_once(':').ok_or_else(|| format!("attribute {pair:?} is not key:value"))?;
        if key.trim().is_empty() {
            return Err(format!("attribute {pair:?} has an empty name"));
        }
        out.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_finds_cpus_and_memory_and_overrides_replace_by_name() {
        let dir = std::env::temp_dir();
        let detected = agent_resources(&dir, None).unwrap();
        assert!(detected.cpus() >= 1.0);
        assert!(detected.mem_mb() > 0.0);
        let overridden = agent_resources(&dir, Some("cpus:3;gpus:1")).unwrap();
        assert_eq!(overridden.cpus(), 3.0);
        assert_eq!(overridden.gpus(), 1.0);
        assert_eq!(overridden.mem_mb(), detected.mem_mb());
        assert!(agent_resources(&dir, Some("cpus:-1")).is_err());
    }

    #[test]
    fn attributes_parse() {
        let attributes = parse_attributes("rack:a; zone:1").unwrap();
        assert_eq!(attributes["rack"], "a");
        assert_eq!(attributes["zone"], "1");
        assert!(parse_attributes("rack").is_err());
    }
}
