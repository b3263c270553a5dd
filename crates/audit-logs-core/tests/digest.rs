//! One test vector for both implementations of the canonical serialization: the Rust digest
//! (`integrity::digest`, what `verify` recomputes) and the SQL one (`audit.row_digest`,
//! `audit.seal()`, what seals). `fixtures/digest-v1.json` holds rows and their expected digests,
//! chunk heads and seal head; each side must reproduce them, so neither can drift alone.
mod common;

use audit_logs_core::integrity::digest::{ChunkHead, Row, RowDigester, SealHead};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/digest-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text<'a>(row: &'a Value, column: &str) -> Option<&'a [u8]> {
    row[column].as_str().map(str::as_bytes)
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap()
}

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

/// A fixture row as the verifier reads it (created_at in microseconds since 2000-01-01 UTC).
fn row(r: &Value) -> Row<'_> {
    let at = chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap()).unwrap();
    let epoch = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap();
    Row {
        id: int(&r["id"]),
        created_at: (at - epoch).num_microseconds().unwrap(),
        txid: int(&r["txid"]),
        action: text(r, "action"),
        target_type: text(r, "target_type"),
        changed_fields: text(r, "changed_fields"),
        actor_type: text(r, "actor_type"),
        request_id: text(r, "request_id"),
        target_id: text(r, "target_id"),
        old_target_id: text(r, "old_target_id"),
        old_values: text(r, "old_values"),
        new_values: text(r, "new_values"),
        actor_id: text(r, "actor_id"),
        actor_email: text(r, "actor_email"),
        ip_address: text(r, "ip_address"),
        user_agent: text(r, "user_agent"),
        metadata: text(r, "metadata"),
    }
}

/// The expected row digest of the row with this id.
fn expected_digest(f: &Value, id: i64) -> Vec<u8> {
    let expected = f["expected"]["rows"].as_array().unwrap();
    bytes(&expected.iter().find(|e| int(&e["id"]) == id).unwrap()["digest"])
}

