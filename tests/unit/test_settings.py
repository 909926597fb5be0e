"""DigiSign.conf-style settings: parsing, value checking, the order of the layers and what gets reported.

Every test builds its own environment mapping and points the system file into tmp_path, so the real
/etc, HOME and os.environ never leak in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from digisign_web import settings as settings_mod
from digisign_web.settings import (
    KEYS,
    VENDOR_IGNORED,
    Settings,
    default_search_path,
    load_settings,
    parse_settings_text,
)

# The key column of the vendor's main settings table ("DigiSign Client and mPollux Service Manager settings").
VENDOR_TABLE = {
    "aboutDialogBitmap", "allowUnknownCards", "buildReaderListTimer", "certExpirationWarningDays",
    "changePinCacheCount", "changePinInitialPeriod", "changePinPeriod", "closeBrowsers", "closeBrowsersConfirm",
    "closeBrowsersExcludeReader", "closeGUIServerWhenLock", "cryptokiPinCache", "cryptokiSoftwareKeyGen", "DataPath",
    "disableAuthTab", "disableCryptokiAutoLogin", "disableCryptokiBufferCheck", "disableCryptokiPIN2Slot",
    "disablePinUnblocking", "dropAuthentication", "excludeReader", "forceSelectApplet", "HTTPSignerDisabled",
    "HTTPToolkitEnabled", "Language", "managerBannerBitmap", "minidriverAuthMode", "minidriverAutoAuthExclude",
    "minidriverPinCache", "minidriverReadOnly", "pinComplexityCheck", "pinDialogBitmap", "pinIgnorePinTypeCheck",
    "pinMinLength", "pinNumericValuesOnly", "removeAllCertificatesOnEmptyEvent", "showAsn1CertInWindows",
    "SmartCardCachePath", "SmartCardSNCache", "SplashBitmap", "strictSCSKeyPolicy", "toolkitPinCache", "userLevel",
    "validTokenInfoLabel", "loadCertificates",
}
IMPLEMENTED_VENDOR_KEYS = {
    "strictSCSKeyPolicy", "HTTPSignerDisabled", "excludeReader", "allowUnknownCards", "validTokenInfoLabel",
    "buildReaderListTimer", "Language", "certExpirationWarningDays", "dropAuthentication",
    "SmartCardSNCache", "SmartCardCachePath", "pinMinLength", "pinNumericValuesOnly", "pinIgnorePinTypeCheck",
    "pinComplexityCheck", "disablePinUnblocking", "closeGUIServerWhenLock",
}


@pytest.fixture
def system_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The /etc file, moved into tmp_path (not created: tests write it when they need it)."""
    path = tmp_path / "etc" / "DigiSign.conf"
    monkeypatch.setattr(settings_mod, "SYSTEM_CONFIG", path)
    return path


@pytest.fixture
def env(tmp_path: Path, system_conf: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "digisign-web" / "DigiSign.conf"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, env: dict[str, str], text: str) -> Settings:
    return load_settings(write(tmp_path / "given.conf", text), env)


# --- defaults and the key table -------------------------------------------------------------------------------


def test_defaults_without_any_file(env: dict[str, str]) -> None:
    s = load_settings(None, env)
    assert s == Settings()
    assert s.sources == () and s.warnings == () and s.ignored == ()
    assert s.strict_scs_key_policy is False
    assert s.http_signer_disabled is False
    assert s.allow_unknown_cards is True
    assert s.valid_token_info_label == ""
    assert s.build_reader_list_timer == 5.0
    assert s.cert_expiration_warning_days == 30
    assert s.https_ports == (53952, 23124, 8089)
    assert s.http_ports == ()
    assert s.allowed_origins.split() == ["https://*", "http://localhost", "http://localhost:*",
                                         "http://127.0.0.1", "http://127.0.0.1:*"]
    assert s.max_request_bytes == 100 * 1024 * 1024
    assert (s.pin_always, s.scs_version, s.queue_limit, s.dialog_timeout) == (False, "1.1", 16, 120.0)
    assert (s.spam_cancel_limit, s.spam_window, s.spam_block) == (3, 60.0, 300.0)
    assert s.drop_authentication is False  # the vendor's default: PIN1 may be reused (for its own origin only)


def test_every_vendor_table_key_is_implemented_or_ignored() -> None:
    assert VENDOR_TABLE - set(KEYS) - VENDOR_IGNORED == set()
    assert VENDOR_TABLE & set(KEYS) == IMPLEMENTED_VENDOR_KEYS
    assert not VENDOR_IGNORED & set(KEYS)


