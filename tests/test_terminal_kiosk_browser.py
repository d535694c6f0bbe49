"""The web kiosk in headless Chromium (Debian's chromium, driven by Playwright): a successful
issuance, refusals, household members chosen on the options screen, a use registration (利用登録)
and a card taken out during payment, checking what the screen says; a screenshot of each step is
kept under test-artifacts/kiosk/. Skips when chromium or Playwright is missing, unless CI is set."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_terminal_support import (
    CHIYODA,
    CHIYODA_REGISTER,
    KATSURAGI,
    KOFU,
    WATANABE,
    FakeState,
    make_card,
    start_fake_centre,
)

from konbini.contracts import reasons
from konbini.pki import PkiDir, pki_init
from terminal.centre import CentreEndpoint, GrpcCentre
from terminal.flow import Kiosk
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import ScriptedPrinter, SpoolPrinter
from terminal.web import KioskWebServer, NotLoopback

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "kiosk"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _need_browser() -> Any:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            missing = "Playwright for Python is not installed (pip install playwright)"
        else:
            return sync_playwright
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser test cannot run: {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    root = tmp_path_factory.mktemp("pki")
    pki_init(root)
    return PkiDir(root)


@dataclass
class WebRig:
    state: FakeState
    server: KioskWebServer
    printer: ScriptedPrinter
    cards: Path
    serials: dict[str, int]


@pytest.fixture
def web(pki: PkiDir, tmp_path: Path) -> Iterator[WebRig]:
    state = FakeState(pki)
    centre_thread = start_fake_centre(state)
    centre = GrpcCentre.connect(CentreEndpoint(f"127.0.0.1:{centre_thread.port}", pki,
                                               "seven", "T0001"))
    cards = tmp_path / "cards"
    cards.mkdir()
    serials = {}
    for name in ("taro", "jiro"):
        _, serial = make_card(pki, cards, name)
        assert serial is not None
        state.bindings[serial] = KOFU
        serials[name] = serial
    journal = Journal.open(tmp_path / "journal.db")
    printer = ScriptedPrinter(SpoolPrinter(tmp_path / "spool"))
    kiosk = Kiosk(centre, SimulatedCashDevice(), printer, journal)
    server = KioskWebServer(kiosk, cards)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield WebRig(state, server, printer, cards, serials)
    server.close()
    thread.join(5)
    journal.close()
    centre.close()
    centre_thread.stop()


def test_kiosk_refuses_non_loopback(web: WebRig) -> None:
    with pytest.raises(NotLoopback):
        KioskWebServer(web.server.kiosk, web.cards, "0.0.0.0")


def test_api_refuses_form_posts_and_unknown_cards(web: WebRig) -> None:
    form = urllib.request.Request(web.server.url + "api/insert", data=b"card=taro.card",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(form, timeout=10)
    assert err.value.code == 415
    sneaky = urllib.request.Request(
        web.server.url + "api/insert", data=json.dumps({"card": "../journal.db"}).encode(),
        headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(sneaky, timeout=10)
    assert err.value.code == 400


class Shots:
    """Numbered screenshots of one walk."""

    def __init__(self, page: Any, walk: str) -> None:
        self.page, self.walk, self.n = page, walk, 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.walk}-{self.n:02d}-{step}.png"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # One Chromium for the module (starting it is most of a walk's time); a fresh context each.
    sync_playwright = _need_browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def _type_pin(page: Any, pin: str) -> None:
    for digit in pin:
        page.click(f"button[data-key='{digit}']")
    page.click("#pin-ok")


def _screen(page: Any, screen_id: str) -> None:
    page.wait_for_selector(f"main[data-screen='{screen_id}']")


def test_successful_issuance_in_the_browser(web: WebRig, page: Any) -> None:
    shot = Shots(page, "success")
    page.goto(web.server.url)
    _screen(page, "INSERT_CARD")
    page.wait_for_selector("button[data-card='taro.card']")
    assert "マイナンバーカードを置いてください" in page.inner_text("main")
    shot("insert-card")
    page.click("button[data-card='taro.card']")
    _screen(page, "ENTER_PIN")
    assert "残り3回" in page.inner_text("#tries")
    shot("pin")
    _type_pin(page, "9999")
    page.wait_for_selector("main[data-reason='PIN_WRONG']")
    assert "残り2回" in page.inner_text("#tries")
    assert reasons()["PIN_WRONG"].message_ja in page.inner_text("#message")
    shot("pin-wrong")
    _type_pin(page, "1234")
    _screen(page, "MENU")
    assert "住民票の写し — 200円" in page.inner_text("main")
    shot("menu")
    page.click("button[data-kind='RESIDENCE_RECORD']")
    _screen(page, "OPTIONS")
    page.check("#show_household_head")
    page.select_option("#copies", "2")
    assert "400円" in page.inner_text("#fee-preview")
    shot("options")
    page.click("#options-next")
    _screen(page, "PAYMENT")
    assert "料金: 400円" in page.inner_text("#fee")
    shot("fee")
    page.click("button[data-coin='1000']")
    _screen(page, "DONE")
    assert "お受け取りください" in page.inner_text("#done")
    assert "600円" in page.inner_text("#change")
    shot("done")
    page.click("#lang-en")
    assert "Take your certificate" in page.inner_text("#done")
    assert "600 yen" in page.inner_text("#change")
    shot("done-english")
    [issuance] = web.state.issuances.values()
    assert issuance.state == "COMMITTED" and issuance.charged == 400
    assert len(web.printer.tray) == 1 and len(web.printer.tray[0].pdfs) == 2
    page.click("#finish")
    _screen(page, "INSERT_CARD")


def test_refusal_in_the_browser_in_both_languages(web: WebRig, page: Any) -> None:
    shot = Shots(page, "refusal")
    web.state.refusals[web.serials["jiro"]] = "UNDER_15"
    page.goto(web.server.url)
    page.click("#lang-en")
    page.wait_for_selector("button[data-card='jiro.card']")
    assert "Please place your My Number Card" in page.inner_text("main")
    page.click("button[data-card='jiro.card']")
    _screen(page, "ENTER_PIN")
    assert "3 tries left" in page.inner_text("#tries")
    _type_pin(page, "1234")
    _screen(page, "MENU")
    page.click("button[data-kind='SEAL_REGISTRATION']")
    _screen(page, "OPTIONS")
    page.click("#options-next")
    _screen(page, "REFUSED")
    assert page.inner_text("#message") == reasons()["UNDER_15"].message_en
    shot("under-15-english")
    page.click("#lang-ja")
    assert page.inner_text("#message") == reasons()["UNDER_15"].message_ja
    shot("under-15-japanese")
    assert web.state.issuances == {} and web.printer.attempts == 0
    page.click("#refused-back")
    _screen(page, "MENU")
    page.click("#cancel")
    _screen(page, "INSERT_CARD")


def _menu(web: WebRig, page: Any, card: str = "taro.card") -> None:
    page.goto(web.server.url)
    page.wait_for_selector(f"button[data-card='{card}']")
    page.click(f"button[data-card='{card}']")
    _screen(page, "ENTER_PIN")
    _type_pin(page, "1234")
    _screen(page, "MENU")


def test_household_members_chosen_in_the_browser(web: WebRig, page: Any) -> None:
    shot = Shots(page, "members")
    _menu(web, page)
    page.click("button[data-kind='RESIDENCE_RECORD']")
    _screen(page, "OPTIONS")
    assert page.is_checked("#scope-self") and page.is_hidden("#members")
    page.check("#scope-members")
    # Names as registered, variation selectors kept (U+E0101 after 邉), with relationships.
    members = page.inner_text("#members")
    assert f"{WATANABE} 花子（妻）" in members and f"{WATANABE} 一郎（子）" in members
    shot("scope-members")
    page.click("#options-next")  # nobody chosen yet: the page asks, nothing is sent
    assert "1人以上" in page.inner_text("#members-hint")
    _screen(page, "OPTIONS")
    page.check("#member-p1")
    page.check("#member-p2")
    assert page.inner_text("#members-hint") == ""
    shot("members-chosen")
    page.click("#lang-en")
    _screen(page, "OPTIONS")
    assert "Some members (choose)" in page.inner_text("#scope")
    # The switch keeps what was chosen.
    assert page.is_checked("#scope-members") and page.is_visible("#members")
    assert page.is_checked("#member-p2") and not page.is_checked("#member-p3")
    shot("members-english")
    page.click("#lang-ja")
    page.click("#options-next")
    _screen(page, "PAYMENT")
    page.click("button[data-coin='500']")
    _screen(page, "DONE")
    [issuance] = web.state.issuances.values()
    chosen = issuance.options.residence_record
    assert chosen.scope == 3 and list(chosen.member_refs) == ["p1", "p2"]  # SELECTED_MEMBERS
    shot("done")


def test_use_registration_in_the_browser(web: WebRig, page: Any) -> None:
    shot = Shots(page, "usereg")
    _menu(web, page)
    assert "千代田区" not in page.inner_text("main")
    page.click("#use-registration")
    _screen(page, "USE_REGISTRATION")
    shot("form")
    code, domicile, head = CHIYODA_REGISTER
    page.fill("#reg-code", "13101")
    page.fill("#reg-domicile", domicile)
    page.fill("#reg-head", head)
    page.click("#usereg-submit")
    assert "6桁" in page.inner_text("#usereg-error")  # checked on the page, nothing sent
    assert web.state.use_registrations == {}
    page.fill("#reg-code", code)
    assert page.inner_text("#usereg-error") == ""  # typing again clears the complaint
    page.fill("#reg-head", "葛城 次郎")
    shot("form-filled")
    page.click("#usereg-submit")
    page.wait_for_selector("main[data-status='REJECTED']")
    assert page.inner_text("#usereg-status") == reasons()["USE_REGISTRATION_REJECTED"].message_ja
    shot("rejected")
    page.click("#usereg-menu")
    _screen(page, "MENU")
    page.click("#use-registration")
    page.fill("#reg-code", code)
    page.fill("#reg-domicile", domicile)
    page.fill("#reg-head", head)
    page.click("#usereg-submit")
    page.wait_for_selector("main[data-status='APPROVED']")
    assert "利用登録が完了しました" in page.inner_text("#usereg-status")
    shot("approved")
    page.click("#lang-en")
    assert "use registration is approved" in page.inner_text("#usereg-status")
    shot("approved-english")
    page.click("#lang-ja")
    page.click("#usereg-menu")
    _screen(page, "MENU")
    assert "戸籍個人事項証明書 — 450円" in page.inner_text("main")
    assert "千代田区" in page.inner_text("main")
    shot("menu-with-register")
    page.click("button[data-kind='FAMILY_REGISTER_INDIVIDUAL']")
    _screen(page, "OPTIONS")
    members = page.inner_text("#register-members")
    assert f"{KATSURAGI} 太郎（本人）" in members and f"{KATSURAGI} 花子（妻）" in members
    assert page.is_checked("#member-m1") and not page.is_checked("#member-m2")
    page.check("#member-m2")
    shot("register-members")
    page.click("#options-next")
    _screen(page, "PAYMENT")
    assert "450円" in page.inner_text("#fee")
    page.click("button[data-coin='500']")
    _screen(page, "DONE")
    [issuance] = web.state.issuances.values()
    assert issuance.municipality_code == CHIYODA
    assert list(issuance.options.family_register.member_refs) == ["m1", "m2"]
    [approved] = [u for u in web.state.use_registrations.values() if u.status == "APPROVED"]
    assert approved.serial == web.serials["taro"]
    shot("done")


def test_use_registration_pending_in_the_browser(web: WebRig, page: Any) -> None:
    shot = Shots(page, "usereg-pending")
    web.state.hold_use_registrations = True
    _menu(web, page, "jiro.card")
    page.click("#lang-en")
    page.click("#use-registration")
    for field_id, value in zip(("#reg-code", "#reg-domicile", "#reg-head"), CHIYODA_REGISTER,
                               strict=True):
        page.fill(field_id, value)
    page.click("#usereg-submit")
    page.wait_for_selector("main[data-status='PENDING']")
    assert page.inner_text("#usereg-status") == reasons()["USE_REGISTRATION_PENDING"].message_en
    shot("pending-english")
    [record] = web.state.use_registrations.values()
    record.status = "APPROVED"  # the register municipality decided meanwhile
    page.click("#usereg-check")
    page.wait_for_selector("main[data-status='APPROVED']")
    shot("approved-after-check")
    page.click("#usereg-menu")
    _screen(page, "MENU")
    assert "Family register (full)" in page.inner_text("main")


def test_card_taken_out_during_payment_shows_the_money_returned(web: WebRig,
                                                                page: Any) -> None:
    shot = Shots(page, "cancel-payment")
    _menu(web, page)
    page.click("button[data-kind='SEAL_REGISTRATION']")
    _screen(page, "OPTIONS")
    page.click("#options-next")
    _screen(page, "PAYMENT")
    page.click("button[data-coin='100']")
    page.wait_for_selector("#paid:has-text('100円')")
    page.click("#cancel")
    _screen(page, "INSERT_CARD")
    assert "100円をお返ししました" in page.inner_text("#returned")
    shot("start-with-money-returned")
    [issuance] = web.state.issuances.values()
    assert issuance.state == "CANCELLED"


def _post(web: WebRig, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(web.server.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_api_use_registration_and_scope_checks(web: WebRig) -> None:
    _post(web, "api/insert", {"card": "taro.card"})
    assert _post(web, "api/pin", {"pin": "1234"})["id"] == "MENU"
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(web, "api/choose", {"kind": 1, "scope": "everyone"})
    assert err.value.code == 400
    code, domicile, head = CHIYODA_REGISTER
    answer = _post(web, "api/register-use", {"register_municipality_code": code,
                                             "registered_domicile": domicile,
                                             "head_of_register": head})
    assert answer["id"] == "MENU" and answer["use_registration"]["status"] == "APPROVED"
    assert {e["municipality_code"] for e in answer["menu"]} == {KOFU, CHIYODA}
    refused = _post(web, "api/register-use", {"register_municipality_code": "999999",
                                              "registered_domicile": domicile,
                                              "head_of_register": head})
    assert refused["id"] == "REFUSED" and refused["use_registration"]["status"] == "REFUSED"
    assert refused["message_ja"] == reasons()["FIELD_INVALID"].message_ja
