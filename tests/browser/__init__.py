"""Browser sessions (gateway/browser/): cookies, sealing, CSRF, transparent refresh, Chromium."""
