mod common;

use audit_logs_core::{
    AuditContext, Error, HistoryQuery, TableRef, TrackingError, TrackingOptions,
};
use serde_json::json;

async fn tracked(f: &common::Fixture, setup: &str, table: &str) {
    f.sql().await.batch_execute(setup).await.unwrap();
    f.audit
        .enable_tracking(&table.into(), &TrackingOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn insert_update_delete_are_recorded_with_values_and_actor() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table users (id int primary key, email text, name text)",
        "users",
    )
    .await;
    f.as_actor(
        "alice",
        "insert into users values (1, 'a@x.io', 'Ann'), (2, 'b@x.io', 'Bob')",
    )
    .await;
    f.as_actor(
        "bob",
        "update users set name = 'Anne' where id = 1; delete from users where id = 2",
    )
    .await;

    let e = f.entries().await;
    assert_eq!(e.len(), 4, "one entry per changed row");
    assert_eq!(
        (e[0].action.as_str(), e[0].target_id.as_deref()),
        ("INSERT", Some("1"))
    );
    assert_eq!(e[0].target_type.as_deref(), Some("public.users"));
    assert_eq!(
        e[0].new_values,
        Some(json!({"id": 1, "email": "a@x.io", "name": "Ann"}))
    );
    assert_eq!(e[0].old_values, None);
    assert_eq!(e[0].actor_id.as_deref(), Some("alice"));

    assert_eq!(e[2].action, "UPDATE");
    assert_eq!(
        e[2].old_values,
        Some(json!({"name": "Ann"})),
        "old values of the changed columns only"
    );
    assert_eq!(
        e[2].new_values,
        Some(json!({"id": 1, "email": "a@x.io", "name": "Anne"})),
        "the whole new row"
    );
    assert_eq!(e[2].changed_fields, Some(vec!["name".to_owned()]));
    assert_eq!(e[2].actor_id.as_deref(), Some("bob"));

    assert_eq!(e[3].action, "DELETE");
    assert_eq!(
        e[3].old_values,
        Some(json!({"id": 2, "email": "b@x.io", "name": "Bob"}))
    );
    assert_eq!(e[3].new_values, None);
    assert_eq!(
        e[2].txid, e[3].txid,
        "entries of one transaction share its txid"
    );
    assert_ne!(e[0].txid, e[2].txid);
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_audit_row() {
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key, v int)", "t").await;
    let mut client = f.sql().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("insert into t values (1, 1); update t set v = 2")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // A savepoint rolled back inside a committed transaction: only the kept change is recorded.
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "insert into t values (2, 1); savepoint s; update t set v = 5; rollback to savepoint s",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let e = f.entries().await;
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].action.as_str(), e[0].target_id.as_deref()),
        ("INSERT", Some("2"))
    );
}

