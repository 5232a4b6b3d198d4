"""Adapters to Kafka: encodings, the publisher, topics and the checkpoint store."""
