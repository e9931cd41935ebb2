"""opendts: a self-hosted Data Warehouse Transfer Service with a Supermetrics-compatible API."""

__version__ = "0.1.0"
