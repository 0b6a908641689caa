//! `ResourcesError`: why a resource text, value, role or serialised entry was rejected.

use super::value::ValueKind;

/// Why resources could not be parsed, deserialised or built.
///
/// `name` fields hold the resource's name, `entry` fields the offending entry of the text
/// syntax (or the name, for deserialised entries), so that messages point at the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// An entry has nothing before its `(` or `:`, as in `:4`.
    #[error("resource `{entry}` has an empty name")]
    EmptyName {
        /// The entry as written.
        entry: String,
    },
    /// A name has characters outside `[A-Za-z0-9_.-]` or is longer than [`super::MAX_NAME_LEN`].
    #[error("invalid resource name `{name}`: use at most 128 of A-Z a-z 0-9 _ . -")]
    InvalidName {
        /// The name as written.
        name: String,
    },
    /// A scalar value is not a number, as in `cpus:abc`.
    #[error("resource `{name}` has value `{value}`, which is not a number")]
    InvalidNumber {
        /// The resource's name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A scalar value is below zero, as in `cpus:-1`.
    #[error("resource `{name}` has negative value `{value}`")]
    NegativeScalar {
        /// The resource's name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A scalar value is NaN or infinite, as in `cpus:inf`.
    #[error("resource `{name}` has value `{value}`, which is not finite")]
    NonFiniteScalar {
        /// The resource's name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A scalar value exceeds [`super::MAX_SCALAR_MILLI`] thousandths.
    #[error("resource `{name}` has value `{value}`, above the limit of 1e12")]
    ScalarTooLarge {
        /// The resource's name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A range is malformed, has a bound that is not a `u64`, or starts after it ends, as in
    /// `ports:[5-1]`. Overlapping ranges are fine: they are coalesced.
    #[error("resource `{name}` has invalid range `{range}`: expected `begin-end` with begin <= end")]
    InvalidRange {
        /// The resource's name.
        name: String,
        /// The range as written.
        range: String,
    },
    /// A role is not `*` nor a `/`-separated path of valid segments (see [`super::validate_role`]).
    #[error("invalid role `{role}`: {reason}")]
    InvalidRole {
        /// The role as written.
        role: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A dynamic reservation's principal is empty, too long, has whitespace, control characters
    /// or one of `()[]{};,:=`, or is given without a dynamic reservation.
    #[error("invalid principal `{principal}`: {reason}")]
    InvalidPrincipal {
        /// The principal as written.
        principal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same name has scalar values and range values, as in `foo:1;foo:[1-2]`.
    #[error("resource `{name}` has both scalar and range values")]
    MixedKinds {
        /// The resource's name.
        name: String,
    },
    /// A well-known name has the wrong kind of value, as in `cpus:[1-2]` or `ports:4`.
    #[error("resource `{name}` must have a {expected} value")]
    WrongKind {
        /// The resource's name.
        name: String,
        /// The kind the name requires.
        expected: ValueKind,
    },
    /// Anything else the grammar does not accept, as in `cpus`, `cpus(eng:1` or `cpus:{a,b}`.
    #[error("cannot parse resource `{entry}`: {reason}")]
    Syntax {
        /// The entry as written.
        entry: String,
        /// What was expected.
        reason: &'static str,
    },
}
