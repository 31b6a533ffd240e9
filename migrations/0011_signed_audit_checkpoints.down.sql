-- Refused once the trail holds evidence only 0011's columns can verify: rows of
-- the second format would no longer verify, redactions would look like tampering.
DO $$
BEGIN
  IF EXISTS (SELECT FROM public.traveler_data_audit WHERE hash_version <> 1 OR redacted_digest IS NOT NULL)
     OR EXISTS (SELECT FROM public.audit_checkpoints) THEN
    RAISE EXCEPTION 'the audit trail holds rows, redactions or checkpoints of migration 0011: reverting it would make them unverifiable';
  END IF;
END
$$;

DROP TABLE public.audit_redaction_signatures, public.audit_checkpoint_heads, public.audit_checkpoints;

CREATE OR REPLACE FUNCTION wallet_internal.refuse_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
    RAISE EXCEPTION 'traveler_data_audit is append-only: % refused', TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_LEVEL = 'STATEMENT' THEN
    RETURN NULL;
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DROP INDEX public.traveler_data_audit_redactions;
ALTER TABLE public.traveler_data_audit DROP CONSTRAINT traveler_data_audit_action_check;
ALTER TABLE public.traveler_data_audit ADD CONSTRAINT traveler_data_audit_action_check
  CHECK (action IN ('INSERT', 'UPDATE', 'DELETE'));
ALTER TABLE public.traveler_data_audit DROP COLUMN redacted_digest, DROP COLUMN personal_salt, DROP COLUMN actor,
  DROP COLUMN hash_version;
