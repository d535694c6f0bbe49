"""Sessions: fresh challenges, single use, expiry by the centre's clock, bound to the terminal
that opened them."""

from __future__ import annotations

import datetime as dt

from conformance.checks.centre.context import CentreContext
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.kiosk.v1 import kiosk_pb2

SESSIONS = 16
MIN_CHALLENGE = 32


@check("MUST.centre.sessions.fresh_challenge", covers=("SESSION-CHALLENGE-FRESH",))
def fresh_challenge(ctx: CentreContext) -> None:
    """16 sessions from two terminals: every challenge is at least 32 bytes and no two are
    equal (nor any session id)."""
    ctx.load({})
    seen: dict[bytes, str] = {}
    ids: set[str] = set()
    for n in range(SESSIONS):
        created = ctx.create_session("terminal" if n % 2 else "terminal_b")
        if len(created.challenge) < MIN_CHALLENGE:
            raise CheckFailed("SESSION-CHALLENGE-FRESH", "CreateSession",
                              f"a {len(created.challenge)}-byte challenge",
                              "challenges must be at least 32 random bytes")
        if created.challenge in seen or created.session_id in ids:
            raise CheckFailed("SESSION-CHALLENGE-FRESH", f"CreateSession x{n + 1}",
                              f"challenge {created.challenge.hex()} twice",
                              "two sessions got the same challenge or id")
        seen[created.challenge] = created.session_id
        ids.add(created.session_id)


@check("MUST.centre.sessions.single_use", covers=("SESSION-CHALLENGE-SINGLE-USE",))
def single_use(ctx: CentreContext) -> None:
    """A challenge that authenticated once is refused with CHALLENGE_REPLAYED when signed and
    sent again (a new request id, the same card)."""
    card = ctx.bound_cards(1)[0]
    request, answer, created = ctx.authenticate(card)
    if not answer.ok:
        raise CheckFailed("SESSION-CHALLENGE-SINGLE-USE", short_text(request), answer.describe(),
                          "a valid bound card was refused", expected={"outcome": "ok"})
    replay = ctx.auth_request(card, created.session_id, created.challenge)
    answer = attempt(lambda: ctx.kiosk().Authenticate(replay))
    ctx.expect_refused(replay, answer, {"CHALLENGE_REPLAYED"}, "SESSION-CHALLENGE-SINGLE-USE",
                       "the challenge was used already")


@check("MUST.centre.sessions.expiry", covers=("SESSION-CHALLENGE-EXPIRY",))
def expiry(ctx: CentreContext) -> None:
    """With the centre's clock set one second past the session's expires_at, authenticating
    with its challenge is refused with CHALLENGE_EXPIRED."""
    card = ctx.bound_cards(1)[0]
    created = ctx.create_session()
    expires = created.expires_at.ToDatetime(tzinfo=dt.UTC)
    if expires <= ctx.now:
        raise CheckFailed("SESSION-CHALLENGE-EXPIRY", "CreateSession", short_text(created),
                          "the session expires before it was created")
    ctx.set_clock(expires + dt.timedelta(seconds=1))
    request = ctx.auth_request(card, created.session_id, created.challenge)
    answer = attempt(lambda: ctx.kiosk().Authenticate(request))
    ctx.expect_refused(request, answer, {"CHALLENGE_EXPIRED"}, "SESSION-CHALLENGE-EXPIRY",
                       "authenticated after the challenge's expiry")


@check("MUST.centre.sessions.terminal_bound", covers=("SESSION-TERMINAL-BOUND",))
def terminal_bound(ctx: CentreContext) -> None:
    """Another terminal cannot authenticate on, request through or end a session terminal A
    opened: SESSION_UNKNOWN each time; A's session still works afterwards."""
    card, other = ctx.bound_cards(2)
    created = ctx.create_session("terminal")
    request = ctx.auth_request(card, created.session_id, created.challenge)
    answer = attempt(lambda: ctx.kiosk("terminal_b").Authenticate(request))
    ctx.expect_refused(request, answer, {"SESSION_UNKNOWN"}, "SESSION-TERMINAL-BOUND",
                       "another terminal's fresh session")
    session = ctx.open_session(other, "terminal", "SESSION-TERMINAL-BOUND")
    issue = ctx.issuance_request(session)
    answer = attempt(lambda: ctx.kiosk("terminal_b").RequestIssuance(issue))
    ctx.expect_refused(issue, answer, {"SESSION_UNKNOWN"}, "SESSION-TERMINAL-BOUND",
                       "another terminal's authenticated session")
    end = kiosk_pb2.EndSessionRequest(request_id=ctx.rid("end"), session_id=session.session_id)
    answer = attempt(lambda: ctx.kiosk("terminal_b").EndSession(end))
    ctx.expect_refused(end, answer, {"SESSION_UNKNOWN"}, "SESSION-TERMINAL-BOUND",
                       "ending another terminal's session")
    if ctx.fake.prepares_for(other.serial):
        raise CheckFailed("SESSION-TERMINAL-BOUND", short_text(issue),
                          "a PrepareIssuance reached the municipality",
                          "a request on another terminal's session was forwarded")
    ctx.issue(session, "SESSION-TERMINAL-BOUND")
