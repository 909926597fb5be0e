"""Settings in DigiSign.conf style, so an administrator who knows the Fujitsu client can reuse its key names.

The vendor keys this server honours keep the vendor's names, defaults and meaning; the keys that only make
sense for the vendor's client (minidriver, cryptoki, GUI, card personalisation, ...) are recognised and
reported as ignored rather than as typos. This project's own keys use the same ``key=value`` format.

Files are layered, later wins: ``/etc/digisign/DigiSign.conf``, the user's
``$XDG_CONFIG_HOME/digisign-web/DigiSign.conf``, ``$DIGISIGN_CONF`` and ``--config FILE``; then an
environment variable named exactly like a known key overrides everything. A bad value never stops the
server: it is reported in ``Settings.warnings`` and the previous value is kept, because a typo in a
settings file should not take away the user's ability to sign.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digisign_web.wildcards import matcher

TYPE_CHECKING = False  # the card layer loads when a policy is built, not with the settings (serve starts first)
if TYPE_CHECKING:
    from card import CardPolicy
    from card.cache import CardCache

log = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/digisign/DigiSign.conf")
USER_CONFIG = Path("digisign-web") / "DigiSign.conf"  # under $XDG_CONFIG_HOME or ~/.config
CONFIG_ENV = "DIGISIGN_CONF"
MAX_FILE_BYTES = 1024 * 1024  # a settings file is a few hundred bytes; refuse to slurp anything huge
MAX_SHOWN = 80  # echo at most this many characters of file content in a warning

DEFAULT_HTTPS_PORTS = (53952, 23124, 8089)
DEFAULT_ALLOWED_ORIGINS = "https://* http://localhost http://localhost:* http://127.0.0.1 http://127.0.0.1:*"
LANGUAGES = ("", "fi", "en", "sv")
DAY = 86400.0


@dataclass(frozen=True)
class Settings:
    """The effective settings after all layers; ``sources``, ``warnings`` and ``ignored`` say how they came to be."""

    # vendor keys (DigiSign.conf names in comments; defaults from the vendor table)
    strict_scs_key_policy: bool = False  # strictSCSKeyPolicy
    http_signer_disabled: bool = False  # HTTPSignerDisabled (1: /sign refuses with 403)
    exclude_reader: str = ""  # excludeReader (space-separated wildcards)
    allow_unknown_cards: bool = True  # allowUnknownCards
    valid_token_info_label: str = ""  # validTokenInfoLabel (vendor default "0" means unset -> "")
    build_reader_list_timer: float = 5.0  # buildReaderListTimer (seconds, > 0)
    language: str = ""  # Language: "", "fi", "en" or "sv"
    cert_expiration_warning_days: int = 30  # certExpirationWarningDays
    # dropAuthentication (1: the card is logged out after every signing operation, so even the origin that
    # verified PIN1 must enter it again; 0: PIN1 is reused, for the origin it was verified for only)
    drop_authentication: bool = False
    # this project's own keys
    https_ports: tuple[int, ...] = DEFAULT_HTTPS_PORTS  # httpsPorts ("53952,23124,8089")
    http_ports: tuple[int, ...] = ()  # httpPorts (off by default; e.g. "53951,23123,8088")
    allowed_origins: str = DEFAULT_ALLOWED_ORIGINS  # allowedOrigins (space-separated wildcards)
    max_request_bytes: int = 100 * 1024 * 1024  # maxRequestBytes
    pin_always: bool = False  # scsRequestsPinAlways ("SCS requests PIN always")
    scs_version: str = "1.1"  # scsVersion (the version /version reports)
    queue_limit: int = 16  # scsQueueLimit (sign requests waiting behind the current one)
    dialog_timeout: float = 120.0  # dialogTimeout (seconds)
    spam_cancel_limit: int = 3  # spamCancelLimit: cancels from one origin ...
    spam_window: float = 60.0  # spamWindowSeconds: ... within this window ...
    spam_block: float = 300.0  # spamBlockSeconds: ... block that origin this long
    # vendor keys of daily use (issue 13): the smart-card cache, PIN rules, screen lock
    smart_card_sn_cache: int = 3  # SmartCardSNCache: 0 off, 1 plain, 2 fixed-key encrypted, 3 machine+user key
    smart_card_cache_path: str = ""  # SmartCardCachePath ("": $XDG_CACHE_HOME/digisign-web/cards)
    pin_min_length: int = 0  # pinMinLength (0: the card's own minimum)
    pin_numeric_values_only: bool = False  # pinNumericValuesOnly (overrides the card's PIN type)
    pin_ignore_pin_type_check: bool = False  # pinIgnorePinTypeCheck (ignore type rules, incl. the one above)
    pin_complexity_check: int = 0  # pinComplexityCheck (bit mask, see the vendor table)
    disable_pin_unblocking: bool = False  # disablePinUnblocking
    close_gui_server_when_lock: bool = True  # closeGUIServerWhenLock (screen lock: cancel dialogs, log out)
    # tokens through PKCS#11 (issue 14)
    pkcs11_module: str = ""  # pkcs11Module (space-separated module paths)
    pkcs11_preferred: bool = False  # pkcs11Preferred (a card seen by both: 1 takes the module's view)
    sources: tuple[str, ...] = ()  # files that were read, in order
    warnings: tuple[str, ...] = ()  # human-readable problems (unknown keys, bad values)
    ignored: tuple[str, ...] = ()  # known vendor keys that do not apply here


# --- value parsers: each returns the typed value or raises ValueError with a short reason ---------------------

_UINT = re.compile(r"\d+", re.ASCII)
_UFLOAT = re.compile(r"\d+(\.\d*)?|\.\d+", re.ASCII)
_VERSION = re.compile(r"\d+(\.\d+){0,3}", re.ASCII)
_ORIGIN_PATTERN = re.compile(r"(\*|[A-Za-z][A-Za-z0-9+.-]*)://[^/\s]+", re.ASCII)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: str) -> bool:
    word = value.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected 0/1, true/false, yes/no or on/off")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not _UINT.fullmatch(value):
            raise ValueError(f"expected a whole number from {low} to {high}")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number

    return parse


def _seconds(high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        if not _UFLOAT.fullmatch(value):
            raise ValueError(f"expected seconds, more than 0 and at most {high:g}")
        number = float(value)
        if not (math.isfinite(number) and 0 < number <= high):
            raise ValueError(f"expected seconds, more than 0 and at most {high:g}")
        return number

    return parse


def _ports(allow_empty: bool) -> Callable[[str], tuple[int, ...]]:
    def parse(value: str) -> tuple[int, ...]:
        ports: list[int] = []
        for word in re.split(r"[\s,]+", value.strip()):
            if not word:
                continue
            if not _UINT.fullmatch(word) or not 1 <= int(word) <= 65535:
                raise ValueError(f"{_clip(word)!r} is not a port number from 1 to 65535")
            if int(word) not in ports:
                ports.append(int(word))
        if not ports and not allow_empty:
            raise ValueError("at least one port is needed")
        return tuple(ports)

    return parse


def _patterns(value: str) -> str:
    """A space-separated wildcard list; runs of blanks collapse, since a blank always separates patterns."""
    return " ".join(value.split())


def _token_labels(value: str) -> str:
    # The vendor table's default is "0", which the vendor client treats as "not set".
    patterns = _patterns(value)
    return "" if patterns == "0" else patterns


def _origins(value: str) -> str:
    patterns = _patterns(value)
    for pattern in patterns.split():
        if pattern == "null":
            continue  # sandboxed iframes and file:// pages send "null": allowed only when listed literally
        if not _ORIGIN_PATTERN.fullmatch(pattern):
            raise ValueError(f"{_clip(pattern)!r} is not an origin pattern like https://*.example.fi or http://localhost:*")
    return patterns


def _language(value: str) -> str:
    language = value.lower()
    if language not in LANGUAGES:
        raise ValueError("expected fi, en, sv or empty")
    return language


def _plain_path(value: str) -> str:
    """A path (or, for pkcs11Module, several separated by spaces): any printable text, kept as written."""
    if any(not ch.isprintable() for ch in value):
        raise ValueError("expected printable text")
    return value.strip()


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError("expected a version number like 1.1")
    return value


@dataclass(frozen=True)
class _Key:
    name: str  # canonical DigiSign.conf spelling
    field: str  # Settings attribute
    parse: Callable[[str], Any]


KEYS: dict[str, _Key] = {
    key.name: key
    for key in (
        _Key("strictSCSKeyPolicy", "strict_scs_key_policy", _bool),
        _Key("HTTPSignerDisabled", "http_signer_disabled", _bool),
        _Key("excludeReader", "exclude_reader", _patterns),
        _Key("allowUnknownCards", "allow_unknown_cards", _bool),
        _Key("validTokenInfoLabel", "valid_token_info_label", _token_labels),
        _Key("buildReaderListTimer", "build_reader_list_timer", _seconds(3600.0)),
        _Key("Language", "language", _language),
        _Key("certExpirationWarningDays", "cert_expiration_warning_days", _int_in(0, 3650)),
        _Key("dropAuthentication", "drop_authentication", _bool),
        _Key("httpsPorts", "https_ports", _ports(allow_empty=False)),
        _Key("httpPorts", "http_ports", _ports(allow_empty=True)),
        _Key("allowedOrigins", "allowed_origins", _origins),
        _Key("maxRequestBytes", "max_request_bytes", _int_in(1024, 1024**3)),
        _Key("scsRequestsPinAlways", "pin_always", _bool),
        _Key("scsVersion", "scs_version", _version),
        _Key("scsQueueLimit", "queue_limit", _int_in(0, 1000)),
        _Key("dialogTimeout", "dialog_timeout", _seconds(DAY)),
        _Key("spamCancelLimit", "spam_cancel_limit", _int_in(1, 1000)),
        _Key("spamWindowSeconds", "spam_window", _seconds(DAY)),
        _Key("spamBlockSeconds", "spam_block", _seconds(DAY)),
        _Key("SmartCardSNCache", "smart_card_sn_cache", _int_in(0, 3)),
        _Key("SmartCardCachePath", "smart_card_cache_path", _plain_path),
        _Key("pinMinLength", "pin_min_length", _int_in(0, 16)),
        _Key("pinNumericValuesOnly", "pin_numeric_values_only", _bool),
        _Key("pinIgnorePinTypeCheck", "pin_ignore_pin_type_check", _bool),
        _Key("pinComplexityCheck", "pin_complexity_check", _int_in(0, 31)),
        _Key("disablePinUnblocking", "disable_pin_unblocking", _bool),
        _Key("closeGUIServerWhenLock", "close_gui_server_when_lock", _bool),
        _Key("pkcs11Module", "pkcs11_module", _plain_path),
        _Key("pkcs11Preferred", "pkcs11_preferred", _bool),
    )
}

# Every key of the vendor's settings tables (the main table and "Optional settings") that this server does
# not implement. Their values are never kept: some of them (gpMasterKey, scTerminalKey) are secrets.
VENDOR_IGNORED: frozenset[str] = frozenset({
    "aboutDialogBitmap", "changePinCacheCount", "changePinInitialPeriod", "changePinPeriod", "closeBrowsers",
    "closeBrowsersConfirm", "closeBrowsersExcludeReader", "cryptokiPinCache",
    "cryptokiSoftwareKeyGen", "DataPath", "disableAuthTab", "disableCryptokiAutoLogin", "disableCryptokiBufferCheck",
    "disableCryptokiPIN2Slot", "forceSelectApplet",
    "HTTPToolkitEnabled", "managerBannerBitmap", "minidriverAuthMode", "minidriverAutoAuthExclude",
    "minidriverPinCache", "minidriverReadOnly", "pinDialogBitmap",
    "removeAllCertificatesOnEmptyEvent", "showAsn1CertInWindows",
    "SplashBitmap", "toolkitPinCache", "userLevel", "loadCertificates",
    # section 3.1, "Optional settings"
    "gpMasterKey", "gpCardManager", "scCVCert", "scCVCSignerKey", "scTerminalKey", "scMaxRsaObjectSize",
    "activationDialogWallpaper", "activationDialogTextColor",
})

_KNOWN_BY_LOWER = {name.lower(): name for name in KEYS}
_IGNORED_BY_LOWER = {name.lower(): name for name in VENDOR_IGNORED}


# --- text helpers ---------------------------------------------------------------------------------------------


def _clip(text: str) -> str:
    """At most MAX_SHOWN characters of untrusted text, so a warning never echoes a whole long line."""
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def _plain(text: str) -> str:
    """Clipped text with control characters escaped, for messages that show it without quotes."""
    text = _clip(text)
    return text if text.isprintable() else repr(text)[1:-1]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _show(value: Any) -> str:
    """A value as it would be written in DigiSign.conf."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or '""'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"' if not value or " " in value else value
    return str(value)


