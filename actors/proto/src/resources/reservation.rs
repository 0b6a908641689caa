//! Reservations: whether a resource is unreserved (role `*`) or reserved for a role, and
//! hierarchical role names (`eng/ml/training`) with their validation.

use std::fmt;
use std::sync::Arc;

use super::ResourcesError;

/// The role of unreserved resources.
pub const UNRESERVED_ROLE: &str = "*";

/// The longest role, and the longest principal, in bytes.
pub const MAX_ROLE_LEN: usize = 256;

/// Who may use a resource. Ordered unreserved first, then static, then dynamic, each by role.
///
/// A reservation built by hand is checked when it enters a [`super::Resource`]: roles must
/// pass [`validate_role`] and must not be `*`; principals must pass [`validate_principal`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Reservation {
    /// Usable by any role (role `*`).
    #[default]
    Unreserved,
    /// Reserved for `role` by the agent's configuration.
    Static {
        /// The role, never `*`.
        role: Arc<str>,
    },
    /// Reserved for `role` by an operator or framework at run time.
    Dynamic {
        /// The role, never `*`.
        role: Arc<str>,
        /// Who made the reservation, if known.
        principal: Option<Arc<str>>,
    },
}

impl Reservation {
    /// A static reservation for `role`, or `Unreserved` for `*`.
    pub fn for_role(role: &str) -> Result<Reservation, ResourcesError> {
        validate_role(role)?;
        Ok(if role == UNRESERVED_ROLE {
            Reservation::Unreserved
        } else {
            Reservation::Static { role: role.into() }
        })
    }

    /// The role: `*` when unreserved.
    pub fn role(&self) -> &str {
        match self {
            Reservation::Unreserved => UNRESERVED_ROLE,
            Reservation::Static { role } | Reservation::Dynamic { role, .. } => role,
        }
    }

    /// Whether this is `Unreserved`.
    pub fn is_unreserved(&self) -> bool {
        matches!(self, Reservation::Unreserved)
    }

    /// Whether `role` may use these resources: they are unreserved, or reserved for `role`
    /// or for one of its ancestors (a reservation for `eng` is usable by `eng/ml`).
    pub fn is_usable_by(&self, role: &str) -> bool {
        match self {
            Reservation::Unreserved => true,
            Reservation::Static { role: reserved } | Reservation::Dynamic { role: reserved, .. } => {
                is_self_or_ancestor(reserved, role)
            }
        }
    }

    /// Checks the role (valid, not `*`) and the principal.
    pub fn validate(&self) -> Result<(), ResourcesError> {
        let (role, principal) = match self {
            Reservation::Unreserved => return Ok(()),
            Reservation::Static { role } => (role, None),
            Reservation::Dynamic { role, principal } => (role, principal.as_deref()),
        };
        validate_role(role)?;
        if &**role == UNRESERVED_ROLE {
            return Err(ResourcesError::InvalidRole {
                role: role.to_string(),
                reason: "`*` is the unreserved role and cannot be reserved for",
            });
        }
        principal.map_or(Ok(()), validate_principal)
    }
}

/// How the text syntax writes a reservation inside the parentheses: `eng`,
/// `eng,dynamic` or `eng,dynamic=alice`; `*` when unreserved.
impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reservation::Unreserved => f.write_str(UNRESERVED_ROLE),
            Reservation::Static { role } => f.write_str(role),
            Reservation::Dynamic { role, principal: None } => write!(f, "{role},dynamic"),
            Reservation::Dynamic { role, principal: Some(principal) } => {
                write!(f, "{role},dynamic={principal}")
            }
        }
    }
}

/// Whether `ancestor` is `role` or one of its ancestors in the role tree (`eng` for
/// `eng/ml`, not for `engineering`). `*` is nobody's ancestor but its own.
pub fn is_self_or_ancestor(ancestor: &str, role: &str) -> bool {
    match role.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || (ancestor != UNRESERVED_ROLE && rest.starts_with('/')),
        None => false,
    }
}

/// Checks a role name: `*` (unreserved), or at most [`MAX_ROLE_LEN`] bytes of non-empty
/// `/`-separated segments of `[A-Za-z0-9_.-]` where no segment is `.` or `..` or starts
/// with `-` (as Mesos requires).
pub fn validate_role(role: &str) -> Result<(), ResourcesError> {
    let invalid = |reason| Err(ResourcesError::InvalidRole { role: role.to_string(), reason });
    if role == UNRESERVED_ROLE {
        return Ok(());
    }
    if role.is_empty() {
        return invalid("roles cannot be empty");
    }
    if role.len() > MAX_ROLE_LEN {
        return invalid("roles are at most 256 bytes");
    }
    for segment in role.split('/') {
        if segment.is_empty() {
            return invalid("roles cannot start or end with `/` or contain `//`");
        }
        if segment == "." || segment == ".." {
            return invalid("role segments cannot be `.` or `..`");
        }
        if segment.starts_with('-') {
            return invalid("role segments cannot start with `-`");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return invalid("roles may only contain A-Z a-z 0-9 _ . - and `/` between segments");
        }
    }
    Ok(())
}

/// Checks a principal: at most [`MAX_ROLE_LEN`] bytes, non-empty, without whitespace,
/// control characters or any of `()[]{};,:=` (which the text syntax uses).
pub fn validate_principal(principal: &str) -> Result<(), ResourcesError> {
    let invalid = |reason| Err(ResourcesError::InvalidPrincipal { principal: principal.to_string(), reason });
    if principal.is_empty() {
        return invalid("principals cannot be empty");
    }
    if principal.len() > MAX_ROLE_LEN {
        return invalid("principals are at most 256 bytes");
    }
    if principal.chars().any(|c| c.is_whitespace() || c.is_control() || "()[]{};,:=".contains(c)) {
        return invalid("principals cannot contain whitespace, control characters or ()[]{};,:=");
    }
    Ok(())
}
