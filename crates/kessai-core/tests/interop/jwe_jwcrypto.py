"""jwcrypto, a JOSE implementation that is not ours, opens a JWE kessai
made (ECDH-ES on X25519, A256GCM) and makes one for kessai to open.

stdin: {"key": private X25519 JWK, "token": compact JWE, "message": text}
stdout: {"opened": text, "typ": header typ, "made": compact JWE of message}
"""
import json
import sys

from jwcrypto import jwe, jwk

request = json.load(sys.stdin)
key = jwk.JWK(**request["key"])

token = jwe.JWE()
token.deserialize(request["token"], key=key)
header = json.loads(token.objects["protected"])
assert header["alg"] == "ECDH-ES" and header["enc"] == "A256GCM", header

public = jwk.JWK.from_json(key.export_public())
made = jwe.JWE(
    request["message"].encode(),
    protected=json.dumps({"alg": "ECDH-ES", "enc": "A256GCM", "kid": request["key"]["kid"], "cty": "JWT"}),
)
made.add_recipient(public)
json.dump(
    {"opened": token.payload.decode(), "typ": header.get("typ"), "made": made.serialize(compact=True)},
    sys.stdout,
)
