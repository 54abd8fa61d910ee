-- Which door started a single sign-on flow (the REST API or the web
-- console): its callback URL differs, and the token exchange must send the
-- one the flow started with.
ALTER TABLE oidc_states ADD COLUMN door TEXT NOT NULL DEFAULT 'api';

-- Each step of a job (a pipeline stage) as the runner last reported it, as
-- JSON: what the console and the SSE progress stream show per stage.
ALTER TABLE jobs ADD COLUMN steps TEXT;
