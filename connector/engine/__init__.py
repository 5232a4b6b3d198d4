"""The service, written against ports only: reconnect loop, recovery sessions, checkpoint writer."""
