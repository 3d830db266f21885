from django.urls import include, path

from . import views

urlpatterns = [
    path("bench/peer/insert", views.insert_one, name="bench-peer-insert"),
    path("", include("syncplatform.urls")),
]
