//! Expressions of Telemetry resources: CEL, with the shapes telemetry uses most evaluated without CEL.
//!
//! A Telemetry resource evaluates a dozen expressions per reported request (Istio's standard metrics have
//! thirteen labels), so the common shapes are recognised at compile time and read straight from the bag: an
//! attribute (`source.workload.name`), a map entry with a constant key (`request.headers["x-user"]`), a
//! literal, an attribute with a default (`has(a.b) ? a.b : "unknown"`), a duration in milliseconds
//! (`response.duration.getMilliseconds()`) and an attribute compared with a literal (`context.protocol ==
//! "tcp"`). Everything else runs in cel with the same lazy bag resolver as the Check path. Both give the same
//! results; the tests run every fast shape through cel too.

use std::borrow::Cow;

use cel::common::ast::{Expr as Node, LiteralValue, operators};
use cel::{Context, IdedExpr, Value as CelValue};
use hub_policy::{BagResolver, ENV, Expr, ExprError, Ty, literal_string, segments};
use sextant_attributes::{AttrId, AttrType, Bag, Value};

/// What an expression is used for; decides the type it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A condition: bool.
    Bool,
    /// A metric value: int, double or duration (as milliseconds).
    Number,
    /// A dimension, field or tag: any scalar.
    Scalar,
    /// A name: string.
    String,
    /// A point in time.
    Timestamp,
}

/// The value of an expression for one bag.
#[derive(Clone, Debug, PartialEq)]
pub enum Out<'b> {
    /// Text, borrowed from the bag where possible.
    Str(Cow<'b, str>),
    /// Integer.
    Int(i64),
    /// Float.
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// Nanoseconds since the epoch.
    Time(i64),
    /// Nanoseconds.
    Dur(i64),
    /// Bytes.
    Bytes(Cow<'b, [u8]>),
    /// null.
    Null,
}

impl Out<'_> {
    /// The value as a metric number (durations in milliseconds).
    pub fn number(&self) -> Option<f64> {
        match *self {
            Out::Int(i) => Some(i as f64),
            Out::Double(d) => Some(d),
            Out::Dur(ns) => Some(ns as f64 / 1e6),
            Out::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// The value as label text: integers in decimal, times in RFC 3339, durations like `1.5s`.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Out::Str(s) => Cow::Borrowed(s.as_ref()),
            Out::Int(i) => small_int(*i).map_or_else(|| Cow::Owned(i.to_string()), Cow::Borrowed),
            Out::Double(d) => Cow::Owned(d.to_string()),
            Out::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Out::Time(ns) => Cow::Owned(rfc3339(*ns)),
            Out::Dur(ns) => Cow::Owned(format!("{}s", *ns as f64 / 1e9)),
            Out::Bytes(b) => Cow::Owned(String::from_utf8_lossy(b).into_owned()),
            Out::Null => Cow::Borrowed(""),
        }
    }
}

/// Decimal text of 0..1024 without allocating: response codes and ports are labels of most reports.
fn small_int(i: i64) -> Option<&'static str> {
    static TABLE: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (0..1024).map(|i: i32| i.to_string()).collect());
    usize::try_from(i)
        .ok()
        .and_then(|i| TABLE.get(i))
        .map(String::as_str)
}

/// RFC 3339 text of nanoseconds since the epoch.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A literal of a fast shape.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Lit {
    fn of(e: &IdedExpr) -> Option<Lit> {
        match &e.expr {
            Node::Literal(LiteralValue::String(_)) => {
                literal_string(e).map(|s| Lit::Str(s.to_string()))
            }
            Node::Literal(LiteralValue::Int(i)) => Some(Lit::Int(**i)),
            Node::Literal(LiteralValue::UInt(u)) => i64::try_from(**u).ok().map(Lit::Int),
            Node::Literal(LiteralValue::Double(d)) => Some(Lit::Double(**d)),
            Node::Literal(LiteralValue::Boolean(b)) => Some(Lit::Bool(**b)),
            _ => None,
        }
    }

    fn out(&self) -> Out<'_> {
        match self {
            Lit::Str(s) => Out::Str(Cow::Borrowed(s)),
            Lit::Int(i) => Out::Int(*i),
            Lit::Double(d) => Out::Double(*d),
            Lit::Bool(b) => Out::Bool(*b),
        }
    }
}

/// The shapes evaluated without cel.
#[derive(Clone, Debug, PartialEq)]
enum Fast {
    Lit(Lit),
    Attr(AttrId),
    MapKey(AttrId, String),
    Default(Box<Fast>, Lit),
    Millis(AttrId),
    Cmp {
        read: Box<Fast>,
        equal: bool,
        lit: Lit,
    },
    Has(AttrId),
    Cond(Box<Fast>, Lit, Lit),
}

