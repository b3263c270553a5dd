//! Capture as an unprivileged application role, and attempts to subvert it.
mod common;

use audit_logs_core::{ConnectOptions, TrackingOptions};

/// A login role with rights on the application's table and none on the audit schema.
async fn app_role(f: &common::Fixture) -> tokio_postgres::Client {
    let role = f.db.create_role("app").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "create table orders (id int primary key, total int);
             grant select, insert, update, delete, truncate on orders to {role};
             grant create on database {db} to {role};",
            db = f.db.name
        ))
        .await
        .unwrap();
    f.audit
        .enable_tracking(&"orders".into(), &TrackingOptions::default())
        .await
        .unwrap();
    f.connect_as(&role).await
}

#[tokio::test]
async fn an_application_role_without_audit_privileges_is_recorded() {
    let f = common::migrated().await;
    let app = app_role(&f).await;
    app.batch_execute(
        "begin; select audit.set_context('{\"actor_id\": \"7\"}');
         insert into orders values (1, 10); update orders set total = 11; delete from orders; commit;",
    )
    .await
    .unwrap();
    let e = f.entries().await;
    assert_eq!(
        e.iter().map(|x| x.action.as_str()).collect::<Vec<_>>(),
        ["INSERT", "UPDATE", "DELETE"]
    );
    assert!(e.iter().all(|x| x.actor_id.as_deref() == Some("7")));
}

#[tokio::test]
async fn an_application_role_cannot_write_the_log_directly() {
    let f = common::migrated().await;
    let app = app_role(&f).await;
    app.batch_execute("insert into orders values (1, 10)")
        .await
        .unwrap();
    for statement in [
        "insert into audit.audit_logs (action) values ('forged.event')",
        "update audit.audit_logs set actor_id = 'someone else'",
        "delete from audit.audit_logs",
        "truncate audit.audit_logs",
        "select audit.enable_tracking('orders')",
        "select audit.create_partitions(1)",
    ] {
        let err = app.batch_execute(statement).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{statement}: {err:?}");
    }
    assert_eq!(f.entries().await.len(), 1);
}

#[tokio::test]
async fn a_hostile_search_path_cannot_hijack_the_capture_function() {
    // Each way capture serializes rows: to_jsonb directly (kept safe by the event trigger),
    // gated by a probe of pg_cast (no event trigger), sandboxed (a column of a user type).
    for serialization in ["plain", "gated", "sandboxed"] {
        hostile_search_path(serialization).await;
    }
}

async fn hostile_search_path(serialization: &str) {
    let f = common::migrated().await;
    let app = app_role(&f).await;
    let setup = match serialization {
        "gated" => "drop event trigger audit_capture_ddl; select audit.enable_tracking('orders');",
        "sandboxed" => "create type mood as enum ('ok'); alter table orders add column m mood;",
        _ => "",
    };
    f.sql().await.batch_execute(setup).await.unwrap();
    let used = f
        .count(&format!(
            "select count(*) from audit.tracked_tables where table_name = 'orders' and serialization = '{serialization}'"
        ))
        .await;
    assert_eq!(used, 1, "capture of orders serializes {serialization}");
    // Objects with the names the capture code uses, in a schema searched before pg_catalog.
    // Had any of them been called, it would have written to evil.calls as the audit owner.
    // Usable by every role, audit_writer included: a name capture resolves through the search
    // path would find them.
    app.batch_execute(
        r#"create schema evil;
           grant usage on schema evil to public;
           create table evil.calls (what text);
           grant insert on evil.calls to public;
           create function evil.current_setting(text, boolean) returns text language sql
             as $$ insert into evil.calls values ('current_setting') returning '{"actor_id": "forged"}' $$;
           create function evil.to_jsonb(anyelement) returns jsonb language sql
             as $$ insert into evil.calls values ('to_jsonb') returning '{}'::jsonb $$;
           create function evil.jsonb_populate_record(anyelement, jsonb) returns anyelement language sql
             as $$ insert into evil.calls values ('jsonb_populate_record'); select $1 $$;
           create function evil.array_remove(anyarray, anyelement) returns anyarray language sql
             as $$ insert into evil.calls values ('array_remove'); select $1 $$;
           create function evil.arrow(jsonb, text) returns jsonb language sql
             as $$ insert into evil.calls values ('->') returning '"forged"'::jsonb $$;
           create operator evil.-> (leftarg = jsonb, rightarg = text, function = evil.arrow);
           create function evil.eq(jsonb, jsonb) returns boolean language sql
             as $$ insert into evil.calls values ('=') returning true $$;
           create operator evil.= (leftarg = jsonb, rightarg = jsonb, function = evil.eq);
           create function evil.ne(jsonb, jsonb) returns boolean language sql
             as $$ insert into evil.calls values ('<>') returning true $$;
           create operator evil.<> (leftarg = jsonb, rightarg = jsonb, function = evil.ne);
           create function evil.textne(text, text) returns boolean language sql
             as $$ insert into evil.calls values ('text <>') returning true $$;
           create operator evil.<> (leftarg = text, rightarg = text, function = evil.textne);
           set search_path = evil, public, pg_catalog;"#,
    )
    .await
    .unwrap();
    app.batch_execute(
        "begin; select audit.set_checked_context('{\"actor_id\": \"7\"}');
         insert into public.orders values (1, 10); update public.orders set total = 11;
         delete from public.orders; commit;",
    )
    .await
    .unwrap();
    assert_eq!(
        f.count("select count(*) from evil.calls").await,
        0,
        "a shadowing object was called by the capture function ({serialization})"
    );
    let e = f.row_changes().await;
    assert_eq!(e.len(), 3);
    assert!(e.iter().all(|x| x.actor_id.as_deref() == Some("7")));
    assert_eq!(e[1].changed_fields, Some(vec!["total".to_owned()]));
}

