"""Event status API for ERPs (CONTRACT §2 "Event status"), authenticated by Bearer token.

    GET  /api/v1/erp/<slug>/events/<webhook-id>
    POST /api/v1/erp/<slug>/events/<webhook-id>/retry

Webhook ids may themselves contain "/" (a client's %2F arrives decoded), so one route takes
the whole rest of the path and the method decides: GET reads the event named by all of it,
POST needs the "/retry" suffix. An id ending in "/retry" is thus still readable.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .http import error_response
from .models import Connector, InboundEvent
from .selectors import connector_authenticate, event_get
from .services import NothingToRetry, event_retry_failed

RETRY_SUFFIX = "/retry"


@csrf_exempt
@never_cache
def event_endpoint(request: HttpRequest, slug: str, webhook_id: str) -> HttpResponse:
    if request.method == "GET":
        handler = event_status
    elif request.method == "POST" and webhook_id.endswith(RETRY_SUFFIX):
        handler = event_retry
        webhook_id = webhook_id.removesuffix(RETRY_SUFFIX)
    else:
        response = error_response(405, "", "GET the event, or POST to its /retry")
        response["Allow"] = "GET, POST"
        return response

    connector = _authenticate(request, slug)
    if connector is None:
        return error_response(
            401,
            "Authorization",
            "a valid 'Authorization: Bearer <api token>' header is required",
            headers={"WWW-Authenticate": 'Bearer realm="syncplatform"'},
        )
    event = event_get(connector=connector, webhook_id=webhook_id)
    if event is None:
        return error_response(404, "", "no such event for this connector")
    return handler(event)


def event_status(event: InboundEvent) -> JsonResponse:
    return JsonResponse(event_body(event))


def event_retry(event: InboundEvent) -> JsonResponse:
    """Queue the failed items again: 202 with the new status, 409 when there are none."""
    try:
        event = event_retry_failed(event_id=event.pk)
    except NothingToRetry as exc:
        return error_response(409, "", f"nothing to retry: {exc}")
    return JsonResponse(event_body(event), status=202)


def event_body(event: InboundEvent) -> dict[str, Any]:
    """Return the status document of CONTRACT §2, field for field."""
    return {
        "id": event.webhook_id,
        "type": event.type,
        "status": event.status,
        "received_at": event.received_at,
        "completed_at": event.completed_at,
        "attempts": event.attempts,
        "items": {
            "total": event.total_items,
            "applied": event.applied_items,
            "stale": event.stale_items,
            "failed": event.failed_items,
        },
        "errors": [
            {
                "index": error["index"],
                "sku": error["sku"],
                "code": error["code"],
                "message": error["message"],
            }
            for error in event.errors
        ],
    }


def _authenticate(request: HttpRequest, slug: str) -> Connector | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return connector_authenticate(slug=slug, token=token)
