//! One type's resources as the delta client holds them: the changes pilot sends merged in, the whole set
//! handed to the consumer, and the previous set put back when the consumer refuses the merged one.

use std::collections::{BTreeMap, HashMap};

use sextant_proto::google::protobuf::Any;

use crate::Consumer;
use crate::session::{self, Applied, Error, Shared};

/// A resource held: the version pilot gave it, and its body.
#[derive(Debug, PartialEq)]
struct Entry {
    version: String,
    body: Any,
}

/// One type's resources, by name.
#[derive(Debug, Default)]
pub(super) struct Resources {
    entries: BTreeMap<String, Entry>,
}

/// What one response changes: resources added or updated (name, version, body), and names removed.
#[derive(Debug, Default)]
pub(super) struct Change {
    /// Added or updated, in the order sent (a name sent twice: the last one counts).
    pub upserts: Vec<(String, String, Any)>,
    /// Removed (names not held are ignored).
    pub removed: Vec<String>,
}

/// What a merge replaced, to put back if the merged set is refused.
#[derive(Debug, Default)]
struct Undo {
    added: Vec<String>,
    displaced: Vec<(String, Entry)>,
}

impl Resources {
    /// Per name, the version held: what a stream resumes with (`initial_resource_versions`).
    pub(super) fn versions(&self) -> HashMap<String, String> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.version.clone()))
            .collect()
    }

    /// Forgets `names` (no longer subscribed: pilot will not say when they go away).
    pub(super) fn forget(&mut self, names: &[String]) {
        for n in names {
            self.entries.remove(n);
        }
    }

    /// Merges `change` and hands the whole merged set, sorted by name, to the consumer: kept if it is
    /// applied, else the previous set is put back. The bodies are moved, never copied. Should the blocking
    /// pool fail (the runtime shutting down), nothing is held any more: a later stream resumes from nothing
    /// and pilot sends everything again.
    pub(super) async fn apply<C: Consumer>(
        &mut self,
        consumer: &Shared<C>,
        type_url: &str,
        change: Change,
    ) -> Result<Applied, Error> {
        let undo = self.merge(change);
        let (keys, bodies): (Vec<(String, String)>, Vec<Any>) = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(name, e)| ((name, e.version), e.body))
            .unzip();
        let mut applied = session::apply(consumer, type_url, bodies).await?;
        self.entries = keys
            .into_iter()
            .zip(std::mem::take(&mut applied.resources))
            .map(|((name, version), body)| (name, Entry { version, body }))
            .collect();
        if applied.outcome.is_err() {
            self.undo(undo);
        }
        Ok(applied)
    }

    fn merge(&mut self, change: Change) -> Undo {
        let mut undo = Undo::default();
        for name in change.removed {
            if let Some(e) = self.entries.remove(&name) {
                undo.displaced.push((name, e));
            }
        }
        for (name, version, body) in change.upserts {
            if let Some(e) = self.entries.insert(name.clone(), Entry { version, body }) {
                undo.displaced.push((name.clone(), e));
            }
            undo.added.push(name);
        }
        undo
    }

    fn undo(&mut self, undo: Undo) {
        for name in &undo.added {
            self.entries.remove(name);
        }
        // Latest first, so a name displaced twice (sent twice) ends with what it held before the merge.
        for (name, e) in undo.displaced.into_iter().rev() {
            self.entries.insert(name, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(v: &str) -> Any {
        Any {
            type_url: "t".to_owned(),
            value: v.as_bytes().to_vec(),
        }
    }

    fn upsert(name: &str, version: &str) -> (String, String, Any) {
        (name.to_owned(), version.to_owned(), any(version))
    }

    fn held(r: &Resources) -> Vec<(String, String)> {
        r.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.version.clone()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_merge_adds_updates_and_removes_and_its_undo_restores_the_previous_set() {
        let mut r = Resources::default();
        let _ = r.merge(Change {
            upserts: vec![upsert("a", "1"), upsert("b", "1"), upsert("c", "1")],
            removed: Vec::new(),
        });
        assert_eq!(held(&r), pairs(&[("a", "1"), ("b", "1"), ("c", "1")]));
        let undo = r.merge(Change {
            upserts: vec![upsert("b", "2"), upsert("d", "1"), upsert("b", "3")],
            removed: vec!["c".to_owned(), "a".to_owned(), "absent".to_owned()],
        });
        assert_eq!(held(&r), pairs(&[("b", "3"), ("d", "1")]));
        r.undo(undo);
        assert_eq!(held(&r), pairs(&[("a", "1"), ("b", "1"), ("c", "1")]));
        assert_eq!(r.entries["b"].body, any("1"), "bodies come back too");
    }

    #[test]
    fn a_name_removed_and_sent_again_is_undone_to_what_was_held() {
        let mut r = Resources::default();
        let _ = r.merge(Change {
            upserts: vec![upsert("a", "1")],
            removed: Vec::new(),
        });
        let undo = r.merge(Change {
            upserts: vec![upsert("a", "2")],
            removed: vec!["a".to_owned()],
        });
        assert_eq!(held(&r), pairs(&[("a", "2")]));
        r.undo(undo);
        assert_eq!(held(&r), pairs(&[("a", "1")]));
        r.forget(&["a".to_owned()]);
        assert!(r.versions().is_empty());
    }

    /// Records the names of each set it is handed, refusing those that hold a resource named `bad`.
    struct Names(Vec<Vec<String>>);

    impl Consumer for Names {
        fn apply(&mut self, _: &str, resources: &[Any]) -> Result<(), String> {
            let names: Vec<String> = resources
                .iter()
                .map(|r| String::from_utf8_lossy(&r.value).into_owned())
                .collect();
            let refused = names.iter().any(|n| n == "bad");
            self.0.push(names);
            if refused {
                return Err("bad".to_owned());
            }
            Ok(())
        }

        fn wants(&self, _: &str) -> std::collections::BTreeSet<String> {
            Default::default()
        }
    }

    #[tokio::test]
    async fn the_consumer_gets_the_whole_merged_set_sorted_and_a_refusal_keeps_the_previous_one() {
        let consumer = std::sync::Arc::new(std::sync::Mutex::new(Names(Vec::new())));
        let body = |name: &str, v: &str| (name.to_owned(), v.to_owned(), any(name));
        let mut r = Resources::default();
        let first = Change {
            upserts: vec![body("b", "1"), body("a", "1")],
            removed: Vec::new(),
        };
        let applied = r
            .apply(&consumer, crate::types::CLUSTER, first)
            .await
            .expect("applied");
        assert_eq!(applied.outcome, Ok(()));
        let refused = Change {
            upserts: vec![body("bad", "1"), body("c", "1")],
            removed: vec!["a".to_owned()],
        };
        let applied = r
            .apply(&consumer, crate::types::CLUSTER, refused)
            .await
            .expect("applied");
        assert_eq!(applied.outcome, Err("bad".to_owned()));
        assert_eq!(held(&r), pairs(&[("a", "1"), ("b", "1")]));
        let third = Change {
            upserts: vec![body("c", "1")],
            removed: vec!["b".to_owned()],
        };
        let applied = r
            .apply(&consumer, crate::types::CLUSTER, third)
            .await
            .expect("applied");
        assert_eq!(applied.outcome, Ok(()));
        let seen = consumer.lock().expect("consumer").0.clone();
        assert_eq!(
            seen,
            [vec!["a", "b"], vec!["b", "bad", "c"], vec!["a", "c"]]
                .map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>())
        );
    }
}
