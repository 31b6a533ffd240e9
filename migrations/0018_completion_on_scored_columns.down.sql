CREATE OR REPLACE TRIGGER payment_methods_completion AFTER INSERT OR UPDATE OR DELETE ON public.payment_methods
  FOR EACH ROW EXECUTE FUNCTION wallet.completion_trigger();