/// An application role that owns its tables and types (as most do), and a table `payroll` it
/// cannot read; both tracked by the privileged role that migrated.
async fn owning_app(f: &common::Fixture) -> (tokio_postgres::Client, String) {
    let role = f.db.create_role("owner").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "grant create on schema public to {role};
             create table payroll (id int primary key, salary int);
             insert into payroll values (1, 100);"
        ))
        .await
        .unwrap();
    let app = f.connect_as(&role).await;
    app.batch_execute(
        "create table orders (id int primary key, total int);
         create table attempts (what text, outcome text);
         grant insert on attempts to public;",
    )
    .await
    .unwrap();
    for table in ["orders", "payroll"] {
        f.audit
            .enable_tracking(&table.into(), &TrackingOptions::default())
            .await
            .unwrap();
    }
    (app, role)
}

/// A cast to json on the application's own type whose function tries, from inside capture,
/// to create an object in the audit schema, to append a forged entry and to read a table the
/// application cannot read; it records who it ran as and what each attempt did.
const HOSTILE_CAST: &str = r#"
    create type mood as enum ('ok');
    create function mood_json(m mood) returns json language plpgsql as $$
    begin
      insert into attempts values ('ran as', current_user::text);
      begin
        create table audit.pwned (x int);
        insert into attempts values ('create in audit', 'succeeded');
      exception when others then insert into attempts values ('create in audit', sqlstate);
      end;
      begin
        insert into audit.audit_logs (action, target_type, target_id) values ('DELETE', 'public.payroll', '1');
        insert into attempts values ('forge an entry', 'succeeded');
      exception when others then insert into attempts values ('forge an entry', sqlstate);
      end;
      begin
        perform from payroll;
        insert into attempts values ('read payroll', 'succeeded');
      exception when others then insert into attempts values ('read payroll', sqlstate);
      end;
      return to_json(m::text);
    end $$;
    create cast (mood as json) with function mood_json(mood);"#;

