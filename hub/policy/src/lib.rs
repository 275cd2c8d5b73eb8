//! The policy engine of the hub's Check path.
//!
//! [`validate`] turns loaded resources (hub-config) into compiled CEL programs, checked against the attribute
//! vocabulary; that step is pure and is all `sextant validate` runs. [`Validated::build`] attaches rate-limit
//! buckets and indexes selectors, giving an immutable [`Snapshot`]. [`check`] decides one attribute bag with a
//! snapshot: indexed candidate policies, CEL evaluated lazily against the bag, rate limits in the same call,
//! and the referenced attributes and cacheability a proxy needs to cache the [`Decision`]. [`rate_limit`]
//! serves Envoy's rate-limit service with the same RateLimits.

mod codes;
mod decision;
mod engine;
mod expr;
mod functions;
mod index;
mod net;
mod resolve;
mod snapshot;
mod ty;

pub use codes::{by_name as code_by_name, name_of as code_name};
pub use decision::{
    Decision, EvalFailure, EvalFailureKind, HeaderAction, HeaderOp, HeaderTarget, Presence,
    QuotaGrant, Reference, RuleHit,
};
pub use engine::{
    ABSENT_DIMENSION, AdapterVerdict, MAX_LEASE, NoAdapters, PolicyAdapters, QuotaRequest,
    RateLimitDecision, VerdictFuture, check, check_leasing, check_with, lease_size, rate_limit,
};
pub use expr::{ENV, Expr, ExprError, compile as compile_expr, literal_string, segments};
pub use functions::{FUNCTIONS, Function, Overload};
pub use net::{Cidr, Ip};
pub use resolve::{BagResolver, ReadSet};
pub use snapshot::{
    Compiled, CompiledPolicy, CompiledRateLimit, CompiledRule, Snapshot, Validated, validate,
    validate_reusing,
};
pub use ty::Ty;
