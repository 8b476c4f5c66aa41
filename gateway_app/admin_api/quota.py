"""``GET /v1/quota``: a virtual key asks about its own limits, budgets and usage (`gateway_app.quota`).

The key is sent as the model API takes it (``Authorization: Bearer`` or ``x-api-key``); no admin
token is involved, and an admin token is not a virtual key (401)."""

from __future__ import annotations

from gateway_app.admin_api.errors import KEY_REALM, Conflict, Unauthorized
from gateway_app.admin_api.operation import Call, Operation, Reply
from gateway_app.quota import key_quota
from gateway_common.auth import bearer_token


async def quota(call: Call) -> Reply:
    headers = call.request.headers
    secret = headers.get("x-api-key") or bearer_token(headers.get("authorization"))
    if not secret:
        raise Unauthorized(
            "Missing virtual key: send it as 'Authorization: Bearer <key>' or in the x-api-key header",
            headers={"WWW-Authenticate": KEY_REALM},
        )
    state = call.runtime.state
    principal, snapshot = await state.authenticate(secret)
    if principal is None:
        reason = snapshot.refusal(secret) or "Invalid virtual key (unknown, revoked or disabled)"
        raise Unauthorized(reason, headers={"WWW-Authenticate": KEY_REALM})
    llm = call.llm
    if llm is None:
        raise Conflict("the gateway is starting")
    return Reply(await key_quota(snapshot, principal, llm.limiter, llm.budgets))


OPERATIONS = (
    Operation(
        "GET",
        "/v1/quota",
        quota,
        "The calling virtual key's own rate limits, budgets and current usage",
        "quota",
        access="key",
        responses={
            200: "`{key_id, name, team, at, rate_limits: [...], budgets: [...]}`: each limit with its use "
            "in the last minute (for concurrency: requests in flight now), each budget's current period "
            "with spent, limit, remaining and reset."
        },
    ),
)
