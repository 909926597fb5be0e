"""A certificate's validity as the user sees it: valid, expiring soon (certExpirationWarningDays), or expired.

One home for the rule, so the dialog, the selector, ``list``, the playground and the "My card" page agree:
an expired (or not yet valid) certificate is never offered for signing, and "expiring" means fewer than
``warning_days`` days are left.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class Validity(enum.StrEnum):
    VALID = "valid"
    EXPIRING = "expiring"  # still valid, fewer than certExpirationWarningDays left
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"

    @property
    def usable(self) -> bool:
        """Whether a certificate in this state may be offered for signing."""
        return self in (Validity.VALID, Validity.EXPIRING)


@dataclass(frozen=True)
class Expiry:
    validity: Validity
    not_after: dt.datetime
    days_left: int  # whole days until not_after (negative once expired)
    not_before: dt.datetime | None = None  # for the "not valid before" text

    def text(self) -> str:
        """How ``list``, logs and failure texts say it: "expired on 2026-01-31", "expires 2027-03-01 (in 90
        days)", "not valid before 2027-01-01" (dates in UTC)."""
        day = self.not_after.date().isoformat()
        if self.validity is Validity.EXPIRED:
            return f"expired on {day}"
        if self.validity is Validity.NOT_YET_VALID and self.not_before is not None:
            return f"not valid before {self.not_before.date().isoformat()}"
        left = self.days_left
        return f"expires {day} (in {left} day{'' if left == 1 else 's'})"


def expiry(not_before: dt.datetime, not_after: dt.datetime, warning_days: int,
           now: dt.datetime | None = None) -> Expiry:
    """Where ``now`` (default: the current UTC time) falls in the validity period, with the warning window.

    The period is inclusive at both ends (X.509: notAfter is the last valid second, F32): at exactly
    ``not_after`` a certificate is still valid, one second later it is expired (D50)."""
    now = now or dt.datetime.now(dt.UTC)
    left = not_after - now
    if now > not_after:
        validity = Validity.EXPIRED
    elif now < not_before:
        validity = Validity.NOT_YET_VALID
    elif left < dt.timedelta(days=warning_days):
        validity = Validity.EXPIRING
    else:
        validity = Validity.VALID
    return Expiry(validity, not_after, left.days, not_before)