impl Fast {
    fn of(e: &IdedExpr) -> Option<Fast> {
        if let Some(l) = Lit::of(e) {
            return Some(Fast::Lit(l));
        }
        if let Some(id) = attribute(e) {
            return Some(Fast::Attr(id));
        }
        match &e.expr {
            Node::Call(c)
                if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
            {
                let id = attribute(&c.args[0]).filter(|id| id.ty() == AttrType::StringMap)?;
                Some(Fast::MapKey(id, literal_string(&c.args[1])?.to_string()))
            }
            Node::Select(test) if test.test => {
                let mut tested = segments(&test.operand)?;
                tested.push(test.field.as_str());
                Some(Fast::Has(sextant_attributes::lookup(&tested.join("."))?))
            }
            Node::Call(c) if c.func_name == operators::CONDITIONAL && c.args.len() == 3 => {
                let cond = Fast::of(&c.args[0])?;
                let otherwise = Lit::of(&c.args[2])?;
                match (cond, Fast::of(&c.args[1])?) {
                    // has(X) ? X : literal
                    (Fast::Has(tested), Fast::Attr(read)) if tested == read => {
                        Some(Fast::Default(Box::new(Fast::Attr(read)), otherwise))
                    }
                    // condition ? literal : literal
                    (cond @ (Fast::Cmp { .. } | Fast::Attr(_)), Fast::Lit(then)) => {
                        Some(Fast::Cond(Box::new(cond), then, otherwise))
                    }
                    _ => None,
                }
            }
            Node::Call(c) if c.func_name == "getMilliseconds" && c.args.is_empty() => {
                let id =
                    attribute(c.target.as_deref()?).filter(|id| id.ty() == AttrType::Duration)?;
                Some(Fast::Millis(id))
            }
            Node::Call(c)
                if (c.func_name == operators::EQUALS || c.func_name == operators::NOT_EQUALS)
                    && c.target.is_none()
                    && c.args.len() == 2 =>
            {
                let read = Fast::of(&c.args[0])
                    .filter(|f| matches!(f, Fast::Attr(_) | Fast::MapKey(..)))?;
                let lit = Lit::of(&c.args[1])?;
                Some(Fast::Cmp {
                    read: Box::new(read),
                    equal: c.func_name == operators::EQUALS,
                    lit,
                })
            }
            _ => None,
        }
    }

    /// `None` when the value cannot be had (an absent attribute): cel would fail the same way.
    fn eval<'b>(&'b self, bag: &'b Bag) -> Option<Out<'b>> {
        match self {
            Fast::Lit(l) => Some(l.out()),
            Fast::Attr(id) => bag.get(*id).and_then(out_of),
            Fast::MapKey(id, key) => match bag.get(*id) {
                Some(Value::StringMap(m)) => m.get(key).map(|v| Out::Str(Cow::Borrowed(v))),
                _ => None,
            },
            Fast::Default(read, lit) => read.eval(bag).or_else(|| Some(lit.out())),
            Fast::Millis(id) => match bag.get(*id) {
                Some(Value::Duration(d)) => {
                    Some(Out::Int(d.seconds * 1000 + i64::from(d.nanos) / 1_000_000))
                }
                _ => None,
            },
            Fast::Cmp { read, equal, lit } => {
                let v = read.eval(bag)?;
                let same = match (&v, lit) {
                    (Out::Str(a), Lit::Str(b)) => a == b,
                    (Out::Int(a), Lit::Int(b)) => a == b,
                    (Out::Bool(a), Lit::Bool(b)) => a == b,
                    (a, b) => a
                        .number()
                        .zip(b.out().number())
                        .is_some_and(|(x, y)| x == y),
                };
                Some(Out::Bool(same == *equal))
            }
            Fast::Has(id) => Some(Out::Bool(bag.get(*id).is_some())),
            Fast::Cond(cond, then, otherwise) => match cond.eval(bag)? {
                Out::Bool(true) => Some(then.out()),
                Out::Bool(false) => Some(otherwise.out()),
                _ => None,
            },
        }
    }
}

/// The attribute a name chain refers to exactly.
fn attribute(e: &IdedExpr) -> Option<AttrId> {
    sextant_attributes::lookup(&segments(e)?.join("."))
}

/// A bag value as an expression result (maps are not scalars).
pub(crate) fn out_of(v: &Value) -> Option<Out<'_>> {
    Some(match v {
        Value::String(s) => Out::Str(Cow::Borrowed(s)),
        Value::Int64(i) => Out::Int(*i),
        Value::Double(d) => Out::Double(*d),
        Value::Bool(b) => Out::Bool(*b),
        Value::Bytes(b) => Out::Bytes(Cow::Borrowed(b)),
        Value::Timestamp(t) => {
            Out::Time(t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
        }
        Value::Duration(d) => {
            Out::Dur(d.seconds.saturating_mul(1_000_000_000) + i64::from(d.nanos))
        }
        Value::Ip(ip) => Out::Str(Cow::Owned(ip.to_string())),
        Value::StringMap(_) => return None,
    })
}

fn out_of_cel(v: CelValue) -> Option<Out<'static>> {
    Some(match v {
        CelValue::String(s) => Out::Str(Cow::Owned(s.to_string())),
        CelValue::Int(i) => Out::Int(i),
        CelValue::UInt(u) => Out::Int(i64::try_from(u).ok()?),
        CelValue::Float(f) => Out::Double(f),
        CelValue::Bool(b) => Out::Bool(b),
        CelValue::Bytes(b) => Out::Bytes(Cow::Owned(b.to_vec())),
        CelValue::Timestamp(t) => Out::Time(t.timestamp_nanos_opt()?),
        CelValue::Duration(d) => Out::Dur(d.num_nanoseconds()?),
        CelValue::Null => Out::Null,
        _ => return None,
    })
}

