"""The child process of tests/support/softhsm.py: everything that loads a PKCS#11 module (SoftHSM2 or the
test-double shim) runs here, one JSON request on stdin, one JSON answer on stdout. It imports no pytest, so each
probe starts fast; the module's configuration comes from the environment the parent passes (SOFTHSM2_CONF, ...)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

_LIBS: dict[str, Any] = {}


def _open_token(request: dict[str, Any]) -> Any:
    import pkcs11

    if request["module"] not in _LIBS:  # one C_Initialize per process
        _LIBS[request["module"]] = pkcs11.lib(request["module"])
    lib = _LIBS[request["module"]]
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except pkcs11.PKCS11Error:  # SoftHSM2: a token deleted since C_Initialize (CKR_GENERAL_ERROR)
            continue
        if token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED and (
                token.serial.decode().strip() == request.get("serial", token.serial.decode().strip())
                and token.label == request.get("label", token.label)):
            return token
    raise AssertionError(f"no such token: {request.get('serial') or request.get('label')}")


def _build(request: dict[str, Any]) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
    from pkcs11.attributes import AttributeMapper, handle_ulong
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    mapper = AttributeMapper()  # python-pkcs11 0.10 has no packer for CKA_CERTIFICATE_CATEGORY (a CK_ULONG)
    mapper.register_handler(Attribute.CERTIFICATE_CATEGORY, *handle_ulong)
    token = _open_token(request)
    ca_key = serialization.load_pem_private_key(request["ca_key_pem"].encode(), None)
    ca_cert = x509.load_der_x509_certificate(bytes.fromhex(request["ca_der"]))
    now = dt.datetime.now(dt.UTC)
    certificates = {}
    with token.open(rw=True, user_pin=request["user_pin"], attribute_mapper=mapper) as session:
        for spec in request["keys"]:
            key_id, label = bytes.fromhex(spec["id"]), spec["label"]
            private = {Attribute.SIGN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                       Attribute.PRIVATE: True, Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                       Attribute.DERIVE: False, Attribute.ALWAYS_AUTHENTICATE: spec["always_authenticate"]}
            public = {Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
            if spec["name"].startswith("rsa"):
                pub, _ = session.generate_keypair(KeyType.RSA, int(spec["name"][3:]), id=key_id, label=label,
                                                  store=True, public_template=public, private_template=private)
                public_key: Any = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                                       int.from_bytes(pub[Attribute.MODULUS], "big")).public_key()
            else:
                curve = {"p256": "secp256r1", "p384": "secp384r1"}[spec["name"]]
                params = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True)
                pub, _ = params.generate_keypair(id=key_id, label=label, store=True, public_template=public,
                                                 private_template=private)
                public_key = serialization.load_der_public_key(encode_ec_public_key(pub))
            name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FI"),
                              x509.NameAttribute(NameOID.SURNAME, "Tokeni"),
                              x509.NameAttribute(NameOID.GIVEN_NAME, "Testi"),
                              x509.NameAttribute(NameOID.SERIAL_NUMBER, "99999999X"),
                              x509.NameAttribute(NameOID.COMMON_NAME, f"Tokeni Testi {spec['name']} {spec['role']}")])
            signature = spec["role"] == "signature"
            builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
                       .public_key(public_key).serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=730))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(x509.KeyUsage(
                           digital_signature=not signature, content_commitment=signature,
                           key_encipherment=not signature and isinstance(public_key, rsa.RSAPublicKey),
                           data_encipherment=False,
                           key_agreement=not signature and isinstance(public_key, ec.EllipticCurvePublicKey),
                           key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                           critical=True)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                      critical=False))
            if not signature:
                builder = builder.add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            der = cert.public_bytes(serialization.Encoding.DER)
            session.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: key_id, Attribute.LABEL: label,
                Attribute.SUBJECT: cert.subject.public_bytes(), Attribute.ISSUER: cert.issuer.public_bytes(),
                Attribute.SERIAL_NUMBER: _der_integer(cert.serial_number), Attribute.VALUE: der,
                Attribute.CERTIFICATE_CATEGORY: 1})  # 1: token user
            certificates[spec["id"]] = der.hex()
        session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: b"\xca",
            Attribute.LABEL: "Test CA", Attribute.TRUSTED: False,
            Attribute.SUBJECT: ca_cert.subject.public_bytes(), Attribute.ISSUER: ca_cert.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: _der_integer(ca_cert.serial_number),
            Attribute.VALUE: bytes.fromhex(request["ca_der"]), Attribute.CERTIFICATE_CATEGORY: 2})  # 2: authority
    return {"serial": token.serial.decode().strip(), "certificates": certificates}


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return bytes([0x02, len(body)]) + body


def _flags(request: dict[str, Any]) -> dict[str, Any]:
    import pkcs11

    flags = _open_token(request).flags
    names = ("USER_PIN_COUNT_LOW", "USER_PIN_FINAL_TRY", "USER_PIN_LOCKED", "PROTECTED_AUTHENTICATION_PATH",
             "LOGIN_REQUIRED", "TOKEN_INITIALIZED")
    return {"flags": {n: bool(flags & getattr(pkcs11.TokenFlag, n)) for n in names}}


def _lock(request: dict[str, Any]) -> dict[str, Any]:
    import pkcs11

    attempts = 0
    while not _flags(request)["flags"]["USER_PIN_LOCKED"]:
        assert attempts < 10, "the module never locked the user PIN"
        attempts += 1
        try:
            _open_token(request).open(user_pin=request["wrong_pin"]).close()
        except (pkcs11.PinIncorrect, pkcs11.PinLocked):
            pass
    return {"attempts": attempts, **_flags(request)}


def _outcome(action: Callable[[], object]) -> str:
    """ "ok", or the python-pkcs11 exception's name (PinIncorrect, UserNotLoggedIn, FunctionCancelled...)."""
    import pkcs11

    try:
        action()
    except pkcs11.PKCS11Error as error:
        return type(error).__name__
    return "ok"


