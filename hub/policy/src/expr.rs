//! Compiling CEL expressions against the attribute vocabulary.
//!
//! Compilation parses the expression, checks every name against the vocabulary (suggesting the closest name
//! for a typo), infers types far enough to catch the usual mistakes (a non-boolean condition, a string compared
//! with a number, `startsWith` on an integer), and records which attributes and map keys it can read so that a
//! decision can list its referenced attributes precisely.

use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr as Node, LiteralValue, operators};
use cel::{Env, IdedExpr, Program};
use hub_attributes::{AttrId, AttrType};

use crate::resolve::is_namespace;

/// The shared CEL environment: the standard library and the strings extension.
pub static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The extension only adds functions; failure would mean a clash inside cel itself.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// What static analysis knows of an expression's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// bool
    Bool,
    /// int
    Int,
    /// uint
    Uint,
    /// double
    Double,
    /// string
    String,
    /// bytes
    Bytes,
    /// timestamp
    Timestamp,
    /// duration
    Duration,
    /// map
    Map,
    /// list
    List,
    /// null
    Null,
    /// unknown until run time
    Dyn,
}

impl Ty {
    fn of(t: AttrType) -> Ty {
        match t {
            AttrType::String | AttrType::IpAddress => Ty::String,
            AttrType::Int64 => Ty::Int,
            AttrType::Double => Ty::Double,
            AttrType::Bool => Ty::Bool,
            AttrType::Bytes => Ty::Bytes,
            AttrType::Timestamp => Ty::Timestamp,
            AttrType::Duration => Ty::Duration,
            AttrType::StringMap => Ty::Map,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Timestamp => "timestamp",
            Ty::Duration => "duration",
            Ty::Map => "map",
            Ty::List => "list",
            Ty::Null => "null",
            Ty::Dyn => "dyn",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn comparable_with(self, other: Ty) -> bool {
        self == other
            || self == Ty::Dyn
            || other == Ty::Dyn
            || self == Ty::Null
            || other == Ty::Null
            || (self.numeric() && other.numeric())
    }
}

/// An expression that cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExprError {
    /// Not valid CEL syntax.
    #[error("invalid CEL: {0}")]
    Parse(String),
    /// A name that is not an attribute.
    #[error("unknown attribute `{name}`{}", match suggestion { Some(s) => format!(" (did you mean `{s}`?)"), None => " (see docs/attributes.md)".to_string() })]
    UnknownAttribute {
        /// The name written.
        name: String,
        /// The closest vocabulary name.
        suggestion: Option<&'static str>,
    },
    /// A field selected on an attribute that has none.
    #[error("`{attribute}` is a {ty}; it has no field `{field}`")]
    NoField {
        /// The attribute.
        attribute: &'static str,
        /// Its type.
        ty: &'static str,
        /// The field written.
        field: String,
    },
    /// A type mistake.
    #[error("type error: {0}")]
    Type(String),
}

/// A compiled expression with what it may read.
#[derive(Debug)]
pub struct Expr {
    /// The source text.
    pub source: String,
    program: Program,
    /// Result type, as far as known.
    pub ty: Ty,
    /// Map attributes read only by constant keys, with those keys.
    pub keys: Vec<(AttrId, String)>,
    /// Map attributes read as a whole (iterated, compared, passed to a function).
    pub whole: Vec<AttrId>,
    /// Every attribute the expression may read.
    pub attributes: Vec<AttrId>,
}

impl Expr {
    /// Runs the expression in `ctx`.
    pub fn execute(&self, ctx: &cel::Context<'_, '_>) -> cel::ResolveResult {
        self.program.execute(ctx)
    }

    /// The root of the parsed expression.
    pub fn root(&self) -> &IdedExpr {
        self.program.expression()
    }
}

/// Compiles `source`; with `want_bool`, the result must be a boolean.
pub fn compile(source: &str, want_bool: bool) -> Result<Expr, ExprError> {
    let program = ENV
        .compile(source)
        .map_err(|e| ExprError::Parse(e.to_string().replace("<input>:", "")))?;
    let mut a = Analysis::default();
    let ty = a.visit(program.expression())?;
    if want_bool && !matches!(ty, Ty::Bool | Ty::Dyn) {
        return Err(ExprError::Type(format!(
            "the expression must be a bool, but it is a {}",
            ty.name()
        )));
    }
    a.attributes.sort();
    a.attributes.dedup();
    a.whole.sort();
    a.whole.dedup();
    a.keys.sort();
    a.keys.dedup();
    Ok(Expr {
        source: source.to_string(),
        program,
        ty,
        keys: a.keys,
        whole: a.whole,
        attributes: a.attributes,
    })
}

#[derive(Default)]
struct Analysis {
    scope: Vec<String>,
    keys: Vec<(AttrId, String)>,
    whole: Vec<AttrId>,
    attributes: Vec<AttrId>,
}

/// The dotted segments of an identifier or a chain of field selections.
pub fn segments(e: &IdedExpr) -> Option<Vec<&str>> {
    match &e.expr {
        Node::Ident(n) => Some(vec![n.as_str()]),
        Node::Select(s) if !s.test => {
            let mut v = segments(&s.operand)?;
            v.push(s.field.as_str());
            Some(v)
        }
        _ => None,
    }
}

/// The text of a string literal.
pub fn literal_string(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Node::Literal(LiteralValue::String(s)) => Some(s.as_ref()),
        _ => None,
    }
}

