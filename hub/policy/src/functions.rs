//! The CEL functions an expression may call, with their signatures: the one list the compiler checks calls
//! against (anything else is refused at load time) and docs/policies.md documents (a test keeps them equal).
//!
//! Operators (`==`, `<`, `+`, `in`, `[]`, `? :`, …) and macros (`has`, `all`, `exists`, `exists_one`, `map`,
//! `filter`) are checked by the compiler itself.

use crate::ty::Ty;

/// One overload: the receiver for a method call (`x.f(…)`), else a global call (`f(…)`).
#[derive(Debug)]
pub struct Overload {
    /// The receiver's type, for a method.
    pub receiver: Option<Ty>,
    /// The arguments' types.
    pub args: &'static [Ty],
    /// The result's type.
    pub result: Ty,
}

/// A function and its overloads.
#[derive(Debug)]
pub struct Function {
    /// The name written in CEL.
    pub name: &'static str,
    /// Its overloads.
    pub overloads: &'static [Overload],
}

const fn global(args: &'static [Ty], result: Ty) -> Overload {
    Overload {
        receiver: None,
        args,
        result,
    }
}

const fn method(receiver: Ty, args: &'static [Ty], result: Ty) -> Overload {
    Overload {
        receiver: Some(receiver),
        args,
        result,
    }
}

use Ty::{
    Bool, Bytes, Cidr, Double, Duration, Int, Ip, List, Map, Optional, String, Timestamp, Uint,
};

/// The timestamp getters, with and without a time zone.
macro_rules! getter {
    ($name:literal) => {
        Function {
            name: $name,
            overloads: &[
                method(Timestamp, &[], Int),
                method(Timestamp, &[String], Int),
            ],
        }
    };
    ($name:literal, duration) => {
        Function {
            name: $name,
            overloads: &[
                method(Timestamp, &[], Int),
                method(Timestamp, &[String], Int),
                method(Duration, &[], Int),
            ],
        }
    };
}

