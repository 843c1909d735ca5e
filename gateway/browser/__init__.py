"""Browser sessions (cookie mode): cookies, sealing, CSRF, transparent refresh, the pages."""