async fn attempts(f: &common::Fixture) -> Vec<(String, String)> {
    f.sql()
        .await
        .query("select what, outcome from attempts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn an_application_cast_runs_inside_capture_with_no_rights() {
    // With the event trigger (capture regenerated when the column is added) and without it
    // (capture probes for such casts on every statement).
    for event_trigger in [true, false] {
        let f = common::migrated().await;
        if !event_trigger {
            f.sql()
                .await
                .batch_execute("drop event trigger audit_capture_ddl")
                .await
                .unwrap();
        }
        let (app, _) = owning_app(&f).await;
        app.batch_execute(HOSTILE_CAST).await.unwrap();
        app.batch_execute(
            "alter table orders add column m mood;
             begin; select audit.set_context('{\"actor_id\": \"7\"}');
             insert into orders values (1, 10, 'ok'); update orders set total = 11; commit;",
        )
        .await
        .unwrap();

        let tried = attempts(&f).await;
        assert!(!tried.is_empty(), "the cast ran");
        for (what, outcome) in &tried {
            match what.as_str() {
                "ran as" => assert_eq!(outcome, "audit_sandbox"),
                _ => assert_eq!(outcome, "42501", "{what} from inside capture: {tried:?}"),
            }
        }
        assert_eq!(
            f.count("select count(*) from pg_class where relname = 'pwned'")
                .await,
            0
        );
        let e = f.row_changes().await;
        let recorded: Vec<_> = e
            .iter()
            .map(|x| (x.action.as_str(), x.target_type.as_deref().unwrap()))
            .collect();
        assert_eq!(
            recorded,
            [("INSERT", "public.orders"), ("UPDATE", "public.orders")],
            "exactly the two changes, and no forged entry (event trigger: {event_trigger})"
        );
        assert_eq!(
            e[0].new_values,
            Some(serde_json::json!({"id": 1, "total": 10, "m": "ok"}))
        );
        assert!(e.iter().all(|x| x.actor_id.as_deref() == Some("7")));
    }
}

#[tokio::test]
async fn capture_runs_as_audit_writer_and_nobody_else_may_call_it() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    let tables = f.audit.tracked_tables().await.unwrap();
    assert!(
        tables.iter().all(|t| t.capture_role == "audit_writer"),
        "{tables:?}"
    );
    let executable_by_public = f
        .count(
            "select count(*) from pg_proc
              cross join aclexplode(coalesce(proacl, acldefault('f', proowner))) as a
              where pronamespace = 'audit'::regnamespace and proname like 'capture %'
                and a.grantee = 0 and a.privilege_type = 'EXECUTE'",
        )
        .await;
    assert_eq!(executable_by_public, 0);

    // The application may not attach another table's capture function to a table of its own,
    // to write entries in payroll's name.
    app.batch_execute("create table mine (id int primary key, salary int)")
        .await
        .unwrap();
    let err = app
        .batch_execute(
            "create trigger forge after insert on mine referencing new table as new_rows
             for each statement execute function audit.\"capture public.payroll\"()",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err:?}");

    // Even one who may (a superuser) gets a capture function that records only its own table.
    let admin = f.sql().await;
    admin
        .batch_execute(
            "create trigger forge after insert on mine referencing new table as new_rows
             for each statement execute function audit.\"capture public.payroll\"()",
        )
        .await
        .unwrap();
    let err = app
        .batch_execute("insert into mine values (2, 1)")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "AL013", "{err:?}");
    assert_eq!(f.entries().await.len(), 0);
}

#[tokio::test]
async fn switching_capture_off_is_reported_by_status_and_verify_and_enable_repairs_it() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    for (switch_off, problem) in [
        (
            "alter table orders disable trigger user",
            "audit_capture_insert on orders is disabled",
        ),
        (
            "alter table orders enable replica trigger audit_capture_update",
            "audit_capture_update on orders is enabled only for replication",
        ),
        (
            "drop trigger audit_capture_delete on orders",
            "audit_capture_delete on orders is missing",
        ),
    ] {
        app.batch_execute(switch_off).await.unwrap();
        let orders = f
            .audit
            .tracked_tables()
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.name == "orders")
            .expect("orders is still listed");
        assert!(
            orders.capture_problems.iter().any(|p| p == problem),
            "{switch_off}: {:?}",
            orders.capture_problems
        );
        assert!(orders.needs_refresh.iter().any(|p| p == problem));
        let report = f
            .audit
            .verify(&audit_logs_core::VerifyOptions::default())
            .await
            .unwrap();
        assert!(!report.ok, "{switch_off}");
        assert_eq!(
            report.first_problem.unwrap().kind,
            audit_logs_core::ProblemKind::CaptureDisabled
        );
        assert!(report
            .capture_problems
            .iter()
            .any(|p| p == &format!("public.orders: {problem}")));

        // Enabling again repairs whatever is left of the set.
        f.audit
            .enable_tracking(&"orders".into(), &TrackingOptions::default())
            .await
            .unwrap();
        let orders = f.audit.tracked_tables().await.unwrap();
        assert!(orders.iter().all(|t| t.capture_problems.is_empty()));
        assert!(
            f.audit
                .verify(&audit_logs_core::VerifyOptions::default())
                .await
                .unwrap()
                .ok
        );
    }
}