#[tokio::test]
async fn excluded_columns_are_never_stored_but_their_changes_are_named() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table accounts (id int primary key, email text, password_hash text)")
        .await
        .unwrap();
    let table = f
        .audit
        .enable_tracking(
            &"accounts".into(),
            &TrackingOptions {
                exclude_columns: Some(vec!["password_hash".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(table.excluded_columns, vec!["password_hash"]);
    f.as_actor(
        "u",
        "insert into accounts values (1, 'a@x.io', 'secret-1');
         update accounts set password_hash = 'secret-2';
         update accounts set email = 'b@x.io', password_hash = 'secret-3';
         delete from accounts",
    )
    .await;
    let e = f.entries().await;
    assert_eq!(e.len(), 4);
    let stored = serde_json::to_string(&e).unwrap();
    assert!(
        !stored.contains("secret"),
        "an excluded value leaked: {stored}"
    );
    assert_eq!(e[1].changed_fields, Some(vec!["password_hash".to_owned()]));
    assert_eq!(e[1].old_values, Some(json!({})));
    assert_eq!(
        e[2].changed_fields,
        Some(vec!["email".to_owned(), "password_hash".to_owned()])
    );
    assert_eq!(e[2].old_values, Some(json!({"email": "a@x.io"})));
}

#[tokio::test]
async fn updates_that_change_nothing_are_skipped_unless_asked() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table t (id int primary key, v int); insert into t values (1, 1), (2, 2)",
        "t",
    )
    .await;
    f.as_actor("u", "update t set v = v; update t set v = 3 where id = 1")
        .await;
    let e = f.entries().await;
    assert_eq!(e.len(), 1, "only the real change: {e:?}");

    f.audit
        .enable_tracking(
            &"t".into(),
            &TrackingOptions {
                record_unchanged: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    f.as_actor("u", "update t set v = v").await;
    let e = f.row_changes().await;
    assert_eq!(e.len(), 3);
    assert_eq!(e[2].changed_fields, Some(vec![]));
    let changed = f.schema_changes().await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].action, "ddl.tracking_changed");
    let metadata = changed[0].metadata.as_ref().unwrap();
    assert_eq!(metadata["before"]["skip_unchanged"], true);
    assert_eq!(metadata["after"]["skip_unchanged"], false);
}

#[tokio::test]
async fn quoted_mixed_case_names_in_any_schema() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            r#"create schema "Sales Dept";
               create table "Sales Dept"."Order Items" ("Order Id" int primary key, "Qty" int)"#,
        )
        .await
        .unwrap();
    let exact = TableRef::Exact {
        schema: "Sales Dept".into(),
        name: "Order Items".into(),
    };
    let table = f
        .audit
        .enable_tracking(&exact, &TrackingOptions::default())
        .await
        .unwrap();
    assert_eq!(table.target_type, r#""Sales Dept"."Order Items""#);
    // The SQL spelling names the same table.
    let again = f
        .audit
        .enable_tracking(
            &r#""Sales Dept"."Order Items""#.into(),
            &TrackingOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(again, table);
    f.as_actor("u", r#"insert into "Sales Dept"."Order Items" values (7, 1); update "Sales Dept"."Order Items" set "Qty" = 2"#)
        .await;
    let e = f.entries().await;
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].changed_fields, Some(vec!["Qty".to_owned()]));
    let history = f
        .audit
        .history(&HistoryQuery::of_table(exact.clone(), 7))
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
}

#[tokio::test]
async fn composite_primary_keys_are_json_arrays() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table lines (order_id int, sku text, qty int, primary key (order_id, sku))",
        "lines",
    )
    .await;
    f.as_actor(
        "u",
        "insert into lines values (1, 'a-1', 2); update lines set qty = 3",
    )
    .await;
    let e = f.entries().await;
    assert_eq!(e[0].target_id.as_deref(), Some(r#"[1, "a-1"]"#));
    let history = f
        .audit
        .history(&HistoryQuery::of_table("lines", json!([1, "a-1"])))
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.action.as_str())
            .collect::<Vec<_>>(),
        ["UPDATE", "INSERT"]
    );
}

#[tokio::test]
async fn updates_that_change_the_primary_key_over_many_rows() {
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key, v text)", "t").await;
    f.as_actor(
        "u",
        "insert into t select g, 'v' || g from generate_series(1, 50) g",
    )
    .await;
    f.as_actor("u", "update t set id = id + 1000").await;
    let changes = f
        .count("select count(*) from audit.audit_logs where action = 'UPDATE'")
        .await;
    assert_eq!(changes, 50);
    let wrong = f
        .count(
            "select count(*) from audit.audit_logs where action = 'UPDATE'
              and (target_id::int <> old_target_id::int + 1000 or new_values->>'v' <> 'v' || old_target_id
                   or old_values <> jsonb_build_object('id', old_target_id::int))",
        )
        .await;
    assert_eq!(wrong, 0, "every old row is paired with its own new row");
    // The old key's history ends with the update that moved it; the new key's starts with it.
    let old = f
        .audit
        .history(&HistoryQuery::of_table("t", json!(7)))
        .await
        .unwrap();
    assert_eq!(
        old.iter().map(|h| h.action.as_str()).collect::<Vec<_>>(),
        ["UPDATE", "INSERT"]
    );
    let new = f
        .audit
        .history(&HistoryQuery::of_table("t", json!(1007)))
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].old_target_id.as_deref(), Some("7"));
}

