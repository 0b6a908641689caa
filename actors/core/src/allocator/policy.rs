//! The operator's policy: role weights and quotas, and which allocations a lowered
//! quota limit leaves above it.

use std::collections::{BTreeSet, HashMap};

use keel_proto::ids::FrameworkId;
use keel_proto::resources::{validate_role, UNRESERVED_ROLE};

use super::{AllocatorCore, AllocatorError, Quota};

impl AllocatorCore {
    /// Sets the weight of `role` (default 1): its share counts divided by the weight, so a
    /// role of weight 3 gets about three times what a role of weight 1 gets.
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        validate_role(role)
            .map_err(|e| AllocatorError::InvalidRole { role: role.to_string(), reason: e.to_string() })?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::InvalidWeight { role: role.to_string(), weight });
        }
        self.roles.set_weight(role, weight);
        Ok(())
    }

    /// The weight of `role` (1 unless set).
    pub fn weight(&self, role: &str) -> f64 {
        self.roles.weight_of(role)
    }

    /// Sets the quota of `role` (not `*`). The guarantee may not be above the limit for
    /// any resource the limit names. Lowering a limit below what the role holds makes
    /// it appear in [`AllocatorCore::over_limit`].
    pub fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        let invalid = |reason: String| AllocatorError::InvalidRole { role: role.to_string(), reason };
        validate_role(role).map_err(|e| invalid(e.to_string()))?;
        if role == UNRESERVED_ROLE {
            return Err(invalid("`*` cannot have a quota".to_string()));
        }
        if let Some(limit) = &quota.limit {
            let limits: HashMap<&str, u64> = limit.scalars_milli().collect();
            for (name, guaranteed) in quota.guarantee.scalars_milli() {
                if limits.get(name).is_some_and(|&limit| guaranteed > limit) {
                    return Err(AllocatorError::GuaranteeAboveLimit {
                        role: role.to_string(),
                        resource: name.to_string(),
                    });
                }
            }
        }
        self.roles.set_quota(role, Some(quota), &mut self.names);
        Ok(())
    }

    /// Removes the quota of `role`.
    pub fn remove_quota(&mut self, role: &str) {
        if self.roles.quota_of(role).is_some() {
            self.roles.set_quota(role, None, &mut self.names);
        }
    }

    /// The quota of `role`, if any.
    pub fn quota(&self, role: &str) -> Option<&Quota> {
        self.roles.quota_of(role)
    }

    /// The (framework, role) pairs holding resources in a role that is above its quota
    /// limit (or under an ancestor that is), sorted: after a limit is lowered, the master
    /// rescinds their outstanding offers (which come back through `recover`).
    pub fn over_limit(&self) -> Vec<(FrameworkId, String)> {
        let mut out = BTreeSet::new();
        for (i, node) in self.roles.live() {
            if !node.above_limit() {
                continue;
            }
            let mut stack = vec![i];
            while let Some(i) = stack.pop() {
                let node = self.roles.node(i);
                stack.extend(node.children.iter().copied());
                for &c in &node.clients {
                    let framework = self.frameworks.get(c.framework as usize).and_then(Option::as_ref);
                    if let (Some(framework), Some(client)) = (framework, self.client(c)) {
                        if !client.allocated.is_empty() {
                            out.insert((framework.id.clone(), client.role.clone()));
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}
