"""The node <-> hub wire: message schema, durable outbox, senders, ZeroMQ/CURVE."""