#[tokio::test]
async fn a_trigger_of_the_application_that_shares_a_capture_name_is_not_read_as_one() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    app.batch_execute(
        "create table notes (id int primary key);
         create function notes_trigger() returns trigger language plpgsql as $$ begin return null; end $$;
         create trigger audit_capture_insert after insert on notes
           for each statement execute function notes_trigger('not json');",
    )
    .await
    .unwrap();
    let tables = f.audit.tracked_tables().await.unwrap();
    let mut names: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["orders", "payroll"]);
    let err = f
        .audit
        .enable_tracking(&"notes".into(), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_TRIGGER_NAME_TAKEN", "{err:?}");
}

#[tokio::test]
async fn an_application_holding_the_seal_and_migrate_locks_stalls_nothing() {
    let f = common::migrated().await;
    let (app, role) = owning_app(&f).await;
    // Any role can take any advisory lock: the application takes the ones seal and migrate use.
    app.batch_execute(
        "select pg_advisory_lock(6878582169062960236); select pg_advisory_lock(7022629598041763687)",
    )
    .await
    .unwrap();

    let err = f
        .sql()
        .await
        .batch_execute("set audit.lock_wait = '300ms'; select audit.seal()")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "AL011", "{err:?}");
    assert!(
        db.message().contains(&format!("(role {role}")),
        "names the holder: {}",
        db.message()
    );

    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let started = std::time::Instant::now();
    let err = audit_logs_core::migrate::run(
        &options,
        &audit_logs_core::migrate::MigrateOptions {
            lock_wait: std::time::Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_LOCK_TIMEOUT", "{err:?}");
    assert!(err.to_string().contains(&format!("(role {role}")), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Nothing is left waiting in the server for either lock.
    assert_eq!(
        f.count("select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()")
            .await,
        0
    );

    // Released, both work again.
    app.batch_execute("select pg_advisory_unlock_all()")
        .await
        .unwrap();
    f.audit.seal().await.unwrap();
    f.audit.migrate(false).await.unwrap();
}

#[tokio::test]
async fn whatever_set_context_accepts_can_be_written() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    // An actor_id under the context's 8 KiB but over what an index entry holds.
    let long = "a".repeat(2880);
    let err = app
        .batch_execute(&format!(
            "begin; select audit.set_context('{{\"actor_id\": \"{long}\"}}'); insert into orders values (1, 1); commit"
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "AL004", "{err:?}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("the limit is 1024"));
    app.batch_execute("rollback").await.unwrap();
    // At the limit, the write and its entry go through.
    let longest = "a".repeat(1024);
    app.batch_execute(&format!(
        "begin; select audit.set_context('{{\"actor_id\": \"{longest}\", \"user_agent\": \"{longest}\", \"request_id\": \"{longest}\"}}');
         insert into orders values (1, 1); commit"
    ))
    .await
    .unwrap();
    assert_eq!(
        f.entries().await[0].actor_id.as_deref(),
        Some(longest.as_str())
    );
}

#[tokio::test]
async fn a_context_set_around_set_context_attributes_nothing_and_says_so() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    app.batch_execute(
        // Session-level: would attribute every later transaction of this session.
        "set audit.context = '{\"actor_id\": \"stale\"}';
         insert into orders values (1, 1);
         begin; insert into orders values (2, 2); commit;
         reset audit.context;
         -- By hand, unchecked: a number, mangled metadata, an oversized id.
         begin;
         select set_config('audit.context', '{\"actor_id\": 42, \"metadata\": \"x\"}', true);
         insert into orders values (3, 3);
         select audit.log_event('order.viewed', 'public.orders', '3');
         commit;
         -- Through set_context: attributed.
         begin; select audit.set_context('{\"actor_id\": \"7\", \"metadata\": {\"k\": \"v\"}}');
         insert into orders values (4, 4); commit;",
    )
    .await
    .unwrap();
    let e = f.entries().await;
    let ignored = serde_json::json!({"audit_context_ignored": "not set for this transaction by audit.set_context"});
    for entry in &e[..3] {
        assert_eq!(entry.actor_id, None, "{entry:?}");
        assert_eq!(entry.metadata.as_ref(), Some(&ignored), "{entry:?}");
    }
    assert_eq!(e[3].action, "order.viewed");
    assert_eq!(e[3].actor_id, None, "events take no stale context either");
    assert_eq!(e[4].actor_id.as_deref(), Some("7"));
    assert_eq!(
        e[4].metadata,
        Some(serde_json::json!({"k": "v"})),
        "no marker in metadata"
    );
}

#[tokio::test]
async fn a_truncate_records_every_row_and_runs_no_policy_of_the_application() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    // Row-level security on its own table, with a policy that hides every row and would record
    // who evaluated it: read as the capture role, it would hide rows or run application code.
    app.batch_execute(
        "create function sees_nothing() returns boolean language plpgsql as $$
         begin insert into attempts values ('policy ran as', current_user::text); return false; end $$;
         alter table orders enable row level security;
         alter table orders force row level security;
         create policy hide on orders using (sees_nothing()) with check (true);
         insert into orders values (1, 10), (2, 20);
         begin; select audit.set_context('{\"actor_id\": \"7\"}'); truncate orders; commit;",
    )
    .await
    .unwrap();
    let truncated: Vec<_> = f
        .entries()
        .await
        .into_iter()
        .filter(|e| e.action == "TRUNCATE")
        .map(|e| (e.target_id.unwrap(), e.actor_id.unwrap()))
        .collect();
    assert_eq!(
        truncated,
        [
            ("1".to_owned(), "7".to_owned()),
            ("2".to_owned(), "7".to_owned())
        ]
    );
    assert!(
        attempts(&f)
            .await
            .iter()
            .all(|(_, who)| who != "audit_writer"),
        "a policy of the application ran as the capture role: {:?}",
        attempts(&f).await
    );
}

#[tokio::test]
async fn a_migrator_that_is_not_a_superuser_still_gets_capture_and_is_told_what_is_missing() {
    // A managed database's owner: may create schemas and tables, not roles nor event triggers,
    // and is no member of audit_writer (which another database's migration may have made).
    let elsewhere = common::migrated().await; // audit_writer exists, made by another migration
    let f = common::empty().await;
    let migrator = f.db.create_role("migrator").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "grant create on database {db} to {migrator}; grant create on schema public to {migrator};",
            db = f.db.name
        ))
        .await
        .unwrap();
    let audit = audit_logs_core::AuditLogs::connect(&f.db.url_for(&migrator))
        .await
        .unwrap();
    audit.migrate(false).await.unwrap();
    let owner = f.connect_as(&migrator).await;
    owner
        .batch_execute("create table notes (id int primary key, body text)")
        .await
        .unwrap();
    let notes = audit
        .enable_tracking(&"notes".into(), &TrackingOptions::default())
        .await
        .unwrap();
    assert_eq!(
        notes.capture_role, migrator,
        "capture runs as the one who could install it"
    );
    assert!(
        notes
            .needs_refresh
            .contains(&format!("capture runs as {migrator}, not audit_writer")),
        "and status says so: {:?}",
        notes.needs_refresh
    );
    drop(elsewhere);
    let serialization = f
        .count("select count(*) from audit.tracked_tables where serialization = 'gated'")
        .await;
    assert_eq!(
        serialization, 1,
        "no event trigger: each statement probes for json casts"
    );
    owner
        .batch_execute(
            "begin; select audit.set_context('{\"actor_id\": \"7\"}'); insert into notes values (1, 'a'); commit;",
        )
        .await
        .unwrap();
    let e = f.entries().await;
    assert_eq!(
        (e[0].action.as_str(), e[0].actor_id.as_deref()),
        ("INSERT", Some("7"))
    );
}

