"""Redis access: connection (URL, TLS, embedded server), key names and Lua scripts."""
