"""The web kiosk: the touch-screen flow served on loopback only (stdlib http.server).

The page (``terminal/web/``: HTML, CSS, JS, no CDN) calls a small JSON API; one
:class:`~terminal.flow.Kiosk` is driven under a lock, as one physical kiosk serves one resident
at a time. A software card file picked from the card directory stands in for the card reader.
POSTs must be ``application/json`` (a cross-site form cannot send that without a preflight),
and the server refuses to bind anything but a loopback address. Besides the issuance flow the
page offers household/register member pickers (Person.ref values only go back) and the use
registration (利用登録) form: ``/api/register-use`` and ``/api/use-registration-status`` answer
the screen plus ``use_registration`` (status and its words in both languages).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from konbini.card import SoftCardReader
from konbini.common.v1 import types_pb2
from konbini.contracts import reasons
from terminal.flow import Choice, FlowError, Kiosk, Screen, UseRegistration

log = logging.getLogger(__name__)

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8"),
          "/static/kiosk.css": ("kiosk.css", "text/css; charset=utf-8")}
MAX_BODY = 16 * 1024
RESIDENCE_KINDS = (types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
                   types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS)
SHOW = ("show_registered_domicile", "show_household_head", "show_individual_number",
        "show_nationality", "show_residence_card_number", "show_residence_status")


class NotLoopback(ValueError):
    """The kiosk page is served on loopback only."""


def _reason_name(value: int) -> str:
    return types_pb2.ErrorReason.Name(value).removeprefix("ERROR_REASON_") if value else ""


def _entry_json(entry: types_pb2.CatalogueEntry) -> dict[str, Any]:
    unavailable = _reason_name(entry.unavailable_reason) if not entry.available_now else ""
    words = reasons().get(unavailable)
    return {
        "municipality_code": entry.municipality_code.value,
        "municipality_name": entry.municipality_name,
        "kind": entry.kind,
        "kind_key": types_pb2.CertificateKind.Name(entry.kind).removeprefix("CERTIFICATE_KIND_"),
        "fee": entry.fee.yen,
        "available_now": entry.available_now,
        "unavailable_ja": words.message_ja if words else "",
        "unavailable_en": words.message_en if words else "",
        "max_copies": entry.max_copies,
        "fiscal_years": list(entry.fiscal_years),
        "permitted": {name: getattr(entry.permitted_options, name) for name in SHOW},
        "selectable": [{"ref": p.ref, "name": p.display_name, "relationship": p.relationship}
                       for p in entry.selectable],
    }


def screen_json(screen: Screen) -> dict[str, Any]:
    """The screen as the page renders it (no file paths, no card data)."""
    return {
        "id": screen.id.name, "pin_tries_left": screen.pin_tries_left,
        "reason": screen.reason or "", "message_ja": screen.message_ja,
        "message_en": screen.message_en, "fee": screen.fee, "paid": screen.paid,
        "returned": screen.returned, "municipality_name": screen.municipality_name,
        "menu": [_entry_json(e) for e in screen.menu], "printed_count": len(screen.printed),
    }


# What the page's scope picker sends, as the contract's HouseholdScope.
SCOPES = {"self": types_pb2.HOUSEHOLD_SCOPE_SELF,
          "household": types_pb2.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD,
          "members": types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS}
MAX_MEMBERS = 20  # the contract's limit on member_refs

# The words for a use registration's answer (PENDING and REJECTED are catalogue reasons).
APPROVED_WORDS = ("利用登録が完了しました。本籍地の戸籍証明書をメニューから選べます。",
                  "Your use registration is approved. Certificates from your registered "
                  "domicile are now on the menu.")
STATUS_REASON = {"PENDING": "USE_REGISTRATION_PENDING",
                 "REJECTED": "USE_REGISTRATION_REJECTED"}


def use_registration_json(answer: UseRegistration) -> dict[str, Any]:
    """A use registration's answer in plain words (a refusal's words are on its screen)."""
    ja = en = ""
    if answer.status == "APPROVED":
        ja, en = APPROVED_WORDS
    elif answer.status in STATUS_REASON:
        words = reasons()[STATUS_REASON[answer.status]]
        ja, en = words.message_ja, words.message_en
    return {"registration_id": answer.registration_id, "status": answer.status,
            "reason": answer.reason or "", "message_ja": ja, "message_en": en}


def _members(body: dict[str, Any]) -> list[str]:
    members = body.get("members", [])
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        raise ValueError(f"members: a list of at most {MAX_MEMBERS}")
    return [str(m) for m in members]


def choice_from_json(body: dict[str, Any]) -> Choice:
    """A Choice from the page's form values."""
    kind = int(body["kind"])
    options = types_pb2.CertificateOptions()
    if kind in RESIDENCE_KINDS:
        rr = options.residence_record
        members = _members(body)
        scope = str(body.get("scope") or ("members" if members else "self"))
        if scope not in SCOPES:
            raise ValueError("scope: self, household or members")
        rr.scope = SCOPES[scope]
        if scope == "members":  # refs only go with SELECTED_MEMBERS
            rr.member_refs.extend(members)
        for name in SHOW:
            setattr(rr, name, bool(body.get(name)))
    elif kind == types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION:
        options.seal_registration.SetInParent()
    elif kind == types_pb2.CERTIFICATE_KIND_INCOME_TAX:
        options.income_tax.fiscal_year = int(body.get("fiscal_year", 0))
    else:
        options.family_register.member_refs.extend(_members(body))
    return Choice(kind, options, int(body.get("copies", 1)),
                  str(body.get("municipality_code", "")))


