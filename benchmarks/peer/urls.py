from django.urls import path

from syncplatform.urls import urlpatterns as platform_urlpatterns

from . import views

# The platform's own URL list with the peer's path in front: the intake resolves through
# exactly the patterns it meets in production, and the peer through one.
urlpatterns = [
    path("bench/peer/insert", views.insert_one, name="bench-peer-insert"),
    *platform_urlpatterns,
]
