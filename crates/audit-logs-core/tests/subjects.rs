//! Data subject requests (GDPR Articles 15 and 17) on a real PostgreSQL: every entry that
//! mentions a person is found with where, exported, listed by a dry run that changes nothing,
//! and erased exactly there; the chain still verifies, and still detects any other change.
mod common;

use std::collections::BTreeMap;

use audit_logs_core::{
    AuditEntry, DataSubject, ErasureError, Error, Order, Page, ProblemKind, RedactReport,
    RedactRequest, Subject, VerifyOptions,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const KEY: &[u8] = b"a secret of at least sixteen bytes";

fn hmac_hex(value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(value.as_bytes());
    format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
}

/// Ann: actor 42, ann@x.io, 203.0.113.9, "Ann Smith".
fn ann() -> DataSubject {
    DataSubject {
        actor_id: Some("42".into()),
        email: Some("ann@x.io".into()),
        ip_address: Some("203.0.113.9".into()),
        values: Some(vec!["Ann Smith".into()]),
    }
}

/// A log where Ann appears in every place the log can hold her: her own changes (actor
/// columns, IP, user agent, metadata), a record about her with nested values, a composite key
/// holding her e-mail, Bob's later edit of a note about her, events about her (their metadata,
/// nested), and her IP in another actor's event. Around it, entries that must not match:
/// joann@x.io, 203.0.113.95, the number 42 as a quantity, Bob's own entries.
async fn log_with_ann() -> common::Fixture {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            r#"create table users (id int primary key, email text, name text, profile jsonb);
               create table notes (id int primary key, author_email text, body text);
               create table memberships (email text, org int, primary key (email, org));
               create table orders (id int primary key, customer text, qty int);
               select audit.enable_tracking('users');
               select audit.enable_tracking('notes');
               select audit.enable_tracking('memberships');
               select audit.enable_tracking('orders');
               begin;
               select audit.set_context('{"actor_id": "42", "actor_type": "user", "actor_email": "ann@x.io",
                 "ip_address": "203.0.113.9", "user_agent": "Firefox/128", "request_id": "req-1",
                 "metadata": {"reason": "ann@x.io asked"}}');
               insert into users values (42, 'Ann@X.io', 'Ann Smith',
                 '{"contacts": ["ann@x.io", "+33 6 12"], "age": 42, "address": {"city": "Lyon"}}');
               insert into notes values (1, 'ann@x.io', 'Ann Smith wrote this');
               insert into memberships values ('ann@x.io', 7);
               commit;
               begin;
               select audit.set_context('{"actor_id": "7", "actor_email": "bob@x.io",
                 "ip_address": "203.0.113.95", "user_agent": "Chrome/120"}');
               update notes set body = 'Bob tidied the note of Ann Smith' where id = 1;
               insert into notes values (2, 'joann@x.io', 'Joann wrote 42 words');
               insert into orders values (1, 'bob', 42);
               commit;
               select * from audit.log_event('user.login', 'user', '42',
                 '{"device": {"owner": ["Ann Smith", "tablet"]}}',
                 '{"actor_id": "42", "actor_email": "ann@x.io", "ip_address": "203.0.113.9"}');
               select * from audit.log_event('login.blocked', 'ip', null,
                 '{"address": "203.0.113.9", "attempts": 3}', '{"actor_id": "system"}');"#,
        )
        .await
        .unwrap();
    f
}

