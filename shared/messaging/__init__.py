"""Reliable messaging: transactional outbox, inbox deduplication, dead letters, the consumer runtime."""
