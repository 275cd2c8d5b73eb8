//! Compiling CEL expressions against the attribute vocabulary.
//!
//! Compilation parses the expression, checks every name against the vocabulary (suggesting the closest name
//! for a typo), infers types far enough to catch the usual mistakes (a non-boolean condition, a string compared
//! with a number, `startsWith` on an integer), and records which attributes and map keys it can read so that a
//! decision can list its referenced attributes precisely.

use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr as Node, LiteralValue, operators};
use cel::{Env, IdedExpr, Program};
use sextant_attributes::{AttrId, AttrType};

use crate::functions;
use crate::resolve::is_namespace;
use crate::ty::Ty;

/// The shared CEL environment: the standard library, the strings extension and the `ip`/`cidr` library.
pub static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The libraries only add functions; a failure would be a clash of names, which the tests of every function
    // through this environment catch (a function missing from it fails at run time).
    for (name, result) in [
        ("strings", env.add_extension(cel::extensions::strings)),
        ("net", env.add_extension(crate::net::library)),
    ] {
        if let Err(e) = result {
            tracing::error!(library = name, error = %e, "CEL library not registered");
        }
    }
    Arc::new(env)
});

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

/// A compiled expression with what it may read. Cloning shares the compiled program.
#[derive(Debug, Clone)]
pub struct Expr {
    /// The source text.
    pub source: String,
    pub(crate) program: Arc<Program>,
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
        program: Arc::new(program),
        ty,
        keys: a.keys,
        whole: a.whole,
        attributes: a.attributes,
    })
}

#[derive(Default)]
struct Analysis {
    /// Comprehension variables in scope, with their types.
    scope: Vec<(String, Ty)>,
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
    /// A comprehension variable, with its type.
    Local(Ty),
    /// An attribute, and a map key selected on it (`request.headers.x`).
    Attribute(AttrId, Option<String>),
}

/// Function namespaces of CEL libraries the hub does not load.
const UNLOADED_NAMESPACES: &[&str] = &["optional", "strings", "math", "base64", "sets", "lists"];

