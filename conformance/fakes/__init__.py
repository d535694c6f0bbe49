"""The suite's own stand-ins for the peers of the implementation under test (never a reference
side): against a centre, the fake municipalities it routes to."""

from conformance.fakes.municipality import FakeMunicipality, FakeReservation
from conformance.fakes.server import FakeEndpoint, FakeServerConfig, serve_fake

__all__ = ["FakeEndpoint", "FakeMunicipality", "FakeReservation", "FakeServerConfig", "serve_fake"]
