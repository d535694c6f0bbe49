"""The konbini conformance suite: property-based checks of any implementation of a side,
over the wire only (see docs/conformance.md)."""
