//! The audit trail in SQL: `wallet.enable_audit`, `wallet.disable_audit`, the
//! trigger they attach, `wallet.client_ip()`, `wallet.verify_audit_chain()`.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, quote_qualified_identifier};
use pgrx::{datum::DatumWithOid, PgOid, PgRelation};

use super::generic_plan::GenericPlan;
use super::identity::{current_issuer, current_subject, request_header};
use super::{raise, spi_failed};
use crate::audit::{
    actor, bounded_user_agent, client_ip, personal_digest, place_digest, redacted_columns, redaction_overlay,
    row_hash_v2, AuditRow, ChainScan, ClientIp, Finding, Head, RedactionEntry, RedactionRecord, HASH_V1, REDACT_ACTION,
    SYSTEM_ACTOR,
};

/// The trigger's name on every audited table.
const AUDIT_TRIGGER: &str = "parker_wallet_audit";

/// The next link of a user's chain (the parameter named): its sequence number
/// and the hash it points at. The caller holds the chain's lock.
macro_rules! next_link {
    ($user:literal) => {
        concat!(
            "coalesce(last.chain_seq, 0) + 1 AS chain_seq,
             coalesce(last.row_hash, decode(repeat('00', 32), 'hex')) AS prev_hash
               FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (SELECT a.chain_seq, a.row_hash FROM public.traveler_data_audit a
                                   WHERE a.user_id = ",
            $user,
            " ORDER BY a.chain_seq DESC LIMIT 1) AS last ON true"
        )
    };
}

/// The audited change as jsonb, redacted (`{overlay}`: see [`overlay_sql`]), with its address and link.
/// $1/$2 old/new row (the table's row type), $7 address text, $8 use the
/// connection's address, $11 the actor, $12 the row's salt. (The sub-select is never flattened, so
/// each jsonb is built once.)
macro_rules! audited_change {
    () => {
        concat!(
            "FROM (SELECT r.created_at, r.raw_old{overlay} AS old_data, r.raw_new{overlay} AS new_data,
                          r.raw_old, r.raw_new, r.ip, r.actor, r.chain_seq, r.prev_hash
                     FROM (SELECT now() AS created_at, to_jsonb($1) AS raw_old, to_jsonb($2) AS raw_new,
                                  CASE WHEN $8 THEN inet_client_addr() ELSE $7::inet END AS ip,
                                  $11::text AS actor, ",
            next_link!("$5"),
            " OFFSET 0) AS r
                  ) AS v
            WHERE $3 <> 'UPDATE' OR v.raw_old IS DISTINCT FROM v.raw_new"
        )
    };
}

/// Writes one audit row: links it to the user's previous row and hashes it.
/// $3 action, $4 table name, $5 user id, $6 record id, $9 user agent, $10 the
/// row's id, and the parameters of [`audited_change`]. An UPDATE that changed
/// nothing writes nothing.
const AUDIT_INSERT_SQL: &str = concat!(
    "INSERT INTO public.traveler_data_audit
       (id, user_id, chain_seq, action, table_name, record_id, old_data, new_data,
        ip_address, user_agent, created_at, prev_hash, row_hash, hash_version, actor, personal_salt)
     SELECT $10, $5, v.chain_seq, $3, $4, $6, v.old_data, v.new_data, v.ip, $9, v.created_at, v.prev_hash,
            wallet.audit_row_hash_v2(v.prev_hash, $10, $5, v.chain_seq, $3, $4, $6, v.actor, ",
    audit_chain::micros!("v.created_at"),
    ", wallet.audit_personal_digest($12, v.old_data::text, v.new_data::text, v.ip::text, $9)),
            2, v.actor, $12 ",
    audited_change!()
);

/// [`AUDIT_INSERT_SQL`] in the first format, for an audit table that migration
/// 0011 has not yet given its `hash_version` and `actor` columns (the library is
/// updated before the migrations run).
const AUDIT_INSERT_V1_SQL: &str = concat!(
    "INSERT INTO public.traveler_data_audit
       (id, user_id, chain_seq, action, table_name, record_id, old_data, new_data,
        ip_address, user_agent, created_at, prev_hash, row_hash)
     SELECT $10, $5, v.chain_seq, $3, $4, $6, v.old_data, v.new_data, v.ip, $9, v.created_at,
            v.prev_hash,
            wallet.audit_row_hash(v.prev_hash, $10, $5, v.chain_seq, $3, $4, $6, v.old_data::text,
                                  v.new_data::text, v.ip::text, $9, ",
    audit_chain::micros!("v.created_at"),
    ") ",
    audited_change!()
);

/// Whether the audit table has migration 0011's columns (the second format).
/// Syscache lookups only: cheap enough to ask on every audited write, so a
/// long-lived connection follows the migration (both ways) at once.
fn audit_table_has_v2() -> bool {
    // SAFETY: catalog cache lookups with NUL-terminated names; missing objects
    // answer InvalidOid / InvalidAttrNumber.
    unsafe {
        let public = pg_sys::get_namespace_oid(c"public".as_ptr(), true);
        if public == pg_sys::InvalidOid {
            return false;
        }
        let table = pg_sys::get_relname_relid(c"traveler_data_audit".as_ptr(), public);
        table != pg_sys::InvalidOid
            && pg_sys::get_attnum(table, c"hash_version".as_ptr()) != pg_sys::InvalidAttrNumber as pg_sys::AttrNumber
    }
}

/// Who is making this change (see [`crate::audit::actor`]); without claims, the
/// database role that made it (the role before any definer function's).
fn current_actor() -> String {
    actor(current_subject(), current_issuer().as_deref()).unwrap_or_else(|| {
        // SAFETY: plain catalog lookups; noerr = true returns NULL for a dropped role.
        let name = unsafe {
            let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
            (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
        };
        format!("role:{}", name.unwrap_or_default())
    })
}

/// A prepared audit insert's key: the table (its row parameters are typed per
/// table), the format, and the trigger's redacted columns (part of the statement).
type PlanKey = (pg_sys::Oid, bool, Vec<String>);

thread_local! {
    static AUDIT_PLANS: RefCell<HashMap<PlanKey, GenericPlan>> = RefCell::new(HashMap::new());
}

/// The redaction as SQL to append to each row's jsonb: a constant of the
/// statement, so no row builds or parses it; nothing when no column is redacted.
fn overlay_sql(redacted: &[String]) -> String {
    if redacted.is_empty() {
        String::new()
    } else {
        format!(" || {}::jsonb", quote_literal(redaction_overlay(redacted)))
    }
}

fn as_uuid_bytes(id: pgrx::Uuid) -> [u8; 16] {
    *id.as_bytes()
}

/// Serialises writers of one user's chain until their transaction ends, so each
/// row sees the row committed before it. Other users' chains do not wait.
fn lock_chain(user_id: &[u8; 16]) {
    const AUDIT_LOCK_CLASS: i32 = 0x5057_4155; // "PWAU"
    let folded = user_id.chunks_exact(4).fold(0u32, |acc, c| acc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    // SAFETY: a builtin taking two int4 arguments, called with two int4 datums.
    unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::pg_advisory_xact_lock_int4,
            &[AUDIT_LOCK_CLASS.into_datum(), (folded as i32).into_datum()],
        );
    }
}

/// The AFTER ROW trigger `wallet.enable_audit` attaches. Its arguments are the
/// columns to redact.
#[pg_trigger]
fn audit_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let action = match trigger.op()? {
        PgTriggerOperation::Insert => "INSERT",
        PgTriggerOperation::Update => "UPDATE",
        PgTriggerOperation::Delete => "DELETE",
        PgTriggerOperation::Truncate => return Ok(None),
    };
    let relation = trigger.relation()?;
    let relid = relation.oid();
    // SAFETY: the trigger's relation is open and its pg_class row loaded.
    let row_type = unsafe { (*relation.rd_rel).reltype };
    let table_name = trigger.table_name()?;
    let redact = trigger.extra_args()?;
    let (old, new) = (trigger.old(), trigger.new());

    let uuid_column = |name: &str| {
        new.as_ref()
            .and_then(|t| t.get_by_name::<pgrx::Uuid>(name).ok().flatten())
            .or_else(|| old.as_ref().and_then(|t| t.get_by_name::<pgrx::Uuid>(name).ok().flatten()))
    };
    let user_id = uuid_column("user_id")
        .map(as_uuid_bytes)
        .or_else(|| current_subject().map(|s| *s.as_bytes()))
        .unwrap_or(SYSTEM_ACTOR);
    let record_id = uuid_column("id");

    let (ip_text, from_connection) = request_ip();
    let user_agent = request_header("user-agent").map(|ua| bounded_user_agent(&ua).to_owned());
    lock_chain(&user_id);
    let second_format = audit_table_has_v2();
    // Only the second format records who acted.
    let acted_by = second_format.then(current_actor);
    let key = (relid, second_format, redact);
    let plan = AUDIT_PLANS.with(|plans| plans.borrow_mut().remove(&key));
    // The plan is out of the cache while it runs: a nested audited write (a
    // trigger on the audit table's own writes) prepares its own.
    let plan = Spi::connect_mut(|_client| {
        let mut plan = plan.unwrap_or_else(|| {
            let row = PgOid::from(row_type);
            let types = [
                row,
                row,
                PgBuiltInOids::TEXTOID.oid(),
                PgBuiltInOids::TEXTOID.oid(),
                PgBuiltInOids::UUIDOID.oid(),
                PgBuiltInOids::UUIDOID.oid(),
                PgBuiltInOids::TEXTOID.oid(),
                PgBuiltInOids::BOOLOID.oid(),
                PgBuiltInOids::TEXTOID.oid(),
                PgBuiltInOids::UUIDOID.oid(),
                PgBuiltInOids::TEXTOID.oid(),
                PgBuiltInOids::BYTEAOID.oid(),
            ];
            let sql = if second_format { AUDIT_INSERT_SQL } else { AUDIT_INSERT_V1_SQL };
            GenericPlan::prepare(&sql.replace("{overlay}", &overlay_sql(&key.2)), &types)
        });
        // SAFETY: each row datum is passed with its table's row type.
        let (old_arg, new_arg) = unsafe {
            (
                match old {
                    Some(tuple) => DatumWithOid::new(tuple, row_type),
                    None => DatumWithOid::null_oid(row_type),
                },
                match new {
                    Some(tuple) => DatumWithOid::new(tuple, row_type),
                    None => DatumWithOid::null_oid(row_type),
                },
            )
        };
        plan.execute(&[
            old_arg,
            new_arg,
            action.into(),
            table_name.as_str().into(),
            pgrx::Uuid::from_bytes(user_id).into(),
            record_id.into(),
            ip_text.into(),
            from_connection.into(),
            user_agent.into(),
            // Time-ordered ids keep the primary key's inserts at the index's right edge.
            pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes()).into(),
            acted_by.into(),
            // The salt that keeps the personal digest from confirming guesses once redacted.
            uuid::Uuid::new_v4().as_bytes().as_slice().into(),
        ]);
        plan
    });
    AUDIT_PLANS.with(|plans| plans.borrow_mut().insert(key, plan));
    Ok(None)
}

/// The hash of one audit row and its link (see `crate::audit::AuditRow`).
#[pg_extern(immutable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
fn audit_row_hash(
    prev_hash: &[u8],
    id: pgrx::Uuid,
    user_id: pgrx::Uuid,
    chain_seq: i64,
    action: &str,
    table_name: &str,
    record_id: Option<pgrx::Uuid>,
    old_data: Option<&str>,
    new_data: Option<&str>,
    ip_address: Option<&str>,
    user_agent: Option<&str>,
    created_at_micros: i64,
) -> Vec<u8> {
    AuditRow {
        id: as_uuid_bytes(id),
        user_id: as_uuid_bytes(user_id),
        chain_seq,
        action: action.to_owned(),
        table_name: table_name.to_owned(),
        record_id: record_id.map(as_uuid_bytes),
        old_data: old_data.map(str::to_owned),
        new_data: new_data.map(str::to_owned),
        ip_address: ip_address.map(str::to_owned),
        user_agent: user_agent.map(str::to_owned),
        created_at_micros,
        prev_hash: prev_hash.to_vec(),
        row_hash: Vec::new(),
        hash_version: HASH_V1,
        actor: None,
        personal_salt: None,
        redacted_digest: None,
    }
    .compute_hash_v1()
    .to_vec()
}

/// The digest of an audit row's personal fields (see `crate::audit::personal_digest`).
#[pg_extern(immutable, parallel_safe)]
fn audit_personal_digest(
    salt: Option<&[u8]>,
    old_data: Option<&str>,
    new_data: Option<&str>,
    ip_address: Option<&str>,
    user_agent: Option<&str>,
) -> Vec<u8> {
    personal_digest(salt, old_data, new_data, ip_address, user_agent).to_vec()
}

/// The second-format hash of one audit row (see `crate::audit::row_hash_v2`).
#[pg_extern(immutable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
fn audit_row_hash_v2(
    prev_hash: &[u8],
    id: pgrx::Uuid,
    user_id: pgrx::Uuid,
    chain_seq: i64,
    action: &str,
    table_name: &str,
    record_id: Option<pgrx::Uuid>,
    actor: Option<&str>,
    created_at_micros: i64,
    personal_digest: &[u8],
) -> Vec<u8> {
    row_hash_v2(
        prev_hash,
        id.as_bytes(),
        user_id.as_bytes(),
        chain_seq,
        action,
        table_name,
        record_id.as_ref().map(|r| r.as_bytes()),
        actor,
        created_at_micros,
        personal_digest,
    )
    .to_vec()
}

/// The request's client address as the audit trail records it: first hop of
/// `x-forwarded-for`, else `x-real-ip`, else the connection's peer; NULL when a
/// header holds something that is not an address.
#[pg_extern(stable, parallel_safe, name = "client_ip")]
fn request_client_ip() -> Option<pgrx::Inet> {
    let (ip_text, from_connection) = request_ip();
    if from_connection {
        Spi::get_one::<pgrx::Inet>("SELECT inet_client_addr()").unwrap_or_else(|e| spi_failed(e))
    } else {
        ip_text.map(pgrx::Inet)
    }
}

/// The address from the proxy headers, and whether to use the connection's instead.
fn request_ip() -> (Option<String>, bool) {
    match client_ip(request_header("x-forwarded-for").as_deref(), request_header("x-real-ip").as_deref()) {
        ClientIp::FromHeader(address) => (address.map(|a| a.to_string()), false),
        ClientIp::FromConnection => (None, true),
    }
}

/// Columns of a table, in order.
fn table_columns(table: pg_sys::Oid) -> Vec<String> {
    Spi::get_one_with_args::<Vec<String>>(
        "SELECT coalesce(array_agg(attname::text ORDER BY attnum), '{}') FROM pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
        &[table.into()],
    )
    .unwrap_or_else(|e| spi_failed(e))
    .unwrap_or_default()
}

fn qualified_name(table: pg_sys::Oid) -> (String, String) {
    let (schema, name) = Spi::get_two_with_args::<String, String>(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[table.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    match (schema, name) {
        (Some(schema), Some(name)) => (schema, name),
        _ => raise(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, "no such table"),
    }
}

fn oid_of(table: PgRelation) -> pg_sys::Oid {
    // Keep only the oid: an open relation would make DDL on it refuse ("in use").
    let oid = table.oid();
    drop(table);
    oid
}

/// Audits every INSERT, UPDATE and DELETE on `target` into `traveler_data_audit`,
/// with the `redact` columns (and card ciphertext, always) replaced by a marker.
/// Running it again replaces the trigger, so the redaction list can change.
#[pg_extern]
fn enable_audit(target: PgRelation, redact: default!(Vec<String>, "'{}'")) {
    let table = oid_of(target);
    let (schema, name) = qualified_name(table);
    if (schema.as_str(), name.as_str()) == ("public", "traveler_data_audit") {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "enable_audit: the audit table cannot audit itself");
    }
    let columns = table_columns(table);
    if let Some(unknown) = redact.iter().find(|c| !columns.contains(c)) {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("enable_audit: {schema}.{name} has no column {unknown} to redact"),
        );
    }
    let arguments: Vec<String> = redacted_columns(&redact, &columns).iter().map(quote_literal).collect();
    Spi::run(&format!(
        "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} \
         FOR EACH ROW EXECUTE FUNCTION wallet.audit_trigger({})",
        quote_identifier(AUDIT_TRIGGER),
        quote_qualified_identifier(&schema, &name),
        arguments.join(", ")
    ))
    .unwrap_or_else(|e| spi_failed(e));
}

/// Stops auditing `target`. Idempotent.
#[pg_extern]
fn disable_audit(target: PgRelation) {
    let table = oid_of(target);
    let (schema, name) = qualified_name(table);
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
        &[table.into(), AUDIT_TRIGGER.into()],
    )
    .unwrap_or_else(|e| spi_failed(e))
    .unwrap_or(false);
    if exists {
        Spi::run(&format!(
            "DROP TRIGGER {} ON {}",
            quote_identifier(AUDIT_TRIGGER),
            quote_qualified_identifier(&schema, &name)
        ))
        .unwrap_or_else(|e| spi_failed(e));
    }
}