impl Analysis {
    fn resolve(&mut self, segs: &[&str]) -> Result<Target, ExprError> {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(v, _)| v == segs[0]) {
            return Ok(Target::Local(if segs.len() == 1 { *ty } else { Ty::Dyn }));
        }
        for k in (1..=segs.len()).rev() {
            let name = segs[..k].join(".");
            let Some(id) = sextant_attributes::lookup(&name) else {
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
        if is_namespace(&name) {
            let under: Vec<_> = sextant_attributes::names_under(&name).take(6).collect();
            return Err(ExprError::Type(format!(
                "`{name}` is not an attribute; attributes under it: {}",
                under.join(", ")
            )));
        }
        let suggestion = sextant_attributes::suggest(&name);
        Err(ExprError::UnknownAttribute { name, suggestion })
    }

    fn chain(&mut self, segs: &[&str], whole_map_ok: bool) -> Result<Ty, ExprError> {
        Ok(match self.resolve(segs)? {
            Target::Local(ty) => ty,
            Target::Attribute(id, Some(key)) => {
                self.keys.push((id, key));
                Ty::String
            }
            Target::Attribute(id, None) => {
                if id.ty() == AttrType::StringMap {
                    if !whole_map_ok {
                        return Err(ExprError::Type(format!(
                            "`{}` is a map: index it (`{0}[\"key\"]`), test a key with `in` or `has()`, take \
                             its `size()`, or iterate its keys with all/exists/exists_one/map/filter; it cannot \
                             be used whole here",
                            id.name()
                        )));
                    }
                    self.whole.push(id);
                }
                Ty::of(id.ty())
            }
        })
    }

    fn visit(&mut self, e: &IdedExpr) -> Result<Ty, ExprError> {
        self.visit_in(e, false)
    }

    /// Visits `e` where a whole map attribute may stand (iterated, sized, indexed, the right of `in`).
    fn visit_map_operand(&mut self, e: &IdedExpr) -> Result<Ty, ExprError> {
        self.visit_in(e, true)
    }

    fn visit_in(&mut self, e: &IdedExpr, whole_map_ok: bool) -> Result<Ty, ExprError> {
        match &e.expr {
            Node::Ident(_) => self.chain(&segments(e).unwrap_or_default(), whole_map_ok),
            Node::Select(s) if s.test => {
                // has(a.b.c): the presence of attribute `a.b.c`, or of key `c` in map attribute `a.b`.
                let Some(mut segs) = segments(&s.operand) else {
                    self.visit_map_operand(&s.operand)?;
                    return Ok(Ty::Bool);
                };
                segs.push(&s.field);
                match self.resolve(&segs)? {
                    Target::Attribute(id, Some(key)) => self.keys.push((id, key)),
                    Target::Attribute(..) | Target::Local(_) => {}
                }
                Ok(Ty::Bool)
            }
            Node::Select(s) => match segments(e) {
                Some(segs) => self.chain(&segs, whole_map_ok),
                None => {
                    self.visit_map_operand(&s.operand)?;
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
            Node::Struct(s) => Err(ExprError::Type(format!(
                "message literals (`{}{{…}}`) are not supported",
                s.type_name
            ))),
            Node::Unspecified => Err(ExprError::Type("empty expression".into())),
            Node::Comprehension(c) => {
                if c.iter_var2.is_some() {
                    return Err(ExprError::Type(
                        "two-variable comprehensions are not supported; iterate the keys with one variable"
                            .into(),
                    ));
                }
                let range = self.visit_map_operand(&c.iter_range)?;
                let element = match range {
                    // A map yields its keys; a map attribute's keys are strings.
                    Ty::Map if segments(&c.iter_range).is_some() => Ty::String,
                    Ty::Map | Ty::List | Ty::Dyn => Ty::Dyn,
                    other => {
                        return Err(ExprError::Type(format!(
                            "a {} cannot be iterated; all/exists/exists_one/map/filter take a list or a map",
                            other.name()
                        )));
                    }
                };
                let accu = self.visit(&c.accu_init)?;
                self.scope.push((c.iter_var.clone(), element));
                self.scope.push((c.accu_var.clone(), accu));
                let r = (|| {
                    self.visit(&c.loop_cond)?;
                    self.visit(&c.loop_step)?;
                    self.visit(&c.result)
                })();
                self.scope.truncate(self.scope.len() - 2);
                r
            }
            Node::Call(call) => self.call(call),
        }
    }

    fn call(&mut self, call: &cel::common::ast::CallExpr) -> Result<Ty, ExprError> {
        let f = call.func_name.as_str();
        // m["k"], m[?"k"], m.?k on a map attribute: a read of one key, not of the whole map.
        if matches!(
            f,
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT
        ) && call.args.len() == 2
            && let (Some(segs), Some(key)) =
                (segments(&call.args[0]), literal_string(&call.args[1]))
            && let Target::Attribute(id, None) = self.resolve(&segs)?
        {
            if id.ty() == AttrType::StringMap {
                self.keys.push((id, key.to_string()));
                return Ok(if f == operators::INDEX {
                    Ty::String
                } else {
                    Ty::Optional
                });
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
        if matches!(
            f,
            "all" | "exists" | "exists_one" | "map" | "filter" | "has"
        ) {
            // A macro's name left as a call: it was not written the way the macro expands.
            return Err(ExprError::Type(format!(
                "`{f}` is a macro: write `x.{f}(v, predicate)`{}; two-variable comprehensions are not supported",
                if f == "map" {
                    " or `x.map(v, predicate, value)`"
                } else {
                    ""
                }
            )));
        }
        if let Some(t) = &call.target
            && let Node::Ident(ns) = &t.expr
            && UNLOADED_NAMESPACES.contains(&ns.as_str())
            && !self.scope.iter().any(|(v, _)| v == ns)
        {
            return Err(ExprError::Type(format!(
                "unsupported function `{ns}.{f}`; the functions expressions may call are listed in docs/policies.md"
            )));
        }
        // Operands that may be a whole map: the receiver of `size()`, the argument of `size(m)`, the container
        // of `in`, the map of `m[k]`.
        let target = match &call.target {
            Some(t) => Some(self.visit_in(t, f == "size")?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for (i, a) in call.args.iter().enumerate() {
            let whole_map_ok = match f {
                "size" => call.target.is_none(),
                operators::IN => i == 1,
                operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => i == 0,
                _ => false,
            };
            args.push(self.visit_in(a, whole_map_ok)?);
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
            (operators::NOT_STRICTLY_FALSE, None, [_]) => Ty::Bool,
            (operators::NEGATE, None, [a]) => {
                if !matches!(a, Ty::Int | Ty::Double | Ty::Dyn) {
                    return Err(ExprError::Type(format!("a {} cannot be negated", a.name())));
                }
                *a
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
                let equality = matches!(f, operators::EQUALS | operators::NOT_EQUALS);
                let ordered = |t: Ty| {
                    t.numeric()
                        || matches!(
                            t,
                            Ty::String
                                | Ty::Bytes
                                | Ty::Bool
                                | Ty::Timestamp
                                | Ty::Duration
                                | Ty::Dyn
                        )
                };
                if !a.comparable_with(*b) || !(equality || ordered(*a) && ordered(*b)) {
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
            (operators::IN, None, [_, container]) => {
                if !matches!(container, Ty::List | Ty::Map | Ty::Dyn) {
                    return Err(ExprError::Type(format!(
                        "`in` needs a list or a map on its right, not a {}",
                        container.name()
                    )));
                }
                Ty::Bool
            }
            (operators::INDEX, None, [container, index]) => match container {
                Ty::List => {
                    expect(*index, Ty::Int, "a list index")?;
                    Ty::Dyn
                }
                Ty::Map | Ty::Dyn => Ty::Dyn,
                other => {
                    return Err(ExprError::Type(format!(
                        "a {} cannot be indexed",
                        other.name()
                    )));
                }
            },
            (operators::OPT_INDEX | operators::OPT_SELECT, None, [container, _]) => {
                if !matches!(container, Ty::List | Ty::Map | Ty::Dyn) {
                    return Err(ExprError::Type(format!(
                        "a {} cannot be indexed",
                        container.name()
                    )));
                }
                Ty::Optional
            }
            (
                operators::ADD
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO,
                None,
                [a, b],
            ) => arithmetic(f, *a, *b)?,
            (name, receiver, args) if !name.starts_with('_') && !name.starts_with('@') => {
                let Some(function) = functions::lookup(name) else {
                    return Err(ExprError::Type(format!(
                        "unknown function `{name}`; expressions may call {} (see docs/policies.md)",
                        functions::names().collect::<Vec<_>>().join(", ")
                    )));
                };
                function.check(receiver, args).map_err(ExprError::Type)?
            }
            (name, ..) => {
                return Err(ExprError::Type(format!(
                    "unsupported operator `{}`",
                    name.trim_matches(['_', '@'])
                )));
            }
        })
    }
}

/// The type of `a OP b` for the arithmetic operators, or why CEL refuses it.
fn arithmetic(f: &str, a: Ty, b: Ty) -> Result<Ty, ExprError> {
    use Ty::{Double, Duration, Dyn, Int, List, String, Timestamp, Uint};
    let op = f.trim_matches('_');
    let ok = match (f, a, b) {
        (_, Dyn, _) | (_, _, Dyn) => Some(if a == Dyn { b } else { a }),
        (operators::ADD, Timestamp, Duration) | (operators::ADD, Duration, Timestamp) => {
            Some(Timestamp)
        }
        (operators::SUBSTRACT, Timestamp, Duration) => Some(Timestamp),
        (operators::SUBSTRACT, Timestamp, Timestamp) => Some(Duration),
        (operators::ADD | operators::SUBSTRACT, Duration, Duration) => Some(Duration),
        (operators::ADD, String, String) | (operators::ADD, List, List) => Some(a),
        (operators::ADD, Ty::Bytes, Ty::Bytes) => Some(a),
        (_, Int, Int) | (_, Uint, Uint) => Some(a),
        (
            operators::ADD | operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE,
            Double,
            Double,
        ) => Some(a),
        _ => None,
    };
    match ok {
        // Dyn + T is only known at run time; T + Dyn the same.
        Some(_) if a == Dyn && b == Dyn => Ok(Dyn),
        Some(t) if a == Dyn || b == Dyn => {
            Ok(if matches!(t, Int | Uint | Double | String | List) {
                t
            } else {
                Dyn
            })
        }
        Some(t) => Ok(t),
        None => Err(ExprError::Type(format!(
            "`{op}` is not defined for a {} and a {} (CEL does not mix numeric types: convert with int(), uint() or double())",
            a.name(),
            b.name()
        ))),
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
            "type error: `startsWith` cannot be called as string.startsWith(int); it takes string.startsWith(string)"
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
            vec![sextant_attributes::lookup("request.method").unwrap()]
        );
    }
}
