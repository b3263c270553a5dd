//! Application events: the entries that are not row changes (`user.login`, `report.exported`,
//! `permission.denied`...), recorded through `audit.log_events` in the caller's transaction or
//! on their own.

use heck::ToLowerCamelCase;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
#[cfg(feature = "database")]
use tokio_postgres::types::{Json, Type};
#[cfg(feature = "database")]
use tokio_postgres::GenericClient;

use crate::context::AuditContext;
#[cfg(feature = "database")]
use crate::error::from_query;
use crate::error::{Error, EventError, Result};
#[cfg(feature = "database")]
use crate::history::{entry_select, AuditEntry};
use crate::history::{read_as, ENTRY_COLUMNS};
use crate::tracking::to_snake_case;

/// The most events one call records (the limit of `audit.log_events`).
pub const MAX_EVENTS: usize = 10_000;
/// The largest metadata of one event, serialized.
pub const MAX_METADATA_BYTES: usize = 65_536;
const MAX_ACTION_CHARS: usize = 100;
const MAX_TARGET_TYPE_BYTES: usize = 200;
const MAX_TARGET_ID_BYTES: usize = 1024;
const ROW_ACTIONS: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "TRUNCATE"];

/// An event to record. Context fields left empty are taken from the request context and then
/// from the transaction's `audit.context`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewEvent {
    /// What happened: `user.login`, `project.created`... (letters, digits, `_ . : -`).
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Details, merged over the context's metadata.
    pub metadata: Option<Map<String, Value>>,
    pub context: AuditContext,
}

/// An application event to record, as JavaScript writes it (`log()`'s input, camelCase), read by
/// `NewEvent::from_camel_case`, which names the field at fault and takes an integer `actorId`.
// The binding declares it to TypeScript as `CreateAuditLogInput` (the napi feature).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_to_js = false, js_name = "CreateAuditLogInput")
)]
pub struct EventInput {
    /// What happened: `user.login`, `project.created`... (letters, digits, `_ . : -`).
    pub action: String,
    pub target_type: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | number"))]
    pub target_id: Option<Value>,
    pub metadata: Option<Value>,
    /// An integer (an ORM's `Int` id) is stored as its digits.
    #[cfg_attr(feature = "napi", napi(ts_type = "string | number"))]
    pub actor_id: Option<String>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any string.
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | number"))]
    pub request_id: Option<String>,
    pub reason: Option<String>,
}

impl NewEvent {
    pub fn new(action: impl Into<String>) -> NewEvent {
        NewEvent {
            action: action.into(),
            ..Default::default()
        }
    }

    /// Reads `{ action, targetType, targetId, metadata, actorId, actorType, actorEmail,
    /// ipAddress, userAgent, requestId, reason }`; unknown keys are refused by name.
    pub fn from_camel_case(value: Value) -> Result<NewEvent> {
        let Value::Object(mut object) = value else {
            return Err(invalid(format!(
                "expected an object such as {{ action: 'user.login', actorId: '42' }}, got {value}"
            )));
        };
        crate::context::integer_ids_as_text(&mut object);
        let input: EventInput =
            crate::context::read_named(Value::Object(object)).map_err(invalid)?;
        let target_id = match input.target_id {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(Value::Number(id)) => Some(id.to_string()),
            Some(other) => {
                return Err(invalid(format!(
                    "targetId must be a string or a number, got {other}"
                )))
            }
        };
        let metadata = match input.metadata {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => return Err(invalid(format!("metadata must be an object, got {other}"))),
        };
        let ip_address = input
            .ip_address
            .as_deref()
            .map(AuditContext::parse_ip)
            .transpose()?;
        Ok(NewEvent {
            action: input.action,
            target_type: input.target_type,
            target_id,
            metadata,
            context: AuditContext {
                actor_id: input.actor_id,
                actor_type: input.actor_type,
                actor_email: input.actor_email,
                ip_address,
                user_agent: input.user_agent,
                request_id: input.request_id,
                reason: input.reason,
                ..Default::default()
            },
        })
    }

