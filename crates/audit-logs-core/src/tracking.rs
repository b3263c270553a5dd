//! Which tables are tracked, and how.

use serde::{Deserialize, Serialize};
#[cfg(feature = "database")]
use tokio_postgres::types::Type;
#[cfg(feature = "database")]
use tokio_postgres::GenericClient;

#[cfg(feature = "database")]
use crate::error::{from_query, PermissionError};
use crate::error::{Error, Result, TrackingError};
#[cfg(feature = "database")]
use crate::session::{Session, Statement};

/// A table named by `$1` (regclass text): its oid and `schema.table`.
#[cfg(feature = "database")]
const RESOLVE_SQL: &str = "select c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname)
                             from pg_catalog.pg_class c
                             join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                            where c.oid = pg_catalog.to_regclass($1::pg_catalog.text)";

/// The tables a mistyped name may mean: (qualified name, bare name), the current schema first.
#[cfg(feature = "database")]
const TABLE_NAMES_SQL: &str =
    "select pg_catalog.format('%I.%I', n.nspname, c.relname), c.relname::text
                                 from pg_catalog.pg_class c
                                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                                where c.relkind in ('r', 'p') and not c.relispartition
                                  and n.nspname not in ('pg_catalog', 'information_schema', 'audit')
                                  and n.nspname not like 'pg\\_%'
                                order by n.nspname = pg_catalog.current_schema() desc, 1";

/// A table as a user names it: `users`, `public.users`, `public."Order Items"` (SQL rules, so
/// quote names with capitals or spaces), or an exact schema and name with no quoting at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TableRef {
    Sql(String),
    Exact { schema: String, name: String },
}

impl From<&str> for TableRef {
    fn from(name: &str) -> Self {
        TableRef::Sql(name.to_owned())
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableRef::Sql(name) => f.write_str(name),
            TableRef::Exact { schema, name } => {
                write!(f, "{}.{}", quote_ident(schema), quote_ident(name))
            }
        }
    }
}

/// Quotes an identifier when it must, as PostgreSQL's `quote_ident` does (keywords aside), for
/// names shown to people and a `search_path` option; DDL quotes with
/// `postgres_protocol::escape::escape_identifier`, which always quotes.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A table found in the database.
#[cfg(feature = "database")]
#[derive(Debug, Clone)]
pub(crate) struct ResolvedTable {
    pub oid: u32,
    /// `schema.table`, quoted where needed: what `audit_logs.target_type` holds.
    pub target_type: String,
}

impl TableRef {
    fn check(&self) -> Result<()> {
        let text = match self {
            TableRef::Sql(name) => name.as_str(),
            TableRef::Exact { schema, name } => {
                if schema.is_empty() || name.is_empty() {
                    return Err(Error::Tracking(TrackingError::InvalidTableName {
                        table: self.to_string(),
                        reason: "schema and name must not be empty".into(),
                    }));
                }
                name.as_str()
            }
        };
        if text.trim().is_empty() || text.contains('\0') || text.len() > 300 {
            return Err(Error::Tracking(TrackingError::InvalidTableName {
                table: text.to_owned(),
                reason: "expected a table name such as users or public.users".into(),
            }));
        }
        Ok(())
    }

    /// The SQL text for `to_regclass`, always a bound parameter, never spliced into SQL.
    fn regclass_text(&self) -> String {
        self.to_string()
    }

    /// Finds the table. Errors: [`TrackingError::TableNotFound`] (with a suggestion when only the
    /// case differs), [`TrackingError::InvalidTableName`].
    #[cfg(feature = "database")]
    pub(crate) async fn resolve(&self, client: &impl GenericClient) -> Result<ResolvedTable> {
        self.check()?;
        let row = client
            .query_typed_opt(RESOLVE_SQL, &[(&self.regclass_text(), Type::TEXT)])
            .await
            .map_err(|e| self.name_error(e))?;
        match row {
            Some(row) => Ok(ResolvedTable {
                oid: row.get(0),
                target_type: row.get(1),
            }),
            None => Err(Error::Tracking(TrackingError::TableNotFound {
                table: self.to_string(),
                hint: self.suggest(client).await,
            })),
        }
    }

