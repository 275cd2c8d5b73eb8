//! Lazy attribute lookup for CEL: expressions read the bag in place, no per-request conversion.
//!
//! cel resolves a qualified name such as `request.headers` by asking the resolver for the longest prefix
//! first, so an attribute name reaches [`BagResolver`] whole. A name that is only a prefix of attributes
//! (`request`, `request.auth`) resolves to a [`Namespace`] whose fields are looked up on demand, which makes
//! `has(request.auth.principal)` work. String maps are served by [`StrMap`] without copying. Every attribute
//! read is recorded in a [`ReadSet`], from which the referenced attributes of a decision are derived.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};

use cel::ExecutionError;
use cel::common::traits::{self, Container, Indexer, Iterable, Sizer};
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelString, CelTimestamp, MAP_TYPE, Type,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use sextant_attributes::{AttrId, AttrType, Bag, VOCABULARY, Value};

const WORDS: usize = VOCABULARY.len().div_ceil(64);

/// The attributes read while deciding one request.
#[derive(Debug, Default)]
pub struct ReadSet {
    bits: [AtomicU64; 2],
}

const _: () = assert!(WORDS <= 2, "grow ReadSet::bits with the vocabulary");

impl ReadSet {
    /// Records a read of `id`.
    pub fn mark(&self, id: AttrId) {
        let i = id.index();
        self.bits[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }

    /// The attributes read, in vocabulary order.
    pub fn ids(&self) -> impl Iterator<Item = AttrId> + '_ {
        (0..VOCABULARY.len())
            .filter(|i| self.bits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
            .filter_map(|i| u16::try_from(i).ok().map(AttrId))
    }
}

/// Dotted prefixes that are not attributes themselves (`request`, `request.auth`, …).
static NAMESPACES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut set = HashSet::new();
    for d in VOCABULARY {
        let mut end = 0;
        while let Some(i) = d.name[end..].find('.') {
            end += i;
            set.insert(d.name[..end].to_string());
            end += 1;
        }
    }
    set
});

/// Whether `name` is a prefix of attribute names.
pub fn is_namespace(name: &str) -> bool {
    NAMESPACES.contains(name)
}

/// Resolves CEL variables against a bag.
pub struct BagResolver<'a> {
    bag: &'a Bag,
    reads: &'a ReadSet,
}

impl<'a> BagResolver<'a> {
    /// A resolver recording reads into `reads`.
    pub fn new(bag: &'a Bag, reads: &'a ReadSet) -> Self {
        BagResolver { bag, reads }
    }
}

/// What a map attribute the request does not carry reads as.
static EMPTY_MAP: LazyLock<HashMap<String, String>> = LazyLock::new(HashMap::new);

fn attribute<'a>(bag: &'a Bag, reads: &'a ReadSet, name: &str) -> Option<CowVal<'a, 'a>> {
    if let Some(id) = sextant_attributes::lookup(name) {
        reads.mark(id);
        return match bag.get(id) {
            Some(v) => Some(to_val(v)),
            // A request without headers has no header named x: maps are never absent, only empty.
            None if id.ty() == AttrType::StringMap => Some(CowVal::owned(StrMap::new(&EMPTY_MAP))),
            None => None,
        };
    }
    is_namespace(name).then(|| {
        CowVal::owned(Namespace {
            prefix: Arc::from(name),
            bag,
            reads,
        })
    })
}

impl VariableResolver for BagResolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        attribute(self.bag, self.reads, variable)
    }
}

/// The CEL view of an attribute value, borrowing from the bag where it can.
fn to_val(v: &Value) -> CowVal<'_, '_> {
    match v {
        Value::String(s) => CowVal::owned(CelString::from(s.as_str())),
        Value::Int64(i) => CowVal::owned(CelInt::from(*i)),
        Value::Double(d) => CowVal::owned(CelDouble::from(*d)),
        Value::Bool(b) => CowVal::owned(CelBool::from(*b)),
        Value::Bytes(b) => CowVal::owned(CelBytes::from(b.as_slice())),
        Value::Ip(ip) => CowVal::owned(CelString::from(ip.to_string())),
        Value::StringMap(m) => CowVal::owned(StrMap::new(m)),
        Value::Timestamp(t) => {
            let dt =
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    .unwrap_or_default()
                    .fixed_offset();
            CowVal::owned(CelTimestamp::from(dt))
        }
        Value::Duration(d) => {
            let cd = chrono::Duration::seconds(d.seconds)
                + chrono::Duration::nanoseconds(i64::from(d.nanos));
            CowVal::owned(CelDuration::from(cd))
        }
    }
}

fn key_str(idx: &dyn Val) -> Result<&str, ExecutionError> {
    <&str>::try_from(idx).map_err(|_| ExecutionError::UnexpectedType {
        got: idx.get_type().name().to_owned(),
        want: "string".to_owned(),
    })
}

static STR_MAP_TYPE: Type = MAP_TYPE;

/// A string map attribute, read in place. Comprehensions iterate its keys in sorted order (CEL leaves a map's
/// order unspecified; sorted makes `map()` over headers give the same list for the same headers).
#[derive(Debug)]
pub struct StrMap<'a> {
    map: &'a HashMap<String, String>,
    /// The keys as CEL strings borrowing from the map, made on the first iteration.
    keys: OnceLock<Vec<CelString<'a>>>,
}

impl<'a> StrMap<'a> {
    /// A view of `map`.
    pub fn new(map: &'a HashMap<String, String>) -> Self {
        StrMap {
            map,
            keys: OnceLock::new(),
        }
    }
}

impl Val for StrMap<'_> {
    fn get_type(&self) -> &Type {
        &STR_MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &STR_MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }

    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(StrMap::new(self.map))
    }
}

impl Iterable for StrMap<'_> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn traits::Iterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        let keys = self.keys.get_or_init(|| {
            let mut keys: Vec<&str> = self.map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys.into_iter().map(CelString::from).collect()
        });
        Box::new(Keys(keys.iter()))
    }
}

/// The keys of a [`StrMap`], lent one by one.
struct Keys<'b, 'a>(std::slice::Iter<'b, CelString<'a>>);

impl<'b, 'a: 'v, 'v> traits::Iterator<'b, 'v> for Keys<'b, 'a> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.0.next().map(|k| k as &(dyn Val + 'v))
    }
}

impl Indexer for StrMap<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = key_str(idx)?;
        let map: &'v HashMap<String, String> = self.map;
        match map.get(key) {
            Some(v) => Ok(CowVal::owned(CelString::from(v.as_str()))),
            None => Err(ExecutionError::NoSuchKey(Arc::new(key.to_owned()))),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Container for StrMap<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.map.contains_key(key_str(value)?))
    }
}

impl Sizer for StrMap<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(i64::try_from(self.map.len()).unwrap_or(i64::MAX))
    }
}

/// A prefix of attribute names (`request`), whose fields are attributes.
#[derive(Debug)]
pub struct Namespace<'a> {
    prefix: Arc<str>,
    bag: &'a Bag,
    reads: &'a ReadSet,
}

impl Val for Namespace<'_> {
    fn get_type(&self) -> &Type {
        &STR_MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &STR_MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(Namespace {
            prefix: self.prefix.clone(),
            bag: self.bag,
            reads: self.reads,
        })
    }
}

impl Indexer for Namespace<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = format!("{}.{}", self.prefix, key_str(idx)?);
        let (bag, reads): (&'v Bag, &'v ReadSet) = (self.bag, self.reads);
        attribute(bag, reads, &name).ok_or_else(|| ExecutionError::NoSuchKey(Arc::new(name)))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}
