//! Models of `audit.audit_logs` for users who read it through their ORM (otherwise each
//! team writes the table's Drizzle or Prisma schema by hand). Both tell the ORM's migration tool to leave the table alone:
//! the audit-logs migrations own it.

/// A Prisma model (Prisma 6.13+ / 7, multi-schema and external tables).
pub fn prisma_model() -> &'static str {
    r#"// audit.audit_logs, written by audit-logs (https://www.npmjs.com/package/audit-logs).
// Read it through Prisma; never write it (the triggers and audit.log_event do). Prisma Migrate
// must leave it alone: in prisma.config.ts set
//   experimental: { externalTables: true }, tables: { external: ["audit.audit_logs"] }
// and list the schema in your datasource: schemas = ["public", "audit"].
// Once the datasource lists schemas, Prisma needs to know the schema of every model and enum:
// add @@schema("public") to each of your own models and enums, or `prisma generate` fails
// with "This model is missing an `@@schema` attribute". For example:
//   model User {
//     id Int @id
//     @@schema("public")
//   }
// The table has no primary key (every index costs on every write); id is unique, and
// (id, createdAt) is what Prisma is told identifies a row.
model AuditLog {
  id            BigInt    @default(autoincrement())
  createdAt     DateTime  @default(now()) @map("created_at") @db.Timestamptz(6)
  txid          BigInt
  action        String
  targetType    String?   @map("target_type")
  targetId      String?   @map("target_id")
  oldTargetId   String?   @map("old_target_id")
  oldValues     Json?     @map("old_values")
  newValues     Json?     @map("new_values")
  changedFields String[]  @map("changed_fields")
  actorId       String?   @map("actor_id")
  actorType     String?   @map("actor_type")
  actorEmail    String?   @map("actor_email")
  ipAddress     String?   @map("ip_address") @db.Inet
  userAgent     String?   @map("user_agent")
  requestId     String?   @map("request_id")
  metadata      Json?

  @@id([id, createdAt])
  @@map("audit_logs")
  @@schema("audit")
}
"#
}

/// A Drizzle table (drizzle-orm/pg-core), valid as TypeScript and as JavaScript.
pub fn drizzle_schema() -> &'static str {
    r#"// audit.audit_logs, written by audit-logs (https://www.npmjs.com/package/audit-logs).
// Read it through Drizzle; never write it (the triggers and audit.log_event do). Keep
// drizzle-kit away from it: schemaFilter: ['public'] in drizzle.config.
import { bigint, inet, jsonb, pgSchema, text, timestamp } from 'drizzle-orm/pg-core'

export const audit = pgSchema('audit')

export const auditLogs = audit.table('audit_logs', {
  id: bigint('id', { mode: 'number' }).notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
  txid: bigint('txid', { mode: 'number' }).notNull(),
  action: text('action').notNull(),
  targetType: text('target_type'),
  targetId: text('target_id'),
  oldTargetId: text('old_target_id'),
  oldValues: jsonb('old_values'),
  newValues: jsonb('new_values'),
  changedFields: text('changed_fields').array(),
  actorId: text('actor_id'),
  actorType: text('actor_type'),
  actorEmail: text('actor_email'),
  ipAddress: inet('ip_address'),
  userAgent: text('user_agent'),
  requestId: text('request_id'),
  metadata: jsonb('metadata'),
})
"#
}
