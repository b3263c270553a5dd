//! The query helpers against real data. Expected results come from elsewhere than the helper's
//! SQL: snapshots of the live table, the statements the test itself ran, or a plain read of
//! the whole log filtered in Rust.
mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use audit_logs_core::{
    AuditContext, AuditEntry, BurstKey, CountKey, Error, Filters, NewEvent, Order, Page,
    StatePoint, TableRef, TimeRange, TrackingOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

async fn track(f: &common::Fixture, setup: &str, table: &str) {
    f.sql().await.batch_execute(setup).await.unwrap();
    f.audit
        .enable_tracking(&table.into(), &TrackingOptions::default())
        .await
        .unwrap();
}

/// The live table at this moment: each row as JSON by its key (as text), and the time.
async fn snapshot(
    f: &common::Fixture,
    table: &str,
    key: &str,
) -> (DateTime<Utc>, HashMap<String, Value>) {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let client = f.sql().await;
    let rows = client
        .query(
            &format!("select {key}::text, to_jsonb(t) from {table} t"),
            &[],
        )
        .await
        .unwrap();
    let at: DateTime<Utc> = client
        .query_one("select clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(3)).await;
    (at, rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[tokio::test]
async fn state_at_rebuilds_the_live_table_at_every_moment() {
    let f = common::migrated().await;
    track(
        &f,
        "create table accounts (id int primary key, owner text, balance int)",
        "accounts",
    )
    .await;
    let steps = [
        "insert into accounts values (1, 'ann', 10), (2, 'bob', 20)",
        "update accounts set balance = balance + 5",
        "delete from accounts where id = 2",
        // The key changes: 1 becomes 3, then a new 1 appears.
        "update accounts set id = 3 where id = 1",
        "insert into accounts values (1, 'cid', 0), (2, 'dan', 7)",
        "update accounts set owner = 'anne' where id = 3",
        "truncate accounts",
        "insert into accounts values (3, 'eve', 1)",
    ];
    let mut snapshots = vec![snapshot(&f, "accounts", "id").await];
    for (n, step) in steps.iter().enumerate() {
        f.as_actor(&format!("step-{n}"), step).await;
        snapshots.push(snapshot(&f, "accounts", "id").await);
    }
    let table: TableRef = "accounts".into();
    let mut points = Vec::new();
    for (at, live) in &snapshots {
        for id in 1..=3 {
            let state = f.audit.state_at(&table, &json!(id), *at).await.unwrap();
            assert_eq!(state.as_ref(), live.get(&id.to_string()), "id {id} at {at}");
            points.push(StatePoint {
                id: json!(id),
                at: *at,
            });
        }
    }
    // The same answers in one call, in the order asked.
    let states = f.audit.states_at(&table, &points).await.unwrap();
    assert_eq!(states.len(), points.len());
    for (point, state) in points.iter().zip(&states) {
        let (_, live) = snapshots.iter().find(|(at, _)| *at == point.at).unwrap();
        assert_eq!(state.id, point.id);
        assert_eq!(state.state.as_ref(), live.get(&point.id.to_string()));
        if state.state.is_some() {
            assert!(state.entry_id.is_some(), "a state comes from an entry");
        }
    }
}

#[tokio::test]
async fn state_at_handles_composite_keys_and_refuses_bad_ids() {
    let f = common::migrated().await;
    track(&f, "create table memberships (user_id int, org_id int, role text, primary key (user_id, org_id))", "memberships").await;
    f.as_actor(
        "a",
        "insert into memberships values (1, 10, 'member'), (1, 11, 'owner')",
    )
    .await;
    let (before, _) = snapshot(&f, "memberships", "user_id").await;
    f.as_actor(
        "a",
        "update memberships set role = 'admin' where user_id = 1 and org_id = 10",
    )
    .await;
    let table: TableRef = "memberships".into();
    let then = f
        .audit
        .state_at(&table, &json!([1, 10]), before)
        .await
        .unwrap();
    assert_eq!(
        then,
        Some(json!({"user_id": 1, "org_id": 10, "role": "member"}))
    );
    let now = f
        .audit
        .state_at(&table, &json!([1, 10]), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        now,
        Some(json!({"user_id": 1, "org_id": 10, "role": "admin"}))
    );
    let err = f
        .audit
        .state_at(&table, &json!({"user_id": 1}), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_ARGUMENT", "{err}");
}

/// Three actors, each in two requests, and one transaction with several statements.
async fn activity(f: &common::Fixture) {
    track(
        f,
        "create table notes (id int primary key, body text, owner text)",
        "notes",
    )
    .await;
    let mut client = f.sql().await;
    for (actor, request, statements) in [
        ("ann", "req-1", "insert into notes values (1, 'a', 'ann'), (2, 'b', 'ann')"),
        ("bob", "req-2", "update notes set body = 'b2' where id = 2; insert into notes values (3, 'c', 'bob')"),
        ("ann", "req-3", "update notes set body = 'a2' where id = 1; update notes set owner = 'bob' where id = 1"),
        ("cid", "req-4", "delete from notes where id = 3"),
        ("bob", "req-5", "update notes set body = 'b3', owner = 'cid' where id = 2"),
    ] {
        let tx = client.transaction().await.unwrap();
        let who = AuditContext {
            actor_id: Some(actor.into()),
            request_id: Some(request.into()),
            ..Default::default()
        };
        audit_logs_core::set_context(&tx, &who).await.unwrap();
        tx.batch_execute(statements).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// Which entries a search should return, decided in Rust.
type Keep = Box<dyn Fn(&AuditEntry) -> bool>;
/// A field change as the test checks it: the record, old and new value, and the actor.
type ChangeSeen<'a> = (
    Option<&'a str>,
    Option<Value>,
    Option<Value>,
    Option<&'a str>,
);

fn ids(entries: &[AuditEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.id).collect()
}

/// Entries read in full, filtered here, newest first.
async fn expected(f: &common::Fixture, keep: impl Fn(&AuditEntry) -> bool) -> Vec<i64> {
    let mut ids: Vec<i64> = f
        .entries()
        .await
        .iter()
        .filter(|e| keep(e))
        .map(|e| e.id)
        .collect();
    ids.reverse();
    ids
}

#[tokio::test]
async fn by_actor_request_and_transaction_return_exactly_their_entries() {
    let f = common::migrated().await;
    activity(&f).await;
    let all = Page::default();
    let ann = f
        .audit
        .by_actor("ann", TimeRange::default(), &all)
        .await
        .unwrap();
    assert_eq!(
        ids(&ann),
        expected(&f, |e| e.actor_id.as_deref() == Some("ann")).await
    );
    assert_eq!(ann.len(), 4);

    let req = f
        .audit
        .by_request("req-2", TimeRange::default(), &all)
        .await
        .unwrap();
    assert_eq!(
        ids(&req),
        expected(&f, |e| e.request_id.as_deref() == Some("req-2")).await
    );
    assert_eq!(req.len(), 2);

    let txid = req[0].txid;
    let tx = f.audit.by_transaction(txid, None, &all).await.unwrap();
    assert_eq!(ids(&tx), expected(&f, |e| e.txid == txid).await);
    assert_eq!(ids(&tx), ids(&req), "one request, one transaction");
    let at = req[0].created_at;
    let tx_at = f.audit.by_transaction(txid, Some(at), &all).await.unwrap();
    assert_eq!(
        ids(&tx_at),
        ids(&tx),
        "the time of one of its entries finds them all"
    );

    // A time range excludes what came before it.
    let entries = f.entries().await;
    let from = entries
        .iter()
        .find(|e| e.request_id.as_deref() == Some("req-3"))
        .unwrap()
        .created_at;
    let later = f
        .audit
        .by_actor(
            "ann",
            TimeRange {
                from: Some(from),
                to: None,
            },
            &all,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&later),
        expected(&f, |e| e.actor_id.as_deref() == Some("ann")
            && e.created_at >= from)
        .await
    );
    assert_eq!(later.len(), 2);

    // Pages of two, newest first, cover everything once.
    let mut paged = Vec::new();
    let mut page = Page {
        limit: Some(2),
        before: None,
    };
    loop {
        let got = f
            .audit
            .by_actor("ann", TimeRange::default(), &page)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        page.before = Some(got.last().unwrap().id);
        paged.extend(ids(&got));
    }
    assert_eq!(paged, ids(&ann));
}

#[tokio::test]
async fn field_changes_list_every_update_of_one_column() {
    let f = common::migrated().await;
    track(
        &f,
        "create table users (id int primary key, email text, name text)",
        "users",
    )
    .await;
    f.as_actor(
        "admin",
        "insert into users values (1, 'a@x.io', 'Ann'), (2, 'b@x.io', 'Bob')",
    )
    .await;
    f.as_actor("ann", "update users set email = 'ann@x.io' where id = 1")
        .await;
    f.as_actor("admin", "update users set name = 'Bobby' where id = 2")
        .await;
    f.as_actor(
        "bob",
        "update users set email = 'bob@x.io', name = 'Robert' where id = 2",
    )
    .await;
    f.as_actor("ann", "update users set email = null where id = 1")
        .await;

    let table: TableRef = "users".into();
    let changes = f
        .audit
        .field_changes(
            &table,
            "email",
            None,
            TimeRange::default(),
            &Page::default(),
        )
        .await
        .unwrap();
    let got: Vec<ChangeSeen> = changes
        .iter()
        .map(|c| {
            (
                c.target_id.as_deref(),
                c.old_value.clone(),
                c.new_value.clone(),
                c.actor_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some("1"),
                Some(json!("ann@x.io")),
                Some(Value::Null),
                Some("ann")
            ),
            (
                Some("2"),
                Some(json!("b@x.io")),
                Some(json!("bob@x.io")),
                Some("bob")
            ),
            (
                Some("1"),
                Some(json!("a@x.io")),
                Some(json!("ann@x.io")),
                Some("ann")
            ),
        ]
    );
    let one = f
        .audit
        .field_changes(
            &table,
            "name",
            Some(&json!(2)),
            TimeRange::default(),
            &Page::default(),
        )
        .await
        .unwrap();
    let names: Vec<_> = one
        .iter()
        .map(|c| (c.old_value.clone(), c.new_value.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Some(json!("Bobby")), Some(json!("Robert"))),
            (Some(json!("Bob")), Some(json!("Bobby")))
        ]
    );
    // A name that is no column of the table, with no history, is an error that says so.
    let unknown = f
        .audit
        .field_changes(
            &table,
            "no_such_column",
            None,
            TimeRange::default(),
            &Page::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), "AUDIT_LOGS_INVALID_COLUMN");
}

#[tokio::test]
async fn counts_group_like_a_plain_tally_of_the_log() {
    let f = common::migrated().await;
    activity(&f).await;
    f.audit
        .log(
            &NewEvent::new("user.login"),
            Some(&AuditContext {
                actor_id: Some("ann".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let entries = f.entries().await;
    let mut tally: BTreeMap<(Option<String>, String), i64> = BTreeMap::new();
    for e in &entries {
        *tally
            .entry((e.actor_id.clone(), e.action.clone()))
            .or_default() += 1;
    }
    let rows = f
        .audit
        .counts(&[CountKey::ActorId, CountKey::Action], &Filters::default())
        .await
        .unwrap();
    let got: BTreeMap<(Option<String>, String), i64> = rows
        .iter()
        .map(|r| ((r.actor_id.clone(), r.action.clone().unwrap()), r.count))
        .collect();
    assert_eq!(got, tally);
    assert!(rows
        .iter()
        .all(|r| r.target_type.is_none() && r.period.is_none()));

    // Filters and a time bucket: today's UPDATEs of the table, per day.
    let day = f
        .audit
        .counts(
            &[CountKey::TargetType, CountKey::Day],
            &Filters {
                table: Some("notes".into()),
                actions: vec!["UPDATE".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let updates = entries.iter().filter(|e| e.action == "UPDATE").count() as i64;
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].count, updates);
    assert_eq!(day[0].target_type.as_deref(), Some("public.notes"));
    assert_eq!(
        day[0].period.unwrap(),
        entries[0]
            .created_at
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    );

    let total = f.audit.counts(&[], &Filters::default()).await.unwrap();
    assert_eq!(total[0].count, entries.len() as i64);
    let err = f
        .audit
        .counts(&[CountKey::Day, CountKey::Hour], &Filters::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_ARGUMENT");
    assert!(CountKey::parse("actor_id; drop table x").is_err());
}

#[tokio::test]
async fn bursts_find_the_busiest_window_of_each_actor() {
    let f = common::migrated().await;
    let base: DateTime<Utc> = Utc::now() - chrono::Duration::hours(3);
    // Written directly with chosen times (as the superuser): a burst needs a clock.
    let client = f.sql().await;
    let insert = |actor: &'static str, minute: f64| {
        let at = base + chrono::Duration::milliseconds((minute * 60_000.0) as i64);
        (actor, at)
    };
    let mut rows = Vec::new();
    // mallory: 12 entries within 4 minutes, then 3 more an hour later.
    for i in 0..12 {
        rows.push(insert("mallory", 10.0 + i as f64 * 0.3));
    }
    for i in 0..3 {
        rows.push(insert("mallory", 70.0 + i as f64));
    }
    // steady: 30 entries, one every 5.5 minutes: never more than 2 within 10 minutes.
    for i in 0..30 {
        rows.push(insert("steady", i as f64 * 5.5 + 0.5));
    }
    for (actor, at) in &rows {
        client
            .execute(
                "insert into audit.audit_logs (created_at, action, target_type, target_id, actor_id)
                 values ($1, 'record.viewed', 'record', '1', $2)",
                &[at, actor],
            )
            .await
            .unwrap();
    }
    let range = Filters {
        from: Some(base - chrono::Duration::hours(1)),
        ..Default::default()
    };
    let bursts = f
        .audit
        .bursts("10 minutes", 10, BurstKey::ActorId, &range)
        .await
        .unwrap();
    assert_eq!(bursts.len(), 1, "{bursts:?}");
    assert_eq!(bursts[0].key.as_deref(), Some("mallory"));
    assert_eq!(bursts[0].changes, 12);
    assert_eq!(
        bursts[0].first_change.timestamp_millis(),
        rows[0].1.timestamp_millis()
    );
    assert_eq!(
        bursts[0].last_change.timestamp_millis(),
        rows[11].1.timestamp_millis()
    );
    // A lower threshold catches the steady actor too, busiest first.
    let both = f
        .audit
        .bursts("10 minutes", 2, BurstKey::ActorId, &range)
        .await
        .unwrap();
    let keys: Vec<_> = both
        .iter()
        .map(|b| (b.key.as_deref().unwrap(), b.changes))
        .collect();
    assert_eq!(keys, vec![("mallory", 12), ("steady", 2)]);
    // The default range is the last 24 hours: all of these are in it.
    assert_eq!(
        f.audit
            .bursts("10 minutes", 10, BurstKey::ActorId, &Filters::default())
            .await
            .unwrap()
            .len(),
        1
    );
    for (window, threshold) in [("ten minutes", 10), ("-5 minutes", 10), ("10 minutes", 0)] {
        let err = f
            .audit
            .bursts(window, threshold, BurstKey::ActorId, &range)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{window}: {err}"
        );
    }
}

#[tokio::test]
async fn search_combines_filters_and_pages_by_cursor() {
    let f = common::migrated().await;
    activity(&f).await;
    f.audit
        .log_many(
            &[
                NewEvent {
                    metadata: Some(
                        json!({"reason": "gdpr", "n": 1})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                    ..NewEvent::new("user.exported")
                },
                NewEvent {
                    metadata: Some(json!({"reason": "audit"}).as_object().unwrap().clone()),
                    ..NewEvent::new("user.exported")
                },
            ],
            Some(&AuditContext {
                actor_id: Some("ann".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let cases: Vec<(Filters, Keep)> = vec![
        (
            Filters {
                table: Some("notes".into()),
                actions: vec!["UPDATE".into()],
                actor_id: Some("bob".into()),
                ..Default::default()
            },
            Box::new(|e| {
                e.target_type.as_deref() == Some("public.notes")
                    && e.action == "UPDATE"
                    && e.actor_id.as_deref() == Some("bob")
            }),
        ),
        (
            Filters {
                changed_field: Some("owner".into()),
                ..Default::default()
            },
            Box::new(|e| {
                e.changed_fields
                    .as_ref()
                    .is_some_and(|c| c.contains(&"owner".to_owned()))
            }),
        ),
        (
            Filters {
                target_type: Some("public.notes".into()),
                target_id: Some(json!(2)),
                ..Default::default()
            },
            Box::new(|e| e.target_id.as_deref() == Some("2")),
        ),
        (
            Filters {
                metadata_contains: Some(json!({"reason": "gdpr"})),
                ..Default::default()
            },
            Box::new(|e| e.metadata.as_ref().is_some_and(|m| m["reason"] == "gdpr")),
        ),
        (
            Filters {
                actions: vec!["INSERT".into(), "DELETE".into()],
                ..Default::default()
            },
            Box::new(|e| e.action == "INSERT" || e.action == "DELETE"),
        ),
        (Filters::default(), Box::new(|_| true)),
    ];
    for (filters, keep) in cases {
        let want = expected(&f, keep).await;
        assert!(!want.is_empty(), "{filters:?} should match something");
        let mut got = Vec::new();
        let mut page = Page {
            limit: Some(2),
            before: None,
        };
        loop {
            let result = f.audit.search(&filters, &page).await.unwrap();
            got.extend(ids(&result.entries));
            match result.next_cursor {
                Some(cursor) => page.before = Some(cursor),
                None => break,
            }
        }
        assert_eq!(got, want, "{filters:?}");
    }
    for (filters, page) in [
        (
            Filters::default(),
            Page {
                limit: Some(0),
                before: None,
            },
        ),
        (
            Filters::default(),
            Page {
                limit: Some(1_000_000),
                before: None,
            },
        ),
        (
            Filters::default(),
            Page {
                limit: None,
                before: Some(-5),
            },
        ),
        (
            Filters {
                metadata_contains: Some(json!("x")),
                ..Default::default()
            },
            Page::default(),
        ),
        (
            Filters {
                table: Some("notes".into()),
                target_type: Some("x".into()),
                ..Default::default()
            },
            Page::default(),
        ),
        (
            Filters {
                from: Some(Utc::now()),
                to: Some(Utc::now() - chrono::Duration::days(1)),
                ..Default::default()
            },
            Page::default(),
        ),
    ] {
        let err = f.audit.search(&filters, &page).await.unwrap_err();
        assert_eq!(
            err.code(),
            "AUDIT_LOGS_INVALID_ARGUMENT",
            "{filters:?} {page:?}: {err}"
        );
    }
    // A table that is gone (or never was) has no entries; a name that is not SQL is refused.
    let gone = Filters {
        table: Some("dropped_long_ago".into()),
        ..Default::default()
    };
    assert!(f
        .audit
        .search(&gone, &Page::default())
        .await
        .unwrap()
        .entries
        .is_empty());
    let err = f
        .audit
        .search(
            &Filters {
                table: Some("\"unterminated".into()),
                ..Default::default()
            },
            &Page::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_TABLE_NAME", "{err}");
    // Values are bound: a filter full of SQL matches nothing and changes nothing.
    let hostile = Filters {
        actor_id: Some("x' or 1=1 --".into()),
        ..Default::default()
    };
    assert!(f
        .audit
        .search(&hostile, &Page::default())
        .await
        .unwrap()
        .entries
        .is_empty());
}

#[tokio::test]
async fn a_stream_reads_everything_in_bounded_batches_and_can_be_dropped() {
    let f = common::migrated().await;
    track(
        &f,
        "create table items (id int primary key, n int)",
        "items",
    )
    .await;
    f.as_actor(
        "loader",
        "insert into items select g, g from generate_series(1, 2500) g",
    )
    .await;
    let mut stream = f
        .audit
        .stream(&Filters::default(), Order::OldestFirst, Some(1000))
        .await
        .unwrap();
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    while let Some(batch) = stream.next_batch().await.unwrap() {
        sizes.push(batch.len());
        keys.extend(
            batch
                .iter()
                .map(|e| e.target_id.clone().unwrap().parse::<i32>().unwrap()),
        );
    }
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert_eq!(
        keys,
        (1..=2500).collect::<Vec<_>>(),
        "oldest first, each once"
    );

    // Streams dropped half-way give their connections back (the pool is far smaller than 30).
    for _ in 0..30 {
        let mut stream = f
            .audit
            .stream(&Filters::default(), Order::NewestFirst, Some(10))
            .await
            .unwrap();
        let first = stream.next_batch().await.unwrap().unwrap();
        assert_eq!(first[0].target_id.as_deref(), Some("2500"));
    }
    assert_eq!(
        f.audit
            .search(
                &Filters::default(),
                &Page {
                    limit: Some(1),
                    before: None
                }
            )
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    assert!(f
        .audit
        .stream(&Filters::default(), Order::OldestFirst, Some(0))
        .await
        .is_err());
}

#[tokio::test]
async fn events_are_recorded_with_the_request_context_and_refused_when_bad() {
    let f = common::migrated().await;
    let request = AuditContext {
        actor_id: Some("admin".into()),
        ip_address: Some("192.0.2.7".parse().unwrap()),
        request_id: Some("req-7".into()),
        metadata: Some(json!({"tenant": "acme"}).as_object().unwrap().clone()),
        ..Default::default()
    };
    let event = NewEvent {
        target_type: Some("user".into()),
        target_id: Some("17".into()),
        metadata: Some(json!({"method": "password"}).as_object().unwrap().clone()),
        context: AuditContext {
            actor_id: Some("17".into()),
            actor_type: Some("user".into()),
            ..Default::default()
        },
        ..NewEvent::new("user.login")
    };
    let entry = f.audit.log(&event, Some(&request)).await.unwrap();
    assert_eq!(entry.action, "user.login");
    assert_eq!(
        entry.actor_id.as_deref(),
        Some("17"),
        "the event's own actor wins"
    );
    assert_eq!(
        entry.ip_address.as_deref(),
        Some("192.0.2.7"),
        "the request's address is kept"
    );
    assert_eq!(entry.request_id.as_deref(), Some("req-7"));
    assert_eq!(
        entry.metadata,
        Some(json!({"tenant": "acme", "method": "password"}))
    );
    assert_eq!(
        f.entries().await,
        vec![entry.clone()],
        "what log returns is what was stored"
    );

    let many: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            target_id: Some(i.to_string()),
            ..NewEvent::new("report.exported")
        })
        .collect();
    let logged = f.audit.log_many(&many, None).await.unwrap();
    let targets: Vec<_> = logged
        .iter()
        .map(|e| e.target_id.clone().unwrap())
        .collect();
    assert_eq!(targets, vec!["0", "1", "2", "3", "4"]);
    assert!(logged
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].txid == w[1].txid));

    // One bad event refuses the whole call: nothing written.
    let mut bad = many.clone();
    bad.push(NewEvent::new("DELETE"));
    let err = f.audit.log_many(&bad, None).await.unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_EVENT", "{err}");
    assert_eq!(f.count("select count(*) from audit.audit_logs").await, 6);

    // In the caller's transaction: rolled back with it, or committed with it.
    let statement =
        audit_logs_core::events::statement(&[NewEvent::new("order.refunded")], None).unwrap();
    let mut client = f.sql().await;
    for commit in [false, true] {
        let tx = client.transaction().await.unwrap();
        audit_logs_core::set_context(
            &tx,
            &AuditContext {
                actor_id: Some("clerk".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let row = tx
            .query_one(&statement.text, &[&statement.events])
            .await
            .unwrap();
        let actor: Option<String> = row.get("actorId");
        assert_eq!(
            actor.as_deref(),
            Some("clerk"),
            "the transaction's context attributes the event"
        );
        if commit {
            tx.commit().await.unwrap()
        } else {
            tx.rollback().await.unwrap()
        }
    }
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'order.refunded'")
            .await,
        1
    );
}

#[tokio::test]
async fn history_of_a_name_that_is_no_table_says_so_and_names_the_table_it_may_mean() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            "create table posts (id int primary key, title text);
             select audit.enable_tracking('posts');
             insert into posts values (1, 'a');
             create table gone (id int primary key);
             select audit.enable_tracking('gone');
             insert into gone values (1);
             drop table gone;",
        )
        .await
        .unwrap();
    // Prisma's model name for the table `posts`: a typo, not an empty history.
    let err = f
        .audit
        .history(&audit_logs_core::HistoryQuery::of_table("Post", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_TABLE_NOT_FOUND", "{err}");
    assert!(err.to_string().contains("public.posts"), "{err}");
    // A table that exists, and a dropped one with history, still answer as before.
    let none = f
        .audit
        .history(&audit_logs_core::HistoryQuery::of_table("posts", 2))
        .await
        .unwrap();
    assert!(none.is_empty());
    let dropped = f
        .audit
        .history(&audit_logs_core::HistoryQuery::of_table("gone", 1))
        .await
        .unwrap();
    assert_eq!(dropped.len(), 1);
}

#[tokio::test]
async fn field_changes_of_a_field_that_is_no_column_says_so_and_names_the_column() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            "create table posts (id int primary key, author_id int, title text);
             select audit.enable_tracking('posts');
             insert into posts values (1, 7, 'a');
             update posts set author_id = 8;",
        )
        .await
        .unwrap();
    let changes = |field: &'static str| {
        let table: TableRef = "posts".into();
        let audit = &f.audit;
        async move {
            audit
                .field_changes(&table, field, None, TimeRange::default(), &Page::default())
                .await
        }
    };
    // Prisma's field name for the column author_id.
    let err = changes("authorId").await.unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_COLUMN", "{err}");
    assert!(err.to_string().contains("did you mean author_id?"), "{err}");
    assert_eq!(changes("author_id").await.unwrap().len(), 1);
    // A column that exists and never changed is an empty answer, not an error.
    assert!(changes("title").await.unwrap().is_empty());
}

/// A busy record (more entries than the history's first look at its key) still has the events
/// logged about it under another name of its table in its history, newest first and paged like
/// the rest; events under other names, or about another record, are not. Expected: the whole
/// log read and filtered here.
#[tokio::test]
async fn a_busy_records_history_keeps_the_events_about_it_under_other_names() {
    let f = common::migrated().await;
    track(
        &f,
        "create table accounts (id int primary key, n int);
         create table quiet (id int primary key, n int);
         insert into accounts values (1, 0), (2, 0);
         insert into quiet values (1, 0);",
        "accounts",
    )
    .await;
    track(&f, "", "quiet").await;
    let event = |target_type: &str, id: &str| NewEvent {
        target_type: Some(target_type.into()),
        target_id: Some(id.into()),
        ..NewEvent::new("account.viewed")
    };
    f.audit
        .log_many(&[event("account", "2"), event("post", "1")], None)
        .await
        .unwrap();
    // Dated a year ahead, so in the default partition, which the history's first look at the
    // key reaches only after the 256 entries of this month's: found by the second look.
    f.sql()
        .await
        .batch_execute(
            "insert into audit.audit_logs (created_at, action, target_type, target_id)
             select now() + interval '1 year', 'account.viewed', t, '1'
               from unnest('{account,Accounts,account}'::text[]) as t",
        )
        .await
        .unwrap();
    f.sql()
        .await
        .batch_execute(
            "do $$ begin
               for i in 1..300 loop
                 update accounts set n = i where id = 1;
                 update quiet set n = i where id = 1;
               end loop;
             end $$;
             update accounts set n = -1 where id = 2;",
        )
        .await
        .unwrap();
    let all = f.entries().await;
    let about = |id: &str, names: &[&str]| -> Vec<i64> {
        let mut ids: Vec<i64> = all
            .iter()
            .filter(|e| {
                e.target_id.as_deref() == Some(id)
                    && names.contains(&e.target_type.as_deref().unwrap_or(""))
            })
            .map(|e| e.id)
            .collect();
        ids.reverse();
        ids
    };
    let history = |id: i64, limit: u32, before: Option<i64>| {
        let audit = &f.audit;
        async move {
            let mut query = audit_logs_core::HistoryQuery::of_table("accounts", json!(id));
            query.limit = Some(limit);
            query.before = before;
            audit
                .history(&query)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<i64>>()
        }
    };

    let busy = about("1", &["public.accounts", "account", "Accounts"]);
    assert_eq!(busy.len(), 300 + 3, "300 updates, three events");
    assert_eq!(
        f.count("select count(*) from audit.audit_logs_default where target_id = '1'")
            .await,
        3
    );
    assert_eq!(history(1, 1000, None).await, busy);
    // Paged: the last page holds the events, older than every update (ids order history).
    assert_eq!(history(1, 100, None).await, busy[..100]);
    assert_eq!(history(1, 100, Some(busy[299])).await, busy[300..]);

    // A record with few entries, and the same table's busy record without events: the same rule.
    assert_eq!(
        history(2, 1000, None).await,
        about("2", &["public.accounts", "account", "Accounts"])
    );
    let quiet = audit_logs_core::HistoryQuery::of_table("quiet", json!(1));
    let read: Vec<i64> = f
        .audit
        .history(&audit_logs_core::HistoryQuery {
            limit: Some(1000),
            ..quiet
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(read, about("1", &["public.quiet"]));
    assert_eq!(read.len(), 300);
}
