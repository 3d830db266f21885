from django.contrib import admin
from django.urls import include, path

from syncplatform import health, metrics

# Django tries these in order: the machines' hot paths (webhooks, then the storefront) come
# first, the admin's many patterns last.
urlpatterns = [
    path("", include("erp_connectors.urls")),
    path("api/v1/", include("catalog.urls")),
    path("api/v1/", include("imports.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
