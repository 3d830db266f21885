"""The peer: parse the JSON body, INSERT one row, answer 202. Nothing else.

Its table is created by the benchmark with raw SQL (PEER_TABLE_SQL), not by a migration, so
the platform's schema stays untouched.
"""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

PEER_TABLE = "bench_peer_event"
PEER_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {PEER_TABLE} ("
    " id bigserial PRIMARY KEY,"
    " webhook_id varchar(255) NOT NULL,"
    " type varchar(32) NOT NULL,"
    " payload jsonb NOT NULL,"
    " received_at timestamptz NOT NULL DEFAULT now())"
)
_INSERT_SQL = (
    f"INSERT INTO {PEER_TABLE} (webhook_id, type, payload)"  # noqa: S608 (a constant)
    " VALUES (%s, %s, %s::jsonb)"
)


@csrf_exempt
def insert_one(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "only POST"}, status=405)
    document = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL,
            [
                request.headers.get("webhook-id", ""),
                document.get("type", ""),
                json.dumps(document["data"]["items"]),
            ],
        )
    return JsonResponse({"status": "accepted"}, status=202)
