//! `audit-logs demo`: the whole story in a minute, on a throwaway PostgreSQL.

use audit_logs_core::{
    AuditContext, AuditLogs, ConnectOptions, Error, HistoryQuery, PermissionError, RevertOptions,
    RevertTarget, TemporaryPostgres, TrackingOptions,
};
use postgres_protocol::escape::escape_identifier;
use serde_json::json;

use crate::print::Printer;

pub async fn run(database_url_given: Option<&str>, keep: bool) -> Result<(), Error> {
    let mut _server = None;
    let mut demo_database = None;
    let options = match database_url_given {
        None => {
            println!(
                "Starting a throwaway PostgreSQL (initdb + postgres in a temporary directory)..."
            );
            let server = TemporaryPostgres::start().await?;
            println!("  listening on 127.0.0.1:{}", server.port());
            let options = ConnectOptions::parse(&server.url("postgres"))?;
            _server = Some(server);
            options
        }
        Some(given) => {
            // Never touch the user's own database: make one for the demo on the same server.
            let admin = ConnectOptions::parse(given)?;
            let name = format!("audit_logs_demo_{}", std::process::id());
            admin
                .connect()
                .await?
                .batch_execute(&format!("create database {}", escape_identifier(&name)))
                .await
                .map_err(|e| {
                    Error::Permission(PermissionError::Denied {
                        reason: format!(
                            "the demo creates its own database on your server and could not: {}",
                            e.as_db_error()
                                .map(|d| d.message().to_owned())
                                .unwrap_or_else(|| e.to_string())
                        ),
                    })
                })?;
            println!(
                "Created database {name} for the demo on {}.",
                admin.target()
            );
            let options = admin.with_database(&name);
            demo_database = Some((admin, name));
            options
        }
    };

    let result = story(options).await;

    if let Some((admin, name)) = demo_database {
        if keep {
            println!("\nKept database {name} (--keep).");
        } else {
            admin
                .connect()
                .await?
                .batch_execute(&format!(
                    "drop database {} with (force)",
                    escape_identifier(&name)
                ))
                .await?;
            println!("\nDropped database {name}.");
        }
    } else {
        println!("\nStopping the throwaway PostgreSQL.");
    }
    result
}

async fn story(options: ConnectOptions) -> Result<(), Error> {
    let audit = AuditLogs::connect_with(options).await?;
    let out = Printer { json: false };

    println!("\n$ audit-logs migrate");
    out.migrate(&audit.migrate(false).await?);

    let mut client = audit.client().await?;
    client
        .batch_execute(
            "create table accounts (
               id serial primary key,
               email text not null,
               name text not null,
               plan text not null default 'free',
               password_hash text
             )",
        )
        .await?;
    println!("\n$ audit-logs enable accounts --exclude password_hash");
    out.enabled(
        &audit
            .enable_tracking(
                &"accounts".into(),
                &TrackingOptions {
                    exclude_columns: Some(vec!["password_hash".into()]),
                    ..Default::default()
                },
            )
            .await?,
    );

    let alice = AuditContext {
        actor_id: Some("user-17".into()),
        actor_type: Some("user".into()),
        actor_email: Some("alice@example.com".into()),
        ip_address: Some("203.0.113.7".parse().expect("an address")),
        user_agent: Some("Mozilla/5.0 (demo)".into()),
        request_id: Some("req-1001".into()),
        ..Default::default()
    };
    let moderator = AuditContext {
        actor_id: Some("mod-7".into()),
        actor_type: Some("moderator".into()),
        reason: Some("upgrade requested in ticket 314".into()),
        metadata: Some(
            json!({ "ticket": 314 })
                .as_object()
                .cloned()
                .expect("an object"),
        ),
        ..Default::default()
    };
    let system = AuditContext {
        actor_id: Some("cleanup-job".into()),
        actor_type: Some("system".into()),
        ..Default::default()
    };

    println!("\nMaking changes, each transaction with its own context:");
    for (who, context, sql, commit) in [
        (
            "alice signs up two accounts",
            &alice,
            "insert into accounts (email, name, password_hash) values
               ('Ann@Example.com', 'Ann', 'hash-1'), ('bob@example.com', 'Bob', 'hash-2')",
            true,
        ),
        (
            "a moderator upgrades account 1",
            &moderator,
            "update accounts set plan = 'pro' where id = 1",
            true,
        ),
        (
            "alice changes her password",
            &alice,
            "update accounts set password_hash = 'hash-3' where id = 1",
            true,
        ),
        (
            "alice renames account 1, then rolls back",
            &alice,
            "update accounts set name = 'Mallory' where id = 1",
            false,
        ),
        (
            "a cleanup job deletes account 2",
            &system,
            "delete from accounts where id = 2",
            true,
        ),
    ] {
        let tx = client.transaction().await?;
        audit_logs_core::set_context(&*tx, context).await?;
        tx.batch_execute(sql).await?;
        if commit {
            tx.commit().await?;
            println!("  - {who}");
        } else {
            tx.rollback().await?;
            println!("  - {who} (rolled back: nothing is recorded)");
        }
    }
    println!("  - a data migration in SQL lowercases the e-mails:");
    println!("      select audit.set_context('{{\"actor_type\": \"migration\", \"migration_name\": \"0042_lowercase_emails\"}}');");
    client
        .batch_execute(
            r#"begin;
               select audit.set_context('{"actor_type": "migration", "migration_name": "0042_lowercase_emails"}');
               update accounts set email = lower(email);
               commit;"#,
        )
        .await?;

    for id in [1, 2] {
        println!("\n$ audit-logs history accounts {id}");
        out.history(
            "accounts",
            &id.to_string(),
            &audit
                .history(&HistoryQuery::of_table("accounts", json!(id)))
                .await?,
        );
    }

    // Undo the cleanup job: its transaction, from the DELETE entry of account 2.
    let deleted = audit
        .history(&HistoryQuery::of_table("accounts", json!(2)))
        .await?
        .into_iter()
        .find(|e| e.action == "DELETE")
        .expect("the cleanup job's delete is recorded");
    let target = RevertTarget::Transaction {
        txid: deleted.txid,
        at: None,
    };
    let admin = AuditContext {
        actor_id: Some("admin-1".into()),
        actor_type: Some("user".into()),
        reason: Some("account 2 was deleted by mistake".into()),
        ..Default::default()
    };
    for dry_run in [true, false] {
        println!(
            "\n$ audit-logs revert --transaction {}{} --by admin-1 --reason 'account 2 was deleted by mistake'",
            deleted.txid,
            if dry_run { " --dry-run" } else { "" }
        );
        let options = RevertOptions {
            dry_run,
            context: Some(admin.clone()),
            ..Default::default()
        };
        crate::revert::print(&audit.revert(&target, &options).await?);
    }
    println!("\n$ audit-logs history accounts 2 --limit 1");
    out.history(
        "accounts",
        "2",
        &audit
            .history(&HistoryQuery {
                limit: Some(1),
                ..HistoryQuery::of_table("accounts", json!(2))
            })
            .await?,
    );

    let total: i64 = client
        .query_one("select count(*) from audit.audit_logs", &[])
        .await?
        .get(0);
    println!(
        "\n{total} changes recorded; password hashes stored: 0; rolled-back changes recorded: 0."
    );
    drop(client);
    audit.close();
    Ok(())
}
