"""The connector's whole error tree; each foreign library's errors are translated into it at one boundary.

::

    ConnectorError                    every error the connector raises on purpose
    ├── ConfigError                   bad settings or usage (exit code 2); names the offending key
    ├── VenueDataError                venue data that cannot become a record: it goes to the DLQ
    │   ├── MappingError              a venue field the record schema cannot hold (no id, a time
    │   │                             beyond timestamp-nanos)
    │   └── RecordRefused             Kafka refuses the record for itself (larger than it takes)
    ├── TransientFailure              a dependency is unavailable: retried with backoff, never fatal;
    │   │                             the service stays up, not ready, the reason in /status
    │   ├── KafkaUnavailable          Kafka does not answer (start-up reads, topic check)
    │   ├── TokenEndpointUnavailable  the token endpoint does not answer or fails (5xx)
    │   └── SchemaRegistryUnavailable the Schema Registry does not answer or fails (5xx)
    └── RuntimeFailure                the service cannot go on (exit code 1), in one line
        ├── CredentialsRefused        the token endpoint refused the client (bad key, client id)
        ├── StreamRefused             the venue refused the subscription (permission, bad filter)
        ├── SearchRefused             the venue refused the execution search (403: missing scope)
        ├── FatalProducerError        the producer cannot continue (fenced, authorization, a gap)
        ├── LeadershipLost            another instance leads now (connector.leader_election)
        ├── TopicsUnavailable         a topic is missing and cannot be created, or may not be written
        ├── SchemaNotRegistered       a schema ID cannot be found and may not be registered
        └── EmbeddedKafkaError        the embedded (mock) Kafka cluster refused an operation

A bug in the connector's own code (``TypeError``, ``AttributeError``, ...) is none of these: it is
never caught as venue data, so it ends the process loudly and the completeness frontier stays where
it was (the restart recovers from the checkpoint).
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """Bad configuration or command-line usage; the message names the key and the problem."""


class VenueDataError(ConnectorError):
    """A venue event that cannot become a record; the event goes to the dead-letter topic."""


class MappingError(VenueDataError, ValueError):
    """A venue field the record schema cannot hold (no id, a time beyond ``timestamp-nanos``)."""


class RecordRefused(VenueDataError):
    """Kafka refuses the record itself (larger than ``message.max.bytes``): it goes to the DLQ."""


class TransientFailure(ConnectorError):
    """A dependency is unavailable for now; the caller retries with backoff."""


class KafkaUnavailable(TransientFailure):
    """Kafka does not answer (or a partition has no leader) within the request's deadline."""


class TokenEndpointUnavailable(TransientFailure):
    """The token endpoint could not be reached or answered with a server error (retryable)."""


class SchemaRegistryUnavailable(TransientFailure):
    """The Schema Registry could not be reached or answered with a server error (retryable)."""


class RuntimeFailure(ConnectorError):
    """The service cannot continue; the message says why in one line."""


class CredentialsRefused(RuntimeFailure):
    """The token endpoint refused the client's credentials; retrying cannot help."""


class StreamRefused(RuntimeFailure):
    """The venue refused the subscription for a reason that retrying cannot fix."""


class SearchRefused(RuntimeFailure):
    """The venue refused the execution search for a reason that retrying cannot fix (403)."""


class FatalProducerError(RuntimeFailure):
    """The producer hit a fatal error (fenced, authorisation, a gap it may not leave); exit."""


class LeadershipLost(RuntimeFailure):
    """This instance no longer leads (the election moved on, or the process was paused too long)."""


class TopicsUnavailable(RuntimeFailure):
    """A topic is missing and cannot be created, or the connector may not write to it."""


class SchemaNotRegistered(RuntimeFailure):
    """A schema ID cannot be found in the registry and may not be registered."""


class EmbeddedKafkaError(RuntimeFailure):
    """The embedded Kafka cluster (librdkafka's mock cluster) refused an operation."""