#[tokio::test]
async fn a_large_update_after_many_small_ones_stays_linear() {
    // A plan cached from one-row statements must not make a 20,000-row statement quadratic
    // (it would take minutes); the zip of old and new rows has no join to go wrong.
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key, v int)", "t").await;
    let client = f.sql().await;
    client
        .batch_execute("insert into t select g, 0 from generate_series(1, 20000) g")
        .await
        .unwrap();
    for i in 1..=10 {
        client
            .execute("update t set v = v + 1 where id = $1", &[&i])
            .await
            .unwrap();
    }
    let updated = client.execute("update t set v = v + 1", &[]).await.unwrap();
    assert_eq!(updated, 20_000);
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'UPDATE'")
            .await,
        20_010
    );
}

#[tokio::test]
async fn partitioned_tables_record_routed_and_direct_writes_once() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table events (id int, region text, v int, primary key (id, region)) partition by list (region);
         create table events_eu partition of events for values in ('eu');
         create table events_us partition of events for values in ('us')",
        "events",
    )
    .await;
    f.as_actor(
        "u",
        "insert into events values (1, 'eu', 1), (2, 'us', 1);
         insert into events_eu values (3, 'eu', 1);
         update events set v = 2 where id = 1;
         update events set region = 'us' where id = 3",
    )
    .await;
    let e = f.entries().await;
    assert_eq!(
        e.iter()
            .map(|x| (x.action.as_str(), x.target_id.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("INSERT", r#"[1, "eu"]"#.to_owned()),
            ("INSERT", r#"[2, "us"]"#.to_owned()),
            ("INSERT", r#"[3, "eu"]"#.to_owned()),
            ("UPDATE", r#"[1, "eu"]"#.to_owned()),
            ("UPDATE", r#"[3, "us"]"#.to_owned()),
        ]
    );
    assert!(e
        .iter()
        .all(|x| x.target_type.as_deref() == Some("public.events")));

    f.as_actor("u", "truncate events").await;
    let truncated = f
        .count("select count(*) from audit.audit_logs where action = 'TRUNCATE'")
        .await;
    assert_eq!(
        truncated, 3,
        "each row once, whether its partition or the parent recorded it"
    );

    // A partition created after tracking is tracked from its first write (the event trigger
    // regenerates capture), directly or through the parent, TRUNCATE included.
    f.sql()
        .await
        .batch_execute(
            "create table events_ap partition of events for values in ('ap');
             insert into events values (9, 'ap', 1); insert into events_ap values (10, 'ap', 1);
             truncate events",
        )
        .await
        .unwrap();
    let ap = f
        .count(
            "select count(*) from audit.audit_logs
              where target_id in ('[9, \"ap\"]', '[10, \"ap\"]') and action in ('INSERT', 'TRUNCATE')",
        )
        .await;
    assert_eq!(ap, 4, "both inserts and both truncated rows, once each");
    let tables = f.audit.tracked_tables().await.unwrap();
    assert!(tables[0].needs_refresh.is_empty(), "{:?}", tables[0]);
}

#[tokio::test]
async fn truncate_keeps_the_truncated_rows_in_the_history() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table t (id int primary key, v text); insert into t values (1, 'a'), (2, 'b')",
        "t",
    )
    .await;
    f.as_actor("cleaner", "truncate t").await;
    let e = f.entries().await;
    assert_eq!(e.len(), 2);
    assert!(e
        .iter()
        .all(|x| x.action == "TRUNCATE" && x.actor_id.as_deref() == Some("cleaner")));
    assert_eq!(e[0].old_values, Some(json!({"id": 1, "v": "a"})));
}

#[tokio::test]
async fn columns_added_or_dropped_need_no_extra_step_even_without_the_event_trigger() {
    let f = common::migrated().await;
    // Where the migrating role could not create the event trigger that regenerates capture.
    f.sql()
        .await
        .batch_execute("drop event trigger audit_capture_ddl")
        .await
        .unwrap();
    tracked(
        &f,
        "create table t (id int primary key, a text, b text); insert into t values (1, 'a', 'b')",
        "t",
    )
    .await;
    f.sql()
        .await
        .batch_execute("alter table t add column c text; alter table t drop column b")
        .await
        .unwrap();
    f.as_actor(
        "u",
        "update t set c = 'c1'; update t set a = 'a2'; insert into t values (2, 'x', 'y')",
    )
    .await;
    let e = f.entries().await;
    assert_eq!(e[0].changed_fields, Some(vec!["c".to_owned()]));
    assert_eq!(e[0].old_values, Some(json!({"c": null})));
    assert_eq!(e[1].changed_fields, Some(vec!["a".to_owned()]));
    assert_eq!(
        e[1].old_values,
        Some(json!({"a": "a"})),
        "unchanged new columns are not in old_values"
    );
    assert_eq!(e[2].new_values, Some(json!({"id": 2, "a": "x", "c": "y"})));
    assert_eq!(
        f.audit.tracked_tables().await.unwrap()[0].needs_refresh,
        vec!["its columns changed"]
    );
}

#[tokio::test]
async fn a_table_without_primary_key_is_refused_and_left_untouched() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table logs (line text)")
        .await
        .unwrap();
    let err = f
        .audit
        .enable_tracking(&"logs".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Tracking(TrackingError::NoPrimaryKey { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "AUDIT_LOGS_NO_PRIMARY_KEY");
    assert!(err.to_string().contains("add primary key"), "{err}");
    assert_eq!(
        f.count("select count(*) from pg_trigger where tgrelid = 'logs'::regclass")
            .await,
        0
    );
}

#[tokio::test]
async fn only_tables_can_be_tracked() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            "create table t (id int primary key); create view v as select * from t;
             create table p (id int primary key) partition by range (id);
             create table p1 partition of p for values from (0) to (10)",
        )
        .await
        .unwrap();
    let view = f
        .audit
        .enable_tracking(&"v".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(view, Error::Tracking(TrackingError::NotATable { .. })),
        "{view:?}"
    );
    assert!(view.to_string().contains("view"));
    let partition = f
        .audit
        .enable_tracking(&"p1".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(partition, Error::Tracking(TrackingError::NotATable { .. })),
        "{partition:?}"
    );
    assert!(partition.to_string().contains("partition of"));
    let own = f
        .audit
        .enable_tracking(&"audit.audit_logs".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(own, Error::Tracking(TrackingError::ReservedTable { .. })),
        "{own:?}"
    );
}

#[tokio::test]
async fn bad_table_names_get_typed_errors() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table users (id int primary key)")
        .await
        .unwrap();
    let missing = f
        .audit
        .enable_tracking(&"nope".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            Error::Tracking(TrackingError::TableNotFound { .. })
        ),
        "{missing:?}"
    );
    // Unquoted names fold to lower case as in SQL; a quoted "Users" is another table.
    f.audit
        .enable_tracking(&"USERS".into(), &TrackingOptions::default())
        .await
        .unwrap();
    let case = f
        .audit
        .enable_tracking(&"\"Users\"".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert!(
        case.to_string().contains("did you mean public.users"),
        "{case}"
    );
    // The singular, a model name, a typo: each points at the table meant.
    for mistyped in ["user", "User", "usres"] {
        let err = f
            .audit
            .enable_tracking(&mistyped.into(), &TrackingOptions::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did you mean public.users?"),
            "{mistyped}: {err}"
        );
    }
    for bad in [
        "Order Items",
        "users\"; drop table users; --",
        "a.b.c.d",
        "\"unclosed",
        "   ",
    ] {
        let err = f
            .audit
            .enable_tracking(&bad.into(), &TrackingOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Tracking(TrackingError::InvalidTableName { .. })
                    | Error::Tracking(TrackingError::TableNotFound { .. })
            ),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        f.count("select count(*) from users").await,
        0,
        "the table survived"
    );
    let column = f
        .audit
        .enable_tracking(
            &"users".into(),
            &TrackingOptions {
                exclude_columns: Some(vec!["pasword".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(column, Error::Tracking(TrackingError::InvalidColumn { .. })),
        "{column:?}"
    );
    assert!(
        column
            .to_string()
            .contains("columns of public.users are: id"),
        "{column}"
    );
}

#[tokio::test]
async fn enable_and_disable_are_idempotent_and_listed() {
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key, v int)", "t").await;
    f.audit
        .enable_tracking(&"t".into(), &TrackingOptions::default())
        .await
        .unwrap();
    let listed = f.audit.tracked_tables().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].primary_key, vec!["id"]);
    assert!(listed[0].skip_unchanged);
    assert_eq!(
        f.count("select count(*) from pg_trigger where tgrelid = 't'::regclass")
            .await,
        4
    );
    f.as_actor("u", "insert into t values (1, 1)").await;
    assert_eq!(
        f.entries().await.len(),
        1,
        "enabled twice still records once (and, the same options, no ddl entry)"
    );

    assert!(f.audit.disable_tracking(&"t".into()).await.unwrap());
    assert!(!f.audit.disable_tracking(&"t".into()).await.unwrap());
    assert!(f.audit.tracked_tables().await.unwrap().is_empty());
    assert_eq!(
        f.count("select count(*) from pg_proc where pronamespace = 'audit'::regnamespace and proname like 'capture %'")
            .await,
        0,
        "the generated function is dropped too"
    );
    f.as_actor("u", "insert into t values (2, 1)").await;
    assert_eq!(
        f.row_changes().await.len(),
        1,
        "nothing recorded after disabling; history kept"
    );
    let disabled = f.schema_changes().await;
    assert_eq!(
        disabled
            .iter()
            .map(|e| (e.action.as_str(), e.target_type.as_deref()))
            .collect::<Vec<_>>(),
        [("ddl.tracking_disabled", Some("public.t"))],
        "disabling is itself recorded, once"
    );
}

#[tokio::test]
async fn context_fills_the_actor_columns_and_the_rest_goes_to_metadata() {
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key)", "t").await;
    let mut client = f.sql().await;
    let tx = client.transaction().await.unwrap();
    let context = AuditContext {
        actor_id: Some("42".into()),
        actor_type: Some("moderator".into()),
        actor_email: Some("mod@x.io".into()),
        ip_address: Some("2001:db8::1".parse().unwrap()),
        user_agent: Some("curl/8".into()),
        request_id: Some("req-1".into()),
        reason: Some("spam".into()),
        metadata: Some(serde_json::from_value(json!({"ticket": 7})).unwrap()),
        ..Default::default()
    };
    audit_logs_core::set_context(&tx, &context).await.unwrap();
    tx.batch_execute("insert into t values (1)").await.unwrap();
    tx.commit().await.unwrap();
    let e = &f.entries().await[0];
    assert_eq!(e.actor_id.as_deref(), Some("42"));
    assert_eq!(e.actor_type.as_deref(), Some("moderator"));
    assert_eq!(e.actor_email.as_deref(), Some("mod@x.io"));
    assert_eq!(e.ip_address.as_deref(), Some("2001:db8::1"));
    assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(e.request_id.as_deref(), Some("req-1"));
    assert_eq!(e.metadata, Some(json!({"reason": "spam", "ticket": 7})));
}