    /// `target_type` for history queries: the table's name, or, for a table that no longer
    /// exists, the name as written (normalized), so the history of dropped tables stays readable.
    #[cfg(feature = "database")]
    pub(crate) async fn target_type(&self, client: &impl GenericClient) -> Result<String> {
        match self.resolve(client).await {
            Ok(table) => Ok(table.target_type),
            Err(Error::Tracking(TrackingError::TableNotFound { .. })) => {
                let row = client
                    .query_typed_one(
                        "select case pg_catalog.cardinality(p.parts)
                                  when 1 then pg_catalog.format('%I.%I', pg_catalog.current_schema(), p.parts[1])
                                  else pg_catalog.format('%I.%I', p.parts[1], p.parts[2]) end
                           from (select pg_catalog.parse_ident($1) as parts) p",
                        &[(&self.regclass_text(), Type::TEXT)],
                    )
                    .await
                    .map_err(|e| self.name_error(e))?;
                Ok(row.get(0))
            }
            Err(e) => Err(e),
        }
    }

    /// [`TableRef::resolve`] over a [`Session`]: the table's `target_type`.
    #[cfg(feature = "database")]
    pub(crate) async fn resolve_on(&self, db: &impl Session) -> Result<String> {
        self.check()?;
        let sql = format!("select r.name from ({RESOLVE_SQL}) as r(oid, name)");
        let rows = db
            .rows(Statement::new(sql, vec![Some(self.regclass_text())]))
            .await
            .map_err(|failure| {
                let message = match &failure {
                    crate::session::Failure::Server { message, .. } => message.as_str(),
                    crate::session::Failure::Other(_) => "",
                };
                self.name_error_of(failure.sqlstate(), message)
                    .unwrap_or_else(|| failure.into_error(Some(&self.to_string())))
            })?;
        if let Some(name) = rows.into_iter().next().flatten() {
            return Ok(name);
        }
        let sql = format!(
            "select pg_catalog.jsonb_build_array(t.qualified, t.bare)::pg_catalog.text
               from ({TABLE_NAMES_SQL}) as t(qualified, bare)"
        );
        let tables: Vec<(String, String)> = match db.rows(Statement::bare(sql)).await {
            Ok(rows) => rows
                .iter()
                .flatten()
                .filter_map(|row| serde_json::from_str(row).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        Err(Error::Tracking(TrackingError::TableNotFound {
            table: self.to_string(),
            hint: self.closest_of(&tables),
        }))
    }

    #[cfg(feature = "database")]
    fn name_error(&self, e: tokio_postgres::Error) -> Error {
        let message = e.as_db_error().map(|d| d.message().to_owned());
        match self.name_error_of(e.code().map(|c| c.code()), message.as_deref().unwrap_or("")) {
            Some(error) => error,
            None => from_query(e, Some(&self.to_string())),
        }
    }

    /// The error a bad name gets, from the SQLSTATE its lookup failed with; `None` for others.
    fn name_error_of(&self, code: Option<&str>, message: &str) -> Option<Error> {
        match code {
            // invalid_name, syntax: "Order Items" unquoted, a stray quote...
            Some("42602" | "42601" | "22023") => Some(Error::Tracking(TrackingError::InvalidTableName {
                table: self.to_string(),
                reason: format!(
                    "{}; quote names with capitals or spaces as in SQL (public.\"Order Items\") or pass the schema and name separately",
                    if message.is_empty() { "bad syntax" } else { message }
                ),
            })),
            Some("3F000") => Some(Error::Tracking(TrackingError::TableNotFound {
                table: self.to_string(),
                hint: Some("no such schema".into()),
            })),
            _ => None,
        }
    }

    #[cfg(feature = "database")]
    async fn suggest(&self, client: &impl GenericClient) -> Option<String> {
        let rows = client.query_typed(TABLE_NAMES_SQL, &[]).await.ok()?;
        let tables: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        self.closest_of(&tables)
    }

    /// "did you mean ...?", of `tables` (see [`closest_table`]).
    fn closest_of(&self, tables: &[(String, String)]) -> Option<String> {
        let bare = match self {
            TableRef::Sql(name) => name
                .rsplit('.')
                .next()
                .unwrap_or(name)
                .trim_matches('"')
                .to_owned(),
            TableRef::Exact { name, .. } => name.clone(),
        };
        closest_table(&bare, tables).map(|name| format!("did you mean {name}?"))
    }
}

/// The table a mistyped name most likely meant: the same name in another case, the singular or
/// plural of it, a model name (`BlogPost`) as the table an ORM makes of it (`blog_posts`), or
/// the nearest name at most two edits away. `tables` holds (qualified name, bare name), the
/// current schema first.
fn closest_table<'a>(wanted: &str, tables: &'a [(String, String)]) -> Option<&'a str> {
    let snake = to_snake_case(wanted);
    let wanted = wanted.to_lowercase();
    let forms: Vec<String> = [wanted.clone(), snake.clone()]
        .into_iter()
        .flat_map(|w| {
            let singular = w
                .strip_suffix("es")
                .filter(|_| w.ends_with("ses") || w.ends_with("xes"))
                .or_else(|| w.strip_suffix('s'))
                .map(str::to_owned);
            [
                Some(format!("{w}s")),
                Some(format!("{w}es")),
                singular,
                Some(w),
            ]
        })
        .flatten()
        .collect();
    let exact = tables
        .iter()
        .find(|(_, name)| forms.iter().any(|f| *f == name.to_lowercase()));
    if let Some((qualified, _)) = exact {
        return Some(qualified);
    }
    let limit = if wanted.chars().count() < 4 { 1 } else { 2 };
    tables
        .iter()
        .map(|(qualified, name)| {
            let name = name.to_lowercase();
            let distance = strsim::damerau_levenshtein(&wanted, &name)
                .min(strsim::damerau_levenshtein(&snake, &name));
            (distance, qualified)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, qualified)| qualified.as_str())
}