# --- parsing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    key: str  # canonical name of an implemented key
    value: str  # unquoted
    line: int


def _scan(text: str, source: str) -> tuple[list[_Entry], list[str], set[str]]:
    """The implemented settings of one file, in order, with warnings and the ignored vendor keys seen."""
    entries: list[_Entry] = []
    warnings: list[str] = []
    ignored: set[str] = set()
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;" or (line[0] == "[" and line[-1] == "]"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            warnings.append(f"{source}:{number}: not a key=value line (ignored): {_plain(line)}")
            continue
        canonical = _KNOWN_BY_LOWER.get(key.lower())
        if canonical is None:
            vendor = _IGNORED_BY_LOWER.get(key.lower())
            if vendor is not None:
                ignored.add(vendor)
            else:
                warnings.append(f"unknown setting {_plain(key)} in {source}:{number} (ignored)")
            continue
        if canonical in seen:
            warnings.append(f"{source}:{number}: {canonical} is set again (line {seen[canonical]} too); "
                            "the later value wins")
        seen[canonical] = number
        entries.append(_Entry(canonical, _unquote(value), number))
    return entries, warnings, ignored


def parse_settings_text(text: str, source: str = "<text>") -> tuple[dict[str, str], list[str]]:
    """The raw values of the implemented keys in one file (canonical names, later lines win) and its warnings.

    Unknown keys are warnings and not returned; vendor keys this server ignores are neither (their values
    may be secrets). Values are unquoted but not yet checked: ``load_settings`` does that.
    """
    entries, warnings, _ignored = _scan(text, source)
    return {entry.key: entry.value for entry in entries}, warnings


