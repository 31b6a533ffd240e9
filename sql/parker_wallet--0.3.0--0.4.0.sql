-- parker_wallet 0.3.0 -> 0.4.0: an audit trail the database owner cannot quietly rewrite.
--
-- * The second audit hash format (the actor hashed; personal fields behind their
--   own digest): wallet.audit_row_hash_v2 and wallet.audit_personal_digest, for
--   the audit trigger's role (and the operator, who redacts).
-- * wallet.redact_audit(user_id, reason): an erasure's redaction, recorded in
--   the chain.
-- * wallet.verify_audit_chain() also checks every chain against the newest
--   checkpoint's heads; wallet.verify_audit_chain(users, seqs, hashes) against
--   heads the caller verified; wallet.audit_checkpoint_heads(seq) lists them.
-- The trigger writes the second format once migration 0011 has added its
-- columns (in the library). Nothing here is PUBLIC's.
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.4.0'" to load this file. \quit

CREATE  FUNCTION "audit_personal_digest"(
	"salt" bytea, /* core::option::Option<&[u8]> */
	"old_data" TEXT, /* core::option::Option<&str> */
	"new_data" TEXT, /* core::option::Option<&str> */
	"ip_address" TEXT, /* core::option::Option<&str> */
	"user_agent" TEXT /* core::option::Option<&str> */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_personal_digest_wrapper';

CREATE  FUNCTION "audit_row_hash_v2"(
	"prev_hash" bytea, /* &[u8] */
	"id" uuid, /* pgrx::datum::uuid::Uuid */
	"user_id" uuid, /* pgrx::datum::uuid::Uuid */
	"chain_seq" bigint, /* i64 */
	"action" TEXT, /* &str */
	"table_name" TEXT, /* &str */
	"record_id" uuid, /* core::option::Option<pgrx::datum::uuid::Uuid> */
	"actor" TEXT, /* core::option::Option<&str> */
	"created_at_micros" bigint, /* i64 */
	"personal_digest" bytea /* &[u8] */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_row_hash_v2_wrapper';

CREATE  FUNCTION "audit_checkpoint_heads"(
	"checkpoint_seq" bigint /* i64 */
) RETURNS TABLE (
	"user_id" uuid,  /* pgrx::datum::uuid::Uuid */
	"chain_seq" bigint,  /* i64 */
	"row_hash" bytea  /* alloc::vec::Vec<u8> */
)
STRICT STABLE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_checkpoint_heads_wrapper';

CREATE  FUNCTION "verify_audit_chain"(
	"head_users" uuid[], /* alloc::vec::Vec<pgrx::datum::uuid::Uuid> */
	"head_seqs" bigint[], /* alloc::vec::Vec<i64> */
	"head_hashes" bytea[] /* alloc::vec::Vec<alloc::vec::Vec<u8>> */
) RETURNS TABLE (
	"id" uuid,  /* core::option::Option<pgrx::datum::uuid::Uuid> */
	"user_id" uuid,  /* pgrx::datum::uuid::Uuid */
	"chain_seq" bigint,  /* i64 */
	"reason" TEXT  /* alloc::string::String */
)
STRICT STABLE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_audit_chain_against_wrapper';

CREATE  FUNCTION "redact_audit"(
	"user_id" uuid, /* pgrx::datum::uuid::Uuid */
	"reason" TEXT /* &str */
) RETURNS TABLE (
	"audit_id" uuid,  /* pgrx::datum::uuid::Uuid */
	"chain_seq" bigint,  /* i64 */
	"row_hash" bytea,  /* alloc::vec::Vec<u8> */
	"redacted_rows" bigint  /* i64 */
)
STRICT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redact_audit_wrapper';

REVOKE ALL ON FUNCTION wallet.audit_personal_digest(bytea, text, text, text, text),
  wallet.audit_row_hash_v2(bytea, uuid, uuid, bigint, text, text, uuid, text, bigint, bytea),
  wallet.audit_checkpoint_heads(bigint), wallet.verify_audit_chain(uuid[], bigint[], bytea[]),
  wallet.redact_audit(uuid, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet.audit_row_hash_v2(bytea, uuid, uuid, bigint, text, text, uuid, text, bigint, bytea),
  wallet.audit_personal_digest(bytea, text, text, text, text)
  TO parker_wallet_auditor;