/// Every function an expression may call.
pub static FUNCTIONS: &[Function] = &[
    Function {
        name: "size",
        overloads: &[
            global(&[String], Int),
            global(&[Bytes], Int),
            global(&[List], Int),
            global(&[Map], Int),
            method(String, &[], Int),
            method(Bytes, &[], Int),
            method(List, &[], Int),
            method(Map, &[], Int),
        ],
    },
    Function {
        name: "int",
        overloads: &[
            global(&[Int], Int),
            global(&[Uint], Int),
            global(&[Double], Int),
            global(&[String], Int),
            global(&[Timestamp], Int),
        ],
    },
    Function {
        name: "uint",
        overloads: &[
            global(&[Uint], Uint),
            global(&[Int], Uint),
            global(&[Double], Uint),
            global(&[String], Uint),
        ],
    },
    Function {
        name: "double",
        overloads: &[
            global(&[Double], Double),
            global(&[Int], Double),
            global(&[Uint], Double),
            global(&[String], Double),
        ],
    },
    Function {
        name: "string",
        overloads: &[
            global(&[String], String),
            global(&[Bool], String),
            global(&[Int], String),
            global(&[Uint], String),
            global(&[Double], String),
            global(&[Bytes], String),
            global(&[Timestamp], String),
            global(&[Duration], String),
            global(&[Ip], String),
            global(&[Cidr], String),
        ],
    },
    Function {
        name: "bool",
        overloads: &[global(&[Bool], Bool), global(&[String], Bool)],
    },
    Function {
        name: "timestamp",
        overloads: &[
            global(&[String], Timestamp),
            global(&[Timestamp], Timestamp),
            global(&[Int], Timestamp),
        ],
    },
    Function {
        name: "duration",
        overloads: &[global(&[String], Duration), global(&[Duration], Duration)],
    },
    Function {
        name: "startsWith",
        overloads: &[method(String, &[String], Bool)],
    },
    Function {
        name: "endsWith",
        overloads: &[method(String, &[String], Bool)],
    },
    Function {
        name: "contains",
        overloads: &[method(String, &[String], Bool)],
    },
    Function {
        name: "matches",
        overloads: &[
            method(String, &[String], Bool),
            global(&[String, String], Bool),
        ],
    },
    Function {
        name: "lowerAscii",
        overloads: &[method(String, &[], String)],
    },
    Function {
        name: "upperAscii",
        overloads: &[method(String, &[], String)],
    },
    Function {
        name: "trim",
        overloads: &[method(String, &[], String)],
    },
    Function {
        name: "replace",
        overloads: &[
            method(String, &[String, String], String),
            method(String, &[String, String, Int], String),
        ],
    },
    Function {
        name: "split",
        overloads: &[
            method(String, &[String], List),
            method(String, &[String, Int], List),
        ],
    },
    Function {
        name: "substring",
        overloads: &[
            method(String, &[Int], String),
            method(String, &[Int, Int], String),
        ],
    },
    Function {
        name: "indexOf",
        overloads: &[
            method(String, &[String], Int),
            method(String, &[String, Int], Int),
        ],
    },
    Function {
        name: "lastIndexOf",
        overloads: &[
            method(String, &[String], Int),
            method(String, &[String, Int], Int),
        ],
    },
    Function {
        name: "charAt",
        overloads: &[method(String, &[Int], String)],
    },
    Function {
        name: "join",
        overloads: &[method(List, &[], String), method(List, &[String], String)],
    },
    getter!("getFullYear"),
    getter!("getMonth"),
    getter!("getDayOfYear"),
    getter!("getDayOfMonth"),
    getter!("getDate"),
    getter!("getDayOfWeek"),
    getter!("getHours", duration),
    getter!("getMinutes", duration),
    getter!("getSeconds", duration),
    getter!("getMilliseconds", duration),
    Function {
        name: "hasValue",
        overloads: &[method(Optional, &[], Bool)],
    },
    Function {
        name: "value",
        overloads: &[method(Optional, &[], Ty::Dyn)],
    },
    Function {
        name: "orValue",
        overloads: &[method(Optional, &[Ty::Dyn], Ty::Dyn)],
    },
    Function {
        name: "ip",
        overloads: &[global(&[String], Ip), method(Cidr, &[], Ip)],
    },
    Function {
        name: "cidr",
        overloads: &[global(&[String], Cidr)],
    },
    Function {
        name: "isIP",
        overloads: &[global(&[String], Bool)],
    },
    Function {
        name: "isCIDR",
        overloads: &[global(&[String], Bool)],
    },
    Function {
        name: "family",
        overloads: &[method(Ip, &[], Int)],
    },
    Function {
        name: "isLoopback",
        overloads: &[method(Ip, &[], Bool)],
    },
    Function {
        name: "isUnspecified",
        overloads: &[method(Ip, &[], Bool)],
    },
    Function {
        name: "isLinkLocalUnicast",
        overloads: &[method(Ip, &[], Bool)],
    },
    Function {
        name: "isGlobalUnicast",
        overloads: &[method(Ip, &[], Bool)],
    },
    Function {
        name: "containsIP",
        overloads: &[method(Cidr, &[Ip], Bool), method(Cidr, &[String], Bool)],
    },
    Function {
        name: "containsCIDR",
        overloads: &[method(Cidr, &[Cidr], Bool), method(Cidr, &[String], Bool)],
    },
    Function {
        name: "prefixLength",
        overloads: &[method(Cidr, &[], Int)],
    },
    Function {
        name: "masked",
        overloads: &[method(Cidr, &[], Cidr)],
    },
];

/// The function named `name`.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The names of every function, for messages and docs.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.name)
}

impl Function {
    /// The result type of a call with this receiver and these arguments, or why no overload takes them.
    pub fn check(&self, receiver: Option<Ty>, args: &[Ty]) -> Result<Ty, std::string::String> {
        let fits = |want: Ty, got: Ty| want == got || got == Ty::Dyn || want == Ty::Dyn;
        let mut results = self.overloads.iter().filter(|o| {
            o.receiver.is_some() == receiver.is_some()
                && o.receiver.zip(receiver).is_none_or(|(w, g)| fits(w, g))
                && o.args.len() == args.len()
                && o.args.iter().zip(args).all(|(w, g)| fits(*w, *g))
        });
        let Some(first) = results.next() else {
            return Err(self.mismatch(receiver, args));
        };
        Ok(if results.all(|o| o.result == first.result) {
            first.result
        } else {
            Ty::Dyn
        })
    }

    fn mismatch(&self, receiver: Option<Ty>, args: &[Ty]) -> std::string::String {
        let call = |receiver: Option<Ty>, args: &mut dyn Iterator<Item = Ty>| {
            let args: Vec<&str> = args.map(Ty::name).collect();
            match receiver {
                Some(r) => format!("{}.{}({})", r.name(), self.name, args.join(", ")),
                None => format!("{}({})", self.name, args.join(", ")),
            }
        };
        let known: Vec<std::string::String> = self
            .overloads
            .iter()
            .map(|o| call(o.receiver, &mut o.args.iter().copied()))
            .collect();
        format!(
            "`{}` cannot be called as {}; it takes {}",
            self.name,
            call(receiver, &mut args.iter().copied()),
            known.join(" or ")
        )
    }
}
