from django.urls import path

from . import demo_views

app_name = "demo"

urlpatterns = [
    path("shop/", demo_views.shop_home, name="shop"),
]
