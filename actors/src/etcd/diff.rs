//! The registry as etcd keys, without I/O: a [`RegistryState`] as one JSON value
//! per entity (decoding what etcd holds, with every bad value reported as
//! `Corrupt` naming its key), and a transaction's operations as the key changes of
//! one or more etcd transactions ([`plan`]).
//!
//! Planning applies the operations one by one with the shared pure logic
//! ([`RegistryState::apply`]); what each operation changed is found by comparing,
//! before and after it, only the entries it can touch (its agent's three places,
//! its framework, its role, or a whole category for `PruneUnreachable` and an
//! over-full `removed_frameworks`). Consecutive operations' changes are merged into
//! a chunk while it stays within the per-transaction limits; a chunk is closed at an
//! operation boundary, so every chunk boundary is the state after some prefix of the
//! operations. Only an operation whose own changes exceed the limits (a large
//! `PruneUnreachable`) is itself split, between unreachable agents.

use std::collections::{BTreeMap, BTreeSet};

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::registry::{
    AgentRecord, FrameworkRecord, GoneRecord, Operation, QuotaRecord, RegistryError, RegistryState,
    UnreachableRecord, MAX_REMOVED_FRAMEWORKS,
};
use serde::Serialize;

/// The registry format written in the `format` key.
pub(super) const FORMAT: u32 = 1;
/// The format key, relative to the registry prefix.
pub(super) const FORMAT_KEY: &str = "format";
/// The version key, relative to the registry prefix.
pub(super) const VERSION_KEY: &str = "version";

/// The kinds of entity, each in its own key directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Category {
    Agents,
    Unreachable,
    Gone,
    Frameworks,
    RemovedFrameworks,
    Weights,
    Quotas,
}

impl Category {
    const ALL: [Category; 7] = [
        Category::Agents,
        Category::Unreachable,
        Category::Gone,
        Category::Frameworks,
        Category::RemovedFrameworks,
        Category::Weights,
        Category::Quotas,
    ];

    fn directory(self) -> &'static str {
        match self {
            Category::Agents => "agents/",
            Category::Unreachable => "unreachable/",
            Category::Gone => "gone/",
            Category::Frameworks => "frameworks/",
            Category::RemovedFrameworks => "removed_frameworks/",
            Category::Weights => "weights/",
            Category::Quotas => "quotas/",
        }
    }

    /// The entity's key, relative to the registry prefix.
    fn key(self, id: &str) -> String {
        format!("{}{id}", self.directory())
    }

    /// The category and id of a relative key.
    fn of_key(key: &str) -> Option<(Category, &str)> {
        Category::ALL
            .into_iter()
            .find_map(|category| key.strip_prefix(category.directory()).map(|id| (category, id)))
    }
}

/// The encoded value of one entity, `None` if the state does not have it.
fn encode_entry(
    state: &RegistryState,
    category: Category,
    id: &str,
) -> Result<Option<Vec<u8>>, RegistryError> {
    let key = || category.key(id);
    match category {
        Category::Agents => state.agents.get(&AgentId::from(id)).map(|v| encode(&key(), v)).transpose(),
        Category::Unreachable => {
            state.unreachable.get(&AgentId::from(id)).map(|v| encode(&key(), v)).transpose()
        }
        Category::Gone => state.gone.get(&AgentId::from(id)).map(|v| encode(&key(), v)).transpose(),
        Category::Frameworks => {
            state.frameworks.get(&FrameworkId::from(id)).map(|v| encode(&key(), v)).transpose()
        }
        Category::RemovedFrameworks => {
            state.removed_frameworks.get(&FrameworkId::from(id)).map(|v| encode(&key(), v)).transpose()
        }
        Category::Weights => state.weights.get(id).map(|v| encode(&key(), v)).transpose(),
        Category::Quotas => state.quotas.get(id).map(|v| encode(&key(), v)).transpose(),
    }
}

/// Every entity of one category, by relative key.
fn encode_category(
    state: &RegistryState,
    category: Category,
) -> Result<BTreeMap<String, Vec<u8>>, RegistryError> {
    fn all<'a, V: Serialize + 'a>(
        category: Category,
        entries: impl Iterator<Item = (&'a str, &'a V)>,
    ) -> Result<BTreeMap<String, Vec<u8>>, RegistryError> {
        entries
            .map(|(id, value)| {
                let key = category.key(id);
                let bytes = encode(&key, value)?;
                Ok((key, bytes))
            })
            .collect()
    }
    match category {
        Category::Agents => all(category, state.agents.iter().map(|(id, v)| (id.as_str(), v))),
        Category::Unreachable => all(category, state.unreachable.iter().map(|(id, v)| (id.as_str(), v))),
        Category::Gone => all(category, state.gone.iter().map(|(id, v)| (id.as_str(), v))),
        Category::Frameworks => all(category, state.frameworks.iter().map(|(id, v)| (id.as_str(), v))),
        Category::RemovedFrameworks => {
            all(category, state.removed_frameworks.iter().map(|(id, v)| (id.as_str(), v)))
        }
        Category::Weights => all(category, state.weights.iter().map(|(id, v)| (id.as_str(), v))),
        Category::Quotas => all(category, state.quotas.iter().map(|(id, v)| (id.as_str(), v))),
    }
}

