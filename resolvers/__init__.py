"""Use cases: plain async functions on (session, actor, input), knowing nothing of GraphQL."""
