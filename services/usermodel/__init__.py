"""The user-model service: events topic -> per-user model in Redis."""
