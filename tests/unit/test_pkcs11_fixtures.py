"""The PKCS#11 test fixtures do what the end-to-end tests rely on: keys made on a real SoftHSM2 token and paired
with their certificates by CKA_ID, CKA_ALWAYS_AUTHENTICATE enforced, the removed token gone, and the test-double
pinpad / PIN-counter module (pkcs11_pinpad/pinpad.c) reporting its flags and logging in with a NULL PIN.

Each test runs SoftHSM2 in child processes, so these are in the ``process`` lane (not ``make unit``)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.softhsm import SOFTHSM_MODULE, probe

pytestmark = pytest.mark.process


def test_keys_are_made_on_the_token_and_paired_by_id(softhsm_token) -> None:
    token = softhsm_token(keys=(("rsa2048", "authentication"), ("p384", "signature")))
    found = probe(token.env, "inspect", token.module, token.serial, user_pin=token.user_pin)
    assert found["flags"]["TOKEN_INITIALIZED"] and not found["flags"]["PROTECTED_AUTHENTICATION_PATH"]
    by_id: dict[str, dict[str, dict]] = {}
    for obj in found["objects"]:
        by_id.setdefault(obj["id"], {})[obj["class"]] = obj
    ca = x509.load_der_x509_certificate(token.ca_der)
    assert by_id["ca"]["CERTIFICATE"]["category"] == 2  # an authority certificate, completing the chain
    assert bytes.fromhex(by_id["ca"]["CERTIFICATE"]["value"]) == token.ca_der
    assert token.ca_pem_path.read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    assert set(by_id) == {k.id.hex() for k in token.keys} | {"ca"}

    for key in token.keys:
        objects = by_id[key.id.hex()]
        assert set(objects) == {"PRIVATE_KEY", "PUBLIC_KEY", "CERTIFICATE"}
        private = objects["PRIVATE_KEY"]
        # Generated on the token (CKA_LOCAL) and never out of it.
        assert private["LOCAL"] and private["SENSITIVE"] and private["NEVER_EXTRACTABLE"] and private["SIGN"]
        assert private["ALWAYS_AUTHENTICATE"] is key.always_authenticate is (key.role == "signature")
        assert objects["PUBLIC_KEY"]["LOCAL"]
        cert = x509.load_der_x509_certificate(key.cert_der)
        assert bytes.fromhex(objects["CERTIFICATE"]["value"]) == key.cert_der
        assert objects["CERTIFICATE"]["category"] == 1
        public = cert.public_key()
        if key.name.startswith("rsa"):
            assert isinstance(public, rsa.RSAPublicKey) and public.key_size == int(key.name[3:])
            assert public.public_numbers().n == int(objects["PUBLIC_KEY"]["modulus"], 16)
            assert private["key_type"] == "RSA"
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            assert public.curve.name == {"p256": "secp256r1", "p384": "secp384r1"}[key.name]
            point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            assert bytes.fromhex(objects["PUBLIC_KEY"]["ec_point"]).endswith(point)  # DER OCTET STRING
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        assert cert.issuer == ca.subject
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if key.role == "signature":
            assert usage.content_commitment and not usage.digital_signature
        else:
            assert usage.digital_signature and not usage.content_commitment
            ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert ExtendedKeyUsageOID.CLIENT_AUTH in ekus


def test_the_token_signs_with_each_key_type_and_the_certificate_verifies(softhsm_token) -> None:
    token = softhsm_token(keys=(("rsa2048", "signature"), ("p256", "authentication")),
                          always_authenticate_signature=False)
    for key in token.keys:
        signed = probe(token.env, "sign", token.module, token.serial, user_pin=token.user_pin, id=key.id.hex(),
                       pins=[None])
        assert signed["outcomes"] == ["ok"] and signed["always_authenticate"] is False
        signature = bytes.fromhex(signed["signatures"][0])
        public = x509.load_der_x509_certificate(key.cert_der).public_key()
        if isinstance(public, rsa.RSAPublicKey):  # CKM_RSA_PKCS over the 32 bytes as they are
            assert public.recover_data_from_signature(signature, padding.PKCS1v15(), None) == bytes(32)
        else:  # CKM_ECDSA: raw r || s over the 32 bytes taken as a digest
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            public.verify(der, bytes(32), ec.ECDSA(Prehashed(hashes.SHA256())))


def test_softhsm_enforces_always_authenticate(softhsm_token) -> None:
    """F40: SoftHSM2 needs a context-specific login before EVERY C_Sign with such a key (PIN2-like); a wrong
    context PIN leaves the C_SignInit'ed operation active, so the session's next C_SignInit is refused."""
    token = softhsm_token(keys=(("p256", "signature"),))
    key = token.key("p256", "signature")
    assert key.always_authenticate
    signed = probe(token.env, "sign", token.module, token.serial, user_pin=token.user_pin, id=key.id.hex(),
                   pins=[None, token.user_pin, None, token.user_pin, "000000", token.user_pin])
    assert signed["always_authenticate"] is True
    assert signed["outcomes"] == ["UserNotLoggedIn", "ok", "UserNotLoggedIn", "ok", "PinIncorrect",
                                  "OperationActive"]


def test_deleted_token_is_gone(softhsm_token) -> None:
    token = softhsm_token(keys=(("p256", "authentication"),))
    other = softhsm_token(keys=(("p256", "signature"),), label="second")
    token.delete()
    with pytest.raises(AssertionError, match="no such token"):
        probe(token.env, "flags", token.module, token.serial)
    assert probe(other.env, "flags", other.module, other.serial)["flags"]["TOKEN_INITIALIZED"]


def test_softhsm_never_locks_but_the_counter_module_does(softhsm_token) -> None:
    """F40: SoftHSM2 itself only sets CKF_USER_PIN_COUNT_LOW; the test-double counter gives card-like tries."""
    token = softhsm_token(keys=(("p256", "authentication"),))
    for _ in range(2):
        plain = probe(token.env, "login", token.module, token.serial, pin="000000")
        assert plain["outcome"] == "PinIncorrect"
    assert plain["flags"]["USER_PIN_COUNT_LOW"] and not plain["flags"]["USER_PIN_LOCKED"]
    assert probe(token.env, "login", token.module, token.serial, pin=token.user_pin)["outcome"] == "ok"

    module, env = token.pin_counter_module()
    first = probe(env, "login", module, token.serial, pin="000000")
    assert first["outcome"] == "PinIncorrect"
    assert first["flags"]["USER_PIN_COUNT_LOW"] and not first["flags"]["USER_PIN_FINAL_TRY"]
    second = probe(env, "login", module, token.serial, pin="000000")
    assert second["flags"]["USER_PIN_FINAL_TRY"] and not second["flags"]["USER_PIN_LOCKED"]
    # The right PIN restores the tries, as a card's counter does.
    assert probe(env, "login", module, token.serial, pin=token.user_pin)["flags"]["USER_PIN_COUNT_LOW"] is False

    token.lock_user_pin()
    locked = probe(env, "login", module, token.serial, pin=token.user_pin)
    assert locked["outcome"] == "PinLocked" and locked["flags"]["USER_PIN_LOCKED"]
    assert not token.flags()["USER_PIN_LOCKED"]  # only through the counter module


def test_pinpad_module_reports_the_protected_path_and_logs_in_with_a_null_pin(softhsm_token,
                                                                            protected_auth_module) -> None:
    token = softhsm_token(keys=(("p256", "authentication"),))
    pinpad = protected_auth_module(token)
    module, env = pinpad
    assert module != SOFTHSM_MODULE
    assert token.flags()["PROTECTED_AUTHENTICATION_PATH"] is False  # SoftHSM2 alone never says so

    logged_in = probe(env, "login", module, token.serial, pin=None)
    assert logged_in["flags"]["PROTECTED_AUTHENTICATION_PATH"] and logged_in["outcome"] == "ok"
    assert pinpad.logins() == ["login user=1 pin=null rv=0x0"]

    pinpad.type_pin("000000")  # the user mistypes on the reader
    assert probe(env, "login", module, token.serial, pin=None)["outcome"] == "PinIncorrect"
    pinpad.cancel()  # the user presses Cancel on the reader
    assert probe(env, "login", module, token.serial, pin=None)["outcome"] == "FunctionCancelled"
    assert pinpad.logins()[1:] == ["login user=1 pin=null rv=0xa0", "login user=1 pin=null rv=0x50"]
    assert "000000" not in pinpad.pin_file.with_name("typed-pin.log").read_text()
