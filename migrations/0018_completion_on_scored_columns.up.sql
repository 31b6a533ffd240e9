-- A card counts towards the completion score by its owner and expiry only, so
-- the score is recomputed when those change, not on every UPDATE: switching
-- the default card, or rewriting a card's ciphertext, no longer recomputes it
-- (about a third of such an UPDATE's cost, with its triggers).
-- Replaced in place: no ACCESS EXCLUSIVE lock on the table, as a DROP would take.
CREATE OR REPLACE TRIGGER payment_methods_completion
  AFTER INSERT OR DELETE OR UPDATE OF user_id, exp_month, exp_year ON public.payment_methods
  FOR EACH ROW EXECUTE FUNCTION wallet.completion_trigger();
