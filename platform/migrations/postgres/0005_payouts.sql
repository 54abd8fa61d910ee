-- A seller's payout account as shown back to them: bank code, last four
-- digits, country. The full details live only at the payment provider.
ALTER TABLE seller_accounts ADD COLUMN payout_summary TEXT;
