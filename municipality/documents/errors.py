"""Typed failures of composing documents."""

from __future__ import annotations


class ComposeError(ValueError):
    """The request cannot be printed as given: a record the kind needs is missing, records name
    different people (seal or tax record of someone other than the holder, a member from another
    register), no copies, a naive issue time. A programming error of the caller, never a
    refusal to the resident."""