/// When `field` is not a column of the table `target_type` names (an ORM's field name,
/// `authorId` for `author_id`), the error saying so, with the column it may mean. `None` when it
/// is one, or when the table is gone (its history keeps the columns it had).
#[cfg(feature = "database")]
pub(crate) async fn unknown_column(
    client: &impl GenericClient,
    target_type: &str,
    field: &str,
) -> Option<Error> {
    let rows = client
        .query_typed(
            "select a.attname::text from pg_catalog.pg_attribute a
              where a.attrelid = pg_catalog.to_regclass($1) and a.attnum > 0 and not a.attisdropped",
            &[(&target_type, Type::TEXT)],
        )
        .await
        .ok()?;
    let columns: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    if columns.is_empty() || columns.iter().any(|c| c == field) {
        return None;
    }
    let snake = to_snake_case(field);
    let meant = columns
        .iter()
        .find(|c| **c == snake || c.to_lowercase() == field.to_lowercase())
        .or_else(|| {
            columns
                .iter()
                .map(|c| (strsim::damerau_levenshtein(&snake, c), c))
                .filter(|(distance, _)| *distance <= 2)
                .min_by_key(|(distance, _)| *distance)
                .map(|(_, c)| c)
        });
    let hint = meant.map_or_else(String::new, |c| format!("; did you mean {c}?"));
    Some(Error::Tracking(TrackingError::InvalidColumn {
        table: target_type.to_owned(),
        column: Some(field.to_owned()),
        message: format!(
            "{target_type} has no column {field:?}{hint} (fields are the table's column names)"
        ),
    }))
}

