"""`GET /.well-known/consent-receipt-keys`: the public keys that verify consent receipts.

A JSON Web Key Set (RFC 7517, Ed25519 keys as in RFC 8037); each key's `kid` is its RFC 7638
thumbprint, which every receipt's signature names. No sign-in: anyone may verify a receipt.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from web.services import Services


async def receipt_keys(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    return JSONResponse(
        {"keys": [services.receipts.jwk]}, headers={"Cache-Control": "public, max-age=3600"}
    )
