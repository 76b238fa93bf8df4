"""CAP1-HMAC-SHA512, written from contract §6 and the quirks that cap1-vectors.json documents,
in Python, independently of the C++ signer: the judge the fake upstream uses."""
import base64
import hashlib
import hmac
import posixpath
import re
from urllib.parse import quote, unquote

ALGORITHM = "CAP1-HMAC-SHA512"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}
JS_SPACE = "\t\n\x0b\x0c\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_RUN = re.compile("[" + re.escape(JS_SPACE) + "]+")


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_uri_component(s):
    return quote(s, safe="-_.!~*'()")


def decode_uri_component(s):
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        raise ValueError("URI malformed")
    return unquote(s, errors="strict")


def node_normalize(path):
    if path == "":
        return "."
    absolute = path.startswith("/")
    trailing = path.endswith("/")
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not absolute:
                out.append("..")
            continue
        out.append(seg)
    res = "/".join(out)
    if not res:
        return "/" if absolute else ("./" if trailing else ".")
    if trailing:
        res += "/"
    return "/" + res if absolute else res


def trimall(value):
    parts = str(value).split('"')
    out = ""
    for i, part in enumerate(parts):
        out += _RUN.sub(" ", part) if i % 2 == 0 else '"' + part + '"'
    return out.strip(JS_SPACE)


def utf16_key(s):
    return s.encode("utf-16-be")


def canonical_query(qs):
    if not qs:
        return ""
    pieces = sorted(qs.split("&"), key=utf16_key)
    out = []
    for piece in pieces:
        pair = piece.split("=")
        name, value = pair[0], pair[1] if len(pair) > 1 else "undefined"
        out.append(encode_uri_component(decode_uri_component(name)) + "=" +
                   encode_uri_component(decode_uri_component(value)))
    return "&".join(out)


def latin1_key(digest):
    return digest.decode("latin-1").encode("utf-8")


def sign(headers, method, path, query, key, key_id):
    """headers: list of (name, value) as a JS object would hold them (later duplicates win)."""
    obj = {}
    host = cap_date = None
    for name, value in headers:
        low = name.lower()
        if low == "host":
            host = value
        if low == "x-cap-date":
            cap_date = value
        if low not in HOP_BY_HOP:
            obj[name] = value
    if not host:
        raise ValueError("Host header not found.")
    if cap_date is None:
        raise ValueError("X-Cap-Date required here")
    iso = cap_date[0:8] + "T" + cap_date[9:15] + "Z"
    lower = {}
    for name, value in obj.items():
        lower[name.lower()] = value
    canonical_headers = "".join("%s:%s\n" % (n, trimall(lower[n])) for n in sorted(lower, key=utf16_key))
    signed = ";".join(sorted((n.lower() for n in obj), key=utf16_key))
    scope = "%s/%s/cap1_request" % (iso[:8], host.lower())
    canonical_uri = encode_uri_component(node_normalize(decode_uri_component(path)))
    canonical = "\n".join([method.upper(), canonical_uri, canonical_query(query), canonical_headers, signed])
    string_to_sign = "\n".join([ALGORITHM, iso, scope, b64url(hashlib.sha512(canonical.encode()).digest())])
    k_date = hmac.new(("CAP1" + key).encode(), iso[:8].encode(), hashlib.sha512).digest()
    k_host = hmac.new(latin1_key(k_date), host.encode(), hashlib.sha512).digest()
    k_signing = hmac.new(latin1_key(k_host), b"cap1_request", hashlib.sha512).digest()
    signature = b64url(hmac.new(latin1_key(k_signing), string_to_sign.encode(), hashlib.sha512).digest())
    return {"authorization": "%s Credential=%s/%s,SignedHeaders=%s,Signature=%s" % (ALGORITHM, key_id, scope, signed, signature),
            "canonicalRequest": canonical, "stringToSign": string_to_sign, "signature": signature,
            "signedHeaders": signed, "x-cap-date": iso}


def verify(headers, method, path, query, secrets, now_epoch):
    """True only for a request signed by a known key within 15 minutes of now."""
    try:
        auth = next((v for n, v in headers if n.lower() == "authorization"), None)
        date = next((v for n, v in headers if n.lower() == "x-cap-date"), None)
        if not auth or not date or not auth.startswith(ALGORITHM + " "):
            return False
        import calendar
        import time as _time
        signed_at = calendar.timegm(_time.strptime(date[0:8] + date[9:15], "%Y%m%d%H%M%S"))
        if abs(now_epoch - signed_at) > 15 * 60:
            return False
        parts = auth[len(ALGORITHM) + 1:].strip().split(",")
        if len(parts) != 3 or not parts[0].startswith("Credential="):
            return False
        cred = parts[0][len("Credential="):].split("/")
        if len(cred) != 4 or not cred[0]:
            return False
        key = secrets.get(cred[0])
        if not key:
            return False
        m = re.search(r"SignedHeaders=(.+),Signature", auth)
        names = set(m.group(1).split(";")) if m else set()
        kept = [(n, v) for n, v in headers if n.lower() in names]
        expected = sign(kept, method, path, query, key, cred[0])["authorization"]
        return hmac.compare_digest(expected, auth)
    except Exception:
        return False
