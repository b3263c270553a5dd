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
    ConnectOptions::parse(&f.db.url_for(&role))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_application_role_without_audit_privileges_is_recorded() {
    let f = common::migrated().await;
    let app = app_role(&f).await;
    app.batch_execute(
        "begin; select set_config('audit.context', '{\"actor_id\": \"7\"}', true);
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
    let f = common::migrated().await;
    let app = app_role(&f).await;
    // Objects with the names the capture code uses, in a schema searched before pg_catalog.
    // Had any of them been called, it would have written to evil.calls as the audit owner.
    app.batch_execute(
        r#"create schema evil;
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
        "begin; select pg_catalog.set_config('audit.context', '{\"actor_id\": \"7\"}', true);
         insert into public.orders values (1, 10); update public.orders set total = 11;
         delete from public.orders; commit;",
    )
    .await
    .unwrap();
    let calls: i64 = f
        .sql()
        .await
        .query_one("select count(*) from evil.calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        calls, 0,
        "a shadowing object was called by the capture function"
    );
    let e = f.entries().await;
    assert_eq!(e.len(), 3);
    assert!(e.iter().all(|x| x.actor_id.as_deref() == Some("7")));
    assert_eq!(e[1].changed_fields, Some(vec!["total".to_owned()]));
}