/// Reads the trail in chain order (or one traveler's chain), a batch at a time:
/// a cursor, so millions of rows never sit in memory at once.
fn read_trail(only: Option<pgrx::Uuid>, mut each: impl FnMut(AuditRow)) {
    const FETCH_ROWS: std::ffi::c_long = 10_000;
    let sql = if audit_table_has_v2() { crate::audit::CHAIN_SQL } else { crate::audit::CHAIN_V1_SQL };
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(sql, &[only.into()])?;
        loop {
            let batch = cursor.fetch(FETCH_ROWS)?;
            if batch.is_empty() {
                return Ok::<_, pgrx::spi::Error>(());
            }
            for row in batch {
                let uuid = |i: usize| row.get::<pgrx::Uuid>(i).map(|u| u.map(as_uuid_bytes));
                each(AuditRow {
                    id: uuid(1)?.unwrap_or_default(),
                    user_id: uuid(2)?.unwrap_or_default(),
                    chain_seq: row.get(3)?.unwrap_or_default(),
                    action: row.get(4)?.unwrap_or_default(),
                    table_name: row.get(5)?.unwrap_or_default(),
                    record_id: uuid(6)?,
                    old_data: row.get(7)?,
                    new_data: row.get(8)?,
                    ip_address: row.get(9)?,
                    user_agent: row.get(10)?,
                    created_at_micros: row.get(11)?.unwrap_or_default(),
                    prev_hash: row.get::<Vec<u8>>(12)?.unwrap_or_default(),
                    row_hash: row.get::<Vec<u8>>(13)?.unwrap_or_default(),
                    hash_version: row.get(14)?.unwrap_or_default(),
                    actor: row.get(15)?,
                    personal_salt: row.get(16)?,
                    redacted_digest: row.get(17)?,
                });
            }
        }
    })
    .unwrap_or_else(|e| spi_failed(e))
}

