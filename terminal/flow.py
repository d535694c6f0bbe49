"""The kiosk flow as a plain state machine: card → PIN → menu → choice → payment → print → done.

No gRPC here: the flow talks to :class:`~terminal.centre.Centre`, a card reader, a payment
device, a printer and the journal, all passed in. Every method returns the :class:`Screen` the
resident sees next; refusals are screens with a catalogue reason and its words, never
exceptions. One :class:`Kiosk` serves one resident at a time and is not thread-safe (the web
kiosk and the driver hold a lock around it).

Rules kept here:
- the PIN is checked for format before any APDU (PIN-FORMAT), sent exactly once per entry
  (PIN-NO-AUTO-RETRY), tries left shown (PIN-TRIES-SHOWN), a locked PIN stops (PIN-LOCKED);
- the fee is taken before printing (FEE-PAID-BEFORE-PRINT) and refunded on failure;
- an expired reservation is never printed (ISSUE-EXPIRY);
- the journal is written before each irreversible step (TERM-JOURNAL);
- at the end of a session nothing of it stays in memory (TERM-NO-PREVIOUS-USER).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import timestamp_pb2

from konbini.card import (
    CardError,
    CardPinLess,
    CardReader,
    CardReaderError,
    JpkiCard,
    PinLocked,
    PinWrong,
)
from konbini.card.apdu import valid_pin_format
from konbini.clock import Clock, SystemClock
from konbini.common.v1 import errors_pb2, types_pb2
from konbini.contracts import reasons
from konbini.errors import KonbiniError
from konbini.kiosk.v1 import kiosk_pb2
from konbini.municode import validate_municipality_code
from terminal.centre import Centre, CentreUnreachable
from terminal.journal import Journal
from terminal.payment import PaymentDevice
from terminal.printer import PrintedJob, Printer, PrintFailed
from terminal.settle import Settlement, recover, settle

log = logging.getLogger(__name__)

# Words for outcomes that are the terminal's own, not a catalogue reason.
LOCAL_MESSAGES = {
    "PRINT_FAILED": ("印刷できませんでした。料金をお返しします。",
                     "Printing failed. Your money is returned."),
    "CARD_UNREADABLE": ("カードを読み取れません。もう一度入れてください。",
                        "The card cannot be read. Please insert it again."),
    "CENTRE_UNREACHABLE": ("ただいまご利用いただけません。料金は請求されません。",
                           "The service is unavailable right now. You will not be charged."),
}

# The longest 本籍 or 筆頭者 the kiosk accepts (characters; a register needs far fewer).
MAX_TYPED = 200

# Stop this long before the reservation expires: printing takes time too.
DEFAULT_EXPIRY_MARGIN = dt.timedelta(seconds=10)


class ScreenId(enum.Enum):
    """The kiosk screens (the same as konbini.testing.v1.ScreenId)."""

    INSERT_CARD = 1
    ENTER_PIN = 2
    MENU = 3
    PAYMENT = 4
    PRINTING = 5
    DONE = 6
    REFUSED = 7


@dataclass(frozen=True)
class Screen:
    """What the kiosk shows."""

    id: ScreenId
    pin_tries_left: int = 0
    reason: str | None = None  # a catalogue reason name, or a LOCAL_MESSAGES key
    message_ja: str = ""
    message_en: str = ""
    menu: tuple[types_pb2.CatalogueEntry, ...] = ()
    fee: int = 0
    paid: int = 0
    returned: int = 0
    municipality_name: str = ""
    printed: tuple[Path, ...] = ()


def screen_for(screen_id: ScreenId, reason: str | None, **kw: object) -> Screen:
    """A screen with the words of ``reason`` (catalogue first, then the terminal's own)."""
    ja = en = ""
    if reason is not None:
        entry = reasons().get(reason)
        if entry is not None:
            ja, en = entry.message_ja, entry.message_en
        else:
            ja, en = LOCAL_MESSAGES.get(reason, LOCAL_MESSAGES["CENTRE_UNREACHABLE"])
    return Screen(screen_id, reason=reason, message_ja=ja, message_en=en, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Choice:
    """What the resident picked on the menu."""

    kind: int  # konbini.common.v1.CertificateKind
    options: types_pb2.CertificateOptions = field(default_factory=types_pb2.CertificateOptions)
    copies: int = 1
    municipality_code: str = ""  # empty: the residence municipality


@dataclass(frozen=True)
class UseRegistration:
    """The answer to a use registration: PENDING, APPROVED, REJECTED, or REFUSED with a reason."""

    registration_id: str
    status: str
    reason: str | None


class FlowError(RuntimeError):
    """An action that the current screen does not offer (a programming error of the caller)."""


def _reason_of(error: KonbiniError) -> str:
    """The reason to show: a lost centre is the terminal's own words, not a system error."""
    return "CENTRE_UNREACHABLE" if isinstance(error, CentreUnreachable) else error.reason


def _status_name(status: int) -> str:
    return kiosk_pb2.UseRegistrationStatus.Name(status).removeprefix("USE_REGISTRATION_STATUS_")


def new_request_id() -> str:
    """A fresh request_id: 22 of [A-Za-z0-9_-], random (no personal data)."""
    return secrets.token_urlsafe(16)


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


@dataclass
class _Txn:
    """The transaction in progress: the only place the documents live until printed."""

    txn_id: str
    issuance_id: str
    job_id: str
    documents: tuple[bytes, ...]
    fee: int
    expires_at: dt.datetime


@dataclass
class _Session:
    """One resident's visit: from card insertion to card removal."""

    reader: CardReader
    card: JpkiCard
    certificate_der: bytes
    session_id: str = ""
    challenge: bytes = b""
    residence_code: str = ""
    residence_name: str = ""
    menu: tuple[types_pb2.CatalogueEntry, ...] = ()
    txn: _Txn | None = None


class Kiosk:
    """The terminal flow. ``pause_at`` is a test hook called at named points
    ("after-payment", "after-print"); production passes nothing."""

    def __init__(
        self,
        centre: Centre,
        payment: PaymentDevice,
        printer: Printer,
        journal: Journal,
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] = new_request_id,
        expiry_margin: dt.timedelta = DEFAULT_EXPIRY_MARGIN,
        pause_at: Callable[[str], None] | None = None,
    ) -> None:
        self._centre = centre
        self._payment = payment
        self._printer = printer
        self._journal = journal
        self._clock = clock or SystemClock()
        self._new_id = new_id
        self._margin = expiry_margin
        self._pause = pause_at or (lambda _point: None)
        self._session: _Session | None = None
        self._screen = Screen(ScreenId.INSERT_CARD)
        self.last_settlement: Settlement | None = None

    # -- reading ------------------------------------------------------------------------

    @property
    def screen(self) -> Screen:
        """The screen shown now."""
        return self._screen

    def _show(self, screen: Screen) -> Screen:
        self._screen = screen
        return screen

    def _refuse(self, reason: str | None, **kw: object) -> Screen:
        return self._show(screen_for(ScreenId.REFUSED, reason, **kw))

    def _expect(self, *screens: ScreenId) -> _Session:
        if self._screen.id not in screens or self._session is None:
            raise FlowError(f"not possible on the {self._screen.id.name} screen")
        return self._session

    # -- start-up -----------------------------------------------------------------------

    def recover(self) -> list[Settlement]:
        """Settle what a crash left unfinished (call at start-up)."""
        return recover(self._journal, self._centre, self._payment, self._printer)

    # -- card and PIN -------------------------------------------------------------------

    def insert_card(self, reader: CardReader) -> Screen:
        """A card was inserted: read its auth certificate and the PIN tries left."""
        self._end_session()
        try:
            card = JpkiCard(reader.connect())
            card.select_jpki()
            cert = card.read_auth_certificate()
            tries = card.pin_tries_left()
        except CardPinLess:
            reader.disconnect()
            return self._refuse("CARD_WITHOUT_PIN")
        except (CardReaderError, CardError):
            reader.disconnect()
            return self._refuse("CARD_UNREADABLE")
        self._session = _Session(reader=reader, card=card, certificate_der=cert)
        if tries == 0:
            self._end_session()
            return self._refuse("PIN_LOCKED")
        return self._show(Screen(ScreenId.ENTER_PIN, pin_tries_left=tries))

    def enter_pin(self, pin: str) -> Screen:
        """The resident typed ``pin``: one VERIFY on the card, then the centre session."""
        session = self._expect(ScreenId.ENTER_PIN)
        tries = self._screen.pin_tries_left
        if not valid_pin_format(pin):
            # Nothing goes to the card (PIN-FORMAT); the count is unchanged.
            return self._show(screen_for(ScreenId.ENTER_PIN, "PIN_FORMAT_INVALID",
                                         pin_tries_left=tries))
        try:
            session.card.verify_pin(pin)
        except PinWrong as wrong:
            return self._show(screen_for(ScreenId.ENTER_PIN, "PIN_WRONG",
                                         pin_tries_left=wrong.tries_left))
        except PinLocked:
            self._end_session()
            return self._refuse("PIN_LOCKED")
        except CardError:
            self._end_session()
            return self._refuse("CARD_UNREADABLE")
        try:
            self._open_centre_session(session)
        except KonbiniError as error:
            self._end_session()
            return self._refuse(_reason_of(error))
        return self._show_menu(session)

    def _open_centre_session(self, session: _Session) -> None:
        created = self._centre.create_session(
            kiosk_pb2.CreateSessionRequest(request_id=self._new_id()))
        session.session_id, session.challenge = created.session_id, created.challenge
        intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                      challenge=created.challenge,
                                      created_at=_ts(self._clock.now())).SerializeToString()
        signature = session.card.sign_sha256(intent)
        auth = self._centre.authenticate(kiosk_pb2.AuthenticateRequest(
            request_id=self._new_id(), session_id=session.session_id,
            auth_certificate_der=session.certificate_der, intent=intent, signature=signature))
        session.residence_code = auth.residence_municipality_code.value
        session.residence_name = auth.residence_municipality_name
        catalogue = self._centre.get_catalogue(
            kiosk_pb2.GetCatalogueRequest(session_id=session.session_id))
        session.menu = tuple(catalogue.entries)

    def _show_menu(self, session: _Session) -> Screen:
        return self._show(Screen(ScreenId.MENU, menu=session.menu,
                                 municipality_name=session.residence_name))

    # -- choice -------------------------------------------------------------------------

    def _entry(self, session: _Session, code: str, kind: int) -> types_pb2.CatalogueEntry | None:
        for entry in session.menu:
            if entry.municipality_code.value == code and entry.kind == kind:
                return entry
        return None

    @staticmethod
    def _local_refusal(  # noqa: PLR0911 - one return per catalogue rule
        entry: types_pb2.CatalogueEntry | None, choice: Choice
    ) -> str | None:
        """What the catalogue already says no to (the centre checks again)."""
        if entry is None:
            return "KIND_NOT_OFFERED"
        if choice.copies < 1:
            return "FIELD_INVALID"
        if not entry.available_now:
            if entry.unavailable_reason:
                return errors_pb2.ErrorReason.Name(entry.unavailable_reason).removeprefix(
                    "ERROR_REASON_")
            return "OUTSIDE_SERVICE_HOURS"
        if choice.copies > entry.max_copies > 0:
            return "TOO_MANY_COPIES"
        opts = choice.options
        if opts.HasField("income_tax") and opts.income_tax.fiscal_year not in entry.fiscal_years:
            return "FISCAL_YEAR_NOT_OFFERED"
        if opts.HasField("residence_record"):
            asked, allowed = opts.residence_record, entry.permitted_options
            if (asked.scope == types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS
                    and not asked.member_refs):
                return "FIELD_INVALID"
            for name in ("show_registered_domicile", "show_household_head",
                         "show_individual_number", "show_nationality",
                         "show_residence_card_number", "show_residence_status"):
                if getattr(asked, name) and not getattr(allowed, name):
                    return "OPTION_NOT_OFFERED"
        refs = (opts.residence_record.member_refs if opts.HasField("residence_record")
                else opts.family_register.member_refs)
        listed = {p.ref for p in entry.selectable}
        # Only the people the catalogue listed may be chosen (the municipality says the same).
        if listed and any(ref not in listed for ref in refs):
            return "NOT_ENTITLED"
        return None

    def choose(self, choice: Choice) -> Screen:
        """The resident chose a certificate: the card signs the request, the centre answers
        with the documents and the fee."""
        session = self._expect(ScreenId.MENU, ScreenId.REFUSED)
        if not session.session_id:
            raise FlowError("no authenticated session")
        code = choice.municipality_code or session.residence_code
        entry = self._entry(session, code, choice.kind)
        refusal = self._local_refusal(entry, choice)
        if refusal or entry is None:
            return self._refuse(refusal)

        txn_id, request_id = self._new_id(), self._new_id()
        intent = kiosk_pb2.IssuanceIntent(
            session_id=session.session_id, challenge=session.challenge, request_id=request_id,
            municipality_code=types_pb2.MunicipalityCode(value=code), kind=choice.kind,
            options=choice.options, copies=choice.copies).SerializeToString()
        try:
            signature = session.card.sign_sha256(intent)
        except CardError:
            self._end_session()
            return self._refuse("CARD_UNREADABLE")
        self._journal.begin(txn_id, request_id, self._new_id(), self._new_id())
        try:
            response = self._centre.request_issuance(kiosk_pb2.RequestIssuanceRequest(
                request_id=request_id, session_id=session.session_id, intent=intent,
                signature=signature))
        except KonbiniError as error:
            return self._refuse_request(txn_id, error)
        expires_at = response.expires_at.ToDatetime(dt.UTC)
        self._journal.delivered(txn_id, response.issuance_id, response.fee.yen, expires_at)
        session.txn = _Txn(txn_id, response.issuance_id, self._journal.get(txn_id).job_id,
                           tuple(d.pdf for d in response.documents), response.fee.yen,
                           expires_at)
        # FEE-CATALOGUE: the fee must be the catalogue's per copy times the copies.
        if (response.fee.yen != entry.fee.yen * choice.copies
                or len(response.documents) != choice.copies
                or not all(d.pdf.startswith(b"%PDF-") for d in response.documents)):
            return self._fail_txn(session, "DOCUMENT_REJECTED", "DOCUMENT_INVALID")
        return self._show(Screen(ScreenId.PAYMENT, fee=response.fee.yen))

    def _refuse_request(self, txn_id: str, error: KonbiniError) -> Screen:
        entry = reasons().get(error.reason)
        if entry is not None and entry.refusal:
            # A typed refusal creates nothing at the centre (REFUSE-NO-STATE).
            self._journal.done(txn_id)
            return self._refuse(error.reason)
        # Unknown outcome: the centre may hold a reservation; cancel it if we can now, else
        # the journal keeps it for recovery.
        try:
            self.last_settlement = settle(self._journal, self._centre, self._payment,
                                          self._printer, txn_id, restart=True)
        except KonbiniError:
            log.warning("transaction %s left for recovery", txn_id)
        return self._refuse(_reason_of(error))

    # -- payment and printing -----------------------------------------------------------

    def _expired(self, txn: _Txn) -> bool:
        return self._clock.now() >= txn.expires_at - self._margin

    def _fail_txn(self, session: _Session, cause: str, reason: str | None, *,
                  returned: int = 0, paid: int = 0) -> Screen:
        """Cancel the transaction in progress (FAILED with ``cause``) and refund it."""
        txn = session.txn
        assert txn is not None
        session.txn = None  # the documents are dropped before anything else can happen
        self._journal.failing(txn.txn_id, cause)
        try:
            self.last_settlement = settle(self._journal, self._centre, self._payment,
                                          self._printer, txn.txn_id)
        except KonbiniError:
            # The refund came first (settle); only the completion waits for recovery.
            log.warning("completion of %s left for recovery", txn.txn_id)
        refunded = self._journal.get(txn.txn_id).refunded
        return self._refuse(reason, fee=txn.fee, paid=paid, returned=returned + refunded)

    def pay(self, yen: int) -> Screen:
        """Money put in. Once the fee is covered: check expiry, keep the fee, print, complete."""
        session = self._expect(ScreenId.PAYMENT)
        txn = session.txn
        assert txn is not None
        paid = self._payment.insert(yen)
        if paid < txn.fee:
            return self._show(Screen(ScreenId.PAYMENT, fee=txn.fee, paid=paid))
        if self._expired(txn):
            released = self._payment.release()
            return self._fail_txn(session, "RESERVATION_EXPIRED", "RESERVATION_EXPIRED",
                                  returned=released, paid=paid)
        self._journal.paid(txn.txn_id, txn.fee)
        change = self._payment.take(txn.fee).change
        self._pause("after-payment")
        if self._expired(txn):  # ISSUE-EXPIRY: never print a reservation that has expired
            return self._fail_txn(session, "RESERVATION_EXPIRED", "RESERVATION_EXPIRED",
                                  returned=change, paid=paid)
        self._show(Screen(ScreenId.PRINTING, fee=txn.fee, paid=paid, returned=change))
        self._journal.printing(txn.txn_id)
        try:
            job = self._printer.print_job(txn.job_id, txn.documents)
        except PrintFailed:
            return self._fail_txn(session, "PRINTER", "PRINT_FAILED", returned=change,
                                  paid=paid)
        self._journal.printed(txn.txn_id)
        session.txn = None
        self._pause("after-print")
        return self._finish_printed(txn, job, paid, change)

    def _finish_printed(self, txn: _Txn, job: PrintedJob, paid: int, change: int) -> Screen:
        try:
            result = settle(self._journal, self._centre, self._payment, self._printer,
                            txn.txn_id)
        except KonbiniError:
            # Printed and paid: the charge stands; recovery reports PRINTED later.
            log.warning("completion of %s left for recovery", txn.txn_id)
            return self._show(Screen(ScreenId.DONE, fee=txn.fee, paid=paid, returned=change,
                                     printed=job.paths))
        self.last_settlement = result
        return self._show(Screen(ScreenId.DONE, fee=result.charged, paid=paid,
                                 returned=change + result.refunded, printed=job.paths))

    # -- use registration (利用登録) ---------------------------------------------------------

    def register_use(self, register_code: str, domicile: str, head: str) -> UseRegistration:
        """Apply for family-register use at the register municipality (本籍地): the card signs
        the application in the current session. Then the register municipality's kinds appear
        on the menu once it is approved (USEREG-CATALOGUE); the menu is read again here."""
        session = self._expect(ScreenId.MENU, ScreenId.REFUSED)
        if not session.session_id:
            raise FlowError("no authenticated session")
        register_code, domicile, head = register_code.strip(), domicile.strip(), head.strip()
        if (not validate_municipality_code(register_code) or not domicile or not head
                or len(domicile) > MAX_TYPED or len(head) > MAX_TYPED):
            # Nothing is signed or sent for what cannot be a register (the centre checks too).
            self._refuse("FIELD_INVALID")
            return UseRegistration("", "REFUSED", "FIELD_INVALID")
        request_id = self._new_id()
        intent = kiosk_pb2.UseRegistrationIntent(
            session_id=session.session_id, challenge=session.challenge, request_id=request_id,
            register_municipality_code=types_pb2.MunicipalityCode(value=register_code),
            registered_domicile=domicile, head_of_register=head).SerializeToString()
        try:
            answer = self._centre.register_family_register_use(
                kiosk_pb2.RegisterFamilyRegisterUseRequest(
                    request_id=request_id, session_id=session.session_id, intent=intent,
                    signature=session.card.sign_sha256(intent)))
            catalogue = self._centre.get_catalogue(
                kiosk_pb2.GetCatalogueRequest(session_id=session.session_id))
        except CardError:
            self._end_session()
            self._refuse("CARD_UNREADABLE")
            return UseRegistration("", "REFUSED", "CARD_UNREADABLE")
        except KonbiniError as error:
            self._refuse(_reason_of(error))
            return UseRegistration("", "REFUSED", _reason_of(error))
        session.menu = tuple(catalogue.entries)
        self._show_menu(session)
        return UseRegistration(answer.registration_id, _status_name(answer.status), None)

    def use_registration_status(self, registration_id: str) -> UseRegistration:
        """Ask again about a PENDING registration; the menu is read again, as an approval
        adds the register municipality's kinds (USEREG-CATALOGUE)."""
        session = self._expect(ScreenId.MENU, ScreenId.REFUSED)
        if not session.session_id:
            raise FlowError("no authenticated session")
        try:
            answer = self._centre.get_use_registration(
                kiosk_pb2.GetUseRegistrationRequest(registration_id=registration_id))
            catalogue = self._centre.get_catalogue(
                kiosk_pb2.GetCatalogueRequest(session_id=session.session_id))
        except KonbiniError as error:
            self._refuse(_reason_of(error))
            return UseRegistration(registration_id, "REFUSED", _reason_of(error))
        session.menu = tuple(catalogue.entries)
        self._show_menu(session)
        return UseRegistration(answer.registration_id, _status_name(answer.status), None)

    # -- cancel and the end of a session ------------------------------------------------

    def cancel(self, *, remove_card: bool = False) -> Screen:
        """Cancel pressed (or the card removed). During payment the transaction is cancelled
        and the money put in is returned."""
        session = self._session
        if session is not None and session.txn is not None:
            released = self._payment.release()
            screen = self._fail_txn(session, "USER_CANCELLED", None, returned=released)
            returned = screen.returned
            if not remove_card:
                return self._show(Screen(ScreenId.MENU, menu=session.menu,
                                         municipality_name=session.residence_name,
                                         returned=returned))
        elif (not remove_card and session is not None and session.session_id
              and self._screen.id in (ScreenId.REFUSED, ScreenId.MENU)):
            return self._show_menu(session)
        else:
            returned = self._payment.release()
        self._end_session()
        # The start screen says what came back, so the money is not left in the tray.
        return self._show(Screen(ScreenId.INSERT_CARD, returned=returned))

    def done(self) -> Screen:
        """The resident took the certificate and the card: back to the start."""
        return self.cancel(remove_card=True)

    def _end_session(self) -> None:
        """Forget everything of the current resident (TERM-NO-PREVIOUS-USER)."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.session_id:
            try:
                self._centre.end_session(kiosk_pb2.EndSessionRequest(
                    request_id=self._new_id(), session_id=session.session_id))
            except KonbiniError:
                log.info("EndSession not acknowledged; the session expires by itself")
        session.txn = None
        session.menu = ()
        session.challenge = b""
        session.reader.disconnect()