def default_search_path(config: Path | None, env: Mapping[str, str]) -> list[Path]:
    """The files to read, lowest precedence first: system, user, ``$DIGISIGN_CONF``, then ``--config``.

    A path listed twice is read once, at its later position, so it keeps the precedence asked for last.
    """
    paths = [SYSTEM_CONFIG]
    user = _user_config(env)
    if user is not None:
        paths.append(user)
    if env.get(CONFIG_ENV):
        paths.append(Path(env[CONFIG_ENV]))
    if config is not None:
        paths.append(config)
    unique: list[Path] = []
    for path in paths:
        if path in unique:
            unique.remove(path)
        unique.append(path)
    return unique


def config_home(env: Mapping[str, str]) -> Path | None:
    """``$XDG_CONFIG_HOME`` when absolute (the XDG spec says to ignore a relative value), else ``~/.config``;
    None when there is no home directory at all. The user's settings and the login service live below it."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    home = env.get("HOME")
    if home:
        return Path(home) / ".config"
    try:
        return Path.home() / ".config"
    except RuntimeError:
        return None


def _user_config(env: Mapping[str, str]) -> Path | None:
    home = config_home(env)
    return home / USER_CONFIG if home is not None else None  # no home: there is no user file to read


def _read(path: Path, *, explicit: bool, quiet_if_missing: bool, warnings: list[str]) -> str | None:
    """The text of one settings file, or None (with a warning unless a missing default file is expected)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise FileNotFoundError(errno.ENOENT, "settings file given with --config does not exist",
                                    str(path)) from None
        if not quiet_if_missing:
            warnings.append(f"settings file {path} (from ${CONFIG_ENV}) does not exist (skipped)")
        return None
    except OSError as exc:
        warnings.append(f"cannot read settings file {path}: {exc.strerror or exc} (skipped)")
        return None
    if len(data) > MAX_FILE_BYTES:
        warnings.append(f"settings file {path} is larger than {MAX_FILE_BYTES} bytes (skipped)")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        warnings.append(f"settings file {path} is not UTF-8; read as Latin-1")
        return data.decode("latin-1")