/// The trail (or one traveler's chain) checked against `heads`.
fn scan_trail(heads: Vec<Head>, only: Option<pgrx::Uuid>) -> Vec<Finding> {
    let mut scan = ChainScan::new(heads);
    read_trail(only, |row| scan.push(row));
    scan.finish()
}

/// Findings as the rows of `wallet.verify_audit_chain`.
fn finding_rows(findings: Vec<Finding>) -> TableIterator<'static, (Option<pgrx::Uuid>, pgrx::Uuid, i64, String)> {
    TableIterator::new(findings.into_iter().map(|f| {
        (f.id.map(pgrx::Uuid::from_bytes), pgrx::Uuid::from_bytes(f.user_id), f.chain_seq, f.reason.as_str().to_owned())
    }))
}

/// The heads of checkpoint `seq`: each traveler's newest head recorded at or
/// before it (a checkpoint stores only the heads that moved since the last).
fn checkpoint_heads(seq: i64) -> Vec<Head> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT DISTINCT ON (user_id) user_id, chain_seq, row_hash FROM public.audit_checkpoint_heads
                  WHERE checkpoint_seq <= $1 ORDER BY user_id, checkpoint_seq DESC",
                None,
                &[seq.into()],
            )?
            .map(|row| {
                Ok(Head {
                    user_id: row.get::<pgrx::Uuid>(1)?.map(as_uuid_bytes).unwrap_or_default(),
                    chain_seq: row.get(2)?.unwrap_or_default(),
                    row_hash: row.get(3)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| spi_failed(e))
}

/// The heads of the newest checkpoint in the database; none before the first
/// checkpoint (or before migration 0011).
fn newest_checkpoint_heads() -> Vec<Head> {
    let has_checkpoints = Spi::get_one::<bool>("SELECT to_regclass('public.audit_checkpoints') IS NOT NULL")
        .unwrap_or_else(|e| spi_failed(e))
        .unwrap_or(false);
    if !has_checkpoints {
        return Vec::new();
    }
    let newest = Spi::get_one::<i64>("SELECT max(seq) FROM public.audit_checkpoints").unwrap_or_else(|e| spi_failed(e));
    newest.map(checkpoint_heads).unwrap_or_default()
}

/// The heads a checkpoint recorded: for each traveler, the newest row of their
/// chain when checkpoint `checkpoint_seq` was taken.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn audit_checkpoint_heads(
    checkpoint_seq: i64,
) -> TableIterator<'static, (name!(user_id, pgrx::Uuid), name!(chain_seq, i64), name!(row_hash, Vec<u8>))> {
    TableIterator::new(
        checkpoint_heads(checkpoint_seq)
            .into_iter()
            .map(|h| (pgrx::Uuid::from_bytes(h.user_id), h.chain_seq, h.row_hash)),
    )
}

