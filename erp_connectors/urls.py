from django.urls import path, re_path

from . import api, views

app_name = "erp_connectors"

urlpatterns = [
    # The trailing slash is optional: a POST cannot follow APPEND_SLASH's redirect.
    re_path(r"^webhooks/erp/(?P<slug>[-a-zA-Z0-9_]+)/?$", views.webhook_receive, name="webhook"),
    path("api/v1/erp/<slug:slug>/events/<path:webhook_id>", api.event_endpoint, name="event"),
]
