"""pmx-connector: the Polymarket US order and execution stream, delivered into Kafka as Avro."""

from __future__ import annotations

__version__ = "0.1.0"