#[test]
fn rust_digests_match_the_fixture() {
    let f = fixture();
    let mut digester = RowDigester::new();
    for (r, expected) in f["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["expected"]["rows"].as_array().unwrap())
    {
        let row = row(r);
        let personal = digester.personal(&row);
        assert_eq!(
            hex::encode(personal),
            expected["personal"],
            "row {}",
            row.id
        );
        let digest = digester.row(&row, &personal);
        assert_eq!(hex::encode(digest), expected["digest"], "row {}", row.id);
    }
    let seal = &f["expected"]["seal"];
    let mut head = SealHead::new(
        &bytes(&seal["previous_head"]),
        int(&seal["id"]),
        int(&seal["from_txid"]),
        int(&seal["to_txid"]),
        int(&seal["row_count"]),
    );
    for chunk in f["expected"]["chunks"].as_array().unwrap() {
        let mut chunk_head = ChunkHead::new();
        let ids = chunk["ids"].as_array().unwrap();
        for id in ids {
            chunk_head.push(&expected_digest(&f, int(id)).try_into().unwrap());
        }
        let chunk_head = chunk_head.finish();
        assert_eq!(hex::encode(chunk_head), chunk["head"], "chunk of {ids:?}");
        head.push_chunk(int(&chunk["month"]) as i32, ids.len() as i64, &chunk_head);
    }
    assert_eq!(hex::encode(head.finish()), seal["head"]);
}

#[tokio::test]
async fn sql_digests_and_seal_match_the_fixture() {
    let f = fixture();
    let db = common::migrated().await;
    let sql = db.sql().await;
    // The fixture's rows as they would have been captured: each column from its text output.
    sql.execute(
        "insert into audit.audit_logs (id, created_at, txid, action, target_type, changed_fields,
           actor_type, request_id, target_id, old_target_id, old_values, new_values, actor_id,
           actor_email, ip_address, user_agent, metadata)
         overriding system value
         select (r->>'id')::bigint, (r->>'created_at')::timestamptz, (r->>'txid')::bigint,
                r->>'action', r->>'target_type', (r->>'changed_fields')::text[], r->>'actor_type',
                r->>'request_id', r->>'target_id', r->>'old_target_id', (r->>'old_values')::jsonb,
                (r->>'new_values')::jsonb, r->>'actor_id', r->>'actor_email',
                (r->>'ip_address')::inet, r->>'user_agent', (r->>'metadata')::jsonb
           from pg_catalog.jsonb_array_elements($1::jsonb) r",
        &[&f["rows"]],
    )
    .await
    .unwrap();

    // Each column prints back as the fixture has it (else the fixture, not a digest, is wrong),
    // and the database's own digest functions give the fixture's digests.
    let stored = sql
        .query(
            "select pg_catalog.jsonb_build_object('id', l.id,
                      'created_at', pg_catalog.to_char(l.created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                      'txid', l.txid, 'action', l.action, 'target_type', l.target_type,
                      'changed_fields', l.changed_fields::text, 'actor_type', l.actor_type,
                      'request_id', l.request_id, 'target_id', l.target_id, 'old_target_id', l.old_target_id,
                      'old_values', l.old_values::text, 'new_values', l.new_values::text,
                      'actor_id', l.actor_id, 'actor_email', l.actor_email, 'ip_address', l.ip_address::text,
                      'user_agent', l.user_agent, 'metadata', l.metadata::text),
                    pg_catalog.encode(audit.personal_digest(l), 'hex'),
                    pg_catalog.encode(audit.row_digest(l, null), 'hex')
               from audit.audit_logs l order by l.txid, l.id",
            &[],
        )
        .await
        .unwrap();
    let rows = f["rows"].as_array().unwrap();
    assert_eq!(stored.len(), rows.len());
    for ((s, r), expected) in stored
        .iter()
        .zip(rows)
        .zip(f["expected"]["rows"].as_array().unwrap())
    {
        assert_eq!(
            &s.get::<_, Value>(0),
            r,
            "the fixture row prints back unchanged"
        );
        assert_eq!(
            s.get::<_, String>(1),
            expected["personal"],
            "row {}",
            r["id"]
        );
        assert_eq!(s.get::<_, String>(2), expected["digest"], "row {}", r["id"]);
    }

    // audit.seal() cuts the same chunks, with the same heads and entries.
    let report = db.audit.seal().await.unwrap();
    assert_eq!(report.row_count, rows.len() as i64);
    let chunks = sql
        .query(
            "select month, row_count, head, entries from audit.seal_chunks
              where seal_id = $1 order by chunk",
            &[&report.seal_id],
        )
        .await
        .unwrap();
    let expected_chunks = f["expected"]["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), expected_chunks.len());
    for (c, expected) in chunks.iter().zip(expected_chunks) {
        let ids = expected["ids"].as_array().unwrap();
        assert_eq!(c.get::<_, i32>(0) as i64, int(&expected["month"]));
        assert_eq!(c.get::<_, i32>(1) as usize, ids.len());
        assert_eq!(hex::encode(c.get::<_, &[u8]>(2)), expected["head"]);
        let entries: Vec<u8> = ids
            .iter()
            .flat_map(|id| {
                let r = rows.iter().find(|r| r["id"] == *id).unwrap();
                [
                    int(&r["txid"]).to_be_bytes().to_vec(),
                    int(id).to_be_bytes().to_vec(),
                    expected_digest(&f, int(id))[..8].to_vec(),
                ]
                .concat()
            })
            .collect();
        assert_eq!(c.get::<_, &[u8]>(3), entries);
    }

    // The seal's head: its to_txid is the database's transaction horizon, so it cannot be the
    // fixture's; the head is checked against the formula the fixture pins for Rust, over the
    // fixture's chunks and the seal's actual range.
    let mut head = SealHead::new(
        b"",
        report.seal_id.unwrap(),
        report.from_txid,
        report.to_txid,
        report.row_count,
    );
    for chunk in expected_chunks {
        head.push_chunk(
            int(&chunk["month"]) as i32,
            chunk["ids"].as_array().unwrap().len() as i64,
            &bytes(&chunk["head"]),
        );
    }
    assert_eq!(report.head, Some(hex::encode(head.finish())));
}
