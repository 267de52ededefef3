//! `[marketplace.<id>]`: endpoint overrides, checked against each marketplace's spec.

use super::*;

impl Endpoints {
    pub(super) fn from_raw(raw: &RawMarketplaces, c: &mut Collector<'_>) -> Endpoints {
        let mut endpoints = Endpoints::default();
        for (id, table) in raw {
            let Some(m) = Marketplace::parse(id) else {
                c.at(
                    table.span(),
                    format!("unknown marketplace `{id}` in [marketplace.{id}]"),
                    format!(
                        "use one of: {}",
                        Marketplace::ALL.map(|m| m.as_str()).join(", ")
                    ),
                );
                continue;
            };
            let keys = m.spec().endpoints;
            for (key, value) in table.get_ref() {
                let Some(e) = keys.iter().find(|e| e.key == key) else {
                    c.at(
                        value.span(),
                        format!("unknown key `{key}` in [marketplace.{id}]"),
                        format!(
                            "{} takes: {}",
                            m.display_name(),
                            keys.iter().map(|e| e.key).collect::<Vec<_>>().join(", ")
                        ),
                    );
                    continue;
                };
                let url = endpoint_field(c, Some(value), endpoints.get(m, e.key));
                endpoints.set(m, e.key, url);
            }
        }
        endpoints
    }
}
