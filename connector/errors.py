"""The connector's own error tree; each foreign library's errors are translated into it at one boundary.

::

    ConnectorError                 every error the connector raises on purpose
    ├── ConfigError                bad configuration or usage (exit code 2); names the offending key
    └── RuntimeFailure             the service cannot go on (exit code 1)
        └── EmbeddedKafkaError     the embedded (mock) Kafka cluster refused an operation
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """Bad configuration or command-line usage; the message names the key and the problem."""


class RuntimeFailure(ConnectorError):
    """The service cannot continue; the message says why in one line."""


class EmbeddedKafkaError(RuntimeFailure):
    """The embedded Kafka cluster (librdkafka's mock cluster) refused an operation."""
