"""Settings and key configuration (gateway/config/), the CLI's config checks, the reference page."""