/// The ddl.* entries, as (action, metadata).
async fn schema_changes(f: &common::Fixture) -> Vec<(String, serde_json::Value)> {
    f.schema_changes()
        .await
        .into_iter()
        .map(|e| (e.action, e.metadata.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn schema_changes_of_a_tracked_table_are_entries_that_the_application_cannot_forge() {
    let f = common::migrated().await;
    let (app, role) = owning_app(&f).await;
    app.batch_execute(
        "insert into orders values (1, 10);
         begin;
         select audit.set_context('{\"actor_id\": \"9\"}');
         alter table orders disable trigger audit_capture_update;
         commit;
         drop trigger audit_capture_delete on orders;
         alter table orders alter column total type bigint using total * 100;
         create table special_orders (note text) inherits (orders);",
    )
    .await
    .unwrap();
    let changes = schema_changes(&f).await;
    let actions: Vec<_> = changes.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "ddl.alter_table",
            "ddl.drop_trigger",
            "ddl.rewrite",
            "ddl.alter_table",
            "ddl.child_table"
        ]
    );
    let entries = f.schema_changes().await;
    assert!(entries
        .iter()
        .all(|e| e.target_type.as_deref() == Some("public.orders")));
    assert_eq!(
        entries[0].actor_id.as_deref(),
        Some("9"),
        "attributed like any change"
    );
    assert!(changes.iter().all(|(_, m)| m["db_role"] == role.as_str()));
    assert_eq!(
        changes[0].1["capture_problems"],
        serde_json::json!(["audit_capture_update on public.orders is disabled"])
    );
    assert_eq!(changes[1].1["trigger"], "audit_capture_delete");
    assert_eq!(
        changes[2].1["reasons"],
        serde_json::json!(["a column rewritten (type changed)"])
    );
    assert_eq!(
        changes[3].1["column_types"],
        serde_json::json!({"before": ["integer", "integer"], "after": ["integer", "bigint"]})
    );
    assert_eq!(changes[4].1["child"], "public.special_orders");
    let orders = f.audit.tracked_tables().await.unwrap();
    let orders = orders.iter().find(|t| t.name == "orders").unwrap();
    assert!(
        orders
            .capture_problems
            .iter()
            .any(|p| p.contains("special_orders inherits from it and is not tracked")),
        "{:?}",
        orders.capture_problems
    );

    // Only the package writes ddl.* entries.
    let err = app
        .batch_execute(
            "select audit.log_event('ddl.rename', 'public.orders', null, '{\"renamed_from\": \"public.payroll\"}')",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "AL007", "{err:?}");
    for forge in [
        "select audit.record_schema_change('ddl.rename', 'public.orders', '{\"renamed_from\": \"public.payroll\"}')",
        "insert into audit.table_renames values (1, 'public.payroll', 'public.orders')",
    ] {
        let err = app.batch_execute(forge).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{forge}: {err:?}");
    }

    app.batch_execute("drop table orders cascade")
        .await
        .unwrap();
    let last = f.schema_changes().await.pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.target_type.as_deref()),
        ("ddl.drop_table", Some("public.orders"))
    );
}

