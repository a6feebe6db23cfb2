"""Independent check: PyJWT (with pyca/cryptography) verifies kessai tokens.

Reads {"jwks": {...}, "tokens": {kind: token}, "typ": {kind: typ},
"tampered": token} on stdin; prints one JSON object with what it saw.
Nothing here is kessai code: keys come from our JWKS, and PyJWT's own
EdDSA implementation checks the signatures and the time claims.
"""

import json
import sys

import jwt  # PyJWT

request = json.load(sys.stdin)
keyset = jwt.PyJWKSet.from_dict(request["jwks"])
keys = {k.key_id: k for k in keyset.keys}

result = {"pyjwt": jwt.__version__, "verified": {}, "tampered_refused": False}
for kind, token in request["tokens"].items():
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA", header
    assert header["typ"] == request["typ"][kind], (kind, header)
    key = keys[header["kid"]]
    # A kind that names its audience is checked for it, as a receiver
    # would; the others must name none.
    addressed = "aud" in jwt.decode(token, options={"verify_signature": False})
    claims = jwt.decode(
        token,
        key=key.key,
        algorithms=["EdDSA"],
        audience=request["audience"] if addressed else None,
        options={"require": ["iss", "jti", "iat", "exp"], "verify_aud": addressed},
    )
    result["verified"][kind] = claims

# A bill read by another center is refused for its audience.
bill = request["tokens"]["bill"]
try:
    jwt.decode(bill, key=keys[jwt.get_unverified_header(bill)["kid"]].key, algorithms=["EdDSA"],
               audience="another-center")
    result["wrong_audience_refused"] = False
except jwt.InvalidAudienceError:
    result["wrong_audience_refused"] = True

try:
    tampered = request["tampered"]
    header = jwt.get_unverified_header(tampered)
    jwt.decode(tampered, key=keys[header["kid"]].key, algorithms=["EdDSA"])
except jwt.InvalidTokenError as e:
    result["tampered_refused"] = True
    result["tampered_error"] = type(e).__name__

json.dump(result, sys.stdout)