def test_every_key_maps_to_a_settings_field() -> None:
    fields = set(Settings.__dataclass_fields__) - {"sources", "warnings", "ignored"}
    assert {key.field for key in KEYS.values()} == fields


# --- values of each type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("0", False), ("true", True), ("FALSE", False), ("Yes", True), ("no", False),
    ("ON", True), ("off", False),
])
def test_booleans(tmp_path: Path, env: dict[str, str], raw: str, expected: bool) -> None:
    s = load_text(tmp_path, env, f"strictSCSKeyPolicy={raw}\nallowUnknownCards={raw}\nscsRequestsPinAlways={raw}\n"
                                 f"dropAuthentication={raw}\n")
    assert (s.strict_scs_key_policy, s.allow_unknown_cards, s.pin_always, s.drop_authentication) == (expected,) * 4
    assert s.warnings == ()


def test_ports_numbers_durations_and_strings(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, "\n".join([
        "httpsPorts=443 , 8443",
        "httpPorts=53951 23123,8088",
        "maxRequestBytes=2048",
        "scsQueueLimit=0",
        "certExpirationWarningDays=0",
        "dialogTimeout=30.5",
        "buildReaderListTimer=.5",
        "spamCancelLimit=5",
        "spamWindowSeconds=10",
        "spamBlockSeconds=600",
        "Language=SV",
        "scsVersion=1.2",
        "excludeReader=*O2*   *CCID*",
        "validTokenInfoLabel=FINEID*",
        "allowedOrigins=https://*.example.fi http://localhost:8080",
        "HTTPSignerDisabled=1",
    ]))
    assert s.warnings == ()
    assert s.https_ports == (443, 8443)
    assert s.http_ports == (53951, 23123, 8088)
    assert (s.max_request_bytes, s.queue_limit, s.cert_expiration_warning_days) == (2048, 0, 0)
    assert (s.dialog_timeout, s.build_reader_list_timer) == (30.5, 0.5)
    assert (s.spam_cancel_limit, s.spam_window, s.spam_block) == (5, 10.0, 600.0)
    assert isinstance(s.spam_window, float)
    assert s.language == "sv"
    assert s.scs_version == "1.2"
    assert s.exclude_reader == "*O2* *CCID*"
    assert s.valid_token_info_label == "FINEID*"
    assert s.allowed_origins == "https://*.example.fi http://localhost:8080"
    assert s.http_signer_disabled is True


def test_empty_http_ports_means_none(tmp_path: Path, env: dict[str, str]) -> None:
    write(settings_mod.SYSTEM_CONFIG, "httpPorts=8088\n")
    s = load_text(tmp_path, env, "httpPorts=\n")
    assert s.http_ports == ()
    assert s.warnings == ()


def test_duplicate_ports_are_listed_once(tmp_path: Path, env: dict[str, str]) -> None:
    assert load_text(tmp_path, env, "httpsPorts=8443,8443,9443").https_ports == (8443, 9443)


def test_vendor_default_zero_for_token_label_means_unset(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, "validTokenInfoLabel=0\nexcludeReader=0\n")
    assert s.valid_token_info_label == ""
    assert s.exclude_reader == "0"  # vendor default is empty, so 0 is a literal pattern here


def test_quoted_values(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, 'excludeReader = "*PCD*01 Foo*"\nLanguage="fi"\nhttpPorts=""\nscsVersion = "1.1"\n')
    assert s.exclude_reader == "*PCD*01 Foo*"
    assert s.language == "fi"
    assert s.http_ports == ()
    assert s.warnings == ()


def test_quotes_are_stripped_only_when_they_surround_the_value(tmp_path: Path, env: dict[str, str]) -> None:
    raw, warnings = parse_settings_text('excludeReader="a\nvalidTokenInfoLabel=b"\nLanguage="\n')
    assert raw == {"excludeReader": '"a', "validTokenInfoLabel": 'b"', "Language": '"'}
    assert warnings == []


# --- file syntax ----------------------------------------------------------------------------------------------


def test_case_insensitive_keys_report_the_canonical_name() -> None:
    raw, warnings = parse_settings_text("STRICTSCSKEYPOLICY=1\nhttpsignerdisabled = yes\nlanguage=en\n")
    assert raw == {"strictSCSKeyPolicy": "1", "HTTPSignerDisabled": "yes", "Language": "en"}
    assert warnings == []