/// What a chain of names refers to.
enum Target {
    /// A comprehension variable.
    Local,
    /// An attribute, and a map key selected on it (`request.headers.x`).
    Attribute(AttrId, Option<String>),
}

impl Analysis {
    fn resolve(&mut self, segs: &[&str]) -> Result<Target, ExprError> {
        if self.scope.iter().any(|v| v == segs[0]) {
            return Ok(Target::Local);
        }
        for k in (1..=segs.len()).rev() {
            let name = segs[..k].join(".");
            let Some(id) = hub_attributes::lookup(&name) else {
                continue;
            };
            self.attributes.push(id);
            return match &segs[k..] {
                [] => Ok(Target::Attribute(id, None)),
                [field] if id.ty() == AttrType::StringMap => {
                    Ok(Target::Attribute(id, Some((*field).to_string())))
                }
                [field, ..] => Err(ExprError::NoField {
                    attribute: id.name(),
                    ty: id.ty().name(),
                    field: (*field).to_string(),
                }),
            };
        }
        let name = segs.join(".");
        let suggestion = hub_attributes::suggest(&name);
        if suggestion.is_none() && is_namespace(&name) {
            let under: Vec<_> = hub_attributes::names_under(&name).take(6).collect();
            return Err(ExprError::Type(format!(
                "`{name}` is not an attribute; attributes under it: {}",
                under.join(", ")
            )));
        }
        Err(ExprError::UnknownAttribute { name, suggestion })
    }

    fn chain(&mut self, segs: &[&str]) -> Result<Ty, ExprError> {
        Ok(match self.resolve(segs)? {
            Target::Local => Ty::Dyn,
            Target::Attribute(id, Some(key)) => {
                self.keys.push((id, key));
                Ty::String
            }
            Target::Attribute(id, None) => {
                if id.ty() == AttrType::StringMap {
                    self.whole.push(id);
                }
                Ty::of(id.ty())
            }
        })
    }