/// Every broken chain: for each traveler whose chain breaks, its first broken
/// row with the reason; each chain that departs from the newest checkpoint in
/// the database (trusted as stored: `kms-sidecar audit-verify` checks its
/// signature first, then calls the form below); no row when all is intact.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn verify_audit_chain() -> TableIterator<
    'static,
    (name!(id, Option<pgrx::Uuid>), name!(user_id, pgrx::Uuid), name!(chain_seq, i64), name!(reason, String)),
> {
    finding_rows(scan_trail(newest_checkpoint_heads(), None))
}

/// [`verify_audit_chain`] against the heads given (three arrays of one length),
/// those of a checkpoint whose signature the caller has checked.
#[pg_extern(stable, name = "verify_audit_chain")]
#[search_path(pg_catalog, pg_temp)]
fn verify_audit_chain_against<'a>(
    head_users: Vec<pgrx::Uuid>,
    head_seqs: Vec<i64>,
    head_hashes: pgrx::Array<'a, &'a [u8]>,
) -> TableIterator<
    'static,
    (name!(id, Option<pgrx::Uuid>), name!(user_id, pgrx::Uuid), name!(chain_seq, i64), name!(reason, String)),
> {
    if head_users.len() != head_seqs.len() || head_users.len() != head_hashes.len() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "verify_audit_chain: head_users, head_seqs and head_hashes must have one length",
        );
    }
    let heads = head_users
        .into_iter()
        .zip(head_seqs)
        .zip(head_hashes.iter())
        .map(|((user, chain_seq), row_hash)| Head {
            user_id: as_uuid_bytes(user),
            chain_seq,
            row_hash: row_hash.unwrap_or_default().to_vec(),
        })
        .collect();
    finding_rows(scan_trail(heads, None))
}