def _apply(values: dict[str, Any], key: _Key, raw: str, where: str, warnings: list[str]) -> None:
    try:
        values[key.field] = key.parse(raw)
    except ValueError as exc:
        warnings.append(f"{where}: invalid value {_clip(raw)!r} for {key.name}: {exc}; "
                        f"keeping {_show(values[key.field])}")


def load_settings(config: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The effective settings from every layer; raises FileNotFoundError only for a missing ``config``.

    Each warning is also logged once here, so callers need not log ``Settings.warnings`` again.
    """
    env = os.environ if env is None else env
    if config is not None and not config.exists():
        raise FileNotFoundError(errno.ENOENT, "settings file given with --config does not exist", str(config))
    from_env = Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None
    defaults = Settings()
    values: dict[str, Any] = {key.field: getattr(defaults, key.field) for key in KEYS.values()}
    sources: list[str] = []
    warnings: list[str] = []
    ignored: set[str] = set()

    for path in default_search_path(config, env):
        explicit = config is not None and path == config
        text = _read(path, explicit=explicit, quiet_if_missing=path != from_env, warnings=warnings)
        if text is None:
            continue
        sources.append(str(path))
        entries, file_warnings, file_ignored = _scan(text, str(path))
        warnings += file_warnings
        ignored |= file_ignored
        for entry in entries:
            _apply(values, KEYS[entry.key], entry.value, f"{path}:{entry.line}", warnings)

    for name, key in KEYS.items():  # exact names only: LANGUAGE or language must not be taken for Language
        if name in env:
            log.debug("setting %s taken from the environment", name)
            _apply(values, key, _unquote(env[name]), f"environment variable {name}", warnings)

    shared = [port for port in values["http_ports"] if port in values["https_ports"]]
    if shared:
        warnings.append(f"httpPorts and httpsPorts both list {','.join(map(str, shared))}; "
                        "those ports serve HTTPS only")
        values["http_ports"] = tuple(port for port in values["http_ports"] if port not in shared)

    for warning in warnings:
        log.warning("%s", warning)
    if ignored:
        log.info("vendor settings that do not apply to digisign-web (ignored): %s", " ".join(sorted(ignored)))
    log.debug("settings read from %s", ", ".join(sources) or "no file")
    return Settings(**values, sources=tuple(sources), warnings=tuple(warnings), ignored=tuple(sorted(ignored)))


def _card_cache(settings: Settings) -> CardCache | None:
    """SmartCardSNCache and SmartCardCachePath as the card layer's cache (D56, D59): the directory defaults
    to ``$XDG_CACHE_HOME/digisign-web/cards``; mode 3's per-user secret sits beside it, never in a shared
    SmartCardCachePath. Nothing is created until a card is read."""
    from card.cache import CardCache, MachineUserKey, user_cache_dir

    mode = settings.smart_card_sn_cache
    if not mode:
        return None
    base = user_cache_dir() / "digisign-web"
    path = settings.smart_card_cache_path.strip()
    directory = Path(path).expanduser() if path else base / "cards"
    return CardCache(directory, mode, MachineUserKey(base / "card-cache.key") if mode == 3 else None)


def card_policy(settings: Settings, *, exclude_reader: str = "", valid_token_info_label: str = "",
                allow_unknown_cards: bool = True, pkcs11_modules: tuple[str, ...] = ()) -> CardPolicy:
    """The card layer's policy from DigiSign's settings; command-line values, when given, win.
    ``pkcs11_modules`` (``--pkcs11-module``) add to pkcs11Module: the one place the PKCS#11 source is chosen."""
    from card import CardPolicy

    label = valid_token_info_label or settings.valid_token_info_label
    modules = tuple(dict.fromkeys([*settings.pkcs11_module.split(), *(str(m) for m in pkcs11_modules)]))
    return CardPolicy(
        exclude_reader=matcher(exclude_reader or settings.exclude_reader, "excludeReader"),
        allow_unknown_cards=settings.allow_unknown_cards and allow_unknown_cards,
        label_filter=matcher(label, "validTokenInfoLabel") if label.strip() != "0" else None,
        refresh_interval=settings.build_reader_list_timer,
        cache=_card_cache(settings),
        pkcs11_modules=modules,
        pkcs11_preferred=settings.pkcs11_preferred,
    )