def test_case_insensitive_keys_take_effect(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, "HTTPSIGNERDISABLED=1\nhttpsports=9443\n")
    assert s.http_signer_disabled is True
    assert s.https_ports == (9443,)


def test_comments_sections_blank_lines_bom_and_crlf() -> None:
    text = ("\ufeff# a comment\r\n; another=comment\r\n\r\n[DigiSign Client]\r\n  excludeReader = *CCID*  \r\n"
            "[other]\r\nLanguage=fi\r\n")
    raw, warnings = parse_settings_text(text, "f.conf")
    assert raw == {"excludeReader": "*CCID*", "Language": "fi"}
    assert warnings == []


def test_bom_in_a_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "bom.conf"
    path.write_bytes(b"\xef\xbb\xbfstrictSCSKeyPolicy=1\n")
    s = load_settings(path, env)
    assert s.strict_scs_key_policy is True
    assert s.warnings == ()


def test_a_line_without_equals_is_a_warning_and_is_clipped() -> None:
    long = "x" * 200
    raw, warnings = parse_settings_text(f"justtext\n{long}\n[unclosed\n=value\n", "f.conf")
    assert raw == {}
    assert len(warnings) == 4
    assert warnings[0] == "f.conf:1: not a key=value line (ignored): justtext"
    assert warnings[1].startswith("f.conf:2: ") and "x" * 80 + "…" in warnings[1] and "x" * 81 not in warnings[1]
    assert warnings[2].startswith("f.conf:3: ")
    assert warnings[3].startswith("f.conf:4: ")


def test_later_line_wins_and_the_repeat_is_reported() -> None:
    raw, warnings = parse_settings_text("Language=fi\nlanguage=sv\n", "f.conf")
    assert raw == {"Language": "sv"}
    assert warnings == ["f.conf:2: Language is set again (line 1 too); the later value wins"]


def test_unknown_key_warning(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "given.conf", "Language=fi\nstrictSCSKeyPolicyy=1\n")
    s = load_settings(path, env)
    assert s.warnings == (f"unknown setting strictSCSKeyPolicyy in {path}:2 (ignored)",)
    assert s.strict_scs_key_policy is False
    assert s.language == "fi"


def test_unknown_key_is_clipped_and_escaped() -> None:
    _raw, warnings = parse_settings_text("k\x1b[31m" + "y" * 100 + "=1\n", "f.conf")
    assert len(warnings) == 1
    assert "\x1b" not in warnings[0]
    assert "y" * 81 not in warnings[0]


def test_parse_settings_text_leaves_out_unknown_and_ignored_keys() -> None:
    raw, warnings = parse_settings_text("scTerminalKey=00112233\nnope=1\nscsQueueLimit=4\n", "f.conf")
    assert raw == {"scsQueueLimit": "4"}
    assert warnings == ["unknown setting nope in f.conf:2 (ignored)"]


# --- ignored vendor keys ----------------------------------------------------------------------------------------


def test_ignored_vendor_keys(tmp_path: Path, env: dict[str, str]) -> None:
    write(settings_mod.SYSTEM_CONFIG, "minidriverPinCache=1\nuserLevel=0\n")
    s = load_text(tmp_path, env, "CRYPTOKIPINCACHE=1\nminidriverpincache=0\ncloseBrowsers=1\nSmartCardSNCache=1\n"
                                 "forceSelectApplet=0\nloadCertificates=1\npinMinLength=4\nscTerminalKey=CAFEBABE99\n")
    assert s.ignored == ("closeBrowsers", "cryptokiPinCache", "forceSelectApplet",
                         "loadCertificates", "minidriverPinCache", "scTerminalKey", "userLevel")
    assert (s.smart_card_sn_cache, s.pin_min_length) == (1, 4)  # implemented now (issue 13), not ignored
    assert list(s.ignored) == sorted(set(s.ignored))
    assert s.warnings == ()
    assert "CAFEBABE99" not in repr(s)  # a vendor secret is never kept


