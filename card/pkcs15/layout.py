"""Where a PKCS#15 application lives: its AID and the file ids of its files, defined once for the token
and the virtual card.

EF.DIR ``2F00`` is ISO 7816-4's; the application DF ``5015``, EF.OD ``5031`` and EF.TokenInfo ``5032`` are
PKCS#15's defaults. A card's EF.OD says where its AODF, PrKDF and CDF are: the ids here are the virtual
card's choice, following PKCS#15 and OpenSC (only TokenInfo ``5032`` is confirmed on FINEID cards, F13).
"""

from __future__ import annotations

PKCS15_AID = bytes.fromhex("A000000063504B43532D3135")

FID_DIR = bytes.fromhex("2F00")
APP_DF = bytes.fromhex("5015")
FID_OD = bytes.fromhex("5031")
FID_TOKENINFO = bytes.fromhex("5032")
FID_AODF = bytes.fromhex("4401")
FID_PRKDF = bytes.fromhex("4402")
FID_CDF = bytes.fromhex("4404")