/// What the test expects Ann to be found in: (action, target_type, target_id) -> paths.
fn ann_mentions() -> BTreeMap<(String, String, String), Vec<&'static str>> {
    let own = ["actor_id", "actor_email", "ip_address", "user_agent"];
    let with_own =
        |rest: &[&'static str]| own.iter().copied().chain(rest.iter().copied()).collect();
    let key = |action: &str, target_type: &str, id: &str| {
        (action.to_owned(), target_type.to_owned(), id.to_owned())
    };
    BTreeMap::from([
        (
            key("INSERT", "public.users", "42"),
            with_own(&[
                "new_values.email",
                "new_values.name",
                "new_values.profile.contacts[0]",
                "metadata.reason",
            ]),
        ),
        (
            key("INSERT", "public.notes", "1"),
            with_own(&[
                "new_values.author_email",
                "new_values.body",
                "metadata.reason",
            ]),
        ),
        (
            key("INSERT", "public.memberships", r#"["ann@x.io", 7]"#),
            with_own(&["target_id", "new_values.email", "metadata.reason"]),
        ),
        (
            key("UPDATE", "public.notes", "1"),
            vec![
                "old_values.body",
                "new_values.author_email",
                "new_values.body",
            ],
        ),
        (
            key("user.login", "user", "42"),
            vec![
                "actor_id",
                "actor_email",
                "ip_address",
                "metadata.device.owner[0]",
            ],
        ),
        (key("login.blocked", "ip", ""), vec!["metadata.address"]),
    ])
}

fn key_of(e: &AuditEntry) -> (String, String, String) {
    (
        e.action.clone(),
        e.target_type.clone().unwrap_or_default(),
        e.target_id.clone().unwrap_or_default(),
    )
}

async fn found(
    f: &common::Fixture,
    subject: &DataSubject,
) -> BTreeMap<(String, String, String), Vec<String>> {
    let page = f
        .audit
        .subject(
            subject,
            &Page {
                limit: Some(1000),
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.next_cursor, None);
    page.entries
        .iter()
        .map(|m| (key_of(&m.entry), m.paths.clone()))
        .collect()
}

fn as_strings(
    expected: BTreeMap<(String, String, String), Vec<&str>>,
) -> BTreeMap<(String, String, String), Vec<String>> {
    expected
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(str::to_owned).collect()))
        .collect()
}

/// Erases a person wherever found (no dry run, no reason) under the tests' key.
async fn erase(f: &common::Fixture, subject: DataSubject) -> Result<RedactReport, Error> {
    let request = RedactRequest {
        subject: Subject::Person(subject),
        fields: None,
        reason: None,
        dry_run: false,
    };
    f.audit.redact(&request, KEY).await
}

