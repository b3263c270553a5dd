//! The setups compared, installed on one `accounts` table (pgbench_accounts' shape, with the
//! key named `id` so the blog post's trigger runs verbatim).

use tokio_postgres::Client;

use crate::BenchResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    /// No trigger at all: the baseline every ratio is taken against.
    Untracked,
    /// The per-row trigger copied from a popular blog post (its audit_trigger_function), as users
    /// copy it.
    BlogTrigger,
    /// This package.
    AuditLogs,
    /// A statement trigger that inserts an audit row of the same size per changed row, computing
    /// nothing: the cost of the audit INSERT alone, the floor for any in-database capture.
    Floor,
}

pub const ALL: [Setup; 4] = [
    Setup::Untracked,
    Setup::BlogTrigger,
    Setup::AuditLogs,
    Setup::Floor,
];

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::Untracked => "untracked",
            Setup::BlogTrigger => "per-row trigger",
            Setup::AuditLogs => "audit-logs",
            Setup::Floor => "floor (INSERT only)",
        }
    }

    /// The relations holding this setup's audit rows, for sizes.
    pub fn audit_relations_sql(self) -> Option<&'static str> {
        match self {
            Setup::Untracked => None,
            Setup::BlogTrigger => Some("select pg_total_relation_size('public.audit_logs')"),
            Setup::AuditLogs | Setup::Floor => Some(
                "select sum(pg_total_relation_size(relid))::bigint from pg_partition_tree('audit.audit_logs') where isleaf",
            ),
        }
    }
}

/// The blog post's table and trigger function, verbatim (its indexes included).
const BLOG_TRIGGER: &str = include_str!("../sql/per-row-trigger.sql");

/// The floor: one audit row per changed row, of the shape and size audit-logs writes, with
/// everything precomputed. What remains is the INSERT into the partitioned, indexed table.
const FLOOR: &str = r#"
create function bench_floor() returns trigger language plpgsql as $$
begin
  insert into audit.audit_logs (action, target_type, target_id, old_values, new_values, changed_fields,
                                actor_id, actor_type, ip_address, request_id)
  select 'UPDATE', 'public.accounts', '123456', '{"abalance": -1234}',
         '{"id": 123456, "bid": 2, "filler": "                                                                                    ", "abalance": 4321}',
         '{abalance}', 'user-1234', 'user', '10.0.0.1', 'req-123456'
  from new_rows;
  return null;
end $$;
"#;

/// Creates the table, the peers' objects and the accounts.
pub async fn prepare(client: &Client, accounts: i64) -> BenchResult<()> {
    client
        .batch_execute(&format!(
            "create table accounts (id int primary key, bid int, abalance int, filler char(84));
             insert into accounts select g, (g - 1) / 100000 + 1, 0, '' from generate_series(1, {accounts}) g;
             create sequence bench_ids start {start};
             {BLOG_TRIGGER}
             {FLOOR}",
            start = accounts + 1_000_000
        ))
        .await?;
    client.batch_execute("vacuum analyze accounts").await?;
    Ok(())
}

pub async fn install(client: &Client, setup: Setup) -> BenchResult<()> {
    client
        .batch_execute(
            "select audit.disable_tracking('accounts');
             drop trigger if exists blog_trigger on accounts;
             drop trigger if exists floor_insert on accounts;
             drop trigger if exists floor_update on accounts;
             drop trigger if exists floor_delete on accounts;",
        )
        .await?;
    let sql = match setup {
        Setup::Untracked => return Ok(()),
        Setup::AuditLogs => "select audit.enable_tracking('accounts')",
        Setup::BlogTrigger => {
            "create trigger blog_trigger after insert or update or delete on accounts
             for each row execute function audit_trigger_function()"
        }
        Setup::Floor => {
            "create trigger floor_insert after insert on accounts referencing new table as new_rows
               for each statement execute function bench_floor();
             create trigger floor_update after update on accounts referencing new table as new_rows
               for each statement execute function bench_floor();
             create trigger floor_delete after delete on accounts referencing old table as new_rows
               for each statement execute function bench_floor();"
        }
    };
    client.batch_execute(sql).await?;
    Ok(())
}
