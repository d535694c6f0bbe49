"""The reference network as one command: `konbini demo` and `konbini up`.

It starts each reference side as its own process through the `konbini` CLI and talks to them
only over the wire, so it imports no side (tests/test_layering.py).
"""