    /// The checks `audit.check_event` makes, made before anything reaches the database so
    /// that every caller (a pool, a caller's pg client or Prisma transaction) gets a typed error.
    pub fn check(&self) -> Result<()> {
        let action = &self.action;
        let valid_name = action.chars().count() <= MAX_ACTION_CHARS
            && action
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            && action
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        if !valid_name {
            return Err(invalid(format!(
                "action {action:?} is not valid: use 1 to {MAX_ACTION_CHARS} letters, digits, \"_\", \".\", \":\" or \"-\", starting with a letter (e.g. user.login)"
            )));
        }
        if ROW_ACTIONS.contains(&action.to_ascii_uppercase().as_str()) {
            return Err(invalid(format!(
                "action {action:?} is reserved for row changes, which the triggers record; name events by what happened, e.g. user.login"
            )));
        }
        if action
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("ddl."))
        {
            return Err(invalid(format!(
                "action {action:?} is reserved: ddl.* entries record schema changes of tracked tables; name events by what happened in the application, e.g. schema.migrated"
            )));
        }
        if self
            .target_type
            .as_ref()
            .is_some_and(|t| t.len() > MAX_TARGET_TYPE_BYTES)
            || self
                .target_id
                .as_ref()
                .is_some_and(|t| t.len() > MAX_TARGET_ID_BYTES)
        {
            return Err(invalid(format!(
                "targetType (at most {MAX_TARGET_TYPE_BYTES} bytes) or targetId (at most {MAX_TARGET_ID_BYTES} bytes) is too long"
            )));
        }
        let nul_at = [
            ("targetType", &self.target_type),
            ("targetId", &self.target_id),
        ]
        .into_iter()
        .find(|(_, text)| text.as_ref().is_some_and(|t| t.contains('\0')))
        .map(|(name, _)| name.to_owned())
        .or_else(|| {
            let metadata = self.metadata.as_ref()?;
            crate::context::nul_in_object(metadata, "metadata")
        });
        if let Some(at) = nul_at {
            return Err(invalid(crate::context::nul_reason(&at)));
        }
        if let Some(metadata) = &self.metadata {
            let size = crate::context::stored_json_len(&Value::Object(metadata.clone()));
            if size > MAX_METADATA_BYTES {
                return Err(invalid(format!(
                    "metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"
                )));
            }
        }
        Ok(())
    }

    /// The event as `audit.log_events` reads it, checked, its context completed from `request`.
    fn param(&self, request: Option<&AuditContext>) -> Result<EventParam<'_>> {
        self.check()?;
        let context = match request {
            Some(request) => self.context.over(request),
            None => self.context.clone(),
        };
        // The setting's checks (sizes, NUL); its text is the context serialized as below.
        let context = context.to_setting()?.is_some().then_some(context);
        Ok(EventParam {
            action: &self.action,
            context,
            target_type: self.target_type.as_deref(),
            target_id: self.target_id.as_deref(),
            metadata: self.metadata.as_ref(),
        })
    }
}

/// One element of `audit.log_events`' parameter, serialized once, straight from the event.
#[derive(Debug, Serialize)]
struct EventParam<'a> {
    action: &'a str,
    /// The context as `audit.context` holds it; null when empty.
    context: Option<AuditContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
}