/// `BlogPost` or `blogPost` as `blog_post`, the table name an ORM makes of a model.
pub(crate) fn to_snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && previous_lower {
            snake.push('_');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        snake.extend(c.to_lowercase());
    }
    snake
}

/// Options of `enableTracking`. An option left unset keeps what the table has when it is tracked
/// already (enabling again after altering it must not start recording an excluded password
/// hash), and takes the default otherwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "napi", napi_derive::napi(object))]
pub struct TrackingOptions {
    /// Columns whose values are never stored, e.g. `['password_hash']` (their changes are
    /// still named in `changedFields`). Default: none.
    pub exclude_columns: Option<Vec<String>>,
    /// Also record updates that change nothing. Default: false (they are skipped).
    pub record_unchanged: Option<bool>,
    /// Fail writes that carry no audit context (`AUDIT_LOGS_CONTEXT_REQUIRED` from the write)
    /// instead of recording them unattributed. Default: false.
    pub require_context: Option<bool>,
}

/// A tracked table, from the `audit.tracked_tables` view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct TrackedTable {
    pub schema: String,
    pub name: String,
    /// What `audit_logs.target_type` holds for its changes: `schema.table`, quoted as in SQL.
    pub target_type: String,
    pub primary_key: Vec<String>,
    pub excluded_columns: Vec<String>,
    /// Updates that change nothing are recorded too (the option of the same name).
    pub record_unchanged: bool,
    /// @deprecated The opposite of `recordUnchanged`, its name before; kept for existing readers.
    pub skip_unchanged: bool,
    /// Whether a write without an audit context fails.
    pub require_context: bool,
    /// Empty when tracking is current; otherwise what changed since it was enabled
    /// (enable tracking again to refresh). Includes every capture problem.
    pub needs_refresh: Vec<String>,
    /// The role capture runs as: `audit_writer`, or the audit log's owner where the migration
    /// could not create that role.
    pub capture_role: String,
    /// Capture triggers missing, disabled or firing only for replication, and a missing event
    /// trigger that capture relies on: changes that go unrecorded until tracking is enabled again.
    pub capture_problems: Vec<String>,
}

#[cfg(feature = "database")]
pub(crate) async fn enable(
    client: &impl GenericClient,
    table: &TableRef,
    options: &TrackingOptions,
) -> Result<TrackedTable> {
    let resolved = table.resolve(client).await?;
    let shown = resolved.target_type.clone();
    let enabled = client
        .query_typed(
            "select audit.enable_tracking($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4)",
            &[
                (&resolved.oid, Type::OID),
                (&options.exclude_columns, Type::TEXT_ARRAY),
                (&options.record_unchanged.map(|record| !record), Type::BOOL),
                (&options.require_context, Type::BOOL),
            ],
        )
        .await
        .map_err(|e| from_query(e, Some(&shown)));
    if let Err(Error::Permission(PermissionError::Denied { reason })) = enabled {
        return Err(not_the_owner(client, resolved.oid, &shown, reason).await);
    }
    enabled?;
    find(client, resolved.oid)
        .await?
        .ok_or(Error::Tracking(TrackingError::TableNotFound {
            table: shown,
            hint: None,
        }))
}

/// A migrating role that may write the log but does not own the table (a managed database's
/// admin, not a superuser) cannot create the capture triggers on it: say whose table it is and
/// the grant that lets the role act for its owner.
#[cfg(feature = "database")]
async fn not_the_owner(
    client: &impl GenericClient,
    oid: u32,
    table: &str,
    reason: String,
) -> Error {
    let roles = client
        .query_typed_opt(
            "select pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)),
                    pg_catalog.quote_ident(current_user::pg_catalog.text)
               from pg_catalog.pg_class c where c.oid = $1
                and not pg_catalog.pg_has_role(c.relowner, 'USAGE')",
            &[(&oid, Type::OID)],
        )
        .await;
    match roles {
        Ok(Some(row)) => {
            let (owner, role): (String, String) = (row.get(0), row.get(1));
            Error::Permission(PermissionError::Denied {
                reason: format!(
                    "{reason}: enable creates triggers on {table}, which only its owner ({owner}) or a superuser may do; \
                     run it as one of them, or first: grant {owner} to {role}"
                ),
            })
        }
        _ => Error::Permission(PermissionError::Denied { reason }),
    }
}