class KioskWebServer:
    """The kiosk page and its API on ``host:port`` (loopback only; port 0 picks one)."""

    def __init__(self, kiosk: Kiosk, card_dir: Path, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise NotLoopback(f"{host} is not a loopback address")
        self.kiosk = kiosk
        self.card_dir = card_dir
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        """Where the page is."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`close` (from another thread) or KeyboardInterrupt."""
        self.httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def cards(self) -> list[str]:
        """Card files on offer (names only)."""
        if not self.card_dir.is_dir():
            return []
        return sorted(p.name for p in self.card_dir.iterdir()
                      if p.is_file() and not p.name.startswith("."))

    def act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run one API action on the kiosk; the answer is the screen (as JSON) and, for a use
        registration, its answer."""
        kiosk = self.kiosk
        if path == "/api/register-use":
            answer = kiosk.register_use(str(body.get("register_municipality_code", "")),
                                        str(body.get("registered_domicile", "")),
                                        str(body.get("head_of_register", "")))
        elif path == "/api/use-registration-status":
            answer = kiosk.use_registration_status(str(body.get("registration_id", "")))
        else:
            return screen_json(self._act(path, body))
        return {**screen_json(kiosk.screen), "use_registration": use_registration_json(answer)}

    def _act(self, path: str, body: dict[str, Any]) -> Screen:
        kiosk = self.kiosk
        if path == "/api/insert":
            name = str(body.get("card", ""))
            if name not in self.cards():  # only a file listed here: no path tricks
                raise ValueError("unknown card")
            return kiosk.insert_card(SoftCardReader(self.card_dir / name))
        if path == "/api/pin":
            return kiosk.enter_pin(str(body.get("pin", "")))
        if path == "/api/choose":
            return kiosk.choose(choice_from_json(body))
        if path == "/api/pay":
            return kiosk.pay(int(body.get("yen", 0)))
        if path == "/api/cancel":
            return kiosk.cancel(remove_card=bool(body.get("remove_card")))
        if path == "/api/done":
            return kiosk.done()
        raise KeyError(path)


class _Handler(BaseHTTPRequestHandler):
    app: KioskWebServer
    server_version = "konbini-kiosk"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kiosk http: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8")

    def do_GET(self) -> None:
        if self.path in STATIC:
            name, content_type = STATIC[self.path]
            data = resources.files("terminal").joinpath("web", name).read_bytes()
            self._send(HTTPStatus.OK, data, content_type)
        elif self.path == "/api/cards":
            self._json(HTTPStatus.OK, {"cards": self.app.cards()})
        elif self.path == "/api/screen":
            with self.app.lock:
                self._json(HTTPStatus.OK, screen_json(self.app.kiosk.screen))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "JSON only"})
            return
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with self.app.lock:
                answer = self.app.act(self.path, body)
        except KeyError:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        except (ValueError, TypeError, FlowError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception:
            log.exception("kiosk action failed")  # no detail to the page
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
        else:
            self._json(HTTPStatus.OK, answer)