/// The other `targetType`s that make an event part of a table's history, besides the table's
/// own target type (`public.users`, `public."BlogPost"`), which row changes carry. The rule: an
/// event is about a table's record when its `targetType` names the table as code naturally
/// does, that is the table's name or its singular, written as is, in lower case, in snake_case
/// or in PascalCase (a Prisma model's name), qualified by its schema (`billing.Invoice`) or, for
/// a table in `public`, bare (`users`, `user`, `User`, `Users`; `blog_post`, `BlogPost`...).
/// Matching is exact among these names, so that the history query stays an index lookup.
pub fn table_aliases(target_type: &str) -> Vec<String> {
    let Some((schema, table)) = split_qualified(target_type) else {
        return Vec::new();
    };
    let mut forms = Vec::new();
    for name in [table.clone(), singular(&table)] {
        forms.push(name.clone());
        forms.push(name.to_lowercase());
        forms.push(to_snake_case(&name));
        forms.push(pascal_case(&name));
    }
    let mut names: Vec<String> = forms
        .into_iter()
        .map(|form| {
            if schema == "public" {
                form
            } else {
                format!("{schema}.{form}")
            }
        })
        .collect();
    // The target type unquoted: `public.BlogPost` for `public."BlogPost"`.
    names.push(format!("{schema}.{table}"));
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| !name.is_empty() && name != target_type && seen.insert(name.clone()));
    names
}

/// `public."Order Items"` as (`public`, `Order Items`): a target type's two identifiers, unquoted.
fn split_qualified(target_type: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut chars = target_type.chars().peekable();
    while chars.peek().is_some() {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().filter(|c| **c != '.') {
                part.push(*c);
                chars.next();
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return None,
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, table]) => Some((schema, table)),
        Err(_) => None,
    }
}

/// `users` as `user`, `categories` as `category`, `addresses` as `address`; a singular as is.
fn singular(name: &str) -> String {
    if !name.is_ascii() {
        return name.to_owned();
    }
    let lower = name.to_lowercase();
    if let Some(stem) = lower.strip_suffix("ies").filter(|_| name.len() > 3) {
        return format!(
            "{}{}",
            &name[..stem.len()],
            if name.ends_with("IES") { "Y" } else { "y" }
        );
    }
    if ["sses", "xes", "ches", "shes", "zes"]
        .iter()
        .any(|end| lower.ends_with(end))
    {
        return name[..name.len() - 2].to_owned();
    }
    if lower.ends_with('s') && !lower.ends_with("ss") && name.len() > 1 {
        return name[..name.len() - 1].to_owned();
    }
    name.to_owned()
}

/// `blog_post` as `BlogPost`; `BlogPost` as is.
fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn invalid(reason: String) -> Error {
    Error::Event(EventError::Invalid { reason })
}

/// A statement for the caller to run on their own connection (a pg client or a Prisma
/// transaction), so that the events commit or roll back with the caller's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct EventStatement {
    /// Selects the recorded entries with the keys and JavaScript types of `AuditLogEntry`.
    pub text: String,
    /// The only parameter: the events, as JSON text.
    pub events: String,
}

/// The events as the one parameter of `audit.log_events`, checked.
fn events_param<'a>(
    events: &'a [NewEvent],
    request: Option<&AuditContext>,
) -> Result<Vec<EventParam<'a>>> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "{} events given; record 1 to {MAX_EVENTS} per call",
            events.len()
        )));
    }
    events.iter().map(|event| event.param(request)).collect()
}

/// The statement that records `events` (see [`EventStatement`]).
pub fn statement(events: &[NewEvent], request: Option<&AuditContext>) -> Result<EventStatement> {
    Ok(EventStatement {
        text: format!(
            "select {} from audit.log_events($1::pg_catalog.text::pg_catalog.jsonb)",
            js_entry_select()
        ),
        events: serde_json::to_string(&events_param(events, request)?)
            .expect("events always serialize"),
    })
}

/// [`ENTRY_COLUMNS`] under the names and with the types node-postgres and Prisma turn into an
/// `AuditLogEntry` (ids as float8: exact up to 2^53, as JavaScript numbers are).
fn js_entry_select() -> &'static str {
    static SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        ENTRY_COLUMNS
            .map(|column| {
                let name = column.to_lower_camel_case();
                match column {
                    "id" | "txid" => format!(r#"{column}::pg_catalog.float8 as "{name}""#),
                    _ => format!(r#"{} as "{name}""#, read_as(column)),
                }
            })
            .join(", ")
    });
    &SELECT
}

