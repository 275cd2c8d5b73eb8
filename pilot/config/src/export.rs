//! Istio's `exportTo`: which namespaces see a ServiceEntry, VirtualService, DestinationRule or Kubernetes
//! Service (annotation `networking.istio.io/exportTo`). A proxy only gets what is exported to its namespace.

/// The namespaces a resource is exported to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExportTo {
    /// Every namespace: `*`, or nothing said.
    #[default]
    All,
    /// These namespaces only: `.` stands for the resource's own; `~` alone for none.
    Only(Box<[String]>),
}

impl ExportTo {
    /// The `exportTo` list of a resource in `namespace`, as validated (see `Errs::export_to`).
    pub fn resolve(list: &[String], namespace: &str) -> ExportTo {
        if list.is_empty() || list.iter().any(|n| n == "*") {
            return ExportTo::All;
        }
        ExportTo::Only(
            list.iter()
                .filter(|n| *n != "~")
                .map(|n| match n.as_str() {
                    "." => namespace.to_string(),
                    other => other.to_string(),
                })
                .collect(),
        )
    }

    /// Whether proxies in `namespace` see the resource.
    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Only(list) => list.iter().any(|n| n == namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(list: &[&str]) -> ExportTo {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        ExportTo::resolve(&list, "bookinfo")
    }

    #[test]
    fn istio_export_to_values() {
        assert_eq!(resolve(&[]), ExportTo::All);
        assert!(resolve(&["*", "."]).visible_to("anywhere"));
        let own = resolve(&["."]);
        assert!(own.visible_to("bookinfo") && !own.visible_to("prod"));
        let listed = resolve(&["prod", "."]);
        assert!(listed.visible_to("prod") && listed.visible_to("bookinfo"));
        assert!(!listed.visible_to("dev"));
        assert!(!resolve(&["~"]).visible_to("bookinfo"));
    }
}