/// Redacts the rows of $1's chain named in $3 (sequence numbers), storing the
/// digests $4 computed from them: old and new row values become the marker $2
/// (keys kept), address, user agent and salt go. Returns what it left, for the
/// caller to hold against what it read before.
const REDACT_ROWS_SQL: &str = concat!(
    "UPDATE public.traveler_data_audit a
        SET redacted_digest = d.digest,
            old_data = CASE WHEN a.old_data IS NOT NULL THEN
                         (SELECT coalesce(jsonb_object_agg(k, to_jsonb($2::text)), '{}') FROM jsonb_object_keys(a.old_data) k)
                       END,
            new_data = CASE WHEN a.new_data IS NOT NULL THEN
                         (SELECT coalesce(jsonb_object_agg(k, to_jsonb($2::text)), '{}') FROM jsonb_object_keys(a.new_data) k)
                       END,
            ip_address = NULL,
            user_agent = NULL,
            personal_salt = NULL
       FROM unnest($3::bigint[], $4::bytea[]) AS d(chain_seq, digest)
      WHERE a.user_id = $1 AND a.chain_seq = d.chain_seq AND a.redacted_digest IS NULL
  RETURNING a.id, a.chain_seq, a.action, a.table_name, a.record_id, a.actor, ",
    audit_chain::micros!("a.created_at"),
    ", a.prev_hash, a.row_hash, a.hash_version, a.redacted_digest, a.old_data::text, a.new_data::text"
);

