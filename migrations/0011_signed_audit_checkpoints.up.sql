-- The audit trail made provable to an auditor who trusts only KMS (docs/extension.md,
-- "What the trail proves"):
-- * the second hash format: who acted (`actor`) is hashed, and the personal
--   fields enter the hash through their own digest, so that an erasure can remove
--   them, keep the digest (`redacted_digest`) and leave every hash verifiable;
-- * redaction rows (action REDACT), each signed through KMS by
--   `kms-sidecar audit-redact` (audit_redaction_signatures);
-- * KMS-signed checkpoints of every chain's head (`kms-sidecar audit-checkpoint`).
-- The three tables are append-only like the trail, and no API role reads them.
DO $$
BEGIN
  IF to_regprocedure('wallet.audit_row_hash_v2(bytea, uuid, uuid, bigint, text, text, uuid, text, bigint, bytea)') IS NULL THEN
    RAISE EXCEPTION 'migration 0011 needs parker_wallet 0.4.0 (the second audit hash format)'
      USING HINT = 'ALTER EXTENSION parker_wallet UPDATE, then migrate again.';
  END IF;
END
$$;

-- Rows already written keep the first format (the column's default).
ALTER TABLE public.traveler_data_audit
  ADD COLUMN hash_version smallint NOT NULL DEFAULT 1 CHECK (hash_version IN (1, 2)),
  ADD COLUMN actor text,
  -- Random per row; the personal digest covers it, a redaction removes it (so
  -- the digest kept cannot confirm a guess at what was erased).
  ADD COLUMN personal_salt bytea,
  ADD COLUMN redacted_digest bytea CHECK (octet_length(redacted_digest) = 32);
-- Existing rows hold one of the three older actions: no need to scan them.
ALTER TABLE public.traveler_data_audit DROP CONSTRAINT traveler_data_audit_action_check;
ALTER TABLE public.traveler_data_audit ADD CONSTRAINT traveler_data_audit_action_check
  CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'REDACT')) NOT VALID;
-- audit-verify checks the signature of every redaction row.
CREATE INDEX traveler_data_audit_redactions ON public.traveler_data_audit (user_id, chain_seq)
  WHERE action = 'REDACT';

-- The append-only guard, naming whichever table it guards.
CREATE OR REPLACE FUNCTION wallet_internal.refuse_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_LEVEL = 'STATEMENT' THEN
    RETURN NULL;
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

-- One row per checkpoint. `digest` is what the KMS key signed; it covers the
-- checkpoint's number, time, the digest of every head, their count and the
-- digest of the checkpoint before (docs/extension.md has the layout), so a
-- checkpoint removed from the middle breaks the sequence.
CREATE TABLE public.audit_checkpoints (
  seq               bigint PRIMARY KEY CHECK (seq > 0),
  created_at        timestamptz NOT NULL,
  head_count        bigint NOT NULL CHECK (head_count >= 0),
  heads_digest      bytea NOT NULL,
  prev_digest       bytea NOT NULL,
  digest            bytea NOT NULL,
  key_id            text NOT NULL,
  signing_algorithm text NOT NULL,
  signature         bytea NOT NULL
);
-- The heads that moved since the checkpoint before (every head, in the first):
-- a checkpoint's heads are each traveler's newest row here at or before it.
CREATE TABLE public.audit_checkpoint_heads (
  checkpoint_seq bigint NOT NULL,
  user_id        uuid NOT NULL,
  chain_seq      bigint NOT NULL,
  row_hash       bytea NOT NULL CHECK (octet_length(row_hash) = 32),
  PRIMARY KEY (user_id, checkpoint_seq)
);
-- The KMS signature over each redaction row, written in the redaction's transaction.
CREATE TABLE public.audit_redaction_signatures (
  audit_id          uuid PRIMARY KEY,
  key_id            text NOT NULL,
  signing_algorithm text NOT NULL,
  signature         bytea NOT NULL,
  signed_at         timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE
  t regclass;
BEGIN
  FOREACH t IN ARRAY ARRAY['public.audit_checkpoints', 'public.audit_checkpoint_heads',
                           'public.audit_redaction_signatures']::regclass[] LOOP
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %s
                      FOR EACH ROW EXECUTE FUNCTION wallet_internal.refuse_audit_rewrite()', t);
    EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %s
                      FOR EACH STATEMENT EXECUTE FUNCTION wallet_internal.refuse_audit_rewrite()', t);
    -- The operator writes and reads them (past RLS); no API role does.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY no_direct_access ON %s FOR ALL TO public USING (false) WITH CHECK (false)', t);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, anon, authenticated, service_role', t);
  END LOOP;
END
$$;