def test_vendor_keys_in_the_environment_are_not_taken(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_settings(None, {**env, "userLevel": "3", "PATH": "/bin", "SOMETHING": "x"})
    assert s.ignored == ()
    assert s.warnings == ()


# --- bad values ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "field"), [
    ("strictSCSKeyPolicy=2", "strict_scs_key_policy"),
    ("allowUnknownCards=maybe", "allow_unknown_cards"),
    ("httpsPorts=0", "https_ports"),
    ("httpsPorts=65536", "https_ports"),
    ("httpsPorts=443,abc", "https_ports"),
    ("httpsPorts=", "https_ports"),
    ("httpPorts=-1", "http_ports"),
    ("maxRequestBytes=1023", "max_request_bytes"),
    ("maxRequestBytes=1_000_000", "max_request_bytes"),
    ("scsQueueLimit=-1", "queue_limit"),
    ("certExpirationWarningDays=thirty", "cert_expiration_warning_days"),
    ("dialogTimeout=0", "dialog_timeout"),
    ("dialogTimeout=inf", "dialog_timeout"),
    ("dialogTimeout=nan", "dialog_timeout"),
    ("buildReaderListTimer=-5", "build_reader_list_timer"),
    ("buildReaderListTimer=1e9", "build_reader_list_timer"),
    ("spamCancelLimit=0", "spam_cancel_limit"),
    ("spamWindowSeconds=", "spam_window"),
    ("spamBlockSeconds=0.0", "spam_block"),
    ("Language=de", "language"),
    ("dropAuthentication=2", "drop_authentication"),
    ("scsVersion=one", "scs_version"),
    ("allowedOrigins=*", "allowed_origins"),
    ("allowedOrigins=https://example.fi/path", "allowed_origins"),
])
def test_bad_value_keeps_the_default_with_a_warning(tmp_path: Path, env: dict[str, str], line: str,
                                                    field: str) -> None:
    path = write(tmp_path / "given.conf", f"# first\n{line}\n")
    s = load_settings(path, env)
    assert getattr(s, field) == getattr(Settings(), field)
    key, _, value = line.partition("=")
    assert len(s.warnings) == 1
    warning = s.warnings[0]
    assert warning.startswith(f"{path}:2: ")
    assert key in warning
    assert repr(value) in warning


def test_bad_value_keeps_the_previous_layers_value(tmp_path: Path, env: dict[str, str]) -> None:
    write(settings_mod.SYSTEM_CONFIG, "dialogTimeout=45\nhttpsPorts=9443\n")
    s = load_text(tmp_path, env, "dialogTimeout=soon\nhttpsPorts=99999\n")
    assert s.dialog_timeout == 45.0
    assert s.https_ports == (9443,)
    assert len(s.warnings) == 2
    assert "keeping 45" in s.warnings[0]
    assert "keeping 9443" in s.warnings[1]


def test_long_bad_value_is_clipped(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, "Language=" + "z" * 300 + "\n")
    assert s.language == ""
    assert len(s.warnings) == 1
    assert "z" * 80 + "…" in s.warnings[0]
    assert "z" * 81 not in s.warnings[0]


