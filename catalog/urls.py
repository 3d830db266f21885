from django.urls import path

from . import api

app_name = "catalog"

urlpatterns = [
    path("products", api.product_list, name="product-list"),
    # `path`: a sku may contain "/".
    path("products/<path:sku>", api.product_detail, name="product-detail"),
]
