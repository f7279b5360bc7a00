//! Who may do what: the permissions of the API, grants of them per dataset (with an optional row
//! rule), and the access a credential carries. Pure: which credential a request presents is the
//! inbound adapter's business, what it may then do is decided here.

use std::fmt;
use std::str::FromStr;

use crate::query::{Predicate, parse_filter};
use crate::schema::DatasetSchema;

/// One thing a credential may do to a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Records, pages, counts, aggregates, queries and exports.
    Read,
    /// Inserts, and upserts and merges by POST or PUT.
    Write,
    /// Changes of stored records (PATCH, update by filter).
    Update,
    /// Deletes by key and by filter.
    Delete,
    /// Operations: metrics, clustering, schemas, migrations and keys.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Write,
        Permission::Update,
        Permission::Delete,
        Permission::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Permissions on one dataset, or on every dataset (`*`), with an optional row rule: a filter in
/// the URL filter syntax (`field_code=in.(1,2)&status=eq.active`) that every record it reads,
/// changes or writes must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` for every dataset.
    pub dataset: Option<String>,
    permissions: u8,
    pub rule: Option<String>,
}

/// Why a grant's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "grant `{text}`: {why}; a grant is DATASET:PERMS[:RULE], e.g. `well_production:read,write` or `*:read:field_code=in.(1,2)`, with PERMS from read, write, update, delete, admin"
)]
pub struct GrantError {
    pub text: String,
    pub why: String,
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Grant, GrantError> {
        let refuse = |why: String| GrantError {
            text: text.to_owned(),
            why,
        };
        let mut parts = text.splitn(3, ':');
        let dataset = parts.next().unwrap_or_default().trim();
        let Some(perms) = parts.next() else {
            return Err(refuse("no permissions".into()));
        };
        let rule = parts.next().map(str::trim).filter(|r| !r.is_empty());
        if dataset.is_empty() {
            return Err(refuse("no dataset (a name, or `*` for every one)".into()));
        }
        let mut permissions = 0;
        for name in perms.split(',').map(str::trim) {
            let permission = Permission::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| refuse(format!("`{name}` is not a permission")))?;
            permissions |= permission.bit();
        }
        Ok(Grant {
            dataset: (dataset != "*").then(|| dataset.to_owned()),
            permissions,
            rule: rule.map(str::to_owned),
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.permissions().map(Permission::name).collect();
        write!(
            f,
            "{}:{}",
            self.dataset.as_deref().unwrap_or("*"),
            names.join(",")
        )?;
        match &self.rule {
            Some(rule) => write!(f, ":{rule}"),
            None => Ok(()),
        }
    }
}

impl Grant {
    pub fn permissions(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::ALL
            .into_iter()
            .filter(|p| self.permissions & p.bit() != 0)
    }

    fn covers(&self, dataset: &str, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
            && self.dataset.as_deref().is_none_or(|d| d == dataset)
    }
}

/// What one credential may do: its name (for logs and answers) and its grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub name: String,
    pub grants: Vec<Grant>,
}

/// The records a permission reaches in one dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    All,
    /// Only those the rule (the OR of the covering grants' rules) selects.
    Ruled {
        rule: Predicate,
        text: String,
    },
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "the credential `{credential}` has no `{permission}` permission on dataset `{dataset}`"
    )]
    Permission {
        credential: String,
        dataset: String,
        permission: Permission,
    },
    #[error(
        "the row rule `{rule}` of credential `{credential}` does not apply to dataset `{dataset}`: {why}"
    )]
    Rule {
        credential: String,
        dataset: String,
        rule: String,
        why: String,
    },
}

impl Access {
    /// Every permission on every dataset: the access of every request when authentication is off.
    pub fn everything() -> Access {
        Access {
            name: "anonymous".into(),
            grants: vec![Grant {
                dataset: None,
                permissions: u8::MAX,
                rule: None,
            }],
        }
    }

    /// Whether the credential holds `permission` on `dataset` (rules aside).
    pub fn may(&self, dataset: &str, permission: Permission) -> bool {
        self.grants.iter().any(|g| g.covers(dataset, permission))
    }

    /// Whether the credential holds any permission on `dataset` (lists and descriptions show it).
    pub fn sees(&self, dataset: &str) -> bool {
        Permission::ALL.iter().any(|p| self.may(dataset, *p))
    }

