"""Webhook intake: POST /webhooks/erp/<slug>/ (CONTRACT §2).

Only checks, records and answers; the items are applied by a worker. Order of checks:
size (before reading), connector, signature, then the body (UTF-8, JSON, schema), so an
unsigned request never learns more than "401" and nothing is stored until all pass.

The signature covers the raw bytes. standardwebhooks checks it on the decoded text, which
signs the same bytes when they are UTF-8, so the body is decoded once, up front; a body
that is not UTF-8 is checked byte for byte (signature_verify_bytes) before it is refused
as 400.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from syncplatform.counters import WEBHOOK_ANSWERS

from .http import error_response, event_status_path
from .models import Connector
from .schemas import ValidationFailed, body_decode, payload_parse, webhook_id_validate
from .selectors import connector_for_intake
from .services import ConnectorChanged, Intake, event_record
from .signatures import signature_verify, signature_verify_bytes

_READ_CHUNK_BYTES = 64 * 1024


# No never_cache: caches never store the answer to a POST (RFC 9111 §3), and patching the
# headers cost about 4 % of the intake's CPU. The one answer to other methods says no-store.
@csrf_exempt
def webhook_receive(request: HttpRequest, slug: str) -> HttpResponse:
    response, connector_slug = _receive(request, slug)
    WEBHOOK_ANSWERS.inc(connector_slug, str(response.status_code))
    return response


def _receive(request: HttpRequest, slug: str) -> tuple[HttpResponse, str]:
    """Answer the delivery; also return the connector's slug, or "" when none was found
    (the metric's labels take only slugs of real connectors, not whatever a caller sends)."""
    if request.method != "POST":
        response = error_response(405, "", "only POST is allowed")
        response["Allow"] = "POST"
        response["Cache-Control"] = "no-store"
        return response, ""

    limit = settings.ERP_WEBHOOK_MAX_BODY_BYTES
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        return _too_large(limit), ""

    # This process's copy of the connector: if it has changed since (disabled, secrets
    # rotated), the signature check or the insert's guard says so, and the request is
    # checked again against the connector as it is now.
    connector = connector_for_intake(slug=slug)
    if connector is None:
        return _no_such_connector(), ""

    raw = _read_body(request, limit)
    if raw is None:
        return _too_large(limit), slug

    try:
        text = body_decode(raw)
    except ValidationFailed as exc:
        return _undecodable(request, connector, raw, exc)

    try:
        return _accept(request, connector, raw, text, copy=True), slug
    except ConnectorChanged:
        connector = connector_for_intake(slug=slug, fresh=True)
        if connector is None:
            return _no_such_connector(), ""
        return _accept(request, connector, raw, text, copy=False), slug


def _accept(
    request: HttpRequest, connector: Connector, raw: bytes, text: str, *, copy: bool
) -> HttpResponse:
    """Check the signature and the body, record the event, answer. With a `copy` of the
    connector, raise ConnectorChanged where the connector as it is now may answer otherwise."""
    if not signature_verify(
        secrets=connector.live_webhook_secrets, body=text, headers=request.headers
    ):
        if copy:  # perhaps signed with a secret this copy does not know yet
            raise ConnectorChanged(connector.slug)
        return _unsigned()

    webhook_id = request.headers["webhook-id"]
    try:
        webhook_id_validate(webhook_id)
        payload = payload_parse(text)
    except ValidationFailed as exc:
        return JsonResponse(exc.as_body(), status=400)

    result = event_record(
        connector=connector,
        webhook_id=webhook_id,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        payload=payload,
    )
    if copy and result.outcome is not Intake.ACCEPTED:
        # Nothing was inserted, so the guard never said whether the copy still holds (a
        # re-delivery to a connector disabled since must be 404, not 200): ask again.
        raise ConnectorChanged(connector.slug)
    # What build_absolute_uri() gives for this path (already quoted, ASCII), without its
    # parsing and re-quoting.
    status_url = f"{request.scheme}://{request.get_host()}" + event_status_path(
        connector.slug, webhook_id
    )
    if result.outcome is Intake.CONFLICT:
        return error_response(
            409, "webhook-id", "this webhook-id was already received with a different body"
        )
    if result.outcome is Intake.DUPLICATE:
        return JsonResponse(
            {
                "id": webhook_id,
                "status": result.status,
                "duplicate": True,
                "status_url": status_url,
            },
            status=200,
        )
    return JsonResponse(
        {"id": webhook_id, "status": result.status, "status_url": status_url}, status=202
    )


def _undecodable(
    request: HttpRequest, connector: Connector, raw: bytes, problem: ValidationFailed
) -> tuple[HttpResponse, str]:
    """Answer a body that is not UTF-8: 400 when it is signed, else 401 as for any unsigned
    request. Also return the connector's slug for the metric, "" when it is gone."""
    if not signature_verify_bytes(
        secrets=connector.live_webhook_secrets, body=raw, headers=request.headers
    ):
        # Perhaps signed with a secret this process's copy does not know yet.
        connector = connector_for_intake(slug=connector.slug, fresh=True)
        if connector is None:
            return _no_such_connector(), ""
        if not signature_verify_bytes(
            secrets=connector.live_webhook_secrets, body=raw, headers=request.headers
        ):
            return _unsigned(), connector.slug
    return JsonResponse(problem.as_body(), status=400), connector.slug


def _unsigned() -> JsonResponse:
    return error_response(
        401,
        "webhook-signature",
        "missing or invalid signature, or webhook-timestamp not within 5 minutes of now",
    )


def _no_such_connector() -> JsonResponse:
    return error_response(404, "", "no such connector")


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """Read at most `limit` bytes; None when there are more (no length given, or a lie).

    The request is read directly, not through request.body, which would refuse bodies over
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) before our own limit applies.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(_READ_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _too_large(limit: int) -> JsonResponse:
    return error_response(413, "", f"the body must not exceed {limit} bytes")