def _login(request: dict[str, Any]) -> dict[str, Any]:
    """C_OpenSession + C_Login(CKU_USER) with the PIN given, or a NULL PIN (protected path) when it is None."""
    import pkcs11

    token = _open_token(request)
    pin = pkcs11.PROTECTED_AUTH if request["pin"] is None else request["pin"]
    return {"outcome": _outcome(lambda: token.open(user_pin=pin).close()), **_flags(request)}


def _sign(request: dict[str, Any]) -> dict[str, Any]:
    """One logged-in session, then one C_SignInit + C_Sign per entry of ``pins`` with the key ``id``: a PIN is a
    C_Login(CKU_CONTEXT_SPECIFIC) between the two, None is none."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    token = _open_token(request)
    outcomes = []
    with token.open(user_pin=request["user_pin"]) as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, id=bytes.fromhex(request["id"]))
        mechanism = Mechanism.ECDSA if key.key_type == KeyType.EC else Mechanism.RSA_PKCS
        digest = bytes(32)
        signatures: list[str] = []
        for pin in request["pins"]:
            outcomes.append(_outcome(
                lambda pin=pin: signatures.append(key.sign(digest, mechanism=mechanism, pin=pin).hex())))
        always = bool(key[Attribute.ALWAYS_AUTHENTICATE])
    # RSA signs the bare 32 zero bytes (CKM_RSA_PKCS pads them as they are); ECDSA signs them as a digest.
    return {"outcomes": outcomes, "signatures": signatures, "always_authenticate": always}


def _inspect(request: dict[str, Any]) -> dict[str, Any]:
    """Every object on the token with the attributes the tests check (the user logged in, to see private keys)."""
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.attributes import AttributeMapper, handle_ulong

    mapper = AttributeMapper()
    mapper.register_handler(Attribute.CERTIFICATE_CATEGORY, *handle_ulong)
    token = _open_token(request)
    objects = []
    with token.open(user_pin=request["user_pin"], attribute_mapper=mapper) as session:
        for obj in session.get_objects():
            kind = obj[Attribute.CLASS]
            entry: dict[str, Any] = {"class": kind.name, "id": obj[Attribute.ID].hex(), "label": obj[Attribute.LABEL]}
            if kind == ObjectClass.PRIVATE_KEY:
                for name in ("LOCAL", "SENSITIVE", "NEVER_EXTRACTABLE", "ALWAYS_AUTHENTICATE", "SIGN"):
                    entry[name] = bool(obj[getattr(Attribute, name)])
                entry["key_type"] = obj[Attribute.KEY_TYPE].name
            elif kind == ObjectClass.PUBLIC_KEY:
                entry["LOCAL"] = bool(obj[Attribute.LOCAL])
                if obj[Attribute.KEY_TYPE].name == "RSA":
                    entry["modulus"] = obj[Attribute.MODULUS].hex()
                else:
                    entry["ec_point"] = obj[Attribute.EC_POINT].hex()
            elif kind == ObjectClass.CERTIFICATE:
                entry["value"] = obj[Attribute.VALUE].hex()
                entry["category"] = obj[Attribute.CERTIFICATE_CATEGORY]
            objects.append(entry)
    return {"objects": objects, **_flags(request)}


if __name__ == "__main__":
    _request = json.loads(sys.stdin.read())
    _answer = {"build": _build, "lock": _lock, "flags": _flags, "login": _login, "sign": _sign,
               "inspect": _inspect}[_request["command"]](_request)
    sys.stdout.write(json.dumps(_answer))