#[tokio::test]
async fn sql_users_attribute_migrations_with_set_context() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table orgs (id int primary key, name text); insert into orgs values (1, 'a')",
        "orgs",
    )
    .await;
    f.sql()
        .await
        .batch_execute(
            r#"begin;
               select audit.set_context('{"actor_type": "migration", "migration_name": "0042_rename_orgs", "note": "x"}');
               update orgs set name = upper(name);
               commit;"#,
        )
        .await
        .unwrap();
    let e = f.entries().await;
    assert_eq!(e[0].actor_type.as_deref(), Some("migration"));
    assert_eq!(
        e[0].metadata,
        Some(json!({"migration_name": "0042_rename_orgs", "note": "x"}))
    );
    let bad = f
        .sql()
        .await
        .batch_execute(r#"select audit.set_context('{"ip_address": "not-an-ip"}')"#)
        .await
        .unwrap_err();
    assert_eq!(bad.code().unwrap().code(), "AL004");
}

#[tokio::test]
async fn changes_without_context_are_still_recorded() {
    let f = common::migrated().await;
    tracked(&f, "create table t (id int primary key)", "t").await;
    let client = f.sql().await;
    client
        .batch_execute("insert into t values (1)")
        .await
        .unwrap();
    // Once used in a session, an unset custom setting reads as '' rather than NULL.
    client
        .batch_execute("begin; select set_config('audit.context', '{\"actor_id\": \"x\"}', true); commit; insert into t values (2)")
        .await
        .unwrap();
    let e = f.entries().await;
    assert_eq!(e.len(), 2);
    assert!(e
        .iter()
        .all(|x| x.actor_id.is_none() && x.metadata.is_none()));
}

