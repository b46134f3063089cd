"""Bearer-token extraction shared by both planes; each plane decides what the token must be."""

from __future__ import annotations

from starlette.requests import Request

from slipstream.auth.keys import looks_valid
from slipstream.auth.principal import Principal
from slipstream.errors import AuthenticationFailed, PermissionDenied
from slipstream.services import Services


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'."
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("The Authorization header must have the form 'Bearer <key>'.")
    return token


async def require_admin(request: Request, services: Services) -> None:
    """The control plane takes the admin token only; a model access key is named as such."""
    token = bearer_token(request)
    if services.admin.lapsed and services.auth_watcher is not None:
        await services.auth_watcher.refresh()  # the database may be fine and the poll merely late
    if services.admin.verify(token):
        return
    if looks_valid(token):
        raise PermissionDenied("Model access keys cannot use the control API; use the admin token.",
                               code="admin_token_required")  # fmt: skip
    raise AuthenticationFailed("The admin token is missing or wrong.")


async def model_key_principal(request: Request, services: Services) -> Principal:
    principal = await services.keys.authenticate(bearer_token(request))
    services.keys.mark_used(principal.key_uuid)
    return principal
