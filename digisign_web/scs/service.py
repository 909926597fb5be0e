"""The signing service: one parsed ``/sign`` request through the queue, the card, the dialog and the signature.

For each request, in order: the switch-off and the cancel guard, a place in the queue (after the WebSigner
page is shown, for a :class:`~digisign_web.dialog.protocol.TabDialog`), the card's certificates narrowed by
the selector and the authentication-key rule, the dialog, the PIN session rule (D27, D28), and the signature in
the requested format. Failures are :class:`~digisign_web.scs.errors.ScsFailure`, mapped in
:func:`~digisign_web.scs.errors.scs_failure_for`; the HTTP layer turns them into answers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from card import (
    CardError,
    CardManager,
    CardPolicy,
    Certificate,
    ReaderSource,
    RetryableCardError,
    Token,
)
from card.token import pin_on_reader
from digisign_web.dialog.protocol import Choice, Dialog, DialogAnswer, DialogRefused, DialogRequest, TabDialog
from digisign_web.scs.authentication import check_authentication_content
from digisign_web.scs.cancel_guard import CancelGuard
from digisign_web.scs.card_state import VIRTUAL_MANUFACTURER, CardState
from digisign_web.scs.errors import Cancelled, PinBlocked, ScsFailure, TimedOut, WrongPin, scs_failure_for
from digisign_web.scs.expiry import Expiry, Validity, expiry
from digisign_web.scs.pin_sessions import PinSessions
from digisign_web.scs.queue import OperationQueue
from digisign_web.scs.request import ScsRequest
from digisign_web.scs.selector import select_usable
from digisign_web.settings import Settings, card_policy
from digisign_web.signing import formats

log = logging.getLogger(__name__)

_Answer = TypeVar("_Answer", DialogAnswer, DialogAnswer | None)
_T = TypeVar("_T")


HASH_IN_THREAD = 1 << 20  # bytes of content from which hashing leaves the event loop


class _NeedsCard(Exception):
    """Preparing from memory would have to read the card: do it in the worker thread instead."""


@dataclass
class _Candidate:
    token: Token
    cert: Certificate
    expiry: Expiry  # as of this request: expired and not yet valid ones are never offered (D50)


class SigningService:
    """Policies, dialog and card, for one request at a time."""

    def __init__(self, manager: CardManager, state: CardState, settings: Settings, dialog: Dialog):
        self.manager = manager
        self.state = state
        self.settings = settings
        self.dialog = dialog
        self.queue = OperationQueue(settings.queue_limit)
        self.guard = CancelGuard(settings.spam_cancel_limit, settings.spam_window, settings.spam_block)
        self.pins = PinSessions()  # whose PIN each card holds (D27, D28)
        self._asking: set[asyncio.Task[Any]] = set()  # requests at their dialog, which a screen lock cancels
        self._locked: set[asyncio.Task[Any]] = set()  # ... and those it did cancel

    @property
    def version(self) -> str:
        return self.settings.scs_version

    async def sign(self, request: ScsRequest, origin: str | None, present: Callable[[str], None] | None = None,
                   after: str | None = None) -> dict[str, Any]:
        """Sign one request. ``present``/``after`` route the web dialog into the caller's tab (WebSigner).

        The request leaves the queue, and releases the card, as soon as it ends: answered, failed, timed out
        (its dialog not shown within the web dialog's SHOW_TIMEOUT, or not answered within dialogTimeout, both
        counted by the spam guard), or cancelled because its client went away.
        """
        if self.settings.http_signer_disabled:
            raise ScsFailure(403, "the signing service is disabled on this computer (HTTPSignerDisabled=1)")
        blocked = self.guard.blocked_for(origin or "")
        if blocked > 0:
            raise ScsFailure(403, f"too many cancelled or unanswered requests from {origin or 'this client'}; "
                                  f"try again in {int(blocked) + 1} s")
        dialog = self.dialog
        if present is None or not isinstance(dialog, TabDialog):
            async with self.queue.slot():
                return await self._sign_locked(request, origin, present, after)

        async def show_first() -> None:
            try:
                await dialog.reserve(present, after)
            except (TimeoutError, DialogRefused) as exc:
                if isinstance(exc, TimeoutError):  # not shown in time: counted like a cancel
                    self.guard.record_cancel(origin or "")
                raise scs_failure_for(exc) from None

        try:
            async with self.queue.slot(show_first):
                return await self._sign_locked(request, origin, present, after)
        finally:
            dialog.release(present)  # a shown page whose operation ended before its dialog moves on

    async def _card(self, fn, *args, token: Token | None = None):
        """Run ``fn`` holding the card lock: inline when ``token`` never blocks (the in-process virtual card:
        its APDUs are function calls) and the lock is free, else in one worker-thread hop, so a reader that
        takes a second never stalls the event loop (D66)."""
        lock = self.state.card_lock
        if token is not None and not token.blocking and lock.acquire(blocking=False):
            try:
                return fn(*args)
            finally:
                lock.release()

        def run():
            with lock:
                return fn(*args)

        return await asyncio.to_thread(run)

    def _candidates(self, tokens: list[Token] | None = None) -> list[_Candidate]:
        out = []
        now = dt.datetime.now(dt.UTC)
        warning_days = self.settings.cert_expiration_warning_days
        for token in self.manager.tokens() if tokens is None else tokens:
            for cert in token.certificates():
                if cert.key is not None and cert.role in ("authentication", "signature"):
                    x509 = cert.certificate
                    out.append(_Candidate(token, cert, expiry(x509.not_before, x509.not_after, warning_days, now)))
        return out

    def _reuses_pin(self, token: Token, cert: Certificate, origin: str | None, may_read: bool) -> bool:
        """PIN1 is reused only as :meth:`PinSessions.reusable` allows, and only when neither
        scsRequestsPinAlways nor dropAuthentication is on. Asking the card whether it still holds PIN1 is an
        APDU: from memory (``may_read`` off, on the event loop) that raises :class:`_NeedsCard` instead."""
        if self.settings.pin_always or self.settings.drop_authentication \
                or not self.pins.may_reuse(token, cert, origin):
            return False
        if not may_read:
            raise _NeedsCard
        return self.pins.reusable(token, cert, origin)

    def _pin_counters(self, token: Token, cert: Certificate, may_read: bool) -> tuple[int | None, bool]:
        """A PIN's counters for the dialog: what is already known (read at insertion, kept current from each
        VERIFY answer), else read from the card, but only when the dialog will show them."""
        if cert.pin is None:
            return None, False
        known = self.state.known_pin(token.reader, cert.pin.label)
        if known is not None:
            return known
        if not self.dialog.shows_pin_status:
            return None, False
        if not may_read:
            raise _NeedsCard
        status = token.pin_status(cert.pin)
        self.state.note_pin(token.reader, cert.pin.label, status.tries_left, status.blocked)
        return status.tries_left, status.blocked

    def _choices(self, candidates: list[_Candidate], origin: str | None, may_read: bool) -> list[Choice]:
        choices = []
        for c in candidates:
            cert, token = c.cert, c.token
            tries_left, blocked = self._pin_counters(token, cert, may_read)
            needs_pin = not self._reuses_pin(token, cert, origin, may_read)
            choices.append(Choice(
                label=cert.label, subject=cert.subject, issuer=cert.issuer, role=cert.role,
                key=cert.key_description,
                # only usable certificates get here (D50): "expiring" is the certExpirationWarningDays window
                not_after=c.expiry.not_after.date().isoformat(), expiring_soon=c.expiry.validity is Validity.EXPIRING,
                pin_label=cert.pin.label if cert.pin else "PIN",
                tries_left=tries_left, blocked=blocked,
                needs_pin=needs_pin, reader=token.reader, virtual=token.token_info.manufacturer == VIRTUAL_MANUFACTURER,
                key_usage=tuple(cert.key_usage),
                pin_min=cert.pin.min_length if cert.pin else 4, pin_max=cert.pin.max_length if cert.pin else 12,
                pin_digits=cert.pin.numeric if cert.pin else True,
                pin_on_reader=pin_on_reader(cert.pin),
            ))
        return choices

    def _prepare(self, request: ScsRequest, origin: str | None, tokens: list[Token] | None = None
                 ) -> tuple[list[_Candidate], list[Choice], bool]:
        """Candidates, selector, the authentication-key rule and the dialog's choices. With ``tokens`` (read
        already) it runs from memory, on the event loop, and raises :class:`_NeedsCard` where it would read
        the card; without, it may read the card (a worker thread)."""
        candidates = self._candidates(tokens)
        if not candidates:
            problems = "; ".join(f"{r}: {p}" for r, p in self.manager.problems().items())
            raise ScsFailure(404, "no card with a usable certificate is present"
                             + (f" ({problems})" if problems else ""))
        selection = select_usable(candidates, lambda c: c.cert.certificate, request.selector,
                                  self.settings.strict_scs_key_policy, lambda c: c.expiry)
        if selection.unusable:  # only expired or not yet valid certificates match (D50)
            raise ScsFailure(404, selection.reason)
        if not selection.matches:
            raise ScsFailure(404, f"no certificate matches the request: {selection.reason}")
        allowed = []
        refusal = ""
        for candidate in selection.matches:
            if candidate.cert.role == "authentication":
                why = check_authentication_content(origin, request.content_type, request.content)
                if why:
                    refusal = why
                    continue
            allowed.append(candidate)
        if not allowed:
            raise ScsFailure(403, f"the authentication key may not sign this content: {refusal}")
        return allowed, self._choices(allowed, origin, may_read=tokens is None), selection.relaxed_algorithm

    def _prepare_with_retry(self, request: ScsRequest, origin: str | None) -> tuple[list[_Candidate], list[Choice],
                                                                                  bool]:
        """Reads are safe to repeat: a token gone stale (the card was pulled and pushed back in between)
        is dropped and everything is read once more. Signing, by contrast, is never repeated."""
        try:
            return self._prepare(request, origin)
        except RetryableCardError as exc:
            log.info("card state went stale (%s); reading the card again", exc)
            self.manager.forget_tokens()
            return self._prepare(request, origin)

    async def _sign_locked(self, request: ScsRequest, origin: str | None,
                           present: Callable[[str], None] | None = None, after: str | None = None) -> dict[str, Any]:
        allowed, choices, relaxed = await self._candidates_and_choices(request, origin)
        sign_request = await self._hashed(request.sign_request)
        dialog_request = DialogRequest(origin, request.info, request.signature_type, request.content_type,
                                       request.hash_algorithm, len(request.content),
                                       formats.message_digest(sign_request).hex(),
                                       tuple(choices), relaxed, present, after)
        try:
            result = await self._converse(request, sign_request, origin, dialog_request, allowed, choices)
        except ScsFailure as exc:
            if isinstance(exc, TimedOut):
                self.guard.record_cancel(origin or "")
            await self.dialog.finish(dialog_request, "cancelled" if isinstance(exc, Cancelled) else "failed", exc.text)
            raise
        except asyncio.CancelledError:  # the client went away: its dialog ends, and it counts like a cancel
            self.guard.record_cancel(origin or "")
            await self.dialog.finish(dialog_request, "failed", "the page that asked went away")
            raise
        await self.dialog.finish(dialog_request, "signed", "Signature generated")
        self.guard.record_success(origin or "")
        return result

    async def _candidates_and_choices(self, request: ScsRequest, origin: str | None
                                      ) -> tuple[list[_Candidate], list[Choice], bool]:
        """From memory on the event loop when every present card has been read and what the dialog shows is
        known (the warm case: no thread, no APDU); else in one worker-thread hop that may read the card."""
        tokens = self.manager.cached_tokens()
        if tokens is not None:
            try:
                return self._prepare(request, origin, tokens)
            except _NeedsCard:
                pass
        try:
            return await self._card(self._prepare_with_retry, request, origin)
        except CardError as exc:
            raise scs_failure_for(exc, reading=True) from None

    @staticmethod
    async def _hashed(sign_request: formats.SignRequest) -> formats.SignRequest:
        """The request with its content hashed, once (the dialog shows the digest, the format reuses it)."""
        return await _document_work(len(sign_request.content), sign_request.hashed)

    async def _ask(self, question: Awaitable[_Answer]) -> _Answer:
        """The dialog's answer within dialogTimeout, awaited in the request's own task (no task per question:
        an automatic dialog answers at once, and each extra task is another turn of the event loop)."""
        task = asyncio.current_task()
        assert task is not None
        self._asking.add(task)
        try:
            async with asyncio.timeout(self.settings.dialog_timeout):
                return await question
        except (TimeoutError, DialogRefused) as exc:  # TimeoutError includes the web dialog's DialogNotShown
            raise scs_failure_for(exc) from None
        except asyncio.CancelledError:
            if task in self._locked and task.uncancel() == 0:  # screen_locked, and not the client as well
                locked = Cancelled()
                locked.text = "cancelled: the screen was locked"
                raise locked from None
            raise
        finally:
            self._asking.discard(task)
            self._locked.discard(task)

    async def screen_locked(self) -> None:
        """closeGUIServerWhenLock (D45): whoever comes back to an unlocked screen may not be the user who entered
        a PIN. The open dialog is cancelled (its request fails as cancelled, not counted as the page's cancel)
        and every card forgets its verified PINs, so the next signature asks for PIN1 again."""
        for asking in list(self._asking):
            self._locked.add(asking)
            asking.cancel()

        def log_out() -> None:
            tokens = self.manager.cached_tokens()
            for token in self.manager.tokens() if tokens is None else tokens:
                self.pins.drop(token)

        try:
            await self._card(log_out)
        except CardError as exc:
            log.info("screen locked: could not log every card out (%s)", exc)
        log.info("screen locked: the open dialog (if any) was cancelled and the cards were logged out")

    async def _converse(self, request: ScsRequest, sign_request: formats.SignRequest, origin: str | None,
                        dialog_request: DialogRequest, allowed: list[_Candidate], choices: list[Choice]
                        ) -> dict[str, Any]:
        """Ask, sign, and, where the dialog can (the web dialog), let the user correct a wrong PIN.
        Each new PIN comes from the user: a wrong PIN is never retried by us."""
        answer = await self._ask(self.dialog.ask(dialog_request))
        while True:
            if answer.choice is None or not 0 <= answer.choice < len(allowed):
                self.guard.record_cancel(origin or "")
                raise Cancelled
            chosen, choice = allowed[answer.choice], choices[answer.choice]
            if choice.blocked:
                raise PinBlocked(f"{choice.pin_label} is blocked; unblock it with the PUK")
            if choice.needs_pin and not answer.pin and not choice.pin_on_reader:
                raise ScsFailure(401, "no PIN was entered")
            pin_label = chosen.cert.pin.label if chosen.cert.pin else ""
            try:
                result = await self._do_sign(request, sign_request, chosen, answer, origin, choice.needs_pin)
            except WrongPin as exc:
                self.state.note_pin(chosen.token.reader, pin_label, exc.tries_left, exc.tries_left == 0)
                if not exc.tries_left:
                    raise
                again = await self._ask(self.dialog.ask_again(dialog_request, exc.text, exc.tries_left))
                if again is None:  # this dialog cannot ask again: the wrong PIN ends the request
                    raise
                answer = again
                continue
            except PinBlocked:
                self.state.note_pin(chosen.token.reader, pin_label, 0, True)
                raise
            if answer.pin:  # a right PIN resets the card's counter: known without asking the card
                self.state.note_pin(chosen.token.reader, pin_label, chosen.token.profile.max_tries, False)
            return result

    async def _do_sign(self, request: ScsRequest, sign_request: formats.SignRequest, chosen: _Candidate,
                       answer: DialogAnswer, origin: str | None, needs_pin: bool = True) -> dict[str, Any]:
        """The format is prepared and finished on the event loop (a large document's in a worker thread); the
        card sees one worker-thread hop with exactly the PIN check and the signature (VERIFY, MSE, PSO:HASH,
        PSO:CDS when warm).

        A PIN entered on the reader (D62) is asked by logging the token out first, so its login must ask; a
        key that logs in for every signature (user consent) asks anyway."""
        token, cert = chosen.token, chosen.cert
        chain = token.chain(cert)
        size = len(sign_request.content)
        try:
            pending = await _document_work(size, formats.prepare, request.signature_type, sign_request, chain,
                                           cert.key_algorithm)
        except formats.FormatError as exc:
            raise scs_failure_for(exc) from None
        pin_always, drop = self.settings.pin_always, self.settings.drop_authentication
        on_reader = needs_pin and answer.pin is None and pin_on_reader(cert.pin)
        consent = cert.key is not None and cert.key.user_consent > 0
        log_out = pin_always or (on_reader and not consent)

        def on_card() -> bytes:
            self.pins.take(token, origin, log_out=log_out)
            try:
                return token.sign_digest(cert, pending.hash_algorithm, pending.digest, pin=answer.pin)
            finally:
                if drop:
                    self.pins.drop(token)

        try:
            raw = await self._card(on_card, token=token)
        except CardError as exc:
            raise scs_failure_for(exc) from None
        output = await _document_work(size, pending.finish, raw)
        return {
            "version": self.version,
            "signatureAlgorithm": output.signature_algorithm,
            "signatureType": request.signature_type,
            "signature": output.signature,  # raw bytes: the web layer encodes them once, as it writes
            "chain": [base64.b64encode(c.der).decode() for c in chain],
            "status": "ok",
            "reasonCode": 200,
            "reasonText": "Signature generated",
        }


async def _document_work(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    """Work over the whole document (hashing, the CMS and XMLDSig formats): on the event loop for a small one,
    in a worker thread from HASH_IN_THREAD bytes, so the loop keeps serving (canonicalising 20 MB of XML takes
    seconds; hashlib releases the GIL)."""
    if size < HASH_IN_THREAD:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def build_service(settings: Settings, dialog: Dialog, source: ReaderSource | None = None, *,
                  policy: CardPolicy | None = None) -> SigningService:
    """The signing service over its own card manager and card state (``source`` defaults to PC/SC readers).

    The web app (:func:`digisign_web.web.app.build_app`) and in-process tests build the service here; the
    caller starts and stops ``service.manager``.
    """
    manager = CardManager(policy or card_policy(settings), source)
    return SigningService(manager, CardState(manager, warning_days=settings.cert_expiration_warning_days),
                          settings, dialog)
