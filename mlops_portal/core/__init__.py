"""The core: what every app stands on (roles, policy, audit, errors, the timeline, API
plumbing, domain events, the outbox). It imports no feature app."""
