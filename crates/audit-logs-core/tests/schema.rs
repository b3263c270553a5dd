//! `schema/audit.sql`, the `audit` schema as every migration leaves it, is generated and
//! committed: migrations are history (never edited once released, so V1 still shows the
//! `create_partitions` that V4 replaced), this file is the present. This test regenerates it
//! from a freshly migrated database and fails when the committed file differs.
//! `npm run schema` (`UPDATE_SCHEMA=1 cargo test -p audit-logs-core --test schema`) rewrites it.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str =
    "npm run schema (UPDATE_SCHEMA=1 cargo test -p audit-logs-core --test schema)";

fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/audit.sql")
}

/// pg_dump's output, made independent of the day, the database and the roles it ran with.
fn normalize(dump: &str, owner: &str) -> String {
    let lines: Vec<&str> = dump.lines().collect();
    let mut out = String::new();
    for (i, &line) in lines.iter().enumerate() {
        // Session settings, the version header and newer pg_dumps' random \restrict key.
        if line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config(")
            || line.starts_with("\\restrict ")
            || line.starts_with("\\unrestrict ")
            || line.starts_with("-- Dumped ")
            || line.starts_with("-- PostgreSQL database dump")
        {
            continue;
        }
        // The empty "--" lines that frame pg_dump's banners and header.
        let banner = |j: usize| {
            lines.get(j).is_some_and(|l| {
                l.starts_with("-- Name: ") || l.starts_with("-- PostgreSQL database dump")
            })
        };
        if line == "--" && (banner(i + 1) || i.checked_sub(1).is_some_and(banner)) {
            continue;
        }
        // "-- Name: seal(); Type: FUNCTION; Schema: audit; Owner: -" -> "-- FUNCTION seal()".
        if let Some(rest) = line.strip_prefix("-- Name: ") {
            let (name, rest) = rest.split_once("; Type: ").expect("pg_dump's banner");
            let kind = rest.split_once("; ").map_or(rest, |(kind, _)| kind);
            out.push_str(&format!("-- {kind} {name}\n"));
            continue;
        }
        if line.is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
            continue;
        }
        let line = if line.starts_with("GRANT ") || line.starts_with("REVOKE ") {
            line.replace(&format!(" TO {owner};"), " TO OWNER;")
                .replace(&format!(" FROM {owner};"), " FROM OWNER;")
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.trim_end().to_owned() + "\n"
}

async fn generate() -> String {
    let f = common::migrated().await;
    let sql = f.sql().await;
    let owner: String = sql
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let major: i32 = sql
        .query_one(
            "select current_setting('server_version_num')::integer / 10000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pg_dump = audit_logs_core::temporary::find_bin_dir()
        .unwrap()
        .join("pg_dump");
    let output = Command::new(pg_dump)
        .args(["--schema-only", "--schema=audit", "--no-owner"])
        // Monthly partitions are named after the month `migrate` ran in; their definition is
        // audit.create_partitions.
        .args([
            "--exclude-table",
            "audit.audit_logs_p[0-9]*",
            "-d",
            &f.db.url,
        ])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = normalize(&String::from_utf8(output.stdout).unwrap(), &owner);

    // Event triggers belong to no schema, so a dump of one leaves them out.
    let event_triggers: Vec<String> = sql
        .query(
            "select pg_catalog.format(E'-- EVENT TRIGGER %s\n\ncreate event trigger %I on %s%s\n  execute function %s();\n%s%s',
                      e.evtname, e.evtname, e.evtevent,
                      (select E'\n  when tag in (' || pg_catalog.string_agg(pg_catalog.quote_literal(t), ', ') || ')'
                         from pg_catalog.unnest(e.evttags) t),
                      e.evtfoid::regproc,
                      case e.evtenabled when 'O' then ''
                                        else pg_catalog.format(E'alter event trigger %I %s;\n', e.evtname,
                                               case e.evtenabled when 'D' then 'disable' when 'R' then 'enable replica'
                                                                 else 'enable always' end) end,
                      (select pg_catalog.format(E'\ncomment on event trigger %I is %L;\n', e.evtname, d.description)
                         from pg_catalog.pg_description d
                        where d.classoid = 'pg_catalog.pg_event_trigger'::regclass and d.objoid = e.oid))
               from pg_catalog.pg_event_trigger e
               join pg_catalog.pg_proc p on p.oid = e.evtfoid
              where p.pronamespace = 'audit'::regnamespace
              order by e.evtname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    format!(
        "-- audit-logs: the `audit` schema after every migration in migrations/ (those are the
-- history and are never edited once released; this is the present). GENERATED, do not edit:
-- `npm run schema` rewrites it, and npm test fails when it is not current.
--
-- pg_dump --schema-only --schema=audit --no-owner of a freshly migrated database (PostgreSQL
-- {major}), without the monthly partitions that audit.create_partitions makes, pg_dump's
-- session settings and version header; event triggers, which no schema holds, are at the end.
-- Order is pg_dump's: types, functions, tables and views, defaults, constraints, indexes,
-- triggers, comments next to their object, grants.

{dump}
{}",
        event_triggers.join("\n")
    )
}

#[tokio::test]
async fn schema_file_is_current() {
    let generated = generate().await;
    let path = schema_file();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "schema/audit.sql is not current (first difference at line {}): regenerate it with {REGENERATE} and commit it\n--- committed\n{}\n--- generated\n{}",
            line + 1,
            committed.lines().nth(line).unwrap_or("(end of file)"),
            generated.lines().nth(line).unwrap_or("(end of file)"),
        );
    }
}

#[test]
fn normalizing_drops_what_varies_between_runs() {
    let dump = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n-- Dumped from database version 15.20\n\
        SET lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
        --\n-- Name: seal(); Type: FUNCTION; Schema: audit; Owner: -\n--\n\nCREATE FUNCTION audit.seal() ...;\n\n\n\
        GRANT ALL ON FUNCTION audit.seal() TO app_owner_1;\n\\unrestrict abc123\n";
    assert_eq!(
        normalize(dump, "app_owner_1"),
        "-- FUNCTION seal()\n\nCREATE FUNCTION audit.seal() ...;\n\nGRANT ALL ON FUNCTION audit.seal() TO OWNER;\n"
    );
}
