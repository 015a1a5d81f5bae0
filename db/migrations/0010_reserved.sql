-- Number 0010 belongs to the outbound ledger's approval-notice change, which lands beside the
-- channel accounts of 0011; until it does, this keeps the numbering contiguous. It changes
-- nothing.
SELECT 1;
