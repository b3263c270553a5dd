-- audit-logs V10: data subject requests (GDPR Articles 15 and 17). Every entry that mentions a
-- person, found with where it mentions them, and erased in exactly those places with keyed
-- hashes, recorded in audit.redactions as any redaction, so that the chain still verifies.
--
-- The rule, written here once (the Rust core's `subject` and `redact` call these functions):
-- * A subject is an actor id, an e-mail, an IP address and values (names, phone numbers...).
-- * The actor id is compared with actor_id only, for equality: as free text "42" would also be
--   an order number or a quantity.
-- * The e-mail, the IP address and each value are terms. A text mentions a term when it holds it
--   as a whole word, ignoring case: "ann@x.io asked" and "Ann Smith wrote this" mention ann@x.io
--   and "Ann Smith"; "joann@x.io" and "203.0.113.95" mention neither ann@x.io nor 203.0.113.9.
--   A JSON number mentions a term it equals (42, not 42.5). Searched: actor_email, ip_address
--   (as an address), user_agent, target_id, old_target_id, and every string and number of
--   old_values, new_values and metadata at any depth. Keys are not searched: they are column
--   and field names. Columns outside the personal digest (action, target_type, changed_fields,
--   actor_type, request_id) hold no personal data and are left alone.
-- * An entry the subject made (its actor_id or actor_email is theirs) also mentions them in its
--   actor_email, ip_address and user_agent: the request was theirs.
-- * Pseudonyms ("hmac:" and hex) mention nobody: after an erasure, the same search finds nothing.
-- * Erasing replaces each mentioning value as a whole (not the words within it: the rest of a
--   free text about a person is about them too) with its keyed hash; an address becomes null.
--
-- Speed: a first pass keeps the rows whose actor_id is the subject's or whose personal columns,
-- printed and lower-cased, contain a term (LIKE, one sequential scan: no index on the values,
-- which would cost every write); the exact rule above runs on those rows only.

-- ---------------------------------------------------------------------------------------------
-- The rule
-- ---------------------------------------------------------------------------------------------

create function audit.subject_terms(actor_id text, email text, ip_address text, "values" text[])
returns text[]
language plpgsql
immutable
set search_path = ''
as $$
declare
  terms text[] := '{}';
  address inet;
  term text;
begin
  if actor_id is null and email is null and ip_address is null and coalesce(cardinality("values"), 0) = 0 then
    raise exception 'audit-logs: a data subject needs at least one of an actor id, an e-mail, an IP address or values'
      using errcode = 'AL015';
  end if;
  if actor_id is not null and (actor_id = '' or octet_length(actor_id) > 1024) then
    raise exception 'audit-logs: the subject''s actor id must be 1 to 1024 bytes'
      using errcode = 'AL015';
  end if;
  if ip_address is not null then
    begin
      address := ip_address::inet;
    exception when invalid_text_representation then
      raise exception 'audit-logs: the subject''s IP address % is not an IPv4 or IPv6 address', quote_literal(ip_address)
        using errcode = 'AL015';
    end;
    if address <> host(address)::inet then
      raise exception 'audit-logs: the subject''s IP address % is a network; give one address', quote_literal(ip_address)
        using errcode = 'AL015';
    end if;
    terms := terms || lower(host(address));
  end if;
  if cardinality("values") > 100 then
    raise exception 'audit-logs: a data subject has at most 100 values, got %', cardinality("values")
      using errcode = 'AL015';
  end if;
  foreach term in array array_prepend(email, coalesce("values", '{}')) loop
    continue when term is null;
    -- At least two characters that are not spaces: a single letter is a word of every text.
    if length(btrim(term)) < 2 or octet_length(term) > 1024 then
      raise exception 'audit-logs: the subject''s value % must be 2 to 1024 bytes, not only spaces', quote_literal(term)
        using errcode = 'AL015';
    end if;
    if lower(term) like 'hmac:%' then
      raise exception 'audit-logs: % is a pseudonym, which mentions nobody', quote_literal(term)
        using errcode = 'AL015';
    end if;
    terms := terms || lower(term);
  end loop;
  return array(select distinct t from unnest(terms) t order by t);
end
$$;
comment on function audit.subject_terms(text, text, text, text[]) is
  'The terms searched for a data subject (the e-mail, the IP address and the values, lower-cased), after checking them. Errors: AL015.';

-- LIKE patterns for the first pass: each term as itself and as JSON prints it inside a string
-- (a quote or a backslash is escaped there), with LIKE's own characters escaped.
create function audit.subject_patterns(terms text[])
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select array(
    select distinct '%' || replace(replace(replace(form, '\', '\\'), '%', '\%'), '_', '\_') || '%'
      from unnest(terms) as t(term)
     cross join lateral (values (t.term),
                                (substr(to_jsonb(t.term)::text, 2, length(to_jsonb(t.term)::text) - 2))) as f(form))
$$;
comment on function audit.subject_patterns(text[]) is
  'The LIKE patterns of audit.may_mention for some terms (as given, and as JSON prints them).';

-- The first pass: inlined into the caller's scan (a SQL function without SET), so every name is
-- qualified.
create function audit.may_mention(l audit.audit_logs, actor_id text, patterns text[])
returns boolean
language sql
stable
parallel safe
as $$
  select l.actor_id operator(pg_catalog.=) may_mention.actor_id
      or pg_catalog.lower(pg_catalog.concat_ws(' ', l.actor_email, pg_catalog.host(l.ip_address), l.user_agent,
                                               l.target_id, l.old_target_id, l.old_values, l.new_values, l.metadata)
                          collate pg_catalog."default")
         operator(pg_catalog.~~) any (may_mention.patterns)
$$;
comment on function audit.may_mention(audit.audit_logs, text, text[]) is
  'True for every entry that may mention the subject (its actor id, or a term within its personal columns); audit.subject_paths says which do, and where.';

-- A term as a regular expression: itself (every character that is not a letter, a digit or a
-- space escaped), not glued to a letter or digit on a side where it starts or ends with one.
create function audit.term_pattern(term text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when term ~ '^[[:alnum:]_]' then '(^|[^[:alnum:]_])' else '' end
         || regexp_replace(term, '([^[:alnum:][:space:]])', '\\\1', 'g')
         || case when term ~ '[[:alnum:]_]$' then '($|[^[:alnum:]_])' else '' end
$$;
comment on function audit.term_pattern(text) is
  'The regular expression of a term: itself as a whole word (audit.mentions).';

create function audit.mentions(value text, terms text[])
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  -- Compared in the database's collation, as the terms were lower-cased (target ids are "C").
  select value is not null and value not like 'hmac:%'
         and exists (select from unnest(terms) t
                      where strpos(lower(value collate "default"), t) > 0
                        and lower(value collate "default") ~ audit.term_pattern(t))
$$;
comment on function audit.mentions(text, text[]) is
  'True when a text (not a pseudonym) holds one of the terms (lower-cased) as a whole word, ignoring case.';

create function audit.mentions(value jsonb, terms text[])
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case jsonb_typeof(value)
           when 'string' then audit.mentions(value #>> '{}', terms)
           when 'number' then value::text = any(terms)
           else false end
$$;
comment on function audit.mentions(jsonb, text[]) is
  'True when a JSON string mentions one of the terms, or a JSON number equals one.';

-- Where an entry's JSON column mentions the terms: the paths of its mentioning strings and
-- numbers (new_values.author_email, old_values.profile.contacts[0], metadata["a key"]).
create function audit.json_mentions(name text, value jsonb, terms text[])
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  with recursive walk(path, value) as (
    select name, value where value is not null
    union all
    select w.path || s.step, s.value
      from walk w
     cross join lateral (
       select case when e.key ~ '^[A-Za-z_][A-Za-z0-9_]*$' then '.' || e.key
                   else '[' || to_jsonb(e.key)::text || ']' end, e.value
         from jsonb_each(case when jsonb_typeof(w.value) = 'object' then w.value else '{}' end) e
       union all
       select '[' || (a.n - 1) || ']', a.value
         from jsonb_array_elements(case when jsonb_typeof(w.value) = 'array' then w.value else '[]' end)
              with ordinality as a(value, n)
     ) as s(step, value)
  )
  select array(select path from walk where audit.mentions(value, terms) order by path)
$$;
comment on function audit.json_mentions(text, jsonb, text[]) is
  'The paths (name.key[0]...) of the strings and numbers of a JSON value that mention the terms.';

create function audit.subject_paths(l audit.audit_logs, actor_id text, terms text[])
returns text[]
language sql
stable
parallel safe
set search_path = ''
as $$
  select array_remove(array[
           case when theirs then 'actor_id' end,
           case when l.actor_email is not null and (theirs or audit.mentions(l.actor_email, terms)) then 'actor_email' end,
           case when l.ip_address is not null and (theirs or host(l.ip_address) = any(terms)) then 'ip_address' end,
           case when l.user_agent is not null and (theirs or audit.mentions(l.user_agent, terms)) then 'user_agent' end,
           case when audit.mentions(l.target_id, terms) then 'target_id' end,
           case when audit.mentions(l.old_target_id, terms) then 'old_target_id' end], null)
         || audit.json_mentions('old_values', l.old_values, terms)
         || audit.json_mentions('new_values', l.new_values, terms)
         || audit.json_mentions('metadata', l.metadata, terms)
    from (select l.actor_id = subject_paths.actor_id or audit.mentions(l.actor_email, terms) as theirs) as own
$$;
comment on function audit.subject_paths(audit.audit_logs, text, text[]) is
  'Where an entry mentions a data subject (its actor id, and terms from audit.subject_terms): actor_id, actor_email, ip_address, user_agent, target_id, old_target_id and the paths within old_values, new_values and metadata; empty when it does not. Keep rows with audit.may_mention first: it is the fast pass.';

-- ---------------------------------------------------------------------------------------------
-- Erasure
-- ---------------------------------------------------------------------------------------------

create function audit.redacted_mentions(secret bytea, doc jsonb, terms text[])
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  case jsonb_typeof(doc)
    when 'object' then
      return (select coalesce(jsonb_object_agg(e.key, audit.redacted_mentions(secret, e.value, terms)), '{}')
                from jsonb_each(doc) e);
    when 'array' then
      return (select coalesce(jsonb_agg(audit.redacted_mentions(secret, a.value, terms) order by a.n), '[]')
                from jsonb_array_elements(doc) with ordinality as a(value, n));
    else
      if audit.mentions(doc, terms) then
        return to_jsonb(audit.redacted_text(secret, doc #>> '{}'));
      end if;
      return doc;
  end case;
end
$$;
comment on function audit.redacted_mentions(bytea, jsonb, text[]) is
  'A JSON value with every string and number that mentions the terms (audit.mentions) replaced by its pseudonym; the rest as it was.';

create function audit.redact_subject(
  key bytea,
  actor_id text default null,
  email text default null,
  ip_address text default null,
  "values" text[] default null,
  reason text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  terms text[];
  patterns text[];
  event_id bigint;
  n bigint;
  found jsonb;
begin
  if key is null or octet_length(key) < 16 then
    raise exception 'audit-logs: the redaction key must be at least 16 bytes'
      using errcode = 'AL009', hint = 'Use a random secret kept outside the database; the same key gives the same pseudonyms.';
  end if;
  terms := audit.subject_terms(redact_subject.actor_id, email, ip_address, "values");
  patterns := audit.subject_patterns(terms);

  -- The event names the subject by a pseudonym of its description only.
  select l.id into event_id from audit.log_event('audit.redaction', 'audit.audit_logs', null,
    jsonb_strip_nulls(jsonb_build_object(
      'subject', audit.redacted_text(key, concat_ws(' ', redact_subject.actor_id, array_to_string(terms, ' '))),
      'by', 'subject', 'reason', reason))) l;
  perform set_config('audit.maintenance', 'on', true);
  with matched as (
    select l.id, l.txid, l.created_at, l.action, l.target_type, l.target_id,
           audit.personal_digest(l) as digest, m.paths
      from audit.audit_logs l
     cross join lateral (select audit.subject_paths(l, redact_subject.actor_id, terms) as paths) m
     where audit.may_mention(l, redact_subject.actor_id, patterns)
       and cardinality(m.paths) > 0
       and l.id <> event_id
  ), changed as (
    update audit.audit_logs l set
      target_id = case when 'target_id' = any(m.paths) then audit.redacted_text(key, l.target_id) else l.target_id end,
      old_target_id = case when 'old_target_id' = any(m.paths) then audit.redacted_text(key, l.old_target_id) else l.old_target_id end,
      old_values = audit.redacted_mentions(key, l.old_values, terms),
      new_values = audit.redacted_mentions(key, l.new_values, terms),
      actor_id = case when 'actor_id' = any(m.paths) then audit.redacted_text(key, l.actor_id) else l.actor_id end,
      actor_email = case when 'actor_email' = any(m.paths) then audit.redacted_text(key, l.actor_email) else l.actor_email end,
      ip_address = case when 'ip_address' = any(m.paths) then null else l.ip_address end,
      user_agent = case when 'user_agent' = any(m.paths) then audit.redacted_text(key, l.user_agent) else l.user_agent end,
      metadata = audit.redacted_mentions(key, l.metadata, terms)
      from matched m
     where l.id = m.id and l.created_at = m.created_at
    returning l.id, audit.personal_digest(l) as digest
  ), recorded as (
    insert into audit.redactions (row_id, row_txid, kind, event_id, original_digest, redacted_digest)
    select m.id, m.txid, 'redaction', event_id, m.digest, c.digest
      from matched m join changed c on c.id = m.id
     where m.digest <> c.digest
    returning row_id
  )
  select count(*), coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'id', m.id, 'createdAt', m.created_at, 'action', m.action, 'targetType', m.target_type,
           'targetId', m.target_id, 'paths', to_jsonb(m.paths))) order by m.id), '[]')
    into n, found
    from matched m join recorded r on r.row_id = m.id;
  perform set_config('audit.maintenance', '', true);
  return jsonb_build_object('rowsRedacted', n, 'eventId', event_id,
    'fields', to_jsonb(array(select distinct substring(p from '^[a-z_]+')
                               from jsonb_array_elements(found) e, jsonb_array_elements_text(e.value -> 'paths') p
                              order by 1)),
    'entries', found);
end
$$;
comment on function audit.redact_subject(bytea, text, text, text, text[], text) is
  'GDPR erasure of a data subject wherever the log mentions them (audit.subject_paths: actor columns, IP, user agent, target ids, values and metadata at any depth): each mentioning value becomes its keyed hash ("hmac:" and HMAC-SHA256 hex under key, never stored; an IP address becomes null). Records an audit.redaction event and the digests in audit.redactions; verify still passes. Returns the entries changed with their paths. Errors: AL009 (key), AL015 (subject).';

-- Lets audit.redact_subject change rows of the append-only log, as audit.redact does.
create or replace function audit.in_maintenance()
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  stack text;
begin
  if coalesce(current_setting('audit.maintenance', true), '') <> 'on' then
    return false;
  end if;
  if current_user <> (select pg_get_userbyid(c.relowner) from pg_class c
                       where c.oid = 'audit.audit_logs'::regclass) then
    return false;
  end if;
  get diagnostics stack = pg_context;
  return stack ~ 'PL/pgSQL function audit\.(redact|redact_subject|anonymize_due|move_default_rows|drop_expired_partitions)\(';
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: finding needs only to read the log (audit_reader); erasing is the maintainer's.
-- ---------------------------------------------------------------------------------------------

revoke all on function audit.redact_subject(bytea, text, text, text, text[], text) from public;

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_maintainer') then
    grant execute on function audit.redact_subject(bytea, text, text, text, text[], text) to audit_maintainer;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_maintainer: %', sqlerrm;
end
$grants$;