/// Appends the redaction row to $2's chain: id $1, `new_data` $3 (what was
/// redacted and why), actor $4.
const REDACTION_INSERT_SQL: &str = concat!(
    "INSERT INTO public.traveler_data_audit
       (id, user_id, chain_seq, action, table_name, record_id, old_data, new_data,
        ip_address, user_agent, created_at, prev_hash, row_hash, hash_version, actor)
     SELECT $1, $2, v.chain_seq, 'REDACT', 'traveler_data_audit', NULL, NULL, v.new_data, NULL, NULL,
            v.created_at, v.prev_hash,
            wallet.audit_row_hash_v2(v.prev_hash, $1, $2, v.chain_seq, 'REDACT', 'traveler_data_audit', NULL,
                                     v.actor, ",
    audit_chain::micros!("v.created_at"),
    ", wallet.audit_personal_digest(NULL, NULL, v.new_data::text, NULL, NULL)),
            2, v.actor
       FROM (SELECT now() AS created_at, $3::jsonb AS new_data, $4::text AS actor, ",
    next_link!("$2"),
    ") AS v
  RETURNING id, chain_seq, row_hash"
);

/// One traveler's chain, read and checked.
fn verified_chain(user_id: pgrx::Uuid) -> (Vec<AuditRow>, Vec<Finding>) {
    let (mut rows, mut scan) = (Vec::new(), ChainScan::default());
    read_trail(Some(user_id), |row| {
        rows.push(row.clone());
        scan.push(row);
    });
    (rows, scan.finish())
}

/// Erasure's part in the audit trail: removes `user_id`'s personal data from
/// every row of their chain, keeping each row's hash verifiable, and appends a
/// redaction row that names each row redacted (its hash and the digest of what
/// was removed) and `reason`. Returns that row, which `kms-sidecar audit-redact`
/// signs in the same transaction; nothing when there was nothing left to redact.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn redact_audit(
    user_id: pgrx::Uuid,
    reason: &str,
) -> TableIterator<
    'static,
    (name!(audit_id, pgrx::Uuid), name!(chain_seq, i64), name!(row_hash, Vec<u8>), name!(redacted_rows, i64)),
> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "redact_audit: reason must be 1 to 500 bytes");
    }
    if !audit_table_has_v2() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "redact_audit: apply migration 0011 first (the audit table has no redaction columns)",
        );
    }
    let user = as_uuid_bytes(user_id);
    lock_chain(&user);
    // The chain as it stands must verify (an edit must not become an erasure
    // under a signature); what is redacted is computed from the rows so checked.
    let (chain, findings) = verified_chain(user_id);
    if let Some(finding) = findings.first() {
        raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!(
                "redact_audit: the audit chain of {user_id} does not verify ({} at chain_seq {}); investigate before erasing",
                finding.reason.as_str(),
                finding.chain_seq
            ),
        );
    }
    let mut expected: Vec<AuditRow> = chain
        .into_iter()
        .filter(|row| row.redacted_digest.is_none() && row.action != REDACT_ACTION)
        .map(|mut row| {
            // A first-format row's digest is never recomputed: a throwaway salt
            // keeps it from confirming guesses all the same.
            let salt = row.personal_salt.take().unwrap_or_else(|| uuid::Uuid::new_v4().as_bytes().to_vec());
            row.personal_salt = Some(salt);
            row.redacted_digest = Some(row.personal_digest().to_vec());
            row.personal_salt = None;
            row
        })
        .collect();
    if expected.is_empty() {
        return TableIterator::new(None);
    }
    let seqs: Vec<i64> = expected.iter().map(|r| r.chain_seq).collect();
    let digests: Vec<Vec<u8>> = expected.iter().map(|r| r.redacted_digest.clone().unwrap_or_default()).collect();
    let redacted: Vec<AuditRow> = Spi::connect_mut(|client| {
        client
            .update(
                REDACT_ROWS_SQL,
                None,
                &[user_id.into(), crate::audit::REDACTED_MARKER.into(), seqs.into(), digests.into()],
            )?
            .map(|row| {
                let uuid = |i: usize| row.get::<pgrx::Uuid>(i).map(|u| u.map(as_uuid_bytes));
                Ok(AuditRow {
                    id: uuid(1)?.unwrap_or_default(),
                    user_id: user,
                    chain_seq: row.get(2)?.unwrap_or_default(),
                    action: row.get(3)?.unwrap_or_default(),
                    table_name: row.get(4)?.unwrap_or_default(),
                    record_id: uuid(5)?,
                    actor: row.get(6)?,
                    created_at_micros: row.get(7)?.unwrap_or_default(),
                    prev_hash: row.get(8)?.unwrap_or_default(),
                    row_hash: row.get(9)?.unwrap_or_default(),
                    hash_version: row.get(10)?.unwrap_or_default(),
                    redacted_digest: row.get(11)?,
                    old_data: row.get(12)?,
                    new_data: row.get(13)?,
                    ..AuditRow::default()
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| spi_failed(e));
    // What was written must be what was read and checked, row for row (a
    // trigger on the audit table could otherwise change it on the way).
    let mut entries: Vec<RedactionEntry> = redacted.iter().filter_map(RedactionEntry::of).collect();
    entries.sort_by_key(|e| e.chain_seq);
    expected.sort_by_key(|r| r.chain_seq);
    let unchanged = entries.len() == expected.len()
        && entries.iter().zip(&expected).all(|(written, read)| {
            written.chain_seq == read.chain_seq
                && written.row_hash == hex::encode(&read.row_hash)
                && written.hash_version == read.hash_version
                && Some(written.personal_digest.clone()) == read.redacted_digest.as_ref().map(hex::encode)
                && written.place_digest == hex::encode(place_digest(read))
        });
    if !unchanged {
        raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("redact_audit: the audit rows of {user_id} changed while being redacted; nothing was redacted"),
        );
    }
    let record =
        serde_json::to_value(RedactionRecord { reason: reason.to_owned(), redacted: entries }).unwrap_or_default();
    let id = pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes());
    Spi::connect_mut(|client| {
        client.update(
            REDACTION_INSERT_SQL,
            None,
            &[id.into(), user_id.into(), pgrx::JsonB(record).into(), current_actor().into()],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    })
    .unwrap_or_else(|e| spi_failed(e));
    // The chain with its redaction row must verify as a whole, and end in it:
    // that row's hash is what the caller signs.
    let (after, findings) = verified_chain(user_id);
    let last = after.last().filter(|row| row.id == *id.as_bytes() && findings.is_empty());
    let Some(last) = last else {
        raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!(
                "redact_audit: the audit chain of {user_id} does not verify after its redaction; nothing was redacted"
            ),
        );
    };
    let redaction = Some((id, last.chain_seq, last.row_hash.clone(), redacted.len() as i64));
    TableIterator::new(redaction)
}

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

    fn audit_count(filter: &str) -> i64 {
        Spi::get_one::<i64>(&format!("SELECT count(*) FROM traveler_data_audit WHERE {filter}")).unwrap().unwrap()
    }

    #[pg_test]
    fn audit_records_each_change_with_request_context() {
        install_schema();
        Spi::run(r#"SELECT set_config('request.headers', '{"x-forwarded-for":"203.0.113.7, 10.0.0.1","user-agent":"parker-app/2.1"}', true)"#).unwrap();
        Spi::run(&format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{ALICE}', 'Ada')")).unwrap();
        Spi::run("UPDATE traveler_profiles SET first_name = 'Ada'").unwrap();
        assert_eq!(audit_count("true"), 1, "an update that changes nothing is not logged");
        Spi::run("UPDATE traveler_profiles SET first_name = 'Augusta'").unwrap();
        Spi::run("DELETE FROM traveler_profiles").unwrap();
        let actions =
            Spi::get_one::<Vec<String>>("SELECT array_agg(action ORDER BY chain_seq) FROM traveler_data_audit")
                .unwrap();
        assert_eq!(actions, Some(vec!["INSERT".into(), "UPDATE".into(), "DELETE".into()]));
        let (ip, agent) = Spi::get_two::<String, String>(
            "SELECT host(ip_address), user_agent FROM traveler_data_audit WHERE chain_seq = 2",
        )
        .unwrap();
        assert_eq!((ip.as_deref(), agent.as_deref()), (Some("203.0.113.7"), Some("parker-app/2.1")));
        let (old, new) = Spi::get_two::<String, String>(
            "SELECT old_data ->> 'first_name', new_data ->> 'first_name' FROM traveler_data_audit WHERE action = 'UPDATE'",
        )
        .unwrap();
        assert_eq!((old.as_deref(), new.as_deref()), (Some("Ada"), Some("Augusta")));
        assert_eq!(
            audit_count(&format!("user_id = '{ALICE}' AND record_id IS NOT NULL AND table_name = 'traveler_profiles'")),
            3
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM wallet.verify_audit_chain()").unwrap(), Some(0));
    }

    #[pg_test]
    fn a_malformed_forwarded_for_is_stored_as_null_and_the_write_succeeds() {
        install_schema();
        Spi::run(r#"SELECT set_config('request.headers', '{"x-forwarded-for":"not-an-ip"}', true)"#).unwrap();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'Lisbon')")).unwrap();
        assert_eq!(audit_count("table_name = 'campaigns' AND ip_address IS NULL"), 1);
        Spi::run(r#"SELECT set_config('request.headers', '{"x-real-ip":"198.51.100.4"}', true)"#).unwrap();
        Spi::run("UPDATE campaigns SET name = 'Porto'").unwrap();
        assert_eq!(audit_count("host(ip_address) = '198.51.100.4'"), 1);
    }

    #[pg_test]
    fn card_ciphertext_never_reaches_the_audit_trail() {
        install_schema();
        add_card(ALICE, "one", 2099);
        let (old, new) = Spi::get_two::<String, String>(
            "SELECT old_data::text, new_data ->> 'encrypted_card_data' FROM traveler_data_audit WHERE table_name = 'payment_methods'",
        )
        .unwrap();
        assert_eq!((old, new.as_deref()), (None, Some("[redacted]")));
        assert_eq!(audit_count("new_data::text LIKE '%abcdef%'"), 0);
    }

    /// Alice's campaign created and renamed twice: a chain of three audit rows.
    fn three_audited_changes() {
        install_schema();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'a')")).unwrap();
        Spi::run("UPDATE campaigns SET name = 'b'").unwrap();
        Spi::run("UPDATE campaigns SET name = 'c'").unwrap();
    }

    #[pg_test]
    fn a_tampered_row_is_reported_by_the_chain_check() {
        three_audited_changes();
        // The superuser owns the table, so the append-only guard lets it through.
        Spi::run("UPDATE traveler_data_audit SET new_data = '{\"name\":\"forged\"}' WHERE chain_seq = 2").unwrap();
        let (seq, reason) =
            Spi::get_two::<i64, String>("SELECT chain_seq, reason FROM wallet.verify_audit_chain()").unwrap();
        assert_eq!((seq, reason.as_deref()), (Some(2), Some("content_changed")));
    }

    #[pg_test]
    fn a_deleted_audit_row_is_reported() {
        three_audited_changes();
        Spi::run("DELETE FROM traveler_data_audit WHERE chain_seq = 2").unwrap();
        let (seq, reason) =
            Spi::get_two::<i64, String>("SELECT chain_seq, reason FROM wallet.verify_audit_chain()").unwrap();
        assert_eq!((seq, reason.as_deref()), (Some(3), Some("sequence_gap")));
    }

    fn findings() -> Vec<(i64, String)> {
        Spi::connect(|client| {
            client
                .select("SELECT chain_seq, reason FROM wallet.verify_audit_chain() ORDER BY chain_seq", None, &[])
                .unwrap()
                .map(|row| (row.get::<i64>(1).unwrap().unwrap(), row.get::<String>(2).unwrap().unwrap()))
                .collect()
        })
    }

    #[pg_test]
    fn rows_name_their_actor_in_the_second_format() {
        three_audited_changes();
        set_claims(&format!(r#"{{"sub":"{ALICE}","iss":"parker-wallet/reconciler"}}"#));
        Spi::run("UPDATE campaigns SET name = 'd'").unwrap();
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        Spi::run("UPDATE campaigns SET name = 'e'").unwrap();
        let actors = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(actor ORDER BY chain_seq) FROM traveler_data_audit WHERE hash_version = 2",
        )
        .unwrap()
        .unwrap();
        assert_eq!(actors.len(), 5);
        assert!(actors[0].starts_with("role:"), "{actors:?}");
        assert_eq!(actors[3], "system:parker-wallet/reconciler");
        assert_eq!(actors[4], format!("user:{ALICE}"));
        assert_eq!(findings(), []);
        Spi::run("UPDATE traveler_data_audit SET actor = 'user:someone-else' WHERE chain_seq = 5").unwrap();
        assert_eq!(findings(), [(5, "content_changed".to_owned())]);
    }

    #[pg_test]
    fn a_redaction_removes_personal_data_and_the_chain_still_verifies() {
        install_schema();
        Spi::run(r#"SELECT set_config('request.headers', '{"x-forwarded-for":"203.0.113.7","user-agent":"parker-app/2.1"}', true)"#).unwrap();
        Spi::run(&format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{ALICE}', 'Ada')")).unwrap();
        Spi::run("UPDATE traveler_profiles SET first_name = 'Augusta'").unwrap();
        let (seq, redacted) = Spi::get_two_with_args::<i64, i64>(
            "SELECT chain_seq, redacted_rows FROM wallet.redact_audit($1, 'erasure request 42')",
            &[pgrx::Uuid::from_bytes(*uuid::Uuid::parse_str(ALICE).unwrap().as_bytes()).into()],
        )
        .unwrap();
        assert_eq!((seq, redacted), (Some(3), Some(2)));
        let leaks = "(coalesce(old_data::text, '') || coalesce(new_data::text, '')) ~ '(Ada|Augusta)'
                     OR ip_address IS NOT NULL OR user_agent IS NOT NULL";
        assert_eq!(audit_count(leaks), 0);
        assert_eq!(audit_count("action = 'REDACT' AND new_data ->> 'reason' = 'erasure request 42'"), 1);
        assert_eq!(findings(), []);
        let again = Spi::get_one::<i64>(&format!("SELECT count(*) FROM wallet.redact_audit('{ALICE}', 'again')"));
        assert_eq!(again.unwrap(), Some(0), "nothing left to redact: no second redaction row");

        Spi::run("UPDATE traveler_data_audit SET action = 'DELETE' WHERE chain_seq = 2").unwrap();
        assert_eq!(findings(), [(2, "content_changed".to_owned())]);
    }

    #[pg_test]
    fn content_passed_off_as_redacted_is_reported() {
        three_audited_changes();
        // Exactly what a redaction leaves, but with no redaction row naming it.
        Spi::run(
            "UPDATE traveler_data_audit
                SET redacted_digest = wallet.audit_personal_digest(personal_salt, old_data::text, new_data::text,
                                                                   ip_address::text, user_agent),
                    personal_salt = NULL, ip_address = NULL, user_agent = NULL,
                    old_data = (SELECT jsonb_object_agg(k, '\"[redacted]\"'::jsonb) FROM jsonb_object_keys(old_data) k),
                    new_data = (SELECT jsonb_object_agg(k, '\"[redacted]\"'::jsonb) FROM jsonb_object_keys(new_data) k)
              WHERE chain_seq = 2",
        )
        .unwrap();
        assert_eq!(findings(), [(2, "redaction_unrecorded".to_owned())]);
    }

    #[pg_test(
        error = "redact_audit: the audit rows of 11111111-1111-4111-8111-111111111111 changed while being redacted; nothing was redacted"
    )]
    fn a_trigger_cannot_change_what_a_redaction_signs() {
        three_audited_changes();
        // The table's owner may attach triggers to it: one that edits rows as
        // they are redacted must not get its edit signed as part of the erasure.
        Spi::run(
            "CREATE FUNCTION public.meddle() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.table_name := 'nothing_to_see'; RETURN NEW; END $$;
             CREATE TRIGGER meddle BEFORE UPDATE ON traveler_data_audit
               FOR EACH ROW EXECUTE FUNCTION public.meddle()",
        )
        .unwrap();
        Spi::run(&format!("SELECT * FROM wallet.redact_audit('{ALICE}', 'erasure 9')")).unwrap();
    }

    /// A checkpoint of the chains as they are, as `kms-sidecar audit-checkpoint`
    /// records it (its signature is the sidecar's to check, not the database's).
    fn checkpoint_now() {
        Spi::run(
            "INSERT INTO audit_checkpoints VALUES (1, now(), 1, '\\x00', '\\x00', '\\x00', 'k', 'ECDSA_SHA_256', '\\x00');
             INSERT INTO audit_checkpoint_heads
             SELECT DISTINCT ON (user_id) 1, user_id, chain_seq, row_hash FROM traveler_data_audit
              ORDER BY user_id, chain_seq DESC",
        )
        .unwrap();
    }

    #[pg_test]
    fn a_chain_cut_back_or_rewritten_after_a_checkpoint_is_reported() {
        three_audited_changes();
        checkpoint_now();
        Spi::run("UPDATE campaigns SET name = 'd'").unwrap();
        assert_eq!(findings(), [], "growing past the checkpoint is what chains do");
        Spi::run("DELETE FROM traveler_data_audit WHERE chain_seq >= 3").unwrap();
        assert_eq!(findings(), [(3, "chain_truncated".to_owned())]);
        Spi::run("DELETE FROM traveler_data_audit").unwrap();
        assert_eq!(findings(), [(3, "chain_vanished".to_owned())]);
    }

    #[pg_test]
    fn heads_can_be_given_instead_of_read() {
        three_audited_changes();
        let heads = format!(
            "ARRAY['{ALICE}']::uuid[], ARRAY[3]::bigint[],
             ARRAY[(SELECT row_hash FROM traveler_data_audit WHERE chain_seq = 3)]"
        );
        let count = |heads: &str| {
            Spi::get_one::<i64>(&format!("SELECT count(*) FROM wallet.verify_audit_chain({heads})")).unwrap().unwrap()
        };
        assert_eq!(count(&heads), 0);
        assert_eq!(count(&format!("ARRAY['{ALICE}']::uuid[], ARRAY[3]::bigint[], ARRAY['\\x00'::bytea]")), 1);
    }

    #[pg_test(error = "traveler_data_audit is append-only: DELETE refused")]
    fn the_audit_trail_is_append_only_for_other_roles() {
        install_schema();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'a')")).unwrap();
        Spi::run("GRANT DELETE ON traveler_data_audit TO service_role").unwrap();
        Spi::run("SET LOCAL ROLE service_role").unwrap();
        Spi::run("DELETE FROM traveler_data_audit").unwrap();
    }

    #[pg_test]
    fn enable_audit_is_idempotent_and_disable_removes_it() {
        install_schema();
        for _ in 0..2 {
            Spi::run("SELECT wallet.enable_audit('public.campaigns', ARRAY['name'])").unwrap();
        }
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'secret trip')")).unwrap();
        assert_eq!(audit_count("new_data ->> 'name' = '[redacted]'"), 1);
        for _ in 0..2 {
            Spi::run("SELECT wallet.disable_audit('public.campaigns')").unwrap();
        }
        Spi::run("UPDATE campaigns SET name = 'x'").unwrap();
        assert_eq!(audit_count("table_name = 'campaigns'"), 1);
    }

    #[pg_test]
    fn rows_without_an_owner_column_are_attributed_to_the_caller() {
        install_schema();
        Spi::run("CREATE TABLE public.notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text)").unwrap();
        Spi::run("SELECT wallet.enable_audit('public.notes')").unwrap();
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        Spi::run("INSERT INTO notes (body) VALUES ('x')").unwrap();
        assert_eq!(audit_count(&format!("table_name = 'notes' AND user_id = '{BOB}'")), 1);
    }
}