def test_http_port_that_is_also_https_is_dropped_from_http(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_text(tmp_path, env, "httpsPorts=53952,23124\nhttpPorts=53951,23124\n")
    assert s.https_ports == (53952, 23124)
    assert s.http_ports == (53951,)
    assert len(s.warnings) == 1 and "23124" in s.warnings[0]


def test_warnings_are_logged(tmp_path: Path, env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digisign_web.settings"):
        s = load_text(tmp_path, env, "bogus=1\n")
    assert [r.getMessage() for r in caplog.records] == list(s.warnings)
    assert len(s.warnings) == 1


# --- layering ----------------------------------------------------------------------------------------------------


def test_search_path_order(tmp_path: Path, env: dict[str, str], system_conf: Path, user_conf: Path) -> None:
    given = tmp_path / "given.conf"
    from_env = tmp_path / "from-env.conf"
    assert default_search_path(None, env) == [system_conf, user_conf]
    assert default_search_path(given, {**env, "DIGISIGN_CONF": str(from_env)}) == [
        system_conf, user_conf, from_env, given]


def test_search_path_falls_back_to_home(tmp_path: Path, system_conf: Path) -> None:
    home = tmp_path / "home"
    expected = home / ".config" / "digisign-web" / "DigiSign.conf"
    assert default_search_path(None, {"HOME": str(home)}) == [system_conf, expected]
    # The XDG spec says a relative XDG_CONFIG_HOME is to be ignored.
    assert default_search_path(None, {"HOME": str(home), "XDG_CONFIG_HOME": "rel"}) == [system_conf, expected]


def test_search_path_reads_a_repeated_file_once_at_its_last_place(tmp_path: Path, env: dict[str, str],
                                                                    system_conf: Path, user_conf: Path) -> None:
    assert default_search_path(system_conf, env) == [user_conf, system_conf]


def test_layers_later_wins_and_environment_overrides_all(tmp_path: Path, env: dict[str, str], system_conf: Path,
                                                         user_conf: Path) -> None:
    write(system_conf, "Language=fi\ndialogTimeout=10\nscsQueueLimit=1\nspamCancelLimit=7\nstrictSCSKeyPolicy=0\n")
    write(user_conf, "Language=sv\ndialogTimeout=20\nscsQueueLimit=2\n")
    from_env = write(tmp_path / "from-env.conf", "dialogTimeout=30\nscsQueueLimit=3\n")
    given = write(tmp_path / "given.conf", "scsQueueLimit=4\nstrictSCSKeyPolicy=0\n")
    s = load_settings(given, {**env, "DIGISIGN_CONF": str(from_env), "strictSCSKeyPolicy": "1"})
    assert s.sources == (str(system_conf), str(user_conf), str(from_env), str(given))
    assert s.spam_cancel_limit == 7  # only the system file sets it
    assert s.language == "sv"  # user over system
    assert s.dialog_timeout == 30.0  # $DIGISIGN_CONF over user
    assert s.queue_limit == 4  # --config over $DIGISIGN_CONF
    assert s.strict_scs_key_policy is True  # environment over --config
    assert s.warnings == ()


def test_environment_names_must_match_exactly(tmp_path: Path, env: dict[str, str]) -> None:
    s = load_settings(None, {**env, "HTTPSignerDisabled": "yes", "LANGUAGE": "de", "language": "de",
                             "httpsPorts": "9443 9444"})
    assert s.http_signer_disabled is True
    assert s.language == ""
    assert s.https_ports == (9443, 9444)
    assert s.warnings == ()
    assert s.sources == ()  # the environment is not a file


def test_bad_environment_value_keeps_the_file_value(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "given.conf", "scsQueueLimit=5\n")
    s = load_settings(path, {**env, "scsQueueLimit": "many"})
    assert s.queue_limit == 5
    assert len(s.warnings) == 1
    assert "environment variable scsQueueLimit" in s.warnings[0] and "'many'" in s.warnings[0]


def test_env_defaults_to_os_environ(tmp_path: Path, system_conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("scsVersion", "1.0")
    assert load_settings().scs_version == "1.0"


# --- missing and unreadable files --------------------------------------------------------------------------------


def test_missing_explicit_config_raises(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(FileNotFoundError, match="--config") as info:
        load_settings(missing, env)
    assert info.value.filename == str(missing)


def test_missing_default_files_are_skipped_silently(env: dict[str, str], system_conf: Path) -> None:
    assert not system_conf.exists()
    s = load_settings(None, env)
    assert s.sources == () and s.warnings == ()


def test_missing_digisign_conf_is_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "missing.conf"
    s = load_settings(None, {**env, "DIGISIGN_CONF": str(missing)})
    assert s.sources == ()
    assert len(s.warnings) == 1 and str(missing) in s.warnings[0] and "DIGISIGN_CONF" in s.warnings[0]


def test_unreadable_file_is_a_warning(tmp_path: Path, env: dict[str, str], system_conf: Path,
                                      user_conf: Path) -> None:
    system_conf.mkdir(parents=True)  # a directory where the file should be: it exists, but cannot be read
    write(user_conf, "Language=en\n")
    s = load_settings(None, env)
    assert s.language == "en"
    assert s.sources == (str(user_conf),)
    assert len(s.warnings) == 1 and s.warnings[0].startswith(f"cannot read settings file {system_conf}")


def test_non_utf8_file_is_read_as_latin1_with_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes("excludeReader=*Lukij\u00e4*\n".encode("latin-1"))
    s = load_settings(path, env)
    assert s.exclude_reader == "*Lukij\u00e4*"
    assert len(s.warnings) == 1 and "UTF-8" in s.warnings[0]


def test_oversized_file_is_skipped(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_mod, "MAX_FILE_BYTES", 64)
    path = write(tmp_path / "big.conf", "Language=fi\n" + "# padding\n" * 20)
    s = load_settings(path, env)
    assert s.language == ""
    assert s.sources == ()
    assert len(s.warnings) == 1 and "larger than" in s.warnings[0]
