"""Password hashing, session tokens, the current actor, roles and permissions, rate limits."""