    fn visit(&mut self, e: &IdedExpr) -> Result<Ty, ExprError> {
        match &e.expr {
            Node::Ident(_) => self.chain(&segments(e).unwrap_or_default()),
            Node::Select(s) if s.test => {
                // has(a.b.c): the presence of attribute `a.b.c`, or of key `c` in map attribute `a.b`.
                let Some(mut segs) = segments(&s.operand) else {
                    self.visit(&s.operand)?;
                    return Ok(Ty::Bool);
                };
                segs.push(&s.field);
                match self.resolve(&segs)? {
                    Target::Attribute(id, Some(key)) => self.keys.push((id, key)),
                    Target::Attribute(..) | Target::Local => {}
                }
                Ok(Ty::Bool)
            }
            Node::Select(s) => match segments(e) {
                Some(segs) => self.chain(&segs),
                None => {
                    self.visit(&s.operand)?;
                    Ok(Ty::Dyn)
                }
            },
            Node::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Node::List(l) => {
                for el in &l.elements {
                    self.visit(el)?;
                }
                Ok(Ty::List)
            }
            Node::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.visit(&me.key)?;
                        self.visit(&me.value)?;
                    }
                }
                Ok(Ty::Map)
            }
            Node::Struct(_) | Node::Unspecified => Ok(Ty::Dyn),
            Node::Comprehension(c) => {
                self.visit(&c.iter_range)?;
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                self.scope.push(c.iter_var.clone());
                self.scope.extend(c.iter_var2.clone());
                self.scope.push(c.accu_var.clone());
                let r = (|| {
                    self.visit(&c.accu_init)?;
                    self.visit(&c.loop_cond)?;
                    self.visit(&c.loop_step)?;
                    self.visit(&c.result)
                })();
                self.scope.truncate(self.scope.len() - pushed);
                r
            }
            Node::Call(call) => self.call(call),
        }
    }

    fn call(&mut self, call: &cel::common::ast::CallExpr) -> Result<Ty, ExprError> {
        let f = call.func_name.as_str();
        // m["k"] on a map attribute: a read of one key, not of the whole map.
        if (f == operators::INDEX || f == operators::OPT_INDEX)
            && call.args.len() == 2
            && let (Some(segs), Some(key)) =
                (segments(&call.args[0]), literal_string(&call.args[1]))
            && let Target::Attribute(id, None) = self.resolve(&segs)?
        {
            if id.ty() == AttrType::StringMap {
                self.keys.push((id, key.to_string()));
                return Ok(Ty::String);
            }
            return Err(ExprError::Type(format!(
                "`{}` is a {}; it cannot be indexed",
                id.name(),
                id.ty().name()
            )));
        }
        // "k" in m on a map attribute: a presence test of one key.
        if f == operators::IN
            && call.args.len() == 2
            && let (Some(key), Some(segs)) =
                (literal_string(&call.args[0]), segments(&call.args[1]))
            && let Target::Attribute(id, None) = self.resolve(&segs)?
            && id.ty() == AttrType::StringMap
        {
            self.keys.push((id, key.to_string()));
            return Ok(Ty::Bool);
        }
        let target = match &call.target {
            Some(t) => Some(self.visit(t)?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push(self.visit(a)?);
        }
        let expect = |ty: Ty, want: Ty, what: &str| -> Result<(), ExprError> {
            if ty == want || ty == Ty::Dyn {
                Ok(())
            } else {
                Err(ExprError::Type(format!(
                    "{what} needs a {}, not a {}",
                    want.name(),
                    ty.name()
                )))
            }
        };
        Ok(match (f, target, args.as_slice()) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None, [a, b]) => {
                expect(*a, Ty::Bool, f.trim_matches('_'))?;
                expect(*b, Ty::Bool, f.trim_matches('_'))?;
                Ty::Bool
            }
            (operators::LOGICAL_NOT, None, [a]) => {
                expect(*a, Ty::Bool, "!")?;
                Ty::Bool
            }
            (
                operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                None,
                [a, b],
            ) => {
                if !a.comparable_with(*b) {
                    return Err(ExprError::Type(format!(
                        "`{}` compares a {} with a {}",
                        f.trim_matches('_'),
                        a.name(),
                        b.name()
                    )));
                }
                Ty::Bool
            }
            (operators::CONDITIONAL, None, [c, a, b]) => {
                expect(*c, Ty::Bool, "the condition of ?:")?;
                if a == b { *a } else { Ty::Dyn }
            }
            (operators::IN, None, _) => Ty::Bool,
            (
                operators::ADD
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO,
                None,
                [a, b],
            ) => {
                if a == b {
                    *a
                } else {
                    Ty::Dyn
                }
            }
            ("startsWith" | "endsWith" | "contains" | "matches", Some(t), args) => {
                expect(t, Ty::String, &format!("`{f}`"))?;
                if let [arg] = args {
                    expect(*arg, Ty::String, &format!("the argument of `{f}`"))?;
                }
                Ty::Bool
            }
            ("size", _, _) => Ty::Int,
            ("string", None, _)
            | ("lowerAscii" | "upperAscii" | "trim" | "replace" | "substring", Some(_), _) => {
                Ty::String
            }
            ("int", None, _) => Ty::Int,
            ("double", None, _) => Ty::Double,
            ("timestamp", None, _) => Ty::Timestamp,
            ("duration", None, _) => Ty::Duration,
            _ => Ty::Dyn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggests_the_attribute() {
        let e = compile(r#"request.hedaers["x"] == "y""#, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown attribute `request.hedaers` (did you mean `request.headers`?)"
        );
    }

    #[test]
    fn map_reads_by_constant_key_are_recorded_as_keys() {
        let e = compile(r#"request.headers["x-user"] == "guest" && "x-b" in request.headers && has(request.headers.c)"#, true).unwrap();
        let keys: Vec<_> = e.keys.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["c", "x-b", "x-user"]);
        assert!(e.whole.is_empty());
    }

    #[test]
    fn type_mistakes_are_caught() {
        assert!(
            compile("request.size == \"10\"", true)
                .unwrap_err()
                .to_string()
                .contains("compares a int with a string")
        );
        assert!(
            compile("request.path", true)
                .unwrap_err()
                .to_string()
                .contains("must be a bool")
        );
        assert!(compile("request.size.startsWith(\"1\")", true).is_err());
        assert_eq!(
            compile("request.path.startsWith(1)", true)
                .unwrap_err()
                .to_string(),
            "type error: the argument of `startsWith` needs a string, not a int"
        );
        assert!(
            compile("request.path.foo == 1", true)
                .unwrap_err()
                .to_string()
                .contains("has no field `foo`")
        );
        assert!(
            compile("request.path ==", true)
                .unwrap_err()
                .to_string()
                .starts_with("invalid CEL")
        );
    }

    #[test]
    fn comprehension_variables_are_not_attributes() {
        let e = compile(r#"["a", "b"].exists(x, x == request.method)"#, true).unwrap();
        assert_eq!(
            e.attributes,
            vec![hub_attributes::lookup("request.method").unwrap()]
        );
    }
}