#[tokio::test]
async fn history_follows_a_table_across_renames_and_its_old_name_starts_afresh() {
    use audit_logs_core::HistoryQuery;
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    // Each in its own transaction, at its own time.
    for statement in [
        "insert into orders values (1, 10)",
        "alter table orders rename to purchases",
        "update purchases set total = 20 where id = 1",
        "alter table purchases rename to sales",
        "update sales set total = 30 where id = 1",
        "create table purchases (id int primary key, total int)",
    ] {
        app.batch_execute(statement).await.unwrap();
    }
    f.audit
        .enable_tracking(&"purchases".into(), &TrackingOptions::default())
        .await
        .unwrap();
    app.batch_execute("insert into purchases values (1, 99)")
        .await
        .unwrap();

    let history = f
        .audit
        .history(&HistoryQuery::of_table("sales", 1))
        .await
        .unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|e| (e.action.as_str(), e.target_type.as_deref().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("UPDATE", "public.sales"),
            ("UPDATE", "public.purchases"),
            ("INSERT", "public.orders")
        ]
    );
    let inserted_at = history[2].created_at;
    let state = f
        .audit
        .state_at(&"sales".into(), &1.into(), inserted_at)
        .await
        .unwrap();
    assert_eq!(state, Some(serde_json::json!({"id": 1, "total": 10})));

    let fresh = f
        .audit
        .history(&HistoryQuery::of_table("purchases", 1))
        .await
        .unwrap();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0].new_values.as_ref().unwrap()["total"], 99);

    let renames: Vec<_> = f
        .schema_changes()
        .await
        .into_iter()
        .filter(|e| e.action == "ddl.rename")
        .map(|e| {
            (
                e.target_type.unwrap(),
                e.metadata.unwrap()["renamed_from"].clone(),
            )
        })
        .collect();
    assert_eq!(
        renames,
        [
            (
                "public.purchases".to_owned(),
                serde_json::json!("public.orders")
            ),
            (
                "public.sales".to_owned(),
                serde_json::json!("public.purchases")
            )
        ]
    );
    assert!(f
        .audit
        .tracked_tables()
        .await
        .unwrap()
        .iter()
        .all(|t| t.needs_refresh.is_empty()));
}