    /// The records `permission` reaches in `schema`'s dataset, or why it reaches none.
    pub fn rows(&self, schema: &DatasetSchema, permission: Permission) -> Result<Reach, Denied> {
        let covering: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.covers(&schema.name, permission))
            .collect();
        if covering.is_empty() {
            return Err(Denied::Permission {
                credential: self.name.clone(),
                dataset: schema.name.clone(),
                permission,
            });
        }
        let mut rules = Vec::new();
        for grant in covering {
            let Some(text) = &grant.rule else {
                return Ok(Reach::All);
            };
            let rule = compile(schema, text).map_err(|why| Denied::Rule {
                credential: self.name.clone(),
                dataset: schema.name.clone(),
                rule: text.clone(),
                why,
            })?;
            rules.push((rule, text.as_str()));
        }
        let text = rules
            .iter()
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
            .join(" or ");
        let mut predicates: Vec<Predicate> = rules.into_iter().map(|(p, _)| p).collect();
        let rule = match predicates.len() {
            1 => predicates.remove(0),
            _ => Predicate::Or(predicates),
        };
        Ok(Reach::Ruled { rule, text })
    }
}

/// A rule's filters (`name=op.value`, joined by `&`), all of which must hold.
fn compile(schema: &DatasetSchema, text: &str) -> Result<Predicate, String> {
    let filters = text
        .split('&')
        .map(|part| {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not `field=operator.value`"))?;
            parse_filter(schema, name.trim(), raw.trim()).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Predicate::all(filters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wells;
    use crate::value::Value;

    fn grant(text: &str) -> Grant {
        text.parse().unwrap()
    }

    #[test]
    fn grants_read_as_written() {
        let g = grant("wells:read, write");
        assert_eq!(g.dataset.as_deref(), Some("wells"));
        assert_eq!(
            g.permissions().collect::<Vec<_>>(),
            vec![Permission::Read, Permission::Write]
        );
        assert_eq!(g.to_string(), "wells:read,write");
        let ruled = grant("*:read:field_code=in.(1,2)&status=eq.active");
        assert_eq!(ruled.dataset, None);
        assert_eq!(
            ruled.rule.as_deref(),
            Some("field_code=in.(1,2)&status=eq.active")
        );
        assert_eq!(
            ruled.to_string(),
            "*:read:field_code=in.(1,2)&status=eq.active"
        );
        for bad in ["wells", "wells:", "wells:fly", ":read", "wells:read,,write"] {
            let refused = bad.parse::<Grant>().unwrap_err().to_string();
            assert!(refused.starts_with(&format!("grant `{bad}`")), "{refused}");
        }
    }

    #[test]
    fn permissions_follow_dataset_and_kind() {
        let schema = wells();
        let access = Access {
            name: "k".into(),
            grants: vec![
                grant(&format!("{}:read", schema.name)),
                grant("other:delete"),
            ],
        };
        assert_eq!(access.rows(&schema, Permission::Read), Ok(Reach::All));
        let denied = access.rows(&schema, Permission::Delete).unwrap_err();
        assert_eq!(
            denied.to_string(),
            format!(
                "the credential `k` has no `delete` permission on dataset `{}`",
                schema.name
            )
        );
        assert!(Access::everything().may("anything", Permission::Admin));
    }

    #[test]
    fn rules_of_covering_grants_are_ored_and_checked_against_the_schema() {
        let schema = wells();
        let key = &schema.fields[schema.primary_key[0]].name;
        let access = Access {
            name: "k".into(),
            grants: vec![
                grant(&format!("*:read:{key}=lt.3")),
                grant(&format!("*:read:{key}=eq.10")),
            ],
        };
        let Ok(Reach::Ruled { rule, text }) = access.rows(&schema, Permission::Read) else {
            panic!("a ruled grant gives ruled rows");
        };
        assert_eq!(text, format!("{key}=lt.3 or {key}=eq.10"));
        let position = schema.primary_key[0];
        let with_key = |k: i64| {
            move |f: usize| {
                if f == position {
                    Value::Integer(k)
                } else {
                    Value::Null
                }
            }
        };
        assert!(rule.holds(&with_key(2)) && rule.holds(&with_key(10)));
        assert!(!rule.holds(&with_key(5)));
        let broken = Access {
            name: "k".into(),
            grants: vec![grant("*:read:colour=eq.red")],
        };
        assert!(matches!(
            broken.rows(&schema, Permission::Read),
            Err(Denied::Rule { .. })
        ));
    }
}
