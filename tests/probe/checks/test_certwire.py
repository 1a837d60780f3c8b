"""The fast certificate reader agrees with cryptography or declines, on hostile input too."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import random
import ssl
import warnings
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from probe.checks import certwire, tls
from probe.observations import Certificate
from tests.probe.checks.mutants import mutated

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # size is not read
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()

ATTRIBUTES = (
    NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.STREET_ADDRESS, NameOID.DOMAIN_COMPONENT, NameOID.USER_ID, NameOID.EMAIL_ADDRESS,
    NameOID.SERIAL_NUMBER, NameOID.JURISDICTION_COUNTRY_NAME,
    ObjectIdentifier("1.2.3.4.5"), ObjectIdentifier("2.999.1234567"),
)  # fmt: skip
STRING_TYPES = (
    _ASN1Type.UTF8String, _ASN1Type.UTF8String, _ASN1Type.PrintableString, _ASN1Type.IA5String,
    _ASN1Type.BMPString, _ASN1Type.T61String, _ASN1Type.UniversalString,
)  # fmt: skip
CHARS = "abcXYZ019 -.'()+,=/:?" + '#"\\;<>\0*&_' + "éü中\u200b"
NOW = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)


def value(rng: random.Random, oid: ObjectIdentifier) -> str:
    if oid in (NameOID.COUNTRY_NAME, NameOID.JURISDICTION_COUNTRY_NAME) and rng.random() < 0.8:
        return rng.choice(("US", "DE", "pk", "USA", "D"))
    size = rng.choice((0, 1, 2, 5, 12, 64, 65)) if rng.random() < 0.3 else rng.randrange(1, 16)
    text = "".join(rng.choice(CHARS) for _ in range(size))
    return text.replace("\0", "") if rng.random() < 0.9 else text


def attribute(rng: random.Random) -> x509.NameAttribute[str]:
    oid = rng.choice(ATTRIBUTES)
    string_type = rng.choice(STRING_TYPES) if rng.random() < 0.15 else None
    if oid in (NameOID.COUNTRY_NAME, NameOID.JURISDICTION_COUNTRY_NAME) and rng.random() < 0.7:
        string_type = _ASN1Type.PrintableString
    with warnings.catch_warnings():  # an odd length is the point
        warnings.simplefilter("ignore")
        return x509.NameAttribute(oid, value(rng, oid), string_type, _validate=False)


def name(rng: random.Random) -> x509.Name:
    rdns = []
    for _ in range(rng.randrange(0, 5)):
        count = 1 if rng.random() < 0.95 else rng.randrange(2, 4)
        rdns.append(x509.RelativeDistinguishedName([attribute(rng) for _ in range(count)]))
    return x509.Name(rdns)


def general_name(rng: random.Random) -> x509.GeneralName:
    kind = rng.randrange(20)
    if kind < 10:
        labels = rng.choice(("x.com", "*.Example.test", "a-b.c_d.lab", "xn--bcher-kva.test", ""))
        return x509.DNSName._init_without_validation(labels)
    if kind < 16:
        return x509.IPAddress(
            ipaddress.ip_address(rng.choice(("10.0.0.1", "2001:db8::1", "::ffff:1.2.3.4", "::1")))
        )
    if kind == 16:
        return x509.RFC822Name("user@example.test")
    if kind == 17:
        return x509.UniformResourceIdentifier("https://ca.example.test/x")
    if kind == 18:
        return x509.DirectoryName(name(rng))
    return x509.RegisteredID(ObjectIdentifier("1.2.3.4"))


def key_usage(rng: random.Random) -> x509.KeyUsage:
    agreement = rng.random() < 0.5
    return x509.KeyUsage(
        digital_signature=rng.random() < 0.5, content_commitment=rng.random() < 0.3,
        key_encipherment=rng.random() < 0.5, data_encipherment=rng.random() < 0.3,
        key_agreement=agreement, key_cert_sign=rng.random() < 0.3, crl_sign=rng.random() < 0.3,
        encipher_only=agreement and rng.random() < 0.5,
        decipher_only=agreement and rng.random() < 0.5,
    )  # fmt: skip


def extensions(rng: random.Random) -> Iterator[x509.ExtensionType]:
    if rng.random() < 0.8:
        yield x509.SubjectAlternativeName([general_name(rng) for _ in range(rng.randrange(0, 5))])
    if rng.random() < 0.6:
        ca = rng.random() < 0.5
        yield x509.BasicConstraints(ca=ca, path_length=rng.choice((None, 0, 9)) if ca else None)
    if rng.random() < 0.6:
        yield key_usage(rng)
    if rng.random() < 0.5:
        yield x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH][: rng.randrange(3)]
        )
    if rng.random() < 0.5:
        yield x509.SubjectKeyIdentifier(rng.randbytes(rng.choice((0, 20))))
    if rng.random() < 0.5:
        yield x509.AuthorityKeyIdentifier(rng.randbytes(20), None, None)
    if rng.random() < 0.05:
        yield x509.AuthorityKeyIdentifier(None, [general_name(rng)], 7)
    if rng.random() < 0.3:
        yield x509.AuthorityInformationAccess(
            [x509.AccessDescription(x509.OID_OCSP, general_name(rng)) for _ in range(2)]
        )
    if rng.random() < 0.3:
        full_name = [general_name(rng) for _ in range(rng.randrange(1, 3))]
        yield x509.CRLDistributionPoints([x509.DistributionPoint(full_name, None, None, None)])
    if rng.random() < 0.3:
        qualifiers = rng.choice((None, ["https://cps.example.test/"], [x509.UserNotice(None, "x")]))
        policy = x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), qualifiers)
        yield x509.CertificatePolicies([policy])
    if rng.random() < 0.3:
        yield x509.UnrecognizedExtension(SCT_OID, timestamps(rng))
    if rng.random() < 0.05:
        yield x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), rng.randbytes(4))


SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def timestamps(rng: random.Random) -> bytes:
    """An SCT list extension value, well-formed or (sometimes) not."""

    def opaque(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    scts = b""
    for _ in range(rng.randrange(0, 3)):
        hash_sig = bytes((rng.choice((4, 4, 4, 0, 7)), rng.choice((3, 3, 1, 0, 4))))
        body = b"\0" + rng.randbytes(32) + rng.randbytes(8) + opaque(b"") + hash_sig
        scts += opaque(body + opaque(rng.randbytes(rng.choice((0, 70)))))
    tls = opaque(scts)
    return (
        b"\x04" + bytes((len(tls),)) + tls
        if len(tls) < 128
        else b"\x04\x81" + bytes((len(tls),)) + tls
    )


def generated(rng: random.Random) -> bytes:
    """A certificate with odd names, extensions, dates, keys and signatures."""
    kind = rng.randrange(4)
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ED_KEY
    algorithm, pad = None, None
    if kind == 1:
        key, algorithm = EC_KEY, rng.choice((hashes.SHA256(), hashes.SHA384(), hashes.SHA512()))
    elif kind >= 2:
        key, algorithm = RSA_KEY, rng.choice((hashes.SHA256(), hashes.SHA384(), hashes.SHA512()))
        if rng.random() < 0.1:
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    subject_key = rng.choice((ED_KEY, EC_KEY, RSA_KEY)).public_key()
    start = dt.datetime(1950, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(2**33))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(rng))
        .issuer_name(name(rng))
        .public_key(subject_key)
        .serial_number(rng.choice((1, 2**63, 2**159 - 1, rng.randrange(2**64))))
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(seconds=rng.randrange(2**36)))
    )
    seen = set()
    for extension in extensions(rng):
        if extension.oid not in seen:
            seen.add(extension.oid)
            builder = builder.add_extension(extension, critical=rng.random() < 0.3)
    signed = builder.sign(key, algorithm, rsa_padding=pad)  # type: ignore[arg-type]
    return signed.public_bytes(encoding=Encoding.DER)


def many_generated(rng: random.Random, count: int) -> list[bytes]:
    found: list[bytes] = []
    while len(found) < count:
        try:
            found.append(generated(rng))
        except ValueError:  # cryptography writes no invalid PrintableString: mutants do
            continue
    return found


TAGS = (0x00, 0x01, 0x02, 0x05, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x30, 0x80, 0xFF)


def characters(rng: random.Random, data: bytearray, at: int) -> None:
    """A DER tag, or a character names treat specially, where anything was."""
    data[at] = rng.choice(TAGS) if rng.random() < 0.5 else rng.choice(b" #,+\\\"'*&0aZ\x00\x7f\xc3")


def by_cryptography(der: bytes) -> Certificate | str:
    """cryptography's reading, or the name of what it raised, or 'warned'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sha256 = hashlib.sha256(der).hexdigest()
            found: Certificate | str = tls._read_by_cryptography(der, sha256)
        except Exception as exc:
            found = type(exc).__name__
    return "warned" if caught else found