/// Every entity of the state, by relative key (not the format and version keys).
pub(super) fn encode_state(state: &RegistryState) -> Result<BTreeMap<String, Vec<u8>>, RegistryError> {
    let mut keys = BTreeMap::new();
    for category in Category::ALL {
        keys.extend(encode_category(state, category)?);
    }
    Ok(keys)
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(value)
        .map_err(|e| RegistryError::InvalidArgument(format!("{key} cannot be encoded: {e}")))
}

/// The JSON of the format and version keys.
pub(super) fn encode_number(number: u64) -> Vec<u8> {
    number.to_string().into_bytes()
}

/// What the registry's keys hold.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Decoded {
    pub(super) state: RegistryState,
    /// The `format` key's value, if present.
    pub(super) format: Option<u32>,
    /// The `version` key's value (0 if absent).
    pub(super) version: u64,
    /// How many keys there were.
    pub(super) keys: usize,
}

/// Decodes the registry from its keys (full keys, under `prefix`). Anything that
/// does not decode is `Corrupt`, naming the key.
pub(super) fn decode(
    entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    prefix: &str,
) -> Result<Decoded, RegistryError> {
    let mut decoded = Decoded::default();
    for (key, value) in entries {
        decoded.keys += 1;
        let Ok(key) = String::from_utf8(key.clone()) else {
            return Err(corrupt(&String::from_utf8_lossy(&key), "the key is not UTF-8"));
        };
        let Some(relative) = key.strip_prefix(prefix) else {
            return Err(corrupt(&key, format!("the key is not under {prefix}")));
        };
        match relative {
            FORMAT_KEY => decoded.format = Some(decode_json(&key, &value)?),
            VERSION_KEY => decoded.version = decode_json(&key, &value)?,
            _ => {
                let Some((category, id)) = Category::of_key(relative) else {
                    return Err(corrupt(&key, "not a registry key this version knows"));
                };
                decode_entry(&mut decoded.state, category, id, &value, &key)?;
            }
        }
    }
    let state = &decoded.state;
    let places: BTreeSet<&AgentId> =
        state.agents.keys().chain(state.unreachable.keys()).chain(state.gone.keys()).collect();
    if places.len() != state.agents.len() + state.unreachable.len() + state.gone.len() {
        let twice = state.agents.keys().chain(state.unreachable.keys()).find(|id| {
            state.gone.contains_key(*id)
                || (state.agents.contains_key(*id) && state.unreachable.contains_key(*id))
        });
        let id = twice.map(|id| id.to_string()).unwrap_or_default();
        return Err(RegistryError::Corrupt(format!(
            "{prefix}: agent {id} is in more than one of agents, unreachable, gone"
        )));
    }
    Ok(decoded)
}

/// Decodes one entity into `state`, checking that a record's own id is its key's.
fn decode_entry(
    state: &mut RegistryState,
    category: Category,
    id: &str,
    value: &[u8],
    key: &str,
) -> Result<(), RegistryError> {
    let same = |inner: Option<&str>| {
        if inner == Some(id) {
            Ok(())
        } else {
            Err(corrupt(key, format!("the record's id is {inner:?}")))
        }
    };
    match category {
        Category::Agents => {
            let record: AgentRecord = decode_json(key, value)?;
            same(record.info.id.as_ref().map(AgentId::as_str))?;
            state.agents.insert(AgentId::from(id), record);
        }
        Category::Unreachable => {
            let record: UnreachableRecord = decode_json(key, value)?;
            same(record.record.info.id.as_ref().map(AgentId::as_str))?;
            state.unreachable.insert(AgentId::from(id), record);
        }
        Category::Gone => {
            let record: GoneRecord = decode_json(key, value)?;
            state.gone.insert(AgentId::from(id), record);
        }
        Category::Frameworks => {
            let record: FrameworkRecord = decode_json(key, value)?;
            same(record.info.id.as_ref().map(FrameworkId::as_str))?;
            state.frameworks.insert(FrameworkId::from(id), record);
        }
        Category::RemovedFrameworks => {
            let removed_secs: f64 = decode_json(key, value)?;
            state.removed_frameworks.insert(FrameworkId::from(id), removed_secs);
        }
        Category::Weights => {
            let weight: f64 = decode_json(key, value)?;
            if !weight.is_finite() || weight <= 0.0 {
                return Err(corrupt(key, format!("weight {weight} is not finite and positive")));
            }
            state.weights.insert(id.to_string(), weight);
        }
        Category::Quotas => {
            let quota: QuotaRecord = decode_json(key, value)?;
            state.quotas.insert(id.to_string(), quota);
        }
    }
    Ok(())
}