#[tokio::test]
async fn without_event_triggers_status_names_every_drift_and_enable_repairs_it() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    f.sql()
        .await
        .batch_execute(
            "drop event trigger audit_capture_ddl; drop event trigger audit_capture_drop;
             drop event trigger audit_capture_rewrite;",
        )
        .await
        .unwrap();
    app.batch_execute(
        "insert into orders values (1, 10);
         alter table orders alter column total type bigint using total * 100;
         alter table orders rename to purchases;
         create table special_orders (note text) inherits (purchases);
         create table events (id int, region text, primary key (id, region)) partition by list (region);
         create table events_eu partition of events for values in ('eu');",
    )
    .await
    .unwrap();
    f.audit
        .enable_tracking(&"events".into(), &TrackingOptions::default())
        .await
        .unwrap();
    app.batch_execute(
        "alter table events detach partition events_eu;
         create table events_us partition of events for values in ('us');",
    )
    .await
    .unwrap();
    f.sql()
        .await
        .batch_execute("revoke select on payroll from audit_writer")
        .await
        .unwrap();
    let tables = f.audit.tracked_tables().await.unwrap();
    let drifts = |name: &str| {
        tables
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .needs_refresh
            .clone()
    };
    let purchases = drifts("purchases");
    for drift in [
        "the table was renamed",
        "a column changed type",
        "special_orders inherits from it and is not tracked: its rows are not recorded",
    ] {
        assert!(
            purchases.iter().any(|d| d == drift),
            "{drift}: {purchases:?}"
        );
    }
    assert!(
        drifts("payroll")
            .iter()
            .any(|d| d == "audit_writer cannot read payroll: a TRUNCATE of it would fail"),
        "{:?}",
        drifts("payroll")
    );
    assert_eq!(
        drifts("events_eu"),
        ["it was detached from public.events, and its writes are still recorded as public.events's"]
    );
    assert_eq!(drifts("events"), ["some partitions are not tracked"]);

    for table in ["purchases", "payroll", "events"] {
        f.audit
            .enable_tracking(&table.into(), &TrackingOptions::default())
            .await
            .unwrap();
    }
    let tables = f.audit.tracked_tables().await.unwrap();
    let purchases = tables.iter().find(|t| t.name == "purchases").unwrap();
    assert_eq!(purchases.target_type, "public.purchases");
    assert_eq!(
        purchases.needs_refresh,
        ["special_orders inherits from it and is not tracked: its rows are not recorded"]
    );
    assert!(tables
        .iter()
        .find(|t| t.name == "payroll")
        .unwrap()
        .needs_refresh
        .is_empty());
    assert!(
        !tables.iter().any(|t| t.name == "events_eu"),
        "enabling the parent again releases its detached partition"
    );
    assert!(tables
        .iter()
        .find(|t| t.name == "events")
        .unwrap()
        .needs_refresh
        .is_empty());
    // Enabling after the rename records it, so history still follows.
    assert_eq!(
        f.history_trail("purchases", 1).await,
        [("INSERT".to_owned(), "public.orders".to_owned())]
    );
}

