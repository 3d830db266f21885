from django.urls import path, re_path

from . import api

app_name = "imports"

urlpatterns = [
    # The trailing slash is optional: a POST cannot follow APPEND_SLASH's redirect.
    re_path(r"^erp/(?P<slug>[-a-zA-Z0-9_]+)/imports/?$", api.upload, name="upload"),
    # `str`, not `int`: a malformed id gets the API's JSON 404, not Django's page.
    path("imports/<str:run_id>", api.run_status, name="run"),
    path("imports/<str:run_id>/errors.csv", api.run_errors, name="errors"),
    path("imports/<str:run_id>/retry-failed", api.run_retry_failed, name="retry-failed"),
    path("imports/<str:run_id>/cancel", api.run_cancel, name="cancel"),
]