fn decode_json<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

fn corrupt(key: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Corrupt(format!("{key}: {reason}"))
}

/// What one operation may change.
enum Scope {
    /// One entity.
    Entry(Category, String),
    /// Any entity of a category.
    All(Category),
}

/// Where `operation`, applied to `state`, may change entries (a superset).
fn scopes(operation: &Operation, state: &RegistryState) -> Vec<Scope> {
    let agent = |id: &str| {
        [Category::Agents, Category::Unreachable, Category::Gone]
            .into_iter()
            .map(|category| Scope::Entry(category, id.to_string()))
            .collect()
    };
    // Exhaustive on purpose: a new operation must say what it touches.
    match operation {
        Operation::AdmitAgent(record) | Operation::ReadmitAgent(record) => {
            record.info.id.as_ref().map(|id| agent(id.as_str())).unwrap_or_default()
        }
        Operation::MarkUnreachable { agent_id, .. }
        | Operation::MarkGone { agent_id, .. }
        | Operation::RemoveAgent { agent_id } => agent(agent_id.as_str()),
        Operation::PutFramework(record) => record
            .info
            .id
            .as_ref()
            .map(|id| vec![Scope::Entry(Category::Frameworks, id.to_string())])
            .unwrap_or_default(),
        Operation::RemoveFramework { framework_id, .. } => {
            let id = framework_id.to_string();
            let mut scopes = vec![
                Scope::Entry(Category::Frameworks, id.clone()),
                Scope::Entry(Category::RemovedFrameworks, id),
            ];
            let removed = &state.removed_frameworks;
            if removed.len() > MAX_REMOVED_FRAMEWORKS {
                scopes.push(Scope::All(Category::RemovedFrameworks));
            } else if removed.len() == MAX_REMOVED_FRAMEWORKS {
                // At the limit, adding one evicts the oldest (or the new one itself).
                if let Some((oldest, _)) = removed.iter().min_by(|a, b| a.1.total_cmp(b.1)) {
                    scopes.push(Scope::Entry(Category::RemovedFrameworks, oldest.to_string()));
                }
            }
            scopes
        }
        Operation::SetWeight { role, .. } => vec![Scope::Entry(Category::Weights, role.clone())],
        Operation::SetQuota { role, .. } | Operation::RemoveQuota { role } => {
            vec![Scope::Entry(Category::Quotas, role.clone())]
        }
        Operation::PruneUnreachable { .. } => vec![Scope::All(Category::Unreachable)],
    }
}

/// The encoded values of `scopes` in `state` (`None`: absent).
fn snapshot(
    state: &RegistryState,
    scopes: &[Scope],
) -> Result<BTreeMap<String, Option<Vec<u8>>>, RegistryError> {
    let mut values = BTreeMap::new();
    for scope in scopes {
        match scope {
            Scope::Entry(category, id) => {
                values.insert(category.key(id), encode_entry(state, *category, id)?);
            }
            Scope::All(category) => {
                values.extend(encode_category(state, *category)?.into_iter().map(|(k, v)| (k, Some(v))));
            }
        }
    }
    Ok(values)
}

/// One key's change: its value before and after (`None`: absent).
type Change = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// A key's value before a chunk and its latest value in it (`None`: absent).
type Entry = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The keys whose values differ between two snapshots of the same scopes.
fn changes(
    mut before: BTreeMap<String, Option<Vec<u8>>>,
    mut after: BTreeMap<String, Option<Vec<u8>>>,
) -> Vec<Change> {
    let keys: BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
    keys.into_iter()
        .filter_map(|key| {
            let old = before.remove(&key).flatten();
            let new = after.remove(&key).flatten();
            (old != new).then_some((key, old, new))
        })
        .collect()
}

/// The changes one etcd transaction writes: per key, its value before the chunk
/// and its latest value. Keys whose latest value is their first are no-ops.
#[derive(Debug, Default, Clone)]
pub(super) struct Chunk {
    entries: BTreeMap<String, Entry>,
    /// Keys that change.
    count: usize,
    /// Their keys' and new values' bytes.
    bytes: usize,
}

fn size(key: &str, value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len)
}

