//! CEL compilation and type checking against the attribute vocabulary (`hub-policy`), as every Policy and
//! RateLimit expression is compiled when the hub loads it.

use hub_policy::{Ty, compile_expr};

/// Compiles the input as a rule expression (`when`, which must be a bool) and as a value expression (a
/// rate-limit dimension, any type). Both compile, or neither does, except when the value is not a bool; a
/// compiled expression's lists of what it reads are sorted, without repeats, and agree with each other.
pub fn cel(data: &[u8]) {
    // Expressions come from YAML strings: UTF-8.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let condition = compile_expr(source, true);
    match compile_expr(source, false) {
        Ok(e) => {
            let boolean = matches!(e.ty, Ty::Bool | Ty::Dyn);
            assert_eq!(
                condition.is_ok(),
                boolean,
                "a {} value as a condition: {:?}",
                e.ty.name(),
                condition.err()
            );
            assert!(e.attributes.is_sorted() && !has_repeats(&e.attributes));
            assert!(e.whole.is_sorted() && !has_repeats(&e.whole));
            assert!(e.keys.is_sorted() && !has_repeats(&e.keys));
            for id in e.whole.iter().chain(e.keys.iter().map(|(id, _)| id)) {
                assert!(
                    e.attributes.binary_search(id).is_ok(),
                    "{} is read but not listed",
                    id.name()
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(condition.is_err(), "compiles only as a condition");
        }
    }
}

fn has_repeats<T: PartialEq>(sorted: &[T]) -> bool {
    sorted.windows(2).any(|w| w[0] == w[1])
}