/// A compiled Telemetry expression.
#[derive(Debug)]
pub struct Eval {
    /// The source text.
    pub source: String,
    fast: Option<Fast>,
    cel: Expr,
    /// Every attribute the value depends on; `None` when that cannot be known statically.
    reads: Option<Vec<AttrId>>,
}

impl Eval {
    /// Compiles `source` (CEL) for the use `want`, type-checked against the vocabulary.
    pub fn compile(source: &str, want: Want) -> Result<Eval, ExprError> {
        let cel = hub_policy::compile_expr(source, want == Want::Bool)?;
        let ok = match want {
            Want::Bool => true,
            Want::Number => matches!(
                cel.ty,
                Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Bool | Ty::Dyn
            ),
            Want::Scalar => !matches!(
                cel.ty,
                Ty::Map | Ty::List | Ty::Ip | Ty::Cidr | Ty::Optional
            ),
            Want::String => matches!(cel.ty, Ty::String | Ty::Dyn),
            Want::Timestamp => matches!(cel.ty, Ty::Timestamp | Ty::Dyn),
        };
        if !ok {
            let what = match want {
                Want::Bool => "a bool",
                Want::Number => "a number (int, double or duration)",
                Want::Scalar => {
                    "a single value (not a map, list, ip, cidr or optional: convert with string())"
                }
                Want::String => "a string",
                Want::Timestamp => "a timestamp",
            };
            return Err(ExprError::Type(format!(
                "the expression must be {what}, but it is a {:?}",
                cel.ty
            )));
        }
        let reads = pure_reads(cel.root()).then(|| cel.attributes.clone());
        Ok(Eval {
            source: source.to_string(),
            fast: Fast::of(cel.root()),
            cel,
            reads,
        })
    }

    /// The attributes the value depends on: on two bags that agree on them it is the same. `None` when the
    /// expression holds something whose inputs are not known statically (it is then evaluated every time).
    pub fn reads(&self) -> Option<&[AttrId]> {
        self.reads.as_deref()
    }

    /// Whether this expression runs without cel.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// The value for `bag`; `None` when it cannot be evaluated (absent attribute, runtime error).
    pub fn eval<'b>(&'b self, bag: &'b Bag, cel: &mut CelScope<'b>) -> Option<Out<'b>> {
        match &self.fast {
            Some(f) => f.eval(bag),
            None => self.eval_with_cel(cel),
        }
    }

    /// The value computed by cel even when a fast shape applies (for tests).
    pub fn eval_with_cel<'b>(&'b self, cel: &mut CelScope<'b>) -> Option<Out<'b>> {
        out_of_cel(self.cel.execute(cel.context()).ok()?)
    }

    /// Evaluates a condition: true only when it evaluates to true.
    pub fn holds<'b>(&'b self, bag: &'b Bag, cel: &mut CelScope<'b>) -> bool {
        matches!(self.eval(bag, cel), Some(Out::Bool(true)))
    }
}

/// Whether the attributes an expression reads (hub-policy's analysis: every name chain and `has` test) are all
/// its inputs. CEL's standard library and string extension are pure functions of their arguments; message
/// construction is not analysed, so an expression that builds one opts out.
fn pure_reads(e: &IdedExpr) -> bool {
    use cel::common::ast::EntryExpr;
    match &e.expr {
        Node::Ident(_) | Node::Literal(_) => true,
        Node::Select(s) => pure_reads(&s.operand),
        Node::Call(c) => {
            c.target.as_deref().is_none_or(pure_reads) && c.args.iter().all(pure_reads)
        }
        Node::List(l) => l.elements.iter().all(pure_reads),
        Node::Map(m) => m.entries.iter().all(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => pure_reads(&me.key) && pure_reads(&me.value),
            EntryExpr::StructField(_) => false,
        }),
        Node::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .all(pure_reads),
        Node::Struct(_) | Node::Unspecified => false,
    }
}

/// A cel context for one bag, made only when an expression needs cel. The caller owns the resolver:
/// `let reads = ReadSet::default(); let resolver = BagResolver::new(&bag, &reads);`.
pub struct CelScope<'b> {
    resolver: &'b BagResolver<'b>,
    ctx: Option<Context<'b, 'b>>,
}

impl<'b> CelScope<'b> {
    /// A scope reading through `resolver`.
    pub fn new(resolver: &'b BagResolver<'b>) -> Self {
        CelScope {
            resolver,
            ctx: None,
        }
    }

    fn context(&mut self) -> &Context<'b, 'b> {
        let resolver = self.resolver;
        self.ctx.get_or_insert_with(|| {
            let mut ctx = Context::with_env(ENV.clone());
            ctx.set_variable_resolver(resolver);
            ctx
        })
    }
}
