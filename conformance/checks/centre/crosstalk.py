"""No cross-talk: many terminals and cards at once, some requests timing out or cancelled by
the client and retried; each terminal gets only documents naming its own card holder, and
never sees another terminal's issuance."""

from __future__ import annotations

from typing import Any

import grpc

from conformance.checks.centre.context import CentreContext, Session
from conformance.failures import CheckFailed
from conformance.fakes.documents import front_for, holder_digest
from conformance.registry import check
from conformance.seal_meta import metadata_of
from conformance.target import attempt, short_text
from konbini.docimage.raster import rasterize_page
from konbini.kiosk.v1 import kiosk_pb2

CARDS = 10
SHORT_DEADLINE = 0.1  # seconds: the fake takes longer, so these time out mid-flight
PREPARE_DELAY = 0.25
TERMINALS = ("terminal", "terminal_b")
FRONT_DPI = 40  # enough to tell the fake's fronts apart (boxes a centimetre or more wide)
FRONT_TOLERANCE = 4.0  # mean absolute grey difference of the same page rendered twice


def _wait(future: Any) -> Any:
    try:
        return future.result()
    except (grpc.RpcError, grpc.FutureCancelledError):
        return None


@check("MUST.centre.crosstalk.concurrent", covers=("XTALK-SUBJECT", "XTALK-TERMINAL"))
def concurrent(ctx: CentreContext) -> None:
    """10 cards on two terminals request at once while the municipality is slow; every third
    call has a 100 ms deadline and every fourth is cancelled by the client, then retried with
    the same bytes. Every document names the card holder of the session it was asked for; the
    other terminal cannot see or complete any of these issuances."""
    cards = ctx.bound_cards(CARDS)
    sessions = [ctx.open_session(c, TERMINALS[n % 2], "XTALK-SUBJECT")
                for n, c in enumerate(cards)]
    requests = [ctx.issuance_request(s, copies=1 + n % 2) for n, s in enumerate(sessions)]
    ctx.fake.prepare_delay = PREPARE_DELAY
    try:
        futures = [
            ctx.kiosk(s.terminal).future("RequestIssuance", r,
                                         timeout=SHORT_DEADLINE if n % 3 == 1 else None)
            for n, (s, r) in enumerate(zip(sessions, requests, strict=True))
        ]
        for n, future in enumerate(futures):
            if n % 4 == 3:
                future.cancel()
        answers = [_wait(f) for f in futures]
        for n, (session, request) in enumerate(zip(sessions, requests, strict=True)):
            if answers[n] is None:  # abandoned: the terminal retries with the same bytes
                retry = ctx.request(session, request)
                answers[n] = retry.response if retry.ok else None
    finally:
        ctx.fake.prepare_delay = 0.0
    answered = [n for n, a in enumerate(answers) if a is not None]
    if len(answered) < CARDS // 2:
        raise CheckFailed("XTALK-SUBJECT", f"{CARDS} concurrent RequestIssuance",
                          f"only {len(answered)} answered with documents",
                          "most retried requests must be answered")
    for n in answered:
        _judge(ctx, sessions, n, requests[n], answers[n])
    _other_terminal_blind(ctx, sessions, answers)


def _judge(ctx: CentreContext, sessions: list[Session], n: int,
           request: kiosk_pb2.RequestIssuanceRequest,
           response: kiosk_pb2.RequestIssuanceResponse) -> None:
    session = sessions[n]
    want = holder_digest(ctx.code, session.card.serial)
    owners = {holder_digest(ctx.code, s.card.serial): s for s in sessions}
    for document in response.documents:
        meta = metadata_of(document)
        got = meta.subject_digest
        if got == want:
            _judge_front(ctx, session, request, document.pdf, meta.issue_number)
            continue
        owner = owners.get(got)
        requirement = ("XTALK-TERMINAL" if owner is not None
                       and owner.terminal != session.terminal else "XTALK-SUBJECT")
        raise CheckFailed(requirement, short_text(request),
                          f"a document with subject digest {got.hex()}",
                          f"{session.terminal} asked for card {session.card.serial} and got "
                          + (f"{owner.card.serial}'s document (asked on {owner.terminal})"
                             if owner else "a document about nobody it asked for"))


def _other_terminal_blind(ctx: CentreContext, sessions: list[Session],
                          answers: list[Any]) -> None:
    for session, response in zip(sessions, answers, strict=True):
        if response is None:
            continue
        other = TERMINALS[1 - TERMINALS.index(session.terminal)]
        request = kiosk_pb2.GetIssuanceRequest(issuance_id=response.issuance_id)
        seen = attempt(lambda r=request, o=other: ctx.kiosk(o).GetIssuance(r))  # type: ignore[misc]
        if seen.ok:
            raise CheckFailed("XTALK-TERMINAL", f"{other}: {short_text(request)}",
                              seen.describe(), "a terminal read another terminal's issuance")
    first = next((r for r in answers if r is not None), None)
    if first is None:
        return
    owner = sessions[answers.index(first)].terminal
    other = TERMINALS[1 - TERMINALS.index(owner)]
    completed = ctx.complete(other, first.issuance_id, kiosk_pb2.PRINT_OUTCOME_PRINTED)
    if completed.ok:
        raise CheckFailed("XTALK-TERMINAL", f"{other}: CompleteIssuance({first.issuance_id})",
                          completed.describe(), "a terminal completed another terminal's issuance")


def _judge_front(ctx: CentreContext, session: Session, request: kiosk_pb2.RequestIssuanceRequest,
                 pdf: bytes, issue_number: str) -> None:
    """The delivered front page is the page the municipality made for this card (a centre
    that mixes up PDFs but keeps the metadata is caught here)."""
    delivered = rasterize_page(pdf, 0, FRONT_DPI).astype(float)
    made = rasterize_page(front_for(ctx.code, session.card.serial, issue_number), 0, FRONT_DPI)
    if delivered.shape != made.shape or abs(delivered - made).mean() > FRONT_TOLERANCE:
        raise CheckFailed("XTALK-SUBJECT", short_text(request),
                          f"front page of issue {issue_number} differs from the municipality's",
                          f"{session.terminal} got another document's front page for card "
                          f"{session.card.serial}")
