//! `keel why FRAMEWORK`: the allocator's explanation of why a framework is (or is
//! not) getting offers. The framework is looked up with the operator API
//! (GET_FRAMEWORKS); the explanation comes from `GET /allocator/explain?framework=ID`,
//! Keel's own endpoint (Mesos has nothing like it).

/// Fetches and returns the explanation text.
pub fn run(master: &str, framework: &str) -> anyhow::Result<String> {
    if framework.is_empty() || !framework.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        anyhow::bail!("{framework:?} is not a framework id (see the frameworks in `keel ps` or /state)");
    }
    let frameworks = super::http::call(master, &serde_json::json!({ "type": "GET_FRAMEWORKS" }))?;
    let known = frameworks["get_frameworks"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["framework_info"]["id"]["value"] == framework);
    if !known {
        anyhow::bail!("no framework {framework} is subscribed to the master at {master} (see `keel ps`)");
    }
    let reply = super::http::get_json(master, &format!("/allocator/explain?framework={framework}"))?;
    let text = reply["explanation"].as_str().ok_or_else(|| anyhow::anyhow!("unexpected reply: {reply}"))?;
    Ok(text.to_string())
}