def fast(der: bytes) -> Certificate | None:
    fields = certwire.read(der)
    if fields is None:
        return None
    tls.certificate.cache_clear()
    return tls.certificate(der)


END = "-----END CERTIFICATE-----"


def system_store() -> list[bytes]:
    path = ssl.get_default_verify_paths().openssl_cafile
    with open(path, encoding="ascii", errors="replace") as handle:
        blocks = handle.read().split(END)[:-1]
    return [ssl.PEM_cert_to_DER_cert(b[b.index("-----BEGIN") :] + END) for b in blocks]


def trustme_chain() -> list[bytes]:
    ca = trustme.CA(organization_name="reachprobe lab CA")
    leaf = ca.issue_cert("x.com", "www.x.com", "10.0.0.1", common_name="x.com")
    pems = (ca.cert_pem, *leaf.cert_chain_pems)
    return [ssl.PEM_cert_to_DER_cert(blob.bytes().decode()) for blob in pems]


def test_the_lab_chain_is_read_here() -> None:
    """The lab's (trustme's) certificates are the common shape: no cryptography import."""
    for der in trustme_chain():
        assert fast(der) == by_cryptography(der)


SIGNING = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def test_a_public_ca_leaf_is_read_here() -> None:
    """A leaf shaped like a public CA's (Let's Encrypt's, say) is read without
    cryptography: the extensions such CAs add are all in the common shape."""
    uri = x509.UniformResourceIdentifier
    sct = b"\0" + bytes(32) + (1_700_000_000_000).to_bytes(8, "big") + b"\0\0\x04\x03"
    sct += (70).to_bytes(2, "big") + bytes(70)
    scts = (2 * (len(sct) + 2)).to_bytes(2, "big") + 2 * (len(sct).to_bytes(2, "big") + sct)
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US", _ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Let's Encrypt"),
            x509.NameAttribute(NameOID.COMMON_NAME, "R11"),
        ]
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (SIGNING, True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectKeyIdentifier(bytes(20)), False),
        (x509.AuthorityKeyIdentifier(bytes(range(20)), None, None), False),
        (
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(x509.OID_OCSP, uri("http://r11.o.lencr.test")),
                    x509.AccessDescription(x509.OID_CA_ISSUERS, uri("http://r11.i.lencr.test/")),
                ]
            ),
            False,
        ),
        (x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), False),
        (
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), None)]
            ),
            False,
        ),
        (
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([uri("http://r11.c.lencr.test/1.crl")], None, None, None)]
            ),
            False,
        ),
        (x509.UnrecognizedExtension(SCT_OID, b"\x04\x81" + bytes((len(scts),)) + scts), False),
    ]
    builder = x509.CertificateBuilder(
        issuer_name=issuer, subject_name=subject, public_key=EC_KEY.public_key(),
        serial_number=2**140 + 7, not_valid_before=NOW, not_valid_after=NOW + dt.timedelta(days=90),
    )  # fmt: skip
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    der = builder.sign(EC_KEY, hashes.SHA256()).public_bytes(Encoding.DER)
    got = fast(der)
    assert got is not None and got == by_cryptography(der)
    assert got.sans == ("www.example.test",)


