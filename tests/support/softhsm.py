"""SoftHSM2 tokens made by the tests: a real PKCS#11 module (Debian's ``softhsm2``) with keys generated ON the
token and certificates from a test CA, for the PKCS#11 token source and its end-to-end tests.

Each token lives in its own directory with its own ``SOFTHSM2_CONF``, so tests never share a token and nothing
touches /var/lib/softhsm. Everything that loads libsofthsm2 runs in a child process (``python -m
tests.support.softhsm_child``): SoftHSM reads its configuration once per ``C_Initialize``, and a library loaded in the
pytest process would keep the first test's token directory (or clash with a test that loads it itself). The child
is tests/support/softhsm_child.py, which imports no pytest (it starts in a third of the time).

Only the keys a test asks for are generated: RSA-3072 takes the better part of a second.

SoftHSM2 never counts or locks a user PIN, and nothing here can set CKF_PROTECTED_AUTHENTICATION_PATH; both are
played by a small test-double module (pkcs11_pinpad/pinpad.c, compiled with gcc once per run) that forwards every
call to SoftHSM2: ``token.pin_counter_module()``, ``token.lock_user_pin()`` and the ``protected_auth_module``
fixture use it."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "123456"
SO_PIN = "12345678"
KEY_NAMES = ("rsa2048", "rsa3072", "p256", "p384")
ROLES = ("signature", "authentication")


@dataclass(frozen=True)
class TokenKey:
    """One key pair on the token and its certificate, all three objects sharing ``id`` (CKA_ID)."""

    name: str  # "rsa2048" | "rsa3072" | "p256" | "p384"
    role: str  # "signature" (keyUsage nonRepudiation) | "authentication" (keyUsage digitalSignature)
    id: bytes
    label: str
    cert_der: bytes
    always_authenticate: bool


@dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSM2 token in its own directory; ``env`` is what a process needs to see it."""

    module: Path
    env: dict[str, str]
    label: str
    serial: str
    user_pin: str
    so_pin: str
    keys: tuple[TokenKey, ...]
    ca_der: bytes
    ca_pem_path: Path
    shim: Path  # the test-double module (pkcs11_pinpad/pinpad.c) that forwards to ``module``
    pin_tries_file: Path  # the shim's user PIN retry counter for this token

    def key(self, name: str, role: str | None = None) -> TokenKey:
        """The token's key ``name`` (and ``role``, when the token has the same algorithm twice)."""
        found = [k for k in self.keys if k.name == name and (role is None or k.role == role)]
        assert len(found) == 1, f"no single {name} {role or ''} key on the token: {self.keys}"
        return found[0]

    def delete(self) -> None:
        """Remove the token (softhsm2-util --delete-token): its slot disappears, as a card pulled out."""
        result = subprocess.run(["softhsm2-util", "--delete-token", "--serial", self.serial], env=self.env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"softhsm2-util --delete-token failed: {result.stdout}{result.stderr}"

    def shim_module(self, pin_counter: bool = False, login_log: Path | None = None) -> tuple[Path, dict[str, str]]:
        """(module, env) of this token behind the test-double shim: with ``pin_counter``, a card-like user PIN
        counter of 3 tries (SoftHSM2 itself never locks a PIN); with ``login_log``, one line per C_Login there
        ("login user=<CKU> pin=null|given rv=0x<CKR>"), e.g. to count context-specific logins."""
        env = {**self.env, "DIGISIGN_TEST_PKCS11_TARGET": str(self.module)}
        if pin_counter:
            env["DIGISIGN_TEST_PIN_TRIES_FILE"] = str(self.pin_tries_file)
        if login_log is not None:
            env["DIGISIGN_TEST_PKCS11_LOG"] = str(login_log)
        return self.shim, env

    def pin_counter_module(self) -> tuple[Path, dict[str, str]]:
        """``shim_module(pin_counter=True)``: what a test of tries left or a locked PIN loads."""
        return self.shim_module(pin_counter=True)

    def lock_user_pin(self) -> None:
        """Wrong user PINs (real C_Login calls) through ``pin_counter_module()`` until it reports
        CKF_USER_PIN_LOCKED; a server must load that module to see the lock."""
        module, env = self.pin_counter_module()
        _worker(env, {"command": "lock", "module": str(module), "serial": self.serial,
                      "wrong_pin": "0" * len(self.user_pin)})

    def flags(self, module: Path | None = None, env: dict[str, str] | None = None) -> dict[str, bool]:
        """The token's flags as ``module`` (default: SoftHSM2 itself) reports them now, read by a child process."""
        return _worker(env or self.env, {"command": "flags", "module": str(module or self.module),
                                         "serial": self.serial})["flags"]


# --- the test CA (in the pytest process: cryptography only, no PKCS#11) ---------------------------------


@dataclass(frozen=True)
class TestCa:
    key_pem: bytes
    cert_der: bytes
    cert_pem: bytes


@pytest.fixture(scope="session")
def softhsm_ca() -> TestCa:
    """One test CA for the run (a P-256 key: made in a millisecond); every token stores it as a CA object."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FI"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "digisign-web TEST"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "digisign-web TEST PKCS#11 CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return TestCa(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()),
                  cert.public_bytes(serialization.Encoding.DER), cert.public_bytes(serialization.Encoding.PEM))


# --- the test-double module --------------------------------------------------------------------------------

SHIM_SOURCE = Path(__file__).resolve().parent / "pkcs11_pinpad" / "pinpad.c"
P11_KIT_INCLUDE = Path("/usr/include/p11-kit-1")


def compile_shim(directory: Path) -> Path:
    """pkcs11_pinpad/pinpad.c built into ``directory`` (gcc, with p11-kit's OASIS pkcs11.h)."""
    if shutil.which("gcc") is None or not (P11_KIT_INCLUDE / "p11-kit" / "pkcs11.h").exists():
        pytest.fail("building the PKCS#11 test module needs gcc and Debian's `libp11-kit-dev` (pkcs11.h); "
                    "scripts/test-deps.sh installs both", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / "digisign-test-pinpad.so"
    result = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
                             f"-I{P11_KIT_INCLUDE}", "-o", str(output), str(SHIM_SOURCE), "-ldl"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"gcc {SHIM_SOURCE.name} failed:\n{result.stderr}"
    return output


@pytest.fixture(scope="session")
def pkcs11_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test-double module, compiled once for the run (it holds no state: everything is in its env)."""
    return compile_shim(tmp_path_factory.mktemp("pkcs11-shim"))


@dataclass(frozen=True)
class PinpadModule:
    """A pinpad reader's module, played by the test-double shim over a SoftHSM2 token: it reports
    CKF_PROTECTED_AUTHENTICATION_PATH and, on C_Login with a NULL PIN, uses what "the user typed on the reader"
    (``type_pin``); no PIN typed is Cancel on the pinpad (CKR_FUNCTION_CANCELED). Unpacks as (module, env)."""

    module: Path
    env: dict[str, str]
    pin_file: Path

    def __iter__(self) -> Iterator[Any]:
        return iter((self.module, self.env))

    def type_pin(self, pin: str) -> None:
        """The PIN the user will type on the reader at the next login."""
        self.pin_file.touch(mode=0o600)
        self.pin_file.write_text(pin + "\n")

    def cancel(self) -> None:
        """The user will press Cancel on the reader."""
        self.pin_file.unlink(missing_ok=True)

    def logins(self) -> list[str]:
        """One line per C_Login the module saw: "login user=<CKU> pin=null|given rv=0x.." (never the PIN)."""
        log = self.pin_file.with_name(self.pin_file.name + ".log")
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def protected_auth_module(pkcs11_shim: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> Callable[[SoftHsmToken], PinpadModule]:
    """Factory: ``protected_auth_module(token)`` -> a PinpadModule over that SoftHSM2 token, with the token's
    user PIN already "typed". A TEST DOUBLE of a pinpad reader: no reader here can set
    CKF_PROTECTED_AUTHENTICATION_PATH, and SoftHSM2 has no setting for it. The env is also set in this process."""

    def make(token: SoftHsmToken) -> PinpadModule:
        pin_file = tmp_path / f"pinpad-{token.serial}" / "typed-pin"
        pin_file.parent.mkdir(mode=0o700, exist_ok=True)
        env = {**token.env, "DIGISIGN_TEST_PKCS11_TARGET": str(token.module),
               "DIGISIGN_TEST_PINPAD_FILE": str(pin_file)}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        pinpad = PinpadModule(pkcs11_shim, env, pin_file)
        pinpad.type_pin(token.user_pin)
        return pinpad

    return make


# --- the fixture -------------------------------------------------------------------------------------------


def _conf(directory: Path) -> Path:
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    # slots.removable: the slots say CKF_REMOVABLE_DEVICE, as a card reader's do.
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = true\nslots.mechanisms = ALL\nlibrary.reset_on_fork = false\n")
    return conf


def make_token(directory: Path, ca: TestCa, shim: Path, keys: Sequence[tuple[str, str]],
               label: str = "digisign-test", always_authenticate_signature: bool = True, user_pin: str = USER_PIN,
               so_pin: str = SO_PIN) -> SoftHsmToken:
    """A new token under ``directory`` with ``keys`` ((name, role), ...) generated on it (see the fixture)."""
    if not SOFTHSM_MODULE.exists() or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is missing: install Debian's `softhsm2` (scripts/test-deps.sh does)", pytrace=False)
    for name, role in keys:
        assert name in KEY_NAMES and role in ROLES, f"unknown key {name!r} / role {role!r}"
    env = {**os.environ, "SOFTHSM2_CONF": str(_conf(directory))}
    init = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", user_pin,
                           "--so-pin", so_pin], env=env, capture_output=True, text=True, timeout=30)
    assert init.returncode == 0, f"softhsm2-util --init-token failed: {init.stdout}{init.stderr}"
    specs = [{"name": name, "role": role, "id": bytes([0x45, index + 1]).hex(),
              "label": f"{role} key {name}",
              "always_authenticate": always_authenticate_signature and role == "signature"}
             for index, (name, role) in enumerate(keys)]
    answer = _worker(env, {"command": "build", "module": str(SOFTHSM_MODULE), "label": label,
                           "user_pin": user_pin, "keys": specs, "ca_key_pem": ca.key_pem.decode(),
                           "ca_der": ca.cert_der.hex()})
    ca_pem_path = directory / "ca.pem"
    ca_pem_path.write_bytes(ca.cert_pem)
    return SoftHsmToken(
        module=SOFTHSM_MODULE, env={"SOFTHSM2_CONF": env["SOFTHSM2_CONF"]}, label=label, serial=answer["serial"],
        user_pin=user_pin, so_pin=so_pin, ca_der=ca.cert_der, ca_pem_path=ca_pem_path, shim=shim,
        pin_tries_file=directory / f"user-pin-tries-{answer['serial']}",
        keys=tuple(TokenKey(s["name"], s["role"], bytes.fromhex(s["id"]), s["label"],
                            bytes.fromhex(answer["certificates"][s["id"]]), s["always_authenticate"])
                   for s in specs))


@pytest.fixture
def softhsm_token(tmp_path: Path, softhsm_ca: TestCa, pkcs11_shim: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SoftHsmToken]]:
    """Factory: ``softhsm_token(keys=(("rsa2048", "authentication"), ("p384", "signature")), label=...,
    always_authenticate_signature=True)`` -> a fresh SoftHSM2 token for this test.

    Several calls in one test make several tokens in the same SoftHSM configuration (slots of one module).
    ``token.env`` is what a subprocess needs; SOFTHSM2_CONF is also set in this process for in-process use."""
    directory = tmp_path / "softhsm"

    def make(keys: Sequence[tuple[str, str]] = (("rsa2048", "authentication"), ("p384", "signature")),
             label: str = "digisign-test", always_authenticate_signature: bool = True) -> SoftHsmToken:
        token = make_token(directory, softhsm_ca, pkcs11_shim, keys, label, always_authenticate_signature)
        monkeypatch.setenv("SOFTHSM2_CONF", token.env["SOFTHSM2_CONF"])
        return token

    yield make


# --- the child process (softhsm_child.py): everything that loads libsofthsm2 ------------------------------


def _worker(env: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    from tests.support.cli import cli_env
    from tests.support.paths import ROOT

    result = subprocess.run([sys.executable, "-m", "tests.support.softhsm_child"], input=json.dumps(request),
                            cwd=ROOT, env={**cli_env(), **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"softhsm worker ({request['command']}) failed:\n{result.stderr}"
    return json.loads(result.stdout)


def probe(env: dict[str, str], command: str, module: Path, serial: str, **arguments: Any) -> dict[str, Any]:
    """Run one of the child-process probes (``login``, ``sign``, ``inspect``, ``flags``) against a token."""
    return _worker(env, {"command": command, "module": str(module), "serial": serial, **arguments})
