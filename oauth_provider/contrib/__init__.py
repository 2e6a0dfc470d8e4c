"""Integrations with other libraries, each importable only when that library is installed."""
