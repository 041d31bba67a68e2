"""Kafka runtime used by every service: producer, outbox + relay, inbox consumer loop, dead letters."""