/// Records `events` on `client` (in its transaction, if it is in one); returns the entries in
/// the order given. All or none.
#[cfg(feature = "database")]
pub async fn log(
    client: &impl GenericClient,
    events: &[NewEvent],
    request: Option<&AuditContext>,
) -> Result<Vec<AuditEntry>> {
    let param = events_param(events, request)?;
    let rows = client
        .query_typed(
            &format!("select {} from audit.log_events($1)", entry_select()),
            &[(&Json(&param), Type::JSONB)],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(rows.iter().map(AuditEntry::from_row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An entry with every field set, so that each one serializes.
    fn full_entry() -> AuditEntry {
        AuditEntry {
            id: 1,
            created_at: chrono::DateTime::UNIX_EPOCH,
            txid: 2,
            action: "UPDATE".into(),
            target_type: Some("public.users".into()),
            target_id: Some("1".into()),
            old_target_id: Some("0".into()),
            old_values: Some(json!({"a": 1})),
            new_values: Some(json!({"a": 2})),
            changed_fields: Some(vec!["a".into()]),
            actor_id: Some("42".into()),
            actor_type: Some("user".into()),
            actor_email: Some("a@example.com".into()),
            ip_address: Some("127.0.0.1".into()),
            user_agent: Some("curl".into()),
            request_id: Some("r".into()),
            metadata: Some(json!({})),
        }
    }

    #[test]
    fn an_event_takes_the_context_keys_but_migration_name_and_its_own() {
        let Err(err) = NewEvent::from_camel_case(json!({ "action": "a.b", "actorID": "7" })) else {
            panic!("an unknown key is refused")
        };
        let reason = err.to_string();
        let mut taken: Vec<&str> = reason
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the keys")
            .split(", ")
            .map(|key| key.trim_matches('`'))
            .collect();
        taken.sort();
        // Its own keys, and the context's but migrationName (metadata is both).
        let mut expected: Vec<&str> = ["action", "targetType", "targetId"]
            .into_iter()
            .chain(crate::context::CONTEXT_KEYS)
            .filter(|key| *key != "migrationName")
            .collect();
        expected.sort();
        assert_eq!(taken, expected, "{reason}");
    }

    #[test]
    fn the_entry_columns_are_the_fields_of_an_entry_in_order() {
        let Value::Object(fields) = serde_json::to_value(full_entry()).unwrap() else {
            unreachable!()
        };
        let names: Vec<String> = fields.keys().cloned().collect();
        let columns: Vec<String> = ENTRY_COLUMNS
            .iter()
            .map(|c| c.to_lower_camel_case())
            .collect();
        assert_eq!(names.len(), columns.len());
        // serde_json's map is sorted unless preserve_order: compare as sets, then the order of
        // the select lists against the column list.
        let mut sorted = columns.clone();
        sorted.sort();
        let mut names = names;
        names.sort();
        assert_eq!(names, sorted);
        let aliases: Vec<&str> = js_entry_select()
            .split(", ")
            .map(|item| item.rsplit(" as ").next().unwrap().trim_matches('"'))
            .collect();
        assert_eq!(aliases, columns);
        assert!(entry_select().contains("pg_catalog.host(ip_address), user_agent"));
    }

    #[test]
    fn reads_an_event_in_camel_case() {
        let event = NewEvent::from_camel_case(json!({
            "action": "project.created", "actorId": "user_123", "actorType": "user",
            "targetType": "project", "targetId": 456, "metadata": {"name": "MyProject"},
            "ipAddress": "192.168.1.1", "userAgent": "Mozilla/5.0"
        }))
        .unwrap();
        assert_eq!(event.target_id.as_deref(), Some("456"));
        assert_eq!(event.context.actor_id.as_deref(), Some("user_123"));
        assert_eq!(
            event.context.ip_address,
            Some("192.168.1.1".parse().unwrap())
        );
        event.check().unwrap();
    }

    #[test]
    fn refuses_bad_events_by_name() {
        for (input, mentions) in [
            (json!({"action": "UPDATE"}), "reserved"),
            (json!({"action": "has space"}), "not valid"),
            (json!({"action": ""}), "not valid"),
            (json!({"action": "ok", "metadata": [1]}), "metadata"),
            (json!({"action": "ok", "targetId": {"a": 1}}), "targetId"),
            (
                json!({"action": "ok", "ipAddress": "1.2.3.999"}),
                "1.2.3.999",
            ),
            (json!({"action": "ok", "actorID": "1"}), "actorID"),
            (json!({"actorId": "1"}), "action"),
            (json!({"action": 42}), "action: invalid type: integer `42`"),
            (
                json!({"action": "ok", "actorEmail": 42}),
                "actorEmail: invalid type",
            ),
            (
                json!({"action": "ok", "actorId": 1.5}),
                "actorId: invalid type",
            ),
        ] {
            let err = NewEvent::from_camel_case(input)
                .and_then(|e| e.check())
                .unwrap_err();
            assert!(err.to_string().contains(mentions), "{err}");
        }
    }

    #[test]
    fn integer_ids_are_stored_as_their_digits() {
        let event = NewEvent::from_camel_case(
            json!({"action": "user.login", "actorId": 42, "requestId": 7}),
        )
        .unwrap();
        assert_eq!(event.context.actor_id.as_deref(), Some("42"));
        assert_eq!(event.context.request_id.as_deref(), Some("7"));
    }

    #[test]
    fn request_context_fills_only_what_the_event_leaves_empty() {
        let mut event = NewEvent::new("user.login");
        event.context.actor_id = Some("17".into());
        let request = AuditContext {
            actor_id: Some("admin".into()),
            request_id: Some("req-1".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(event.param(Some(&request)).unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"action": "user.login", "context": {"actor_id": "17", "request_id": "req-1"}})
        );
    }

    #[test]
    fn events_name_a_table_as_code_does() {
        assert_eq!(
            table_aliases("public.users"),
            ["users", "Users", "user", "User"].map(String::from)
        );
        let posts = table_aliases("public.blog_posts");
        for name in ["blog_posts", "blog_post", "BlogPost", "BlogPosts"] {
            assert!(posts.contains(&name.to_owned()), "{name} in {posts:?}");
        }
        // A Prisma table named after its model (no @@map), quoted in the target type.
        let model = table_aliases("public.\"BlogPost\"");
        for name in ["BlogPost", "blog_post", "blogpost", "public.BlogPost"] {
            assert!(model.contains(&name.to_owned()), "{name} in {model:?}");
        }
        assert!(
            !model.contains(&"public.\"BlogPost\"".to_owned()),
            "not the target type itself"
        );
        assert!(table_aliases("public.categories").contains(&"Category".to_owned()));
        assert!(table_aliases("public.addresses").contains(&"address".to_owned()));
        // Outside public the schema is part of every name.
        let invoices = table_aliases("billing.invoices");
        assert!(
            invoices.contains(&"billing.Invoice".to_owned()),
            "{invoices:?}"
        );
        assert!(
            !invoices.iter().any(|name| !name.starts_with("billing.")),
            "{invoices:?}"
        );
        let spaced = table_aliases("public.\"Order Items\"");
        assert!(spaced.contains(&"Order Items".to_owned()), "{spaced:?}");
    }

    #[test]
    fn a_call_records_one_to_ten_thousand_events() {
        assert!(statement(&[], None).is_err());
        let many = vec![NewEvent::new("a"); MAX_EVENTS + 1];
        assert!(statement(&many, None).is_err());
    }
}
