//! The house rules, checked on this repository's source tree.

use std::path::Path;

use sextant_house::modules::ModuleGraph;
use sextant_house::workspace::Workspace;

fn workspace() -> Workspace {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Workspace::read(&root).expect("the workspace's manifests")
}

#[test]
fn no_role_depends_on_another_roles_crates() {
    let ws = workspace();
    assert!(
        ws.members.iter().filter(|m| m.role.is_some()).count() >= 20,
        "the roles' crates were found"
    );
    let crossing = ws.cross_role();
    assert!(
        crossing.is_empty(),
        "roles share only neutral crates (proto/, sdk/, testing/); these cross: {crossing:?}"
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let ws = workspace();
    let mut circles = Vec::new();
    let mut modules = 0;
    for member in &ws.members {
        for root in &member.roots {
            let graph = ModuleGraph::read(root).unwrap_or_else(|e| panic!("{e}"));
            modules += graph.files.len();
            for circle in graph.circles() {
                let at = root.strip_prefix(&ws.root).unwrap_or(root);
                circles.push(format!(
                    "{} ({}): {}",
                    member.name,
                    at.display(),
                    circle.join(" ↔ ")
                ));
            }
        }
    }
    println!("{modules} modules read");
    assert!(modules > 500, "the modules were found ({modules})");
    assert!(
        circles.is_empty(),
        "modules importing each other in a circle (give the shared piece its own module):\n{}",
        circles.join("\n")
    );
}
