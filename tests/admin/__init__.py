"""The admin plane (gateway/admin/): the admin API, the console, the operator CLI."""
