"""/auth/* and /.well-known/* (gateway/authserver/): token endpoints, logins, federation,
introspection."""