#[tokio::test]
async fn upserts_record_inserts_and_updates() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table t (id int primary key, v int); insert into t values (1, 1)",
        "t",
    )
    .await;
    f.as_actor(
        "u",
        "insert into t values (1, 5), (2, 5) on conflict (id) do update set v = excluded.v",
    )
    .await;
    let e = f.entries().await;
    let mut actions: Vec<_> = e
        .iter()
        .map(|x| (x.action.as_str(), x.target_id.clone().unwrap()))
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [("INSERT", "2".to_owned()), ("UPDATE", "1".to_owned())]
    );
}

#[tokio::test]
async fn require_context_fails_unattributed_writes_and_nothing_else() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table t (id int primary key)")
        .await
        .unwrap();
    let table = f
        .audit
        .enable_tracking(
            &"t".into(),
            &TrackingOptions {
                require_context: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(table.require_context);
    let err = f
        .sql()
        .await
        .batch_execute("insert into t values (1)")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "AL006");
    let mapped: Error = err.into();
    assert_eq!(mapped.code(), "AUDIT_LOGS_CONTEXT_REQUIRED");
    assert!(
        mapped
            .to_string()
            .contains("public.t needs an audit context"),
        "{mapped}"
    );
    assert_eq!(
        f.count("select count(*) from t").await,
        0,
        "the write failed as a whole"
    );
    f.as_actor("42", "insert into t values (2)").await;
    let e = f.entries().await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].actor_id.as_deref(), Some("42"));
}

