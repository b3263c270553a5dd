//! Shared by the integration tests: a fresh, migrated database per test.
#![allow(dead_code)]

use audit_logs_core::testing::TestDatabase;
use audit_logs_core::{AuditContext, AuditEntry, AuditLogs};
use tokio_postgres::Client;

pub struct Fixture {
    pub db: TestDatabase,
    pub audit: AuditLogs,
}

/// A fresh database, not migrated.
pub async fn empty() -> Fixture {
    let db = TestDatabase::create().await.expect("test database");
    let audit = AuditLogs::connect(&db.url).await.expect("connect");
    Fixture { db, audit }
}

/// A fresh database with the audit schema installed.
pub async fn migrated() -> Fixture {
    let fixture = empty().await;
    fixture.audit.migrate(false).await.expect("migrate");
    fixture
}

impl Fixture {
    /// A plain connection (not pooled) as the superuser that created the database.
    pub async fn sql(&self) -> Client {
        audit_logs_core::ConnectOptions::parse(&self.db.url)
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// A plain connection as another role of the test server (see `TestDatabase::create_role`).
    pub async fn connect_as(&self, role: &str) -> Client {
        audit_logs_core::ConnectOptions::parse(&self.db.url_for(role))
            .unwrap()
            .connect()
            .await
            .expect("connect as role")
    }

    /// A new login role of the test server granted `grant` (audit_reader, audit_maintainer),
    /// and the package connected as it. Returns the role's name too, for further grants.
    pub async fn audit_as(&self, role: &str, grant: &str) -> (String, AuditLogs) {
        let role = self.db.create_role(role).await.expect("role");
        self.sql()
            .await
            .batch_execute(&format!("grant {grant} to {role}"))
            .await
            .expect("grant");
        let audit = AuditLogs::connect(&self.db.url_for(&role))
            .await
            .expect("connect as role");
        (role, audit)
    }

    /// Runs statements in one transaction attributed to `actor`.
    pub async fn as_actor(&self, actor: &str, statements: &str) {
        let mut client = self.sql().await;
        let tx = client.transaction().await.unwrap();
        let who = AuditContext {
            actor_id: Some(actor.into()),
            actor_type: Some("user".into()),
            ..Default::default()
        };
        audit_logs_core::set_context(&tx, &who).await.unwrap();
        tx.batch_execute(statements).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Every audit row, oldest first.
    pub async fn entries(&self) -> Vec<AuditEntry> {
        let client = self.sql().await;
        client
            .query(
                "select id, created_at, txid, action, target_type, target_id, old_target_id, old_values, \
                 new_values, changed_fields, actor_id, actor_type, actor_email, host(ip_address), user_agent, \
                 request_id, metadata from audit.audit_logs order by id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(entry_from_row)
            .collect()
    }

    /// Every row change (not the ddl.* entries of schema changes), oldest first.
    pub async fn row_changes(&self) -> Vec<AuditEntry> {
        let mut entries = self.entries().await;
        entries.retain(|e| !e.action.starts_with("ddl."));
        entries
    }

    /// The ddl.* entries (schema changes of tracked tables), oldest first.
    pub async fn schema_changes(&self) -> Vec<AuditEntry> {
        let mut entries = self.entries().await;
        entries.retain(|e| e.action.starts_with("ddl."));
        entries
    }

    /// A record's history, newest first, as (action, target_type).
    pub async fn history_trail(&self, table: &str, id: i64) -> Vec<(String, String)> {
        self.audit
            .history(&audit_logs_core::HistoryQuery::of_table(table, id))
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.target_type.unwrap()))
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.sql().await.query_one(sql, &[]).await.unwrap().get(0)
    }
}

fn entry_from_row(row: &tokio_postgres::Row) -> AuditEntry {
    AuditEntry {
        id: row.get(0),
        created_at: row.get(1),
        txid: row.get(2),
        action: row.get(3),
        target_type: row.get(4),
        target_id: row.get(5),
        old_target_id: row.get(6),
        old_values: row.get(7),
        new_values: row.get(8),
        changed_fields: row.get(9),
        actor_id: row.get(10),
        actor_type: row.get(11),
        actor_email: row.get(12),
        ip_address: row.get(13),
        user_agent: row.get(14),
        request_id: row.get(15),
        metadata: row.get(16),
    }
}
