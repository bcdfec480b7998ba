"""The certificate chain and key that sign a texture's C2PA manifest (no bpy).

C2PA refuses a self-signed leaf, so by default each installation makes a small certificate
authority and a leaf it signs, once, on first use (:func:`installation_credentials`). The CA's
own key is thrown away as soon as the leaf is signed: nothing else can ever be issued with it.
The leaf's chain and key are kept in a folder only the user can read (0700, files 0600); the
manifests they sign read back valid, from a signer no reader trusts yet. A studio gives its own
chain and key instead (:func:`studio_credentials`), checked before anything runs.

The key never leaves this module's :class:`Credentials` except to the signer: it has no
``repr`` and :meth:`Credentials.describe` names only the certificate.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import SettingError, TextureError

log = logging.getLogger(__name__)

CHAIN_FILE = "chain.pem"  # the leaf certificate, then the CA's
KEY_FILE = "key.pem"  # the leaf's private key (PKCS#8, unencrypted, 0600)
#: Where this installation keeps its C2PA certificate (``<folder>/c2pa``), for tests and for the
#: command line run as a plain Python module; it wins over the extension's user folder.
HOME_VARIABLE = "SD_DEPTH_TEXTURE_HOME"
INSTALLATION = "installation"
STUDIO = "studio"
_YEARS = 10
_ORGANISATION = "SD Depth Texture installation"


@dataclass(frozen=True)
class Credentials:
    """A leaf certificate's chain and key (PEM bytes) and what a report may say about them."""

    chain: bytes = field(repr=False)
    key: bytes = field(repr=False)
    algorithm: str  # a c2pa.C2paSigningAlg name: ES256, PS256, ED25519, ...
    origin: str  # INSTALLATION or STUDIO
    subject: str  # the leaf's common name
    issuer: str  # the leaf issuer's common name
    serial: str  # the leaf's serial number, in decimal (as C2PA readers show it)

    def describe(self) -> dict[str, Any]:
        """The certificate, for reports: never the key."""
        return {
            "certificate": self.origin,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
        }


def studio_credentials(cert_path: str | None, key_path: str | None) -> Credentials | None:
    """A studio's chain and key from ``cert_path`` and ``key_path``, checked: both given,
    readable, PEM, and the key the leaf's. None when neither is given. Raises
    :class:`SettingError` (keys ``c2pa_cert``, ``c2pa_key``) for the door to word."""
    if not cert_path and not key_path:
        return None
    if not key_path:
        raise SettingError(
            "c2pa_key", None, "a key file", "A certificate was given without its key: set {name}."
        )
    if not cert_path:
        raise SettingError(
            "c2pa_cert", None, "a certificate file",
            "A key was given without its certificate: set {name}.",
        )  # fmt: skip
    chain = read_pem("c2pa_cert", cert_path)
    key = read_pem("c2pa_key", key_path)
    return _checked(chain, key, STUDIO, cert_path, key_path)


def installation_credentials(folder: str) -> Credentials:
    """This installation's own chain and key in ``folder``, made there on first use (and
    again when the leaf has expired). The folder is made 0700 and the files 0600; one line
    where it cannot be."""
    try:
        return _installation_credentials(folder)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise TextureError(
            f"Cannot keep this installation's C2PA certificate in '{folder}': {reason}."
        ) from error


def _installation_credentials(folder: str) -> Credentials:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    chain_path, key_path = os.path.join(folder, CHAIN_FILE), os.path.join(folder, KEY_FILE)
    if os.path.isfile(chain_path) and os.path.isfile(key_path):
        credentials = _checked(
            read_pem("c2pa_cert", chain_path), read_pem("c2pa_key", key_path), INSTALLATION,
            chain_path, key_path,
        )  # fmt: skip
        if _still_valid(credentials.chain):
            return credentials
        log.info("The installation's C2PA certificate has expired: making a new one")
    chain, key = make_chain()
    _write_private(key_path, key)
    _write_private(chain_path, chain)
    log.info("Made this installation's C2PA certificate in %s", folder)
    return _checked(chain, key, INSTALLATION, chain_path, key_path)


def make_chain(name: str = _ORGANISATION) -> tuple[bytes, bytes]:
    """A new CA and a leaf it signs, as (chain PEM: leaf then CA, leaf key PEM). The leaf is
    what C2PA asks of a signer: not a CA, digital signature, e-mail protection usage."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365 * _YEARS)

    def subject(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            ]
        )

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"{name} CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject(name)).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key_pem


def read_pem(setting: str, path: str) -> bytes:
    """The bytes of ``path`` (a certificate or key file); one line where it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SettingError(
            setting, path, "a readable file", f"{{name}} '{path}' cannot be read: {reason}."
        ) from error


def _checked(chain: bytes, key: bytes, origin: str, cert_path: str, key_path: str) -> Credentials:
    """Credentials from PEM bytes, refused in one line where the chain holds no certificate,
    the key is no private key, or the key is not the leaf's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError as error:
        raise SettingError(
            "c2pa_cert", cert_path, "a PEM certificate chain",
            f"{{name}} '{cert_path}' holds no PEM certificate.",
        ) from error  # fmt: skip
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        # Not chained, and never the error's text: it may quote what it could not parse.
        raise SettingError(
            "c2pa_key", key_path, "an unencrypted PEM private key",
            f"{{name}} '{key_path}' holds no unencrypted PEM private key.",
        ) from None  # fmt: skip
    leaf = certificates[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, public) != leaf.public_key().public_bytes(
        der, public
    ):
        raise SettingError(
            "c2pa_key", key_path, "the certificate's key",
            f"{{name}} '{key_path}' is not the key of the certificate '{cert_path}'.",
        )  # fmt: skip
    if isinstance(private, ec.EllipticCurvePrivateKey):
        algorithm = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(
            private.curve.name
        )
    elif isinstance(private, rsa.RSAPrivateKey):
        algorithm = "PS256"
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        algorithm = "ED25519"
    else:
        algorithm = None
    if algorithm is None:
        raise SettingError(
            "c2pa_key", key_path, "a P-256, P-384, P-521, RSA or Ed25519 key",
            f"{{name}} '{key_path}' is a kind of key C2PA cannot sign with "
            "(use P-256, P-384, P-521, RSA or Ed25519).",
        )  # fmt: skip
    return Credentials(
        chain=chain,
        key=key,
        algorithm=algorithm,
        origin=origin,
        subject=_common_name(leaf.subject),
        issuer=_common_name(leaf.issuer),
        serial=str(leaf.serial_number),
    )


def _common_name(name) -> str:
    from cryptography.x509.oid import NameOID

    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else name.rfc4514_string()


def _still_valid(chain: bytes) -> bool:
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(chain)[0]
    now = datetime.datetime.now(datetime.UTC)
    return leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc - datetime.timedelta(days=1)


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` readable by the user only (0600 from the start), replacing ``path``."""
    partial = path + ".partial"
    if os.path.exists(partial):
        os.remove(partial)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(partial, path)