@pytest.mark.parametrize("corpus", ["generated", "system"])
def test_fast_reader_agrees_with_cryptography_or_declines(corpus: str) -> None:
    rng = random.Random(16)
    bases = many_generated(rng, 300) if corpus == "generated" else system_store()
    read = [0, 0]  # certificates as they are, mutated ones
    declined = 0
    for base in bases:
        for candidate in (base, *(mutated(rng, base, characters, edits=2) for _ in range(12))):
            got = fast(candidate)
            if got is None:
                declined += 1
                continue
            read[candidate is not base] += 1
            assert by_cryptography(candidate) == got, candidate.hex()
    assert read[0] > len(bases) // 8 and read[1] > 100 and declined > 500, (read, declined)


def test_malformed_certificates_keep_their_fingerprint() -> None:
    """What cryptography raises other than ValueError for: an unknown version, a
    duplicate extension, an x400Address (these escaped ``tls.certificate`` before)."""
    key = ED_KEY
    cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.com")])
    san = x509.SubjectAlternativeName([x509.DNSName("x.com")])
    ski = x509.SubjectKeyIdentifier(b"1" * 20)

    def build(*extensions: x509.ExtensionType) -> bytes:
        made = [x509.Extension(e.oid, False, e) for e in extensions]
        start, end = dt.datetime(2020, 1, 1), dt.datetime(2030, 1, 1)
        builder = x509.CertificateBuilder(cn, cn, key.public_key(), 7, start, end, made)
        return builder.sign(key, None).public_bytes(Encoding.DER)

    version_5 = build(san).replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05")
    x400 = build(san).replace(b"\x82\x05x.com", b"\xa3\x05x.com")
    for der, subject in ((version_5, ""), (build(san, ski, ski), "CN=x.com"), (x400, "CN=x.com")):
        assert certwire.read(der) is None
        tls.certificate.cache_clear()
        cert = tls.certificate(der)
        assert (cert.subject, cert.sans) == (subject, ())
        assert cert.sha256 == hashlib.sha256(der).hexdigest()
