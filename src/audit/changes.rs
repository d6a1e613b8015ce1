//! The `changes` of a record: the fields that differ between two key
//! records, as JSON.

use std::collections::BTreeMap;

use serde_json::Value;

use super::FieldChange;
use crate::key::ApiKey;

/// Fields left out of `changes`: bookkeeping that moves with every write
/// (`updated_at`), usage (written in the background, never a change made
/// by anyone), and `status`, which follows from the others.
const NOT_RECORDED: [&str; 4] = ["updated_at", "last_used_at", "last_used_ip", "status"];

fn fields(key: Option<&ApiKey>) -> BTreeMap<String, Value> {
    match key.map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map
            .into_iter()
            .filter(|(name, _)| !NOT_RECORDED.contains(&name.as_str()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The fields that differ between `before` and `after` (`None`: the key
/// did not exist), each with its two values.
pub(crate) fn changes_between(
    before: Option<&ApiKey>,
    after: Option<&ApiKey>,
) -> BTreeMap<String, FieldChange> {
    let before = fields(before);
    let mut after = fields(after);
    let mut changes = BTreeMap::new();
    for (name, from) in before {
        let to = after.remove(&name).unwrap_or(Value::Null);
        if from != to {
            changes.insert(name, FieldChange { from, to });
        }
    }
    for (name, to) in after {
        if !to.is_null() {
            changes.insert(
                name,
                FieldChange {
                    from: Value::Null,
                    to,
                },
            );
        }
    }
    changes
}

/// The changes of creating `key`: every field set, from `null`.
pub(crate) fn created(key: &ApiKey) -> BTreeMap<String, FieldChange> {
    changes_between(None, Some(key))
}

/// The changes of deleting `key`: every field, to `null`.
pub(crate) fn deleted(key: &ApiKey) -> BTreeMap<String, FieldChange> {
    changes_between(Some(key), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::sample;

    #[test]
    fn only_fields_that_differ_are_recorded() {
        let before = sample(crate::key::now());
        let mut after = before.clone();
        after.name = "renamed".into();
        after.updated_at += time::Duration::seconds(5);
        after.last_used_at = Some(after.updated_at);
        let changes = changes_between(Some(&before), Some(&after));
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["name"]);
        assert_eq!(changes["name"].from, Value::from(before.name.clone()));
        assert_eq!(changes["name"].to, Value::from("renamed"));
    }

    #[test]
    fn creation_and_deletion_show_every_field_against_null() {
        let key = sample(crate::key::now());
        let created = created(&key);
        assert!(
            created
                .values()
                .all(|c| c.from.is_null() && !c.to.is_null())
        );
        assert!(created.contains_key("owner") && created.contains_key("scopes"));
        assert!(!created.contains_key("status") && !created.contains_key("updated_at"));
        let deleted = deleted(&key);
        assert!(deleted.values().all(|c| c.to.is_null()));
        assert_eq!(deleted["owner"].from, Value::from(key.owner.clone()));
    }
}
