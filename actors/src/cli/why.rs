//! `keel why FRAMEWORK`: the allocator's explanation of why a framework is (or is
//! not) getting offers, from `GET /allocator/explain?framework=ID`.

/// Fetches and returns the explanation text.
pub fn run(master: &str, framework: &str) -> anyhow::Result<String> {
    if framework.is_empty() || !framework.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        anyhow::bail!("{framework:?} is not a framework id (see the frameworks in `keel ps` or /state)");
    }
    let reply = super::http::get_json(master, &format!("/allocator/explain?framework={framework}"))?;
    let text = reply["explanation"].as_str().ok_or_else(|| anyhow::anyhow!("unexpected reply: {reply}"))?;
    Ok(text.to_string())
}
