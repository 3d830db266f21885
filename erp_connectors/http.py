"""JSON error answers shared by the webhook intake and the status API."""

from __future__ import annotations

from django.http import JsonResponse


def error_response(
    status: int, path: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"path": path, "message": message}]}, status=status, headers=headers
    )