impl Chunk {
    /// The count and bytes the chunk would have with `changes` merged in.
    fn cost_with(&self, changes: &[Change]) -> (usize, usize) {
        let (mut count, mut bytes) = (self.count, self.bytes);
        for (key, _, new) in changes {
            if let Some((original, latest)) = self.entries.get(key) {
                if original != latest {
                    count -= 1;
                    bytes -= size(key, latest);
                }
                if original != new {
                    count += 1;
                    bytes += size(key, new);
                }
            } else {
                count += 1;
                bytes += size(key, new);
            }
        }
        (count, bytes)
    }

    fn merge(&mut self, changes: Vec<Change>) {
        (self.count, self.bytes) = self.cost_with(&changes);
        for (key, old, new) in changes {
            self.entries.entry(key).and_modify(|(_, latest)| *latest = new.clone()).or_insert((old, new));
        }
    }

    /// The writes: relative key and new value (`None`: delete), in key order.
    pub(super) fn writes(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.entries
            .iter()
            .filter(|(_, (original, latest))| original != latest)
            .map(|(key, (_, latest))| (key.as_str(), latest.as_deref()))
    }

    /// How many keys it changes.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Its writes in pieces of at most `max_changes` keys and (but for a single
    /// larger value) `max_bytes` bytes.
    fn split(self, max_changes: usize, max_bytes: usize) -> Vec<Chunk> {
        if self.count <= max_changes && self.bytes <= max_bytes {
            return vec![self];
        }
        let mut pieces = Vec::new();
        let mut piece = Chunk::default();
        for (key, (original, latest)) in self.entries {
            if original == latest {
                continue;
            }
            let cost = size(&key, &latest);
            if piece.count > 0 && (piece.count + 1 > max_changes || piece.bytes + cost > max_bytes) {
                pieces.push(std::mem::take(&mut piece));
            }
            piece.count += 1;
            piece.bytes += cost;
            piece.entries.insert(key, (original, latest));
        }
        if piece.count > 0 {
            pieces.push(piece);
        }
        pieces
    }
}

/// A transaction planned: the state after it, and its writes in chunks.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) state: RegistryState,
    pub(super) chunks: Vec<Chunk>,
}

/// Applies `operations` to (a copy of) `state` and plans the writes: chunks of at
/// most `max_changes` keys and about `max_bytes` bytes, cut at operation
/// boundaries (see the module header). Fails, with nothing planned, if any
/// operation fails or a new value would not read back.
pub(super) fn plan(
    state: &RegistryState,
    operations: &[Operation],
    max_changes: usize,
    max_bytes: usize,
) -> Result<Plan, RegistryError> {
    let max_changes = max_changes.max(1);
    let mut next = state.clone();
    let mut chunks = Vec::new();
    let mut current = Chunk::default();
    for operation in operations {
        let scopes = scopes(operation, &next);
        let before = snapshot(&next, &scopes)?;
        next.apply(operation)?;
        let after = snapshot(&next, &scopes)?;
        let changes = changes(before, after);
        if changes.is_empty() {
            continue;
        }
        let (count, bytes) = current.cost_with(&changes);
        if current.count > 0 && (count > max_changes || bytes > max_bytes) {
            chunks.push(std::mem::take(&mut current));
        }
        current.merge(changes);
    }
    if current.count > 0 {
        chunks.push(current);
    }
    let chunks: Vec<Chunk> =
        chunks.into_iter().flat_map(|chunk| chunk.split(max_changes, max_bytes)).collect();
    for (key, value) in chunks.iter().flat_map(Chunk::writes) {
        if let Some(value) = value {
            check_reads_back(key, value)?;
        }
    }
    debug_assert!(
        composes(state, &chunks).ok() == encode_state(&next).ok(),
        "the planned writes do not turn the old state into the new one"
    );
    Ok(Plan { state: next, chunks })
}

/// A value the next leader could not decode (serde_json writes NaN as `null`) is
/// refused before anything is written.
fn check_reads_back(key: &str, value: &[u8]) -> Result<(), RegistryError> {
    let Some((category, id)) = Category::of_key(key) else {
        return Err(RegistryError::InvalidArgument(format!("{key} is not a registry key")));
    };
    decode_entry(&mut RegistryState::default(), category, id, value, key)
        .map_err(|e| RegistryError::InvalidArgument(format!("{key} would not read back: {e}")))
}

/// The keys of `state` after the chunks' writes: what etcd holds once they commit.
pub(super) fn composes(
    state: &RegistryState,
    chunks: &[Chunk],
) -> Result<BTreeMap<String, Vec<u8>>, RegistryError> {
    let mut keys = encode_state(state)?;
    for (key, value) in chunks.iter().flat_map(Chunk::writes) {
        match value {
            Some(value) => keys.insert(key.to_string(), value.to_vec()),
            None => keys.remove(key),
        };
    }
    Ok(keys)
}
