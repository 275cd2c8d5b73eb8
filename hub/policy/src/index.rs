//! Finding the policies whose selector can match a request without evaluating every selector.
//!
//! A selector that requires an attribute to equal a constant (`destination.service.name == "reviews"`,
//! possibly inside `&&`, or `in [..]` a list of constants) is indexed under that attribute and value; a request
//! only evaluates the selectors indexed under its own values, plus the ones that could not be indexed.

use std::collections::HashMap;

use cel::IdedExpr;
use cel::common::ast::{Expr as Node, operators};
use sextant_attributes::{AttrId, AttrType, Bag, Value};

use crate::expr::{literal_string, segments};
use crate::resolve::ReadSet;

/// Selector index over items numbered 0..n.
#[derive(Debug, Default)]
pub struct Index {
    by_value: Vec<(AttrId, HashMap<String, Vec<usize>>)>,
    /// Per indexed attribute, the items to evaluate when a request lacks it.
    when_absent: HashMap<AttrId, Vec<usize>>,
    always: Vec<usize>,
}

impl Index {
    /// Adds item `item` with its selector (None: applies to every request). With `evaluate_when_absent`, a
    /// request that lacks the indexed attribute still evaluates the selector (whose failure then decides,
    /// by the item's `onError`); without, such a request skips the item, as the failing selector would.
    pub fn add(&mut self, item: usize, selector: Option<&IdedExpr>, evaluate_when_absent: bool) {
        match selector.and_then(constraint) {
            Some((id, values)) => {
                if evaluate_when_absent {
                    self.when_absent.entry(id).or_default().push(item);
                }
                let slot = match self.by_value.iter().position(|(a, _)| *a == id) {
                    Some(i) => i,
                    None => {
                        self.by_value.push((id, HashMap::new()));
                        self.by_value.len() - 1
                    }
                };
                for v in values {
                    self.by_value[slot].1.entry(v).or_default().push(item);
                }
            }
            None => self.always.push(item),
        }
    }

    /// The items that may apply to `bag`, in ascending order. Reading an indexed attribute is recorded. When
    /// the bag lacks an indexed attribute, the items indexed under it that asked to be evaluated then are
    /// candidates.
    pub fn candidates(&self, bag: &Bag, reads: &ReadSet) -> Vec<usize> {
        let mut out = self.always.clone();
        for (id, map) in &self.by_value {
            reads.mark(*id);
            let key = match bag.get(*id) {
                Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
                Some(Value::Ip(ip)) => std::borrow::Cow::Owned(ip.to_string()),
                Some(_) => continue,
                None => {
                    if let Some(items) = self.when_absent.get(id) {
                        out.extend_from_slice(items);
                    }
                    continue;
                }
            };
            if let Some(items) = map.get(key.as_ref()) {
                out.extend_from_slice(items);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How many items are indexed by value (the rest are always evaluated).
    pub fn indexed(&self) -> usize {
        self.by_value
            .iter()
            .map(|(_, m)| m.values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

/// The string-typed attribute `e` names, if it names one.
fn attribute_of(e: &IdedExpr) -> Option<AttrId> {
    sextant_attributes::lookup(&segments(e)?.join("."))
        .filter(|id| matches!(id.ty(), AttrType::String | AttrType::IpAddress))
}

fn string_literal(e: &IdedExpr) -> Option<String> {
    literal_string(e).map(str::to_string)
}

/// An attribute and the values it must have for the selector to be true.
fn constraint(e: &IdedExpr) -> Option<(AttrId, Vec<String>)> {
    let Node::Call(call) = &e.expr else {
        return None;
    };
    match (call.func_name.as_str(), call.args.as_slice()) {
        (operators::EQUALS, [a, b]) => match (
            attribute_of(a),
            string_literal(b),
            attribute_of(b),
            string_literal(a),
        ) {
            (Some(id), Some(v), ..) | (_, _, Some(id), Some(v)) => Some((id, vec![v])),
            _ => None,
        },
        (operators::IN, [a, list]) => {
            let id = attribute_of(a)?;
            let Node::List(l) = &list.expr else {
                return None;
            };
            let values = l
                .elements
                .iter()
                .map(string_literal)
                .collect::<Option<Vec<_>>>()?;
            Some((id, values))
        }
        (operators::LOGICAL_AND, [a, b]) => constraint(a).or_else(|| constraint(b)),
        (operators::LOGICAL_OR, [a, b]) => {
            let (ia, mut va) = constraint(a)?;
            let (ib, vb) = constraint(b)?;
            (ia == ib).then(|| {
                va.extend(vb);
                (ia, va)
            })
        }
        _ => None,
    }
}
