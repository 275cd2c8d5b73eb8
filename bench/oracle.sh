#!/usr/bin/env bash
# The CEL oracle with many more cases than .ci/test runs (256 per property): the hub's evaluation against cel
# over a fully converted context, and decisions against their referenced attributes (hub/policy/tests/oracle.rs).
# Usage: bench/oracle.sh [CASES]   (default 100000 per property; about a minute per 20000 in a debug build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROPTEST_CASES="${1:-100000}" cargo test --release -p hub-policy --test oracle -- --nocapture 2>&1 |
  grep -E "^(oracle|referenced attributes|test |test result)|panicked|hub:|reference:|on Bag"