#[tokio::test]
async fn a_context_set_by_hand_that_is_not_json_fails_no_write() {
    let f = common::migrated().await;
    let (app, _) = owning_app(&f).await;
    app.batch_execute(
        "begin;
         select set_config('audit.context', 'not json {', true);
         insert into orders values (1, 1);
         select audit.log_event('order.viewed', 'public.orders', '1');
         commit;",
    )
    .await
    .unwrap();
    let e = f.entries().await;
    assert_eq!(e.len(), 2);
    assert_eq!(
        e[0].metadata,
        Some(
            serde_json::json!({"audit_context_ignored": "not set for this transaction by audit.set_context"})
        )
    );
    assert_eq!(e[1].actor_id, None);
}

/// A reader's session whose search path puts the application's objects before pg_catalog: the
/// functions that read a record's history and states (V12) pin theirs, so none of the
/// application's look-alikes of the names and operators they use is ever called, and they read
/// the right rows.
#[tokio::test]
async fn a_hostile_search_path_is_never_followed_by_history_and_states() {
    let f = common::migrated().await;
    let app = app_role(&f).await;
    let role: String = app
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    f.sql()
        .await
        .batch_execute(&format!("grant audit_reader to {role}"))
        .await
        .unwrap();
    app.batch_execute(
        "begin; select audit.set_checked_context('{\"actor_id\": \"7\"}');
         insert into orders values (1, 10); commit;
         begin; select audit.set_checked_context('{\"actor_id\": \"7\"}');
         update orders set total = 11 where id = 1; commit;",
    )
    .await
    .unwrap();
    app.batch_execute(
        r#"create schema evil;
           create table evil.calls (what text);
           create function evil.jsonb_typeof(jsonb) returns text language sql
             as $$ insert into evil.calls values ('jsonb_typeof') returning 'string' $$;
           create function evil.unnest(anyarray) returns setof anyelement language sql
             as $$ insert into evil.calls values ('unnest'); select x from pg_catalog.unnest($1) x $$;
           create function evil.text_eq(text, text) returns boolean language sql
             as $$ insert into evil.calls values ('text =') returning true $$;
           create operator evil.= (leftarg = text, rightarg = text, function = evil.text_eq);
           create function evil.int8_lt(bigint, bigint) returns boolean language sql
             as $$ insert into evil.calls values ('bigint <') returning true $$;
           create operator evil.< (leftarg = bigint, rightarg = bigint, function = evil.int8_lt);
           create function evil.int8_gt(bigint, bigint) returns boolean language sql
             as $$ insert into evil.calls values ('bigint >') returning true $$;
           create operator evil.> (leftarg = bigint, rightarg = bigint, function = evil.int8_gt);
           create function evil.time_le(timestamptz, timestamptz) returns boolean language sql
             as $$ insert into evil.calls values ('timestamptz <=') returning true $$;
           create operator evil.<= (leftarg = timestamptz, rightarg = timestamptz, function = evil.time_le);
           create function evil.path_text(jsonb, text[]) returns text language sql
             as $$ insert into evil.calls values ('#>>') returning '1' $$;
           create operator evil.#>> (leftarg = jsonb, rightarg = text[], function = evil.path_text);
           set search_path = evil, public, pg_catalog;"#,
    )
    .await
    .unwrap();
    let history = app
        .query(
            "select action from audit.record_history('public.orders', '1', 9223372036854775807, 50, '{}')",
            &[],
        )
        .await
        .unwrap();
    let actions: Vec<String> = history.iter().map(|r| r.get(0)).collect();
    assert_eq!(actions, ["UPDATE", "INSERT"]);
    let state: serde_json::Value = app
        .query_one(
            "select state from audit.state_at('public.orders', '1', now())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, serde_json::json!({"id": 1, "total": 11}));
    let states = app
        .query(
            "select state from audit.states_at('public.orders', array['1', '2']::jsonb[],
                                                 array[now(), now()])",
            &[],
        )
        .await
        .unwrap();
    let states: Vec<Option<serde_json::Value>> = states.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        states,
        [Some(serde_json::json!({"id": 1, "total": 11})), None]
    );
    assert_eq!(
        f.count("select count(*) from evil.calls").await,
        0,
        "a look-alike of the application was called"
    );
}