#[tokio::test]
async fn every_mention_of_a_subject_is_found_with_where_and_nothing_else() {
    let f = log_with_ann().await;
    let expected = as_strings(ann_mentions());
    // Paths within a JSON column are in text order: compare as sets per entry.
    let sorted = |m: BTreeMap<_, Vec<String>>| -> BTreeMap<_, Vec<String>> {
        m.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v)
            })
            .collect()
    };
    assert_eq!(sorted(found(&f, &ann()).await), sorted(expected.clone()));

    // The e-mail alone: her own entries by their e-mail, the mentions of it, not "Ann Smith".
    let by_email = found(
        &f,
        &DataSubject {
            email: Some("ANN@x.io".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        by_email.keys().cloned().collect::<Vec<_>>(),
        [
            ("INSERT", "public.memberships", r#"["ann@x.io", 7]"#),
            ("INSERT", "public.notes", "1"),
            ("INSERT", "public.users", "42"),
            ("UPDATE", "public.notes", "1"),
            ("user.login", "user", "42"),
        ]
        .map(|(a, t, i)| (a.to_owned(), t.to_owned(), i.to_owned()))
    );
    let update = &by_email[&("UPDATE".into(), "public.notes".into(), "1".into())];
    assert_eq!(update, &["new_values.author_email"]);

    // The actor id alone: her entries, by their actor columns only (42 as a quantity, an
    // age or a user id in values is not her).
    let by_actor = found(
        &f,
        &DataSubject {
            actor_id: Some("42".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_actor.len(), 4);
    assert!(
        by_actor
            .values()
            .all(|paths| paths.iter().all(|p| !p.contains('.'))),
        "{by_actor:?}"
    );

    // The stream (an export) holds the same entries, oldest first, with the same paths.
    let mut stream = f
        .audit
        .subject_stream(&ann(), Order::OldestFirst, Some(2))
        .await
        .unwrap();
    let mut streamed = Vec::new();
    while let Some(batch) = stream.next_batch().await.unwrap() {
        streamed.extend(batch);
    }
    assert!(streamed.windows(2).all(|w| w[0].entry.id < w[1].entry.id));
    let streamed: BTreeMap<_, _> = streamed
        .into_iter()
        .map(|m| (key_of(&m.entry), m.paths))
        .collect();
    assert_eq!(streamed, found(&f, &ann()).await);

    // Pages: one entry at a time, the cursor leads through all of them once.
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = f
            .audit
            .subject(
                &ann(),
                &Page {
                    limit: Some(1),
                    before,
                },
            )
            .await
            .unwrap();
        ids.extend(page.entries.iter().map(|m| m.entry.id));
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert_eq!(ids.len(), expected.len());
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
}

/// Applies an erasure to an entry as the test understands it: each path's value becomes its
/// keyed hash (an IP address becomes absent), everything else stays.
fn erased(mut e: AuditEntry, paths: &[&str]) -> AuditEntry {
    for path in paths {
        let hash = |v: &Option<String>| v.as_deref().map(hmac_hex);
        match *path {
            "actor_id" => e.actor_id = hash(&e.actor_id),
            "actor_email" => e.actor_email = hash(&e.actor_email),
            "ip_address" => e.ip_address = None,
            "user_agent" => e.user_agent = hash(&e.user_agent),
            "target_id" => e.target_id = hash(&e.target_id),
            "old_target_id" => e.old_target_id = hash(&e.old_target_id),
            json_path => {
                let (column, rest) = json_path.split_once('.').unwrap();
                let doc = match column {
                    "old_values" => e.old_values.as_mut(),
                    "new_values" => e.new_values.as_mut(),
                    "metadata" => e.metadata.as_mut(),
                    other => panic!("unexpected column {other}"),
                }
                .unwrap();
                let mut at = doc;
                for step in rest.split('.') {
                    let (name, index) = match step.split_once('[') {
                        Some((name, index)) => (
                            name,
                            Some(index.trim_end_matches(']').parse::<usize>().unwrap()),
                        ),
                        None => (step, None),
                    };
                    at = &mut at[name];
                    if let Some(i) = index {
                        at = &mut at[i];
                    }
                }
                let text = match &*at {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *at = json!(hmac_hex(&text));
            }
        }
    }
    e
}

#[tokio::test]
async fn a_dry_run_lists_the_erasure_and_the_erasure_changes_exactly_that() {
    let f = log_with_ann().await;
    f.audit.seal().await.unwrap();
    let before = f.entries().await;
    let redactions = "select count(*) from audit.redactions";
    let request = |dry_run| RedactRequest {
        subject: Subject::Person(ann()),
        fields: None,
        reason: Some("GDPR request 7".into()),
        dry_run,
    };

    let dry = f.audit.redact(&request(true), KEY).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.event_id, None);
    assert_eq!(dry.rows_redacted, ann_mentions().len() as i64);
    let listed: BTreeMap<_, _> = dry
        .entries
        .iter()
        .map(|e| {
            let mut paths = e.paths.clone();
            paths.sort();
            (
                (
                    e.action.clone(),
                    e.target_type.clone().unwrap_or_default(),
                    e.target_id.clone().unwrap_or_default(),
                ),
                paths,
            )
        })
        .collect();
    let mut expected = as_strings(ann_mentions());
    expected.values_mut().for_each(|v| v.sort());
    assert_eq!(listed, expected);
    assert_eq!(f.entries().await, before, "a dry run changes nothing");
    assert_eq!(f.count(redactions).await, 0);

    let report = f.audit.redact(&request(false), KEY).await.unwrap();
    assert!(!report.dry_run);
    assert_eq!(report.rows_redacted, dry.rows_redacted);
    assert_eq!(report.entries, dry.entries);
    assert_eq!(
        report.fields,
        [
            "actor_email",
            "actor_id",
            "ip_address",
            "metadata",
            "new_values",
            "old_values",
            "target_id",
            "user_agent"
        ]
    );

    // Nothing is left: the same description finds nothing, nor any part of it.
    assert!(found(&f, &ann()).await.is_empty());
    for part in [
        DataSubject {
            email: Some("ann@x.io".into()),
            ..Default::default()
        },
        DataSubject {
            values: Some(vec!["Ann Smith".into()]),
            ..Default::default()
        },
        DataSubject {
            ip_address: Some("203.0.113.9".into()),
            ..Default::default()
        },
    ] {
        assert!(found(&f, &part).await.is_empty(), "{part:?}");
    }

    // Exactly the listed places changed, each to its keyed hash; every other entry (Bob's,
    // Joann's note, the 42 as a quantity) and every other field is as it was.
    let after: BTreeMap<i64, AuditEntry> =
        f.entries().await.into_iter().map(|e| (e.id, e)).collect();
    let mentions = ann_mentions();
    for old in before {
        let now = after[&old.id].clone();
        match mentions.get(&key_of(&old)) {
            Some(paths) => assert_eq!(now, erased(old, paths)),
            None => assert_eq!(now, old),
        }
    }
    let event = after.values().last().unwrap();
    assert_eq!(event.id, report.event_id.unwrap());
    let recorded = event.metadata.as_ref().unwrap();
    assert_eq!(recorded["by"], "subject");
    assert_eq!(recorded["reason"], "GDPR request 7");
    assert!(!recorded.to_string().contains("ann"), "{recorded}");
    assert_eq!(f.count(redactions).await, report.rows_redacted);

    // The chain verifies, sealed rows and new ones alike, and still catches any other change.
    let verified = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_redacted, report.rows_redacted);
    f.audit.seal().await.unwrap();
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
    let order = after
        .values()
        .find(|e| e.target_type.as_deref() == Some("public.orders"))
        .unwrap()
        .id;
    f.sql()
        .await
        .batch_execute(&format!(
            "set session_replication_role = replica;
             update audit.audit_logs set new_values = new_values || '{{\"qty\": 43}}' where id = {order};
             reset session_replication_role;"
        ))
        .await
        .unwrap();
    let report = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.unwrap();
    assert_eq!(
        (problem.kind, problem.row_id),
        (ProblemKind::Changed, Some(order))
    );

    // Erasing again finds nothing to change.
    let again = f.audit.redact(&request(false), KEY).await.unwrap();
    assert_eq!(again.rows_redacted, 0);
    assert!(again.entries.is_empty());
}

#[tokio::test]
async fn hostile_values_match_only_themselves() {
    let f = common::migrated().await;
    let hostile = [
        "a%b_c",
        r#"it's "quoted" \ back"#,
        "$.body[0]",
        "(?i).*",
        "%%",
        "ann@x.io' or '1'='1",
    ];
    let client = f.sql().await;
    client
        .batch_execute(
            "create table notes (id int primary key, body text, extra jsonb);
             select audit.enable_tracking('notes');",
        )
        .await
        .unwrap();
    for (i, value) in hostile.iter().enumerate() {
        client
            .execute(
                "insert into notes values ($1, $2, jsonb_build_object('deep', jsonb_build_array($2::text)))",
                &[&(i as i32), value],
            )
            .await
            .unwrap();
    }
    // Look-alikes that a LIKE pattern, a regular expression or a JSON path would take.
    client
        .batch_execute(
            r#"insert into notes values (100, 'aXbYc', null), (101, 'it''s quoted back', null),
                 (102, 'anything at all', '{"body": ["x"]}'), (103, 'ann@x.io', null)"#,
        )
        .await
        .unwrap();
    for (i, value) in hostile.iter().enumerate() {
        let subject = DataSubject {
            values: Some(vec![value.to_string()]),
            ..Default::default()
        };
        let page = f.audit.subject(&subject, &Page::default()).await.unwrap();
        let targets: Vec<_> = page
            .entries
            .iter()
            .map(|m| (m.entry.target_id.clone().unwrap(), m.paths.clone()))
            .collect();
        assert_eq!(
            targets,
            [(
                i.to_string(),
                vec![
                    "new_values.body".to_owned(),
                    "new_values.extra.deep[0]".to_owned()
                ]
            )],
            "{value}"
        );
    }
    // Erasing one of them changes that entry only.
    let before = f.entries().await;
    let report = erase(
        &f,
        DataSubject {
            values: Some(vec![hostile[1].into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.rows_redacted, 1);
    let after = f.entries().await;
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| b.target_id.clone().unwrap())
        .collect();
    assert_eq!(changed, ["1"]);
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// The first pass lower-cases in ASCII when every term keeps enough characters (V17), and in the
/// database's collation otherwise; either way it keeps every entry the exact rule finds: accented
/// names in capitals, a name in another script, and the two letters whose lower case is ASCII
/// (İ, U+0130, and the Kelvin sign, U+212A), which that pass cannot fold.
#[tokio::test]
async fn either_first_pass_keeps_every_entry_the_exact_rule_finds() {
    let f = common::migrated().await;
    let client = f.sql().await;
    client
        .batch_execute(
            "create table people (id int primary key, name text, email text);
             select audit.enable_tracking('people');
             insert into people values
               (1, 'JOSÉ MÜLLER', null), (2, 'Jose Muller', null), (3, 'ИВАН ПЕТРОВ', null),
               (4, 'Иван Петрович', null), (5, null, '\u{212A}IM@X.IO'), (6, null, 'ann@x.\u{130}o'),
               (7, 'Ann Sm\u{130}th', null), (8, 'kim lee', 'KIM@X.IO'),
               -- Each as given too, found under any locale (\"C\" folds ASCII letters only).
               (9, 'José Müller', null), (10, 'Иван Петров', null), (11, null, 'ann@x.io'),
               (12, 'Ann Smith', null);",
        )
        .await
        .unwrap();
    let subjects = [
        ("José Müller", true),
        ("Иван Петров", false),
        ("kim@x.io", true),
        ("ann@x.io", true),
        ("Ann Smith", true),
    ];
    for (value, ascii_pass) in subjects {
        let row = client
            .query_one(
                "select audit.subject_ascii_patterns(audit.subject_terms(null, null, null, array[$1]))
                          is not null",
                &[&value],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, bool>(0),
            ascii_pass,
            "{value}: which first pass"
        );
        // What the exact rule alone finds, reading every entry.
        let exact: Vec<String> = client
            .query(
                "select l.target_id from audit.audit_logs l
                  where cardinality(audit.subject_paths(l, null, audit.subject_terms(null, null, null, array[$1]))) > 0
                  order by l.id",
                &[&value],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let subject = DataSubject {
            values: Some(vec![value.into()]),
            ..Default::default()
        };
        let page = f.audit.subject(&subject, &Page::default()).await.unwrap();
        let mut kept: Vec<String> = page
            .entries
            .iter()
            .map(|m| m.entry.target_id.clone().unwrap())
            .collect();
        kept.reverse();
        assert_eq!(kept, exact, "{value}");
        assert!(!exact.is_empty(), "{value} is in the log");
    }
    // The ASCII pass is the one taken: it keeps `Jose Muller` for `José Müller` (its `_` at each
    // accent), which the pass lower-casing in the database's collation (V10's) drops; the exact
    // rule then drops it too (above).
    let passes = client
        .query_one(
            "select audit.may_mention(l, null, audit.subject_ascii_patterns(t), audit.subject_patterns(t)) is true,
                    audit.may_mention(l, null, audit.subject_patterns(t)) is true
               from audit.audit_logs l, audit.subject_terms(null, null, null, '{José Müller}') as t
              where l.target_id = '2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (passes.get::<_, bool>(0), passes.get::<_, bool>(1)),
        (true, false)
    );
    // Where the database lower-cases İ and the Kelvin sign to i and k (glibc and ICU locales, not
    // "C"), the exact rule finds them, and so the first pass must have kept them.
    let folds: bool = client
        .query_one(
            "select lower('\u{130}') = 'i' and lower('\u{212A}') = 'k'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if folds {
        let kim = DataSubject {
            values: Some(vec!["kim@x.io".into()]),
            ..Default::default()
        };
        let page = f.audit.subject(&kim, &Page::default()).await.unwrap();
        let targets: Vec<_> = page
            .entries
            .iter()
            .map(|m| m.entry.target_id.clone().unwrap())
            .collect();
        assert_eq!(targets, ["8", "5"]);
    }
    // Erased by the same passes: afterwards neither finds anything.
    for (value, _) in subjects {
        let subject = DataSubject {
            values: Some(vec![value.into()]),
            ..Default::default()
        };
        let report = erase(&f, subject.clone()).await.unwrap();
        assert!(report.rows_redacted > 0, "{value} erased");
        let page = f.audit.subject(&subject, &Page::default()).await.unwrap();
        assert_eq!(page.entries.len(), 0, "{value} is gone");
    }
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

#[tokio::test]
async fn bad_subjects_are_refused_with_a_typed_error_and_change_nothing() {
    let f = log_with_ann().await;
    let before = f.entries().await;
    for (subject, says) in [
        (DataSubject::default(), "at least one"),
        (
            DataSubject {
                values: Some(vec!["a".into()]),
                ..Default::default()
            },
            "2 to 1024",
        ),
        (
            DataSubject {
                values: Some(vec!["  ".into()]),
                ..Default::default()
            },
            "2 to 1024",
        ),
        (
            DataSubject {
                ip_address: Some("203.0.113.0/24".into()),
                ..Default::default()
            },
            "network",
        ),
        (
            DataSubject {
                ip_address: Some("not an address".into()),
                ..Default::default()
            },
            "not an IPv4 or IPv6",
        ),
        (
            DataSubject {
                email: Some(hmac_hex("ann@x.io")),
                ..Default::default()
            },
            "pseudonym",
        ),
    ] {
        let err = f
            .audit
            .subject(&subject, &Page::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Erasure(ErasureError::InvalidSubject { reason }) if reason.contains(says)),
            "{subject:?}: {err:?}"
        );
        assert_eq!(err.code(), "AUDIT_LOGS_INVALID_SUBJECT");
        if subject != DataSubject::default() {
            let err = erase(&f, subject.clone()).await.unwrap_err();
            assert_eq!(err.code(), "AUDIT_LOGS_INVALID_SUBJECT", "{subject:?}");
        }
    }
    // Fields choose columns for an actor or a record; a person is erased wherever found.
    let err = f
        .audit
        .redact(
            &RedactRequest {
                subject: Subject::Person(ann()),
                fields: Some(vec!["actor_id".into()]),
                reason: None,
                dry_run: false,
            },
            KEY,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_REDACTION");
    assert_eq!(f.entries().await, before);
}

#[tokio::test]
async fn a_reader_finds_a_subject_and_only_the_maintainer_erases() {
    let f = log_with_ann().await;
    let (reader, as_reader) = f.audit_as("reader", "audit_reader").await;
    let page = as_reader.subject(&ann(), &Page::default()).await.unwrap();
    assert_eq!(page.entries.len(), ann_mentions().len());
    let err = as_reader
        .redact(
            &RedactRequest {
                subject: Subject::Person(ann()),
                fields: None,
                reason: None,
                dry_run: true,
            },
            KEY,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");
    let err = f
        .connect_as(&reader)
        .await
        .batch_execute("select audit.redact_subject('a secret of at least sixteen bytes'::bytea, email => 'ann@x.io')")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
}