#[tokio::test]
async fn a_detached_partition_is_no_longer_recorded_under_its_parent() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table events (id int, region text, primary key (id, region)) partition by list (region);
         create table events_eu partition of events for values in ('eu');
         create table events_us partition of events for values in ('us');",
        "events",
    )
    .await;
    f.as_actor(
        "u",
        "insert into events values (1, 'eu'), (2, 'us');
         alter table events detach partition events_us;
         insert into events_us values (3, 'us'); insert into events values (4, 'eu');",
    )
    .await;
    let ids: Vec<_> = f
        .row_changes()
        .await
        .into_iter()
        .map(|e| e.target_id.unwrap())
        .collect();
    assert_eq!(ids, [r#"[1, "eu"]"#, r#"[2, "us"]"#, r#"[4, "eu"]"#]);
    let detached = f.schema_changes().await;
    assert_eq!(detached.len(), 1, "{detached:?}");
    assert_eq!(detached[0].action, "ddl.alter_table");
    assert_eq!(detached[0].actor_id.as_deref(), Some("u"));
    assert_eq!(
        detached[0].metadata.as_ref().unwrap()["partitions_detached"],
        serde_json::json!(["public.events_us"])
    );
    assert!(f.audit.tracked_tables().await.unwrap()[0]
        .needs_refresh
        .is_empty());
}

#[tokio::test]
async fn entries_follow_a_primary_key_that_moves_to_another_column() {
    let f = common::migrated().await;
    tracked(
        &f,
        "create table t (id int primary key, code text not null unique); insert into t values (1, 'a')",
        "t",
    )
    .await;
    f.sql()
        .await
        .batch_execute(
            "alter table t drop constraint t_pkey; alter table t add primary key (code);
             alter table t drop column id",
        )
        .await
        .unwrap();
    f.as_actor(
        "u",
        "insert into t values ('b'); update t set code = 'c' where code = 'a'",
    )
    .await;
    let ids: Vec<_> = f
        .row_changes()
        .await
        .into_iter()
        .map(|e| (e.action, e.target_id, e.old_target_id))
        .collect();
    assert_eq!(
        ids,
        [
            ("INSERT".to_owned(), Some("b".to_owned()), None),
            (
                "UPDATE".to_owned(),
                Some("c".to_owned()),
                Some("a".to_owned())
            ),
        ],
        "every entry can be found again by its record's key"
    );
    assert_eq!(
        f.audit.tracked_tables().await.unwrap()[0].primary_key,
        ["code"]
    );
}

#[tokio::test]
async fn a_json_value_that_jsonb_cannot_hold_is_recorded_not_refused() {
    let f = common::migrated().await;
    // "\u0000" is legal in json, not in jsonb: the same insert succeeds untracked.
    tracked(
        &f,
        "create table docs (id int primary key, body json, tags jsonb)",
        "docs",
    )
    .await;
    f.as_actor(
        "u",
        r#"insert into docs values (1, '{"a": "\u0000", "b": "\\u0000"}', '["x"]'), (2, '{"a": 1}', null);
           update docs set body = '{"b": "\u0000"}' where id = 2; delete from docs where id = 1"#,
    )
    .await;
    let e = f.entries().await;
    assert_eq!(e.len(), 4, "every change recorded: {e:?}");
    assert_eq!(
        e[0].new_values,
        Some(json!({"id": 1, "body": {"a": "\\u0000", "b": "\\u0000"}, "tags": ["x"]})),
        "the escaped NUL that jsonb cannot hold is kept as the six characters \\u0000"
    );
    assert_eq!(
        e[1].new_values,
        Some(json!({"id": 2, "body": {"a": 1}, "tags": null}))
    );
    assert_eq!(e[2].changed_fields, Some(vec!["body".to_owned()]));
    assert_eq!(e[2].old_values, Some(json!({"body": {"a": 1}})));
    assert_eq!(e[3].action, "DELETE");
}

#[tokio::test]
async fn enabling_again_keeps_the_options_not_given() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table users (id int primary key, email text, password_hash text)")
        .await
        .unwrap();
    let users = TableRef::from("users");
    f.audit
        .enable_tracking(
            &users,
            &TrackingOptions {
                exclude_columns: Some(vec!["password_hash".into()]),
                require_context: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // After altering the table, as the docs say: enable again, with no options.
    let again = f
        .audit
        .enable_tracking(&users, &TrackingOptions::default())
        .await
        .unwrap();
    assert_eq!(again.excluded_columns, ["password_hash"]);
    assert!(again.require_context);
    f.as_actor("u", "insert into users values (1, 'a@x.io', 'secret')")
        .await;
    assert_eq!(
        f.entries().await[0].new_values,
        Some(json!({"id": 1, "email": "a@x.io"}))
    );
    // Options given are changed, the others still kept.
    let changed = f
        .audit
        .enable_tracking(
            &users,
            &TrackingOptions {
                require_context: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.excluded_columns, ["password_hash"]);
    assert!(!changed.require_context);
    let cleared = f
        .audit
        .enable_tracking(
            &users,
            &TrackingOptions {
                exclude_columns: Some(Vec::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(cleared.excluded_columns.is_empty());

    // An excluded column dropped since: enabling again neither fails nor forgets the others.
    f.audit
        .enable_tracking(
            &users,
            &TrackingOptions {
                exclude_columns: Some(vec!["email".into(), "password_hash".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    f.sql()
        .await
        .batch_execute("alter table users drop column email")
        .await
        .unwrap();
    let after_drop = f
        .audit
        .enable_tracking(&users, &TrackingOptions::default())
        .await
        .unwrap();
    assert_eq!(after_drop.excluded_columns, ["password_hash"]);
}

#[tokio::test]
async fn a_key_too_long_for_an_index_entry_is_recorded_and_found_by_its_key() {
    let f = common::migrated().await;
    // A short key when tracking began, widened since: capture follows (the event trigger).
    tracked(
        &f,
        "create table docs (path varchar(20) primary key, v int)",
        "docs",
    )
    .await;
    let long = "p/".repeat(1500); // 3000 bytes: more than an index entry of the log holds
    f.as_actor(
        "u",
        &format!(
            "alter table docs alter column path type text;
             insert into docs values ('{long}', 1); update docs set v = 2;
             insert into docs values ('short', 1); delete from docs where path = '{long}'"
        ),
    )
    .await;
    let history = f
        .audit
        .history(&HistoryQuery::of_table("docs", long.clone()))
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["DELETE", "UPDATE", "INSERT"]
    );
    assert!(history[0]
        .target_id
        .as_deref()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        history[2].new_values.as_ref().unwrap()["path"],
        json!(long),
        "the whole key is in the row"
    );
    let short = f
        .audit
        .history(&HistoryQuery::of_table("docs", "short"))
        .await
        .unwrap();
    assert_eq!(short[0].target_id.as_deref(), Some("short"));
}