#[cfg(feature = "database")]
pub(crate) async fn disable(client: &impl GenericClient, table: &TableRef) -> Result<bool> {
    let resolved = table.resolve(client).await?;
    let row = client
        .query_typed_one(
            "select audit.disable_tracking($1::pg_catalog.oid::pg_catalog.regclass)",
            &[(&resolved.oid, Type::OID)],
        )
        .await
        .map_err(|e| from_query(e, Some(&resolved.target_type)))?;
    Ok(row.get(0))
}

/// The view's rows as JSON, so that a database whose newer migrations are still pending (an
/// older view, without the later columns) lists its tables too.
#[cfg(feature = "database")]
const TRACKED_ROWS: &str = "select pg_catalog.to_jsonb(t) from audit.tracked_tables t";

#[cfg(feature = "database")]
pub(crate) async fn list(client: &impl GenericClient) -> Result<Vec<TrackedTable>> {
    let rows = client
        .query_typed(
            &format!("{TRACKED_ROWS} order by t.schema_name, t.table_name"),
            &[],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(rows.iter().map(tracked_from_row).collect())
}

#[cfg(feature = "database")]
async fn find(client: &impl GenericClient, oid: u32) -> Result<Option<TrackedTable>> {
    let row = client
        .query_typed_opt(
            &format!(
                // By name, not by casting each row's name to regclass: that cast would be tried
                // on rows the role may not see (pg_toast), and fail for a role that is not a
                // superuser.
                "{TRACKED_ROWS}
                  join pg_catalog.pg_namespace n on n.nspname = t.schema_name
                  join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = t.table_name
                 where c.oid = $1"
            ),
            &[(&oid, Type::OID)],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(row.as_ref().map(tracked_from_row))
}

#[cfg(feature = "database")]
fn tracked_from_row(row: &tokio_postgres::Row) -> TrackedTable {
    let view: serde_json::Value = row.get(0);
    let text = |key: &str| view[key].as_str().unwrap_or_default().to_owned();
    let texts = |key: &str| -> Vec<String> {
        view[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let skip_unchanged = view["skip_unchanged"].as_bool().unwrap_or(true);
    TrackedTable {
        schema: text("schema_name"),
        name: text("table_name"),
        target_type: text("target_type"),
        primary_key: texts("primary_key"),
        excluded_columns: texts("excluded_columns"),
        record_unchanged: !skip_unchanged,
        skip_unchanged,
        require_context: view["require_context"].as_bool().unwrap_or(false),
        needs_refresh: texts("needs_refresh"),
        capture_role: text("capture_role"),
        capture_problems: texts("capture_problems"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_matches_postgres() {
        assert_eq!(quote_ident("users"), "users");
        assert_eq!(quote_ident("Order Items"), "\"Order Items\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn a_mistyped_table_is_matched_by_case_number_model_name_or_a_small_typo() {
        let tables: Vec<(String, String)> = ["users", "posts", "blog_posts", "addresses", "orders"]
            .iter()
            .map(|t| (format!("public.{t}"), (*t).to_owned()))
            .collect();
        for (wanted, meant) in [
            ("user", Some("public.users")),
            ("Post", Some("public.posts")),
            ("USERS", Some("public.users")),
            ("usres", Some("public.users")),
            ("BlogPost", Some("public.blog_posts")),
            ("address", Some("public.addresses")),
            ("order_item", None),
            ("xyz", None),
        ] {
            assert_eq!(closest_table(wanted, &tables), meant, "{wanted}");
        }
    }
}
